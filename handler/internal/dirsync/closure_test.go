package dirsync_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// requests is what a run cost in Graph requests, by kind.
type requests struct{ all, groupsDelta, transitive, user, group int64 }

func (e *env) requests() requests {
	d := e.dir
	return requests{d.calls.Load(), d.groupsDelta.Load(), d.transitive.Load(), d.users.Load(), d.groups.Load()}
}

func (r requests) minus(o requests) requests {
	return requests{r.all - o.all, r.groupsDelta - o.groupsDelta, r.transitive - o.transitive, r.user - o.user, r.group - o.group}
}

// syncCost runs one sync and returns it with the Graph requests it made.
func (e *env) syncCost(t *testing.T) (dirsync.Run, requests) {
	t.Helper()
	before := e.requests()
	run := e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	return run, e.requests().minus(before)
}

// closureRows reads the org's stored closure: "user|group" for each direct membership it holds,
// and the marked users.
func (e *env) closureRows(t *testing.T) (members, marks []string) {
	t.Helper()
	type row struct {
		User  string `json:"user"`
		Group string `json:"group"`
	}
	for r, err := range tablestore.Query[row](t.Context(), e.store.Table(dirsync.ScopeTable), e.org, tablestore.QueryOptions{}) {
		must(t, err)
		switch {
		case strings.HasPrefix(r.Key, "mark|"):
			marks = append(marks, r.Value.User)
		case strings.Contains(r.Key, "|p|"):
			members = append(members, r.Value.User+"|"+r.Value.Group)
		}
	}
	slices.Sort(members)
	return members, marks
}

// wantClosure checks that the stored closure holds exactly the direct user memberships of
// groups (the filter groups and their nested groups), as the tenant has them now, and no mark.
func (e *env) wantClosure(t *testing.T, groups ...string) {
	t.Helper()
	var want []string
	for _, g := range groups {
		ms, err := e.sim.Members(testenv.Tenant, g)
		must(t, err)
		for _, m := range ms {
			if !m.IsGroup {
				want = append(want, m.ID+"|"+g)
			}
		}
	}
	slices.Sort(want)
	got, marks := e.closureRows(t)
	if !slices.Equal(got, want) {
		t.Errorf("stored closure = %v\nwant %v", got, want)
	}
	if len(marks) != 0 {
		t.Errorf("marks left after a real run: %v", marks)
	}
}

func wantActive(t *testing.T, e *env, active bool, reason string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if st, _ := e.get(t, id); st.Active != active || st.DeactivatedReason != reason {
			t.Errorf("%s: active %v reason %q, want %v %q", id, st.Active, st.DeactivatedReason, active, reason)
		}
	}
}

// A delta run under a filter after one user joins a filter group and one leaves reads the
// membership changes (groups/delta), never a filter group's members.
func TestFilteredDeltaReadsMembershipChanges(t *testing.T) {
	e := setup(t)
	a := e.addUsers(t, "Alpha", 60) // more than a page of members
	b := e.addUsers(t, "Beta", 5)
	out := e.addUsers(t, "Out", 3)
	ga, gb := e.addGroup(t, "Alpha", a...), e.addGroup(t, "Beta", b...)
	e.filterTo(t, ga, gb)
	first, cost := e.syncCost(t)
	if first.Created != 65 || cost.transitive != 0 {
		t.Errorf("first run created %d with %d TransitiveUserIDs; want 65, 0", first.Created, cost.transitive)
	}
	e.wantClosure(t, ga, gb)

	must(t, e.sim.AddMember(testenv.Tenant, gb, out[0]))
	must(t, e.sim.RemoveMember(testenv.Tenant, ga, a[0]))
	run, cost := e.syncCost(t)
	if run.Created != 1 || run.Deactivated != 1 {
		t.Errorf("created %d deactivated %d, want 1 1", run.Created, run.Deactivated)
	}
	wantActive(t, e, true, "", out[0])
	wantActive(t, e, false, "out_of_filter", a[0])
	// One groups/delta page, users/delta, and the joined user (and its manager).
	if cost.transitive != 0 || cost.group != 0 || cost.groupsDelta != 1 || cost.user != 1 || cost.all > 4 {
		t.Errorf("delta run requests %+v; want 1 groups/delta, 1 user, no TransitiveUserIDs or Group, at most 4 in all", cost)
	}
	e.wantClosure(t, ga, gb)

	// Nothing changed: a groups/delta page and a users/delta page.
	idle, cost := e.syncCost(t)
	if idle.Processed != 0 || idle.Deactivated != 0 || cost.all != 2 || cost.groupsDelta != 1 {
		t.Errorf("idle run processed %d deactivated %d with requests %+v; want 0 0 and 2 requests", idle.Processed, idle.Deactivated, cost)
	}
}

