package dirsync_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/m365sim"
)

const stallAfter = 20 * time.Minute // dirsync.Config.StallAfter's default

// dropPending loses every pending sync-jobs message, as a dead-letter or a lost local queue does.
func (e *env) dropPending(t *testing.T) int {
	t.Helper()
	return len(e.q.Lose())
}

// deliverOne delivers the next pending message once.
func (e *env) deliverOne(t *testing.T) {
	t.Helper()
	m, ok := e.next()
	if !ok {
		t.Fatal("no pending message")
	}
	e.clock.advanceTo(m.NotBefore)
	must(t, e.eng.Step(t.Context(), m.Body, 1))
}

func (e *env) recover(t *testing.T) (dirsync.Run, bool) {
	t.Helper()
	run, ok, err := e.eng.Recover(t.Context(), e.org)
	must(t, err)
	return run, ok
}

// oneStakeholderPerUser checks that every Entra user has exactly one stakeholder.
func (e *env) oneStakeholderPerUser(t *testing.T, users int) {
	t.Helper()
	seen := map[string]int{}
	for _, s := range e.all(t, e.org) {
		if s.ExternalID != "" {
			seen[s.ExternalID]++
		}
	}
	if len(seen) != users {
		t.Errorf("%d users have stakeholders, want %d", len(seen), users)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("user %s has %d stakeholders", id, n)
		}
	}
}

// A run whose step message is lost — at its start or in the middle — is republished from its
// checkpoint once it has shown no heartbeat for StallAfter, and finishes with every user synced once.
func TestRecoverLostStep(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before int // steps delivered before the message is lost
	}{
		{"lost before its first step", 0},
		{"lost mid-round", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			e.addUsers(t, "User", 300)
			run := e.startOpts(t, dirsync.StartOptions{})
			for range tc.before {
				e.deliverOne(t)
			}
			if e.dropPending(t) != 1 {
				t.Fatal("want exactly one pending message to lose")
			}
			if _, ok := e.recover(t); ok {
				t.Fatal("recovered a run that was not stalled yet")
			}
			e.clock.advance(stallAfter)
			got, ok := e.recover(t)
			if !ok || got.Recoveries != 1 || hasError(got, "step_lost", "") == nil {
				t.Fatalf("recover = %v, run %+v; want recovered once with a step_lost error", ok, got)
			}
			if _, ok := e.recover(t); ok {
				t.Error("recovered twice without waiting StallAfter again")
			}
			e.drain(t)
			got = accounted(t, e.run(t, run.ID))
			wantState(t, got, dirsync.Succeeded)
			if got.Created != 300 || got.Recoveries != 1 || got.Stalled != 0 {
				t.Errorf("created %d recoveries %d stalled %d; want 300 1 0", got.Created, got.Recoveries, got.Stalled)
			}
			e.oneStakeholderPerUser(t, 300)
		})
	}
}

// A run that keeps losing its step without progress fails after MaxRecoveries and frees the org.
func TestRecoverGivesUp(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 3)
	run := e.startOpts(t, dirsync.StartOptions{})
	for i := range 3 {
		e.dropPending(t)
		e.clock.advance(stallAfter)
		if got, ok := e.recover(t); !ok || got.State != dirsync.Running || got.Stalled != i+1 {
			t.Fatalf("recovery %d: %v %+v", i+1, ok, got)
		}
	}
	e.dropPending(t)
	e.clock.advance(stallAfter)
	got, ok := e.recover(t)
	if !ok || got.State != dirsync.Failed || hasError(got, "stalled", "") == nil || !strings.Contains(got.LastError, "stalled") {
		t.Fatalf("after 3 fruitless recoveries: %v, state %s, errors %+v, lastError %q; want failed as stalled", ok, got.State, got.Errors, got.LastError)
	}
	if e.run(t, run.ID).State != dirsync.Failed {
		t.Error("run not failed")
	}
	if _, started, err := e.eng.Start(t.Context(), e.org, dirsync.StartOptions{}); err != nil || !started {
		t.Errorf("the stalled run still holds the org: started %v, %v", started, err)
	}
}

