package dirsync_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// groupsPass is what a run's groups phase did, step by step, as a test saw it.
type groupsPass struct {
	stages []string // the phase's stage (from its cursor) before each of its steps
	rows   int64    // rows its steps read (with a rowCounter)
	redone int      // steps run a second time from the same checkpoint
}

func (p groupsPass) count(stage string) int {
	n := 0
	for _, s := range p.stages {
		if s == stage {
			n++
		}
	}
	return n
}

// groupsStage is the groups phase's stage in a run's cursor ("plan" before the first step).
func groupsStage(t *testing.T, run dirsync.Run) string {
	t.Helper()
	if run.Cursor == "" {
		return "plan"
	}
	var c struct {
		Stage string `json:"stage"`
	}
	must(t, json.Unmarshal([]byte(run.Cursor), &c))
	return c.Stage
}

// syncWatched runs a whole run one step per delivery (the engine must be configured with
// onePagePerStep) and watches its groups phase. A groups step for which redo says so is run
// again from the checkpoint it started at, as if the process had died after its writes and
// before its checkpoint. counter may be nil.
func (e *env) syncWatched(t *testing.T, counter *rowCounter, redo func(stage string) bool) (dirsync.Run, groupsPass) {
	t.Helper()
	run := e.startOpts(t, dirsync.StartOptions{Trigger: "manual"})
	var pass groupsPass
	for {
		d, ok := e.next()
		if !ok {
			break
		}
		var j dirsync.Job
		must(t, json.Unmarshal(d.Body, &j))
		before := e.run(t, run.ID)
		watched := before.State == dirsync.Running && before.Phase == dirsync.PhaseGroups && j.Step == before.Step
		var rows int64
		if counter != nil {
			rows = counter.rows.Load()
		}
		must(t, e.eng.Step(t.Context(), d.Body, d.Count))
		if !watched {
			continue
		}
		stage := groupsStage(t, before)
		pass.stages = append(pass.stages, stage)
		if counter != nil {
			pass.rows += counter.rows.Load() - rows
		}
		if redo != nil && redo(stage) {
			// The checkpoint is lost: the run is back where the step started, and the step is
			// delivered again.
			_, err := e.store.Table(dirsync.RunsTable).Upsert(t.Context(), e.org, before.ID, before, tablestore.Replace)
			must(t, err)
			must(t, e.eng.Step(t.Context(), d.Body, d.Count+1))
			pass.redone++
		}
	}
	done := accounted(t, e.run(t, run.ID))
	wantState(t, done, dirsync.Succeeded)
	return done, pass
}

// wantMirror checks a filter group's stakeholder group: active, its member count, and its
// members exactly the stakeholders of users.
func (e *env) wantMirror(t *testing.T, gid string, users []string) {
	t.Helper()
	g, _, err := e.grps.Get(t.Context(), e.org, stakeholder.SyncedGroupID(gid))
	must(t, err)
	if !g.Active || g.Members != len(users) {
		t.Errorf("group %s: active %v with %d members, want active with %d", g.Name, g.Active, g.Members, len(users))
	}
	if got, want := e.members(t, g.ID), e.stakeholderIDs(t, users...); !slices.Equal(got, want) {
		t.Errorf("group %s: %d members, want %d (missing or extra: %v)", g.Name, len(got), len(want), symDiff(got, want))
	}
}

// symDiff lists the ids in exactly one of two sorted lists.
func symDiff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			out = append(out, "+"+x)
		}
	}
	for _, x := range b {
		if _, ok := slices.BinarySearch(a, x); !ok {
			out = append(out, "-"+x)
		}
	}
	return out
}

// groupsEnv is a tenant with filter group Top: two direct members and nested group Sub with n
// members; users Out are in no group. Group sync is on for Top. The groups phase settles chunk
// users (or rows) per call.
type groupsEnv struct {
	*env
	counter        *rowCounter
	top, sub       string
	direct, nested []string
	out            []string
}