// A delta round after the same small change costs about the same with a two-group filter as
// without: the filter adds one groups/delta page, not requests in proportion to the groups.
func TestFilterCostsAboutTheSame(t *testing.T) {
	sim, store, k := newRig(t, 50)
	plain := newEngine(t, sim, store, k, tablestoretest.Org(t, "org-plain"))
	filtered := newEngine(t, sim, store, k, tablestoretest.Org(t, "org-filtered"))
	// One step per run: a step that ends mid-round drops the page it fetched ahead, a cost of
	// the step budget, not of the filter.
	for _, e := range []*env{plain, filtered} {
		e.configure(func(c *dirsync.Config) { c.StepBudget = time.Hour })
	}
	a := plain.addUsers(t, "Alpha", 150)
	b := plain.addUsers(t, "Beta", 150)
	ga, gb := plain.addGroup(t, "Alpha", a...), plain.addGroup(t, "Beta", b...)
	plain.settings(t, generous)
	filtered.filterTo(t, ga, gb)
	plain.syncCost(t)
	filtered.syncCost(t)

	// 1 % of memberships and 40 % of profiles change: 120 users edited, a new user in Alpha,
	// a Beta member leaves.
	for _, id := range append(slices.Clone(a[:60]), b[:60]...) {
		must(t, sim.UpdateUser(testenv.Tenant, id, func(u *m365sim.User) { u.JobTitle = "Lead" }))
	}
	joined := plain.addUser(t, "New", "Joiner")
	must(t, sim.AddMember(testenv.Tenant, ga, joined))
	must(t, sim.RemoveMember(testenv.Tenant, gb, b[149]))

	_, without := plain.syncCost(t)
	run, with := filtered.syncCost(t)
	if run.Created != 1 || run.Deactivated != 1 || run.Updated != 120 {
		t.Errorf("filtered run created %d deactivated %d updated %d, want 1 1 120", run.Created, run.Deactivated, run.Updated)
	}
	if with.transitive != 0 || float64(with.all) > 1.5*float64(without.all) {
		t.Errorf("requests with a 2-group filter %+v, without %+v: want at most 1.5× and no TransitiveUserIDs", with, without)
	}
	t.Logf("Graph requests for the delta round: %d without a filter, %d with a 2-group filter of 300 members", without.all, with.all)
}

// Nesting changes: a nested group added to a filter group brings its users in, one removed takes
// them out; the closure follows (rebuilt), with no TransitiveUserIDs.
func TestNestedGroupAddedAndRemoved(t *testing.T) {
	e := setup(t)
	direct := e.addUsers(t, "Direct", 2)
	nested := e.addUsers(t, "Nested", 3)
	deeper := e.addUsers(t, "Deeper", 2)
	parent := e.addGroup(t, "Parent", direct...)
	sub := e.addGroup(t, "Sub", nested...)
	deep := e.addGroup(t, "Deep", deeper...)
	must(t, e.sim.AddMember(testenv.Tenant, sub, deep))
	e.filterTo(t, parent)
	if run, _ := e.syncCost(t); run.Created != 2 {
		t.Fatalf("created %d, want the 2 direct members", run.Created)
	}

	must(t, e.sim.AddMember(testenv.Tenant, parent, sub)) // Sub and, through it, Deep
	run, cost := e.syncCost(t)
	// Parent's round, then Sub's and Deep's initial rounds: Parent is not read again.
	if run.Created != 5 || cost.transitive != 0 || cost.groupsDelta != 3 {
		t.Errorf("nested group added: created %d with requests %+v; want 5, no TransitiveUserIDs, 3 groups/delta", run.Created, cost)
	}
	wantActive(t, e, true, "", append(slices.Clone(nested), deeper...)...)
	e.wantClosure(t, parent, sub, deep)

	// A member change inside the nested group is followed row by row.
	must(t, e.sim.RemoveMember(testenv.Tenant, deep, deeper[0]))
	run, _ = e.syncCost(t)
	if run.Deactivated != 1 {
		t.Errorf("left the deepest group: deactivated %d, want 1", run.Deactivated)
	}
	wantActive(t, e, false, "out_of_filter", deeper[0])

	// Also a direct member of Parent: removing Sub keeps it in through Parent.
	must(t, e.sim.AddMember(testenv.Tenant, parent, nested[0]))
	must(t, e.sim.RemoveMember(testenv.Tenant, parent, sub))
	run, cost = e.syncCost(t)
	// Parent's round only: the rows of Sub and Deep are forgotten from storage, no Graph request.
	if run.Deactivated != 3 || cost.transitive != 0 || cost.groupsDelta != 1 {
		t.Errorf("nested group removed: deactivated %d with requests %+v; want 3, no TransitiveUserIDs, 1 groups/delta", run.Deactivated, cost)
	}
	wantActive(t, e, true, "", nested[0])
	wantActive(t, e, false, "out_of_filter", nested[1], nested[2], deeper[1])
	e.wantClosure(t, parent)
}