// A step put off for throttling is not lost while its due time is ahead.
func TestRecoverWaitsForRescheduledStep(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 3)
	must(t, e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 429, RetryAfter: time.Hour, Times: 1}))
	e.startOpts(t, dirsync.StartOptions{})
	e.deliverOne(t) // throttled: put off by an hour
	pending := e.q.Published()[len(e.q.Published())-1]
	if pending.NotBefore.IsZero() {
		t.Fatal("the throttled step was not put off")
	}
	e.clock.advance(stallAfter + time.Minute)
	if _, ok := e.recover(t); ok {
		t.Fatal("recovered a step that is scheduled, not lost")
	}
	e.dropPending(t)
	e.clock.advance(time.Hour)
	if _, ok := e.recover(t); !ok {
		t.Fatal("a lost rescheduled step was not recovered after its due time and StallAfter")
	}
	e.drain(t)
	e.oneStakeholderPerUser(t, 3)
}

// Start on an org held by a stalled run recovers that run rather than answering "running" for ever.
func TestStartRecoversStalledRun(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 3)
	run := e.startOpts(t, dirsync.StartOptions{})
	e.dropPending(t)
	e.clock.advance(stallAfter)
	got, started, err := e.eng.Start(t.Context(), e.org, dirsync.StartOptions{})
	if err != nil || started || got.ID != run.ID || got.Recoveries != 1 {
		t.Fatalf("Start = %+v, %v, %v; want the stalled run, recovered", got, started, err)
	}
	e.drain(t)
	wantState(t, e.run(t, run.ID), dirsync.Succeeded)
}

// Redeliveries are recorded on the run, and a step lost after them (dead-lettered) says so when
// it is recovered.
func TestRedeliveriesAreRecorded(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 3)
	run := e.startOpts(t, dirsync.StartOptions{})
	m, _ := e.next()
	// Deliveries 1..3 died with the handler before doing anything; the 4th runs.
	must(t, e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 400}))
	e.eng.Step(t.Context(), m.Body, 4) // fails for good: a 400 is permanent
	got := e.run(t, run.ID)
	if got.Deliveries != 4 {
		t.Errorf("deliveries %d, want 4", got.Deliveries)
	}
	wantState(t, got, dirsync.Failed)
	if hasError(got, "graph_error", "") == nil {
		t.Errorf("errors %+v, want graph_error (a Graph 400 is not retried)", got.Errors)
	}

	e2 := setup(t)
	e2.addUsers(t, "User", 3)
	run = e2.startOpts(t, dirsync.StartOptions{})
	m, _ = e2.next()
	must(t, e2.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 500, Times: 1}))
	must(t, e2.eng.Step(t.Context(), m.Body, 7)) // put off after the 500
	e2.dropPending(t)                            // …and that message is dead-lettered
	e2.clock.advance(time.Hour)
	got, ok := e2.recover(t)
	if re := hasError(got, "step_lost", ""); !ok || re == nil || !strings.Contains(re.Detail, "delivered 7 times") {
		t.Errorf("recover %v errors %+v; want step_lost naming 7 deliveries", ok, got.Errors)
	}
	e2.drain(t)
	wantState(t, e2.run(t, run.ID), dirsync.Succeeded)
	e2.oneStakeholderPerUser(t, 3)
}