func newGroupsEnv(t *testing.T, n, chunk int) *groupsEnv {
	t.Helper()
	t.Cleanup(dirsync.SetGroupChunk(chunk))
	e, counter := countedEnv(t, 200, fmt.Sprintf("org-g%d", n))
	g := &groupsEnv{env: e, counter: counter}
	g.direct = e.addUsers(t, "Direct", 2)
	g.nested = e.addUsers(t, "Nested", n)
	g.out = e.addUsers(t, "Out", 2)
	g.sub = e.addGroup(t, "Sub", g.nested...)
	g.top = e.addGroup(t, "Top", g.direct...)
	must(t, e.sim.AddMember(testenv.Tenant, g.top, g.sub))
	e.settings(t, func(s *syncsettings.Settings) {
		s.GroupFilter, s.GroupSync, s.GroupType = []string{g.top}, true, "functional"
		generous(s)
	})
	return g
}

// members are Top's users as the tenant has them now.
func (g *groupsEnv) members() []string { return append(slices.Clone(g.direct), g.nested...) }

// A group several chunks large is mirrored exactly over several steps (the phase resumes from
// its cursor), and a step redone from its checkpoint after its writes — in each stage — leaves
// the same rows and the same counts: a full mirror with a stale row to sweep, a delta round, and
// a retirement.
func TestGroupSyncStreamsAndRedoes(t *testing.T) {
	const n, chunk = 250, 100 // Top has 252 users: 3 chunks
	g := newGroupsEnv(t, n, chunk)
	e := g.env
	// A row left from an earlier mirror, of a stakeholder no longer in the group.
	stale := e.manual(t, e.org, "Stale", "Member", "stale.member@example.org")
	_, _, err := e.grps.SetMembers(t.Context(), e.org, stakeholder.SyncedGroupID(g.top), []string{stale.ID}, stakeholder.Entra, e.clock.Now())
	must(t, err)
	must(t, e.grps.Put(t.Context(), e.org, stakeholder.Group{ID: stakeholder.SyncedGroupID(g.top), Name: "Top", Source: stakeholder.Entra, ExternalID: g.top, Active: true, Members: 1}))

	once := func(stages ...string) func(string) bool {
		left := slices.Clone(stages)
		return func(stage string) bool {
			i := slices.Index(left, stage)
			if i < 0 {
				return false
			}
			left = slices.Delete(left, i, i+1)
			return true
		}
	}

	// A full round: a full mirror, its scan and its sweep each redone once.
	run, pass := e.syncWatched(t, nil, once("scan", "scan", "sweep"))
	if pass.count("scan") < 3 || pass.redone != 3 {
		t.Errorf("full mirror: stages %v (%d redone), want at least 3 scan steps (one per chunk) and 3 redone", pass.stages, pass.redone)
	}
	if run.MembersAdded != len(g.members()) || run.MembersRemoved != 1 || run.GroupsSynced != 1 {
		t.Errorf("full mirror: added %d removed %d groups %d, want %d 1 1", run.MembersAdded, run.MembersRemoved, run.GroupsSynced, len(g.members()))
	}
	g.wantMirror(t, g.top, g.members())

	// A delta round: one user joins Sub, one leaves it; its chunk redone.
	must(t, e.sim.AddMember(testenv.Tenant, g.sub, g.out[0]))
	must(t, e.sim.RemoveMember(testenv.Tenant, g.sub, g.nested[0]))
	g.nested = append(g.nested[1:], g.out[0])
	run, pass = e.syncWatched(t, nil, once("delta"))
	if pass.count("scan") != 0 || pass.count("delta") == 0 || pass.redone != 1 {
		t.Errorf("delta round: stages %v (%d redone), want the delta stage only, redone once", pass.stages, pass.redone)
	}
	if run.MembersAdded != 1 || run.MembersRemoved != 1 || run.GroupsSynced != 1 {
		t.Errorf("delta round: added %d removed %d groups %d, want 1 1 1", run.MembersAdded, run.MembersRemoved, run.GroupsSynced)
	}
	g.wantMirror(t, g.top, g.members())

	// Group sync off: Top is retired, a page of rows per step, one page redone.
	e.settings(t, func(s *syncsettings.Settings) { s.GroupSync = false })
	run, pass = e.syncWatched(t, nil, once("retire", "retire"))
	if pass.count("retire") < 3 || run.MembersRemoved != len(g.members()) || run.MembersAdded != 0 {
		t.Errorf("retired: stages %v, removed %d added %d, want 3 retire steps or more and %d removed", pass.stages, run.MembersRemoved, run.MembersAdded, len(g.members()))
	}
	top, _, err := e.grps.Get(t.Context(), e.org, stakeholder.SyncedGroupID(g.top))
	must(t, err)
	if top.Active || top.Members != 0 || len(e.members(t, top.ID)) != 0 {
		t.Errorf("retired group %+v with %d rows, want inactive and empty", top, len(e.members(t, top.ID)))
	}
}

