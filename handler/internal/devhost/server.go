package devhost

import (
	"bytes"
	"cmp"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/leapchange/m365/handler/internal/appfiles"
	"github.com/leapchange/m365/handler/internal/queue"
)

type httpRoute struct {
	fn      *appfiles.Function
	trigger *appfiles.Binding
	route   *appfiles.Route
	methods []string // upper case; empty = any
	auth    string   // lower case
	raw     bool     // proxied on the original path; else JSON mode
}

func buildRoutes(app *appfiles.App) ([]*httpRoute, error) {
	var rs []*httpRoute
	for _, f := range app.Functions {
		if f.Disabled {
			continue
		}
		t := f.Trigger()
		if t == nil || !t.Is(appfiles.TypeHTTPTrigger, "") {
			continue
		}
		r, err := appfiles.ParseRoute(cmp.Or(t.Route, f.Name))
		if err != nil {
			return nil, fmt.Errorf("devhost: %s: %w", f.Name, err)
		}
		hr := &httpRoute{fn: f, trigger: t, route: r, auth: strings.ToLower(cmp.Or(t.AuthLevel, "function")), raw: app.IsRawHTTP(f)}
		for _, m := range t.Methods {
			hr.methods = append(hr.methods, strings.ToUpper(m))
		}
		rs = append(rs, hr)
	}
	slices.SortStableFunc(rs, func(a, b *httpRoute) int { return -slices.Compare(a.route.Precedence(), b.route.Precedence()) })
	return rs, nil
}

// Handler is the host's HTTP surface: function routes, the admin API and the devhost port.
func (h *Host) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_devhost/queues/{queue}/messages", h.loopback(h.postMessage))
	mux.HandleFunc("POST /_devhost/queues/{queue}/batch", h.loopback(h.postBatch))
	mux.HandleFunc("POST /_devhost/queues/{queue}/cancel", h.loopback(h.postCancel))
	mux.HandleFunc("GET /_devhost/queues", h.loopback(h.getQueues))
	mux.HandleFunc("GET /_devhost/queues/{queue}/deadletter", h.loopback(h.getDeadLetters))
	mux.HandleFunc("/_devhost/", h.loopback(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "not found", "no devhost endpoint "+r.Method+" "+r.URL.Path, "")
	}))
	mux.HandleFunc("POST /admin/functions/{name}", h.adminInvoke)
	mux.HandleFunc("GET /admin/host/status", func(w http.ResponseWriter, r *http.Request) {
		if !h.keyOK(r) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"state": "Running", "version": h.hostVersion})
	})
	mux.HandleFunc("/", h.serveFunction)
	return mux
}

func (h *Host) keyOK(r *http.Request) bool {
	k := r.Header.Get("x-functions-key")
	if k == "" {
		k = r.URL.Query().Get("code")
	}
	return k != "" && subtle.ConstantTimeCompare([]byte(k), []byte(h.key)) == 1
}

