package dirsync

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// needsMembership says whether the run must bring the closure in step before its users round:
// with a filter, unless this run did (for the filter it has now); without one, while a closure
// of an earlier filter is left to forget. The users round asks before its first page, so a filter
// saved after the run started still applies to it.
func (s *stepper) needsMembership(ctx context.Context) (bool, error) {
	c := s.e.closureOf(s.org)
	if len(s.settings.GroupFilter) == 0 {
		_, _, err := tablestore.Get[struct{}](ctx, c.t, c.org, scopeStateKey)
		if errors.Is(err, tablestore.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	st, err := c.state(ctx)
	if err != nil {
		return false, err
	}
	current := st.Run == s.run.ID && slices.Equal(st.Filter, sortedFilter(s.settings.GroupFilter)) && !st.Build.Active && !st.Shrink
	return !current, nil
}

// groupsDeltaReader is the directory's groups/delta. It is optional so that a directory without it
// (a test double) still syncs: the closure is then rebuilt from TransitiveUserIDs on every run,
// which costs what a filtered run cost before the closure was stored.
type groupsDeltaReader interface {
	GroupsDelta(ctx context.Context, tenantID, link string, ids []string) (entra.GroupPage, error)
}

// membership is the phase before the users round (see needsMembership): it brings the stored
// closure of the group filter in step with Entra ID, one page of work per call, saving its progress in the state row after each
// page so that a step that dies mid-phase resumes there. Every write is a set or a delete of a
// fact, so a page applied twice leaves the same closure.
//
// With the closure in place a run reads one groups/delta round per stream (one stream per 50
// tracked groups): its cost follows the membership changes, not the groups' size. A changed
// filter, a nested group added or removed, a deleted or restored group change the closure in
// place, reading only the groups that came in (reshape.go); an expired link (410) rebuilds the
// closure in a new generation.
//
// A dry run updates the closure too: the closure is Entra's state, not the stakeholders', and the
// marks it leaves (and FullScan after a rebuild) stay until a real run has acted on them.
func (s *stepper) membership(ctx context.Context) (done bool, err error) {
	c := s.e.closureOf(s.org)
	st, err := c.state(ctx)
	if err != nil {
		return false, err
	}
	s.scopeSt = nil // re-read by the phases after this one
	filter := sortedFilter(s.settings.GroupFilter)
	if len(filter) == 0 {
		return s.dropClosure(ctx, c, &st)
	}
	gd, hasDelta := s.e.cfg.Directory.(groupsDeltaReader)
	switch {
	case st.Build.Active:
	case st.Gen == 0 || !st.Summaries || (!hasDelta && st.BuiltBy != s.run.ID):
		// (A generation without summary rows, built by an earlier version, is rebuilt once.)
		st.startBuild(filter)
	case hasDelta && !slices.Equal(st.Filter, filter):
		// (Without groups/delta every run builds anew: a filter changed after this run's build
		// waits for the next run.)
		st.refilter(filter)
		return false, c.save(ctx, st)
	}
	switch {
	case st.Shrink:
		return false, shrinkPage(ctx, c, &st)
	case st.Build.Active && !hasDelta:
		return false, s.buildTransitive(ctx, c, &st, filter)
	case st.Build.Active:
		return false, s.buildPage(ctx, c, gd, &st, filter)
	case len(st.Garbage) > 0:
		return false, collectGarbage(ctx, c, &st)
	}
	if merging, err := s.startMerge(ctx, c, &st); merging || err != nil {
		return false, err
	}
	for i := range st.Streams {
		if st.Streams[i].Run != s.run.ID {
			return false, s.deltaPage(ctx, c, gd, &st, i, filter)
		}
	}
	if st.Merge != nil {
		if slices.Equal(st.Merge.IDs, st.trackedIDs()) {
			st.Streams = []deltaStream{{IDs: st.Merge.IDs, Link: st.Merge.Link, Run: s.run.ID}}
		}
		st.Merge = nil // adopted, or the tracked groups changed meanwhile (a later run tries again)
		if err := c.save(ctx, st); err != nil {
			return false, err
		}
	}
	if st.Run != s.run.ID {
		st.Run = s.run.ID // see needsMembership
		if err := c.save(ctx, st); err != nil {
			return false, err
		}
	}
	for _, gid := range st.Missing {
		if !slices.ContainsFunc(s.run.Errors, func(e RunError) bool { return e.Code == "group_not_found" && e.Object == gid }) {
			s.run.addError(RunError{Code: "group_not_found", Object: gid, Detail: "a group of the filter no longer exists in Entra ID",
				Hint: "Remove it from the group filter in the sync settings."})
		}
	}
	return true, nil
}

// groupsDeltaLatest starts a groups/delta round at the present (optional, as groupsDeltaReader).
type groupsDeltaLatest interface {
	GroupsDeltaLatest(ctx context.Context, tenantID string, ids []string) (string, error)
}

// startMerge begins merging the build's several rounds into one, before this run reads any of
// them (so the merged round starts no later than what they read: nothing falls between). It
// reports whether it saved a merge. A directory that cannot start a round at the present keeps
// the several rounds: correct, one request each.
func (s *stepper) startMerge(ctx context.Context, c closure, st *scopeState) (bool, error) {
	if st.Merge != nil || len(st.Streams) < 2 || slices.ContainsFunc(st.Streams, func(d deltaStream) bool { return d.Run == s.run.ID || d.Next != "" }) {
		return false, nil
	}
	gl, ok := s.e.cfg.Directory.(groupsDeltaLatest)
	ids := st.trackedIDs()
	if !ok || len(ids) > maxDeltaIDs {
		return false, nil
	}
	link, err := gl.GroupsDeltaLatest(ctx, s.tenant, ids)
	if err != nil {
		s.log.WarnContext(ctx, "groups delta: merging the filter's rounds failed; they stay apart", "error", err.Error())
		return false, nil
	}
	st.Merge = &deltaStream{IDs: ids, Link: link}
	return true, c.save(ctx, *st)
}

// trackedIDs are the tracked groups, sorted.
func (st *scopeState) trackedIDs() []string {
	ids := make([]string, 0, len(st.Groups))
	for id := range st.Groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// startBuild begins a rebuild in a fresh generation; a build in progress is abandoned to the
// garbage (its links may be what expired).
func (st *scopeState) startBuild(filter []string) {
	if st.Build.Active && !st.Build.Extend && st.Build.Gen > 0 {
		st.Garbage = append(st.Garbage, st.Build.Gen)
	}
	st.LastGen++
	st.Build = scopeBuild{Active: true, Gen: st.LastGen, Queue: slices.Clone(filter), Groups: map[string]groupNode{}, Filter: slices.Clone(filter), Summaries: true}
	st.Shrink, st.ShrinkFrom = false, "" // the new generation holds only what it reads
	st.Merge = nil
}

// finishBuild switches to the built generation. The stakeholders were compared with the old one:
// the next real run compares every stakeholder again (FullScan).
func (st *scopeState) finishBuild(runID string) {
	b := st.Build
	filter := b.Filter
	if st.Gen > 0 {
		st.Garbage = append(st.Garbage, st.Gen)
	}
	st.Gen, st.Filter, st.Groups, st.Streams, st.FullScan = b.Gen, filter, b.Groups, b.Done, true
	st.Missing = nil
	for _, f := range filter {
		if _, ok := b.Groups[f]; !ok {
			st.Missing = append(st.Missing, f)
		}
	}
	for i := range st.Streams {
		st.Streams[i].Run = runID // the build's initial rounds are this run's rounds
	}
	st.Build, st.BuiltBy, st.Summaries = scopeBuild{}, runID, b.Summaries
}

// buildPage reads one page of the build's current initial round (starting the next level's round
// when needed) and writes its users' rows in the new generation.
func (s *stepper) buildPage(ctx context.Context, c closure, gd groupsDeltaReader, st *scopeState, filter []string) error {
	b := &st.Build
	if b.Groups == nil {
		b.Groups = map[string]groupNode{} // stored empty, read back nil
	}
	if len(b.Cur.IDs) == 0 {
		if len(b.Queue) == 0 && b.Extend {
			st.finishExtend(s.run.ID)
			return c.save(ctx, *st)
		}
		if len(b.Queue) == 0 {
			st.finishBuild(s.run.ID)
			return c.save(ctx, *st)
		}
		n := min(maxDeltaIDs, len(b.Queue))
		b.Cur = deltaStream{IDs: slices.Clone(b.Queue[:n])}
		b.Queue = slices.Clone(b.Queue[n:])
	}
	page, err := gd.GroupsDelta(ctx, s.tenant, b.Cur.Next, b.Cur.IDs)
	if errkind.Of(err) == errkind.Resync {
		st.startBuild(filter) // an initial round's nextLink expired: start over
		return c.save(ctx, *st)
	}
	if err != nil {
		return err
	}
	var ops []tablestore.Op
	sums := summaries{}
	for _, g := range page.Groups {
		if !slices.Contains(b.Cur.IDs, g.ID) || g.Removed != entra.NotRemoved {
			continue
		}
		node := b.Groups[g.ID]
		node.Name, node.Description = g.DisplayName, g.Description
		for _, m := range g.Members {
			switch {
			case m.Removed:
			case m.IsGroup:
				if !slices.Contains(node.Children, m.ID) {
					node.Children = append(node.Children, m.ID)
				}
				_, tracked := st.Groups[m.ID]
				if !b.requested(m.ID) && !(b.Extend && tracked) {
					b.Queue = append(b.Queue, m.ID)
				}
			default:
				if b.Extend {
					// Into the current generation: the user may have just come into scope.
					ops = append(ops, tablestore.UpsertOp(markKey(m.ID), markRow{User: m.ID}, tablestore.Replace))
				}
				ops = append(ops, tablestore.UpsertOp(memberKey(b.Gen, m.ID, g.ID), memberRow{User: m.ID, Group: g.ID}, tablestore.Replace))
				sums.set(m.ID, g.ID, true)
			}
		}
		b.Groups[g.ID] = node
	}
	ops = append(ops, sums.ops(b.Gen)...)
	if err := c.t.Batch(ctx, c.org, ops); err != nil {
		return fmt.Errorf("write scope rows: %w", err)
	}
	if page.DeltaLink != "" {
		b.Done = append(b.Done, deltaStream{IDs: b.Cur.IDs, Link: page.DeltaLink})
		b.Cur = deltaStream{}
	} else {
		b.Cur.Next = page.NextLink
	}
	return c.save(ctx, *st)
}

// buildTransitive builds the closure without groups/delta: each filter group's transitive users
// as its direct members (no nesting known, no streams), rebuilt by every run.
func (s *stepper) buildTransitive(ctx context.Context, c closure, st *scopeState, filter []string) error {
	b := &st.Build
	if b.Groups == nil {
		b.Groups = map[string]groupNode{}
	}
	for _, gid := range filter {
		g, err := s.e.cfg.Directory.Group(ctx, s.tenant, gid)
		if errkind.Of(err) == errkind.NotFound {
			continue
		}
		if err != nil {
			return err
		}
		ids, err := s.e.cfg.Directory.TransitiveUserIDs(ctx, s.tenant, gid)
		if errkind.Of(err) == errkind.NotFound {
			continue
		}
		if err != nil {
			return err
		}
		var ops []tablestore.Op
		sums := summaries{}
		for _, id := range ids {
			ops = append(ops, tablestore.UpsertOp(memberKey(b.Gen, id, gid), memberRow{User: id, Group: gid}, tablestore.Replace))
			sums.set(id, gid, true)
		}
		ops = append(ops, sums.ops(b.Gen)...)
		if err := c.t.Batch(ctx, c.org, ops); err != nil {
			return fmt.Errorf("write scope rows: %w", err)
		}
		b.Groups[gid] = groupNode{Name: g.DisplayName, Description: g.Description}
	}
	st.finishBuild(s.run.ID)
	return c.save(ctx, *st)
}

// deltaPage reads one page of stream i's round and applies its membership changes. A change to
// the nesting, or a tracked group deleted or restored, changes the tracked groups: groups that
// come in are read by an extension, groups that go out are shrunk away (reshape.go).
func (s *stepper) deltaPage(ctx context.Context, c closure, gd groupsDeltaReader, st *scopeState, i int, filter []string) error {
	sm := &st.Streams[i]
	link := sm.Next
	if link == "" {
		link = sm.Link
	}
	page, err := gd.GroupsDelta(ctx, s.tenant, link, nil)
	if errkind.Of(err) == errkind.Resync {
		s.log.InfoContext(ctx, "groups delta token expired; rebuilding the group filter's closure")
		st.startBuild(filter)
		return c.save(ctx, *st)
	}
	if err != nil {
		return err
	}
	type change struct {
		group   string
		removed bool
	}
	changes := map[string][]change{} // by user
	var extend []string              // groups that come in
	retrack := false                 // groups may go out
	for _, g := range page.Groups {
		node, tracked := st.Groups[g.ID]
		switch {
		case !tracked && slices.Contains(st.Missing, g.ID) && g.Removed == entra.NotRemoved:
			extend = append(extend, g.ID) // a filter group restored
			continue
		case !tracked || st.owner(g.ID) != i:
			continue
		case g.Removed != entra.NotRemoved:
			delete(st.Groups, g.ID)
			retrack = true
			continue
		}
		node.Name, node.Description = g.DisplayName, g.Description
		for _, m := range g.Members {
			if !m.IsGroup {
				changes[m.ID] = append(changes[m.ID], change{group: g.ID, removed: m.Removed})
				continue
			}
			has := slices.Contains(node.Children, m.ID)
			switch {
			case m.Removed && has:
				node.Children = slices.DeleteFunc(slices.Clone(node.Children), func(id string) bool { return id == m.ID })
				retrack = true
			case !m.Removed && !has:
				node.Children = append(slices.Clone(node.Children), m.ID)
				if _, ok := st.Groups[m.ID]; !ok && !slices.Contains(extend, m.ID) {
					extend = append(extend, m.ID)
				}
			}
		}
		st.Groups[g.ID] = node
	}
	// Marks first: a step killed after them but before the rows redoes the page, and a mark
	// written twice is one mark.
	var ops, dels []tablestore.Op
	sums := summaries{}
	for user, cs := range changes {
		ops = append(ops, tablestore.UpsertOp(markKey(user), markRow{User: user}, tablestore.Replace))
		for _, ch := range cs {
			if ch.removed {
				dels = append(dels, tablestore.DeleteOp(memberKey(st.Gen, user, ch.group), tablestore.ETagAny))
				sums.set(user, ch.group, false)
			}
		}
	}
	for user, cs := range changes {
		for _, ch := range cs {
			if !ch.removed {
				ops = append(ops, tablestore.UpsertOp(memberKey(st.Gen, user, ch.group), memberRow{User: user, Group: ch.group}, tablestore.Replace))
				if _, removed := sums[user][ch.group]; !removed { // the deletes below come after the upserts
					sums.set(user, ch.group, true)
				}
			}
		}
	}
	// The summaries with the rows (a removal's too: a merge never fails on a redo).
	ops = append(ops, sums.ops(st.Gen)...)
	if err := c.t.Batch(ctx, c.org, ops); err != nil {
		return fmt.Errorf("write scope rows: %w", err)
	}
	// Deletes one by one: a row already gone (a redo) would fail a whole transaction.
	if err := concurrently(len(dels), func(i int) error {
		err := c.t.Delete(ctx, c.org, dels[i].Key, tablestore.ETagAny)
		if err != nil && !errors.Is(err, tablestore.ErrNotFound) {
			return fmt.Errorf("delete scope row: %w", err)
		}
		return nil
	}); err != nil {
		return err
	}
	if page.DeltaLink != "" {
		sm.Link, sm.Next, sm.Run = page.DeltaLink, "", s.run.ID
	} else {
		sm.Next = page.NextLink
	}
	if retrack || len(extend) > 0 {
		s.log.InfoContext(ctx, "the group filter's tracked groups changed", "in", len(extend), "out", retrack)
		st.retrack()
		// A group may be both: it came in under one parent and left another.
		extend = slices.DeleteFunc(extend, func(id string) bool { _, ok := st.Groups[id]; return ok })
		if len(extend) > 0 {
			st.startExtend(extend)
		}
	}
	return c.save(ctx, *st)
}

// dropClosure forgets the closure once the filter is gone: a filter set again later starts from
// a fresh build (and a full comparison), since stakeholders synced meanwhile ignored it.
func (s *stepper) dropClosure(ctx context.Context, c closure, st *scopeState) (bool, error) {
	if st.Gen != 0 || st.Build.Active {
		if st.Gen > 0 {
			st.Garbage = append(st.Garbage, st.Gen)
		}
		if st.Build.Active && st.Build.Gen > 0 {
			st.Garbage = append(st.Garbage, st.Build.Gen)
		}
		*st = scopeState{LastGen: st.LastGen, Garbage: st.Garbage}
		if err := c.save(ctx, *st); err != nil {
			return false, err
		}
	}
	if more, err := c.deleteRange(ctx, markPrefix); err != nil || more {
		return false, err
	}
	if len(st.Garbage) > 0 {
		return false, collectGarbage(ctx, c, st)
	}
	// Nothing left: without the state row, the org's next runs start with the users round.
	if err := c.t.Delete(ctx, c.org, scopeStateKey, tablestore.ETagAny); err != nil && !errors.Is(err, tablestore.ErrNotFound) {
		return false, fmt.Errorf("delete scope state: %w", err)
	}
	return true, nil
}

// collectGarbage deletes a page of the oldest garbage generation's rows, and forgets the
// generation once it is empty.
func collectGarbage(ctx context.Context, c closure, st *scopeState) error {
	more, err := c.deleteRange(ctx, genPrefix(st.Garbage[0]))
	if err != nil || more {
		return err
	}
	st.Garbage = st.Garbage[1:]
	return c.save(ctx, *st)
}
