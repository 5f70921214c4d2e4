package dirsync_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// generous keeps the deletion guard out of tests about something else.
func generous(s *syncsettings.Settings) {
	s.DeletionThreshold = syncsettings.Threshold{Percent: 100, Count: 10000}
}

// filterTo stores a group filter of groups, with the deletion guard kept generous.
func (e *env) filterTo(t *testing.T, groups ...string) {
	t.Helper()
	e.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = groups; generous(s) })
}

func TestFullThenDeltaSync(t *testing.T) {
	e := setup(t)
	must(t, e.sim.Generate(testenv.Tenant, m365sim.GenSpec{Users: 130, Groups: 3, Seed: 7}))
	// A disabled user who was never a stakeholder stays out.
	users := slices.DeleteFunc(e.sim.Users(testenv.Tenant), func(u m365sim.User) bool { return !u.AccountEnabled })
	if len(users) == 130 || len(users) < 100 {
		t.Fatalf("%d enabled users of 130: the generated tenant no longer has a few disabled ones", len(users))
	}

	full := e.sync(t)
	wantState(t, full, dirsync.Succeeded)
	if full.Kind != "full" || full.Processed != 130 || full.Created != len(users) || full.Invalid != 0 || full.Pages != 3 {
		t.Errorf("full run = kind %s processed %d created %d invalid %d pages %d; want full 130 %d 0 3",
			full.Kind, full.Processed, full.Created, full.Invalid, full.Pages, len(users))
	}
	if steps := len(e.q.Published()); steps < 2 {
		t.Errorf("%d step messages, want a chain of several steps", steps)
	}
	got := e.byExternal(t, e.org)
	if len(got) != len(users) {
		t.Fatalf("%d stakeholders, want %d", len(got), len(users))
	}
	if n := len(e.changes(t, full.ID)); n != len(users) || full.Changes != len(users) {
		t.Errorf("full run logged %d changes (run says %d), want %d", n, full.Changes, len(users))
	}
	withManager := 0
	for _, u := range users {
		s := got[u.ID]
		wantEmail := u.Mail
		if wantEmail == "" {
			wantEmail = u.UserPrincipalName
		}
		wantPhone := u.MobilePhone
		if wantPhone == "" && len(u.BusinessPhones) > 0 {
			wantPhone = u.BusinessPhones[0]
		}
		if s.FirstName != u.GivenName || s.LastName != u.Surname || s.Email != wantEmail || s.Phone != wantPhone ||
			s.Department != u.Department || s.Role != u.JobTitle || s.Location != u.OfficeLocation || s.ManagerID != u.ManagerID ||
			s.Source != stakeholder.Entra || s.SyncedAt.IsZero() || s.Base[stakeholder.Department] != u.Department {
			t.Fatalf("stakeholder = %+v\nfrom user %+v", s, u)
		}
		if u.ManagerID != "" {
			withManager++
		}
	}
	if withManager == 0 {
		t.Error("no generated user has a manager: the manager mapping is untested")
	}

	// A delta round with nothing changed touches nothing.
	idle := e.sync(t)
	wantState(t, idle, dirsync.Succeeded)
	if idle.Kind != "delta" || idle.Processed != 0 || idle.Changes != 0 {
		t.Errorf("idle delta = kind %s processed %d changes %d", idle.Kind, idle.Processed, idle.Changes)
	}
	if n := e.sim.Unhandled(); n != 0 {
		t.Errorf("the sim saw %d unhandled requests", n)
	}
}