// A changed filter between runs: users only in the old groups leave, users only in the new ones
// join, users in both stay.
func TestFilterChangedBetweenRuns(t *testing.T) {
	e := setup(t)
	a := e.addUsers(t, "Alpha", 3)
	b := e.addUsers(t, "Beta", 3)
	ga := e.addGroup(t, "Alpha", a...)
	gb := e.addGroup(t, "Beta", append(slices.Clone(b), a[0])...)
	e.filterTo(t, ga)
	e.syncCost(t)

	e.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = []string{gb} })
	run, cost := e.syncCost(t)
	// Beta's initial round alone: Alpha's rows go without a request.
	if run.Created != 3 || run.Deactivated != 2 || cost.groupsDelta != 1 {
		t.Errorf("created %d deactivated %d requests %+v, want 3 2 and 1 groups/delta", run.Created, run.Deactivated, cost)
	}
	wantActive(t, e, true, "", append(slices.Clone(b), a[0])...)
	wantActive(t, e, false, "out_of_filter", a[1], a[2])
	e.wantClosure(t, gb)

	// The filter removed: the closure goes; set again, it is built anew and compared in full.
	e.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = nil })
	e.syncCost(t)
	if rows, marks := e.closureRows(t); len(rows)+len(marks) != 0 {
		t.Errorf("closure left after the filter was removed: %d rows %d marks", len(rows), len(marks))
	}
	wantActive(t, e, true, "", b...) // nothing changed for them
	e.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = []string{ga} })
	run, _ = e.syncCost(t)
	wantActive(t, e, true, "", a...)
	wantActive(t, e, false, "out_of_filter", b...)
	if run.Reactivated != 2 || run.Deactivated != 3 {
		t.Errorf("reactivated %d deactivated %d, want 2 3", run.Reactivated, run.Deactivated)
	}
	e.wantClosure(t, ga)
}

// alphaFiltered syncs four users in group Alpha under a filter on it, beside a fifth user outside.
func alphaFiltered(t *testing.T) (e *env, alpha []string, out, group string) {
	t.Helper()
	e = setup(t)
	alpha = e.addUsers(t, "Alpha", 4)
	out = e.addUser(t, "Out", "Sider")
	group = e.addGroup(t, "Alpha", alpha...)
	e.filterTo(t, group)
	e.syncCost(t)
	return e, alpha, out, group
}

// wantDeltaRoundsAgain checks that the run after a closure rebuild is back to delta rounds: one
// users/delta and one groups/delta request.
func (e *env) wantDeltaRoundsAgain(t *testing.T) {
	t.Helper()
	if _, cost := e.syncCost(t); cost.all != 2 {
		t.Errorf("the run after the rebuild made %d requests, want 2 (back to delta rounds)", cost.all)
	}
}