// loopback refuses callers that are not on the loopback interface.
func (h *Host) loopback(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			http.Error(w, "devhost endpoints answer loopback callers only", http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

// serveFunction routes /api/... to HTTP-triggered functions.
func (h *Host) serveFunction(w http.ResponseWriter, r *http.Request) {
	prefix := h.app.RoutePrefix()
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	if prefix != "" {
		if path != prefix && !strings.HasPrefix(path, prefix+"/") {
			http.NotFound(w, r)
			return
		}
		path = strings.TrimPrefix(path[len(prefix):], "/")
	}
	for _, rt := range h.routes {
		params, ok := rt.route.Match(path)
		if !ok || (len(rt.methods) > 0 && !slices.Contains(rt.methods, r.Method)) {
			continue
		}
		if rt.auth != "anonymous" && !h.keyOK(r) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if rt.raw {
			h.proxy(w, r, rt)
		} else {
			h.invokeHTTP(w, r, rt, params)
		}
		return
	}
	http.NotFound(w, r)
}

// proxy forwards the original request (path and query untouched) to the handler and streams the
// answer back.
func (h *Host) proxy(w http.ResponseWriter, r *http.Request, rt *httpRoute) {
	id := uuid.NewString()
	target, err := url.Parse(h.handlerURL())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	h.active.Add(1)
	defer h.active.Done()
	log := h.log.With("function", rt.fn.Name, "invocation_id", id)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = target.Scheme, target.Host
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			h.hostHeaders(pr.Out.Header, id, pr.In.Header.Get("User-Agent"))
			pr.Out.Header.Set("x-ms-invocation-id", id)
		},
		FlushInterval: -1,
		Transport:     proxyTransport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Error("proxying to the handler failed", "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	start := time.Now()
	rp.ServeHTTP(w, r)
	log.Debug("proxied", "method", r.Method, "path", r.URL.Path, "duration", time.Since(start))
}

// invokeHTTP runs an HTTP function in JSON mode, the host's fallback when it does not proxy the
// request (see the README's "Architecture").
func (h *Host) invokeHTTP(w http.ResponseWriter, r *http.Request, rt *httpRoute, params map[string]string) {
	h.active.Add(1)
	defer h.active.Done()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	query := map[string]string{}
	for k, vs := range r.URL.Query() {
		query[k] = strings.Join(vs, ",")
	}
	headers, headerMeta := map[string][]string{}, map[string]string{}
	for k, vs := range r.Header {
		headers[k] = vs
		headerMeta[k] = strings.Join(vs, ",")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	req := map[string]any{
		"Url": scheme + "://" + r.Host + r.URL.RequestURI(), "Method": r.Method, "Query": query,
		"Headers": headers, "Params": params, "Identities": []any{},
	}
	if len(body) > 0 {
		if isText(r.Header.Get("Content-Type")) {
			req["Body"] = string(body)
		} else {
			req["Body"] = base64.StdEncoding.EncodeToString(body)
		}
	}
	md := map[string]any{"Query": query, "Headers": headerMeta, "Params": params}
	for k, v := range query {
		md[k] = v
	}
	for k, v := range params {
		md[k] = v
	}
	md["sys"] = sysMeta(rt.fn.Name, h.clock.Now())
	res, err := h.invokeJSON(r.Context(), rt.fn.Name, map[string]any{"Data": map[string]any{rt.trigger.Name: req}, "Metadata": md})
	if err != nil {
		http.Error(w, "function invocation failed", http.StatusInternalServerError)
		return
	}
	h.applyOutputs(rt.fn, res)
	for _, b := range rt.fn.Outputs() {
		if b.Is(appfiles.TypeHTTP, appfiles.DirOut) {
			writeHTTPOutput(w, res.output(b.Name))
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func isText(ct string) bool {
	ct = strings.ToLower(ct)
	return ct == "" || strings.HasPrefix(ct, "text/") || strings.Contains(ct, "json") || strings.Contains(ct, "xml") ||
		strings.HasPrefix(ct, "application/x-www-form-urlencoded")
}

// writeHTTPOutput writes a JSON-mode http output: {"statusCode", "headers", "body"}.
func writeHTTPOutput(w http.ResponseWriter, raw json.RawMessage) {
	if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var out struct {
		StatusCode json.RawMessage   `json:"statusCode"`
		Headers    map[string]string `json:"headers"`
		Body       json.RawMessage   `json:"body"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		http.Error(w, "http output is not an object", http.StatusInternalServerError)
		return
	}
	status := http.StatusOK
	if s := strings.Trim(string(out.StatusCode), `"`); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 || n > 999 {
			http.Error(w, "bad statusCode in http output", http.StatusInternalServerError)
			return
		}
		status = n
	}
	for k, v := range out.Headers {
		w.Header().Set(k, v)
	}
	var body []byte
	if len(out.Body) > 0 && string(out.Body) != "null" {
		var s string
		if json.Unmarshal(out.Body, &s) == nil {
			body = []byte(s)
		} else {
			body, _ = json.MarshalIndent(out.Body, "", "  ")
		}
	}
	w.WriteHeader(status)
	w.Write(body)
}

// adminInvoke is POST /admin/functions/{name}: run a timer now, or enqueue input on a Service Bus
// function's queue.
func (h *Host) adminInvoke(w http.ResponseWriter, r *http.Request) {
	if !h.keyOK(r) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	f := h.app.Function(r.PathValue("name"))
	if f == nil {
		writeProblem(w, http.StatusNotFound, "not found", "no function "+r.PathValue("name"), "name")
		return
	}
	var in struct {
		Input string `json:"input"`
	}
	if b, _ := io.ReadAll(r.Body); len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &in); err != nil {
			writeProblem(w, http.StatusBadRequest, "bad request", "body must be {\"input\":\"...\"}: "+err.Error(), "input")
			return
		}
	}
	t := f.Trigger()
	switch {
	case t != nil && t.Is(appfiles.TypeTimerTrigger, ""):
		h.work.Add(1)
		go func() {
			defer h.work.Done()
			h.fireTimer(h.timerFor(f.Name), false)
		}()
	case t != nil && t.Is(appfiles.TypeServiceBusTrigger, ""):
		if _, err := h.queues.Send(t.QueueName, Message{MessageID: newMessageID(), Body: []byte(in.Input)}); err != nil {
			writeProblem(w, http.StatusBadRequest, "bad request", err.Error(), "name")
			return
		}
	default:
		writeProblem(w, http.StatusBadRequest, "bad request", f.Name+" is an HTTP function: call its route", "name")
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// postMessage is POST /_devhost/queues/{queue}/messages with a queue.DevHostMessage body; it
// answers the queue.DevHostSendResult (201, or 200 for a duplicate).
func (h *Host) postMessage(w http.ResponseWriter, r *http.Request) {
	name, m, ok := queueRequest[queue.DevHostMessage](h, w, r, 1<<20, "DevHostMessage")
	if !ok {
		return
	}
	msg, field, err := fromWire(m)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid message", err.Error(), field)
		return
	}
	res, err := h.queues.Send(name, msg)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid message", err.Error(), "queue")
		return
	}
	status := http.StatusCreated
	if res.Duplicate {
		status = http.StatusOK
	}
	writeJSON(w, status, toWire(res))
}

// postBatch is POST /_devhost/queues/{queue}/batch with a JSON array of queue.DevHostMessage; it
// answers the array of queue.DevHostSendResult, in order (201, or 200 when every message was a
// duplicate). It is all or nothing: one invalid message and none is enqueued (400).
func (h *Host) postBatch(w http.ResponseWriter, r *http.Request) {
	name, in, ok := queueRequest[[]queue.DevHostMessage](h, w, r, queue.DevHostMaxBatchBytes, "array of DevHostMessage")
	if !ok {
		return
	}
	msgs := make([]Message, len(in))
	for i, m := range in {
		msg, field, err := fromWire(m)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, "invalid message", fmt.Sprintf("message %d: %v; nothing was enqueued", i, err), fmt.Sprintf("[%d].%s", i, field))
			return
		}
		msgs[i] = msg
	}
	res, err := h.queues.SendBatch(name, msgs)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid message", err.Error(), "queue")
		return
	}
	out := make([]queue.DevHostSendResult, len(res))
	status := http.StatusOK
	for i, r := range res {
		out[i] = toWire(r)
		if !r.Duplicate {
			status = http.StatusCreated
		}
	}
	writeJSON(w, status, out)
}

