package dirsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// The groups phase mirrors each filter group as a stakeholder group whose membership is exactly
// the group's users (nested included) that are linked to a stakeholder; synced groups that are
// no longer selected, were deleted in Entra, or outlived group sync are emptied and retired;
// manual groups are never touched. Names and members come from the stored closure, which this
// run's membership phase brought up to date: no Graph request here.
//
// One call does one chunk (at most groupChunk users or rows) and the step checkpoints between
// calls, the resume point in Run.Cursor (groupsCursor): memory and a step's work follow the chunk,
// never the group. Each chunk records its counts before its writes (see record), so a chunk
// redone after a kill takes its counts back instead of counting again; its writes are sets and
// deletes that a redo applies again, or finds applied.
//
// A filter group is mirrored in one of two ways, decided when the phase starts (planGroups):
//   - in full: a pass over the closure adds the members missing and stamps every member row
//     it confirms with the run's id (a merge property), then a sweep streams the group's rows
//     a page at a time and deletes those without the stamp;
//   - incrementally, in a delta round, when nothing but this round can have changed its members
//     since its last mirror (see incremental): only the users the membership phase marked, the
//     users this run's change log names and the users whose conflicts were open when the last
//     mirror began are checked, a point read each.

// groupChunk is how many users (or membership rows) one call of the groups phase settles (a
// variable for tests, which use smaller chunks to cross several with fewer users).
var groupChunk = 1000

// Stages of the groups phase, in order.
const (
	stagePlan   = ""       // nothing decided yet
	stageDelta  = "delta"  // the changed users, for the groups mirrored incrementally (Inc)
	stageScan   = "scan"   // every user in scope, for the groups mirrored in full (Full)
	stageSweep  = "sweep"  // each Full group's rows the scan did not stamp are deleted
	stageRetire = "retire" // synced groups no longer mirrored are emptied and retired
)

// groupsCursor is the groups phase's resume point (Run.Cursor, as JSON).
type groupsCursor struct {
	Stage string   `json:"stage"`
	Inc   []string `json:"inc,omitempty"`  // filter groups mirrored incrementally
	Full  []string `json:"full,omitempty"` // filter groups mirrored in full
	Live  []string `json:"live,omitempty"` // filter groups whose stakeholder group is kept
	// Delta stage: Source is the candidates being read (see deltaCandidates); After is the last
	// mark key, change sequence, user or membership row done.
	Source int    `json:"source,omitempty"`
	After  string `json:"after,omitempty"`
	Sweep  int    `json:"sweep,omitempty"` // the Full group being swept
}

// advance moves to the next stage that has work.
func (c *groupsCursor) advance() {
	c.After, c.Source = "", 0
	switch {
	case c.Stage == stagePlan && len(c.Inc) > 0:
		c.Stage = stageDelta
	case (c.Stage == stagePlan || c.Stage == stageDelta) && len(c.Full) > 0:
		c.Stage = stageScan
	case c.Stage == stageScan:
		c.Stage, c.Sweep = stageSweep, 0
	default:
		c.Stage = stageRetire
	}
}

// syncGroups runs one chunk of the groups phase; done says the phase is complete.
func (s *stepper) syncGroups(ctx context.Context) (done bool, err error) {
	var cur groupsCursor
	if s.run.Cursor != "" {
		if err := json.Unmarshal([]byte(s.run.Cursor), &cur); err != nil {
			return false, fmt.Errorf("groups phase cursor: %w", err)
		}
	}
	switch cur.Stage {
	case stagePlan:
		err = s.planGroups(ctx, &cur)
	case stageDelta:
		err = s.mirrorDelta(ctx, &cur)
	case stageScan:
		err = s.mirrorScan(ctx, &cur)
	case stageSweep:
		err = s.mirrorSweep(ctx, &cur)
	case stageRetire:
		more, err := s.retirePage(ctx, cur.Live)
		if err != nil || more {
			return false, err
		}
		if len(cur.Inc)+len(cur.Full) > 0 {
			if err := s.promoteConflicted(ctx); err != nil {
				return false, err
			}
		}
		s.run.GroupMembers, s.run.GroupsUpTo = nil, ""
		return true, nil
	default:
		return false, fmt.Errorf("groups phase: unknown stage %q", cur.Stage)
	}
	if err != nil {
		return false, err
	}
	b, err := json.Marshal(cur)
	s.run.Cursor = string(b)
	return false, err
}