// A delta round after one user joins a nested group and one leaves it settles only those users:
// the groups phase reads the same rows at two group sizes (nothing in proportion to the group),
// never scans the closure, and leaves the exact membership.
func TestGroupSyncDeltaReadsFollowTheChanges(t *testing.T) {
	sizes := []int{120, 480}
	rows := map[int]int64{}
	for _, n := range sizes {
		g := newGroupsEnv(t, n, 100)
		e := g.env
		_, pass := e.syncWatched(t, g.counter, nil)
		if pass.count("scan") == 0 {
			t.Fatalf("%d users: first run's stages %v, want a full mirror", n, pass.stages)
		}
		g.wantMirror(t, g.top, g.members())

		must(t, e.sim.AddMember(testenv.Tenant, g.sub, g.out[0]))
		must(t, e.sim.RemoveMember(testenv.Tenant, g.sub, g.nested[0]))
		g.nested = append(g.nested[1:], g.out[0])
		run, pass := e.syncWatched(t, g.counter, nil)
		if run.Kind != "delta" || pass.count("scan")+pass.count("sweep") != 0 || pass.count("delta") == 0 {
			t.Errorf("%d users: a %s round with stages %v, want a delta round mirrored incrementally", n, run.Kind, pass.stages)
		}
		if run.MembersAdded != 1 || run.MembersRemoved != 1 {
			t.Errorf("%d users: added %d removed %d, want 1 1", n, run.MembersAdded, run.MembersRemoved)
		}
		g.wantMirror(t, g.top, g.members())
		rows[n] = pass.rows
	}
	// Slack for the rows every step reads whatever it does (the run, its settings, the
	// connection): the same at both sizes.
	const slack = 4
	if small, large := rows[sizes[0]], rows[sizes[1]]; large > small+slack || large > 100 {
		t.Errorf("the delta round's groups phase read %d rows at %d users and %d at %d users: it grows with the group", small, sizes[0], large, sizes[1])
	}
	t.Logf("rows read by the delta round's groups phase: %v", rows)
}

