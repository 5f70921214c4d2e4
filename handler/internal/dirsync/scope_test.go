package dirsync_test

import (
	"testing"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/syncsettings"
)

// stepThrough runs a started run's steps one delivery at a time and returns the distinct
// cursors the run was checkpointed with while in phase.
func (e *env) stepThrough(t *testing.T, runID, phase string) map[string]bool {
	t.Helper()
	cursors := map[string]bool{}
	for range 1000 {
		d, ok := e.next()
		if !ok {
			return cursors
		}
		e.clock.advanceTo(d.NotBefore)
		must(t, e.eng.Step(t.Context(), d.Body, d.Count))
		if r := e.run(t, runID); r.Phase == phase {
			cursors[r.Cursor] = true
		}
	}
	t.Fatal("the run's steps do not end")
	return nil
}

// The filter widened by a group of more users than the scope phase settles at once: a delta run
// settles them a chunk per call (here a step each), fetching and merging each chunk's users as
// it goes, and stays a delta round while they are few enough to fetch one by one.
func TestScopeWideningGoesChunkByChunk(t *testing.T) {
	e := setup(t)
	a := e.addUsers(t, "Alpha", 3)
	b := e.addUsers(t, "Beta", 1010)
	ga := e.addGroup(t, "Alpha", a...)
	gb := e.addGroup(t, "Beta", b...)
	e.filterTo(t, ga)
	e.syncCost(t)

	e.configure(func(c *dirsync.Config) { onePagePerStep(c); c.ScopeFetchMax = 5000 })
	e.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = []string{ga, gb} })
	before := e.requests()
	run := e.startOpts(t, dirsync.StartOptions{Trigger: "manual"})
	cursors := e.stepThrough(t, run.ID, dirsync.PhaseScope)
	got, cost := accounted(t, e.run(t, run.ID)), e.requests().minus(before)
	wantState(t, got, dirsync.Succeeded)
	// 1013 users in the closure, 500 a chunk: at least three calls, each checkpointed apart.
	if len(cursors) < 3 {
		t.Errorf("scope phase checkpointed at %d cursors %v, want it resumed chunk by chunk", len(cursors), cursors)
	}
	if got.Kind != "delta" || got.Created != len(b) || cost.user != int64(len(b)) {
		t.Errorf("kind %s, created %d, users fetched one by one %d; want a delta round creating and fetching %d", got.Kind, got.Created, cost.user, len(b))
	}
	wantActive(t, e, true, "", append(a, b...)...)
}

// A delta run whose scope change is wider than ScopeFetchMax users turns into a full round
// instead of fetching them one by one, and ends with the same stakeholders; a narrower change
// stays a delta round that fetches exactly the users who joined.
func TestWideScopeChangeResyncsInFull(t *testing.T) {
	tests := []struct {
		name     string
		joining  int
		wantKind string
		wantGets int64
	}{
		{"narrow: fetched one by one", 4, "delta", 4},
		{"wide: a full round", 30, "full", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			a := e.addUsers(t, "Alpha", 3)
			b := e.addUsers(t, "Beta", tt.joining)
			ga := e.addGroup(t, "Alpha", a...)
			gb := e.addGroup(t, "Beta", b...)
			e.filterTo(t, ga)
			e.syncCost(t)
			e.configure(func(c *dirsync.Config) { c.ScopeFetchMax = 10 })

			e.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = []string{ga, gb} })
			run, cost := e.syncCost(t)
			if run.Kind != tt.wantKind || cost.user != tt.wantGets {
				t.Errorf("kind %s, users fetched one by one %d; want %s and %d", run.Kind, cost.user, tt.wantKind, tt.wantGets)
			}
			wantActive(t, e, true, "", append(a, b...)...)
			e.wantClosure(t, ga, gb)
			if run.Deactivated != 0 {
				t.Errorf("deactivated %d, want none", run.Deactivated)
			}
		})
	}
}