// A run approved long after the deletion guard held it is alive again: its approved step
// message is in the queue, so the scheduler's next tick must not take it for stalled (no
// step_lost error, no second step message).
func TestApprovedRunIsNotRecovered(t *testing.T) {
	e, _, run := heldRun(t)
	e.clock.advance(2 * time.Hour) // the admin approves two hours later
	if _, err := e.eng.Approve(t.Context(), e.org, run.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	if got, ok := e.recover(t); ok {
		t.Errorf("just-approved run recovered as stalled: recoveries %d errors %+v", got.Recoveries, got.Errors)
	}
	if n := len(e.q.Pending()); n != 1 {
		t.Errorf("%d step messages pending after the approval, want 1", n)
	}
	e.drain(t)
	got := e.run(t, run.ID)
	wantState(t, got, dirsync.Succeeded)
	if got.Deactivated != 6 || got.Recoveries != 0 || hasError(got, "step_lost", "") != nil {
		t.Errorf("approved run: deactivated %d recoveries %d errors %+v; want 6, 0, no step_lost", got.Deactivated, got.Recoveries, got.Errors)
	}
}

// A transient Graph failure in the middle of a full round puts the step off with a delay and
// resumes from the round's checkpoint: nothing is read twice, the run succeeds.
func TestTransientFailureResumesRound(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 300) // 6 pages of 50
	run := e.startOpts(t, dirsync.StartOptions{})
	e.deliverOne(t)
	before := e.run(t, run.ID)
	if before.Pages == 0 || before.Phase != dirsync.PhaseUsers {
		t.Fatalf("first step read %d pages in phase %s; want part of the round", before.Pages, before.Phase)
	}
	must(t, e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 502, Times: 4}))
	mark := len(e.q.Published())
	e.drain(t)
	got := accounted(t, e.run(t, run.ID))
	wantState(t, got, dirsync.Succeeded)
	if got.Pages != 6 || got.Created != 300 || got.Rescheduled != 4 {
		t.Errorf("pages %d created %d rescheduled %d; want 6 300 4 (resumed, not restarted)", got.Pages, got.Created, got.Rescheduled)
	}
	delayed := 0
	for _, p := range e.q.Published()[mark:] {
		var j dirsync.Job
		must(t, json.Unmarshal(p.Body, &j))
		if j.Retry > 0 {
			delayed++
			if p.NotBefore.IsZero() {
				t.Errorf("retry %d of step %d published without a delay", j.Retry, j.Step)
			}
		}
	}
	if delayed != 4 {
		t.Errorf("%d delayed retries, want 4", delayed)
	}
	e.oneStakeholderPerUser(t, 300)
}

// A page whose change log cannot be stored (Table Storage busy until the retries give up) puts
// the step off before the page's marker exists: the put-off saves the run as of its last
// checkpoint, not the failed page's half-made counts, so the redo counts each user once.
func TestPutOffPageIsCountedOnce(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 120) // 3 pages of 50
	var busy atomic.Bool
	busy.Store(true)
	e.kill.setFail(func(r *http.Request, body []byte) bool {
		return busy.Load() && strings.HasSuffix(r.URL.Path, "$batch") && bytes.Contains(body, []byte(dirsync.ChangesTable))
	})
	run := e.startOpts(t, dirsync.StartOptions{})
	e.deliverOne(t) // the first page's change log fails: the step is put off
	busy.Store(false)
	mid := e.run(t, run.ID)
	if mid.Rescheduled != 1 || mid.Step != 0 || mid.Processed != 0 || mid.Created != 0 {
		t.Errorf("after the put-off: rescheduled %d step %d processed %d created %d; want 1 0 0 0", mid.Rescheduled, mid.Step, mid.Processed, mid.Created)
	}
	e.drain(t)
	got := accounted(t, e.run(t, run.ID))
	wantState(t, got, dirsync.Succeeded)
	if got.Processed != 120 || got.Created != 120 || got.Rescheduled != 1 {
		t.Errorf("processed %d created %d rescheduled %d; want 120 120 1", got.Processed, got.Created, got.Rescheduled)
	}
	e.oneStakeholderPerUser(t, 120)
}

// countingDir stands in for the graph transport's in-process retries: every users/delta call
// waits out one 429 of 2 s, counted on the request's stats.
type countingDir struct{ *graphDir }

func (d countingDir) UsersDelta(ctx context.Context, tenant, link string) (entra.UserPage, error) {
	st := entra.RequestStatsFrom(ctx)
	st.Throttled()
	st.Retried(2 * time.Second)
	return d.graphDir.UsersDelta(ctx, tenant, link)
}

