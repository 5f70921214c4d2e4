package schedule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Table is the scheduler's state table: one row per org, holding the latest slot served.
const Table = "schedulestate"

const rowKey = "dirsync"

// ClaimLease is how long a claim on a slot (see Scheduler) keeps other invocations away. An
// invocation that died between claiming a slot and recording the start loses its claim after
// this long, and a later invocation serves the slot. It is longer than a Functions invocation may
// run (10 minutes on the Consumption plan) and shorter than twice the 15-minute timer period.
const ClaimLease = 20 * time.Minute

// SettingsReader reads an org's sync settings (syncsettings.Store).
type SettingsReader interface {
	Get(ctx context.Context, org tablestore.Org) (syncsettings.Settings, tablestore.ETag, error)
}

// Starter starts a sync run (dirsync.Engine). It answers started=false with the run already
// running or held, and connection.ErrNotConnected for an org that is not connected.
type Starter interface {
	Start(ctx context.Context, org tablestore.Org, opts dirsync.StartOptions) (dirsync.Run, bool, error)
}

// Config wires a Scheduler.
type Config struct {
	// Orgs lists the orgs to consider, e.g. (*syncsettings.Store).Orgs: orgs that never saved
	// settings are manual and never scheduled.
	Orgs     func(ctx context.Context) ([]tablestore.Org, error)
	Settings SettingsReader
	Starter  Starter
	// Store holds the Table of served slots.
	Store *tablestore.Store
	// Logger defaults to discarding; Now to time.Now.
	Logger *slog.Logger
	Now    func() time.Time
	// Parallel bounds how many orgs are handled at once; default 8.
	Parallel int
}

// Scheduler starts the scheduled syncs that are due. Its Run is called by the SyncScheduler timer
// function every 15 minutes; overlapping calls (a slow invocation and the next one, or two hosts)
// are safe.
//
// # Rules
//
// For each org with a schedule, the due slot is Latest(settings, now). The scheduler keeps, per org,
// the latest slot it served. A slot later than that one is due, and is served once:
//
//   - Missed slots (the host was down for hours or days) are not replayed one by one: only the
//     latest is served, so an outage costs at most one catch-up run.
//   - A slot that passed before the org's schedule was last changed (Settings.ScheduleUpdatedAt after the
//     slot) is recorded as served without a run. An admin who turns on a daily sync at 10:00 gets
//     the first run at 06:00 the next day, not a surprise run at 10:00; the same holds when a
//     schedule is switched on again after being manual. This is the baseline of an org seen for
//     the first time.
//   - A run that is already running or held for approval (Start answers started=false) serves the
//     slot: the data will be as fresh as that run makes it, and a second run could not start anyway.
//   - An org that is not connected (connection.ErrNotConnected) is skipped and the slot stays due:
//     every timer tick tries again (one cheap read), and when the admin reconnects, the next tick
//     starts one catch-up run, because the admin asked for data no older than the schedule says.
//   - Any other failure (settings unreadable, Start failing) is reported for that org only, and the
//     slot stays due so the next tick retries; the other orgs are handled as usual.
//
// # No double starts
//
// Before starting a run, an invocation claims the slot by writing it, with the claim time, to the
// org's row under the row's ETag. Of two overlapping invocations, only one write succeeds; the other
// sees tablestore.ErrConflict (or the fresh claim) and skips the org. After Start, the claimant
// records the slot as served (or, when Start failed, drops the claim) under the claim's ETag. A claim
// older than ClaimLease is abandoned (the claimant died) and may be taken over.
type Scheduler struct {
	cfg   Config
	table *tablestore.Table
	log   *slog.Logger
}

// New returns a Scheduler. Orgs, Settings, Starter and Store are required.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Orgs == nil || cfg.Settings == nil || cfg.Starter == nil || cfg.Store == nil {
		return nil, errors.New("schedule: Orgs, Settings, Starter and Store are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{cfg: cfg, table: cfg.Store.Table(Table), log: log.With("component", "schedule")}, nil
}

// Result is what one Run did, each list sorted by org. Orgs with nothing due are not listed.
type Result struct {
	Started   []Started
	Skipped   []Skipped
	Failed    []OrgError
	Recovered []Recovered
}

// Recovered is a stalled run the tick found: its lost step was republished, or, after too many
// recoveries without progress, the run was failed and the org freed (Run.State says which).
type Recovered struct {
	Org tablestore.Org
	Run dirsync.Run
}

// recoverer is what a Starter may also offer (dirsync.Engine): recovery of a run whose step
// message was lost. The tick is its natural home: it visits every org, every 15 minutes, whether
// or not a slot is due.
type recoverer interface {
	Recover(ctx context.Context, org tablestore.Org) (dirsync.Run, bool, error)
}

