package dirsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// ErrBadJob marks a sync-jobs message that can never be processed.
var ErrBadJob = errors.New("dirsync: malformed job")

// stepper runs one step of one run: it owns the run record and what the step loaded.
type stepper struct {
	e        *Engine
	log      *slog.Logger
	job      Job
	org      tablestore.Org
	tenant   string
	settings syncsettings.Settings
	run      Run
	etag     tablestore.ETag
	// settled is the run as its last settled point left it: the stored record, or the end of
	// the step's last completed page or chunk, whose counts the change log and its markers
	// back. run runs ahead of it while a page is counted; a step that fails or is put off saves
	// settled (see durable), never a half-counted page a redo would count again.
	settled  Run
	deadline time.Time
	now      time.Time

	stats    *entra.RequestStats // this step's Graph throttling and retries (see absorb)
	absorbed entra.Snapshot      // the part of stats already added to run

	ahead      *prefetched     // the next users/delta page, being fetched
	unsaved    int             // users pages done since the run was last saved
	resuming   bool            // this step may redo steps a killed delivery recorded (see record)
	pendingIDs map[string]bool // this run\'s pending deactivations, once loaded (few: see withdrawPending)
	// pendingUncached: the run has too many pending deactivations to keep (pendingIDs is nil).
	pendingUncached bool
	open            map[string]time.Time // open conflicts by stakeholder id: read once a step, then kept by noteConflict
	allowed         map[string]bool      // in the group filter, of the users being applied; nil = all (see loadScope)
	scopeSt         *scopeState          // the stored closure's state, read once a step (see closureState)
	redo            bool                 // the page being written is a redo after a kill (see record)
	// A dry run's would-be links and addresses, for its own later lookups (see remember).
	dryLinks  map[string]stakeholder.Link
	dryEmails map[string]string
}

// Step runs one step of a run from a sync-jobs message body. It is idempotent: a redelivered or
// duplicated message for a step already checkpointed only makes sure the continuation exists.
// deliveryCount is the message's delivery count (1 on first delivery).
func (e *Engine) Step(ctx context.Context, body []byte, deliveryCount int) (err error) {
	// The error is logged by the host and the handler: a storage or network error may name a URL
	// with its query (a Graph link's $skiptoken, a SAS signature).
	defer func() { err = entra.Redacted(err) }()
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
		return nil // finished or held already: a duplicate delivery
	case j.Step < run.Step:
		// Checkpointed already; the continuation may not have been published before a crash.
		return e.publish(ctx, Job{Org: j.Org, RunID: run.ID, Step: run.Step}, time.Time{})
	case j.Step > run.Step:
		log.WarnContext(ctx, "sync step ahead of its run's checkpoint dropped", "checkpoint", run.Step)
		return nil
	}
	s := &stepper{e: e, log: log, job: j, org: org, run: run, etag: etag, now: e.cfg.Now().UTC(), resuming: true, stats: new(entra.RequestStats)}
	s.settle()
	s.deadline = s.now.Add(e.cfg.StepBudget)
	ctx = entra.WithRequestStats(ctx, s.stats)
	if deliveryCount > 1 && deliveryCount > s.run.Deliveries {
		// A redelivery: record it, so a step that keeps dying (and is dead-lettered in the end)
		// is visible on the run, not only in the queue. It is not failed here: deliveries also
		// fail while a host restarts its handler; a step that really crash-loops is dead-lettered,
		// recovered (see Recover), and failed after MaxRecoveries without progress.
		s.run.Deliveries = deliveryCount
		log.WarnContext(ctx, "sync step redelivered", "deliveries", deliveryCount)
		if err := s.checkpoint(ctx); err != nil {
			return s.fail(ctx, err, deliveryCount)
		}
	}
	if s.tenant, err = e.cfg.Tenants.Tenant(ctx, org); err != nil {
		s.run.addError(RunError{Code: "not_connected", Detail: err.Error(), Hint: "Reconnect Microsoft 365 in Settings → Integrations."})
		return e.finish(ctx, org, s.run, s.etag, Failed, err.Error())
	}
	if s.settings, _, err = e.cfg.Settings.Get(ctx, org); err != nil {
		return err
	}
	if err := s.loop(ctx); err != nil {
		return s.fail(ctx, err, deliveryCount)
	}
	return nil
}

