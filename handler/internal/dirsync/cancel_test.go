package dirsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// syncState reads the org's sync state row (the claim and the delta link) as raw JSON fields.
func (e *env) syncState(t *testing.T) map[string]any {
	t.Helper()
	st, _, err := tablestore.Get[map[string]any](t.Context(), e.store.Table(dirsync.StateTable), e.org, "users")
	must(t, err)
	return st
}

// runETag reads a run with its ETag, to tell whether anything wrote it since.
func (e *env) runETag(t *testing.T, id string) (dirsync.Run, tablestore.ETag) {
	t.Helper()
	run, etag, err := e.eng.Run(t.Context(), e.org, id)
	must(t, err)
	return run, etag
}

// stepBody is the sync-jobs body of a run's step, as the engine publishes it.
func (e *env) stepBody(t *testing.T, runID string, step int) []byte {
	t.Helper()
	b, err := json.Marshal(dirsync.Job{Org: e.org.String(), RunID: runID, Step: step})
	must(t, err)
	return b
}

// A held run cancelled: none of its deactivations is applied, now or by a late step message;
// its change log stays; the org is free at once, and the next run reads from the delta link
// the cancelled one started from, so it finds the same deletions again.
func TestCancelHeldRun(t *testing.T) {
	e, ids, held := heldRun(t)
	link := e.syncState(t)["deltaLink"]
	if link == "" || link == nil {
		t.Fatal("no delta link after the first run")
	}
	logged := e.changes(t, held.ID)

	got, err := e.eng.Cancel(t.Context(), e.org, held.ID, "admin@contoso.example")
	must(t, err)
	wantState(t, got, dirsync.Cancelled)
	stored := e.run(t, held.ID)
	wantState(t, stored, dirsync.Cancelled)
	if stored.FinishedAt.IsZero() || stored.CancelledBy != "admin@contoso.example" || stored.Deactivated != 0 || stored.Hold == nil {
		t.Errorf("cancelled run: finished %v by %q deactivated %d hold %+v", stored.FinishedAt, stored.CancelledBy, stored.Deactivated, stored.Hold)
	}
	if st := e.syncState(t); st["activeRunId"] != "" || st["deltaLink"] != link {
		t.Errorf("sync state after cancel: claim %v, delta link moved %v", st["activeRunId"], st["deltaLink"] != link)
	}
	if again := e.changes(t, held.ID); len(again) != len(logged) || len(logged) == 0 {
		t.Errorf("change log: %d entries after cancel, %d before", len(again), len(logged))
	}

	// The message an approval would have published, delivered late: nothing happens.
	published := len(e.q.Published())
	must(t, e.eng.Step(t.Context(), e.stepBody(t, held.ID, stored.Step), 1))
	if n := len(e.q.Published()); n != published {
		t.Errorf("a step of the cancelled run published %d messages", n-published)
	}
	for _, id := range ids[:6] {
		if st, _ := e.get(t, id); !st.Active {
			t.Errorf("%s deactivated by a cancelled run", id)
		}
	}
	if _, err := e.eng.Approve(t.Context(), e.org, held.ID, "admin"); !errors.Is(err, dirsync.ErrNotHeld) {
		t.Errorf("Approve of a cancelled run = %v, want ErrNotHeld", err)
	}

	// The next run starts at once, from the old delta link: the same six deletions, held again.
	next := e.sync(t)
	wantState(t, next, dirsync.Held)
	if next.Kind != "delta" || next.Hold == nil || next.Hold.Deactivations != 6 {
		t.Errorf("next run: kind %s hold %+v; want a delta run holding the same 6 deactivations", next.Kind, next.Hold)
	}
	_, err = e.eng.Approve(t.Context(), e.org, next.ID, "admin")
	must(t, err)
	e.drain(t)
	if next = e.run(t, next.ID); next.State != dirsync.Succeeded || next.Deactivated != 6 {
		t.Errorf("approved next run: %s, deactivated %d; want succeeded, 6", next.State, next.Deactivated)
	}
	if stored = e.run(t, held.ID); stored.State != dirsync.Cancelled || stored.Deactivated != 0 {
		t.Errorf("the cancelled run changed later: %s deactivated %d", stored.State, stored.Deactivated)
	}
}