// TestMergeStrategies runs every strategy against a field changed in Entra only, in Leap Change
// only, in both, and in neither, through the store and the engine.
func TestMergeStrategies(t *testing.T) {
	sim, store, k := newRig(t, 50)
	strategies := []syncsettings.Strategy{syncsettings.EntraWins, syncsettings.LeapWins, syncsettings.SkipConflicts}
	envs := map[syncsettings.Strategy]*env{}
	var first *env
	for i, s := range strategies {
		e := newEngine(t, sim, store, k, tablestoretest.Org(t, fmt.Sprintf("org-%d", i)))
		e.settings(t, func(v *syncsettings.Settings) { v.MergeStrategy = s })
		envs[s] = e
		if first == nil {
			first = e
		}
	}
	uEntra := first.addUser(t, "Erin", "Entra")
	uLeap := first.addUser(t, "Liam", "Leap")
	uBoth := first.addUser(t, "Bea", "Both")
	uNone := first.addUser(t, "Nina", "None")
	for _, s := range strategies {
		wantState(t, envs[s].sync(t), dirsync.Succeeded)
		e := envs[s]
		e.edit(t, uLeap, func(st *stakeholder.Stakeholder) { st.Department = "Leap Dept" })
		e.edit(t, uBoth, func(st *stakeholder.Stakeholder) { st.Department = "Leap B"; st.Influence = "low" })
	}
	first.updateUser(t, uEntra, func(u *m365sim.User) { u.Department = "Entra Dept" })
	first.updateUser(t, uBoth, func(u *m365sim.User) { u.Department = "Entra B" })

	type want struct{ entra, leap, both, none string }
	wants := map[syncsettings.Strategy]want{
		syncsettings.EntraWins:     {"Entra Dept", "Leap Dept", "Entra B", "Operations"},
		syncsettings.LeapWins:      {"Entra Dept", "Leap Dept", "Leap B", "Operations"},
		syncsettings.SkipConflicts: {"Entra Dept", "Leap Dept", "Leap B", "Operations"},
	}
	for _, s := range strategies {
		t.Run(string(s), func(t *testing.T) {
			e := envs[s]
			beforeBoth, beforeETag := e.get(t, uBoth)
			run := e.sync(t)
			wantState(t, run, dirsync.Succeeded)
			log := e.changes(t, run.ID)
			w := wants[s]
			for id, v := range map[string]string{uEntra: w.entra, uLeap: w.leap, uBoth: w.both, uNone: w.none} {
				if st, _ := e.get(t, id); st.Department != v {
					t.Errorf("%s: department = %q, want %q", id, st.Department, v)
				}
			}
			// Entra only: applied and logged with old and new values.
			if cs := changesOf(log, uEntra); len(cs) != 1 || cs[0].Action != dirsync.ActUpdated ||
				!slices.Contains(cs[0].Fields, dirsync.FieldChange{Field: stakeholder.Department, Old: "Operations", New: "Entra Dept"}) {
				t.Errorf("Entra-only change log = %+v", cs)
			}
			if st, _ := e.get(t, uEntra); st.Base[stakeholder.Department] != "Entra Dept" {
				t.Errorf("Entra-only base = %v, want Entra's value", st.Base)
			}
			// Leap only and neither: not in the log (not even read from Entra).
			if cs := append(changesOf(log, uLeap), changesOf(log, uNone)...); len(cs) != 0 {
				t.Errorf("unexpected log entries %+v", cs)
			}
			// Both: a conflict carrying old, new and Leap's values.
			cs := changesOf(log, uBoth)
			if len(cs) != 1 {
				t.Fatalf("conflict log = %+v, want one entry", cs)
			}
			var fc *dirsync.FieldChange
			for i := range cs[0].Fields {
				if cs[0].Fields[i].Field == stakeholder.Department {
					fc = &cs[0].Fields[i]
				}
			}
			if fc == nil || !fc.Conflict || fc.Old != "Leap B" || fc.Leap != "Leap B" || fc.New != w.both {
				t.Errorf("conflict field = %+v, want old/leap %q new %q", fc, "Leap B", w.both)
			}
			after, afterETag := e.get(t, uBoth)
			if after.Influence != "low" {
				t.Errorf("Leap-only field influence = %q, want kept", after.Influence)
			}
			if run.Conflicts != 1 {
				t.Errorf("run conflicts = %d, want 1", run.Conflicts)
			}
			switch s {
			case syncsettings.SkipConflicts:
				if cs[0].Action != dirsync.ActSkipped || run.Skipped != 1 {
					t.Errorf("skip conflicts: action %s, skipped %d", cs[0].Action, run.Skipped)
				}
				if afterETag != beforeETag || !sameStakeholder(beforeBoth, after) {
					t.Errorf("skip conflicts touched the record:\nbefore %+v\nafter  %+v", beforeBoth, after)
				}
			default:
				if cs[0].Action != dirsync.ActConflict {
					t.Errorf("action = %s, want conflict", cs[0].Action)
				}
				if after.Base[stakeholder.Department] != "Entra B" {
					t.Errorf("base after a resolved conflict = %v, want Entra's value", after.Base)
				}
			}
		})
	}

	// Skip conflicts: the conflict is reported every time the user comes round until it is
	// resolved in Leap Change; then the record syncs again.
	e := envs[syncsettings.SkipConflicts]
	e.updateUser(t, uBoth, func(u *m365sim.User) { u.JobTitle = "Lead" })
	run := e.sync(t)
	if cs := changesOf(e.changes(t, run.ID), uBoth); len(cs) != 1 || cs[0].Action != dirsync.ActSkipped {
		t.Errorf("conflict not reported again: %+v", cs)
	}
	if st, _ := e.get(t, uBoth); st.Role != "Analyst" || st.Department != "Leap B" {
		t.Errorf("skipped record changed: %+v", st)
	}
	e.edit(t, uBoth, func(st *stakeholder.Stakeholder) { st.Department = "Entra B" }) // resolved
	e.updateUser(t, uBoth, func(u *m365sim.User) { u.JobTitle = "Head" })
	run = e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if cs := changesOf(e.changes(t, run.ID), uBoth); len(cs) != 1 || cs[0].Action != dirsync.ActUpdated || run.Conflicts != 0 {
		t.Errorf("after resolving: %+v, %d conflicts", cs, run.Conflicts)
	}
	if st, _ := e.get(t, uBoth); st.Role != "Head" || st.Department != "Entra B" || st.Base[stakeholder.Department] != "Entra B" {
		t.Errorf("after resolving: %+v", st)
	}
}

// sameStakeholder compares everything but what a seen mark may change.
func sameStakeholder(a, b stakeholder.Stakeholder) bool {
	a.SeenRun, b.SeenRun = "", ""
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestSoftMatchByEmail(t *testing.T) {
	e := setup(t)
	manual := e.manual(t, e.org, "Alice", "Smith", "ALICE.Smith@Contoso.Example")
	alice := e.addUser(t, "Alice", "Smith")
	e.addUsers(t, "Other", 3)
	run := e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	all := e.all(t, e.org)
	if len(all) != 4 {
		t.Fatalf("%d stakeholders, want 4 (the manual one linked, not duplicated)", len(all))
	}
	st, _ := e.get(t, alice)
	if st.ID != manual.ID || st.Source != stakeholder.Entra || st.Influence != "high" || st.Email != "alice.smith@contoso.example" || st.Department != "Operations" {
		t.Errorf("linked stakeholder = %+v, want the manual one linked with Entra's values", st)
	}
	if run.Created != 3 {
		t.Errorf("created = %d, want 3", run.Created)
	}
	if cs := changesOf(e.changes(t, run.ID), alice); len(cs) != 1 || cs[0].StakeholderID != manual.ID || cs[0].Action == dirsync.ActCreated {
		t.Errorf("log = %+v, want one link entry", cs)
	}
}

func TestRenameKeepsOneStakeholder(t *testing.T) {
	e := setup(t)
	bob := e.addUser(t, "Bob", "Brown")
	e.addUsers(t, "Other", 3)
	wantState(t, e.sync(t), dirsync.Succeeded)
	before, _ := e.get(t, bob)
	e.updateUser(t, bob, func(u *m365sim.User) {
		u.UserPrincipalName, u.Mail, u.GivenName = "robert.brown@contoso.example", "Robert.Brown@contoso.example", "Robert"
	})
	run := e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if n := len(e.all(t, e.org)); n != 4 {
		t.Errorf("%d stakeholders after a rename, want 4", n)
	}
	after, _ := e.get(t, bob)
	if after.ID != before.ID || after.Email != "Robert.Brown@contoso.example" || after.FirstName != "Robert" || run.Updated != 1 || run.Created != 0 {
		t.Errorf("renamed = %+v (run updated %d created %d)", after, run.Updated, run.Created)
	}
	if id, _ := e.shs.Lookup(t.Context(), e.org, "", "robert.brown@contoso.example"); id != before.ID {
		t.Errorf("new address finds %q, want %s", id, before.ID)
	}
	if id, _ := e.shs.Lookup(t.Context(), e.org, "", "bob.brown@contoso.example"); id != "" {
		t.Errorf("old address still finds %q", id)
	}
	e.manual(t, e.org, "Bob", "Other", "bob.brown@contoso.example") // the old address is free
}

func TestDeletedAndDisabledUsers(t *testing.T) {
	for _, filtered := range []bool{false, true} {
		t.Run(fmt.Sprintf("filtered=%v", filtered), func(t *testing.T) { testDeletedAndDisabled(t, filtered) })
	}
}

func testDeletedAndDisabled(t *testing.T, filtered bool) {
	e := setup(t)
	ids := e.addUsers(t, "User", 10)
	gone, off := ids[0], ids[1]
	if filtered {
		// A deleted user also leaves its groups: the reason stays "deleted".
		g := e.addGroup(t, "All", ids...)
		e.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = []string{g} })
	}
	wantState(t, e.sync(t), dirsync.Succeeded)

	must(t, e.sim.SoftDeleteUser(testenv.Tenant, gone))
	must(t, e.sim.SetAccountEnabled(testenv.Tenant, off, false))
	run := e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if run.Deactivated != 2 {
		t.Errorf("deactivated %d, want 2", run.Deactivated)
	}
	for id, reason := range map[string]string{gone: "deleted", off: "disabled"} {
		st, _ := e.get(t, id)
		if st.Active || st.DeactivatedReason != reason {
			t.Errorf("%s: active %v reason %q, want inactive %q", id, st.Active, st.DeactivatedReason, reason)
		}
		if cs := changesOf(e.changes(t, run.ID), id); len(cs) != 1 || cs[0].Action != dirsync.ActDeactivated || cs[0].Reason != reason {
			t.Errorf("%s: log %+v", id, cs)
		}
	}
	if n := len(e.all(t, e.org)); n != 10 {
		t.Errorf("%d stakeholders, want 10 (deactivated, not deleted)", n)
	}

	must(t, e.sim.RestoreUser(testenv.Tenant, gone))
	must(t, e.sim.SetAccountEnabled(testenv.Tenant, off, true))
	run = e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if run.Reactivated != 2 || run.Created != 0 {
		t.Errorf("reactivated %d created %d, want 2 0", run.Reactivated, run.Created)
	}
	for _, id := range []string{gone, off} {
		if st, _ := e.get(t, id); !st.Active || st.DeactivatedReason != "" {
			t.Errorf("%s not reactivated: %+v", id, st)
		}
		if cs := changesOf(e.changes(t, run.ID), id); len(cs) != 1 || cs[0].Action != dirsync.ActReactivated {
			t.Errorf("%s: log %+v", id, cs)
		}
	}
	if n := len(e.all(t, e.org)); n != 10 {
		t.Errorf("%d stakeholders, want 10", n)
	}
}