// planGroups decides how each filter group is mirrored, and which are kept.
func (s *stepper) planGroups(ctx context.Context, cur *groupsCursor) error {
	*cur = groupsCursor{}
	members := map[string]int{}
	if s.settings.GroupSync && len(s.settings.GroupFilter) > 0 {
		st, ok, err := s.closureState(ctx)
		if err != nil {
			return err
		}
		var prev string
		var conflicted conflictedUsers
		if ok && s.run.Kind == "delta" {
			if prev, err = s.previousRealRun(ctx); err != nil {
				return err
			}
			if conflicted, err = s.conflicted(ctx); err != nil {
				return err
			}
		}
		for _, gid := range sortedFilter(s.settings.GroupFilter) {
			if !ok || !slices.Contains(st.Filter, gid) {
				// The filter was set after this run's membership phase: the next run mirrors it.
				cur.Live = append(cur.Live, gid)
				continue
			}
			if _, found := st.Groups[gid]; !found || slices.Contains(st.Missing, gid) {
				continue // deleted in Entra: retired
			}
			cur.Live = append(cur.Live, gid)
			inc, n, err := s.incremental(ctx, st, gid, prev, conflicted)
			if err != nil {
				return err
			}
			if inc {
				cur.Inc, members[gid] = append(cur.Inc, gid), n
			} else {
				cur.Full, members[gid] = append(cur.Full, gid), 0
			}
		}
	}
	if len(cur.Inc)+len(cur.Full) > 0 {
		if err := s.snapshotConflicted(ctx); err != nil {
			return err
		}
	}
	s.run.GroupMembers = members
	cur.advance()
	return nil
}

// mirrorState is a filter group's last complete mirror (row "mirror|<group>" of ScopeTable): the
// closure generation and the tracked groups under it then (reachKey), and the run that made it.
type mirrorState struct {
	Gen   int    `json:"gen"`
	Reach string `json:"reach"`
	Run   string `json:"run"`
}

func mirrorKey(group string) string { return "mirror|" + tablestore.KeyEscape(group) }

// incremental says whether filter group gid may be mirrored from this round's changes alone,
// and then its member count now. That needs a delta round; the group's stakeholder group active
// (not just selected again, nor group sync just switched on); its last mirror made from this
// closure generation with the same groups nested under it (a rebuild, a filter change or a
// nesting change moves users in and out without marking each for this group: those fall back to
// a full mirror); and made by the run before this one, or by this one (restarted), so no run in
// between linked stakeholders whose users this run's change log does not name. A conflict
// resolved in Leap Change may link a stakeholder between runs: the users with an open conflict
// when that mirror began are checked too (conflictedUsers), and too many of them (Over) make a
// full mirror.
func (s *stepper) incremental(ctx context.Context, st *scopeState, gid, prev string, conflicted conflictedUsers) (bool, int, error) {
	if s.run.Kind != "delta" {
		return false, 0, nil
	}
	g, _, err := s.e.groups.Get(ctx, s.org, stakeholder.SyncedGroupID(gid))
	if errors.Is(err, stakeholder.ErrNotFound) || err == nil && (!g.Active || g.Source != stakeholder.Entra) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	c := s.e.closureOf(s.org)
	m, _, err := tablestore.Get[mirrorState](ctx, c.t, c.org, mirrorKey(gid))
	if errors.Is(err, tablestore.ErrNotFound) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("read mirror state of %s: %w", gid, err)
	}
	same := m.Gen == st.Gen && m.Reach == reachKey(st, gid) && (m.Run == prev && prev != "" || m.Run == s.run.ID) &&
		conflicted.Run == m.Run && !conflicted.Over
	return same, g.Members, nil
}