// A multi-step run cancelled between steps: the next step's message finds it cancelled and
// does nothing; a new run starts at once. Dry runs too.
func TestCancelBetweenSteps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dry     bool
		written int // stakeholders after the first step
	}{
		{"real run", false, 50},
		{"dry run", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			e.configure(onePagePerStep)
			e.addUsers(t, "User", 120) // 3 pages of 50
			run := e.startOpts(t, dirsync.StartOptions{DryRun: tc.dry})
			e.deliverOne(t) // the first page; its continuation is queued

			by := strings.Repeat("é", dirsync.MaxCancelledBy+50)
			got, err := e.eng.Cancel(t.Context(), e.org, run.ID, by)
			must(t, err)
			wantState(t, got, dirsync.Cancelled)
			if got.Processed != 50 || got.DryRun != tc.dry || utf8.RuneCountInString(got.CancelledBy) != dirsync.MaxCancelledBy {
				t.Errorf("cancelled run: processed %d dry %v cancelledBy %d characters; want 50 %v %d",
					got.Processed, got.DryRun, utf8.RuneCountInString(got.CancelledBy), tc.dry, dirsync.MaxCancelledBy)
			}
			_, etag := e.runETag(t, run.ID)
			published := len(e.q.Published())

			if n := e.drain(t); n != 1 {
				t.Errorf("%d deliveries, want the one queued step", n)
			}
			after, afterETag := e.runETag(t, run.ID)
			wantState(t, after, dirsync.Cancelled)
			if afterETag != etag || len(e.q.Published()) != published {
				t.Errorf("the queued step wrote the run (%v) or published %d messages", afterETag != etag, len(e.q.Published())-published)
			}
			if n := len(e.all(t, e.org)); n != tc.written {
				t.Errorf("%d stakeholders, want %d", n, tc.written)
			}
			if _, ok, err := e.eng.Recover(t.Context(), e.org); err != nil || ok {
				t.Errorf("Recover after cancel = %v, %v; want nothing to recover", ok, err)
			}
			e.clock.advance(stallAfter)
			if _, ok, err := e.eng.Recover(t.Context(), e.org); err != nil || ok {
				t.Errorf("Recover long after cancel = %v, %v; want nothing to recover", ok, err)
			}

			// The org is free: the next run syncs everyone, once.
			next := e.sync(t)
			wantState(t, next, dirsync.Succeeded)
			if next.Kind != "full" || next.Created != 120-tc.written {
				t.Errorf("next run: kind %s created %d; want full, %d", next.Kind, next.Created, 120-tc.written)
			}
			e.oneStakeholderPerUser(t, 120)
		})
	}
}

// cancellingDir cancels the run from inside its first users/delta call, as an admin's cancel
// landing while a step waits for Graph.
type cancellingDir struct {
	*graphDir
	calls  atomic.Int32
	cancel func()
}

func (d *cancellingDir) UsersDelta(ctx context.Context, tenant, link string) (entra.UserPage, error) {
	if d.calls.Add(1) == 1 {
		d.cancel()
	}
	return d.graphDir.UsersDelta(ctx, tenant, link)
}