// filterToNested filters to a group Parent of the users direct and a group Sub of the users
// nested, Sub nested in Parent.
func (e *env) filterToNested(t *testing.T, direct, nested []string) (parent, sub string) {
	t.Helper()
	sub = e.addGroup(t, "Sub", nested...)
	parent = e.addGroup(t, "Parent", direct...)
	must(t, e.sim.AddMember(testenv.Tenant, parent, sub))
	e.filterTo(t, parent)
	return parent, sub
}

// TestGroupFilterScope: a parent group's filter includes the members of its subgroups; users
// leaving or joining the scope through membership alone are deactivated and reactivated.
func TestGroupFilterScope(t *testing.T) {
	e := setup(t)
	direct := e.addUsers(t, "Direct", 3)
	nested := e.addUsers(t, "Nested", 3)
	outside := e.addUsers(t, "Outside", 3)
	parent, sub := e.filterToNested(t, direct, nested)

	wantState(t, e.sync(t), dirsync.Succeeded)
	got := e.byExternal(t, e.org)
	if len(got) != 6 {
		t.Errorf("%d stakeholders, want the 6 members of the parent group (nested included)", len(got))
	}
	for _, id := range append(slices.Clone(direct), nested...) {
		if !got[id].Active {
			t.Errorf("member %s: %+v", id, got[id])
		}
	}
	for _, id := range outside {
		if _, ok := got[id]; ok {
			t.Errorf("user %s outside the filter was synced", id)
		}
	}

	// Leaves through the nested group; an outsider joins it. No user attribute changes.
	must(t, e.sim.RemoveMember(testenv.Tenant, sub, nested[0]))
	must(t, e.sim.AddMember(testenv.Tenant, sub, outside[0]))
	run := e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if st, _ := e.get(t, nested[0]); st.Active || st.DeactivatedReason != "out_of_filter" {
		t.Errorf("left the filter: %+v", st)
	}
	if st, _ := e.get(t, outside[0]); !st.Active || st.FirstName != "Outside" {
		t.Errorf("joined the filter: %+v", st)
	}
	if run.Created != 1 || run.Deactivated != 1 {
		t.Errorf("run created %d deactivated %d, want 1 1", run.Created, run.Deactivated)
	}
	if cs := changesOf(e.changes(t, run.ID), nested[0]); len(cs) != 1 || cs[0].Reason != "out_of_filter" {
		t.Errorf("log of the leaver: %+v", cs)
	}

	// Comes back.
	must(t, e.sim.AddMember(testenv.Tenant, parent, nested[0]))
	run = e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if st, _ := e.get(t, nested[0]); !st.Active || st.DeactivatedReason != "" {
		t.Errorf("came back: %+v", st)
	}
	if run.Reactivated != 1 || run.Created != 0 {
		t.Errorf("run reactivated %d created %d, want 1 0", run.Reactivated, run.Created)
	}
	if n := len(e.byExternal(t, e.org)); n != 7 {
		t.Errorf("%d stakeholders, want 7", n)
	}
}

