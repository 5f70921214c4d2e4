package dirsync

import (
	"context"
	"errors"
	"slices"

	"github.com/leapchange/m365/handler/internal/stakeholder"
)

// syncGroups mirrors the filter groups as stakeholder groups whose membership is exactly the
// group's users (nested included) that are stakeholders. Synced groups that are no longer
// selected, or were deleted in Entra, are deactivated and emptied; manual groups are never
// touched.
func (s *stepper) syncGroups(ctx context.Context) error {
	selected := map[string]bool{}
	if s.settings.GroupSync && len(s.settings.GroupFilter) > 0 {
		if err := s.mirrorGroups(ctx, selected); err != nil {
			return err
		}
	}
	// Group sync turned off, or a group deselected: its stakeholder group is retired rather than
	// left looking maintained with a frozen membership.
	all, err := s.e.groups.List(ctx, s.org)
	if err != nil {
		return err
	}
	for _, g := range all {
		if g.Source == stakeholder.Entra && g.Active && !selected[g.ID] {
			if err := s.retireGroup(ctx, g.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// mirrorGroups writes each filter group as a stakeholder group with its exact membership and
// marks it in selected. Names and members come from the stored closure, which this run's
// membership phase brought up to date: no Graph request here.
func (s *stepper) mirrorGroups(ctx context.Context, selected map[string]bool) error {
	st, ok, err := s.closureState(ctx)
	if err != nil {
		return err
	}
	if !ok {
		// The filter was set after this run's membership phase: the next run mirrors it.
		for _, gid := range s.settings.GroupFilter {
			selected[stakeholder.SyncedGroupID(gid)] = true
		}
		return nil
	}
	members, err := s.filterMembers(ctx, st)
	if err != nil {
		return err
	}
	for _, gid := range s.settings.GroupFilter {
		id := stakeholder.SyncedGroupID(gid)
		selected[id] = true
		g, found := st.Groups[gid]
		if !found || slices.Contains(st.Missing, gid) {
			if err := s.retireGroup(ctx, id); err != nil {
				return err
			}
			continue
		}
		ids, err := s.stakeholdersOf(ctx, members[gid])
		if err != nil {
			return err
		}
		added, removed, err := s.e.groups.SetMembers(ctx, s.org, id, ids, stakeholder.Entra, s.now)
		if err != nil {
			return err
		}
		s.run.MembersAdded += added
		s.run.MembersRemoved += removed
		s.run.GroupsSynced++
		grp := stakeholder.Group{ID: id, Name: g.Name, Description: g.Description, Type: s.settings.GroupType,
			Source: stakeholder.Entra, ExternalID: gid, Active: true, Members: len(ids), UpdatedAt: s.now}
		if err := s.e.groups.Put(ctx, s.org, grp); err != nil {
			return err
		}
	}
	return nil
}

// filterMembers reads each filter group's users (nested included) from the closure, in one pass
// over its rows: a user's rows come together, each naming a group it is directly in.
func (s *stepper) filterMembers(ctx context.Context, st *scopeState) (map[string][]string, error) {
	up := reach(st.Groups, st.Filter)
	out := map[string][]string{}
	last := map[string]string{} // filter group → the last user added, as one user may reach it twice
	err := s.e.closureOf(s.org).eachMember(ctx, st.Gen, func(r memberRow) error {
		for _, f := range up[r.Group] {
			if last[f] != r.User {
				out[f] = append(out[f], r.User)
				last[f] = r.User
			}
		}
		return nil
	})
	return out, err
}

// retireGroup empties a synced group and marks it inactive; its history stays.
func (s *stepper) retireGroup(ctx context.Context, id string) error {
	g, _, err := s.e.groups.Get(ctx, s.org, id)
	if errors.Is(err, stakeholder.ErrNotFound) {
		return nil // never mirrored
	}
	if err != nil {
		return err
	}
	_, removed, err := s.e.groups.SetMembers(ctx, s.org, id, nil, stakeholder.Entra, s.now)
	if err != nil {
		return err
	}
	s.run.MembersRemoved += removed
	g.Active, g.Members, g.UpdatedAt = false, 0, s.now
	return s.e.groups.Put(ctx, s.org, g)
}

// stakeholdersOf maps filter-group members to their linked stakeholders' ids (after this run's
// writes), looking up a chunk of members at a time: the group's size, never the directory's.
func (s *stepper) stakeholdersOf(ctx context.Context, userIDs []string) ([]string, error) {
	out := make([]string, 0, len(userIDs))
	for chunk := range slices.Chunk(userIDs, scopeChunk) {
		links, err := s.e.stakeholders.Links(ctx, s.org, chunk)
		if err != nil {
			return nil, err
		}
		for _, id := range chunk {
			if link, ok := links[id]; ok {
				out = append(out, link.ID)
			}
		}
	}
	return out, nil
}
