package dirsync

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// MaxCancelledBy is the longest CancelledBy a run keeps, in characters (the API refuses longer).
const MaxCancelledBy = 200

// cancelAttempts bounds Cancel's read-and-replace rounds against steps checkpointing the run
// meanwhile: a step saves the run at most once a page, so a second round nearly always lands.
const cancelAttempts = 5

// Cancel stops a running or held run of org for good: the run becomes Cancelled (FinishedAt set,
// CancelledBy recorded when given) and the org is free for the next run at once. Nothing the run
// has not applied is applied: a held run's deactivations never are, and a step in flight stops
// at its next page or chunk (see stepper.stillRunning) or, at the latest, at its checkpoint,
// whose ETag no longer matches. Stakeholders written before stay as written: each is its own
// ETag-guarded write. The run's change log stays. The org's delta link is not moved on, so the
// next run reads from the link this one started from and misses nothing.
//
// A finished run (succeeded, failed, or cancelled already) is ErrNotCancellable, returned with
// the run; an unknown one ErrRunNotFound. A dry run is cancelled the same way.
func (e *Engine) Cancel(ctx context.Context, org tablestore.Org, id, by string) (Run, error) {
	by = clipRunes(by, MaxCancelledBy)
	for range cancelAttempts {
		run, etag, err := e.Run(ctx, org, id)
		if err != nil {
			return Run{}, err
		}
		if run.State.Final() {
			return run, fmt.Errorf("%w: it is %s", ErrNotCancellable, run.State)
		}
		run.CancelledBy = by
		done, err := e.end(ctx, org, run, etag, Cancelled, "")
		switch {
		case errors.Is(err, tablestore.ErrConflict):
			continue // a step checkpointed (or finished the run) meanwhile: read it again
		case err != nil && done.State == Cancelled:
			// Cancelled, but the org's claim could not be released: the next Start takes over a
			// claim whose run is final, so the answer is the cancelled run.
			e.cfg.Logger.WarnContext(ctx, "cancelled sync run: freeing the org failed", "org", org.String(), "run", id, "error", err.Error())
			return done, nil
		case err != nil:
			return Run{}, err
		}
		e.cfg.Logger.InfoContext(ctx, "sync run cancelled", "org", org.String(), "run", id, "was", string(run.State), "by", by,
			"phase", run.Phase, "step", run.Step, "dry_run", run.DryRun)
		return done, nil
	}
	return Run{}, fmt.Errorf("dirsync: cancelling run %s: it kept changing: %w", id, tablestore.ErrConflict)
}

// clipRunes shortens s to at most n characters.
func clipRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}