// An expired groups/delta link (410) rebuilds the closure: the run still sees the change.
func TestGroupsDeltaGoneRebuilds(t *testing.T) {
	e, a, out, ga := alphaFiltered(t)

	must(t, e.sim.AddMember(testenv.Tenant, ga, out))
	must(t, e.sim.RemoveMember(testenv.Tenant, ga, a[0]))
	must(t, e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/groups/delta", Status: http.StatusGone, Code: "resyncRequired", Times: 1}))
	run, cost := e.syncCost(t)
	if run.Created != 1 || run.Deactivated != 1 || cost.transitive != 0 || cost.groupsDelta != 2 {
		t.Errorf("created %d deactivated %d requests %+v; want 1 1, the 410 and a new round", run.Created, run.Deactivated, cost)
	}
	wantActive(t, e, true, "", out)
	wantActive(t, e, false, "out_of_filter", a[0])
	e.wantClosure(t, ga)
	e.wantDeltaRoundsAgain(t)
}

// A step that dies mid-update (its rows written, its progress not) is redone, and the redo
// leaves the same closure and the same outcome: for member changes, a nested group that comes in
// (an extension) and one that goes out (a shrink).
func TestClosureUpdateRedone(t *testing.T) {
	for _, c := range []struct {
		name             string
		nested           bool // Sub is nested in Alpha before the change
		change           func(e *env, ga, sub string, a, out []string)
		created, deact   int
		saves            int // the state saves that go through before one fails
		marks            int // after the interrupted page
		tracked          func(ga, sub string) []string
		active, inactive func(a, out, subUsers []string) []string
	}{
		{name: "members", change: func(e *env, ga, _ string, a, out []string) {
			must(t, e.sim.AddMember(testenv.Tenant, ga, out[0]))
			must(t, e.sim.AddMember(testenv.Tenant, ga, out[1]))
			must(t, e.sim.RemoveMember(testenv.Tenant, ga, a[0]))
		}, created: 2, deact: 1, marks: 3,
			tracked:  func(ga, _ string) []string { return []string{ga} },
			active:   func(_, out, _ []string) []string { return out },
			inactive: func(a, _, _ []string) []string { return a[:1] }},
		{name: "nested group in", change: func(e *env, ga, sub string, _, _ []string) {
			must(t, e.sim.AddMember(testenv.Tenant, ga, sub))
		}, created: 2, saves: 1, marks: 2, // Alpha's round saved; Sub's initial round interrupted
			tracked: func(ga, sub string) []string { return []string{ga, sub} },
			active:  func(_, _, subUsers []string) []string { return subUsers }},
		{name: "nested group out", nested: true, change: func(e *env, ga, sub string, _, _ []string) {
			must(t, e.sim.RemoveMember(testenv.Tenant, ga, sub))
		}, deact: 2, saves: 1, marks: 2, // Alpha's round saved; the shrink interrupted
			tracked:  func(ga, _ string) []string { return []string{ga} },
			inactive: func(_, _, subUsers []string) []string { return subUsers }},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := setup(t)
			a := e.addUsers(t, "Alpha", 4)
			out := e.addUsers(t, "Out", 2)
			subUsers := e.addUsers(t, "Sub", 2)
			ga := e.addGroup(t, "Alpha", a...)
			sub := e.addGroup(t, "Sub", subUsers...)
			if c.nested {
				must(t, e.sim.AddMember(testenv.Tenant, ga, sub))
			}
			e.filterTo(t, ga)
			e.syncCost(t)

			c.change(e, ga, sub, a, out)
			// The closure's state row cannot be saved (storage busy past its retries) after the
			// page's rows were written.
			var busy atomic.Bool
			var saves atomic.Int32
			busy.Store(true)
			stateRow := "RowKey='state'"
			e.kill.setFail(func(r *http.Request, body []byte) bool {
				save := r.Method != http.MethodGet && strings.Contains(r.URL.Path, dirsync.ScopeTable) &&
					(strings.Contains(r.URL.Path, stateRow) || bytes.Contains(body, []byte(stateRow)))
				return save && busy.Load() && saves.Add(1) > int32(c.saves)
			})
			e.configure(func(cfg *dirsync.Config) { cfg.StepBudget = time.Hour }) // one step, up to the failure
			run := e.startOpts(t, dirsync.StartOptions{})
			e.deliverOne(t)
			busy.Store(false)
			if mid := e.run(t, run.ID); mid.Rescheduled != 1 || mid.Phase != dirsync.PhaseMembership {
				t.Fatalf("after the failed save: rescheduled %d phase %s; want 1, membership", mid.Rescheduled, mid.Phase)
			}
			if _, marks := e.closureRows(t); len(marks) != c.marks {
				t.Fatalf("%d marks after the interrupted page, want %d (written before the rows)", len(marks), c.marks)
			}
			e.drain(t)
			got := accounted(t, e.run(t, run.ID))
			wantState(t, got, dirsync.Succeeded)
			if got.Created != c.created || got.Deactivated != c.deact {
				t.Errorf("created %d deactivated %d, want %d %d", got.Created, got.Deactivated, c.created, c.deact)
			}
			if c.active != nil {
				wantActive(t, e, true, "", c.active(a, out, subUsers)...)
			}
			if c.inactive != nil {
				wantActive(t, e, false, "out_of_filter", c.inactive(a, out, subUsers)...)
			}
			e.wantClosure(t, c.tracked(ga, sub)...)
		})
	}
}

