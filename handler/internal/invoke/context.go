package invoke

import (
	"context"
	"log/slog"
	"net/http"
)

type idKey struct{}

// WithID returns ctx carrying the host's invocation id.
func WithID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, idKey{}, id)
}

// ID is the invocation id carried by ctx, or "".
func ID(ctx context.Context) string {
	id, _ := ctx.Value(idKey{}).(string)
	return id
}

// Middleware puts the invocation id the host sends on every call (JSON mode and proxied HTTP) into
// the request context, so every log line of that invocation carries it.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Azure-Functions-InvocationId")
		if id == "" {
			id = r.Header.Get("x-ms-invocation-id")
		}
		if id != "" {
			r = r.WithContext(WithID(r.Context(), id))
		}
		next.ServeHTTP(w, r)
	})
}

// LogHandler wraps h so that records logged with a *Context method carry invocation_id.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := ID(ctx); id != "" {
		r.AddAttrs(slog.String("invocation_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(as)}
}
func (h logHandler) WithGroup(n string) slog.Handler { return logHandler{h.Handler.WithGroup(n)} }
