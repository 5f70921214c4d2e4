package dirsync

import (
	"context"
	"slices"

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

// loadScope sets allowed for a page of users: which of them the group filter lets in (nil: all),
// a key-range read of the closure per user, so its cost follows the page in full rounds too.
func (s *stepper) loadScope(ctx context.Context, users []entra.User) error {
	st, ok, err := s.closureState(ctx)
	if err != nil || !ok {
		s.allowed = nil
		return err
	}
	ids := make([]string, 0, len(users))
	for _, u := range users {
		if u.Removed == entra.NotRemoved {
			ids = append(ids, u.ID)
		}
	}
	s.allowed, err = s.e.closureOf(s.org).inScope(ctx, st.Gen, ids)
	return err
}

// scope settles users whose scope changed without any change to the user itself: users who
// left the filter groups are deactivated, users who joined them (or came back) are fetched and
// merged. After a rebuild of the closure (and in full rounds) every synced stakeholder is
// compared with it, and every user in it with the stakeholders (scopeScan), streamed in chunks;
// otherwise only the users the membership phase marked, so a delta run's cost follows the
// membership changes.
func (s *stepper) scope(ctx context.Context) error {
	st, ok, err := s.closureState(ctx)
	if err != nil || !ok {
		return err
	}
	c := s.e.closureOf(s.org)
	var fetch []string
	if s.run.Kind == "full" || st.FullScan {
		if fetch, err = s.scopeScan(ctx, c, st.Gen); err != nil {
			return err
		}
	} else {
		candidates, err := c.marks(ctx)
		if err != nil {
			return err
		}
		if fetch, err = s.scopeSettle(ctx, c, st.Gen, candidates, nil, true, true); err != nil {
			return err
		}
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

// scopeChunk is how many users the scope phase's scans settle at a time.
const scopeChunk = 500

// scopeScan compares the whole closure with the directory in two streamed passes, holding a
// chunk at a time: the synced stakeholders (those out of scope are deactivated), then the users
// in scope (those not linked, or inactive only for being out of the filter, are returned to
// fetch; a full round does not fetch, so it skips that pass).
func (s *stepper) scopeScan(ctx context.Context, c closure, gen int) ([]string, error) {
	var chunk []string
	var known map[string]stakeholder.Link // the chunk's links, when the stream read them
	settle := func(deactivate, fetching bool) ([]string, error) {
		f, err := s.scopeSettle(ctx, c, gen, chunk, known, deactivate, fetching)
		chunk, known = chunk[:0], nil
		return f, err
	}
	for st, err := range s.e.stakeholders.Synced(ctx, s.org, true, "") {
		if err != nil {
			return nil, err
		}
		if known == nil {
			known = make(map[string]stakeholder.Link, scopeChunk)
		}
		chunk = append(chunk, st.ExternalID)
		known[st.ExternalID] = stakeholder.Link{ID: st.ID, Active: st.Active, Reason: st.DeactivatedReason}
		if len(chunk) == scopeChunk {
			if _, err := settle(true, false); err != nil {
				return nil, err
			}
		}
	}
	if _, err := settle(true, false); err != nil {
		return nil, err
	}
	if s.run.Kind == "full" {
		return nil, nil
	}
	var fetch []string
	last := ""
	err := c.eachMember(ctx, gen, func(r memberRow) error {
		if r.User == last {
			return nil // a user's rows come together, one per group it is directly in
		}
		last = r.User
		chunk = append(chunk, r.User)
		if len(chunk) < scopeChunk {
			return nil
		}
		f, err := settle(false, true)
		fetch = append(fetch, f...)
		return err
	})
	if err != nil {
		return nil, err
	}
	f, err := settle(false, true)
	return append(fetch, f...), err
}

// scopeSettle compares users with the closure and with their stakeholders (links, read here
// when nil): with deactivate, a linked active stakeholder whose user is out of scope is
// deactivated (out_of_filter); with fetching, the users in scope that are not linked, or
// inactive only for being out of the filter, are returned to fetch (inactive for another
// reason, the users round decides).
func (s *stepper) scopeSettle(ctx context.Context, c closure, gen int, users []string, links map[string]stakeholder.Link, deactivate, fetching bool) ([]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	in, err := c.inScope(ctx, gen, users)
	if err != nil {
		return nil, err
	}
	if links == nil {
		if links, err = s.e.stakeholders.Links(ctx, s.org, users); err != nil {
			return nil, err
		}
	}
	for id, l := range s.dryLinks {
		if _, ok := links[id]; !ok && slices.Contains(users, id) {
			links[id] = l
		}
	}
	var out []string
	var pending []pendingDeactivation
	var leaving []string
	for _, id := range users {
		link, linked := links[id]
		switch {
		case deactivate && !in[id] && linked && link.Active:
			pending = append(pending, pendingDeactivation{StakeholderID: link.ID, ExternalID: id, Reason: "out_of_filter"})
			leaving = append(leaving, link.ID)
		case fetching && in[id] && (!linked || !link.Active && link.Reason == "out_of_filter"):
			out = append(out, id)
		}
	}
	// Users the users round already deactivates keep their reason: a deleted user has left its
	// groups too, but it is deleted, not out of the filter.
	already, err := s.pendingOf(ctx, leaving)
	if err != nil {
		return nil, err
	}
	pending = slices.DeleteFunc(pending, func(p pendingDeactivation) bool { return already[p.StakeholderID] })
	return out, s.addPending(ctx, pending)
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
