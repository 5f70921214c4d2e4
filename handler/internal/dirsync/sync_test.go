package dirsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

func TestFullThenDeltaSync(t *testing.T) {
	e := setup(t, 450, 100)
	users := e.sim.Users(tenantID)

	full := e.sync(t)
	wantState(t, full, dirsync.Succeeded)
	if full.Kind != "full" || full.Processed != 450 || full.Written != 450 || full.Invalid != 0 || full.Pages != 5 {
		t.Errorf("full run = kind %s processed %d written %d invalid %d pages %d; want full 450 450 0 5",
			full.Kind, full.Processed, full.Written, full.Invalid, full.Pages)
	}
	if steps := len(e.q.published()); steps < 3 {
		t.Errorf("%d step messages, want a chain of several steps", steps)
	}
	got := stakeholders(t, e.store, e.org)
	if len(got) != len(users) {
		t.Fatalf("%d stakeholders, want %d", len(got), len(users))
	}
	u := users[17]
	s, _, err := tablestore.Get[dirsync.Stakeholder](t.Context(), e.store.Table(dirsync.StakeholdersTable), e.org, fmtKey(u.ID))
	if err != nil {
		t.Fatal(err)
	}
	wantEmail := u.Mail
	if wantEmail == "" {
		wantEmail = u.UserPrincipalName
	}
	wantPhone := u.MobilePhone
	if wantPhone == "" && len(u.BusinessPhones) > 0 {
		wantPhone = u.BusinessPhones[0]
	}
	if s.FirstName != u.GivenName || s.LastName != u.Surname || s.Email != wantEmail || s.Phone != wantPhone ||
		s.Department != u.Department || s.Role != u.JobTitle || s.Location != u.OfficeLocation ||
		s.ExternalID != u.ID || s.Source != "entra" || s.Active != u.AccountEnabled || s.SyncedAt.IsZero() {
		t.Errorf("stakeholder = %+v\nfrom user %+v", s, u)
	}

	// Change three users: the delta round sees exactly those.
	promoted, deleted, disabled := users[3].ID, users[4].ID, users[5].ID
	if err := e.sim.UpdateUser(tenantID, promoted, func(u *m365sim.User) { u.JobTitle = "Chief Stakeholder Officer" }); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SoftDeleteUser(tenantID, deleted); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetAccountEnabled(tenantID, disabled, false); err != nil {
		t.Fatal(err)
	}
	delta := e.sync(t)
	wantState(t, delta, dirsync.Succeeded)
	if delta.Kind != "delta" || delta.Processed != 3 || delta.Deactivated != 2 {
		t.Errorf("delta run = kind %s processed %d deactivated %d; want delta 3 2", delta.Kind, delta.Processed, delta.Deactivated)
	}
	got = stakeholders(t, e.store, e.org)
	if got[promoted].Role != "Chief Stakeholder Officer" || !got[promoted].Active {
		t.Errorf("promoted = %+v", got[promoted])
	}
	if got[deleted].Active || got[deleted].FirstName != users[4].GivenName {
		t.Errorf("soft-deleted = %+v, want inactive with its fields kept", got[deleted])
	}
	if got[disabled].Active {
		t.Errorf("disabled = %+v, want inactive", got[disabled])
	}

	// A fresh full sync of the changed tenant into another org agrees with full + delta, except
	// that a full round does not list the soft-deleted user at all.
	other := newEngine(t, e.sim, e.store, mustOrg(t, "org-fresh"), time.Hour)
	wantState(t, other.sync(t), dirsync.Succeeded)
	fresh := synced(stakeholders(t, e.store, other.org))
	incremental := synced(got)
	if _, ok := fresh[deleted]; ok {
		t.Errorf("a full sync lists soft-deleted user %s", deleted)
	}
	delete(incremental, deleted)
	if len(fresh) != len(incremental) {
		t.Fatalf("fresh full sync has %d stakeholders, full+delta %d", len(fresh), len(incremental))
	}
	for id, want := range fresh {
		if incremental[id] != want {
			t.Errorf("stakeholder %s:\nfull+delta %+v\nfresh full %+v", id, incremental[id], want)
		}
	}
	if n := e.sim.Unhandled(); n != 0 {
		t.Errorf("the sim saw %d unhandled requests", n)
	}
}

