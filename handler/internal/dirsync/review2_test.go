package dirsync_test

import (
	"fmt"
	"testing"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// A scope chunk that fetched and created the users who joined the filter, killed after its
// writes and before its checkpoint, is redone: the redo finds those users linked and has nothing
// left to fetch, but must still take the first attempt's counts and change log back from its
// marker — not lose them (and write the next chunk's log over them).
func TestScopeChunkRedoneAfterItsWritesKeepsItsCounts(t *testing.T) {
	e := setup(t)
	a := e.addUsers(t, "Alpha", 2)
	x := e.addUser(t, "Joiner", "Late") // out of the filter: no stakeholder
	ga := e.addGroup(t, "Alpha", a...)
	e.filterTo(t, ga)
	if r := e.sync(t); r.Created != len(a) {
		t.Fatalf("first run created %d, want %d", r.Created, len(a))
	}

	must(t, e.sim.AddMember(testenv.Tenant, ga, x)) // joins without a change to the user itself
	e.configure(onePagePerStep)
	run := e.startOpts(t, dirsync.StartOptions{Trigger: "manual"})
	killed := false
	for range 1000 {
		d, ok := e.next()
		if !ok {
			break
		}
		e.clock.advanceTo(d.NotBefore)
		if cur := e.run(t, run.ID); cur.Phase == dirsync.PhaseScope && !killed {
			killed = true
			e.kill.arm() // the joiner is created, then the process dies before the checkpoint
			if err := e.eng.Step(t.Context(), d.Body, 1); err == nil || e.kill.kills.Load() != 1 {
				t.Fatalf("scope step not killed: %v", err)
			}
			must(t, e.eng.Step(t.Context(), d.Body, 2))
			continue
		}
		must(t, e.eng.Step(t.Context(), d.Body, d.Count))
	}
	if !killed {
		t.Fatal("the run never reached the scope phase")
	}
	got := e.run(t, run.ID)
	wantState(t, got, dirsync.Succeeded)
	if got.Kind != "delta" || got.Created != 1 || got.Processed != 1 {
		t.Errorf("kind %s, created %d, processed %d; want a delta round that created and processed the joiner once", got.Kind, got.Created, got.Processed)
	}
	if c := changesOf(e.changes(t, run.ID), x); len(c) != 1 || c[0].Action != dirsync.ActCreated {
		t.Errorf("the joiner's change log %+v, want one created entry", c)
	}
	wantActive(t, e, true, "", append(a, x)...)
}

// A conflict resolved in Leap Change while a run's groups phase is under way — after the chunk
// that found its stakeholder unlinked, before the phase ends — links a stakeholder the mirror
// left out: the next delta round must still check it, so the users checked are those whose
// conflict was open when the mirror began, not only those still open when it ended.
func TestGroupSyncDeltaFollowsConflictResolvedDuringTheMirror(t *testing.T) {
	g := newGroupsEnv(t, 3, 100)
	g.configure(onePagePerStep)
	g.settings(t, func(s *syncsettings.Settings) { s.MergeStrategy = syncsettings.SkipConflicts })
	leap := g.manual(t, g.org, "Other", "Name", "nested.n000@contoso.example")
	run := g.startOpts(t, dirsync.StartOptions{Trigger: "manual"})
	resolved := false
	for {
		d, ok := g.next()
		if !ok {
			break
		}
		if cur := g.run(t, run.ID); !resolved && cur.Phase == dirsync.PhaseGroups && groupsStage(t, cur) == "sweep" {
			// The scan found the stakeholder unlinked; the admin resolves its conflict now.
			_, err := g.eng.ResolveConflict(t.Context(), g.org, leap.ID, dirsync.Resolution{Choice: dirsync.TakeEntra}, tablestore.ETagAny)
			must(t, err)
			resolved = true
		}
		must(t, g.eng.Step(t.Context(), d.Body, d.Count))
	}
	if !resolved {
		t.Fatal("the run's groups phase never reached its sweep")
	}
	wantState(t, g.run(t, run.ID), dirsync.Succeeded)

	next, pass := g.syncWatched(t, nil, nil)
	if pass.count("delta") == 0 || next.MembersAdded != 1 {
		t.Errorf("stages %v, added %d; want the resolved conflict's stakeholder added", pass.stages, next.MembersAdded)
	}
	g.wantMirror(t, g.top, g.members())
}

// A dry delta run whose users round creates a user who also joined the filter counts it as
// the real run does, whether or not its scope phase runs in the same step as that page.
func TestDryScopeAfterAStepBoundaryCountsAsReal(t *testing.T) {
	for _, dry := range []bool{true, false} {
		t.Run(fmt.Sprintf("dry=%v", dry), func(t *testing.T) { dryScopeAfterAStepBoundary(t, dry) })
	}
}

func dryScopeAfterAStepBoundary(t *testing.T, dry bool) {
	e := setup(t)
	a := e.addUsers(t, "Alpha", 2)
	ga := e.addGroup(t, "Alpha", a...)
	e.filterTo(t, ga)
	e.sync(t)
	n := e.addUser(t, "New", "Joiner")
	must(t, e.sim.AddMember(testenv.Tenant, ga, n))
	e.configure(onePagePerStep)
	before := e.requests()
	run := e.startOpts(t, dirsync.StartOptions{Trigger: "manual", DryRun: dry})
	e.drain(t)
	got, cost := accounted(t, e.run(t, run.ID)), e.requests().minus(before)
	if got.Created != 1 || got.Processed != 1 || cost.user != 0 {
		t.Errorf("dry %v: created %d, processed %d, users fetched one by one %d; want 1, 1, 0", dry, got.Created, got.Processed, cost.user)
	}
}
