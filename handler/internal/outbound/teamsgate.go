package outbound

import (
	"context"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/pacing"
)

// Gate spaces one instance's Bot Connector calls to a tenant at least an interval apart, in
// real time. The tenant's slots (reserved in Table Storage at dispatch) keep the rate across
// instances; the gate keeps the messages that arrive late — the queue delivers a scheduled
// message up to a few hundred milliseconds late on a busy machine — from bunching up with the
// punctual ones into a second over Teams' limit.
type Gate struct {
	interval time.Duration
	mu       sync.Mutex
	next     map[string]time.Time
}

// Teams' per-tenant limit is counted in any rolling second, at arrival: calls released evenly
// still arrive bunched by a few tens of milliseconds on a busy machine. So Teams slots are
// reserved at 96 % of the pacer's 95 % (about 91 % of the limit), and the gate spaces calls at
// 92 %: a little faster than the slots, so a backlog of late messages drains, with about 85 ms
// of slack before a 31st call falls in one second.
const (
	teamsSlotShare = 0.96
	teamsGateShare = 0.92
)

// TeamsLimits are the pacing limits of Teams sends for a per-tenant rate.
func TeamsLimits(perSecond int) pacing.Limits {
	perMinute := max(int(float64(perSecond*60)*teamsSlotShare), 1)
	return pacing.Limits{PerMinute: perMinute, DailyRecipients: perSecond * 86_400}
}

// NewGate returns a gate for perSecond calls a second.
func NewGate(perSecond int) *Gate {
	return &Gate{interval: time.Duration(float64(time.Second) / (float64(perSecond) * teamsGateShare)), next: map[string]time.Time{}}
}

// maxGateWait bounds a wait at the gate: longer means a backlog, which the slots, not a
// sleeping worker, should absorb.
const maxGateWait = 3 * time.Second

// Wait blocks until the tenant's next call may go, and reports false when that would be
// longer than maxGateWait (the caller takes a later slot instead).
func (g *Gate) Wait(ctx context.Context, tenant string) (bool, error) {
	if g == nil {
		return true, nil
	}
	g.mu.Lock()
	now := time.Now()
	at := g.next[tenant]
	if at.Before(now) {
		at = now
	}
	if at.Sub(now) > maxGateWait {
		g.mu.Unlock()
		return false, nil
	}
	g.next[tenant] = at.Add(g.interval)
	if len(g.next) > 10_000 {
		for k, v := range g.next {
			if v.Before(now) {
				delete(g.next, k)
			}
		}
	}
	g.mu.Unlock()
	if d := at.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
	return true, nil
}