// Started is a served slot: a run was started, or one was already running or held (New false).
type Started struct {
	Org  tablestore.Org
	Slot time.Time
	Run  dirsync.Run
	New  bool
}

// Reason says why a due slot was not served by a run.
type Reason string

const (
	// NotConnected: Start answered connection.ErrNotConnected; the slot stays due.
	NotConnected Reason = "not_connected"
	// Claimed: another invocation is serving the slot right now.
	Claimed Reason = "claimed"
	// Baseline: the slot passed before the settings were saved; it is recorded without a run.
	Baseline Reason = "baseline"
)

// Skipped is a due slot that no run served.
type Skipped struct {
	Org    tablestore.Org
	Slot   time.Time
	Reason Reason
}

// OrgError is one org's failure; the slot (if any) stays due.
type OrgError struct {
	Org  tablestore.Org
	Slot time.Time // zero when it could not be computed
	Err  error
}

func (e OrgError) Error() string { return fmt.Sprintf("schedule: org %s: %v", e.Org, e.Err) }
func (e OrgError) Unwrap() error { return e.Err }

// state is an org's row in Table.
type state struct {
	Served    time.Time `json:"served,omitzero"`    // latest slot served (or recorded as baseline)
	RunID     string    `json:"runId,omitempty"`    // the run that served it
	Claim     time.Time `json:"claim,omitzero"`     // slot being served by an invocation
	ClaimedAt time.Time `json:"claimedAt,omitzero"` // when it was claimed
}

// Run starts every due scheduled sync. It returns an error only when the orgs cannot be listed (or
// ctx ends before every org was looked at); per-org failures are in Result.Failed, and logged.
func (s *Scheduler) Run(ctx context.Context) (Result, error) {
	orgs, err := s.cfg.Orgs(ctx)
	if err != nil {
		s.log.ErrorContext(ctx, "listing orgs failed", "err", err)
		return Result{}, fmt.Errorf("schedule: listing orgs: %w", err)
	}
	now := s.cfg.Now()
	var (
		res Result
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, s.cfg.Parallel)
	)
	for _, org := range orgs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.org(ctx, org, now, func(f func(*Result)) { mu.Lock(); f(&res); mu.Unlock() })
		}()
	}
	wg.Wait()
	byOrg := func(a, b tablestore.Org) int { return cmp.Compare(a.String(), b.String()) }
	slices.SortFunc(res.Started, func(a, b Started) int { return byOrg(a.Org, b.Org) })
	slices.SortFunc(res.Skipped, func(a, b Skipped) int { return byOrg(a.Org, b.Org) })
	slices.SortFunc(res.Failed, func(a, b OrgError) int { return byOrg(a.Org, b.Org) })
	slices.SortFunc(res.Recovered, func(a, b Recovered) int { return byOrg(a.Org, b.Org) })
	s.log.InfoContext(ctx, "scheduled syncs", "orgs", len(orgs), "started", len(res.Started),
		"skipped", len(res.Skipped), "failed", len(res.Failed), "recovered", len(res.Recovered))
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("schedule: %w", err)
	}
	return res, nil
}

