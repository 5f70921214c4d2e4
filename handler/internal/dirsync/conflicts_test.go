package dirsync_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// conflictEnv is an org on "skip conflicts" with one user whose department is in conflict
// (Entra "Entra B", Leap Change "Leap B", base "Operations") after a delta run, and one bystander.
func conflictEnv(t *testing.T) (e *env, both, other string, skipped dirsync.Run) {
	t.Helper()
	e = setup(t)
	e.settings(t, func(v *syncsettings.Settings) { v.MergeStrategy = syncsettings.SkipConflicts })
	both = e.addUser(t, "Bea", "Both")
	other = e.addUser(t, "Otto", "Other")
	wantState(t, e.sync(t), dirsync.Succeeded)
	e.edit(t, both, func(st *stakeholder.Stakeholder) { st.Department = "Leap B"; st.Influence = "low" })
	e.updateUser(t, both, func(u *m365sim.User) { u.Department = "Entra B" })
	skipped = e.sync(t)
	wantState(t, skipped, dirsync.Succeeded)
	if skipped.Skipped != 1 {
		t.Fatalf("skipped = %d, want the conflict skipped", skipped.Skipped)
	}
	return e, both, other, skipped
}

func (e *env) openConflicts(t *testing.T) []dirsync.OpenConflict {
	t.Helper()
	list, next, err := e.eng.Conflicts(t.Context(), e.org, "", 100)
	must(t, err)
	if next != "" {
		t.Fatalf("next = %q with fewer than 100 conflicts", next)
	}
	n, err := e.eng.OpenConflictCount(t.Context(), e.org)
	must(t, err)
	if n != len(list) {
		t.Errorf("OpenConflictCount = %d, the list has %d", n, len(list))
	}
	return list
}

func ptr(s string) *string { return &s }

func wantConflictFields(t *testing.T, got []stakeholder.ConflictField, want ...stakeholder.ConflictField) {
	t.Helper()
	same := slices.EqualFunc(got, want, func(a, b stakeholder.ConflictField) bool {
		return a.Field == b.Field && a.Entra == b.Entra && a.Leap == b.Leap && (a.Base == nil) == (b.Base == nil) && (a.Base == nil || *a.Base == *b.Base)
	})
	if !same {
		t.Errorf("conflict fields = %s, want %s", fieldsString(got), fieldsString(want))
	}
}

func fieldsString(fs []stakeholder.ConflictField) string {
	s := ""
	for _, f := range fs {
		b := "<none>"
		if f.Base != nil {
			b = *f.Base
		}
		s += f.Field + "{base " + b + ", entra " + f.Entra + ", leap " + f.Leap + "} "
	}
	return s
}

// TestSkippedConflictStaysOpen: the README promises a skipped conflict is reported until it is
// resolved. A delta run that does not see the user again must not lose it, and while it is open
// the record takes no Entra update.
func TestSkippedConflictStaysOpen(t *testing.T) {
	e, both, other, skipped := conflictEnv(t)
	st, etag := e.get(t, both)
	list := e.openConflicts(t)
	if len(list) != 1 {
		t.Fatalf("open conflicts = %+v, want the one skipped", list)
	}
	c := list[0]
	if c.StakeholderID != st.ID || c.ExternalID != both || c.Name != "Bea Both" || c.ETag != etag || c.RunID != skipped.ID || c.Since.IsZero() {
		t.Errorf("open conflict = %+v (stakeholder %s etag %s)", c, st.ID, etag)
	}
	wantConflictFields(t, c.Fields, stakeholder.ConflictField{Field: stakeholder.Department, Base: ptr("Operations"), Entra: "Entra B", Leap: "Leap B"})
	since := c.Since

	// A delta run that does not see the user: the conflict is still open.
	e.updateUser(t, other, func(u *m365sim.User) { u.OfficeLocation = "Paris" })
	run := e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if list := e.openConflicts(t); len(list) != 1 || !list[0].Since.Equal(since) {
		t.Fatalf("after a delta run without the user: open conflicts = %+v", list)
	}

	// Entra changes another field: the record still takes nothing; the conflict is refreshed
	// with Entra's values and keeps the time it was first found.
	e.clock.advance(time.Hour)
	e.updateUser(t, both, func(u *m365sim.User) { u.JobTitle = "Lead" })
	run = e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if run.Skipped != 1 {
		t.Errorf("skipped = %d, want the conflict reported again", run.Skipped)
	}
	if after, afterETag := e.get(t, both); afterETag != etag || after.Role != "Analyst" {
		t.Errorf("an open conflict's record changed: role %q, etag %s → %s", after.Role, etag, afterETag)
	}
	list = e.openConflicts(t)
	if len(list) != 1 || !list[0].Since.Equal(since) || !list[0].UpdatedAt.After(since) || list[0].Entra[stakeholder.Role] != "Lead" || list[0].RunID != run.ID {
		t.Fatalf("refreshed conflict = %+v, want since %v kept and Entra's role Lead", list, since)
	}
}

