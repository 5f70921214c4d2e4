package dirsync

import (
	"context"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/stakeholder"
)

// closureState returns the stored closure's state, read once per step. ok is false without a
// filter, or when the filter was set after this run's membership phase: the run then treats
// every user as in scope, as it started out, and the next run builds the closure and compares
// every stakeholder with it.
func (s *stepper) closureState(ctx context.Context) (st *scopeState, ok bool, err error) {
	if len(s.settings.GroupFilter) == 0 {
		return nil, false, nil
	}
	if s.scopeSt == nil {
		cur, err := s.e.closureOf(s.org).state(ctx)
		if err != nil {
			return nil, false, err
		}
		s.scopeSt = &cur
	}
	return s.scopeSt, s.scopeSt.Gen > 0, nil
}

// loadScope sets allowed for a page of users: which of them the group filter lets in (nil: all).
// A full round, which reads every user, loads the whole scope once per step; a delta round reads
// the scope of its page's users only, so its cost follows the changes.
func (s *stepper) loadScope(ctx context.Context, users []entra.User) error {
	st, ok, err := s.closureState(ctx)
	if err != nil || !ok {
		s.allowed = nil
		return err
	}
	c := s.e.closureOf(s.org)
	if s.run.Kind == "full" {
		if s.scopeAll == nil {
			if s.scopeAll, err = c.inScopeSet(ctx, st.Gen); err != nil {
				return err
			}
		}
		s.allowed = s.scopeAll
		return nil
	}
	ids := make([]string, 0, len(users))
	for _, u := range users {
		if u.Removed == entra.NotRemoved {
			ids = append(ids, u.ID)
		}
	}
	s.allowed, err = c.inScope(ctx, st.Gen, ids)
	return err
}

// scope settles users whose scope changed without any change to the user itself: users who
// left the filter groups are deactivated, users who joined them (or came back) are fetched and
// merged. After a rebuild of the closure (and in full rounds) every stakeholder is compared with
// it; otherwise only the users the membership phase marked, so a delta run's cost follows the
// membership changes.
func (s *stepper) scope(ctx context.Context) error {
	st, ok, err := s.closureState(ctx)
	if err != nil || !ok {
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
	c := s.e.closureOf(s.org)
	var candidates []string
	var in map[string]bool
	if s.run.Kind == "full" || st.FullScan {
		if in, err = c.inScopeSet(ctx, st.Gen); err != nil {
			return err
		}
		for ext := range ix.ByExternal {
			candidates = append(candidates, ext)
		}
		for id := range in {
			if _, ok := ix.ByExternal[id]; !ok {
				candidates = append(candidates, id)
			}
		}
	} else {
		if candidates, err = c.marks(ctx); err != nil {
			return err
		}
		if in, err = c.inScope(ctx, st.Gen, candidates); err != nil {
			return err
		}
	}
	var pending []pendingDeactivation
	var fetch []string
	for _, id := range candidates {
		link, linked := ix.ByExternal[id]
		switch {
		case !in[id] && linked && link.Active && !already[link.ID]:
			pending = append(pending, pendingDeactivation{StakeholderID: link.ID, ExternalID: id, Reason: "out_of_filter"})
		case in[id] && (!linked || !link.Active && link.Reason == "out_of_filter"):
			// Not yet known, or inactive only for being out of the filter; inactive for another
			// reason the users round decides.
			fetch = append(fetch, id)
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
	var users []entra.User
	for _, id := range fetch {
		u, err := s.e.cfg.Directory.User(ctx, s.tenant, id)
		if entra.KindOf(err) == entra.KindNotFound {
			continue // deleted meanwhile: the next delta round reports it
		}
		if err != nil {
			return err
		}
		users = append(users, u)
	}
	if len(users) == 0 {
		return nil
	}
	// Users who joined the filter are processed like users/delta entries, and counted so; they
	// are in scope by construction.
	s.allowed = nil
	return s.applyUsers(ctx, users)
}

// clearMarks is the last phase of a real run under a filter: the stakeholders now show every
// marked change (and, after a rebuild, the whole closure), so the marks and FullScan go.
func (s *stepper) clearMarks(ctx context.Context) (done bool, err error) {
	c := s.e.closureOf(s.org)
	if more, err := c.deleteRange(ctx, markPrefix); err != nil || more {
		return false, err
	}
	st, err := c.state(ctx)
	if err != nil || !st.FullScan {
		return err == nil, err
	}
	st.FullScan = false
	return true, c.save(ctx, st)
}

// stakeholdersOf maps filter-group members to linked stakeholder ids.
func stakeholdersOf(ix *stakeholder.Index, userIDs []string) []string {
	out := make([]string, 0, len(userIDs))
	for _, id := range userIDs {
		if link, ok := ix.ByExternal[id]; ok {
			out = append(out, link.ID)
		}
	}
	return out
}