// org serves org's due slot, if any, and reports through add.
func (s *Scheduler) org(ctx context.Context, org tablestore.Org, now time.Time, add func(func(*Result))) {
	log := s.log.With("org", org.String())
	var slot time.Time
	fail := func(err error) {
		err = entra.Redacted(err) // a storage or queue error may name a URL with its query
		log.ErrorContext(ctx, "scheduled sync failed", "slot", slot, "err", err)
		add(func(r *Result) { r.Failed = append(r.Failed, OrgError{org, slot, err}) })
	}
	skip := func(why Reason) {
		log.InfoContext(ctx, "scheduled sync skipped", "slot", slot, "reason", string(why))
		add(func(r *Result) { r.Skipped = append(r.Skipped, Skipped{org, slot, why}) })
	}

	// First the org's running run, if its step was lost: recovered, it serves the slot as any
	// running run does; failed for good, it frees the org for the slot's run below.
	if rec, ok := s.cfg.Starter.(recoverer); ok {
		run, recovered, err := rec.Recover(ctx, org)
		switch {
		case err != nil:
			log.ErrorContext(ctx, "recovering a stalled run failed", "err", err)
			add(func(r *Result) {
				r.Failed = append(r.Failed, OrgError{org, time.Time{}, fmt.Errorf("recovering stalled run: %w", err)})
			})
		case recovered:
			log.WarnContext(ctx, "stalled sync run recovered", "run", run.ID, "state", string(run.State), "recoveries", run.Recoveries)
			add(func(r *Result) { r.Recovered = append(r.Recovered, Recovered{org, run}) })
		}
	}

	settings, _, err := s.cfg.Settings.Get(ctx, org)
	if err != nil {
		fail(fmt.Errorf("reading settings: %w", err))
		return
	}
	if settings.Frequency == syncsettings.Manual {
		return
	}
	slot, ok := Latest(settings, now)
	if !ok {
		fail(fmt.Errorf("no schedule for frequency %q in time zone %q", settings.Frequency, settings.TimeZone))
		return
	}
	st, etag, err := tablestore.Get[state](ctx, s.table, org, rowKey)
	if err != nil && !errors.Is(err, tablestore.ErrNotFound) {
		fail(fmt.Errorf("reading schedule state: %w", err))
		return
	}
	if !slot.After(st.Served) {
		return // served already
	}
	if !st.Claim.IsZero() && now.Sub(st.ClaimedAt) < ClaimLease {
		skip(Claimed)
		return
	}
	if scheduleChanged(settings).After(slot) {
		_, err := s.put(ctx, org, state{Served: slot}, etag)
		switch {
		case errors.Is(err, tablestore.ErrConflict):
			skip(Claimed)
		case err != nil:
			fail(fmt.Errorf("recording baseline: %w", err))
		default:
			skip(Baseline)
		}
		return
	}

	if st.Claim.Equal(slot) {
		// An earlier invocation claimed this slot and never recorded it served: it may have
		// started the run before it died. If so, that run serves the slot; a second is not started.
		if run, ok, err := s.startedSince(ctx, org, st.ClaimedAt); err != nil {
			fail(fmt.Errorf("looking for the run of a lapsed claim: %w", err))
			return
		} else if ok {
			if _, err := s.put(ctx, org, state{Served: slot, RunID: run.ID}, etag); err != nil && !errors.Is(err, tablestore.ErrConflict) {
				fail(fmt.Errorf("recording served slot: %w", err))
				return
			}
			add(func(r *Result) { r.Started = append(r.Started, Started{org, slot, run, false}) })
			return
		}
	}

	claim := state{Served: st.Served, RunID: st.RunID, Claim: slot, ClaimedAt: now}
	claimTag, err := s.put(ctx, org, claim, etag)
	if errors.Is(err, tablestore.ErrConflict) {
		skip(Claimed)
		return
	}
	if err != nil {
		fail(fmt.Errorf("claiming slot: %w", err))
		return
	}

	run, started, err := s.cfg.Starter.Start(ctx, org, dirsync.StartOptions{Trigger: "schedule"})
	if err != nil {
		// Drop the claim so the next tick tries again; if this write fails, the lease runs out.
		if _, rerr := s.put(ctx, org, state{Served: st.Served, RunID: st.RunID}, claimTag); rerr != nil {
			log.WarnContext(ctx, "dropping claim failed; it expires by itself", "slot", slot, "err", rerr)
		}
		if errors.Is(err, connection.ErrNotConnected) {
			skip(NotConnected)
			return
		}
		fail(fmt.Errorf("starting run: %w", err))
		return
	}
	log.InfoContext(ctx, "scheduled sync", "slot", slot, "run", run.ID, "new", started)
	add(func(r *Result) { r.Started = append(r.Started, Started{org, slot, run, started}) })
	if _, err := s.put(ctx, org, state{Served: slot, RunID: run.ID}, claimTag); err != nil {
		// The run is going; after ClaimLease a later tick calls Start again, which answers with
		// this run while it is still running.
		log.ErrorContext(ctx, "recording served slot failed", "slot", slot, "run", run.ID, "err", err)
	}
}

// runLister is what a Starter may also offer: the org's runs, newest first (dirsync.Engine).
type runLister interface {
	Runs(ctx context.Context, org tablestore.Org, limit int) ([]dirsync.Run, error)
}

// startedSince finds a scheduled run of org started at or after t.
func (s *Scheduler) startedSince(ctx context.Context, org tablestore.Org, t time.Time) (dirsync.Run, bool, error) {
	lister, ok := s.cfg.Starter.(runLister)
	if !ok {
		return dirsync.Run{}, false, nil
	}
	runs, err := lister.Runs(ctx, org, 10)
	if err != nil {
		return dirsync.Run{}, false, err
	}
	for _, r := range runs {
		if r.Trigger == "schedule" && !r.StartedAt.Before(t) {
			return r, true, nil
		}
	}
	return dirsync.Run{}, false, nil
}

// put writes v as org's state: an insert when etag is "" (no row yet), else an ETag-guarded replace.
func (s *Scheduler) put(ctx context.Context, org tablestore.Org, v state, etag tablestore.ETag) (tablestore.ETag, error) {
	return s.table.Save(ctx, org, rowKey, v, etag)
}

// scheduleChanged is when the org's schedule last changed; settings saved before that field
// existed fall back to their save time.
func scheduleChanged(s syncsettings.Settings) time.Time {
	if !s.ScheduleUpdatedAt.IsZero() {
		return s.ScheduleUpdatedAt
	}
	return s.UpdatedAt
}
