package graph

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
)

// RetryPolicy bounds how long one Graph call may wait out throttling before it gives up and
// reports rate_limited (the sync step then reschedules itself instead of holding an invocation).
type RetryPolicy struct {
	MaxAttempts int           // total tries per request; default 5
	MaxWait     time.Duration // longest single Retry-After honoured in-process; default 30 s
	BaseBackoff time.Duration // first back-off when no Retry-After is sent; default 500 ms
	// Sleep waits d or until ctx ends; tests inject an instant one.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 5
	}
	if p.MaxWait <= 0 {
		p.MaxWait = 30 * time.Second
	}
	if p.BaseBackoff <= 0 {
		p.BaseBackoff = 500 * time.Millisecond
	}
	if p.Sleep == nil {
		p.Sleep = sleep
	}
	return p
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryTransport retries every transient failure of an idempotent request: 429, 5xx and network
// errors (timeouts, connection resets). It honours Retry-After (fractional seconds or an HTTP date)
// and otherwise backs off exponentially with jitter. It never retries at once: every retry counts
// against the tenant's quota. Each throttled answer and each wait is added to the
// entra.RequestStats of the request's context, so the run that paid for them can report them.
type retryTransport struct {
	next     http.RoundTripper
	policy   RetryPolicy
	log      *slog.Logger
	requests atomic.Int64
	retries  atomic.Int64
}

func newRetryTransport(next http.RoundTripper, p RetryPolicy, log *slog.Logger) *retryTransport {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &retryTransport{next: next, policy: p, log: log}
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	stats := entra.RequestStatsFrom(ctx)
	for attempt := 1; ; attempt++ {
		t.requests.Add(1)
		resp, err := t.next.RoundTrip(req)
		var wait time.Duration
		given := false
		switch {
		case err != nil:
			// A request that may have been applied is not sent twice; Graph reads are safe to repeat.
			if ctx.Err() != nil || noRetry(ctx) || !idempotent(req.Method) || !transientNetError(err) || attempt >= t.policy.MaxAttempts {
				return resp, err
			}
		case !retryable(resp.StatusCode) || noRetry(ctx):
			return resp, nil
		case !idempotent(req.Method) && resp.StatusCode != http.StatusTooManyRequests:
			return resp, nil // a server failure may have applied the request: it is not sent twice
		default:
			wait, given = RetryAfter(resp.Header, time.Now())
			if resp.StatusCode == http.StatusTooManyRequests || given {
				stats.Throttled()
			}
			if attempt >= t.policy.MaxAttempts || wait > t.policy.MaxWait {
				return resp, nil // too long to wait inside an invocation; the caller reschedules
			}
			if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
				return resp, nil // a body we cannot replay
			}
		}
		if !given || wait <= 0 {
			// Retry-After: 0 (or a date passed) is no reason to retry at once.
			wait = backoff(t.policy.BaseBackoff, attempt)
		}
		status := 0
		if resp != nil {
			status = resp.StatusCode
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		t.retries.Add(1)
		stats.Retried(wait)
		if err != nil {
			t.log.DebugContext(ctx, "graph request failed, retrying", "error", entra.RedactURLs(err.Error()), "wait", wait, "attempt", attempt, "path", req.URL.Path)
		} else {
			t.log.DebugContext(ctx, "graph answered a transient failure, retrying", "status", status, "wait", wait, "attempt", attempt, "path", req.URL.Path)
		}
		if err := t.policy.Sleep(ctx, wait); err != nil {
			return nil, err
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(ctx)
			req.Body = body
		}
	}
}

type noRetryKey struct{}

// withoutRetry marks a request the caller retries itself, later (a mail send is re-enqueued at
// Retry-After rather than waited for inside an invocation).
func withoutRetry(ctx context.Context) context.Context {
	return context.WithValue(ctx, noRetryKey{}, true)
}

func noRetry(ctx context.Context) bool { return ctx.Value(noRetryKey{}) != nil }

// retryable says whether an answer is transient: throttling or any server-side failure.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500 && status != http.StatusNotImplemented && status != http.StatusHTTPVersionNotSupported
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// transientNetError says whether a transport error is worth another attempt: timeouts, resets,
// refused or dropped connections. A bad URL or a TLS certificate failure is not.
func transientNetError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) // dial, read and write failures below TLS
}

// RetryAfter reads a Retry-After header: seconds, possibly fractional ("1.5"), or an HTTP date.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs >= 0 && secs < 86400 {
		return time.Duration(secs * float64(time.Second)), true
	}
	if at, err := http.ParseTime(v); err == nil {
		if d := at.Sub(now); d > 0 {
			return d, true
		}
		return 0, true
	}
	return 0, false
}

// backoff is exponential with full jitter in [d/2, d], d = base·2^(attempt-1).
func backoff(base time.Duration, attempt int) time.Duration {
	d := base << min(attempt-1, 10)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}
