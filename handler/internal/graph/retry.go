package graph

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
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

// retryTransport retries 429, 503 and 504 answers, honouring Retry-After (fractional seconds or
// an HTTP date) and otherwise backing off exponentially with jitter. It never retries at once:
// every retry counts against the tenant's quota.
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
	for attempt := 1; ; attempt++ {
		t.requests.Add(1)
		resp, err := t.next.RoundTrip(req)
		if err != nil || !retryable(resp.StatusCode) || attempt >= t.policy.MaxAttempts {
			return resp, err
		}
		wait, given := RetryAfter(resp.Header, time.Now())
		if !given {
			wait = backoff(t.policy.BaseBackoff, attempt)
		}
		if wait > t.policy.MaxWait {
			return resp, nil // too long to wait inside an invocation; the caller reschedules
		}
		if req.Body != nil && req.GetBody == nil {
			return resp, nil // a body we cannot replay
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		t.retries.Add(1)
		t.log.DebugContext(ctx, "graph throttled, retrying", "status", resp.StatusCode, "wait", wait, "attempt", attempt, "path", req.URL.Path)
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

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
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
