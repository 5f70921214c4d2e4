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
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// directory is the slice of the Graph client a sync needs.
type directory interface {
	UsersDelta(ctx context.Context, tenantID, link string) (entra.UserPage, error)
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

// Tables used by sync.
const (
	RunsTable         = "syncruns"
	StateTable        = "syncstate"
	StakeholdersTable = "stakeholders"
)

// ErrRunNotFound is returned for an unknown run id.
var ErrRunNotFound = errors.New("dirsync: no such run")

// Config configures an Engine.
type Config struct {
	Store     *tablestore.Store
	Directory directory
	Queue     publisher
	Tenants   tenants
	Reauth    reauthorizer // optional
	Logger    *slog.Logger
	Now       func() time.Time
	// StepBudget is how long one step keeps fetching pages before it hands over to a new
	// message; default 2 minutes, well inside the host's function timeout.
	StepBudget time.Duration
	// GiveUpAfter is the delivery count at which a step that keeps failing fails its run rather
	// than leave it running until the message is dead-lettered; default 5.
	GiveUpAfter int
}

// Engine starts runs and executes their steps.
type Engine struct {
	cfg          Config
	runs, state  *tablestore.Table
	stakeholders *tablestore.Table
}

// New returns an Engine.
func New(cfg Config) *Engine {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StepBudget <= 0 {
		cfg.StepBudget = 2 * time.Minute
	}
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = 5
	}
	return &Engine{cfg: cfg, runs: cfg.Store.Table(RunsTable), state: cfg.Store.Table(StateTable), stakeholders: cfg.Store.Table(StakeholdersTable)}
}

// syncState is the org's persistent sync state (table "syncstate", key "users").
type syncState struct {
	DeltaLink   string    `json:"deltaLink"`
	ActiveRunID string    `json:"activeRunId"`
	ClaimedAt   time.Time `json:"claimedAt,omitzero"` // when ActiveRunID claimed the org
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
	Retry int    `json:"retry,omitempty"` // rescheduled after throttling
}

func (j Job) messageID() string { return fmt.Sprintf("%s/%s/%d/%d", j.Org, j.RunID, j.Step, j.Retry) }

// Start begins a run for org unless one is already running, in which case it returns that one
// with started false. The org must be connected.
func (e *Engine) Start(ctx context.Context, org tablestore.Org, trigger string) (run Run, started bool, err error) {
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
			return active, false, nil
		case errors.Is(err, ErrRunNotFound) && now.Sub(st.ClaimedAt) < claimGrace:
			// Claimed by a start that has not recorded its run yet: taking the org over
			// here would start a second run beside it.
			return e.runningOrRetry(ctx, org, trigger)
		case err != nil && !errors.Is(err, ErrRunNotFound):
			return Run{}, false, err
		}
	}
	run = Run{ID: newRunID(now, rand.Uint32()), State: Running, Kind: "delta", Trigger: trigger, StartedAt: now}
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
		return e.runningOrRetry(ctx, org, trigger)
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
		if ferr := e.finish(ctx, org, run, runETag, Failed, "", err.Error()); ferr != nil {
			e.cfg.Logger.WarnContext(ctx, "could not fail an unpublished run", "org", org.String(), "run", run.ID, "error", ferr.Error())
		}
		return Run{}, false, err
	}
	e.cfg.Logger.InfoContext(ctx, "sync run started", "org", org.String(), "run", run.ID, "kind", run.Kind, "trigger", trigger)
	return run, true, nil
}

// runningOrRetry answers a start that lost the race: the winner's run.
func (e *Engine) runningOrRetry(ctx context.Context, org tablestore.Org, trigger string) (Run, bool, error) {
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
		time.Sleep(50 * time.Millisecond)
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

func (e *Engine) publish(ctx context.Context, j Job, notBefore time.Time) error {
	body, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return e.cfg.Queue.Publish(ctx, queue.Message{Queue: queue.SyncJobs, ID: j.messageID(), Body: body, ContentType: "application/json", Subject: "sync-step", NotBefore: notBefore})
}