func TestOverlappingStarts(t *testing.T) {
	t.Run("sequential", func(t *testing.T) {
		e := setup(t, 5, 0)
		first := e.start(t)
		again, started, err := e.eng.Start(t.Context(), e.org, "schedule")
		if err != nil || started || again.ID != first.ID {
			t.Fatalf("second Start = %s started %v err %v; want the running %s", again.ID, started, err, first.ID)
		}
		e.drain(t)
		wantState(t, e.run(t, first.ID), dirsync.Succeeded)
		next, started, err := e.eng.Start(t.Context(), e.org, "manual")
		if err != nil || !started || next.ID == first.ID || next.Kind != "delta" {
			t.Fatalf("Start after the run = %+v started %v err %v; want a new delta run", next, started, err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		e := setup(t, 5, 0)
		for round := range 2 { // round 0 inserts the claim, round 1 updates it
			const n = 6
			var wg sync.WaitGroup
			runs := make([]dirsync.Run, n)
			starts := make([]bool, n)
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() { runs[i], starts[i], errs[i] = e.eng.Start(t.Context(), e.org, "manual") })
			}
			wg.Wait()
			winners := 0
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("round %d: Start %d: %v", round, i, errs[i])
				}
				if starts[i] {
					winners++
				}
				if runs[i].ID != runs[0].ID {
					t.Errorf("round %d: Start %d returned run %s, Start 0 %s", round, i, runs[i].ID, runs[0].ID)
				}
			}
			if winners != 1 {
				t.Errorf("round %d: %d starts started a run, want 1", round, winners)
			}
			e.drain(t)
			wantState(t, e.run(t, runs[0].ID), dirsync.Succeeded)
		}
		runs, err := e.eng.Runs(t.Context(), e.org, 10)
		if err != nil || len(runs) != 2 {
			t.Fatalf("Runs = %d runs, %v; want 2", len(runs), err)
		}
	})
}

func TestResumeAfterKill(t *testing.T) {
	e := setup(t, 450, 100)
	e.eng = dirsync.New(dirsync.Config{Store: e.store, Directory: newGraphDir(e.sim, secret), Queue: e.q,
		Tenants: e.conns, Now: e.clock.Now, StepBudget: time.Nanosecond}) // one page per step
	run := e.start(t)

	// Run two steps by hand, keeping their messages.
	var done [][]byte
	for range 2 {
		m, ok := e.q.pop()
		if !ok {
			t.Fatal("no step message")
		}
		if err := e.eng.Step(t.Context(), m.Body, 1); err != nil {
			t.Fatal(err)
		}
		done = append(done, m.Body)
	}
	mid := e.run(t, run.ID)
	if mid.Step != 2 || mid.Processed != 200 {
		t.Fatalf("after two steps: step %d processed %d, want 2 200", mid.Step, mid.Processed)
	}
	before := len(e.q.published())
	// The worker of step 0 is redelivered after a kill: nothing is fetched again and the
	// continuation is published anew (the queue deduplicates it by message id).
	if err := e.eng.Step(t.Context(), done[0], 2); err != nil {
		t.Fatal(err)
	}
	pub := e.q.published()
	if len(pub) != before+1 {
		t.Fatalf("redelivered step 0 published %d messages, want 1", len(pub)-before)
	}
	var cont dirsync.Job
	if err := json.Unmarshal(pub[len(pub)-1].Body, &cont); err != nil || cont.Step != 2 || cont.RunID != run.ID {
		t.Fatalf("continuation = %+v (%v), want step 2 of %s", cont, err, run.ID)
	}
	if pub[len(pub)-1].ID != pub[len(pub)-2].ID {
		t.Errorf("continuation id %q differs from the original %q: the queue cannot deduplicate it", pub[len(pub)-1].ID, pub[len(pub)-2].ID)
	}
	if got := e.run(t, run.ID); got.Processed != mid.Processed || got.Step != mid.Step {
		t.Errorf("redelivery changed the run: %+v", got)
	}
	// The redelivered step 1 too, then everything else including the duplicates.
	if err := e.eng.Step(t.Context(), done[1], 3); err != nil {
		t.Fatal(err)
	}
	e.drain(t)
	final := e.run(t, run.ID)
	wantState(t, final, dirsync.Succeeded)
	if final.Processed != 450 || final.Written != 450 || final.Pages != 5 {
		t.Errorf("final: processed %d written %d pages %d, want 450 450 5", final.Processed, final.Written, final.Pages)
	}
	if got := stakeholders(t, e.store, e.org); len(got) != 450 {
		t.Errorf("%d stakeholders, want 450", len(got))
	}
	// A message redelivered after the run finished is a no-op.
	n := len(e.q.published())
	if err := e.eng.Step(t.Context(), done[0], 4); err != nil || len(e.q.published()) != n {
		t.Errorf("step after the end: err %v, %d new messages", err, len(e.q.published())-n)
	}
}

