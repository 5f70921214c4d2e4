package dirsync

import (
	"context"
	"errors"

	"github.com/leapchange/m365/handler/internal/entra"
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
// marks it in selected.
func (s *stepper) mirrorGroups(ctx context.Context, selected map[string]bool) error {
	if err := s.loadScope(ctx); err != nil {
		return err
	}
	ix, err := s.e.stakeholders.LoadIndex(ctx, s.org) // after this run's writes
	if err != nil {
		return err
	}
	for _, gid := range s.settings.GroupFilter {
		id := stakeholder.SyncedGroupID(gid)
		selected[id] = true
		g, err := s.e.cfg.Directory.Group(ctx, s.tenant, gid)
		if entra.KindOf(err) == entra.KindNotFound {
			if err := s.retireGroup(ctx, id); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		ids := stakeholdersOf(&ix, s.members[gid])
		added, removed, err := s.e.groups.SetMembers(ctx, s.org, id, ids, stakeholder.Entra, s.now)
		if err != nil {
			return err
		}
		s.run.MembersAdded += added
		s.run.MembersRemoved += removed
		s.run.GroupsSynced++
		grp := stakeholder.Group{ID: id, Name: g.DisplayName, Description: g.Description, Type: s.settings.GroupType,
			Source: stakeholder.Entra, ExternalID: gid, Active: true, Members: len(ids), UpdatedAt: s.now}
		if err := s.e.groups.Put(ctx, s.org, grp); err != nil {
			return err
		}
	}
	return nil
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