// TestResolveConflict covers the admin's resolution: ETag-checked, per field or whole record,
// Entra's held-back changes applied, and Leap Change's kept value becoming the merge's new normal.
func TestResolveConflict(t *testing.T) {
	e, both, _, _ := conflictEnv(t)
	e.updateUser(t, both, func(u *m365sim.User) { u.JobTitle = "Lead" }) // not in conflict: held back
	wantState(t, e.sync(t), dirsync.Succeeded)
	before, etag := e.get(t, both)

	_, err := e.eng.ResolveConflict(t.Context(), e.org, before.ID, dirsync.Resolution{Choice: dirsync.KeepLeap}, `W/"datetime'2001-01-01T00%3A00%3A00Z'"`)
	if !errors.Is(err, tablestore.ErrConflict) {
		t.Fatalf("resolve with a stale ETag: err = %v, want ErrConflict", err)
	}
	_, err = e.eng.ResolveConflict(t.Context(), e.org, before.ID, dirsync.Resolution{Fields: map[string]string{stakeholder.Role: dirsync.TakeEntra}}, etag)
	var unresolved *dirsync.UnresolvedError
	if !errors.As(err, &unresolved) || !slices.Equal(unresolved.Fields, []string{stakeholder.Department}) {
		t.Fatalf("resolve without a choice for department: err = %v", err)
	}
	_, err = e.eng.ResolveConflict(t.Context(), e.org, before.ID, dirsync.Resolution{Choice: "mine"}, etag)
	if !errors.Is(err, dirsync.ErrInvalidResolution) {
		t.Fatalf("resolve with choice mine: err = %v", err)
	}
	if st, after := e.get(t, both); after != etag || len(e.openConflicts(t)) != 1 || st.Department != "Leap B" {
		t.Fatal("a refused resolution changed something")
	}

	got, err := e.eng.ResolveConflict(t.Context(), e.org, before.ID, dirsync.Resolution{Choice: dirsync.KeepLeap}, etag)
	must(t, err)
	st, newETag := e.get(t, both)
	if got.ETag != newETag || newETag == etag {
		t.Errorf("resolved ETag = %s, stored %s, old %s", got.ETag, newETag, etag)
	}
	if st.Department != "Leap B" || st.Role != "Lead" || st.Influence != "low" {
		t.Errorf("after keeping Leap's department: %+v, want department Leap B, Entra's role Lead, influence kept", st)
	}
	if st.Base[stakeholder.Department] != "Entra B" || st.Base[stakeholder.Role] != "Lead" {
		t.Errorf("base = %v, want Entra's values", st.Base)
	}
	if n := len(e.openConflicts(t)); n != 0 {
		t.Errorf("%d conflicts open after resolving", n)
	}
	if _, err := e.eng.ResolveConflict(t.Context(), e.org, before.ID, dirsync.Resolution{Choice: dirsync.KeepLeap}, "*"); !errors.Is(err, stakeholder.ErrNoConflict) {
		t.Errorf("resolving twice: err = %v, want ErrNoConflict", err)
	}

	// Leap's kept value is the new normal: an Entra change elsewhere does not reopen it...
	e.updateUser(t, both, func(u *m365sim.User) { u.OfficeLocation = "Paris" })
	run := e.sync(t)
	if st, _ := e.get(t, both); run.Conflicts != 0 || st.Department != "Leap B" || st.Location != "Paris" {
		t.Errorf("after resolution: conflicts %d, %+v", run.Conflicts, st)
	}
	// ...but Entra changing the field again is a new conflict.
	e.updateUser(t, both, func(u *m365sim.User) { u.Department = "Entra C" })
	if run := e.sync(t); run.Skipped != 1 || len(e.openConflicts(t)) != 1 {
		t.Errorf("Entra changing the kept field again: skipped %d, want a new conflict", run.Skipped)
	}

	// Per field: take Entra's department, keep Leap's role.
	e.edit(t, both, func(st *stakeholder.Stakeholder) { st.Role = "Leap role" })
	e.updateUser(t, both, func(u *m365sim.User) { u.JobTitle = "Entra role" })
	wantState(t, e.sync(t), dirsync.Succeeded)
	list := e.openConflicts(t)
	if len(list) != 1 {
		t.Fatalf("open conflicts = %+v", list)
	}
	wantConflictFields(t, list[0].Fields,
		stakeholder.ConflictField{Field: stakeholder.Department, Base: ptr("Entra B"), Entra: "Entra C", Leap: "Leap B"},
		stakeholder.ConflictField{Field: stakeholder.Role, Base: ptr("Lead"), Entra: "Entra role", Leap: "Leap role"})
	_, err = e.eng.ResolveConflict(t.Context(), e.org, before.ID, dirsync.Resolution{Choice: dirsync.KeepLeap,
		Fields: map[string]string{stakeholder.Department: dirsync.TakeEntra}}, list[0].ETag)
	must(t, err)
	if st, _ := e.get(t, both); st.Department != "Entra C" || st.Role != "Leap role" || st.Base[stakeholder.Role] != "Entra role" {
		t.Errorf("per-field resolution: %+v", st)
	}
}

