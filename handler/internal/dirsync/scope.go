package dirsync

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
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
// compared with it, then (delta rounds) every user in it with the stakeholders; otherwise only
// the users the membership phase marked, so a delta run's cost follows the membership changes.
// One call settles one chunk and the run's cursor says where the next starts: neither a step
// nor memory grows with the directory or with a filter group of half a million members.
func (s *stepper) scope(ctx context.Context) (done bool, err error) {
	st, ok, err := s.closureState(ctx)
	if err != nil || !ok {
		return true, err
	}
	cur, err := parseScopeCursor(s.run.Cursor)
	if err != nil {
		return false, err
	}
	if cur.pass == "" {
		cur.pass = passMarks
		if s.run.Kind == "full" || st.FullScan {
			cur.pass = passSynced
		}
	}
	c := s.e.closureOf(s.org)
	var fetch []string
	more := false
	switch cur.pass {
	case passSynced:
		chunk, known, last, err := s.syncedChunk(ctx, cur.after)
		if err != nil {
			return false, err
		}
		if _, err := s.scopeSettle(ctx, c, st.Gen, chunk, known, true, false); err != nil {
			return false, err
		}
		switch {
		case len(chunk) == scopeChunk:
			cur.after, more = last, true
		case s.run.Kind != "full":
			// A full round has just read every user, members included: fetching those that
			// are not stakeholders (disabled, invalid) again would only report them twice.
			cur, more = scopeCursor{pass: passMembers, fetched: cur.fetched}, true
		}
	case passMembers:
		ugs, m, err := c.memberChunk(ctx, st.Gen, cur.after, scopeChunk)
		if err != nil {
			return false, err
		}
		users := make([]string, len(ugs))
		for i, ug := range ugs {
			users[i] = ug.User
		}
		if fetch, err = s.scopeSettle(ctx, c, st.Gen, users, nil, false, true); err != nil {
			return false, err
		}
		if m {
			cur.after, more = users[len(users)-1], true
		}
	case passMarks:
		users, last, err := c.markPage(ctx, cur.after, scopeChunk)
		if err != nil {
			return false, err
		}
		if fetch, err = s.scopeSettle(ctx, c, st.Gen, users, nil, true, true); err != nil {
			return false, err
		}
		if len(users) == scopeChunk {
			cur.after, more = last, true
		}
	}
	if len(fetch) > 0 {
		if cur.fetched += len(fetch); cur.fetched > s.e.cfg.ScopeFetchMax {
			s.restartFull(cur.fetched)
			return false, nil
		}
		if err := s.fetchJoined(ctx, fetch); err != nil {
			return false, err
		}
	} else if err := s.takeBack(ctx); err != nil {
		return false, err
	}
	if !more {
		return true, nil
	}
	s.run.Cursor = cur.String()
	return false, nil
}

// syncedChunk reads up to scopeChunk synced active stakeholders after stakeholder id after: their
// users' ids, their links, and the last stakeholder id read (the pass's cursor).
func (s *stepper) syncedChunk(ctx context.Context, after string) (users []string, known map[string]stakeholder.Link, last string, err error) {
	known = make(map[string]stakeholder.Link, scopeChunk)
	for st, err := range s.e.stakeholders.Synced(ctx, s.org, true, after) {
		if err != nil {
			return nil, nil, "", err
		}
		users = append(users, st.ExternalID)
		known[st.ExternalID] = stakeholder.Link{ID: st.ID, Active: st.Active, Reason: st.DeactivatedReason}
		if last = st.ID; len(users) == scopeChunk {
			break
		}
	}
	return users, known, last, nil
}