func TestGraphFailures(t *testing.T) {
	t.Run("throttled", func(t *testing.T) {
		e := setup(t, 250, 100)
		e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 429, RetryAfter: 1500 * time.Millisecond, Times: 3})
		run := e.start(t)
		var throttled int
		for {
			m, ok := e.q.pop()
			if !ok {
				break
			}
			if !m.NotBefore.IsZero() {
				throttled++
				// The clock moves on by one tick after the failed call: NotBefore is 1.5 s after it.
				if d := m.NotBefore.Sub(e.clock.now); d < 1400*time.Millisecond || d > 1500*time.Millisecond {
					t.Errorf("NotBefore is %v after now, want ≈ 1.5s", d)
				}
			}
			if err := e.eng.Step(t.Context(), m.Body, 1); err != nil {
				t.Fatal(err)
			}
		}
		got := e.run(t, run.ID)
		wantState(t, got, dirsync.Succeeded)
		if got.Throttled != 3 || throttled != 3 || got.Processed != 250 {
			t.Errorf("throttled %d on the run, %d delayed messages, processed %d; want 3 3 250", got.Throttled, throttled, got.Processed)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		e := setup(t, 20, 0)
		e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 403})
		got := e.sync(t)
		wantState(t, got, dirsync.Failed)
		if re := hasError(got, "permission_denied", ""); re == nil || re.Hint == "" {
			t.Errorf("errors = %+v, want permission_denied with a hint", got.Errors)
		}
	})
	for _, tc := range []struct {
		name   string
		break_ func(*m365sim.Server)
		secret string
	}{
		{"wrong secret", func(*m365sim.Server) {}, "not-the-secret"},
		{"revoked consent", func(s *m365sim.Server) { s.RevokeConsent(tenantID, clientID) }, secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, 20, 0)
			tc.break_(e.sim)
			e.eng = dirsync.New(dirsync.Config{Store: e.store, Directory: newGraphDir(e.sim, tc.secret), Queue: e.q,
				Tenants: e.conns, Reauth: e.conns, Now: e.clock.Now})
			got := e.sync(t)
			wantState(t, got, dirsync.Failed)
			if re := hasError(got, "unauthorized", ""); re == nil || re.Hint == "" {
				t.Errorf("errors = %+v, want unauthorized with a hint", got.Errors)
			}
			// The connection itself now asks for re-authorization, and no new run can start.
			rec, _, err := e.conns.Get(t.Context(), e.org)
			if err != nil || rec.Status != connection.NeedsReauthorization || rec.LastError == "" {
				t.Errorf("connection = %+v, %v; want needs_reauthorization with the reason", rec, err)
			}
			if _, _, err := e.eng.Start(t.Context(), e.org, "manual"); !errors.Is(err, connection.ErrNotConnected) {
				t.Errorf("Start after a refused token: %v, want ErrNotConnected", err)
			}
		})
	}
	t.Run("unavailable", func(t *testing.T) {
		e := setup(t, 20, 0)
		e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 500})
		run := e.start(t)
		m, _ := e.q.pop()
		for count := 1; count <= 3; count++ { // GiveUpAfter is 3
			err := e.eng.Step(t.Context(), m.Body, count)
			if count < 3 && err == nil {
				t.Fatalf("delivery %d: nil error, want one so the message is redelivered", count)
			}
			if count == 3 && err != nil {
				t.Fatalf("delivery %d: %v, want the run failed instead", count, err)
			}
		}
		got := e.run(t, run.ID)
		wantState(t, got, dirsync.Failed)
		if hasError(got, "unavailable", "") == nil {
			t.Errorf("errors = %+v, want unavailable", got.Errors)
		}
		// The org is free again.
		e.sim.ClearFaults()
		wantState(t, e.sync(t), dirsync.Succeeded)
	})
	t.Run("delta reset", func(t *testing.T) {
		e := setup(t, 150, 100)
		wantState(t, e.sync(t), dirsync.Succeeded)
		e.sim.UpdateUser(tenantID, e.sim.Users(tenantID)[0].ID, func(u *m365sim.User) { u.Department = "Audit" })
		if err := e.sim.ResetDelta(tenantID); err != nil {
			t.Fatal(err)
		}
		got := e.sync(t)
		wantState(t, got, dirsync.Succeeded)
		if got.Kind != "full" || got.Processed != 150 {
			t.Errorf("run after reset: kind %s processed %d, want full 150", got.Kind, got.Processed)
		}
		if s := stakeholders(t, e.store, e.org)[e.sim.Users(tenantID)[0].ID]; s.Department != "Audit" {
			t.Errorf("changed user = %+v", s)
		}
		// And the next delta works from the new link.
		if next := e.sync(t); next.State != dirsync.Succeeded || next.Kind != "delta" || next.Processed != 0 {
			t.Errorf("next run = %s %s processed %d", next.State, next.Kind, next.Processed)
		}
	})
}