// TestConflictClosesWithoutTheAdmin: a conflict closes when the two sides agree again, when the
// org moves to a strategy that resolves it, and when the user goes away.
func TestConflictClosesWithoutTheAdmin(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(t *testing.T, e *env, user string)
		want func(st stakeholder.Stakeholder) bool
	}{
		{"Entra takes Leap's value", func(t *testing.T, e *env, user string) {
			e.updateUser(t, user, func(u *m365sim.User) { u.Department = "Leap B"; u.JobTitle = "Lead" })
		}, func(st stakeholder.Stakeholder) bool {
			return st.Department == "Leap B" && st.Role == "Lead" && st.Base[stakeholder.Department] == "Leap B"
		}},
		{"Entra goes back to the base", func(t *testing.T, e *env, user string) {
			e.updateUser(t, user, func(u *m365sim.User) { u.Department = "Operations" })
		}, func(st stakeholder.Stakeholder) bool {
			return st.Department == "Leap B" && st.Base[stakeholder.Department] == "Operations"
		}},
		{"entra wins now", func(t *testing.T, e *env, user string) {
			e.settings(t, func(v *syncsettings.Settings) { v.MergeStrategy = syncsettings.EntraWins })
			e.updateUser(t, user, func(u *m365sim.User) { u.JobTitle = "Lead" })
		}, func(st stakeholder.Stakeholder) bool { return st.Department == "Entra B" && st.Role == "Lead" }},
		{"user deleted", func(t *testing.T, e *env, user string) {
			must(t, e.sim.SoftDeleteUser(testenv.Tenant, user))
			e.settings(t, generous)
		}, func(st stakeholder.Stakeholder) bool { return !st.Active && st.Department == "Leap B" }},
		{"user disabled", func(t *testing.T, e *env, user string) {
			must(t, e.sim.SetAccountEnabled(testenv.Tenant, user, false))
			e.settings(t, generous)
		}, func(st stakeholder.Stakeholder) bool { return !st.Active }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, both, _, _ := conflictEnv(t)
			if len(e.openConflicts(t)) != 1 {
				t.Fatal("no open conflict to close")
			}
			tc.do(t, e, both)
			wantState(t, e.sync(t), dirsync.Succeeded)
			if list := e.openConflicts(t); len(list) != 0 {
				t.Errorf("still open: %+v", list)
			}
			if st, _ := e.get(t, both); !tc.want(st) {
				t.Errorf("stakeholder = %+v", st)
			}
		})
	}
}

// TestConflictChangeLogHasAllThreeValues: whatever the strategy, a conflict's log entry names
// the base, Entra's value and Leap Change's, so the losing value is recorded somewhere.
func TestConflictChangeLogHasAllThreeValues(t *testing.T) {
	for _, s := range []syncsettings.Strategy{syncsettings.EntraWins, syncsettings.LeapWins, syncsettings.SkipConflicts} {
		t.Run(string(s), func(t *testing.T) {
			e := setup(t)
			e.settings(t, func(v *syncsettings.Settings) { v.MergeStrategy = s })
			both := e.addUser(t, "Bea", "Both")
			wantState(t, e.sync(t), dirsync.Succeeded)
			e.edit(t, both, func(st *stakeholder.Stakeholder) { st.Department = "Leap B" })
			e.updateUser(t, both, func(u *m365sim.User) { u.Department = "Entra B" })
			run := e.sync(t)
			cs := changesOf(e.changes(t, run.ID), both)
			if len(cs) != 1 || len(cs[0].Fields) != 1 {
				t.Fatalf("change log = %+v", cs)
			}
			f := cs[0].Fields[0]
			if !f.Conflict || f.Base == nil || *f.Base != "Operations" || f.Entra != "Entra B" || f.Leap != "Leap B" {
				t.Errorf("conflict field = %+v, want base Operations, entra Entra B, leap Leap B", f)
			}
		})
	}
}

