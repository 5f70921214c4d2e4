package dirsync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// A run is a chain of messages: if one is lost — dead-lettered after the handler crashed on it,
// dropped with a local host, or never published because the start died between recording the
// run and publishing its first step — nothing would ever run the next step, and the org would
// stay claimed by a "running" run for ever. Recover is the way out: it is called by the
// scheduler's tick for every org and by Start when the org is claimed by a running run.

// Recover republishes the current step of org's active run when the run has shown no heartbeat
// for longer than StallAfter (and no rescheduled step is due), recording the recovery on the run;
// after MaxRecoveries recoveries without progress it fails the run and frees the org. It frees an
// org whose claim names a run that was never recorded. recovered says whether it acted; run is
// the active run as it left it (zero when there is none).
func (e *Engine) Recover(ctx context.Context, org tablestore.Org) (run Run, recovered bool, err error) {
	st, _, err := tablestore.Get[syncState](ctx, e.state, org, usersStateKey)
	if errors.Is(err, tablestore.ErrNotFound) {
		return Run{}, false, nil
	}
	if err != nil {
		return Run{}, false, err
	}
	return e.recover(ctx, org, st, e.cfg.Now().UTC())
}

// stalledSince is when run last showed life: its heartbeat, its start, or a rescheduled step's due time.
func stalledSince(run Run) time.Time {
	t := run.StartedAt
	for _, u := range []time.Time{run.Heartbeat, run.NotBefore} {
		if u.After(t) {
			t = u
		}
	}
	return t
}

func (e *Engine) recover(ctx context.Context, org tablestore.Org, st syncState, now time.Time) (Run, bool, error) {
	if st.ActiveRunID == "" {
		return Run{}, false, nil
	}
	run, etag, err := e.Run(ctx, org, st.ActiveRunID)
	if errors.Is(err, ErrRunNotFound) {
		// Start takes over a claim whose run was never recorded; nothing to republish.
		return Run{}, false, nil
	}
	if err != nil {
		return Run{}, false, err
	}
	since := stalledSince(run)
	if run.State != Running || now.Sub(since) < e.cfg.StallAfter {
		return run, false, nil
	}
	log := e.cfg.Logger.With("org", org.String(), "run", run.ID, "step", run.Step, "phase", run.Phase)
	lost := fmt.Sprintf("no progress since %s: the step message was lost or dead-lettered", since.Format(time.RFC3339))
	if run.Deliveries > 1 {
		lost += fmt.Sprintf(" (its last message was delivered %d times)", run.Deliveries)
	}
	if run.Stalled >= e.cfg.MaxRecoveries {
		msg := fmt.Sprintf("sync stalled at step %d (%s phase) after %d recoveries without progress; %s", run.Step, run.Phase, run.Stalled, lost)
		run.addError(RunError{Code: "stalled", Detail: msg, Hint: "Sync again; if it stalls again, contact support with this run's id."})
		log.ErrorContext(ctx, "stalled sync run failed", "recoveries", run.Stalled)
		if err := e.finish(ctx, org, run, etag, Failed, msg); err != nil {
			return Run{}, false, err
		}
		run, _, err = e.Run(ctx, org, run.ID)
		return run, true, err
	}
	run.Recoveries++
	run.Stalled++
	run.Heartbeat, run.NotBefore = now, time.Time{} // the next recovery waits a full StallAfter again
	run.addError(RunError{Code: "step_lost", Detail: fmt.Sprintf("%s; resumed from step %d (%s phase)", lost, run.Step, run.Phase),
		Hint: "Nothing to do: the run resumed from its last checkpoint."})
	if _, err := e.runs.Update(ctx, org, run.ID, run, etag, tablestore.Replace); err != nil {
		if errors.Is(err, tablestore.ErrConflict) {
			return run, false, nil // a step moved it meanwhile: not lost after all
		}
		return Run{}, false, err
	}
	if err := e.publish(ctx, Job{Org: org.String(), RunID: run.ID, Step: run.Step, Recovery: run.Recoveries}, time.Time{}); err != nil {
		return Run{}, false, fmt.Errorf("dirsync: republishing step %d of run %s: %w", run.Step, run.ID, err)
	}
	log.WarnContext(ctx, "stalled sync run recovered: step republished from its checkpoint", "recoveries", run.Recoveries, "stalled_since", since)
	return run, true, nil
}
