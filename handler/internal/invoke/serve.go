package invoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
)

// maxBody is the host's own request limit (100 MB) plus envelope overhead.
const maxBody = 110 << 20

// Timer serves a timer-triggered function whose TimerInfo binding is named binding.
func Timer(binding string, log *slog.Logger, fn func(context.Context, TimerInfo) error) http.Handler {
	return serve(log, func(ctx context.Context, req Request) (Response, error) {
		info, err := req.Timer(binding)
		if err != nil {
			return Response{}, err
		}
		return Response{}, fn(ctx, info)
	})
}

// ServiceBus serves a Service Bus-triggered function whose binding is named binding and declared
// with data type dt in its function.json. A returned error fails the invocation, so the host
// abandons the message and Service Bus redelivers it (dead-lettering after its max delivery
// count): handlers must therefore be idempotent.
func ServiceBus(binding string, dt DataType, log *slog.Logger, fn func(context.Context, Message) error) http.Handler {
	return serve(log, func(ctx context.Context, req Request) (Response, error) {
		msg, err := req.Message(binding, dt)
		if err != nil {
			return Response{}, err
		}
		return Response{}, fn(ctx, msg)
	})
}

// serve runs one JSON-mode invocation: decode, call, answer. Any failure, a panic included, is a
// non-2xx JSON answer with the reason in Logs, which the host records as a failed invocation.
func serve(log *slog.Logger, call func(context.Context, Request) (Response, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		name := r.URL.Path
		resp, err := func() (resp Response, err error) {
			defer func() {
				if p := recover(); p != nil {
					log.ErrorContext(ctx, "invocation panicked", "function", name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
					err = fmt.Errorf("internal error: %v", p)
				}
			}()
			if r.Method != http.MethodPost {
				return Response{}, fmt.Errorf("%w: method %s, want POST", ErrMalformed, r.Method)
			}
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err != nil {
				return Response{}, fmt.Errorf("%w: reading body: %v", ErrMalformed, err)
			}
			req, err := ParseRequest(body)
			if err != nil {
				return Response{}, err
			}
			return call(ctx, req)
		}()
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, ErrMalformed) {
				status = http.StatusBadRequest
			}
			log.ErrorContext(ctx, "invocation failed", "function", name, "error", err.Error())
			Write(w, status, Response{Logs: []string{"failed: " + err.Error()}})
			return
		}
		Write(w, http.StatusOK, resp)
	})
}

// Write answers the host. The Content-Type must be application/json (a sniffed text/plain fails the
// invocation) and the body never empty, so nil Outputs and Logs are sent as {} and [].
func Write(w http.ResponseWriter, status int, resp Response) {
	if resp.Outputs == nil {
		resp.Outputs = map[string]any{}
	}
	if resp.Logs == nil {
		resp.Logs = []string{}
	}
	b, err := json.Marshal(resp)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"Outputs":{},"Logs":["failed: response not encodable"],"ReturnValue":null}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