// loop runs phases until the run finishes, is held, or the step's budget is spent.
func (s *stepper) loop(ctx context.Context) error {
	for first := true; ; first = false {
		if !first {
			// Between pages and chunks: a run cancelled meanwhile stops here, before anything
			// more is fetched or applied (Step read the run just before the first).
			if err := s.stillRunning(ctx); err != nil {
				return err
			}
		}
		done, err := s.phase(ctx)
		if err != nil {
			return err
		}
		if done {
			s.run.Phase, s.run.Cursor = s.next(s.run.Phase), ""
		}
		switch {
		case s.run.Phase == "":
			if err := s.countSynced(ctx); err != nil {
				return err
			}
			s.absorb()
			return s.e.finish(ctx, s.org, s.run, s.etag, Succeeded, "")
		case s.run.State == Held:
			s.run.Step++
			return s.checkpoint(ctx)
		}
		s.run.Step++
		s.settle() // the page or chunk is complete: its counts, change log and writes
		past := s.e.cfg.Now().After(s.deadline)
		// Users pages are saved every few pages: each page's marker (see record) makes a redo
		// from the last save exact, so the run record need not be rewritten per page. A dry run
		// records no markers, and its shadows (dryrun.go) say what the would-be stakeholder was
		// before one page only: it saves every page.
		s.unsaved++
		if s.run.Phase != PhaseUsers || s.run.DryRun || past || s.unsaved >= pagesPerSave {
			if err := s.checkpoint(ctx); err != nil {
				return err
			}
			s.unsaved = 0
		}
		if past {
			return s.e.publish(ctx, Job{Org: s.job.Org, RunID: s.run.ID, Step: s.run.Step}, time.Time{})
		}
	}
}

// pagesPerSave is how many users pages run between saves of the run record (progress shown to
// the admin moves in these steps too).
const pagesPerSave = 8

// errMoved says another delivery of this step checkpointed first, or the run was cancelled (its
// record changed under the step either way); this one stops quietly.
var errMoved = errors.New("run checkpoint moved")

// errStopped says the run is no longer running (cancelled, or finished by another delivery):
// the step stops quietly, writing nothing more.
var errStopped = errors.New("run no longer running")

// stillRunning re-reads the run and answers errStopped unless it is still running. A checkpoint
// would notice too (its ETag no longer matches), but users pages are saved only every few pages:
// this stops a cancelled run at the next page rather than after them.
func (s *stepper) stillRunning(ctx context.Context) error {
	cur, _, err := s.e.Run(ctx, s.org, s.run.ID)
	if err != nil {
		return err
	}
	if cur.State != Running {
		return fmt.Errorf("%w: it is %s", errStopped, cur.State)
	}
	return nil
}

// checkpoint saves the run: its progress, this step's Graph counts and its heartbeat.
func (s *stepper) checkpoint(ctx context.Context) error {
	s.absorb()
	s.run.Heartbeat, s.run.NotBefore = s.e.cfg.Now().UTC(), time.Time{}
	if s.run.Step > s.job.Step {
		s.run.Stalled = 0 // progress: recoveries so far were not in vain
	}
	etag, err := s.e.runs.Update(ctx, s.org, s.run.ID, s.run, s.etag, tablestore.Replace)
	if errors.Is(err, tablestore.ErrConflict) {
		return errMoved
	}
	if err != nil {
		return err
	}
	s.etag = etag
	s.settle()
	return nil
}

// settle makes the run as it is now the one a failure saves (see settled).
func (s *stepper) settle() {
	s.settled = s.run
	s.settled.Errors = slices.Clone(s.run.Errors)
}