// reachKey names the tracked groups whose direct members are filter group gid's members.
func reachKey(st *scopeState, gid string) string {
	var under []string
	for g, fs := range reach(st.Groups, st.Filter) {
		if slices.Contains(fs, gid) {
			under = append(under, g)
		}
	}
	slices.Sort(under)
	sum := sha256.Sum256([]byte(strings.Join(under, ",")))
	return hex.EncodeToString(sum[:12])
}

// earlierRuns is how many runs before this one previousRealRun looks at for a real one.
const earlierRuns = 20

// previousRealRun is the id of the last run started before this one that was not a dry run
// ("" when none of the earlierRuns before it is).
func (s *stepper) previousRealRun(ctx context.Context) (string, error) {
	q := tablestore.QueryOptions{From: s.run.ID + " ", Select: []string{"id", "dryRun"}, PageSize: 5} // the one before, mostly
	n := 0
	for row, err := range tablestore.Query[Run](ctx, s.e.runs, s.org, q) {
		if err != nil {
			return "", fmt.Errorf("read earlier runs: %w", err)
		}
		if !row.Value.DryRun {
			return row.Value.ID, nil
		}
		if n++; n == earlierRuns {
			break
		}
	}
	return "", nil
}

// mirrorDelta settles a chunk of the users whose membership rows may have to change: those the
// membership phase marked, then those this run's change log names (created, linked,
// reactivated, …), sorted and once each per chunk. A user seen in both is settled twice: the
// second finds its rows right.
func (s *stepper) mirrorDelta(ctx context.Context, cur *groupsCursor) error {
	users, exhausted, err := s.deltaCandidates(ctx, cur)
	if err != nil {
		return err
	}
	slices.Sort(users)
	users = slices.Compact(users)
	st, _, err := s.closureState(ctx)
	if err != nil {
		return err
	}
	flags, err := s.e.closureOf(s.org).summaryFlags(ctx, st.Gen, users, st.Groups)
	if err != nil {
		return err
	}
	links, err := s.e.stakeholders.Links(ctx, s.org, users)
	if err != nil {
		return err
	}
	up := reach(st.Groups, st.Filter)
	want := map[stakeholder.MemberRef]bool{}
	var refs []stakeholder.MemberRef
	for _, u := range users {
		link, linked := links[u]
		if !linked {
			continue // no stakeholder, no row (a link never moves to another user)
		}
		for _, f := range cur.Inc {
			related, in := false, false
			for g, now := range flags[u] {
				if slices.Contains(up[g], f) {
					related, in = true, in || now
				}
			}
			// A user never directly in a group under f in this generation has no row of f: the
			// last mirror, made in this generation, saw every row it kept.
			if related {
				ref := stakeholder.MemberRef{GroupID: stakeholder.SyncedGroupID(f), StakeholderID: link.ID}
				refs, want[ref] = append(refs, ref), in
			}
		}
	}
	stamps, err := s.e.groups.Stamps(ctx, s.org, refs)
	if err != nil {
		return err
	}
	var ops stakeholder.MirrorOps
	change := map[string]int{}
	for _, r := range refs {
		_, has := stamps[r]
		switch {
		case want[r] && !has:
			ops.Add = append(ops.Add, r)
			change[filterOf(r, cur.Inc)]++
		case !want[r] && has:
			ops.Remove = append(ops.Remove, r)
			change[filterOf(r, cur.Inc)]--
		}
	}
	synced := 0
	if exhausted {
		synced = len(cur.Inc)
	}
	if _, err := s.applyChunk(ctx, ops, change, "", synced, ""); err != nil {
		return err
	}
	if !exhausted {
		return nil
	}
	for _, f := range cur.Inc {
		if err := s.finishMirror(ctx, st, f); err != nil {
			return err
		}
	}
	cur.advance()
	return nil
}

// filterOf is the filter group whose stakeholder group r is in.
func filterOf(r stakeholder.MemberRef, filter []string) string {
	for _, f := range filter {
		if stakeholder.SyncedGroupID(f) == r.GroupID {
			return f
		}
	}
	return ""
}