// A dry run reads the membership changes and reports them, and leaves them for the next real
// run, which acts on them.
func TestDryRunLeavesMembershipChangesToTheRealRun(t *testing.T) {
	e := setup(t)
	a := e.addUsers(t, "Alpha", 3)
	out := e.addUser(t, "Out", "Sider")
	ga := e.addGroup(t, "Alpha", a...)
	e.filterTo(t, ga)
	e.syncCost(t)

	must(t, e.sim.AddMember(testenv.Tenant, ga, out))
	must(t, e.sim.RemoveMember(testenv.Tenant, ga, a[0]))
	dry := e.dryRun(t)
	wantState(t, dry, dirsync.Succeeded)
	if dry.Created != 1 || dry.PendingDeactivations != 1 || dry.Deactivated != 0 {
		t.Errorf("dry run: created %d pending %d deactivated %d, want 1 1 0 (reported)", dry.Created, dry.PendingDeactivations, dry.Deactivated)
	}
	wantActive(t, e, true, "", a[0])
	if _, marks := e.closureRows(t); len(marks) != 2 {
		t.Errorf("%d marks after the dry run, want 2 (kept for the real run)", len(marks))
	}
	run, _ := e.syncCost(t)
	if run.Created != 1 || run.Deactivated != 1 {
		t.Errorf("real run after the dry run: created %d deactivated %d, want 1 1", run.Created, run.Deactivated)
	}
	wantActive(t, e, true, "", out)
	wantActive(t, e, false, "out_of_filter", a[0])
	e.wantClosure(t, ga)
}

// noGroupsDelta is a directory without groups/delta (as some test doubles are).
type noGroupsDelta struct{ d *graphDir }

func (n noGroupsDelta) UsersDelta(ctx context.Context, tenant, link string) (entra.UserPage, error) {
	return n.d.UsersDelta(ctx, tenant, link)
}
func (n noGroupsDelta) User(ctx context.Context, tenant, id string) (entra.User, error) {
	return n.d.User(ctx, tenant, id)
}
func (n noGroupsDelta) Group(ctx context.Context, tenant, id string) (entra.Group, error) {
	return n.d.Group(ctx, tenant, id)
}
func (n noGroupsDelta) TransitiveUserIDs(ctx context.Context, tenant, id string) ([]string, error) {
	return n.d.TransitiveUserIDs(ctx, tenant, id)
}

// Without groups/delta the closure is rebuilt from TransitiveUserIDs by every run: the filter
// still holds, at the cost a filtered run had before the closure was stored.
func TestFilterWithoutGroupsDelta(t *testing.T) {
	e := setup(t)
	e.configure(func(c *dirsync.Config) { c.Directory = noGroupsDelta{e.dir} })
	direct := e.addUsers(t, "Direct", 2)
	nested := e.addUsers(t, "Nested", 2)
	out := e.addUser(t, "Out", "Sider")
	_, sub := e.filterToNested(t, direct, nested)
	if run, cost := e.syncCost(t); run.Created != 4 || cost.transitive != 1 {
		t.Errorf("created %d with %d TransitiveUserIDs, want 4, 1", run.Created, cost.transitive)
	}
	must(t, e.sim.RemoveMember(testenv.Tenant, sub, nested[0]))
	must(t, e.sim.AddMember(testenv.Tenant, sub, out))
	run, _ := e.syncCost(t)
	if run.Created != 1 || run.Deactivated != 1 {
		t.Errorf("created %d deactivated %d, want 1 1", run.Created, run.Deactivated)
	}
	wantActive(t, e, false, "out_of_filter", nested[0])
	wantActive(t, e, true, "", out)
	if rows, _ := e.closureRows(t); len(rows) != 4 {
		t.Errorf("%d closure rows, want 4 (one generation; the old ones collected)", len(rows))
	}
}

// latestDir is the stand-in with groups/delta's $deltatoken=latest, as the Graph client has it.
type latestDir struct{ *graphDir }