// fetchJoined reads the users who joined the filter and merges them like users/delta entries,
// counted so; they are in scope by construction.
func (s *stepper) fetchJoined(ctx context.Context, ids []string) error {
	users := make([]entra.User, 0, len(ids))
	for _, id := range ids {
		u, err := s.e.cfg.Directory.User(ctx, s.tenant, id)
		if errkind.Of(err) == errkind.NotFound {
			continue // deleted meanwhile: the next delta round reports it
		}
		if err != nil {
			return err
		}
		users = append(users, u)
	}
	if len(users) == 0 {
		return s.takeBack(ctx)
	}
	s.allowed = nil
	return s.applyUsers(ctx, users)
}

// takeBack is a scope chunk that writes nothing: in a step that may redo one a killed delivery
// recorded, it takes the first attempt's counts and change log back from its marker (see
// record). The users that attempt fetched and merged are linked when the redo reads them, so the
// redo fetches none of them and applyUsers, which would take them back, never runs.
func (s *stepper) takeBack(ctx context.Context) error {
	if !s.resuming || s.run.DryRun {
		return nil
	}
	_, err := s.record(ctx, func(func() tablestore.Op) error { return nil })
	return err
}

// restartFull turns a delta run whose scope change is too wide to fetch user by user into a
// full round from scratch (as when the delta token expires): it reaches the same state, a page
// of 200 users a request. What the run did so far stays done and counted.
func (s *stepper) restartFull(joined int) {
	s.log.Info("scope change too wide to fetch user by user; resyncing in full", "joined", joined, "max", s.e.cfg.ScopeFetchMax)
	s.run.Kind, s.run.Phase, s.run.NextLink, s.run.Cursor = "full", PhaseUsers, "", ""
	s.run.Pages, s.run.Processed = 0, 0
}

// scopeChunk is how many users the scope phase settles in one call.
const scopeChunk = 500

// Passes of the scope phase (scopeCursor.pass).
const (
	passSynced  = "s" // synced stakeholders against the closure: who left
	passMembers = "m" // users in the closure against the stakeholders: who joined
	passMarks   = "k" // only the users the membership phase marked
)

// scopeCursor is the scope phase's resume point: the pass, where in it, and how many users it
// has fetched so far (for ScopeFetchMax). Its string form is "<pass>|<fetched>|<after>".
type scopeCursor struct {
	pass    string
	fetched int
	after   string
}

func (c scopeCursor) String() string { return c.pass + "|" + strconv.Itoa(c.fetched) + "|" + c.after }

func parseScopeCursor(s string) (scopeCursor, error) {
	if s == "" {
		return scopeCursor{}, nil
	}
	parts := strings.SplitN(s, "|", 3)
	if len(parts) != 3 {
		return scopeCursor{}, fmt.Errorf("dirsync: scope cursor %q is not pass|fetched|after", s)
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n < 0 || !slices.Contains([]string{passSynced, passMembers, passMarks}, parts[0]) {
		return scopeCursor{}, fmt.Errorf("dirsync: scope cursor %q is not pass|fetched|after", s)
	}
	return scopeCursor{pass: parts[0], fetched: n, after: parts[2]}, nil
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
	if out, err = s.dryMerged(ctx, out); err != nil {
		return nil, err
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

// dryMerged drops, in a dry run, the users to fetch that its round already merged into a
// would-be stakeholder the real run would find linked (see fetching in scopeSettle): dryLinks
// holds those of this step only, and the scope phase may run steps after the page that merged
// them, so their shadows are read (a point read per user to fetch, dry runs only).
func (s *stepper) dryMerged(ctx context.Context, fetch []string) ([]string, error) {
	if !s.run.DryRun || len(fetch) == 0 {
		return fetch, nil
	}
	priors := make([]*stakeholder.Stakeholder, len(fetch))
	err := concurrently(len(fetch), func(i int) (err error) {
		priors[i], err = s.prior(ctx, fetch[i])
		return err
	})
	if err != nil {
		return nil, err
	}
	out := fetch[:0:0]
	for i, id := range fetch {
		if p := priors[i]; p == nil || !p.Active && p.DeactivatedReason == "out_of_filter" {
			out = append(out, id)
		}
	}
	return out, nil
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
