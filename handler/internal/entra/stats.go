package entra

import (
	"context"
	"sync/atomic"
	"time"
)

// RequestStats counts what throttling and transient failures cost one unit of work (a sync
// step). The Graph transport adds to the RequestStats found in the request's context, so waits
// it absorbs in-process are not invisible to the run that paid for them. Safe for concurrent use
// (a step prefetches pages on another goroutine); the methods of a nil *RequestStats do nothing.
type RequestStats struct {
	throttled atomic.Int64 // answers 429 (and 503/504 with Retry-After: Graph's other "slow down")
	retried   atomic.Int64 // requests sent again after a transient failure (5xx, timeout, reset)
	waited    atomic.Int64 // nanoseconds spent waiting before retries
}

// Throttled records one throttled answer.
func (s *RequestStats) Throttled() {
	if s != nil {
		s.throttled.Add(1)
	}
}

// Retried records one retry and the wait before it.
func (s *RequestStats) Retried(wait time.Duration) {
	if s != nil {
		s.retried.Add(1)
		s.waited.Add(int64(wait))
	}
}

// Snapshot is a RequestStats' counts at one moment.
type Snapshot struct {
	Throttled int
	Retried   int
	Waited    time.Duration
}

// Sub is s minus an earlier snapshot of the same stats.
func (s Snapshot) Sub(before Snapshot) Snapshot {
	return Snapshot{Throttled: s.Throttled - before.Throttled, Retried: s.Retried - before.Retried, Waited: s.Waited - before.Waited}
}

// Snapshot returns the counts so far.
func (s *RequestStats) Snapshot() Snapshot {
	if s == nil {
		return Snapshot{}
	}
	return Snapshot{Throttled: int(s.throttled.Load()), Retried: int(s.retried.Load()), Waited: time.Duration(s.waited.Load())}
}

type statsKey struct{}

// WithRequestStats returns a context whose Graph requests are counted in s.
func WithRequestStats(ctx context.Context, s *RequestStats) context.Context {
	return context.WithValue(ctx, statsKey{}, s)
}

// RequestStatsFrom returns the RequestStats of ctx, or nil.
func RequestStatsFrom(ctx context.Context) *RequestStats {
	s, _ := ctx.Value(statsKey{}).(*RequestStats)
	return s
}
