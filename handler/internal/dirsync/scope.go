package dirsync

import (
	"context"
	"slices"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/stakeholder"
)

// loadScope computes, once per step, which users the group filter lets in: every user in a
// selected group, nested groups included. Without a filter every user is in scope.
func (s *stepper) loadScope(ctx context.Context) error {
	if len(s.settings.GroupFilter) == 0 || s.allowed != nil {
		return nil
	}
	s.allowed, s.members = map[string]bool{}, map[string][]string{}
	for _, gid := range s.settings.GroupFilter {
		ids, err := s.e.cfg.Directory.TransitiveUserIDs(ctx, s.tenant, gid)
		if entra.KindOf(err) == entra.KindNotFound {
			// Every step loads the scope again: report the group once per run.
			if !slices.ContainsFunc(s.run.Errors, func(e RunError) bool { return e.Code == "group_not_found" && e.Object == gid }) {
				s.run.addError(RunError{Code: "group_not_found", Object: gid, Detail: "a group of the filter no longer exists in Entra ID",
					Hint: "Remove it from the group filter in the sync settings."})
			}
			s.members[gid] = nil
			continue
		}
		if err != nil {
			return err
		}
		s.members[gid] = ids
		for _, id := range ids {
			s.allowed[id] = true
		}
	}
	return nil
}

// scope settles users whose scope changed without any change to the user itself: users who
// left the filter groups are deactivated, users who joined them (or came back) are fetched and
// merged.
func (s *stepper) scope(ctx context.Context) error {
	if err := s.loadScope(ctx); err != nil {
		return err
	}
	ix, err := s.index(ctx)
	if err != nil {
		return err
	}
	// Users the users round already deactivates keep their reason: a deleted user has left its
	// groups too, but it is deleted, not out of the filter.
	already, err := s.alreadyPending(ctx)
	if err != nil {
		return err
	}
	var pending []pendingDeactivation
	for ext, link := range ix.ByExternal {
		if link.Active && !s.allowed[ext] && !already[link.ID] {
			pending = append(pending, pendingDeactivation{StakeholderID: link.ID, ExternalID: ext, Reason: "out_of_filter"})
		}
	}
	if err := s.addPending(ctx, pending); err != nil {
		return err
	}
	if s.run.Kind == "full" {
		// A full round has just read every user, members included: fetching those that are
		// not stakeholders (disabled, invalid) again would only report them twice.
		return nil
	}
	var fetch []entra.User
	for id := range s.allowed {
		link, ok := ix.ByExternal[id]
		if ok && (link.Active || link.Reason != "out_of_filter") {
			continue // known and in scope, or inactive for another reason the users round decides
		}
		u, err := s.e.cfg.Directory.User(ctx, s.tenant, id)
		if entra.KindOf(err) == entra.KindNotFound {
			continue // deleted meanwhile: the next delta round reports it
		}
		if err != nil {
			return err
		}
		fetch = append(fetch, u)
	}
	if len(fetch) == 0 {
		return nil
	}
	// Users who joined the filter are processed like users/delta entries, and counted so.
	return s.applyUsers(ctx, fetch)
}

// scopeOf maps filter-group members to linked stakeholder ids.
func stakeholdersOf(ix *stakeholder.Index, userIDs []string) []string {
	out := make([]string, 0, len(userIDs))
	for _, id := range userIDs {
		if link, ok := ix.ByExternal[id]; ok {
			out = append(out, link.ID)
		}
	}
	return out
}