// durable is the run a failed or put-off step saves: the settled run, with what happened to
// the run since that is not redone (reschedules, Graph throttling and retries, waits,
// deliveries, heartbeat, run-level errors; see keepLife). The counts of a page still in
// progress are left out: the redo from the settled point counts it again, once.
func (s *stepper) durable() Run {
	run := s.settled
	run.Errors = slices.Clone(run.Errors)
	keepLife(&run, s.run)
	return run
}

// absorb adds to the run what Graph's throttling and retries cost this step since the last absorb.
func (s *stepper) absorb() {
	now := s.stats.Snapshot()
	d := now.Sub(s.absorbed)
	s.absorbed = now
	s.run.Throttled += d.Throttled
	s.run.Retried += d.Retried
	s.run.WaitedSeconds += d.Waited.Seconds()
}

// marker is the state of a run right after a page (or deprovision chunk) logged its changes and
// before its writes. It is written in the same transaction as the page's last change-log rows,
// so when it exists the counts and log of that step are complete.
type marker struct {
	Run Run `json:"run"`
}

func markerKey(runID string, step int) string { return fmt.Sprintf("%s~%08d", runID, step) }

// record makes a step's counts and change log durable before its writes, without a run save of
// its own: logs writes the change log with the marker last. A step killed after its writes but
// before the run's next checkpoint is redone from the checkpoint; for each redone step whose
// marker exists, the counts of the first attempt are taken back and nothing is logged twice, and
// the writes are applied again (idempotent).
func (s *stepper) record(ctx context.Context, logs func(mark func() tablestore.Op) error) (again bool, err error) {
	if s.resuming {
		m, _, err := tablestore.Get[marker](ctx, s.e.changes, s.org, markerKey(s.run.ID, s.run.Step))
		switch {
		case err == nil && m.Run.Step == s.run.Step:
			m.Run.NextLink, m.Run.DeltaLink, m.Run.Cursor = s.run.NextLink, s.run.DeltaLink, s.run.Cursor
			keepLife(&m.Run, s.run)
			s.run = m.Run
			return true, nil
		case err != nil && !errors.Is(err, tablestore.ErrNotFound):
			return false, err
		}
		s.resuming = false // markers are written in step order: none comes after a missing one
	}
	mark := func() tablestore.Op {
		return tablestore.UpsertOp(markerKey(s.run.ID, s.run.Step), marker{Run: s.run}, tablestore.Replace)
	}
	return false, logs(mark)
}

// keepLife carries into an earlier state of a run (a marker's, or the settled run a failed step
// saves) what happened to the run after it: that state holds the counts, but recoveries,
// redeliveries, reschedules, waits and the run-level errors they recorded came later and are
// not redone.
func keepLife(m *Run, cur Run) {
	m.Heartbeat, m.NotBefore, m.Stalled = cur.Heartbeat, cur.NotBefore, cur.Stalled
	m.Recoveries, m.Deliveries = max(m.Recoveries, cur.Recoveries), max(m.Deliveries, cur.Deliveries)
	m.Rescheduled, m.Throttled, m.Retried = max(m.Rescheduled, cur.Rescheduled), max(m.Throttled, cur.Throttled), max(m.Retried, cur.Retried)
	m.WaitedSeconds = max(m.WaitedSeconds, cur.WaitedSeconds)
	for _, e := range cur.Errors {
		if e.Object == "" && !slices.Contains(m.Errors, e) {
			m.addError(e)
		}
	}
}

// phase runs (part of) the current phase; done says it is complete.
func (s *stepper) phase(ctx context.Context) (done bool, err error) {
	switch s.run.Phase {
	case PhaseMembership:
		return s.membership(ctx)
	case PhaseUsers:
		return s.usersPage(ctx)
	case PhaseScope:
		return s.scope(ctx)
	case PhaseUnseen:
		return s.unseen(ctx)
	case PhaseGuard:
		return s.guard(ctx)
	case PhaseDeprovision:
		return s.deprovision(ctx)
	case PhaseGroups:
		return s.syncGroups(ctx)
	case PhaseScopeMarks:
		return s.clearMarks(ctx)
	}
	return false, fmt.Errorf("dirsync: run %s is in unknown phase %q", s.run.ID, s.run.Phase)
}

