// Package pacing keeps each sender mailbox under Exchange Online's limits, across every worker
// instance: sends are given time slots reserved in Table Storage (not in memory — the app scales
// out), so a mailbox never sends faster than its per-minute rate nor more recipients in any
// rolling 24 hours than its daily cap.
//
// The per-minute rate is a generic cell rate algorithm: a mailbox row holds the earliest time
// the next message may go, and reserving n slots moves it n intervals on. The daily cap is kept
// in hour buckets of reserved recipients; a slot is admissible when its hour and the 24 before
// it (a conservative cover of the rolling day) stay within the cap.
package pacing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Limits are one mailbox's sending limits.
type Limits struct {
	PerMinute       int // messages per minute (Exchange Online: 30)
	DailyRecipients int // recipients per rolling 24 hours (Exchange Online: 10 000)
}

// Exchange is Exchange Online's documented limits for one mailbox.
var Exchange = Limits{PerMinute: 30, DailyRecipients: 10_000}

// margin keeps the reserved rate a little under the limit: a message delivered a moment late
// by the queue must not push a minute over.
const margin = 0.95

// Interval is the spacing between two reserved slots of one mailbox.
func (l Limits) Interval() time.Duration {
	d := time.Duration(float64(time.Minute) / (float64(l.PerMinute) * margin))
	return d.Truncate(time.Microsecond) + time.Microsecond
}

// ceil rounds t up to the microsecond: Table Storage keeps 100 ns, and a slot stored a few
// nanoseconds early would let the next one come too soon.
func ceil(t time.Time) time.Time {
	if r := t.Truncate(time.Microsecond); !r.Equal(t) {
		return r.Add(time.Microsecond)
	}
	return t
}

// Table holds one row per (tenant, mailbox).
const Table = "mailboxpacing"

// state is a mailbox's row.
type state struct {
	Next  time.Time `json:"next"`  // earliest time the next message may go
	Hours string    `json:"hours"` // JSON {hour index: recipients reserved}
}

// Slot is one reserved send.
type Slot struct {
	Mailbox string
	At      time.Time
}

// Pacer reserves slots.
type Pacer struct {
	t      *tablestore.Table
	limits Limits
}

// New returns a Pacer over s for mailboxes with these limits.
func New(s *tablestore.Store, limits Limits) (*Pacer, error) {
	if limits.PerMinute <= 0 || limits.DailyRecipients <= 0 {
		return nil, errors.New("pacing: limits must be positive")
	}
	return &Pacer{t: s.Table(Table), limits: limits}, nil
}

// Limits returns the limits the pacer keeps to.
func (p *Pacer) Limits() Limits { return p.limits }

func partition(tenant string) (tablestore.Shared, error) {
	return tablestore.NewShared("mailbox", tenant)
}

func mailboxKey(mailbox string) string { return tablestore.KeyEscape(strings.ToLower(mailbox)) }

// maxAttempts bounds the optimistic-concurrency loop of one reservation; between attempts it
// waits a little, at random, so workers that collided do not collide again.
const maxAttempts = 50

