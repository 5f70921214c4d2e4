package dirsync_test

import (
	"testing"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/syncsettings"
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
	e.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = []string{ga}; generous(s) })
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