func TestGroupSync(t *testing.T) {
	e := setup(t)
	a := e.addUsers(t, "Alpha", 3)
	b := e.addUsers(t, "Beta", 2)
	c := e.addUsers(t, "Gamma", 2)
	sub := e.addGroup(t, "Alpha Sub", a[1:]...)
	ga := e.addGroup(t, "Alpha", a[0])
	must(t, e.sim.AddMember(testenv.Tenant, ga, sub))
	// A disabled user never becomes a stakeholder, so it is no member of the mirrored group.
	offUser := e.addUser(t, "Off", "User", func(u *m365sim.User) { u.AccountEnabled = false })
	gb := e.addGroup(t, "Beta", append(slices.Clone(b), offUser)...)
	gc := e.addGroup(t, "Gamma", append(slices.Clone(c), a[0])...)
	e.settings(t, func(s *syncsettings.Settings) {
		s.GroupFilter, s.GroupSync, s.GroupType = []string{ga, gb, gc}, true, "functional"
		generous(s)
	})
	// A manual group with a manual and a synced member, which sync must never touch.
	man := e.manual(t, e.org, "Manual", "Person", "manual.person@example.org")
	must(t, e.grps.Put(t.Context(), e.org, stakeholder.Group{ID: "manual1", Name: "Board", Type: "custom", Source: stakeholder.Manual, Active: true}))

	run := e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	alphaSynced, _ := e.get(t, a[0])
	_, _, err := e.grps.SetMembers(t.Context(), e.org, "manual1", []string{man.ID, alphaSynced.ID}, stakeholder.Manual, e.clock.Now())
	must(t, err)
	manualBefore, manualETag, err := e.grps.Get(t.Context(), e.org, "manual1")
	must(t, err)

	check := func(t *testing.T, gid, name string, active bool, users ...string) {
		t.Helper()
		g, _, err := e.grps.Get(t.Context(), e.org, stakeholder.SyncedGroupID(gid))
		if err != nil {
			t.Fatalf("group %s: %v", name, err)
		}
		if g.Name != name || g.Active != active || g.Source != stakeholder.Entra || g.ExternalID != gid || g.Members != len(users) {
			t.Errorf("group = %+v, want %q active %v with %d members", g, name, active, len(users))
		}
		if got, want := e.members(t, g.ID), e.stakeholderIDs(t, users...); !slices.Equal(got, want) {
			t.Errorf("group %s members = %v, want %v", name, got, want)
		}
	}
	check(t, ga, "Alpha", true, a...) // nested expanded
	check(t, gb, "Beta", true, b...)
	check(t, gc, "Gamma", true, append(slices.Clone(c), a[0])...)
	if g, _, _ := e.grps.Get(t.Context(), e.org, stakeholder.SyncedGroupID(ga)); g.Type != "functional" || g.Description != "Alpha group" {
		t.Errorf("group = %+v", g)
	}

	// Rename, a member leaves a nested group, a group is deleted in Entra.
	must(t, e.sim.RenameGroup(testenv.Tenant, ga, "Alpha Team"))
	must(t, e.sim.RemoveMember(testenv.Tenant, sub, a[2]))
	must(t, e.sim.DeleteGroup(testenv.Tenant, gb))
	run = e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	check(t, ga, "Alpha Team", true, a[:2]...)
	check(t, gb, "Beta", false)
	check(t, gc, "Gamma", true, append(slices.Clone(c), a[0])...)
	notFound := 0
	for _, re := range run.Errors {
		if re.Code == "group_not_found" && re.Object == gb {
			notFound++
		}
	}
	if notFound != 1 || run.ErrorCount != 1 || run.Step < 2 {
		t.Errorf("errors %+v (%d in all), want group_not_found for %s once", run.Errors, run.ErrorCount, gb)
	}

	// Removed from the filter: retired.
	e.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = []string{gc} })
	run = e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	check(t, ga, "Alpha Team", false)
	check(t, gc, "Gamma", true, append(slices.Clone(c), a[0])...)

	// Group sync turned off: the mirrored group is retired, not left frozen.
	e.settings(t, func(s *syncsettings.Settings) { s.GroupSync = false })
	wantState(t, e.sync(t), dirsync.Succeeded)
	check(t, gc, "Gamma", false)

	after, afterETag, err := e.grps.Get(t.Context(), e.org, "manual1")
	must(t, err)
	if afterETag != manualETag || after != manualBefore {
		t.Errorf("manual group touched: %+v", after)
	}
	if got, want := e.members(t, "manual1"), sortedIDs(man.ID, alphaSynced.ID); !slices.Equal(got, want) {
		t.Errorf("manual group members = %v, want %v", got, want)
	}
}

func sortedIDs(ids ...string) []string { slices.Sort(ids); return ids }

func TestGraphFailures(t *testing.T) {
	t.Run("throttled", func(t *testing.T) {
		e := setup(t)
		e.addUsers(t, "User", 120)
		must(t, e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 429, RetryAfter: 1500 * time.Millisecond, Times: 4}))
		run := e.startOpts(t, dirsync.StartOptions{})
		// Deliver by hand to see when each rescheduled step may run.
		for n := 0; n < 100; n++ {
			m, ok := e.next()
			if !ok {
				break
			}
			before := len(e.q.Published())
			at := e.clock.Now()
			if m.NotBefore.After(at) {
				e.clock.advance(m.NotBefore.Sub(at))
				at = m.NotBefore
			}
			must(t, e.eng.Step(t.Context(), m.Body, 1))
			var job dirsync.Job
			for _, p := range e.q.Published()[before:] {
				must(t, json.Unmarshal(p.Body, &job))
				if job.Retry > 0 && !p.NotBefore.IsZero() {
					if wait := p.NotBefore.Sub(at); wait < 1500*time.Millisecond || wait > 2500*time.Millisecond {
						t.Errorf("rescheduled after %v, want Retry-After 1.5s", wait)
					}
				}
			}
		}
		got := e.run(t, run.ID)
		wantState(t, got, dirsync.Succeeded)
		if got.Throttled != 4 || got.Created != 120 || got.Rescheduled != 4 || got.WaitedSeconds < 6 {
			t.Errorf("throttled %d created %d rescheduled %d waited %vs, want 4 120 4 ≥6", got.Throttled, got.Created, got.Rescheduled, got.WaitedSeconds)
		}
		delayed := 0
		for _, p := range e.q.Published() {
			if !p.NotBefore.IsZero() {
				delayed++
			}
		}
		if delayed != 4 {
			t.Errorf("%d delayed messages, want 4", delayed)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		e := setup(t)
		e.addUsers(t, "User", 3)
		must(t, e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 403}))
		run := e.sync(t)
		wantState(t, run, dirsync.Failed)
		if re := hasError(run, "permission_denied", ""); re == nil || !strings.Contains(re.Hint, "User.Read.All") {
			t.Errorf("errors = %+v, want permission_denied with a hint", run.Errors)
		}
		if _, started, err := e.eng.Start(t.Context(), e.org, dirsync.StartOptions{}); err != nil || !started {
			t.Errorf("the failed run still holds the org: started %v, %v", started, err)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		e := setup(t)
		e.addUsers(t, "User", 3)
		must(t, e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 500}))
		run := e.startOpts(t, dirsync.StartOptions{})
		deliveries := e.drain(t)
		got := e.run(t, run.ID)
		wantState(t, got, dirsync.Failed)
		// A failure that persists is put off with a growing delay (MaxReschedules, default 10),
		// not redelivered at once, and only then fails the run.
		if deliveries != 11 || got.Rescheduled != 10 {
			t.Errorf("%d deliveries, %d rescheduled; want 11, 10", deliveries, got.Rescheduled)
		}
		if hasError(got, "unavailable", "") == nil {
			t.Errorf("errors = %+v, want unavailable", got.Errors)
		}
	})
	t.Run("unavailable then recovers", func(t *testing.T) {
		e := setup(t)
		e.addUsers(t, "User", 3)
		must(t, e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 502, Times: 2}))
		run := e.startOpts(t, dirsync.StartOptions{})
		e.drain(t)
		got := e.run(t, run.ID)
		wantState(t, got, dirsync.Succeeded)
		if got.Created != 3 || got.ErrorCount != 0 {
			t.Errorf("created %d errors %+v", got.Created, got.Errors)
		}
	})
}