// Throttling waited out inside the Graph client is counted on the run: requests and seconds.
func TestThrottlingWaitedOutIsCounted(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 120) // 3 pages
	e.configure(func(c *dirsync.Config) { c.Directory = countingDir{e.dir} })
	got := e.sync(t)
	wantState(t, got, dirsync.Succeeded)
	if got.Throttled != 3 || got.Retried != 3 || got.WaitedSeconds != 6 {
		t.Errorf("throttled %d retried %d waited %vs; want 3 3 6", got.Throttled, got.Retried, got.WaitedSeconds)
	}
}

// A step killed after its page's writes (its marker written) and then lost is recovered; the
// redo takes the page's counts from the marker but keeps what happened since: the recovery,
// its error, the redeliveries.
func TestRecoveryAfterKilledPageIsKept(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 120) // 3 pages of 50
	e.configure(onePagePerStep)
	run := e.startOpts(t, dirsync.StartOptions{})
	e.deliverOne(t) // page 1
	m, _ := e.next()
	e.kill.arm() // page 2 is written, then the process dies before its checkpoint
	if err := e.eng.Step(t.Context(), m.Body, 1); err == nil {
		t.Fatal("the killed step reported success")
	}
	e.dropPending(t) // and its message is lost
	e.clock.advance(stallAfter)
	if _, ok := e.recover(t); !ok {
		t.Fatal("not recovered")
	}
	e.drain(t)
	got := accounted(t, e.run(t, run.ID))
	wantState(t, got, dirsync.Succeeded)
	if got.Recoveries != 1 || hasError(got, "step_lost", "") == nil || got.Created != 120 {
		t.Errorf("recoveries %d errors %+v created %d; want 1, step_lost, 120", got.Recoveries, got.Errors, got.Created)
	}
	e.oneStakeholderPerUser(t, 120)
}

// leakyDir fails with an error naming a Graph link with its $skiptoken, as a raw transport
// error would.
type leakyDir struct{ *graphDir }

func (leakyDir) UsersDelta(context.Context, string, string) (entra.UserPage, error) {
	return entra.UserPage{}, errors.New(`Get "https://graph.example/v1.0/users/delta?$skiptoken=SECRETTOKEN": unexpected EOF`)
}

// No Graph link's query reaches the step's error (logged by the host), the run's errors or its
// lastError.
func TestStepErrorsCarryNoQuery(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 3)
	e.configure(func(c *dirsync.Config) {
		c.Directory, c.StepBudget, c.GiveUpAfter = leakyDir{e.dir}, 0, 2 // the default step budget
	})
	run := e.startOpts(t, dirsync.StartOptions{})
	m, _ := e.next()
	err := e.eng.Step(t.Context(), m.Body, 1)
	if err == nil || strings.Contains(err.Error(), "SECRETTOKEN") {
		t.Errorf("step error = %v; want an error without the query", err)
	}
	must(t, e.eng.Step(t.Context(), m.Body, 2)) // GiveUpAfter: the run fails
	got := e.run(t, run.ID)
	wantState(t, got, dirsync.Failed)
	raw, _ := json.Marshal(got)
	if strings.Contains(string(raw), "SECRETTOKEN") || !strings.Contains(got.LastError, "https://graph.example/v1.0/users/delta") {
		t.Errorf("run carries the query or lost the path: lastError %q errors %+v", got.LastError, got.Errors)
	}
}

// A redelivered step (recorded on the run first) of an org disconnected meanwhile still fails its
// run, and frees the org.
func TestRedeliveredStepOfDisconnectedOrg(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 3)
	run := e.startOpts(t, dirsync.StartOptions{})
	_, etag, err := e.conns.Get(t.Context(), e.org)
	must(t, err)
	_, err = e.conns.Put(t.Context(), e.org, connection.Record{Status: connection.Disconnected}, etag)
	must(t, err)
	m, _ := e.next()
	must(t, e.eng.Step(t.Context(), m.Body, 2))
	got := e.run(t, run.ID)
	wantState(t, got, dirsync.Failed)
	if got.Deliveries != 2 || hasError(got, "not_connected", "") == nil {
		t.Errorf("deliveries %d errors %+v; want 2 and not_connected", got.Deliveries, got.Errors)
	}
}
