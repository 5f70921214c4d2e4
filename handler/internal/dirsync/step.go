package dirsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// ErrBadJob marks a sync-jobs message that can never be processed.
var ErrBadJob = errors.New("dirsync: malformed job")

// Step runs one step of a run from a sync-jobs message body. It is idempotent: a redelivered or
// duplicated message for a step already checkpointed only makes sure the continuation exists.
// deliveryCount is the message's delivery count (1 on first delivery).
func (e *Engine) Step(ctx context.Context, body []byte, deliveryCount int) error {
	var j Job
	if err := json.Unmarshal(body, &j); err != nil || j.RunID == "" || j.Step < 0 {
		return fmt.Errorf("%w: %q", ErrBadJob, truncate(string(body), 200))
	}
	org, err := tablestore.NewOrg(j.Org)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadJob, err)
	}
	log := e.cfg.Logger.With("org", j.Org, "run", j.RunID, "step", j.Step)
	run, etag, err := e.Run(ctx, org, j.RunID)
	if errors.Is(err, ErrRunNotFound) {
		log.WarnContext(ctx, "sync step for an unknown run dropped")
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case run.State != Running:
		return nil // finished already: a duplicate delivery
	case j.Step < run.Step:
		// Checkpointed already; the continuation may not have been published before a crash.
		return e.publish(ctx, Job{Org: j.Org, RunID: run.ID, Step: run.Step}, time.Time{})
	case j.Step > run.Step:
		log.WarnContext(ctx, "sync step ahead of its run's checkpoint dropped", "checkpoint", run.Step)
		return nil
	}

	tenant, err := e.cfg.Tenants.Tenant(ctx, org)
	if err != nil {
		run.addError(RunError{Code: "not_connected", Detail: err.Error(), Hint: "Reconnect Microsoft 365 in Settings → Integrations."})
		return e.finish(ctx, org, run, etag, Failed, "", err.Error())
	}

	link := run.NextLink
	if run.Step == 0 && run.Kind == "delta" {
		st, _, err := tablestore.Get[syncState](ctx, e.state, org, usersStateKey)
		if err != nil && !errors.Is(err, tablestore.ErrNotFound) {
			return err
		}
		link = st.DeltaLink
		if link == "" {
			run.Kind = "full"
		}
	}
	deadline := e.cfg.Now().Add(e.cfg.StepBudget)
	for {
		page, err := e.cfg.Directory.UsersDelta(ctx, tenant, link)
		if err != nil {
			return e.fail(ctx, org, j, run, etag, err, deliveryCount, &link)
		}
		if err := e.writePage(ctx, org, &run, page.Users); err != nil {
			return e.retryOrFail(ctx, org, run, etag, err, deliveryCount)
		}
		run.Step++
		run.Pages++
		run.NextLink = page.NextLink
		if page.DeltaLink != "" {
			return e.finish(ctx, org, run, etag, Succeeded, page.DeltaLink, "")
		}
		if page.NextLink == "" {
			err := &entra.Error{Kind: entra.KindInvalid, Message: "users/delta page has neither nextLink nor deltaLink"}
			return e.retryOrFail(ctx, org, run, etag, err, deliveryCount)
		}
		if etag, err = e.runs.Update(ctx, org, run.ID, run, etag, tablestore.Replace); err != nil {
			if errors.Is(err, tablestore.ErrConflict) {
				log.WarnContext(ctx, "run checkpoint moved under this step; leaving it to the other worker")
				return nil
			}
			return err
		}
		if e.cfg.Now().After(deadline) {
			return e.publish(ctx, Job{Org: j.Org, RunID: run.ID, Step: run.Step}, time.Time{})
		}
		link = page.NextLink
	}
}

