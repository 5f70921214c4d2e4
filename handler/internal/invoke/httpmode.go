package invoke

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// HTTPFallback serves an HTTP-triggered function that reaches the handler in JSON mode, which the
// host does when proxying is unavailable or the function gains a second binding. It rebuilds the
// original request from Data.<binding>, runs next on it exactly as a proxied request, and returns
// the answer as the http output binding out. This keeps one code path for both host modes.
func HTTPFallback(binding, out string, log *slog.Logger, next http.Handler) http.Handler {
	return serve(log, func(ctx context.Context, req Request) (Response, error) {
		inner, err := req.HTTPRequest(ctx, binding)
		if err != nil {
			return Response{}, err
		}
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, inner)
		headers := map[string]string{}
		for k, v := range rec.header {
			headers[k] = strings.Join(v, ", ")
		}
		return Response{Outputs: map[string]any{out: map[string]any{
			"statusCode": strconv.Itoa(rec.status),
			"headers":    headers,
			"body":       rec.body.String(),
		}}}, nil
	})
}

// HTTPRequest rebuilds the HTTP request of a JSON-mode HTTP trigger.
func (r Request) HTTPRequest(ctx context.Context, binding string) (*http.Request, error) {
	raw, ok := r.Data[binding]
	if !ok {
		return nil, fmt.Errorf("%w: no Data.%s", ErrMalformed, binding)
	}
	b, err := Unwrap(raw)
	if err != nil {
		return nil, fmt.Errorf("Data.%s: %w", binding, err)
	}
	var w struct {
		URL     string                     `json:"Url"`
		Method  string                     `json:"Method"`
		Headers map[string]json.RawMessage `json:"Headers"`
		Body    json.RawMessage            `json:"Body"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: Data.%s is not an HTTP request: %v", ErrMalformed, binding, err)
	}
	u, err := url.Parse(w.URL)
	if err != nil || u.Path == "" {
		return nil, fmt.Errorf("%w: Data.%s.Url %q is not a URL", ErrMalformed, binding, w.URL)
	}
	if w.Method == "" {
		return nil, fmt.Errorf("%w: Data.%s.Method is empty", ErrMalformed, binding)
	}
	h := http.Header{}
	for k, v := range w.Headers {
		// Headers arrive as string arrays in Data and as plain strings in Metadata; accept both.
		var many []string
		if json.Unmarshal(v, &many) != nil {
			var one string
			if json.Unmarshal(v, &one) != nil {
				return nil, fmt.Errorf("%w: header %q is neither a string nor a list", ErrMalformed, k)
			}
			many = []string{one}
		}
		for _, s := range many {
			h.Add(k, s)
		}
	}
	var body []byte
	if len(w.Body) > 0 && string(w.Body) != "null" {
		body, err = Unwrap(w.Body)
		if err != nil {
			return nil, fmt.Errorf("Data.%s.Body: %w", binding, err)
		}
		if isBinary(h.Get("Content-Type")) {
			if dec, err := base64.StdEncoding.DecodeString(string(body)); err == nil {
				body = dec
			}
		}
	}
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(w.Method), u.RequestURI(), io.NopCloser(bytes.NewReader(body)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	req.Header = h
	req.Host = u.Host
	req.ContentLength = int64(len(body))
	return req, nil
}

// isBinary reports content types the host base64-encodes in JSON mode.
func isBinary(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/octet-stream" || strings.HasPrefix(mt, "multipart/")
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}