// TestResyncEqualsFullSync: a delta token reset mid-history restarts the round in full, and
// the delta-synced org ends where a fresh full sync of the same tenant ends.
func TestResyncEqualsFullSync(t *testing.T) {
	sim, store, k := newRig(t, 50)
	a := newEngine(t, sim, store, k, tablestoretest.Org(t, "org-a"))
	must(t, sim.Generate(testenv.Tenant, m365sim.GenSpec{Users: 110, Groups: 2, Seed: 3}))
	users := sim.Users(testenv.Tenant)
	a.settings(t, generous)
	wantState(t, a.sync(t), dirsync.Succeeded)

	a.updateUser(t, users[1].ID, func(u *m365sim.User) { u.Department = "Moved" })
	must(t, sim.SoftDeleteUser(testenv.Tenant, users[2].ID))
	must(t, sim.SetAccountEnabled(testenv.Tenant, users[3].ID, false))
	a.addUser(t, "New", "Comer")
	wantState(t, a.sync(t), dirsync.Succeeded)

	a.updateUser(t, users[4].ID, func(u *m365sim.User) { u.JobTitle = "Renamed Role"; u.ManagerID = users[5].ID })
	must(t, sim.HardDeleteUser(testenv.Tenant, users[6].ID))
	a.addUser(t, "Late", "Comer")
	must(t, sim.ResetDelta(testenv.Tenant))
	run := a.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if run.Kind != "full" {
		t.Errorf("run after a reset is %s, want full", run.Kind)
	}

	b := newEngine(t, sim, store, k, tablestoretest.Org(t, "org-b"))
	wantState(t, b.sync(t), dirsync.Succeeded)
	norm := func(m map[string]stakeholder.Stakeholder) map[string]string {
		out := map[string]string{}
		for x, s := range m {
			if !s.Active {
				continue
			}
			s.ID, s.SeenRun, s.CreatedAt, s.UpdatedAt, s.SyncedAt = "", "", time.Time{}, time.Time{}, time.Time{}
			j, _ := json.Marshal(s)
			out[x] = string(j)
		}
		return out
	}
	ga, gb := norm(a.byExternal(t, a.org)), norm(b.byExternal(t, b.org))
	if !maps.Equal(ga, gb) {
		for x := range ga {
			if ga[x] != gb[x] {
				t.Errorf("%s:\ndelta %s\nfull  %s", x, ga[x], gb[x])
			}
		}
		for x := range gb {
			if _, ok := ga[x]; !ok {
				t.Errorf("%s only in the full sync: %s", x, gb[x])
			}
		}
	}
	all := a.byExternal(t, a.org)
	for _, id := range []string{users[2].ID, users[3].ID, users[6].ID} {
		if all[id].Active {
			t.Errorf("%s still active after delete/disable", id)
		}
	}
	want := 0
	for _, u := range sim.Users(testenv.Tenant) {
		if u.AccountEnabled {
			want++
		}
	}
	if len(ga) != want || want < 100 {
		t.Errorf("%d active stakeholders, want %d", len(ga), want)
	}
}

// TestResumeAfterKill kills a step after its writes and before its checkpoint, then redelivers
// old and duplicate messages: no stakeholder is lost or duplicated, no change logged twice.
func TestResumeAfterKill(t *testing.T) {
	e := setup(t)
	ids := e.addUsers(t, "User", 230) // 5 pages of 50
	e.configure(onePagePerStep)
	run := e.startOpts(t, dirsync.StartOptions{})

	deliver := func(body []byte, count int) error { return e.eng.Step(t.Context(), body, count) }
	var seen [][]byte
	m, _ := e.next()
	must(t, deliver(m.Body, 1)) // page 1
	seen = append(seen, m.Body)
	m, _ = e.next()
	e.kill.arm() // page 2 is written, then the process dies before its checkpoint
	if err := deliver(m.Body, 1); err == nil {
		t.Fatal("the killed step reported success")
	}
	if e.kill.kills.Load() != 1 {
		t.Fatal("the checkpoint was not killed")
	}
	if mid := e.run(t, run.ID); mid.Step != 1 {
		t.Fatalf("checkpoint moved to %d despite the kill", mid.Step)
	}
	// Redeliveries: the killed message, an older one, and a duplicate of the killed one.
	must(t, deliver(m.Body, 2))
	must(t, deliver(seen[0], 2))
	must(t, deliver(m.Body, 3))
	e.drain(t)

	final := e.run(t, run.ID)
	wantState(t, final, dirsync.Succeeded)
	got := e.byExternal(t, e.org)
	if len(got) != len(ids) || len(e.all(t, e.org)) != len(ids) {
		t.Errorf("%d stakeholders (%d rows), want %d", len(got), len(e.all(t, e.org)), len(ids))
	}
	for _, id := range ids {
		if !got[id].Active {
			t.Errorf("user %s lost", id)
		}
	}
	log := e.changes(t, run.ID)
	created := map[string]int{}
	seq := map[int]bool{}
	for _, c := range log {
		if seq[c.Seq] {
			t.Errorf("sequence %d logged twice", c.Seq)
		}
		seq[c.Seq] = true
		if c.Action == dirsync.ActCreated {
			created[c.ExternalID]++
		}
	}
	for _, id := range ids {
		if created[id] != 1 {
			t.Errorf("user %s has %d created entries, want 1", id, created[id])
		}
	}
	if final.Created != len(ids) || final.Changes != len(log) {
		t.Errorf("run: created %d changes %d; log %d entries; want %d", final.Created, final.Changes, len(log), len(ids))
	}
	// A message redelivered after the run finished is a no-op: it publishes nothing, not even
	// into a fresh queue, whose duplicate detection cannot drop a message published before.
	after := &queuetest.Queue{}
	e.configure(func(c *dirsync.Config) { onePagePerStep(c); c.Queue = after })
	if err := deliver(seen[0], 4); err != nil || len(after.Published()) != 0 {
		t.Errorf("step after the end: err %v, %d new messages", err, len(after.Published()))
	}
}