// A run cancelled while a step is in flight: the step ends without error at its next page or
// checkpoint, leaves the cancelled run as it is, publishes nothing, and applies nothing more;
// the page it was writing is complete (each stakeholder with its index rows) and in the log.
func TestCancelMidStep(t *testing.T) {
	for _, tc := range []struct {
		name string
		// arm makes cancel happen during the next step; the step budget lets it run every page.
		arm func(e *env, cancel func())
	}{
		{"while fetching a page", func(e *env, cancel func()) {
			e.configure(func(c *dirsync.Config) {
				c.Directory = &cancellingDir{graphDir: e.dir, cancel: cancel}
				c.StepBudget = time.Hour
			})
		}},
		{"as the step checkpoints", func(e *env, cancel func()) {
			e.configure(onePagePerStep) // the step saves the run after its first page
			var fired atomic.Bool
			e.kill.setWatch(func(r *http.Request, _ []byte) {
				if r.Method == http.MethodPut && strings.Contains(r.URL.Path, dirsync.RunsTable+"(") && fired.CompareAndSwap(false, true) {
					cancel() // its own requests pass here too: fired keeps them out
				}
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			e.addUsers(t, "User", 300) // 6 pages of 50
			run := e.startOpts(t, dirsync.StartOptions{})
			var cancelled dirsync.Run
			var cancelErr error
			tc.arm(e, func() { cancelled, cancelErr = e.eng.Cancel(t.Context(), e.org, run.ID, "admin") })
			published := len(e.q.Published())

			m, _ := e.next()
			if err := e.eng.Step(t.Context(), m.Body, 1); err != nil {
				t.Fatalf("the step of the cancelled run = %v, want it to end quietly", err)
			}
			e.kill.setWatch(nil)
			if cancelErr != nil || cancelled.State != dirsync.Cancelled {
				t.Fatalf("Cancel during the step = %s, %v; the cancel was not staged", cancelled.State, cancelErr)
			}
			got := e.run(t, run.ID)
			if got.State != dirsync.Cancelled || !got.FinishedAt.Equal(cancelled.FinishedAt) || got.Processed != cancelled.Processed || got.CancelledBy != "admin" {
				t.Errorf("run after the step = %s finished %v processed %d by %q; want it as cancelled (%v, %d)",
					got.State, got.FinishedAt, got.Processed, got.CancelledBy, cancelled.FinishedAt, cancelled.Processed)
			}
			if n := len(e.q.Published()); n != published {
				t.Errorf("the step published %d messages after the cancel", n-published)
			}
			if n := len(e.all(t, e.org)); n != 50 {
				t.Errorf("%d stakeholders, want the 50 of the page in flight", n)
			}
			e.oneStakeholderPerUser(t, 50)
			if n := len(e.changes(t, run.ID)); n != 50 {
				t.Errorf("change log has %d entries, want the page's 50", n)
			}
			if st := e.syncState(t); st["activeRunId"] != "" {
				t.Errorf("org still claimed by %v", st["activeRunId"])
			}
			next := e.sync(t)
			wantState(t, next, dirsync.Succeeded)
			e.oneStakeholderPerUser(t, 300)
		})
	}
}

// Only a running or held run can be cancelled: a finished one is ErrNotCancellable naming its
// state (returned with the run), an unknown one ErrRunNotFound.
func TestCancelNotCancellable(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 3)
	succeeded := e.sync(t)
	wantState(t, succeeded, dirsync.Succeeded)

	failed := e.startOpts(t, dirsync.StartOptions{})
	_, etag, err := e.conns.Get(t.Context(), e.org)
	must(t, err)
	_, err = e.conns.Put(t.Context(), e.org, connection.Record{Status: connection.Disconnected}, etag)
	must(t, err)
	e.drain(t)
	wantState(t, e.run(t, failed.ID), dirsync.Failed)
	_, etag, err = e.conns.Get(t.Context(), e.org)
	must(t, err)
	_, err = e.conns.Put(t.Context(), e.org, connection.Record{Status: connection.Connected, TenantID: testenv.Tenant}, etag)
	must(t, err)

	cancelled := e.startOpts(t, dirsync.StartOptions{})
	_, err = e.eng.Cancel(t.Context(), e.org, cancelled.ID, "")
	must(t, err)

	for _, tc := range []struct {
		name, id string
		want     error
		state    dirsync.State
	}{
		{"succeeded", succeeded.ID, dirsync.ErrNotCancellable, dirsync.Succeeded},
		{"failed", failed.ID, dirsync.ErrNotCancellable, dirsync.Failed},
		{"cancelled already", cancelled.ID, dirsync.ErrNotCancellable, dirsync.Cancelled},
		{"unknown", "1klxow0l9apkv-fc96", dirsync.ErrRunNotFound, ""},
		{"malformed", "../etc", dirsync.ErrRunNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.eng.Cancel(t.Context(), e.org, tc.id, "admin")
			if !errors.Is(err, tc.want) {
				t.Fatalf("Cancel = %v, want %v", err, tc.want)
			}
			if got.State != tc.state || (tc.state != "" && !strings.Contains(err.Error(), string(tc.state))) {
				t.Errorf("Cancel answered run state %q, error %q; want %q named", got.State, err, tc.state)
			}
			if tc.state != "" {
				if stored := e.run(t, tc.id); stored.State != tc.state || stored.CancelledBy != "" {
					t.Errorf("stored run = %s by %q; want %s untouched", stored.State, stored.CancelledBy, tc.state)
				}
			}
		})
	}
}