// TestConflictListIsCurrent: the list shows Leap Change's values as they are now (the version
// its ETag stands for), and leaves out — and closes — a conflict that no longer holds: one a
// Leap Change edit settled, or one a sync racing an admin's resolution wrote again.
func TestConflictListIsCurrent(t *testing.T) {
	e, both, _, _ := conflictEnv(t)
	e.edit(t, both, func(st *stakeholder.Stakeholder) { st.Department = "Leap C" })
	_, etag := e.get(t, both)
	list := e.openConflicts(t)
	if len(list) != 1 || list[0].ETag != etag {
		t.Fatalf("open conflicts = %+v, want one at the stakeholder's current ETag %s", list, etag)
	}
	wantConflictFields(t, list[0].Fields, stakeholder.ConflictField{Field: stakeholder.Department, Base: ptr("Operations"), Entra: "Entra B", Leap: "Leap C"})
	stored, err := e.shs.Conflict(t.Context(), e.org, list[0].StakeholderID)
	must(t, err)

	// A sync that read the stakeholder before the admin resolved it writes its row after.
	_, err = e.eng.ResolveConflict(t.Context(), e.org, list[0].StakeholderID, dirsync.Resolution{Choice: dirsync.KeepLeap}, etag)
	must(t, err)
	must(t, e.shs.Apply(t.Context(), e.org, []tablestore.Op{stakeholder.ConflictOp(stored.Conflict)}))
	if list := e.openConflicts(t); len(list) != 0 {
		t.Errorf("a conflict written again after its resolution is listed: %+v", list)
	}
	if _, err := e.shs.Conflict(t.Context(), e.org, stored.StakeholderID); !errors.Is(err, stakeholder.ErrNoConflict) {
		t.Errorf("the settled conflict's row is still there: %v", err)
	}

	// Leap Change takes Entra's value: the two sides agree, nothing is open.
	e.updateUser(t, both, func(u *m365sim.User) { u.Department = "Entra D" })
	wantState(t, e.sync(t), dirsync.Succeeded)
	if len(e.openConflicts(t)) != 1 {
		t.Fatal("no new conflict")
	}
	e.edit(t, both, func(st *stakeholder.Stakeholder) { st.Department = "Entra D" })
	if list := e.openConflicts(t); len(list) != 0 {
		t.Errorf("a conflict Leap Change settled is listed: %+v", list)
	}
}

// TestResolveConflictRacingSync: a delta sync that refreshes an open conflict (Entra changed a
// field not in conflict) between a resolution's read and its write rewrites only the conflict
// row, not the stakeholder. The resolution, made from the older row, is stale: it changes
// nothing and fails as a conflict (412), so Entra's newer value is not lost; resolved again, it
// applies it.
func TestResolveConflictRacingSync(t *testing.T) {
	e, both, _, _ := conflictEnv(t)
	e.updateUser(t, both, func(u *m365sim.User) { u.JobTitle = "Site director" })
	var inside, synced atomic.Bool
	e.kill.setWatch(func(r *http.Request, _ []byte) {
		// The resolution's transaction: the sync lands between its reads and its write.
		if !strings.HasSuffix(r.URL.Path, "$batch") || !inside.CompareAndSwap(false, true) {
			return
		}
		wantState(t, e.sync(t), dirsync.Succeeded)
		synced.Store(true)
	})
	before, etag := e.get(t, both)
	_, err := e.eng.ResolveConflict(t.Context(), e.org, before.ID, dirsync.Resolution{Choice: dirsync.KeepLeap}, etag)
	e.kill.setWatch(nil)
	if !synced.Load() {
		t.Fatalf("the race was not staged: %v", err)
	}
	if !errors.Is(err, tablestore.ErrConflict) {
		t.Fatalf("resolution from a conflict a sync refreshed meanwhile: err = %v, want ErrConflict", err)
	}
	if st, after := e.get(t, both); after != etag || st.Role != "Analyst" || st.Department != "Leap B" {
		t.Errorf("the stale resolution wrote the stakeholder: %+v", st)
	}
	list := e.openConflicts(t)
	if len(list) != 1 || list[0].Entra[stakeholder.Role] != "Site director" {
		t.Fatalf("open conflicts = %+v, want the refreshed one", list)
	}
	_, err = e.eng.ResolveConflict(t.Context(), e.org, before.ID, dirsync.Resolution{Choice: dirsync.KeepLeap}, list[0].ETag)
	must(t, err)
	if st, _ := e.get(t, both); st.Role != "Site director" || st.Department != "Leap B" || st.Base[stakeholder.Role] != "Site director" {
		t.Errorf("after resolving again: %+v, want Entra's role and Leap's department", st)
	}
}

