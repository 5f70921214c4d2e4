// Package realtime turns Entra user and group change notifications into stakeholder updates
// within a minute. A notification never syncs a user on its own path: it marks the org dirty,
// and a debounced nudge on sync-jobs starts the ordinary delta round (merge strategies, group
// filter, deletion guard and change log as in scheduled runs), one run per org at a time, with
// the notifications that arrive meanwhile folded into the next one. The subscriptions on /users
// and /groups are made, renewed and removed by the shared subscriptions reconciler.
package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

type (
	settingsReader interface {
		Get(ctx context.Context, org tablestore.Org) (syncsettings.Settings, tablestore.ETag, error)
		Orgs(ctx context.Context) ([]tablestore.Org, error)
	}
	connections interface {
		Get(ctx context.Context, org tablestore.Org) (connection.Record, tablestore.ETag, error)
	}
	// starter starts a delta run unless one is running or held (then it returns that one).
	starter interface {
		Start(ctx context.Context, org tablestore.Org, opts dirsync.StartOptions) (dirsync.Run, bool, error)
	}
	publisher interface {
		Publish(ctx context.Context, m queue.Message) error
	}
)

// Config wires a Sync.
type Config struct {
	Store         *tablestore.Store
	Settings      settingsReader
	Connections   connections
	Subscriptions *subscriptions.Reconciler
	Runs          starter
	Queue         publisher
	// Debounce is how long after the first notification the delta round starts (default 15 s):
	// long enough to fold a burst of changes into one round, short enough for "within a minute".
	Debounce time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// Sync is the real-time stakeholder sync.
type Sync struct {
	cfg   Config
	state *tablestore.Table
	log   *slog.Logger
	mu    sync.Mutex
	// marked remembers, per org, what this instance last recorded: a storm of notifications
	// costs a table write every few seconds, not one per notification.
	marked map[string]memo
}

// memo is an instance's last mark of an org: when, and when the round it scheduled (or found
// scheduled) is due. Only notifications well before that round starts may skip the write: the
// round's delta read comes after them.
type memo struct{ at, due time.Time }

// Table holds each org's real-time state (key "state").
const Table = "realtime"

const stateKey = "state"

// Lifetime is what the user and group subscriptions ask for: Graph allows 41 760 minutes (29
// days) for them; a little less. The renewer renews a day before expiry.
const Lifetime = 41_000 * time.Minute

// ChangeType is what the subscriptions ask for: "updated" covers created, updated and
// soft-deleted users and groups, "deleted" the permanently deleted ones (Graph rejects "created"
// for these resources).
const ChangeType = "updated,deleted"

// New returns a Sync. It does no I/O.
func New(cfg Config) *Sync {
	if cfg.Debounce <= 0 {
		cfg.Debounce = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sync{cfg: cfg, state: cfg.Store.Table(Table), log: cfg.Logger, marked: map[string]memo{}}
}

// state is an org's real-time state.
type state struct {
	// Dirty: notifications arrived that no started run has covered yet.
	Dirty      bool      `json:"dirty"`
	DirtySince time.Time `json:"dirtySince,omitzero"`
	// Resync: notifications may have been lost (a lifecycle "missed", a subscription recreated):
	// the next run is recorded as a resync.
	Resync           bool      `json:"resync,omitempty"`
	LastNotification time.Time `json:"lastNotification,omitzero"`
	// TriggerAt is when the nudge now scheduled is due; zero or past = none pending.
	TriggerAt time.Time `json:"triggerAt,omitzero"`
	// Waiting says why a dirty org has no run yet (e.g. the connection needs re-authorization).
	Waiting     string    `json:"waiting,omitempty"`
	LastRunID   string    `json:"lastRunId,omitempty"`
	LastRunAt   time.Time `json:"lastRunAt,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// change applies fn to the org's state under its ETag, retrying conflicts. fn may return an
// error to abandon the change.
func (s *Sync) change(ctx context.Context, org tablestore.Org, fn func(*state) error) (state, error) {
	for range 8 {
		st, etag, err := tablestore.Get[state](ctx, s.state, org, stateKey)
		if err != nil && !errors.Is(err, errkind.NotFound) {
			return st, err
		}
		if err := fn(&st); err != nil {
			return st, err
		}
		_, err = s.state.Save(ctx, org, stateKey, st, etag)
		if !errors.Is(err, errkind.Conflict) {
			return st, err
		}
	}
	return state{}, fmt.Errorf("realtime: the state of %s kept changing: %w", org, errkind.Conflict)
}

// errUnchanged abandons a change that has nothing to write.
var errUnchanged = errors.New("unchanged")

// Reconcile makes the org's user and group subscriptions match its settings: /users while
// real-time sync is on and Microsoft 365 connected, /groups too when a group filter is set (its
// membership changes move users in and out of scope). Off or disconnected removes them. While
// the connection needs re-authorization they are left alone: Graph keeps them until expiry and
// the admin's consent brings them back to use.
func (s *Sync) Reconcile(ctx context.Context, org tablestore.Org) (subscriptions.Report, error) {
	set, _, err := s.cfg.Settings.Get(ctx, org)
	if err != nil {
		return subscriptions.Report{}, err
	}
	conn, _, err := s.cfg.Connections.Get(ctx, org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return subscriptions.Report{}, err
	}
	if conn.Status == connection.NeedsReauthorization && set.RealTime {
		return subscriptions.Report{}, nil
	}
	var want []subscriptions.Want
	if set.RealTime && conn.Status == connection.Connected && conn.TenantID != "" {
		want = append(want, subscriptions.Want{Purpose: subscriptions.Users, Resource: "/users", ChangeType: ChangeType, Lifetime: Lifetime})
		if len(set.GroupFilter) > 0 {
			want = append(want, subscriptions.Want{Purpose: subscriptions.Groups, Resource: "/groups", ChangeType: ChangeType, Lifetime: Lifetime})
		}
	}
	rep, err := s.cfg.Subscriptions.Reconcile(ctx, org, conn.TenantID, []string{subscriptions.Users, subscriptions.Groups}, want, subscriptions.Hooks{
		// A subscription Graph lost missed notifications: the next round is a resync.
		Recreated: func(ctx context.Context, _ subscriptions.Want, _ time.Time) error {
			_, err := s.mark(ctx, org, true)
			return err
		},
		Failed: func(ctx context.Context, _, msg string) {
			_, _ = s.change(ctx, org, func(st *state) error {
				st.LastError, st.LastErrorAt = "subscription "+msg, s.cfg.Now().UTC()
				return nil
			})
		},
	})
	if err != nil {
		return rep, fmt.Errorf("realtime: %w", err)
	}
	if rep.Created+rep.Recreated+rep.Renewed > 0 {
		_, _ = s.change(ctx, org, func(st *state) error {
			if st.LastError == "" {
				return errUnchanged
			}
			st.LastError, st.LastErrorAt = "", time.Time{}
			return nil
		})
	}
	return rep, nil
}

// Orgs lists the orgs with sync settings (the renewer adds those with subscriptions).
func (s *Sync) Orgs(ctx context.Context) ([]tablestore.Org, error) { return s.cfg.Settings.Orgs(ctx) }

// Notified records that count verified change notifications for the org's users or groups
// arrived: the org is dirty, and a nudge is scheduled Debounce after the first of them unless
// one is pending. Cheap on purpose (the webhook calls it before answering Graph): within a few
// seconds of its last write, this instance writes nothing.
func (s *Sync) Notified(ctx context.Context, org tablestore.Org) error {
	now := s.cfg.Now().UTC()
	s.mu.Lock()
	last, ok := s.marked[org.String()]
	s.mu.Unlock()
	if ok && !now.Before(last.at) && now.Sub(last.at) < memoFor && now.Before(last.due.Add(-roundMargin)) {
		return nil
	}
	due, err := s.mark(ctx, org, false)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if len(s.marked) > 10_000 {
		clear(s.marked)
	}
	s.marked[org.String()] = memo{at: now, due: due}
	s.mu.Unlock()
	return nil
}

// memoFor is how long an instance trusts its last mark at most; roundMargin is how long before
// the scheduled round the marks resume, so that every notification from then on is recorded
// and, if it comes after the round started, keeps the org dirty for the next round.
const (
	memoFor     = 5 * time.Second
	roundMargin = 2 * time.Second
)

// mark makes the org dirty and the nudge scheduled; it returns when that nudge is due.
func (s *Sync) mark(ctx context.Context, org tablestore.Org, resync bool) (time.Time, error) {
	now := s.cfg.Now().UTC()
	var published time.Time
	st, err := s.change(ctx, org, func(st *state) error {
		if now.After(st.LastNotification) {
			// Never earlier: a slow mark landing after a quicker, later one must not make a
			// round that started between them look like it covered the later one.
			st.LastNotification = now
		}
		if resync {
			st.Resync = true
		}
		if !st.Dirty {
			st.Dirty, st.DirtySince = true, now
		}
		if st.TriggerAt.IsZero() || now.After(st.TriggerAt) {
			// No nudge pending (none yet, or it came and went): schedule one. Published before
			// the state is written, so a state that says "pending" always has its message; a
			// retry after a lost write only schedules a harmless second nudge.
			st.TriggerAt = now.Add(s.cfg.Debounce)
			if !published.Equal(st.TriggerAt) {
				if err := s.publish(ctx, org, st.TriggerAt); err != nil {
					return err
				}
				published = st.TriggerAt
			}
		}
		return nil
	})
	return st.TriggerAt, err
}

// nudge is the body of a sync-jobs message that starts an org's debounced delta round.
type nudge struct {
	RealTime struct {
		Org string    `json:"org"`
		Due time.Time `json:"due"`
	} `json:"realTime"`
}

// Subject marks nudges on sync-jobs.
const Subject = "realtime-nudge"

// IsNudge reports whether a sync-jobs body is a nudge (the SyncWorker routes it here).
func IsNudge(body []byte) bool {
	var n nudge
	return json.Unmarshal(body, &n) == nil && n.RealTime.Org != ""
}

func (s *Sync) publish(ctx context.Context, org tablestore.Org, due time.Time) error {
	var n nudge
	n.RealTime.Org, n.RealTime.Due = org.String(), due
	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	// One id per org and due time: a repeated publish is dropped by duplicate detection.
	return s.cfg.Queue.Publish(ctx, queue.Message{Queue: queue.SyncJobs, ID: fmt.Sprintf("rt/%s/%d", org, due.UnixMilli()),
		Body: body, ContentType: "application/json", Subject: Subject, NotBefore: due})
}

// HandleNudge starts the debounced delta round of a dirty org. A run already running (or held)
// folds the notifications into the next round: the nudge comes again after another debounce. A
// connection that needs re-authorization keeps the org dirty until the admin consents again
// (Sweep then starts the round). Idempotent: a nudge for a clean org does nothing.
func (s *Sync) HandleNudge(ctx context.Context, body []byte) error {
	var n nudge
	if err := json.Unmarshal(body, &n); err != nil {
		return fmt.Errorf("realtime: not a nudge: %w: %w", errkind.Invalid, err)
	}
	org, err := tablestore.NewOrg(n.RealTime.Org)
	if err != nil {
		return fmt.Errorf("realtime: the nudge names no org: %w", errkind.Invalid)
	}
	return s.trigger(ctx, org, n.RealTime.Due)
}

// trigger starts the round if the org is dirty and due is the pending nudge (or none is).
func (s *Sync) trigger(ctx context.Context, org tablestore.Org, due time.Time) error {
	st, _, err := tablestore.Get[state](ctx, s.state, org, stateKey)
	if errors.Is(err, errkind.NotFound) || (err == nil && !st.Dirty) {
		return nil
	}
	if err != nil {
		return err
	}
	if !due.IsZero() && st.TriggerAt.After(due.Add(time.Second)) {
		return nil // a later nudge is pending: it starts the round
	}
	now := s.cfg.Now().UTC()
	set, _, err := s.cfg.Settings.Get(ctx, org)
	if err != nil {
		return err
	}
	if !set.RealTime {
		_, err := s.change(ctx, org, func(st *state) error {
			st.Dirty, st.Resync, st.TriggerAt, st.Waiting = false, false, time.Time{}, ""
			return nil
		})
		return err
	}
	conn, _, err := s.cfg.Connections.Get(ctx, org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return err
	}
	if conn.Status != connection.Connected {
		return s.wait(ctx, org, waitingFor(conn.Status))
	}
	trigger := "notification"
	if st.Resync {
		trigger = "resync"
	}
	run, started, err := s.cfg.Runs.Start(ctx, org, dirsync.StartOptions{Trigger: trigger})
	if errors.Is(err, connection.ErrNotConnected) {
		return s.wait(ctx, org, "the Microsoft 365 connection is not usable")
	}
	if err != nil {
		return err
	}
	if !started {
		// One run per org: the notifications wait for the next round.
		next := now.Add(s.cfg.Debounce)
		if err := s.publish(ctx, org, next); err != nil {
			return err
		}
		_, err := s.change(ctx, org, func(st *state) error {
			if !st.Dirty {
				// That run is a real-time round that started since we read the state, and it
				// covers the notifications: the nudge just sent finds the org clean.
				return nil
			}
			st.TriggerAt, st.Waiting = next, "run "+run.ID+" is "+string(run.State)
			return nil
		})
		return err
	}
	s.log.InfoContext(ctx, "real-time sync round started", "org", org.String(), "run", run.ID, "trigger", trigger,
		"debounced_s", now.Sub(st.DirtySince).Seconds())
	_, err = s.change(ctx, org, func(st *state) error {
		st.LastRunID, st.LastRunAt, st.Waiting, st.Resync = run.ID, now, "", false
		// Notifications recorded after the run started may describe changes its delta read
		// passed already: they keep the org dirty (their mark scheduled the next nudge). So
		// does a nudge scheduled for later than now: an instance that scheduled it skips
		// recording notifications until shortly before it (see Notified), so only that round
		// covers them.
		if !st.LastNotification.After(run.StartedAt) && !st.TriggerAt.After(now) {
			st.Dirty, st.DirtySince, st.TriggerAt = false, time.Time{}, time.Time{}
		}
		return nil
	})
	return err
}

func waitingFor(st connection.Status) string {
	if st == connection.NeedsReauthorization {
		return "the Microsoft 365 connection needs re-authorization"
	}
	return "Microsoft 365 is not connected"
}

// wait keeps the org dirty with no nudge pending: Sweep starts the round once the connection
// works again.
func (s *Sync) wait(ctx context.Context, org tablestore.Org, why string) error {
	_, err := s.change(ctx, org, func(st *state) error {
		st.Waiting, st.TriggerAt = why, time.Time{}
		return nil
	})
	return err
}

// Sweep is the safety net, run on the scheduler's tick: a dirty org whose nudge is overdue (lost,
// or waiting for the connection) gets its round now if it can. It returns how many rounds it
// started or re-armed.
func (s *Sync) Sweep(ctx context.Context) (int, error) {
	orgs, err := s.state.Partitions(ctx)
	if err != nil {
		return 0, err
	}
	now := s.cfg.Now().UTC()
	n := 0
	for _, org := range orgs {
		st, _, err := tablestore.Get[state](ctx, s.state, org, stateKey)
		if err != nil || !st.Dirty {
			continue
		}
		if !st.TriggerAt.IsZero() && now.Sub(st.TriggerAt) < 2*s.cfg.Debounce+time.Minute {
			continue // its nudge is pending or being handled
		}
		if err := s.trigger(ctx, org, time.Time{}); err != nil {
			s.log.WarnContext(ctx, "realtime: sweeping a dirty org", "org", org.String(), "error", err.Error())
			continue
		}
		n++
	}
	return n, nil
}
