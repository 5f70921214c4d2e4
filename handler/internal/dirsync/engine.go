package dirsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// directory is the slice of the Graph client a sync needs.
type directory interface {
	UsersDelta(ctx context.Context, tenantID, link string) (entra.UserPage, error)
	User(ctx context.Context, tenantID, id string) (entra.User, error)
	Group(ctx context.Context, tenantID, id string) (entra.Group, error)
	TransitiveUserIDs(ctx context.Context, tenantID, groupID string) ([]string, error)
}

// userCounter is optional: a directory that can count users gives full runs a progress total.
type userCounter interface {
	CountUsers(ctx context.Context, tenantID string) (int, error)
}

// publisher enqueues the next step of a run.
type publisher interface {
	Publish(ctx context.Context, m queue.Message) error
}

// tenants resolves an org's connected tenant.
type tenants interface {
	Tenant(ctx context.Context, org tablestore.Org) (string, error)
}

// reauthorizer records that an org's tenant refused our token, so the admin sees
// "needs re-authorization" on the connection, not only on the run.
type reauthorizer interface {
	NeedsReauthorization(ctx context.Context, org tablestore.Org, reason string, now time.Time) error
}

// settingsReader reads an org's sync settings.
type settingsReader interface {
	Get(ctx context.Context, org tablestore.Org) (syncsettings.Settings, tablestore.ETag, error)
}

// Tables used by sync.
const (
	RunsTable    = "syncruns"
	StateTable   = "syncstate"
	PendingTable = "syncpending"
)

// Errors.
var (
	ErrRunNotFound = errors.New("dirsync: no such run")
	ErrNotHeld     = errors.New("dirsync: the run is not waiting for approval")
	// ErrNotCancellable: the run is over (succeeded, failed or cancelled already); the error
	// names its state, and the run is returned with it.
	ErrNotCancellable = errors.New("dirsync: the run cannot be cancelled")
	// ErrUnknownTrigger: StartOptions.Trigger is not one of the Trigger constants.
	ErrUnknownTrigger = errors.New("dirsync: unknown run trigger")
)

// Config configures an Engine.
type Config struct {
	Store     *tablestore.Store
	Directory directory
	Queue     publisher
	Tenants   tenants
	Settings  settingsReader // default: syncsettings.NewStore(Store)
	Reauth    reauthorizer   // optional
	Logger    *slog.Logger
	Now       func() time.Time
	// StepBudget is how long one step keeps working before it hands over to a new message;
	// default 2 minutes, well inside the host's function timeout.
	StepBudget time.Duration
	// GiveUpAfter is the delivery count at which a step that keeps failing fails its run rather
	// than leave it running until the message is dead-lettered; default 5.
	GiveUpAfter int
	// StallAfter is how long a running run may show no heartbeat (and no rescheduled step due)
	// before its step message is taken for lost and republished from the checkpoint; default 20
	// minutes: longer than a step can take (the host's 10-minute function timeout) plus a
	// redelivery.
	StallAfter time.Duration
	// MaxRecoveries is how many republications without progress fail the run; default 3.
	MaxRecoveries int
	// MaxReschedules is how many times in a row one step is put off after transient Graph or
	// storage failures before they count as permanent and fail the run; default 10 (with the
	// back-off, over an hour of failures).
	MaxReschedules int
	// ScopeFetchMax is how many users a delta run's scope phase fetches one by one (users who
	// joined the group filter without changing themselves) before it turns into a full round
	// instead; default 2000. A filter widened by a large group would otherwise cost a Graph
	// request per member, where a full round reads 200 users a request.
	ScopeFetchMax int
}

// Engine starts runs and executes their steps.
type Engine struct {
	cfg          Config
	runs, state  *tablestore.Table
	pending      *tablestore.Table
	changes      *tablestore.Table
	stakeholders *stakeholder.Store
	groups       *stakeholder.Groups
}

// New returns an Engine.
func New(cfg Config) *Engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Settings == nil {
		cfg.Settings = syncsettings.NewStore(cfg.Store)
	}
	orDefault(&cfg.StepBudget, 2*time.Minute)
	orDefault(&cfg.GiveUpAfter, 5)
	orDefault(&cfg.StallAfter, 20*time.Minute)
	orDefault(&cfg.MaxRecoveries, 3)
	orDefault(&cfg.MaxReschedules, 10)
	orDefault(&cfg.ScopeFetchMax, 2000)
	return &Engine{
		cfg: cfg, runs: cfg.Store.Table(RunsTable), state: cfg.Store.Table(StateTable),
		pending: cfg.Store.Table(PendingTable), changes: cfg.Store.Table(ChangesTable),
		stakeholders: stakeholder.NewStore(cfg.Store), groups: stakeholder.NewGroups(cfg.Store),
	}
}