// next is the phase after p for this run; "" when the run is complete.
func (s *stepper) next(p string) string {
	filtered := len(s.settings.GroupFilter) > 0
	order := []struct {
		phase string
		runs  bool
	}{
		{PhaseMembership, false}, // only before the users round, which asks for it (needsMembership)
		{PhaseUsers, true},
		{PhaseScope, filtered},
		{PhaseUnseen, s.run.Kind == "full" && !s.run.DryRun && s.run.HadSynced},
		{PhaseGuard, true},
		{PhaseDeprovision, !s.run.DryRun},
		{PhaseGroups, !s.run.DryRun}, // also retires mirrored groups once group sync is off
		{PhaseScopeMarks, filtered && !s.run.DryRun},
	}
	seen := false
	for _, o := range order {
		if seen && o.runs {
			return o.phase
		}
		seen = seen || o.phase == p
	}
	return ""
}

// fail handles an error of the step: resync restarts the users round; a transient failure
// (throttling, Graph 5xx or network, storage unavailable) that outlasted the in-process retries
// puts the step off with a growing delay, keeping the checkpoint so the step resumes where it
// stopped; refused access and other permanent Graph errors end the run with advice; anything
// else is retried by redelivery, and fails the run after GiveUpAfter deliveries. Whatever it
// saves starts from the durable run: a page the failure cut short is counted by its redo only.
func (s *stepper) fail(ctx context.Context, err error, deliveryCount int) error {
	switch {
	case errors.Is(err, errStopped):
		// Cancelled (or finished by another delivery): what this step wrote so far stays, each
		// stakeholder write complete on its own; the run record is not touched again.
		s.log.InfoContext(ctx, "sync step stopped: the run is no longer running", "reason", err.Error())
		return nil
	case errors.Is(err, errMoved):
		s.log.WarnContext(ctx, "run checkpoint moved under this step (another delivery, or the run was cancelled); stopping")
		return nil
	}
	s.absorb()
	e, run := s.e, s.durable()
	var ge *errkind.Error
	errors.As(err, &ge)
	action := errkind.Policy(err, deliveryCount, e.cfg.GiveUpAfter)
	switch {
	case ge == nil && action == errkind.GiveUp && deliveryCount < e.cfg.GiveUpAfter:
		action = errkind.Retry // a storage or queue refusal may be a deployment in progress: redelivery first
	case ge != nil && action == errkind.Retry:
		action = errkind.GiveUp // Graph answered and said no (an answer we cannot read): asking again gives the same answer
	}
	switch action {
	case errkind.Restart:
		// The delta token expired or was reset: a full round from scratch reaches the same state.
		s.log.InfoContext(ctx, "delta token expired; resyncing in full")
		run.Kind, run.Phase, run.NextLink, run.Cursor = "full", PhaseUsers, "", ""
		run.Pages, run.Processed = 0, 0 // progress restarts with the full round; outcomes so far stay counted
		run.Heartbeat = e.cfg.Now().UTC()
		if _, err := e.runs.Update(ctx, s.org, run.ID, run, s.etag, tablestore.Replace); err != nil {
			if errors.Is(err, tablestore.ErrConflict) {
				return nil // another delivery moved the run, or it was cancelled
			}
			return err
		}
		return e.publish(ctx, Job{Org: s.job.Org, RunID: run.ID, Step: run.Step, Retry: s.job.Retry + 1}, time.Time{})
	case errkind.RetryLater:
		return s.reschedule(ctx, run, ge, err)
	case errkind.Reauthorize:
		if e.cfg.Reauth != nil {
			if err := e.cfg.Reauth.NeedsReauthorization(ctx, s.org, err.Error(), e.cfg.Now()); err != nil {
				return err
			}
		}
		run.addError(RunError{Code: "unauthorized", Detail: err.Error(), Hint: "Re-authorize the Microsoft 365 connection: an admin must grant consent again."})
		return e.finish(ctx, s.org, run, s.etag, Failed, err.Error())
	case errkind.Retry:
		return err
	}
	switch {
	case ge != nil && ge.Kind == errkind.Forbidden:
		run.addError(RunError{Code: "permission_denied", Detail: err.Error(), Hint: "Check admin permissions: grant User.Read.All (and GroupMember.Read.All for group filters) to the Leap Change app, then re-authorize."})
		return e.finish(ctx, s.org, run, s.etag, Failed, err.Error())
	case ge != nil:
		// Graph answered, and said no (400, 404, an answer we cannot read): asking again gives
		// the same answer.
		run.addError(RunError{Code: "graph_error", Detail: err.Error(), Hint: "Sync again; if it fails again, contact support with this run's id."})
		return e.finish(ctx, s.org, run, s.etag, Failed, err.Error())
	}
	// Retried enough: fail the run with the error recorded, instead of leaving it running while
	// its message sits in the dead-letter queue.
	run.addError(RunError{Code: "unavailable", Detail: err.Error(), Hint: "Check network access to Microsoft Graph and Table Storage, then sync again."})
	return e.finish(ctx, s.org, run, s.etag, Failed, err.Error())
}