func TestOverlappingStarts(t *testing.T) {
	e := setup(t)
	e.addUsers(t, "User", 3)
	for round := range 2 { // round 0 inserts the claim, round 1 updates it
		const n = 2
		var wg sync.WaitGroup
		runs := make([]dirsync.Run, n)
		starts := make([]bool, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				runs[i], starts[i], errs[i] = e.eng.Start(t.Context(), e.org, dirsync.StartOptions{Trigger: "manual"})
			})
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
		again, started, err := e.eng.Start(t.Context(), e.org, dirsync.StartOptions{Trigger: "schedule"})
		if err != nil || started || again.ID != runs[0].ID {
			t.Errorf("a later Start = %s started %v err %v; want the running %s", again.ID, started, err, runs[0].ID)
		}
		e.drain(t)
		wantState(t, e.run(t, runs[0].ID), dirsync.Succeeded)
	}
	runs, err := e.eng.Runs(t.Context(), e.org, 10)
	if err != nil || len(runs) != 2 {
		t.Fatalf("Runs = %d runs, %v; want 2", len(runs), err)
	}
}

// heldRun syncs 20 users, deletes 6 of them in Entra (30 % > the default 20 %) and returns the
// next run, held by the deletion guard, with the users' ids.
func heldRun(t *testing.T) (*env, []string, dirsync.Run) {
	t.Helper()
	e := setup(t)
	ids := e.addUsers(t, "User", 20)
	wantState(t, e.sync(t), dirsync.Succeeded)
	for _, id := range ids[:6] {
		must(t, e.sim.SoftDeleteUser(testenv.Tenant, id))
	}
	run := e.sync(t)
	wantState(t, run, dirsync.Held)
	return e, ids, run
}

// TestDeletionGuard, and again with the guard reading two pending deactivations a call (its
// count and its log then resume from the run's cursor).
func TestDeletionGuard(t *testing.T) {
	t.Run("one page", testDeletionGuard)
	t.Run("pages of two", func(t *testing.T) {
		defer dirsync.SetGuardPage(2)()
		testDeletionGuard(t)
	})
}

func testDeletionGuard(t *testing.T) {
	e, ids, run := heldRun(t)
	if run.Hold == nil || run.Hold.Deactivations != 6 || run.Hold.ActiveSynced != 20 || run.Deactivated != 0 || run.PendingDeactivations != 6 {
		t.Fatalf("held run = %+v hold %+v", run, run.Hold)
	}
	if hasError(run, "deletion_threshold", "") == nil {
		t.Errorf("errors %+v", run.Errors)
	}
	pending := 0
	for _, c := range e.changes(t, run.ID) {
		if c.Action == dirsync.ActDeactivated && strings.Contains(c.Reason, "approval") {
			pending++
		}
	}
	if pending != 6 {
		t.Errorf("%d pending deactivations logged, want 6", pending)
	}
	for _, id := range ids[:6] {
		if st, _ := e.get(t, id); !st.Active {
			t.Errorf("%s deactivated before approval", id)
		}
	}
	if again, started, err := e.eng.Start(t.Context(), e.org, dirsync.StartOptions{}); err != nil || started || again.ID != run.ID {
		t.Errorf("Start while held = %s %v %v, want the held run", again.ID, started, err)
	}

	if _, err := e.eng.Approve(t.Context(), e.org, run.ID, "admin@contoso.example"); err != nil {
		t.Fatal(err)
	}
	e.drain(t)
	run = e.run(t, run.ID)
	wantState(t, run, dirsync.Succeeded)
	if run.Deactivated != 6 || run.Hold == nil || run.Hold.ApprovedBy != "admin@contoso.example" {
		t.Errorf("approved run: deactivated %d hold %+v", run.Deactivated, run.Hold)
	}
	for _, id := range ids[:6] {
		if st, _ := e.get(t, id); st.Active || st.DeactivatedReason != "deleted" {
			t.Errorf("%s after approval: %+v", id, st)
		}
	}
	if _, err := e.eng.Approve(t.Context(), e.org, run.ID, "admin"); !errors.Is(err, dirsync.ErrNotHeld) {
		t.Errorf("Approve of a finished run = %v, want ErrNotHeld", err)
	}
	if _, err := e.eng.Approve(t.Context(), e.org, "nope", "admin"); !errors.Is(err, dirsync.ErrRunNotFound) {
		t.Errorf("Approve of an unknown run = %v, want ErrRunNotFound", err)
	}

	// Below the threshold: applied directly.
	must(t, e.sim.SoftDeleteUser(testenv.Tenant, ids[10]))
	run = e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if run.Deactivated != 1 || run.Hold != nil {
		t.Errorf("small deactivation: deactivated %d hold %+v", run.Deactivated, run.Hold)
	}
	if st, _ := e.get(t, ids[10]); st.Active {
		t.Errorf("%s still active", ids[10])
	}
}

func TestDryRun(t *testing.T) {
	e := setup(t)
	ids := e.addUsers(t, "User", 10)
	e.settings(t, generous)
	wantState(t, e.sync(t), dirsync.Succeeded)

	e.updateUser(t, ids[0], func(u *m365sim.User) { u.Department = "Entra Only" })
	e.updateUser(t, ids[1], func(u *m365sim.User) { u.Department = "Entra Side" })
	e.edit(t, ids[1], func(s *stakeholder.Stakeholder) { s.Department = "Leap Side" })
	must(t, e.sim.SoftDeleteUser(testenv.Tenant, ids[2]))
	newcomer := e.addUser(t, "New", "Comer")

	before := e.snapshot(t, e.org)
	run := e.dryRun(t)
	wantState(t, run, dirsync.Succeeded)
	after := e.snapshot(t, e.org)
	if !maps.Equal(before, after) {
		for k := range after {
			if before[k] != after[k] {
				t.Errorf("dry run wrote %s:\nbefore %s\nafter  %s", k, before[k], after[k])
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				t.Errorf("dry run deleted %s", k)
			}
		}
	}
	if !run.DryRun || run.Created != 1 || run.Updated != 2 || run.Conflicts != 1 || run.PendingDeactivations != 1 || run.Deactivated != 0 {
		t.Errorf("dry run counts: %+v", run)
	}
	log := e.changes(t, run.ID)
	want := map[string]string{ids[0]: dirsync.ActUpdated, ids[1]: dirsync.ActConflict, ids[2]: dirsync.ActDeactivated, newcomer: dirsync.ActCreated}
	for id, action := range want {
		if cs := changesOf(log, id); len(cs) != 1 || cs[0].Action != action {
			t.Errorf("%s: log %+v, want %s", id, cs, action)
		}
	}

	// The real run afterwards still sees every change: the dry run did not consume the delta.
	real := e.sync(t)
	wantState(t, real, dirsync.Succeeded)
	if real.Created != 1 || real.Updated != 2 || real.Deactivated != 1 {
		t.Errorf("real run after the dry run: %+v", real)
	}
}

