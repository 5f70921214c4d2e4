package dirsync_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// TestDryRunRedoOfSeveralPages: a dry run's step, given the time for its whole round (a user
// listed on each of its two pages), dies before it saves the run; its redelivery applies the
// pages again from the last save. Users pages were saved every few pages only, so the redo
// applied both, and its first page decided against the shadow the first attempt's second page
// had left (updated, not created). The counts must match the real run's (created once, then
// merged), and the creation be logged once.
func TestDryRunRedoOfSeveralPages(t *testing.T) {
	e := setup(t)
	e.settings(t, generous)
	target := emptyDirectory(t, e)
	change := func(u *entra.User) { u.Department = "Moved" }
	whole := func(d *relistDir) func(*dirsync.Config) {
		return func(c *dirsync.Config) { c.StepBudget, c.Directory = time.Hour, d }
	}

	dryDir := &relistDir{graphDir: e.dir, target: target, changes: []func(*entra.User){change}}
	e.configure(whole(dryDir))
	var failing atomic.Bool
	e.kill.setFail(func(r *http.Request, _ []byte) bool {
		return failing.Load() && r.Method == http.MethodPut && strings.Contains(r.URL.Path, dirsync.RunsTable+"(")
	})
	t.Cleanup(func() { e.kill.setFail(nil) })

	dry := e.startOpts(t, dirsync.StartOptions{Trigger: "manual", DryRun: true})
	m, ok := e.next()
	if !ok {
		t.Fatal("no pending message")
	}
	failing.Store(true)
	if err := e.eng.Step(t.Context(), m.Body, 1); err == nil {
		t.Fatal("the step saved its run: the kill was not staged")
	}
	failing.Store(false)
	dryDir.staged(t)
	if r := e.run(t, dry.ID); r.Pages != 0 || r.State != dirsync.Running {
		t.Fatalf("after the kill the run is %s at page %d; want running from page 0 (a redo of both pages)", r.State, r.Pages)
	}
	must(t, e.eng.Step(t.Context(), m.Body, 2)) // the queue delivers the message again
	e.drain(t)
	got := accounted(t, e.run(t, dry.ID))
	wantState(t, got, dirsync.Succeeded)

	realDir := &relistDir{graphDir: e.dir, target: target, changes: []func(*entra.User){change}}
	e.configure(whole(realDir))
	e.wantDryAsReal(t, got, target, realDir)
}

// TestUserReenabledWhileAFullRoundRuns: a full round into an empty directory creates a user's
// stakeholder (page 1), lists the user again disabled (page 2: the lookup of disabled users
// finds the stakeholder and asks for its deactivation), then enabled again (page 3: no lookup,
// the create meets the first write and is merged into it). The user is enabled in the end: the
// deactivation page 2 asked for must be withdrawn, as it is when a lookup finds the user, and
// the dry run must count the same.
func TestUserReenabledWhileAFullRoundRuns(t *testing.T) {
	t.Run("pending deactivations in memory", testUserReenabledWhileAFullRoundRuns)
	t.Run("too many to keep: read per page", func(t *testing.T) {
		defer dirsync.SetPendingCacheMax(0)()
		testUserReenabledWhileAFullRoundRuns(t)
	})
}

func testUserReenabledWhileAFullRoundRuns(t *testing.T) {
	e := setup(t)
	e.settings(t, generous)
	ids := e.addUsers(t, "Back", 130) // pages of 50, 50 and 30
	steps := []func(*entra.User){
		func(u *entra.User) { u.AccountEnabled = false },
		func(u *entra.User) { u.AccountEnabled = true },
	}

	dry := runStaged(t, e.relisting(ids[0], steps...), e.dryRun)
	run := runStaged(t, e.relisting(ids[0], steps...), e.sync)
	if run.Created != 130 || run.Deactivated != 0 || run.PendingDeactivations != 0 {
		t.Errorf("run = created %d, deactivated %d, pending deactivations %d; want 130, 0, 0", run.Created, run.Deactivated, run.PendingDeactivations)
	}
	if st := e.byExternal(t, e.org)[ids[0]]; !st.Active {
		t.Errorf("re-enabled user's stakeholder deactivated (reason %q)", st.DeactivatedReason)
	}
	if dry.PendingDeactivations != run.PendingDeactivations || countsOf(dry) != countsOf(run) {
		t.Errorf("dry run: %d pending deactivations, counts %+v; real run: %d, %+v",
			dry.PendingDeactivations, countsOf(dry), run.PendingDeactivations, countsOf(run))
	}
}

// TestDryRunOfUserChangedBackDuringARound: a full round over synced stakeholders lists a user
// changed (page 1: updated) and again changed back (page 2: updated back, by the real run). The
// dry run's second listing decides against the stored stakeholder, which it equals: no write,
// so no claim meets the first listing's shadow, and the dry run counts it unchanged.
func TestDryRunOfUserChangedBackDuringARound(t *testing.T) {
	e := setup(t)
	e.settings(t, generous)
	ids := e.addUsers(t, "Back", 80)
	wantState(t, e.sync(t), dirsync.Succeeded)
	e.updateUser(t, ids[0], func(u *m365sim.User) { u.Department = "Moved" })
	back := func(u *entra.User) { u.Department = "Operations" }

	must(t, e.sim.ResetDelta(testenv.Tenant))
	dry := runStaged(t, e.relisting(ids[0], back), e.dryRun)
	must(t, e.sim.ResetDelta(testenv.Tenant))
	run := runStaged(t, e.relisting(ids[0], back), e.sync)
	if run.Kind != "full" || dry.Kind != "full" {
		t.Fatalf("runs of kind %s and %s, want full rounds", dry.Kind, run.Kind)
	}
	if countsOf(dry) != countsOf(run) {
		t.Errorf("dry run counts %+v\nreal run counts %+v", countsOf(dry), countsOf(run))
	}
}