// Reserve reserves slots for messages of recipients[i] recipients each (in order), spread over
// mailboxes (each message to whichever mailbox can send it soonest), none before notBefore and
// none after horizon: it returns slots for a prefix of the messages, possibly empty when the
// pool is booked up to the horizon. A message of more recipients than the daily cap cannot be
// sent by any mailbox and is an Invalid error.
func (p *Pacer) Reserve(ctx context.Context, tenant string, mailboxes []string, recipients []int, notBefore, horizon time.Time) ([]Slot, error) {
	if len(mailboxes) == 0 {
		return nil, fmt.Errorf("pacing: no sender mailbox: %w", errkind.Invalid)
	}
	for _, r := range recipients {
		if r > p.limits.DailyRecipients {
			return nil, fmt.Errorf("pacing: a message of %d recipients is over a mailbox's daily cap of %d: %w", r, p.limits.DailyRecipients, errkind.Invalid)
		}
	}
	part, err := partition(tenant)
	if err != nil {
		return nil, err
	}
	for attempt := range maxAttempts {
		slots, err := p.reserveOnce(ctx, part, mailboxes, recipients, notBefore, horizon)
		if !errors.Is(err, errkind.Conflict) {
			return slots, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(1+rand.IntN(5*min(attempt+1, 10))) * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("pacing: mailbox rows kept changing: %w", errkind.Unavailable)
}

type mailboxState struct {
	name  string
	key   string
	etag  tablestore.ETag
	next  time.Time
	hours map[int64]int
	used  bool
}

func (p *Pacer) reserveOnce(ctx context.Context, part tablestore.Shared, mailboxes []string, recipients []int, notBefore, horizon time.Time) ([]Slot, error) {
	boxes := make([]*mailboxState, 0, len(mailboxes))
	for _, m := range mailboxes {
		st, etag, err := tablestore.Get[state](ctx, p.t, part, mailboxKey(m))
		if err != nil && !errors.Is(err, errkind.NotFound) {
			return nil, err
		}
		b := &mailboxState{name: m, key: mailboxKey(m), etag: etag, next: st.Next, hours: map[int64]int{}}
		if st.Hours != "" {
			if err := json.Unmarshal([]byte(st.Hours), &b.hours); err != nil {
				return nil, fmt.Errorf("pacing: mailbox %s: bad hour buckets: %w", m, err)
			}
		}
		boxes = append(boxes, b)
	}
	var slots []Slot
	for _, r := range recipients {
		var best *mailboxState
		var bestAt time.Time
		for _, b := range boxes {
			at := p.admissible(b, ceil(later(b.next, notBefore)), r)
			if best == nil || at.Before(bestAt) {
				best, bestAt = b, at
			}
		}
		if bestAt.After(horizon) {
			break
		}
		best.next = bestAt.Add(p.limits.Interval())
		best.hours[hourOf(bestAt)] += r
		best.used = true
		slots = append(slots, Slot{Mailbox: best.name, At: bestAt})
	}
	// Every mailbox row of the tenant is in one partition: the reservation is one transaction,
	// all of it or none (a conflict on one row re-reads them all).
	var ops []tablestore.Op
	for _, b := range boxes {
		if !b.used {
			continue
		}
		prune(b.hours, notBefore)
		hours, _ := json.Marshal(b.hours)
		st := state{Next: b.next, Hours: string(hours)}
		if b.etag == "" {
			ops = append(ops, tablestore.InsertOp(b.key, st))
		} else {
			ops = append(ops, tablestore.UpdateOp(b.key, st, b.etag, tablestore.Replace))
		}
	}
	if err := p.t.Batch(ctx, part, ops); err != nil {
		return nil, err
	}
	return slots, nil
}

// admissible is the first time at or after at when mailbox b may send a message of r
// recipients without passing the daily cap.
func (p *Pacer) admissible(b *mailboxState, at time.Time, r int) time.Time {
	for range 24 * 3 {
		h := hourOf(at)
		if p.dayLoad(b.hours, h)+r <= p.limits.DailyRecipients {
			return at
		}
		at = time.Unix((h+1)*3600, 0).UTC()
	}
	return at
}

// dayLoad is the recipients reserved in hour h and the 24 before it.
func (p *Pacer) dayLoad(hours map[int64]int, h int64) int {
	n := 0
	for i := h - 24; i <= h; i++ {
		n += hours[i]
	}
	return n
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func hourOf(t time.Time) int64 { return t.Unix() / 3600 }

// prune drops buckets that no longer count for any slot from now on.
func prune(hours map[int64]int, now time.Time) {
	oldest := hourOf(now) - 25
	for _, h := range slices.Collect(maps.Keys(hours)) {
		if h < oldest {
			delete(hours, h)
		}
	}
}

// Estimate is when n more messages of one recipient each, spread over m mailboxes that are free
// from from on, would have gone: a forecast for the batch view, not a reservation.
func (l Limits) Estimate(from time.Time, n, m int) time.Time {
	if n <= 0 || m <= 0 {
		return from
	}
	per := (n + m - 1) / m
	days := (per - 1) / l.DailyRecipients
	last := per - days*l.DailyRecipients
	return from.Add(time.Duration(days)*24*time.Hour + time.Duration(last-1)*l.Interval())
}

// ParseLimits reads "perMinute/dailyRecipients" (e.g. "30/10000"), the MAIL_LIMITS setting.
func ParseLimits(s string) (Limits, error) {
	a, b, ok := strings.Cut(s, "/")
	pm, err1 := strconv.Atoi(strings.TrimSpace(a))
	d, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || pm <= 0 || d <= 0 {
		return Limits{}, fmt.Errorf("mail limits %q: want <messages per minute>/<recipients per day>, e.g. 30/10000", s)
	}
	return Limits{PerMinute: pm, DailyRecipients: d}, nil
}