// A run records what started it; an unknown trigger starts nothing.
func TestStartTriggers(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 2)
	for _, tc := range []struct {
		trigger, want string
		err           error
	}{
		{"", dirsync.TriggerManual, nil},
		{dirsync.TriggerManual, "manual", nil},
		{dirsync.TriggerSchedule, "schedule", nil},
		{dirsync.TriggerNotification, "notification", nil},
		{dirsync.TriggerResync, "resync", nil},
		{"webhook", "", dirsync.ErrUnknownTrigger},
		{"Manual", "", dirsync.ErrUnknownTrigger},
	} {
		t.Run(tc.trigger, func(t *testing.T) {
			run, started, err := e.eng.Start(t.Context(), e.org, dirsync.StartOptions{Trigger: tc.trigger})
			if !errors.Is(err, tc.err) {
				t.Fatalf("Start(%q) = %v, want %v", tc.trigger, err, tc.err)
			}
			if tc.err != nil {
				if started || run.ID != "" {
					t.Errorf("Start(%q) started run %q", tc.trigger, run.ID)
				}
				if st, _, err := tablestore.Get[map[string]any](t.Context(), e.store.Table(dirsync.StateTable), e.org, "users"); err == nil && st["activeRunId"] != "" {
					t.Errorf("Start(%q) claimed the org for %v", tc.trigger, st["activeRunId"])
				}
				return
			}
			if !started || run.Trigger != tc.want || e.run(t, run.ID).Trigger != tc.want {
				t.Fatalf("Start(%q) = started %v trigger %q; want a new run with trigger %q", tc.trigger, started, run.Trigger, tc.want)
			}
			_, err = e.eng.Cancel(t.Context(), e.org, run.ID, "") // frees the org for the next case
			must(t, err)
			e.q.Lose()
		})
	}
}

// A claim left naming a cancelled run (a cancel that died before freeing the org) holds
// nothing: recovery leaves the run cancelled, and the next Start takes the org over.
func TestCancelledClaimIsFinal(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 3)
	run := e.startOpts(t, dirsync.StartOptions{})
	_, err := e.eng.Cancel(t.Context(), e.org, run.ID, "")
	must(t, err)
	e.q.Lose()
	states := e.store.Table(dirsync.StateTable)
	st, etag, err := tablestore.Get[map[string]any](t.Context(), states, e.org, "users")
	must(t, err)
	st["activeRunId"] = run.ID
	_, err = states.Update(t.Context(), e.org, "users", st, etag, tablestore.Replace)
	must(t, err)

	e.clock.advance(stallAfter)
	if got, ok, err := e.eng.Recover(t.Context(), e.org); err != nil || ok || got.State != dirsync.Cancelled {
		t.Errorf("Recover = %s, %v, %v; want the cancelled run left alone", got.State, ok, err)
	}
	if n := len(e.q.Published()); n != 1 {
		t.Errorf("%d messages published, want only the cancelled run's first", n)
	}
	next := e.sync(t)
	wantState(t, next, dirsync.Succeeded)
	if got := e.run(t, run.ID); got.State != dirsync.Cancelled {
		t.Errorf("the cancelled run is %s after the next run", got.State)
	}
}