// fail handles a Graph error: resync restarts the round, throttling reschedules the step,
// refused access ends the run with advice, anything else is retried by redelivery.
func (e *Engine) fail(ctx context.Context, org tablestore.Org, j Job, run Run, etag tablestore.ETag, err error, deliveryCount int, link *string) error {
	var ge *entra.Error
	errors.As(err, &ge)
	switch entra.KindOf(err) {
	case entra.KindResync:
		// The delta token expired or was reset: a full round from scratch reaches the same state.
		e.cfg.Logger.InfoContext(ctx, "delta token expired; resyncing in full", "org", org.String(), "run", run.ID)
		run.Kind, run.NextLink = "full", ""
		if _, err := e.runs.Update(ctx, org, run.ID, run, etag, tablestore.Replace); err != nil {
			return err
		}
		return e.publish(ctx, Job{Org: j.Org, RunID: run.ID, Step: run.Step, Retry: j.Retry + 1}, time.Time{})
	case entra.KindThrottled:
		run.Throttled++
		wait := 30 * time.Second
		if ge != nil && ge.RetryAfter > 0 {
			wait = ge.RetryAfter
		}
		if _, err := e.runs.Update(ctx, org, run.ID, run, etag, tablestore.Replace); err != nil {
			return err
		}
		return e.publish(ctx, Job{Org: j.Org, RunID: run.ID, Step: run.Step, Retry: j.Retry + 1}, e.cfg.Now().Add(wait))
	case entra.KindUnauthorized:
		if e.cfg.Reauth != nil {
			if err := e.cfg.Reauth.NeedsReauthorization(ctx, org, err.Error(), e.cfg.Now()); err != nil {
				return err
			}
		}
		run.addError(RunError{Code: "unauthorized", Detail: err.Error(), Hint: "Re-authorize the Microsoft 365 connection: an admin must grant consent again."})
		return e.finish(ctx, org, run, etag, Failed, "", err.Error())
	case entra.KindForbidden:
		run.addError(RunError{Code: "permission_denied", Detail: err.Error(), Hint: "Check admin permissions: grant User.Read.All to the Leap Change app, then re-authorize."})
		return e.finish(ctx, org, run, etag, Failed, "", err.Error())
	}
	return e.retryOrFail(ctx, org, run, etag, err, deliveryCount)
}

// retryOrFail returns err so the message is redelivered, until it has been tried GiveUpAfter
// times; then the run fails with the error recorded, instead of staying "running" while its
// message sits in the dead-letter queue.
func (e *Engine) retryOrFail(ctx context.Context, org tablestore.Org, run Run, etag tablestore.ETag, err error, deliveryCount int) error {
	if deliveryCount < e.cfg.GiveUpAfter {
		return err
	}
	run.addError(RunError{Code: "unavailable", Detail: err.Error(), Hint: "Check network access to Microsoft Graph and Table Storage, then sync again."})
	return e.finish(ctx, org, run, etag, Failed, "", err.Error())
}

// finish records the run's end and frees the org for the next run. On success the delta link is
// kept for the next round.
func (e *Engine) finish(ctx context.Context, org tablestore.Org, run Run, etag tablestore.ETag, state State, deltaLink, lastError string) error {
	run.State, run.LastError, run.NextLink = state, lastError, ""
	run.FinishedAt = e.cfg.Now().UTC()
	if _, err := e.runs.Update(ctx, org, run.ID, run, etag, tablestore.Replace); err != nil {
		if errors.Is(err, tablestore.ErrConflict) {
			return nil // another delivery finished it
		}
		return err
	}
	st, stETag, err := tablestore.Get[syncState](ctx, e.state, org, usersStateKey)
	if err != nil {
		return err
	}
	if st.ActiveRunID == run.ID {
		st.ActiveRunID = ""
	}
	if deltaLink != "" {
		st.DeltaLink = deltaLink
	}
	if _, err := e.state.Update(ctx, org, usersStateKey, st, stETag, tablestore.Replace); err != nil {
		return fmt.Errorf("free org after run %s: %w", run.ID, err)
	}
	e.cfg.Logger.InfoContext(ctx, "sync run finished", "org", org.String(), "run", run.ID, "state", state,
		"pages", run.Pages, "processed", run.Processed, "written", run.Written, "deactivated", run.Deactivated, "invalid", run.Invalid)
	return nil
}

// writePage stores one page of users as stakeholders in ≤100-entity transactions. Users that
// cannot become stakeholders are recorded on the run and skipped; they never fail the page.
func (e *Engine) writePage(ctx context.Context, org tablestore.Org, run *Run, users []entra.User) error {
	now := e.cfg.Now().UTC()
	ops := make([]tablestore.Op, 0, len(users))
	for _, u := range users {
		run.Processed++
		if u.Removed != entra.NotRemoved {
			if u.ID == "" {
				continue
			}
			ops = append(ops, tablestore.UpsertOp(stakeholderKey(u.ID), deactivation{Active: false, ExternalID: u.ID, SyncedAt: now}, tablestore.Merge))
			run.Deactivated++
			continue
		}
		s, problem := fromUser(u, now)
		if problem != "" {
			run.Invalid++
			run.addError(RunError{Code: "invalid_data", Object: u.ID, Detail: problem, Hint: "Complete the user's profile in Entra ID; the next sync picks it up."})
			continue
		}
		if !s.Active {
			run.Deactivated++
		}
		ops = append(ops, tablestore.UpsertOp(stakeholderKey(u.ID), s, tablestore.Merge))
	}
	if err := e.stakeholders.Batch(ctx, org, ops); err != nil {
		return err
	}
	run.Written += len(ops)
	return nil
}

// deactivation is the merge written for a user removed from Entra: only these fields change.
type deactivation struct {
	Active     bool      `json:"active"`
	ExternalID string    `json:"externalId"`
	SyncedAt   time.Time `json:"syncedAt"`
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