// reschedule puts the step off after a transient failure, keeping the run's checkpoint (the
// users round's next link included), so the later attempt resumes rather than restarts. After
// MaxReschedules in a row without progress the failure is taken for permanent.
func (s *stepper) reschedule(ctx context.Context, run Run, ge *errkind.Error, cause error) error {
	e := s.e
	retry := s.job.Retry + 1
	if run.Step != s.job.Step {
		retry = 1 // this step made progress before failing: a fresh series
	}
	if retry > e.cfg.MaxReschedules {
		code, hint := "unavailable", "Check network access to Microsoft Graph and Table Storage, then sync again."
		var service *errkind.Error // Graph's throttling, not the store's (tablestore.Error)
		if errors.As(cause, &service) && service.Kind == errkind.Throttled {
			code, hint = "rate_limited", "Microsoft Graph kept throttling the sync; sync again later."
		}
		msg := fmt.Sprintf("step %d (%s phase) failed %d times in a row: %v", run.Step, run.Phase, retry, cause)
		run.addError(RunError{Code: code, Detail: msg, Hint: hint})
		return e.finish(ctx, s.org, run, s.etag, Failed, msg)
	}
	wait := rescheduleDelay(retry)
	if ge != nil && ge.RetryAfter > 0 {
		wait = ge.RetryAfter // Graph said when: earlier is refused again, later is time lost
	}
	now := e.cfg.Now().UTC()
	run.Rescheduled++
	run.WaitedSeconds += wait.Seconds()
	run.Heartbeat, run.NotBefore = now, now.Add(wait)
	if _, err := e.runs.Update(ctx, s.org, run.ID, run, s.etag, tablestore.Replace); err != nil {
		if errors.Is(err, tablestore.ErrConflict) {
			return nil // another delivery moved the run
		}
		return err
	}
	s.log.WarnContext(ctx, "sync step put off after a transient failure", "retry", retry, "wait", wait, "error", entra.RedactURLs(cause.Error()))
	return e.publish(ctx, Job{Org: s.job.Org, RunID: run.ID, Step: run.Step, Retry: retry}, run.NotBefore)
}

// rescheduleDelay is the delay before the retry-th attempt of a step: 30 s doubling to at most
// 15 minutes, with jitter in [d/2, d] so that orgs failing together do not retry together.
func rescheduleDelay(retry int) time.Duration {
	return errkind.Backoff(retry, 30*time.Second, 15*time.Minute, rand.N[time.Duration])
}