// deltaCandidates reads the delta stage's next chunk of users and moves the cursor past it:
// the marks (Source 0), this run's change log (1), the conflicted users (2); exhausted says none
// remain.
func (s *stepper) deltaCandidates(ctx context.Context, cur *groupsCursor) (users []string, exhausted bool, err error) {
	switch cur.Source {
	case 0: // the marks
		users, last, err := s.e.closureOf(s.org).markPage(ctx, cur.After, groupChunk)
		if err != nil {
			return nil, false, err
		}
		cur.After = last
		if len(users) < groupChunk {
			cur.Source, cur.After = 1, ""
		}
		return users, false, nil
	case 2: // the users with an open conflict when the last mirror began
		c, err := s.conflicted(ctx)
		return c.Users, true, err
	}
	// This run's change log.
	after := 0
	if cur.After != "" {
		if after, err = strconv.Atoi(cur.After); err != nil {
			return nil, false, fmt.Errorf("groups phase cursor: %w", err)
		}
	}
	changes, err := s.e.Changes(ctx, s.org, s.run.ID, after, groupChunk)
	if err != nil {
		return nil, false, err
	}
	for _, ch := range changes {
		if ch.ExternalID != "" {
			users = append(users, ch.ExternalID)
		}
	}
	if len(changes) < groupChunk {
		cur.Source, cur.After = 2, ""
		return users, false, nil
	}
	cur.After = strconv.Itoa(changes[len(changes)-1].Seq)
	return users, false, nil
}

// conflictedUsers are the users whose stakeholders had an open conflict when a run's mirror
// began, saved as its groups phase ended (row conflictedKey of ScopeTable), at most maxConflicted of them; Over says there
// were more. Resolving a conflict in Leap Change may link its stakeholder with no run to log it.
type conflictedUsers struct {
	Run   string   `json:"run"`
	Users []string `json:"users"`
	Over  bool     `json:"over"`
}

// conflictedKey is outside "mirror|", where no group's mirror row can take it.
const conflictedKey = "mirrored-conflicts"

// maxConflicted keeps the row's list within a property's 32 K characters.
const maxConflicted = 500

// conflicted reads the conflicted users the last groups phase saved (none: the zero value).
func (s *stepper) conflicted(ctx context.Context) (conflictedUsers, error) {
	c := s.e.closureOf(s.org)
	v, _, err := tablestore.Get[conflictedUsers](ctx, c.t, c.org, conflictedKey)
	if err != nil && !errors.Is(err, tablestore.ErrNotFound) {
		return conflictedUsers{}, fmt.Errorf("read conflicted users: %w", err)
	}
	return v, nil
}

// conflictedNextKey keeps the users with an open conflict as this run's mirror begins (see
// snapshotConflicted) until the phase ends and they become conflictedKey's.
const conflictedNextKey = "mirrored-conflicts-next"

// snapshotConflicted records the users with an open conflict as the mirror begins. Only runs
// open conflicts, and none runs beside this one; an admin may resolve (and link) one at any time,
// also after the chunk that found it unlinked and before the phase ends: the users whose conflict
// was open when the mirror began are the ones the next delta round must check.
func (s *stepper) snapshotConflicted(ctx context.Context) error {
	open, next, err := s.e.stakeholders.Conflicts(ctx, s.org, "", maxConflicted)
	if err != nil {
		return err
	}
	v := conflictedUsers{Run: s.run.ID, Over: next != ""}
	for _, o := range open {
		v.Users = append(v.Users, o.ExternalID)
	}
	return s.putConflicted(ctx, conflictedNextKey, v)
}

// promoteConflicted, as the phase ends, makes the snapshot this run's mirror began with the
// conflicted users the next delta round reads.
func (s *stepper) promoteConflicted(ctx context.Context) error {
	c := s.e.closureOf(s.org)
	v, _, err := tablestore.Get[conflictedUsers](ctx, c.t, c.org, conflictedNextKey)
	switch {
	case errors.Is(err, tablestore.ErrNotFound) || err == nil && v.Run != s.run.ID:
		// Planned before snapshots were taken: the conflicts open now, as then.
		if err := s.snapshotConflicted(ctx); err != nil {
			return err
		}
		return s.promoteConflicted(ctx)
	case err != nil:
		return fmt.Errorf("read conflicted users: %w", err)
	}
	return s.putConflicted(ctx, conflictedKey, v)
}