// postCancel is POST /_devhost/queues/{queue}/cancel with a queue.DevHostCancelRequest; it
// answers queue.DevHostCancelResult. Sequence numbers that are not scheduled are ignored.
func (h *Host) postCancel(w http.ResponseWriter, r *http.Request) {
	name, in, ok := queueRequest[queue.DevHostCancelRequest](h, w, r, 1<<20, "DevHostCancelRequest")
	if !ok {
		return
	}
	n, err := h.queues.Cancel(name, in.SequenceNumbers)
	if err != nil {
		writeProblem(w, http.StatusNotFound, "unknown queue", err.Error(), "queue")
		return
	}
	writeJSON(w, http.StatusOK, queue.DevHostCancelResult{Cancelled: n})
}

// knownQueue returns the {queue} of the path, or answers 404 if no function uses it.
func (h *Host) knownQueue(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("queue")
	if !slices.Contains(h.queues.Names(), name) {
		writeProblem(w, http.StatusNotFound, "unknown queue", fmt.Sprintf("queue %q is not used by any function (known: %s)", name, strings.Join(h.queues.Names(), ", ")), "queue")
		return "", false
	}
	return name, true
}

// decodeBody decodes the JSON body (at most limit bytes) into v, or answers 400 naming the field.
// queueRequest answers the known queue that r names and r's JSON body decoded into a T (what names
// it in a problem, limit bounds it); false when it wrote a problem instead.
func queueRequest[T any](h *Host, w http.ResponseWriter, r *http.Request, limit int64, what string) (name string, in T, ok bool) {
	if name, ok = h.knownQueue(w, r); ok {
		ok = decodeBody(w, r, limit, &in, what)
	}
	return name, in, ok
}