func (d latestDir) GroupsDeltaLatest(ctx context.Context, tenant string, ids []string) (string, error) {
	d.groupsDelta.Add(1)
	link := d.groupsDeltaStart(ids, "&$deltatoken=latest")
	var page struct {
		DeltaLink string `json:"@odata.deltaLink"`
	}
	if err := d.get(ctx, tenant, link, nil, &page); err != nil {
		return "", err
	}
	return page.DeltaLink, nil
}

// A build leaves a round per level of nesting; the next run merges them into one (started at the
// present before it reads them), so later delta runs under the filter read one groups/delta page,
// and changes made around the merge are all seen.
func TestNestedRoundsMergeIntoOne(t *testing.T) {
	e := setup(t)
	e.configure(func(c *dirsync.Config) { c.Directory = latestDir{e.dir} })
	direct, nested, deeper := e.addUsers(t, "Direct", 2), e.addUsers(t, "Nested", 2), e.addUsers(t, "Deeper", 2)
	parent, sub, deep := e.addGroup(t, "Parent", direct...), e.addGroup(t, "Sub", nested...), e.addGroup(t, "Deep", deeper...)
	must(t, e.sim.AddMember(testenv.Tenant, parent, sub))
	must(t, e.sim.AddMember(testenv.Tenant, sub, deep))
	e.filterTo(t, parent)
	if run, _ := e.syncCost(t); run.Created != 6 {
		t.Fatalf("the build created %d, want 6", run.Created)
	}
	// The merging run: one request to start the merged round, one per level's round.
	late := e.addUser(t, "Late", "Comer")
	must(t, e.sim.AddMember(testenv.Tenant, deep, late))
	run, cost := e.syncCost(t)
	if run.Created != 1 || cost.groupsDelta != 4 {
		t.Errorf("merging run: created %d with %+v; want the new member and 4 groups/delta requests", run.Created, cost)
	}
	// From now on one round: a change in the deepest group costs one groups/delta request.
	must(t, e.sim.RemoveMember(testenv.Tenant, deep, deeper[0]))
	run, cost = e.syncCost(t)
	if run.Deactivated != 1 || cost.groupsDelta != 1 || cost.transitive != 0 {
		t.Errorf("after the merge: deactivated %d with %+v; want 1 with one groups/delta request", run.Deactivated, cost)
	}
	e.wantClosure(t, parent, sub, deep)
	wantActive(t, e, true, "", append(append(slices.Clone(direct), nested...), deeper[1], late)...)
}

// wantSummaries checks that in every generation of the stored closure the users' summary rows
// (gNNNNNN|u|<user>, a property per group, true while the user is a direct member) agree with
// the member rows (gNNNNNN|p|<user>|<group>): the same users, each with the same groups. It
// returns how many users are in the closure, summed over generations.
func (e *env) wantSummaries(t *testing.T) int {
	t.Helper()
	prop := func(group string) string { // as the closure names a GUID group's property
		return "m" + strings.ReplaceAll(group, "-", "")
	}
	members := map[string]map[string][]string{} // generation -> user -> properties of its groups
	summary := map[string]map[string][]string{} // generation -> user -> properties set true
	add := func(m map[string]map[string][]string, gen, user, p string) {
		if m[gen] == nil {
			m[gen] = map[string][]string{}
		}
		m[gen][user] = append(m[gen][user], p)
	}
	for r, err := range tablestore.Query[map[string]any](t.Context(), e.store.Table(dirsync.ScopeTable), e.org, tablestore.QueryOptions{}) {
		must(t, err)
		gen, rest, _ := strings.Cut(r.Key, "|")
		user, _ := r.Value["user"].(string)
		switch {
		case strings.HasPrefix(rest, "p|"):
			group, _ := r.Value["group"].(string)
			add(members, gen, user, prop(group))
		case strings.HasPrefix(rest, "u|"):
			if user == "" {
				t.Errorf("summary row %s names no user", r.Key)
			}
			if summary[gen] == nil {
				summary[gen] = map[string][]string{}
			}
			for name, v := range r.Value {
				if b, ok := v.(bool); ok && b {
					add(summary, gen, user, name)
				}
			}
		}
	}
	n := 0
	for gen, users := range members {
		n += len(users)
		for user, ps := range users {
			slices.Sort(ps)
			got := slices.Sorted(slices.Values(summary[gen][user]))
			if !slices.Equal(got, ps) {
				t.Errorf("generation %s user %s: summary says groups %v, member rows %v", gen, user, got, ps)
			}
		}
	}
	for gen, users := range summary {
		for user, ps := range users {
			if _, ok := members[gen][user]; !ok {
				t.Errorf("generation %s user %s: summary says groups %v, no member row", gen, user, ps)
			}
		}
	}
	return n
}