func TestInvalidUsers(t *testing.T) {
	for _, filtered := range []bool{false, true} {
		t.Run(fmt.Sprintf("filtered=%v", filtered), func(t *testing.T) { testInvalidUsers(t, filtered) })
	}
}

func testInvalidUsers(t *testing.T, filtered bool) {
	e := setup(t)
	good := e.addUsers(t, "Good", 3)
	noName := e.addUser(t, "x", "y", func(u *m365sim.User) { u.GivenName, u.Surname, u.DisplayName = "", "", "" })
	noMail := e.addUser(t, "No", "Mail", func(u *m365sim.User) { u.Mail, u.UserPrincipalName = "", "" })
	if filtered {
		g := e.addGroup(t, "All", append(slices.Clone(good), noName, noMail)...)
		e.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = []string{g} })
	}
	run := e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if run.Invalid != 2 || run.Created != 3 || run.ErrorCount != 2 {
		t.Errorf("invalid %d created %d errors %d, want 2 3 2", run.Invalid, run.Created, run.ErrorCount)
	}
	for _, id := range []string{noName, noMail} {
		if re := hasError(run, "invalid_data", id); re == nil || re.Hint == "" {
			t.Errorf("no invalid_data error for %s: %+v", id, run.Errors)
		}
		if cs := changesOf(e.changes(t, run.ID), id); len(cs) != 1 || cs[0].Action != dirsync.ActInvalid {
			t.Errorf("%s: log %+v", id, cs)
		}
	}
	if n := len(e.all(t, e.org)); n != 3 {
		t.Errorf("%d stakeholders, want 3", n)
	}
}

func TestOrgIsolation(t *testing.T) {
	e := setup(t)
	orgB := tablestoretest.Org(t, "org-b")
	alice := e.addUser(t, "Alice", "Smith")
	e.addUsers(t, "User", 4)
	manualB := e.manual(t, orgB, "Alice", "Smith", "alice.smith@contoso.example")
	before := e.snapshot(t, orgB)
	var mu sync.Mutex
	var touchedB []string
	touchedA := 0
	run := e.syncWatching(t, func(r *http.Request, body []byte) {
		u, _ := url.PathUnescape(r.URL.String())
		if strings.Contains(u, "org-a") || bytes.Contains(body, []byte("org-a")) {
			mu.Lock()
			touchedA++
			mu.Unlock()
		}
		if strings.Contains(u, "'org-b'") || strings.Contains(u, "org-b") || bytes.Contains(body, []byte("org-b")) {
			mu.Lock()
			touchedB = append(touchedB, r.Method+" "+u)
			mu.Unlock()
		}
	})
	if touchedA == 0 {
		t.Error("the request watch saw no request about org A: it cannot see org B's either")
	}
	if len(touchedB) > 0 {
		t.Errorf("org A's sync sent requests about org B: %v", touchedB)
	}
	wantState(t, run, dirsync.Succeeded)
	if !maps.Equal(before, e.snapshot(t, orgB)) {
		t.Errorf("org A's sync changed org B:\nbefore %v\nafter  %v", before, e.snapshot(t, orgB))
	}
	bs := e.all(t, orgB)
	if len(bs) != 1 || bs[0].ID != manualB.ID || bs[0].ExternalID != "" || bs[0].Source != stakeholder.Manual {
		t.Errorf("org B = %+v", bs)
	}
	if st, _ := e.get(t, alice); st.ID == manualB.ID {
		t.Error("org A linked org B's stakeholder")
	}
	if n := len(e.all(t, e.org)); n != 5 {
		t.Errorf("org A has %d stakeholders, want 5", n)
	}
	if runs, err := e.eng.Runs(t.Context(), orgB, 10); err != nil || len(runs) != 0 {
		t.Errorf("org B runs = %v, %v", runs, err)
	}
	ix, err := e.shs.LoadIndex(t.Context(), orgB)
	must(t, err)
	if len(ix.ByExternal) != 0 || len(ix.ByEmail) != 1 {
		t.Errorf("org B index = %+v", ix)
	}
}

func TestBadJobs(t *testing.T) {
	e := setup(t)
	for _, body := range []string{`not json`, `{"org":"org-a"}`, `{"org":"","runId":"x"}`, `{"org":"org-a","runId":"x","step":-1}`} {
		if err := e.eng.Step(t.Context(), []byte(body), 1); !errors.Is(err, dirsync.ErrBadJob) {
			t.Errorf("Step(%s) = %v, want ErrBadJob", body, err)
		}
	}
	if err := e.eng.Step(t.Context(), []byte(`{"org":"org-a","runId":"0000000000000-0000"}`), 1); err != nil {
		t.Errorf("step of an unknown run = %v, want dropped", err)
	}
	if _, _, err := e.eng.Run(t.Context(), e.org, "../etc"); !errors.Is(err, dirsync.ErrRunNotFound) {
		t.Errorf("Run(bad id) = %v", err)
	}
	if _, err := e.eng.Changes(t.Context(), e.org, "../etc", 0, 10); !errors.Is(err, dirsync.ErrRunNotFound) {
		t.Errorf("Changes(bad id) = %v", err)
	}
	_ = tablestore.ErrNotFound
}

// TestResumeAfterKillInDeprovision kills a deactivation chunk after its writes and before its
// checkpoint: the redelivery neither loses nor repeats its counts and log entries.
func TestResumeAfterKillInDeprovision(t *testing.T) {
	e := setup(t)
	ids := e.addUsers(t, "User", 20)
	e.settings(t, generous)
	wantState(t, e.sync(t), dirsync.Succeeded)
	for _, id := range ids[:5] {
		must(t, e.sim.SoftDeleteUser(testenv.Tenant, id))
	}
	e.configure(onePagePerStep) // one phase per step
	run := e.startOpts(t, dirsync.StartOptions{})
	killedOnce := false
	for n := 0; n < 50; n++ {
		m, ok := e.next()
		if !ok {
			break
		}
		if cur := e.run(t, run.ID); cur.Phase == dirsync.PhaseDeprovision && !killedOnce {
			killedOnce = true
			e.kill.arm()
			if err := e.eng.Step(t.Context(), m.Body, 1); err == nil || e.kill.kills.Load() != 1 {
				t.Fatalf("deprovision step not killed: %v", err)
			}
			must(t, e.eng.Step(t.Context(), m.Body, 2))
			must(t, e.eng.Step(t.Context(), m.Body, 3)) // a duplicate
			continue
		}
		must(t, e.eng.Step(t.Context(), m.Body, 1))
	}
	if !killedOnce {
		t.Fatal("the run never reached its deprovision phase")
	}
	final := e.run(t, run.ID)
	wantState(t, final, dirsync.Succeeded)
	if final.Deactivated != 5 {
		t.Errorf("deactivated %d, want 5", final.Deactivated)
	}
	log := e.changes(t, run.ID)
	for _, id := range ids[:5] {
		if cs := changesOf(log, id); len(cs) != 1 || cs[0].Action != dirsync.ActDeactivated {
			t.Errorf("%s: log %+v, want one deactivation", id, cs)
		}
		if st, _ := e.get(t, id); st.Active {
			t.Errorf("%s still active", id)
		}
	}
	if len(log) != final.Changes {
		t.Errorf("log has %d entries, run says %d", len(log), final.Changes)
	}
}