// wantConflictClosed checks that the stakeholder's conflict row is gone, not only unlisted.
func (e *env) wantConflictClosed(t *testing.T, stakeholderID string) {
	t.Helper()
	if c, err := e.shs.Conflict(t.Context(), e.org, stakeholderID); !errors.Is(err, stakeholder.ErrNoConflict) {
		t.Errorf("conflict still stored: %+v, err %v", c, err)
	}
	if list := e.openConflicts(t); len(list) != 0 {
		t.Errorf("still open: %+v", list)
	}
}

// TestConflictClosesWhenDeactivationRacesLeapEdit: the user of an open conflict is deleted, and
// the stakeholder is edited in Leap Change while its deactivation is written; the re-merged
// deactivation closes the conflict, as the first write would have.
func TestConflictClosesWhenDeactivationRacesLeapEdit(t *testing.T) {
	e, both, _, _ := conflictEnv(t)
	e.settings(t, generous)
	run := e.syncDeletionRacingEdit(t, both)
	st, _ := e.get(t, both)
	if st.Active || st.Influence != "edited meanwhile" || run.Deactivated != 1 {
		t.Errorf("stakeholder = %+v, deactivated %d; want deactivated with the edit kept", st, run.Deactivated)
	}
	e.wantConflictClosed(t, st.ID)
}

// TestConflictOfInactiveStakeholderCloses: a stakeholder deactivated in Leap Change while its
// run waited for approval is inactive already when the approved deactivations are applied;
// its open conflict closes all the same.
func TestConflictOfInactiveStakeholderCloses(t *testing.T) {
	e, both, _, _ := conflictEnv(t)
	must(t, e.sim.SoftDeleteUser(testenv.Tenant, both)) // 1 of 2: held by the deletion guard
	run := e.sync(t)
	wantState(t, run, dirsync.Held)
	e.edit(t, both, func(s *stakeholder.Stakeholder) { s.Active, s.DeactivatedReason = false, "left" })
	if _, err := e.eng.Approve(t.Context(), e.org, run.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	e.drain(t)
	run = accounted(t, e.run(t, run.ID))
	wantState(t, run, dirsync.Succeeded)
	st, _ := e.get(t, both)
	if st.Active || st.DeactivatedReason != "left" || run.Deactivated != 0 {
		t.Errorf("stakeholder = %+v, deactivated %d; want it as Leap Change left it, counted nowhere", st, run.Deactivated)
	}
	e.wantConflictClosed(t, st.ID)
}

// TestConflictReopenedByRemergeClosesOnDeactivation: in one step, a user whose two sides agree
// again (so its conflict would close) and who is disabled races a Leap Change edit: the
// re-merge finds the sides apart again and keeps the conflict open. The step's own record of
// open conflicts must follow what was written, so the deactivation later in the same step
// closes that conflict.
func TestConflictReopenedByRemergeClosesOnDeactivation(t *testing.T) {
	e, both, _, _ := conflictEnv(t)
	e.settings(t, generous)
	e.configure(func(c *dirsync.Config) { c.StepBudget = time.Hour }) // the whole run in one step
	e.updateUser(t, both, func(u *m365sim.User) { u.Department = "Leap B"; u.AccountEnabled = false })
	run := e.syncRacingEdits(t, 1, func(int) {
		e.edit(t, both, func(s *stakeholder.Stakeholder) { s.Department = "Leap C" })
	}, "/"+e.kill.prefix+stakeholder.Table)
	st, _ := e.get(t, both)
	if st.Active || st.Department != "Leap C" || run.Deactivated != 1 {
		t.Errorf("stakeholder = %+v; run deactivated %d; want it deactivated with Leap's edit kept", st, run.Deactivated)
	}
	e.wantConflictClosed(t, st.ID)
}