func (s *stepper) putConflicted(ctx context.Context, key string, v conflictedUsers) error {
	c := s.e.closureOf(s.org)
	if _, err := c.t.Upsert(ctx, c.org, key, v, tablestore.Replace); err != nil {
		return fmt.Errorf("save conflicted users: %w", err)
	}
	return nil
}

// mirrorScan settles a chunk of the users in scope for the groups mirrored in full: a linked
// user's missing rows are added, its present ones stamped with the run (unless a redo did).
func (s *stepper) mirrorScan(ctx context.Context, cur *groupsCursor) error {
	st, _, err := s.closureState(ctx)
	if err != nil {
		return err
	}
	chunk, more, err := s.e.closureOf(s.org).memberChunk(ctx, st.Gen, cur.After, groupChunk)
	if err != nil {
		return err
	}
	users := make([]string, len(chunk))
	for i, ug := range chunk {
		users[i] = ug.User
	}
	links, err := s.e.stakeholders.Links(ctx, s.org, users)
	if err != nil {
		return err
	}
	up := reach(st.Groups, st.Filter)
	var refs []stakeholder.MemberRef
	kept := map[string]int{}
	for _, ug := range chunk {
		link, linked := links[ug.User]
		if !linked {
			continue
		}
		for _, f := range cur.Full {
			if slices.ContainsFunc(ug.Groups, func(g string) bool { return slices.Contains(up[g], f) }) {
				refs = append(refs, stakeholder.MemberRef{GroupID: stakeholder.SyncedGroupID(f), StakeholderID: link.ID})
				kept[f]++
			}
		}
	}
	stamps, err := s.e.groups.Stamps(ctx, s.org, refs)
	if err != nil {
		return err
	}
	var ops stakeholder.MirrorOps
	for _, r := range refs {
		switch stamp, has := stamps[r]; {
		case !has:
			ops.Add = append(ops.Add, r)
		case stamp != s.run.ID:
			ops.Confirm = append(ops.Confirm, r)
		}
	}
	if _, err := s.applyChunk(ctx, ops, kept, s.run.ID, 0, ""); err != nil {
		return err
	}
	if more {
		cur.After = chunk[len(chunk)-1].User
		return nil
	}
	cur.advance()
	return nil
}

// mirrorSweep deletes a page of the swept group's rows the scan did not stamp; after its last
// page the group's record follows.
func (s *stepper) mirrorSweep(ctx context.Context, cur *groupsCursor) error {
	f := cur.Full[cur.Sweep]
	page, err := s.e.groups.MemberPage(ctx, s.org, stakeholder.SyncedGroupID(f), cur.After, groupChunk)
	if err != nil {
		return err
	}
	var ops stakeholder.MirrorOps
	for _, m := range page {
		if m.Mirror != s.run.ID {
			ops.Remove = append(ops.Remove, stakeholder.MemberRef{GroupID: stakeholder.SyncedGroupID(f), StakeholderID: m.StakeholderID})
		}
	}
	upTo, synced := pageEnd(page), 0
	if upTo == "" {
		synced = 1
	}
	upTo, err = s.applyChunk(ctx, ops, nil, "", synced, upTo)
	if err != nil {
		return err
	}
	if upTo != "" {
		cur.After = upTo
		return nil
	}
	st, _, err := s.closureState(ctx)
	if err != nil {
		return err
	}
	if err := s.finishMirror(ctx, st, f); err != nil {
		return err
	}
	cur.Sweep, cur.After = cur.Sweep+1, ""
	if cur.Sweep == len(cur.Full) {
		cur.advance()
	}
	return nil
}

// pageEnd is the last row of a full page of members, "" for a last page.
func pageEnd(page []stakeholder.StampedMember) string {
	if len(page) < groupChunk {
		return ""
	}
	return page[len(page)-1].StakeholderID
}