// TestDryRunWithFilter: a user who joins the filter group and changes in the same round is
// reported once by a dry run, as the real run then does.
func TestDryRunWithFilter(t *testing.T) {
	e := setup(t)
	e.configure(func(c *dirsync.Config) { c.StepBudget, c.GiveUpAfter = 0, 0 }) // the defaults
	ids := e.addUsers(t, "User", 5)
	g := e.addGroup(t, "All", ids...)
	e.filterTo(t, g)
	wantState(t, e.sync(t), dirsync.Succeeded)

	joiner := e.addUser(t, "Join", "Er")
	must(t, e.sim.AddMember(testenv.Tenant, g, joiner))
	before := e.snapshot(t, e.org)
	dry := e.dryRun(t)
	wantState(t, dry, dirsync.Succeeded)
	if !maps.Equal(before, e.snapshot(t, e.org)) {
		t.Error("the dry run wrote")
	}
	if cs := changesOf(e.changes(t, dry.ID), joiner); dry.Created != 1 || len(cs) != 1 || cs[0].Action != dirsync.ActCreated {
		t.Errorf("dry run: created %d, log %+v; want one creation", dry.Created, cs)
	}
	real := e.sync(t)
	wantState(t, real, dirsync.Succeeded)
	if cs := changesOf(e.changes(t, real.ID), joiner); real.Created != 1 || len(cs) != 1 {
		t.Errorf("real run: created %d, log %+v", real.Created, cs)
	}
}

// TestDeactivationRacesLeapEdit: a stakeholder edited in Leap Change while its deactivation is
// being written is still deactivated, with the edit kept.
func TestDeactivationRacesLeapEdit(t *testing.T) {
	e := setup(t)
	ids := e.addUsers(t, "User", 10)
	e.settings(t, generous)
	wantState(t, e.sync(t), dirsync.Succeeded)

	run := e.syncDeletionRacingEdit(t, ids[0])

	st, _ := e.get(t, ids[0])
	if st.Active || st.DeactivatedReason != "deleted" || st.Influence != "edited meanwhile" {
		t.Errorf("stakeholder = %+v, want deactivated (deleted) with the Leap edit kept", st)
	}
	if run.ErrorCount != 0 || run.Deactivated != 1 {
		t.Errorf("run: deactivated %d, errors %+v", run.Deactivated, run.Errors)
	}
}

// syncDeletionRacingEdit deletes user id in Entra ID and syncs, with its stakeholder's influence
// edited in Leap Change while the deactivation is written.
func (e *env) syncDeletionRacingEdit(t *testing.T, id string) dirsync.Run {
	t.Helper()
	must(t, e.sim.SoftDeleteUser(testenv.Tenant, id))
	return e.syncRacingEdits(t, 1, func(int) {
		e.edit(t, id, func(s *stakeholder.Stakeholder) { s.Influence = "edited meanwhile" })
	}, `"deactivatedReason":"deleted"`)
}

// entraRaceEnv syncs three users, then changes the first one's department in Entra ID to
// "Entra Race": the change whose write the tests race with Leap Change edits.
func entraRaceEnv(t *testing.T) (e *env, raced string) {
	t.Helper()
	e = setup(t)
	ids := e.addUsers(t, "User", 3)
	wantState(t, e.sync(t), dirsync.Succeeded)
	e.updateUser(t, ids[0], func(u *m365sim.User) { u.Department = "Entra Race" })
	return e, ids[0]
}

// TestUpdateRacesLeapEdit: a stakeholder edited in Leap Change while sync writes Entra's change
// is merged again: both changes are kept, counted once.
func TestUpdateRacesLeapEdit(t *testing.T) {
	e, id := entraRaceEnv(t)

	run := e.syncRacingEdits(t, 1, func(int) {
		e.edit(t, id, func(s *stakeholder.Stakeholder) { s.Location = "Leap Race"; s.Influence = "high" })
	}, `Entra Race`)

	st, _ := e.get(t, id)
	if st.Department != "Entra Race" || st.Location != "Leap Race" || st.Influence != "high" || st.Base[stakeholder.Department] != "Entra Race" {
		t.Errorf("stakeholder = %+v, want Entra's and Leap's changes", st)
	}
	if run.Updated != 1 || run.ErrorCount != 0 {
		t.Errorf("run: updated %d errors %+v, want 1 and none", run.Updated, run.Errors)
	}
}

// TestUpdateKeepsRacingLeapEdits: a stakeholder edited in Leap Change before the sync's write
// and again before its re-merge's write is left as it is; the user still lands in exactly one
// outcome column (skipped), and the error says truthfully when Entra's change arrives.
func TestUpdateKeepsRacingLeapEdits(t *testing.T) {
	e, id := entraRaceEnv(t)

	// Every stakeholder write of Entra's change: the page's, the one-by-one retry, the re-merge.
	run := e.syncRacingEdits(t, 3, func(n int) { // the run checks that every processed user is in one column
		e.edit(t, id, func(s *stakeholder.Stakeholder) { s.Influence = fmt.Sprintf("edit %d", n) })
	}, "/"+e.kill.prefix+stakeholder.Table, `Entra Race`)

	if run.Processed != 1 || run.Skipped != 1 || run.Updated != 0 {
		t.Errorf("run: processed %d skipped %d updated %d; want 1 1 0", run.Processed, run.Skipped, run.Updated)
	}
	rerr := hasError(run, "conflict", id)
	if rerr == nil || strings.Contains(rerr.Hint, "next sync merges") {
		t.Errorf("errors %+v, want a conflict error whose hint does not promise the next (delta) sync", run.Errors)
	}
	st, _ := e.get(t, id)
	if st.Department == "Entra Race" || st.Influence != "edit 3" {
		t.Errorf("stakeholder = %+v, want Leap's last edit and not Entra's change", st)
	}
	if cs := changesOf(e.changes(t, run.ID), id); len(cs) != 2 || cs[1].Action != dirsync.ActError {
		t.Errorf("change log %+v, want the update and its not-written error", cs)
	}
}