func TestInvalidUser(t *testing.T) {
	e := setup(t, 30, 0)
	bad, err := e.sim.AddUser(tenantID, m365sim.User{AccountEnabled: true, Department: "Nowhere"})
	if err != nil {
		t.Fatal(err)
	}
	got := e.sync(t)
	wantState(t, got, dirsync.Succeeded)
	if got.Invalid != 1 || got.Written != 30 {
		t.Errorf("invalid %d written %d, want 1 30", got.Invalid, got.Written)
	}
	if re := hasError(got, "invalid_data", bad.ID); re == nil || re.Hint == "" {
		t.Errorf("errors = %+v, want invalid_data for %s", got.Errors, bad.ID)
	}
	if _, ok := stakeholders(t, e.store, e.org)[bad.ID]; ok {
		t.Error("the invalid user became a stakeholder")
	}
}

func TestOrgIsolation(t *testing.T) {
	e := setup(t, 40, 0)
	orgB := mustOrg(t, "org-b")
	wantState(t, e.sync(t), dirsync.Succeeded)
	if got := stakeholders(t, e.store, orgB); len(got) != 0 {
		t.Errorf("org B has %d stakeholders after org A's sync", len(got))
	}
	if runs, err := e.eng.Runs(t.Context(), orgB, 10); err != nil || len(runs) != 0 {
		t.Errorf("org B runs = %d, %v", len(runs), err)
	}
	// A job naming org B with org A's run id finds nothing.
	runs, _ := e.eng.Runs(t.Context(), e.org, 1)
	body, _ := json.Marshal(dirsync.Job{Org: orgB.String(), RunID: runs[0].ID})
	if err := e.eng.Step(t.Context(), body, 1); err != nil {
		t.Errorf("Step(org B, org A's run) = %v, want nil", err)
	}
}

func TestBadJobs(t *testing.T) {
	e := setup(t, 1, 0)
	for _, body := range []string{`not json`, `{"org":"org-a"}`, `{"org":"org-a","runId":"x","step":-1}`, `{"org":"a/b","runId":"x"}`, ``} {
		if err := e.eng.Step(t.Context(), []byte(body), 1); !errors.Is(err, dirsync.ErrBadJob) {
			t.Errorf("Step(%q) = %v, want ErrBadJob", body, err)
		}
	}
	for _, id := range []string{"0000000000000-0000", "nonsense"} {
		body, _ := json.Marshal(dirsync.Job{Org: "org-a", RunID: id})
		if err := e.eng.Step(t.Context(), body, 1); err != nil {
			t.Errorf("Step(unknown run %s) = %v, want nil (dropped)", id, err)
		}
	}
	if n := len(e.q.published()); n != 0 {
		t.Errorf("%d messages published for bad jobs", n)
	}
}

// failingQueue refuses its first n publishes.
type failingQueue struct {
	*recorder
	n int
}

func (f *failingQueue) Publish(ctx context.Context, m queue.Message) error {
	if f.n > 0 {
		f.n--
		return errors.New("queue down")
	}
	return f.recorder.Publish(ctx, m)
}

func TestStartPublishFails(t *testing.T) {
	e := setup(t, 5, 0)
	e.eng = dirsync.New(dirsync.Config{Store: e.store, Directory: newGraphDir(e.sim, secret), Queue: &failingQueue{e.q, 1},
		Tenants: e.conns, Now: e.clock.Now})
	if _, _, err := e.eng.Start(t.Context(), e.org, "manual"); err == nil {
		t.Fatal("Start with the queue down succeeded")
	}
	runs, err := e.eng.Runs(t.Context(), e.org, 10)
	if err != nil || len(runs) != 1 || runs[0].State != dirsync.Failed {
		t.Fatalf("runs = %+v, %v; want one failed run", runs, err)
	}
	// The org is not held by the run that never got its message.
	wantState(t, e.sync(t), dirsync.Succeeded)
}