// applyChunk records a chunk's counts (added, removed, the member count change per filter group,
// groups synced) and upTo (see Run.GroupsUpTo) with the run's marker, then writes it: a redo
// after a kill takes the counts back from the marker, deletes no further than the first attempt
// did, and applies the writes again. It returns upTo as the first attempt had it. A chunk with
// nothing to count or write records nothing, unless it may be a redo (whose reads find its
// writes done).
func (s *stepper) applyChunk(ctx context.Context, ops stakeholder.MirrorOps, members map[string]int, stamp string, synced int, upTo string) (string, error) {
	if !s.resuming && ops.Empty() && synced == 0 && !slices.ContainsFunc(slices.Collect(maps.Values(members)), func(n int) bool { return n != 0 }) {
		return upTo, nil
	}
	again, err := s.record(ctx, func(mark func() tablestore.Op) error {
		s.run.MembersAdded += len(ops.Add)
		s.run.MembersRemoved += len(ops.Remove)
		s.run.GroupsSynced += synced
		gm := maps.Clone(s.run.GroupMembers) // settled shares the old map: a failed chunk saves that one
		if gm == nil {
			gm = map[string]int{}
		}
		for f, n := range members {
			gm[f] += n
		}
		s.run.GroupMembers, s.run.GroupsUpTo = gm, upTo
		return s.e.logChanges(ctx, s.org, &s.run, nil, mark)
	})
	if err != nil {
		return "", err
	}
	if again && s.run.GroupsUpTo != upTo {
		upTo = s.run.GroupsUpTo
		ops.Remove = slices.DeleteFunc(ops.Remove, func(r stakeholder.MemberRef) bool { return upTo != "" && r.StakeholderID > upTo })
	}
	return upTo, s.e.groups.ApplyMirror(ctx, s.org, ops, stamp, s.now)
}

// finishMirror writes filter group f's stakeholder group (name, description and member count)
// and its mirror state.
func (s *stepper) finishMirror(ctx context.Context, st *scopeState, f string) error {
	node := st.Groups[f]
	grp := stakeholder.Group{ID: stakeholder.SyncedGroupID(f), Name: node.Name, Description: node.Description, Type: s.settings.GroupType,
		Source: stakeholder.Entra, ExternalID: f, Active: true, Members: s.run.GroupMembers[f], UpdatedAt: s.now}
	if err := s.e.groups.Put(ctx, s.org, grp); err != nil {
		return err
	}
	c := s.e.closureOf(s.org)
	m := mirrorState{Gen: st.Gen, Reach: reachKey(st, f), Run: s.run.ID}
	if _, err := c.t.Upsert(ctx, c.org, mirrorKey(f), m, tablestore.Replace); err != nil {
		return fmt.Errorf("save mirror state of %s: %w", f, err)
	}
	return nil
}

// retirePage empties a page of the first synced group still active that is not kept (live);
// once empty, the group is retired (inactive, no members; its history stays) and forgets its
// mirror. more says a call may have more to do.
func (s *stepper) retirePage(ctx context.Context, live []string) (more bool, err error) {
	all, err := s.e.groups.List(ctx, s.org)
	if err != nil {
		return false, err
	}
	for _, g := range all {
		if g.Source != stakeholder.Entra || !g.Active || slices.ContainsFunc(live, func(f string) bool { return stakeholder.SyncedGroupID(f) == g.ID }) {
			continue
		}
		page, err := s.e.groups.MemberPage(ctx, s.org, g.ID, "", groupChunk)
		if err != nil {
			return false, err
		}
		var ops stakeholder.MirrorOps
		for _, m := range page {
			ops.Remove = append(ops.Remove, stakeholder.MemberRef{GroupID: g.ID, StakeholderID: m.StakeholderID})
		}
		if upTo, err := s.applyChunk(ctx, ops, nil, "", 0, pageEnd(page)); err != nil || upTo != "" {
			return true, err
		}
		g.Active, g.Members, g.UpdatedAt = false, 0, s.now
		if err := s.e.groups.Put(ctx, s.org, g); err != nil {
			return false, err
		}
		c := s.e.closureOf(s.org)
		if err := c.t.Delete(ctx, c.org, mirrorKey(g.ExternalID), tablestore.ETagAny); err != nil && !errors.Is(err, tablestore.ErrNotFound) {
			return false, fmt.Errorf("forget mirror state of %s: %w", g.ExternalID, err)
		}
		return true, nil
	}
	return false, nil
}