func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any, what string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	if err := dec.Decode(v); err != nil {
		field := "body"
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			field = te.Field
		}
		writeProblem(w, http.StatusBadRequest, "invalid message", "body is not a valid "+what+": "+err.Error(), field)
		return false
	}
	return true
}

// fromWire checks a queue.DevHostMessage and converts it; on error it names the bad field.
func fromWire(m queue.DevHostMessage) (Message, string, error) {
	if m.MessageID == "" {
		return Message{}, "messageId", errors.New("messageId is required (it is the duplicate detection key)")
	}
	if len(m.MessageID) > 128 {
		return Message{}, "messageId", errors.New("messageId is longer than 128 characters")
	}
	msg := Message{MessageID: m.MessageID, Body: m.Body, ContentType: m.ContentType, Subject: m.Subject, ApplicationProperties: m.ApplicationProperties}
	if m.ScheduledEnqueueTime != nil {
		msg.ScheduledEnqueueTime = *m.ScheduledEnqueueTime
	}
	return msg, "", nil
}

func toWire(r SendResult) queue.DevHostSendResult {
	return queue.DevHostSendResult{Queue: r.Queue, MessageID: r.MessageID, SequenceNumber: r.SequenceNumber, EnqueuedTime: r.EnqueuedTime, ScheduledTime: r.ScheduledTime, Duplicate: r.Duplicate}
}

func (h *Host) getQueues(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.queues.Counts())
}

func (h *Host) getDeadLetters(w http.ResponseWriter, r *http.Request) {
	dl, err := h.queues.DeadLetters(r.PathValue("queue"))
	if err != nil {
		writeProblem(w, http.StatusNotFound, "unknown queue", err.Error(), "queue")
		return
	}
	if dl == nil {
		dl = []DeadLetter{}
	}
	writeJSON(w, http.StatusOK, dl)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeProblem writes an RFC 9457 problem naming the bad field.
func writeProblem(w http.ResponseWriter, status int, title, detail, field string) {
	p := map[string]any{"type": "urn:leapchange:devhost:" + strings.ReplaceAll(strings.ToLower(title), " ", "-"), "title": title, "status": status, "detail": detail}
	if field != "" {
		p["errors"] = []map[string]string{{"field": field, "message": detail}}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(p)
}

// proxyTransport keeps connections to the handler open: the default keeps two idle per host,
// so under a webhook's burst every further request dialled anew (thousands in TIME_WAIT).
var proxyTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 512, 512
	return t
}()