// The users' summary rows follow the member rows through a build, a join, a leave, a nested
// group removed (a shrink) and a rebuild.
func TestClosureSummariesFollowMemberRows(t *testing.T) {
	e := setup(t)
	direct := e.addUsers(t, "Direct", 3)
	nested := e.addUsers(t, "Nested", 3)
	out := e.addUsers(t, "Out", 2)
	parent := e.addGroup(t, "Parent", direct...)
	sub := e.addGroup(t, "Sub", append(slices.Clone(nested), direct[0])...)
	must(t, e.sim.AddMember(testenv.Tenant, parent, sub))
	e.filterTo(t, parent)
	if run, _ := e.syncCost(t); run.Created != 6 {
		t.Errorf("build: created %d, want 6", run.Created)
	}
	if n := e.wantSummaries(t); n != 6 {
		t.Errorf("after the build: %d users in the closure, want 6", n)
	}

	must(t, e.sim.AddMember(testenv.Tenant, sub, out[0]))       // a join
	must(t, e.sim.RemoveMember(testenv.Tenant, sub, nested[0])) // a leave
	if run, _ := e.syncCost(t); run.Created != 1 || run.Deactivated != 1 {
		t.Errorf("join and leave: created %d deactivated %d, want 1 1", run.Created, run.Deactivated)
	}
	e.wantClosure(t, parent, sub)
	if n := e.wantSummaries(t); n != 6 {
		t.Errorf("after a join and a leave: %d users in the closure, want 6", n)
	}

	must(t, e.sim.RemoveMember(testenv.Tenant, parent, sub)) // a shrink: direct[0] stays through Parent
	if run, _ := e.syncCost(t); run.Deactivated != 3 {
		t.Errorf("nested group removed: deactivated %d, want 3", run.Deactivated)
	}
	wantActive(t, e, true, "", direct...)
	wantActive(t, e, false, "out_of_filter", nested[1], nested[2], out[0])
	e.wantClosure(t, parent)
	if n := e.wantSummaries(t); n != 3 {
		t.Errorf("after the shrink: %d users in the closure, want 3", n)
	}

	must(t, e.sim.AddMember(testenv.Tenant, parent, out[1]))
	must(t, e.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/groups/delta", Status: http.StatusGone, Code: "resyncRequired", Times: 1}))
	if run, _ := e.syncCost(t); run.Created != 1 {
		t.Errorf("rebuild: created %d, want 1", run.Created)
	}
	wantActive(t, e, true, "", out[1])
	e.wantClosure(t, parent)
	if n := e.wantSummaries(t); n != 4 {
		t.Errorf("after the rebuild: %d users in the closure, want 4", n)
	}
}

// A closure stored before the summary rows existed (none, and no "summaries" in its state) is
// rebuilt once with them: nobody leaves the filter for want of a summary row.
func TestClosureWithoutSummariesRebuilt(t *testing.T) {
	e, a, out, ga := alphaFiltered(t)

	tbl := e.store.Table(dirsync.ScopeTable)
	for r, err := range tablestore.Query[struct{}](t.Context(), tbl, e.org, tablestore.QueryOptions{}) {
		must(t, err)
		if _, rest, _ := strings.Cut(r.Key, "|"); strings.HasPrefix(rest, "u|") {
			must(t, tbl.Delete(t.Context(), e.org, r.Key, tablestore.ETagAny))
		}
	}
	_, err := tbl.Upsert(t.Context(), e.org, "state", map[string]any{"summaries": false}, tablestore.Merge)
	must(t, err)

	must(t, e.sim.AddMember(testenv.Tenant, ga, out))
	run, _ := e.syncCost(t)
	if run.Created != 1 || run.Deactivated != 0 {
		t.Errorf("created %d deactivated %d, want 1 0", run.Created, run.Deactivated)
	}
	wantActive(t, e, true, "", append(slices.Clone(a), out)...)
	e.wantClosure(t, ga)
	if n := e.wantSummaries(t); n != 5 {
		t.Errorf("after the rebuild: %d users in the closure, want 5", n)
	}
	e.wantDeltaRoundsAgain(t)
}