// orDefault sets *v to def unless *v is positive.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// syncState is the org's persistent sync state (table "syncstate", key "users").
type syncState struct {
	DeltaLink   string    `json:"deltaLink"`
	ActiveRunID string    `json:"activeRunId"`
	ClaimedAt   time.Time `json:"claimedAt,omitzero"` // when ActiveRunID claimed the org
	// Synced is how many synced stakeholders were active after the last successful run: the
	// base of the deletion guard's percentage and of "records synced", kept so a delta run need
	// not count the directory.
	Synced int `json:"synced"`
}

// claimGrace is how long a claim whose run is not recorded yet is taken for a start in
// progress; an older one was left by a start that crashed in between, and is taken over.
const claimGrace = time.Minute

const usersStateKey = "users"

// Job is the body of a sync-jobs message: run step Step of run RunID of org Org.
type Job struct {
	Org   string `json:"org"`
	RunID string `json:"runId"`
	Step  int    `json:"step"`
	Retry int    `json:"retry,omitempty"` // rescheduled after throttling, a transient failure or a resync
	// Recovery is the run's recovery count when the message republishes a lost step: a fresh
	// message id, since Service Bus drops a repeated id within its duplicate-detection window.
	Recovery int `json:"recovery,omitempty"`
}

func (j Job) messageID() string {
	id := fmt.Sprintf("%s/%s/%d/%d", j.Org, j.RunID, j.Step, j.Retry)
	if j.Recovery > 0 {
		id += fmt.Sprintf("/r%d", j.Recovery)
	}
	return id
}

// Start begins a run for org unless one is already running or held, in which case it returns
// that one with started false. The org must be connected.
func (e *Engine) Start(ctx context.Context, org tablestore.Org, opts StartOptions) (run Run, started bool, err error) {
	if opts.Trigger == "" {
		opts.Trigger = TriggerManual
	}
	if !validTrigger(opts.Trigger) {
		// A caller's bug, refused before anything is claimed: the history must say truly what
		// started each run.
		return Run{}, false, fmt.Errorf("%w %q: want %s, %s, %s or %s", ErrUnknownTrigger, opts.Trigger,
			TriggerSchedule, TriggerManual, TriggerNotification, TriggerResync)
	}
	if _, err := e.cfg.Tenants.Tenant(ctx, org); err != nil {
		return Run{}, false, err
	}
	st, etag, err := tablestore.Get[syncState](ctx, e.state, org, usersStateKey)
	if err != nil && !errors.Is(err, tablestore.ErrNotFound) {
		return Run{}, false, err
	}
	now := e.cfg.Now().UTC()
	if st.ActiveRunID != "" {
		active, _, err := e.Run(ctx, org, st.ActiveRunID)
		switch {
		case err == nil && active.State == Running:
			// A run whose step message is gone would hold the org for ever: recover it here too,
			// so an admin who syncs again is not left waiting for the scheduler's tick.
			if rec, _, rerr := e.recover(ctx, org, st, now); rerr == nil {
				active = rec
			} else {
				e.cfg.Logger.WarnContext(ctx, "recovering a stalled run failed", "org", org.String(), "run", active.ID, "error", rerr.Error())
			}
			if active.State == Running || active.State == Held {
				return active, false, nil
			}
			return e.Start(ctx, org, opts) // the stalled run failed for good: the org is free
		case err == nil && active.State == Held:
			return active, false, nil
		case errors.Is(err, ErrRunNotFound) && now.Sub(st.ClaimedAt) < claimGrace:
			// Claimed by a start that has not recorded its run yet: taking the org over
			// here would start a second run beside it.
			return e.runningOrRetry(ctx, org)
		case err != nil && !errors.Is(err, ErrRunNotFound):
			return Run{}, false, err
		}
	}
	run = Run{ID: newRunID(now, rand.Uint32()), State: Running, Kind: "delta", Trigger: opts.Trigger, DryRun: opts.DryRun,
		StartedAt: now, Heartbeat: now, Phase: PhaseUsers, Errors: []RunError{}}
	if st.DeltaLink == "" {
		run.Kind = "full"
	}
	st.ActiveRunID, st.ClaimedAt = run.ID, now
	// Claim the org first: of two concurrent starts, one update fails on the ETag.
	if etag == "" {
		_, err = e.state.Insert(ctx, org, usersStateKey, st)
	} else {
		_, err = e.state.Update(ctx, org, usersStateKey, st, etag, tablestore.Replace)
	}
	if errors.Is(err, tablestore.ErrConflict) {
		return e.runningOrRetry(ctx, org)
	}
	if err != nil {
		return Run{}, false, err
	}
	runETag, err := e.runs.Insert(ctx, org, run.ID, run)
	if err != nil {
		return Run{}, false, err
	}
	if err := e.publish(ctx, Job{Org: org.String(), RunID: run.ID}, time.Time{}); err != nil {
		// Without its first message the run would stay "running" and hold the org forever.
		run.addError(RunError{Code: "unavailable", Detail: err.Error(), Hint: "The sync queue could not be reached; sync again shortly."})
		if ferr := e.finish(ctx, org, run, runETag, Failed, err.Error()); ferr != nil {
			e.cfg.Logger.WarnContext(ctx, "could not fail an unpublished run", "org", org.String(), "run", run.ID, "error", ferr.Error())
		}
		return Run{}, false, err
	}
	e.cfg.Logger.InfoContext(ctx, "sync run started", "org", org.String(), "run", run.ID, "kind", run.Kind, "trigger", run.Trigger, "dry_run", run.DryRun)
	return run, true, nil
}