// finish records the run's end and frees the org for the next run. A successful real run keeps
// its delta link for the next round; a dry run never does. A run whose record changed since it
// was read (another delivery finished it, or it was cancelled) is left as it is.
func (e *Engine) finish(ctx context.Context, org tablestore.Org, run Run, etag tablestore.ETag, state State, lastError string) error {
	_, err := e.end(ctx, org, run, etag, state, lastError)
	if errors.Is(err, tablestore.ErrConflict) {
		return nil
	}
	return err
}

// end is finish that answers tablestore.ErrConflict when the run's record changed since etag,
// for a caller that reads again and retries (Cancel). Only a successful real run moves the org's
// delta link on: a failed or cancelled one leaves the link it started from, so the next run reads
// every change again and none is missed; its pending deactivations (keyed by the run) are never
// read again, as no step of a finished run runs.
func (e *Engine) end(ctx context.Context, org tablestore.Org, run Run, etag tablestore.ETag, state State, lastError string) (Run, error) {
	deltaLink := run.DeltaLink
	lastError = entra.RedactURLs(lastError)
	run.State, run.LastError, run.NextLink, run.DeltaLink, run.Cursor = state, lastError, "", "", ""
	run.FinishedAt = e.cfg.Now().UTC()
	if _, err := e.runs.Update(ctx, org, run.ID, run, etag, tablestore.Replace); err != nil {
		return Run{}, err
	}
	for range 5 {
		st, stETag, err := tablestore.Get[syncState](ctx, e.state, org, usersStateKey)
		if err != nil {
			return run, fmt.Errorf("free org after run %s: %w", run.ID, err)
		}
		if st.ActiveRunID == run.ID {
			st.ActiveRunID = ""
		}
		if state == Succeeded && !run.DryRun {
			if deltaLink != "" {
				st.DeltaLink = deltaLink
			}
			st.Synced = run.Synced
		}
		_, err = e.state.Update(ctx, org, usersStateKey, st, stETag, tablestore.Replace)
		if !errors.Is(err, tablestore.ErrConflict) {
			if err != nil {
				// The run is recorded as over: Start takes over a claim whose run is final.
				return run, fmt.Errorf("free org after run %s: %w", run.ID, err)
			}
			break
		}
	}
	e.cfg.Logger.InfoContext(ctx, "sync run finished", "org", org.String(), "run", run.ID, "state", state, "kind", run.Kind, "dry_run", run.DryRun,
		"processed", run.Processed, "created", run.Created, "updated", run.Updated, "unchanged", run.Unchanged, "conflicts", run.Conflicts,
		"deactivated", run.Deactivated, "reactivated", run.Reactivated, "errors", run.ErrorCount)
	return run, nil
}

// countSynced records how many synced stakeholders are active after the run ("records synced").
func (s *stepper) countSynced(ctx context.Context) error {
	if s.run.DryRun {
		return nil
	}
	n, err := s.activeSynced(ctx)
	if err != nil {
		return err
	}
	s.run.Synced = n
	return nil
}

// activeSynced counts the active synced stakeholders as this step sees them, without reading
// the directory: a full round's unseen phase counted them as it streamed them (Counted), less
// what deprovision deactivated since; otherwise the last run's count carries forward with this
// run's changes (from zero in a full round into a directory that had no synced stakeholders).
func (s *stepper) activeSynced(ctx context.Context) (int, error) {
	if s.run.CountedAll {
		return max(0, s.run.Counted-s.run.Deactivated), nil
	}
	before := 0
	if s.run.Kind != "full" || s.run.HadSynced {
		st, _, err := tablestore.Get[syncState](ctx, s.e.state, s.org, usersStateKey)
		if err != nil && !errors.Is(err, tablestore.ErrNotFound) {
			return 0, err
		}
		before = st.Synced
	}
	return max(0, before+s.run.Created+s.run.Linked+s.run.Reactivated-s.run.Deactivated), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