// What the incremental path cannot see falls back to a full mirror, and the membership is exact
// either way: a closure rebuilt (410), a group nested under the filter group, a run in between
// that never reached its groups phase, group sync switched off and on. A filter group added
// beside a mirrored one is mirrored in full while the other stays incremental.
func TestGroupSyncFallsBackToFullMirror(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, g *groupsEnv) (want []string)
	}{
		{"closure rebuilt after 410", func(t *testing.T, g *groupsEnv) []string {
			must(t, g.sim.AddMember(testenv.Tenant, g.sub, g.out[0]))
			must(t, g.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/groups/delta", Status: http.StatusGone, Code: "resyncRequired", Times: 1}))
			return append(g.members(), g.out[0])
		}},
		{"group nested under the filter group", func(t *testing.T, g *groupsEnv) []string {
			more := g.addGroup(t, "More", g.out...)
			must(t, g.sim.AddMember(testenv.Tenant, g.top, more))
			return append(g.members(), g.out...)
		}},
		{"a cancelled run in between", func(t *testing.T, g *groupsEnv) []string {
			run := g.startOpts(t, dirsync.StartOptions{Trigger: "manual"})
			_, err := g.eng.Cancel(t.Context(), g.org, run.ID, "test")
			must(t, err)
			g.drain(t)
			return g.members()
		}},
		{"group sync switched off and on", func(t *testing.T, g *groupsEnv) []string {
			g.settings(t, func(s *syncsettings.Settings) { s.GroupSync = false })
			g.syncWatched(t, nil, nil)
			g.settings(t, func(s *syncsettings.Settings) { s.GroupSync = true })
			return g.members()
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGroupsEnv(t, 5, 100)
			g.syncWatched(t, nil, nil)
			if _, pass := g.syncWatched(t, nil, nil); pass.count("delta") == 0 || pass.count("scan") != 0 {
				t.Fatalf("the round after the first: stages %v, want incremental", pass.stages)
			}
			want := c.change(t, g)
			_, pass := g.syncWatched(t, nil, nil)
			if pass.count("scan") == 0 || pass.count("sweep") == 0 {
				t.Errorf("stages %v, want a full mirror", pass.stages)
			}
			g.wantMirror(t, g.top, want)
		})
	}

	t.Run("filter group added", func(t *testing.T) {
		g := newGroupsEnv(t, 5, 100)
		g.syncWatched(t, nil, nil)
		other := g.addGroup(t, "Other", g.out[0], g.direct[0])
		g.settings(t, func(s *syncsettings.Settings) { s.GroupFilter = []string{g.top, other} })
		_, pass := g.syncWatched(t, nil, nil)
		// The plan lists Top as incremental and Other in full: both stages run.
		if pass.count("delta") == 0 || pass.count("scan") == 0 {
			t.Errorf("stages %v, want Top incremental and Other in full", pass.stages)
		}
		g.wantMirror(t, g.top, g.members())
		g.wantMirror(t, other, []string{g.out[0], g.direct[0]})
	})
}

// A delta round that links a stakeholder to a user already in the group (a disabled user
// enabled: no membership change, no mark) adds it to the mirror incrementally, from the run's
// change log.
func TestGroupSyncDeltaFollowsNewLinks(t *testing.T) {
	g := newGroupsEnv(t, 3, 100)
	off := g.addUser(t, "Off", "User", func(u *m365sim.User) { u.AccountEnabled = false })
	must(t, g.sim.AddMember(testenv.Tenant, g.sub, off))
	g.syncWatched(t, nil, nil)
	g.wantMirror(t, g.top, g.members())

	g.updateUser(t, off, func(u *m365sim.User) { u.AccountEnabled = true })
	run, pass := g.syncWatched(t, nil, nil)
	if pass.count("delta") == 0 || pass.count("scan") != 0 || run.Created != 1 || run.MembersAdded != 1 {
		t.Errorf("stages %v, created %d, added %d; want incremental, 1 and 1", pass.stages, run.Created, run.MembersAdded)
	}
	g.wantMirror(t, g.top, append(g.members(), off))
}

// A conflict resolved in Leap Change between runs links a stakeholder with no run to log it:
// the next delta round still mirrors it incrementally, as the users with an open conflict when
// the last mirror ended are checked too.
func TestGroupSyncDeltaFollowsResolvedConflicts(t *testing.T) {
	g := newGroupsEnv(t, 3, 100)
	g.settings(t, func(s *syncsettings.Settings) { s.MergeStrategy = syncsettings.SkipConflicts })
	// The first match by address differs on a field: skipped, unlinked, its conflict open.
	leap := g.manual(t, g.org, "Other", "Name", "nested.n000@contoso.example")
	g.syncWatched(t, nil, nil)
	if st, _, err := g.shs.Get(t.Context(), g.org, leap.ID); err != nil || st.ExternalID != "" {
		t.Fatalf("stakeholder %+v (%v), want it unlinked with its conflict open", st, err)
	}
	g.wantMirror(t, g.top, append(slices.Clone(g.direct), g.nested[1:]...))

	_, err := g.eng.ResolveConflict(t.Context(), g.org, leap.ID, dirsync.Resolution{Choice: dirsync.TakeEntra}, tablestore.ETagAny)
	must(t, err)
	run, pass := g.syncWatched(t, nil, nil)
	if pass.count("delta") == 0 || pass.count("scan") != 0 || run.MembersAdded != 1 {
		t.Errorf("stages %v, added %d; want incremental, 1", pass.stages, run.MembersAdded)
	}
	g.wantMirror(t, g.top, g.members())
}