// runningOrRetry answers a start that lost the race: the winner's run.
func (e *Engine) runningOrRetry(ctx context.Context, org tablestore.Org) (Run, bool, error) {
	st, _, err := tablestore.Get[syncState](ctx, e.state, org, usersStateKey)
	if err != nil {
		return Run{}, false, err
	}
	for range 20 { // the winner inserts its run right after claiming
		active, _, err := e.Run(ctx, org, st.ActiveRunID)
		if err == nil {
			return active, false, nil
		}
		if !errors.Is(err, ErrRunNotFound) {
			return Run{}, false, err
		}
		select {
		case <-ctx.Done():
			return Run{}, false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return Run{}, false, fmt.Errorf("dirsync: run %s claimed but not recorded: %w", st.ActiveRunID, tablestore.ErrConflict)
}

// Run returns one run of org.
func (e *Engine) Run(ctx context.Context, org tablestore.Org, id string) (Run, tablestore.ETag, error) {
	if !validRunID(id) {
		return Run{}, "", ErrRunNotFound
	}
	run, etag, err := tablestore.Get[Run](ctx, e.runs, org, id)
	if errors.Is(err, tablestore.ErrNotFound) {
		return Run{}, "", ErrRunNotFound
	}
	return run, etag, err
}

// Runs returns org's runs, newest first, at most limit.
func (e *Engine) Runs(ctx context.Context, org tablestore.Org, limit int) ([]Run, error) {
	var out []Run
	for row, err := range tablestore.Query[Run](ctx, e.runs, org, tablestore.QueryOptions{PageSize: min(limit, tablestore.MaxPageSize)}) {
		if err != nil {
			return nil, err
		}
		out = append(out, row.Value)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// Approve lets a run held by the deletion guard continue with its deactivations.
func (e *Engine) Approve(ctx context.Context, org tablestore.Org, id, approvedBy string) (Run, error) {
	run, etag, err := e.Run(ctx, org, id)
	if err != nil {
		return Run{}, err
	}
	if run.State != Held {
		return run, ErrNotHeld
	}
	run.State, run.Phase, run.Cursor = Running, PhaseDeprovision, ""
	// Running again from now: the hold was no stall, and Recover must give the approved step
	// a full StallAfter before taking its message for lost.
	run.Heartbeat, run.NotBefore = e.cfg.Now().UTC(), time.Time{}
	if run.Hold != nil {
		run.Hold.ApprovedBy = approvedBy
	}
	if _, err := e.runs.Update(ctx, org, run.ID, run, etag, tablestore.Replace); err != nil {
		if errors.Is(err, tablestore.ErrConflict) {
			return run, ErrNotHeld // approved by someone else meanwhile
		}
		return Run{}, err
	}
	if err := e.publish(ctx, Job{Org: org.String(), RunID: run.ID, Step: run.Step}, time.Time{}); err != nil {
		return Run{}, err
	}
	e.cfg.Logger.InfoContext(ctx, "held sync run approved", "org", org.String(), "run", run.ID, "by", approvedBy)
	return run, nil
}

func (e *Engine) publish(ctx context.Context, j Job, notBefore time.Time) error {
	body, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return e.cfg.Queue.Publish(ctx, queue.Message{Queue: queue.SyncJobs, ID: j.messageID(), Body: body, ContentType: "application/json", Subject: "sync-step", NotBefore: notBefore})
}
