package dirsync

import (
	"context"
	"fmt"
	"slices"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Changes to the set of tracked groups (a changed filter, a nested group added or removed, a
// group deleted or restored) are made in place, in the current generation: groups that come in
// are read by an extension (initial groups/delta rounds of those groups alone, their users'
// rows written with a mark each); groups that go out are forgotten and their rows deleted by a
// shrink (a pass over the stored rows, no Graph request), marking their users. Shrink runs
// before extension, so a group that goes out and comes back in the same change is read anew.

// refilter starts bringing the closure to a changed filter.
func (st *scopeState) refilter(filter []string) {
	st.Filter = slices.Clone(filter)
	var add []string
	for _, f := range filter {
		if _, ok := st.Groups[f]; !ok {
			add = append(add, f)
		}
	}
	st.retrack()
	if len(add) > 0 {
		st.startExtend(add)
	}
}

// retrack forgets the groups no filter group reaches any more (a shrink deletes their rows),
// drops the streams left without a group of their own, and lists the missing filter groups.
func (st *scopeState) retrack() {
	up := reach(st.Groups, st.Filter)
	for g := range st.Groups {
		if _, ok := up[g]; !ok {
			delete(st.Groups, g)
			st.Shrink, st.ShrinkFrom = true, ""
		}
	}
	st.missing()
	var keep []deltaStream
	for i, sm := range st.Streams {
		owns := slices.ContainsFunc(sm.IDs, func(id string) bool {
			_, tracked := st.Groups[id]
			return tracked && st.owner(id) == i || slices.Contains(st.Missing, id) // a missing one may come back
		})
		if owns {
			keep = append(keep, sm)
		}
	}
	st.Streams = keep
}

// missing lists the filter groups the closure has no group for.
func (st *scopeState) missing() {
	st.Missing = nil
	for _, f := range st.Filter {
		if _, ok := st.Groups[f]; !ok {
			st.Missing = append(st.Missing, f)
		}
	}
}

// owner is the stream whose changes of group id count: the last one listing it (a group that
// left and came back has a newer stream than the one that listed it first).
func (st *scopeState) owner(id string) int {
	for i := len(st.Streams) - 1; i >= 0; i-- {
		if slices.Contains(st.Streams[i].IDs, id) {
			return i
		}
	}
	return -1
}

// startExtend starts reading groups (and the groups nested in them not tracked yet) into the
// current generation.
func (st *scopeState) startExtend(groups []string) {
	st.Build = scopeBuild{Active: true, Extend: true, Gen: st.Gen, Queue: slices.Clone(groups), Groups: map[string]groupNode{}, Filter: st.Filter}
}

// finishExtend adds the groups read to the tracked ones, with their streams.
func (st *scopeState) finishExtend(runID string) {
	if st.Groups == nil {
		st.Groups = map[string]groupNode{}
	}
	for g, n := range st.Build.Groups {
		st.Groups[g] = n
	}
	for _, d := range st.Build.Done {
		d.Run = runID // its initial round is this run's round
		st.Streams = append(st.Streams, d)
	}
	st.Build = scopeBuild{}
	st.retrack() // a group read under a parent that went out meanwhile goes out too
}

// shrinkPage deletes a page of the rows of groups no longer tracked, marking their users first.
func shrinkPage(ctx context.Context, c closure, st *scopeState) error {
	opts := tablestore.QueryOptions{KeyPrefix: genPrefix(st.Gen) + "p|"}
	if st.ShrinkFrom != "" {
		opts.From = st.ShrinkFrom + " " // after it: no key character sorts below a space
	}
	var marks, dels []tablestore.Op
	sums := summaries{}
	marked := map[string]bool{}
	n, last := 0, ""
	for row, err := range tablestore.Query[memberRow](ctx, c.t, c.org, opts) {
		if err != nil {
			return fmt.Errorf("read scope rows: %w", err)
		}
		n, last = n+1, row.Key
		if _, tracked := st.Groups[row.Value.Group]; !tracked {
			if !marked[row.Value.User] {
				marked[row.Value.User] = true
				marks = append(marks, tablestore.UpsertOp(markKey(row.Value.User), markRow{User: row.Value.User}, tablestore.Replace))
			}
			dels = append(dels, tablestore.DeleteOp(row.Key, tablestore.ETagAny))
			sums.set(row.Value.User, row.Value.Group, false)
		}
		if n == tablestore.MaxPageSize {
			break
		}
	}
	if err := c.t.Batch(ctx, c.org, append(append(marks, dels...), sums.ops(st.Gen)...)); err != nil {
		return fmt.Errorf("delete scope rows: %w", err)
	}
	if n < tablestore.MaxPageSize {
		st.Shrink, st.ShrinkFrom = false, ""
	} else {
		st.ShrinkFrom = last
	}
	return c.save(ctx, *st)
}
