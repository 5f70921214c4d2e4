package dirsync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// usersPage reads one users/delta page and merges it; done at the round's last page.
func (s *stepper) usersPage(ctx context.Context) (bool, error) {
	run := &s.run
	if run.Pages == 0 && run.NextLink == "" {
		// The group filter's closure first (membership.go); then the round starts again here.
		if detour, err := s.needsMembership(ctx); err != nil || detour {
			if detour {
				run.Phase = PhaseMembership
			}
			return false, err
		}
	}
	link := run.NextLink
	if link == "" && run.Pages == 0 && run.Kind == "delta" {
		st, _, err := tablestore.Get[syncState](ctx, s.e.state, s.org, usersStateKey)
		if err != nil && !errors.Is(err, tablestore.ErrNotFound) {
			return false, err
		}
		if link = st.DeltaLink; link == "" {
			run.Kind = "full"
		}
	}
	if run.Kind == "full" && link == "" && run.Total == 0 {
		if c, ok := s.e.cfg.Directory.(userCounter); ok {
			if n, err := c.CountUsers(ctx, s.tenant); err == nil {
				run.Total = n // only a progress estimate: a failure is no reason to stop
			}
		}
	}
	if run.Kind == "full" && (link == "" || run.Pages == 0) {
		// What the directory holds as the round begins decides which lookups its pages need
		// (resolve); three reads of at most one row, once per round.
		ex, err := s.e.stakeholders.Existing(ctx, s.org)
		if err != nil {
			return false, err
		}
		run.HadSynced = run.HadSynced || ex.Synced
		run.HadEmails = run.HadEmails || ex.Emails
	}
	page, err := s.fetch(ctx, link)
	if err != nil {
		return false, err
	}
	if page.NextLink != "" && page.DeltaLink == "" {
		s.prefetch(ctx, page.NextLink) // Graph fetches the next page while this one is written
	}
	if err := s.loadScope(ctx, page.Users); err != nil {
		return false, err
	}
	if err := s.applyUsers(ctx, page.Users); err != nil {
		return false, err
	}
	run.Pages++
	run.NextLink = page.NextLink
	if page.DeltaLink != "" {
		run.DeltaLink, run.NextLink = page.DeltaLink, ""
		return true, nil
	}
	if page.NextLink == "" {
		return false, &errkind.Error{Kind: errkind.Invalid, Message: "users/delta page has neither nextLink nor deltaLink"}
	}
	return false, nil
}

// prefetched is a users/delta page fetched ahead.
type prefetched struct {
	link string
	done chan struct{}
	page entra.UserPage
	err  error
}

// prefetch starts fetching the page at link in the background.
func (s *stepper) prefetch(ctx context.Context, link string) {
	p := &prefetched{link: link, done: make(chan struct{})}
	s.ahead = p
	go func() {
		defer close(p.done)
		p.page, p.err = s.e.cfg.Directory.UsersDelta(ctx, s.tenant, link)
	}()
}

// fetch returns the page at link, from the prefetch when it is that page.
func (s *stepper) fetch(ctx context.Context, link string) (entra.UserPage, error) {
	if p := s.ahead; p != nil {
		s.ahead = nil
		select {
		case <-p.done:
		case <-ctx.Done():
			return entra.UserPage{}, ctx.Err()
		}
		if p.link == link && p.err == nil {
			return p.page, nil
		}
		// A failed prefetch is retried in the foreground, where its error is handled.
	}
	return s.e.cfg.Directory.UsersDelta(ctx, s.tenant, link)
}

// work is one user on its way to its stakeholder.
type work struct {
	user   entra.User
	values stakeholder.Values
	id     string // matched stakeholder, "" for a new one
	cur    *stakeholder.Stakeholder
	etag   tablestore.ETag
	open   *time.Time // when its open conflict was first found; nil without one
}

// applyUsers merges users into their stakeholders. Users that cannot become stakeholders are
// recorded and skipped; a bad record never fails the page.
func (s *stepper) applyUsers(ctx context.Context, users []entra.User) error {
	links, emails, err := s.resolve(ctx, users)
	if err != nil {
		return err
	}
	run := &s.run
	// The same user may appear more than once in a page: the last entry is the newest.
	last := map[string]int{}
	for i, u := range users {
		last[u.ID] = i
	}
	var items []*work
	var seen []write // seen marks of stakeholders whose user cannot be merged
	var changes []Change
	var pending []pendingDeactivation
	var disabled []*work // matching no stakeholder: kept out, unless a dry run would have made one
	for i, u := range users {
		if last[u.ID] != i {
			continue
		}
		run.Processed++ // and counted in one outcome: here when it is not merged, else by decide
		link, linked := links[u.ID]
		if u.Removed != entra.NotRemoved {
			s.count(tally{outcome: outDeleted})
			if linked && link.Active {
				pending = append(pending, pendingDeactivation{StakeholderID: link.ID, ExternalID: u.ID, Reason: "deleted"})
			}
			continue
		}
		if s.allowed != nil && !s.allowed[u.ID] {
			s.count(tally{outcome: outOutOfFilter})
			if linked && link.Active {
				pending = append(pending, pendingDeactivation{StakeholderID: link.ID, ExternalID: u.ID, Reason: "out_of_filter"})
			}
			continue
		}
		values, problem := valuesOf(u)
		if problem != "" && linked && run.Kind == "full" && !run.DryRun {
			// Still there, only incomplete: a full round must not take it for deleted.
			seen = append(seen, write{next: stakeholder.Stakeholder{ID: link.ID}, seenOnly: true})
		}
		if problem != "" {
			s.count(tally{outcome: outInvalid})
			run.addError(RunError{Code: "invalid_data", Object: u.ID, Detail: problem, Hint: "Complete the user's profile in Entra ID; the next sync picks it up."})
			changes = append(changes, Change{Action: ActInvalid, ExternalID: u.ID, Name: u.DisplayName, Reason: problem})
			continue
		}
		w := &work{user: u, values: values, id: link.ID}
		if c := link.Current; c != nil {
			st := c.Stakeholder
			w.cur, w.etag = &st, c.ETag // read by the lookup already
		}
		if w.id == "" {
			// First time: a soft match by email, then by UPN, links an existing stakeholder.
			w.id = emails[stakeholder.NormalizeEmail(values[stakeholder.Email])]
			if w.id == "" {
				w.id = emails[stakeholder.NormalizeEmail(u.UserPrincipalName)]
			}
		}
		if w.id == "" && !u.AccountEnabled {
			disabled = append(disabled, w)
			continue
		}
		items = append(items, w)
	}
	merged, out, err := s.disabledSeen(ctx, disabled)
	if err != nil {
		return err
	}
	items = append(items, merged...)
	for range out {
		s.count(tally{outcome: outDisabled}) // a disabled user who was never a stakeholder stays out
	}
	if err := s.load(ctx, items); err != nil {
		return err
	}
	if err := s.markOpen(ctx, items); err != nil {
		return err
	}

	ds := make([]decided, len(items))
	for i, w := range items {
		ds[i] = decidedOf(w, s.decision(w))
	}
	if s.run.DryRun {
		if err := s.relisted(ctx, ds); err != nil {
			return err
		}
	}
	writes := seen
	var back []string // active in this page: deactivations an earlier page asked for are withdrawn
	for _, d := range ds {
		if d.w.user.AccountEnabled && d.w.id != "" {
			back = append(back, d.w.id)
		}
		changes = append(changes, d.ch...)
		pending = append(pending, d.pd...)
		if d.wr != nil {
			writes = append(writes, *d.wr)
		}
	}
	logs := func(mark func() tablestore.Op) error {
		if err := s.withdrawPending(ctx, back); err != nil {
			return err
		}
		if err := s.addPending(ctx, pending); err != nil {
			return err
		}
		return s.e.logChanges(ctx, s.org, &s.run, changes, mark)
	}
	if s.run.DryRun {
		// Nothing is written, so a redelivery reads and logs the same again. The rest of the
		// step (the scope phase) must still see what would be written, or it takes a user
		// created here for one still to fetch and reports it twice.
		for _, w := range writes {
			s.remember(w)
			s.noteConflict(w)
		}
		return logs(nil)
	}
	// Every page records, writes or not: a redo after a kill relies on markers in step order.
	again, err := s.record(ctx, logs)
	if err != nil {
		return err
	}
	s.redo = again
	defer func() { s.redo = false }()
	return s.write(ctx, writes)
}

// resolve finds the stakeholders linked to the users, and the ids behind their addresses for
// first-time matches, by the page's keys only: the users' derived ids and Entra index rows (point
// reads), and the email index for users not linked. Its cost follows the page, never the size
// of the directory. A full round skips the lookups that cannot find anything but its own
// writes: by Entra id when no stakeholder was linked as it began, by email when none had an
// address. A user it meets twice then finds its first write as a conflict on its derived id,
// and is merged into it then (writeOneByOne). Users without a derived id (an object id that is
// no GUID), and disabled users (who write nothing to conflict with), are always looked up.
func (s *stepper) resolve(ctx context.Context, users []entra.User) (map[string]stakeholder.Link, map[string]string, error) {
	full := s.run.Kind == "full"
	// Once the round has linked a user by address, that user's stakeholder has no derived id
	// for a second listing to conflict on (under another address it would be created again):
	// the round reads Entra index rows from then on. A dry run wrote none (see relisted).
	indexOnly := full && !s.run.HadSynced && s.run.Linked > 0 && !s.run.DryRun
	ids := make([]string, 0, len(users))
	var indexed, derived []string
	for _, u := range users {
		switch {
		case !full || s.run.HadSynced || stakeholder.SyncedID(u.ID) == "":
			ids = append(ids, u.ID)
		case !u.AccountEnabled && u.Removed == entra.NotRemoved && indexOnly:
			ids = append(ids, u.ID)
		case !u.AccountEnabled && u.Removed == entra.NotRemoved:
			// Looked up even so: listed before in the round, it may have a stakeholder to
			// deactivate, and without a write of its own it would never meet it. Nobody linked
			// by address yet, so only its derived id can hold one.
			derived = append(derived, u.ID)
		case indexOnly:
			indexed = append(indexed, u.ID)
		}
	}
	links, err := s.e.stakeholders.Links(ctx, s.org, ids)
	if err != nil {
		return nil, nil, err
	}
	byIndex, err := s.e.stakeholders.IndexLinks(ctx, s.org, indexed)
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(links, byIndex)
	byDerived, err := s.e.stakeholders.DerivedLinks(ctx, s.org, derived)
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(links, byDerived)
	for id, l := range s.dryLinks {
		if _, ok := links[id]; !ok {
			links[id] = l // a dry run's own would-be writes (see remember)
		}
	}
	var addrs []string
	for _, u := range users {
		if _, ok := links[u.ID]; ok || u.Removed != entra.NotRemoved {
			continue
		}
		if !full || s.run.HadEmails || stakeholder.SyncedID(u.ID) == "" {
			addrs = append(addrs, u.Mail, u.UserPrincipalName)
		}
	}
	emails, err := s.e.stakeholders.ByEmails(ctx, s.org, addrs)
	for e, id := range s.dryEmails {
		if _, ok := emails[e]; !ok && emails != nil {
			emails[e] = id
		}
	}
	return links, emails, err
}

// load reads the matched stakeholders not read yet, a point read each.
func (s *stepper) load(ctx context.Context, items []*work) error {
	ids := make([]string, 0, len(items))
	for _, w := range items {
		if w.id != "" && w.cur == nil {
			ids = append(ids, w.id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	found, err := s.e.stakeholders.GetMany(ctx, s.org, ids)
	if err != nil {
		return err
	}
	for _, w := range items {
		if w.id == "" || w.cur != nil {
			continue
		}
		v, ok := found[w.id]
		if !ok {
			w.id = "" // a dangling index row: treat the user as new
			continue
		}
		st := v.Stakeholder
		w.cur, w.etag = &st, v.ETag
	}
	return nil
}

// write is one stakeholder's transaction: the new version (with the version it replaces, nil
// when new), or only the mark that a full run saw it; with the opening, refreshing or closing of
// its open conflict, which so changes together with the stakeholder.
type write struct {
	next     stakeholder.Stakeholder
	prev     *stakeholder.Stakeholder
	etag     tablestore.ETag
	seenOnly bool
	noMark   bool       // with seenOnly: the stakeholder row is not written at all (only its conflict)
	user     entra.User // for a retry after a concurrent edit
	undo     func(*Run) // takes back the counts decide made for it, if the write never happens
	name     string

	conflict      *stakeholder.Conflict // records the open conflict
	clearConflict bool                  // closes the open conflict
	open          *time.Time            // the open conflict decide saw, for a re-merge
}

func (w write) ops(runID string) []tablestore.Op {
	var ops []tablestore.Op
	switch {
	case !w.seenOnly:
		ops = stakeholder.Ops(w.next, w.prev, w.etag)
	case !w.noMark:
		ops = []tablestore.Op{stakeholder.MarkSeenOp(w.next.ID, runID)}
	}
	if w.conflict != nil {
		ops = append(ops, stakeholder.ConflictOp(*w.conflict))
	}
	if w.clearConflict {
		ops = append(ops, stakeholder.ClearConflictOp(w.next.ID))
	}
	return ops
}

// decision is what merging one user comes to: the outcome it is counted in, the write it needs
// (nil for none), its change records, and the deactivations it asks for.
type decision struct {
	tally   tally
	write   *write
	changes []Change
	pending []pendingDeactivation
}

// decide merges one user into its stakeholder and counts the user in exactly one outcome; a
// write carries the undo of that count, for when it never happens.
func (s *stepper) decide(w *work) (*write, []Change, []pendingDeactivation) {
	d := s.decision(w)
	return d.write, d.changes, d.pending
}

// decision is decide with the tally it counted.
func (s *stepper) decision(w *work) decision {
	var d decision
	switch {
	case w.cur == nil:
		d = s.create(w)
	case w.cur.ExternalID != "" && w.cur.ExternalID != w.user.ID:
		d = s.refuseTaken(w)
	default:
		d = s.mergeExisting(w)
	}
	s.count(d.tally)
	if d.write != nil {
		d.write.undo = d.tally.undo
	}
	return d
}

// create makes a new stakeholder of a user no stakeholder matched.
func (s *stepper) create(w *work) decision {
	u, v := w.user, w.values
	id := stakeholder.SyncedID(u.ID)
	if id == "" {
		id = stakeholder.NewID()
	}
	st := stakeholder.Stakeholder{
		ID: id, Source: stakeholder.Entra, ExternalID: u.ID, Active: true, Base: v,
		CreatedAt: s.now, UpdatedAt: s.now, SyncedAt: s.now,
	}
	for f, val := range v {
		st.Set(f, val)
	}
	if s.run.Kind == "full" {
		st.SeenRun = s.run.ID
	}
	name := displayName(v)
	ch := Change{Action: ActCreated, StakeholderID: st.ID, ExternalID: u.ID, Name: name}
	for _, f := range stakeholder.SyncedFields {
		if v[f] != "" {
			ch.Fields = append(ch.Fields, FieldChange{Field: f, New: v[f]})
		}
	}
	return decision{
		tally:   tally{outcome: outCreated},
		write:   &write{next: st, user: u, name: name},
		changes: []Change{ch},
	}
}

// refuseTaken refuses a user whose address matched a stakeholder linked to another Entra user.
func (s *stepper) refuseTaken(w *work) decision {
	u := w.user
	s.run.addError(RunError{Code: "invalid_data", Object: u.ID, Detail: fmt.Sprintf("email %s is already used by a stakeholder synced from another Entra user", w.values[stakeholder.Email]),
		Hint: "Give each Entra user its own mail address."})
	return decision{
		tally:   tally{outcome: outInvalid},
		changes: []Change{{Action: ActInvalid, ExternalID: u.ID, Name: displayName(w.values), Reason: "email in use by another synced stakeholder"}},
	}
}

// mergeExisting merges a user into the stakeholder it matched, linking it when it was matched
// by address, and asks for the stakeholder's deactivation when the user is disabled.
func (s *stepper) mergeExisting(w *work) decision {
	cur := w.cur
	linking := cur.ExternalID == ""
	base := cur.Base
	if linking {
		base = nil // no common ancestor yet
	}
	m := merge(cur.Values(), base, w.values, s.settings.MergeStrategy)
	var d decision
	if m.skip {
		d = s.skipConflict(w, m, linking)
	} else {
		d = s.update(w, m, linking)
	}
	if !w.user.AccountEnabled && cur.Active {
		d.pending = append(d.pending, pendingDeactivation{StakeholderID: cur.ID, ExternalID: w.user.ID, Reason: "disabled"})
	}
	return d
}

// skipConflict leaves the stakeholder untouched under skip conflicts. The conflict stays open,
// as state of its own, until resolved: a delta round may not see this user again for a long
// time.
func (s *stepper) skipConflict(w *work, m mergeResult, linking bool) decision {
	cur, u, name := w.cur, w.user, displayName(w.values)
	c := stakeholder.Conflict{StakeholderID: cur.ID, ExternalID: u.ID, Name: name, Since: s.now, UpdatedAt: s.now, RunID: s.run.ID,
		Fields: m.conflicts, Entra: w.values}
	if w.open != nil {
		c.Since = *w.open
	}
	return decision{
		tally: tally{outcome: outSkipped, conflict: true, linked: linking},
		write: &write{next: stakeholder.Stakeholder{ID: cur.ID}, seenOnly: true, open: w.open, conflict: &c,
			noMark: s.run.Kind != "full" || linking}, // an unlinked stakeholder is no synced one to mark
		changes: []Change{{Action: ActSkipped, StakeholderID: cur.ID, ExternalID: u.ID, Name: name, Reason: "changed in Entra ID and in Leap Change (skip conflicts)", Fields: m.fields}},
	}
}

// update writes the merge m into the stakeholder: Entra's changes, a first link, a
// reactivation, or only a stale base. A stakeholder that agrees with its user, base included,
// is unchanged. An open conflict closes with the merge: the two sides agree again, or the
// strategy now resolves it.
func (s *stepper) update(w *work, m mergeResult, linking bool) decision {
	cur, u, name := w.cur, w.user, displayName(w.values)
	reactivated := u.AccountEnabled && !cur.Active
	change := func(action, reason string) []Change {
		return []Change{{Action: action, StakeholderID: cur.ID, ExternalID: u.ID, Name: name, Reason: reason, Fields: m.fields}}
	}
	var d decision
	switch {
	case reactivated:
		d = decision{tally: tally{outcome: outReactivated}, changes: change(ActReactivated, "active in Entra ID again")}
	case m.conflict:
		d = decision{tally: tally{outcome: outUpdated, conflict: true}, changes: change(ActConflict, "changed on both sides; resolved by "+string(s.settings.MergeStrategy))}
	case len(m.fields) > 0 || linking:
		reason := ""
		if linking {
			reason = "linked to its Entra user by email"
		}
		d = decision{tally: tally{outcome: outUpdated}, changes: change(ActUpdated, reason)}
	case sameValues(cur.Base, m.base):
		return s.unchanged(w)
	default:
		// Values agree but the base is stale (e.g. both sides made the same change): move it.
		d = decision{tally: tally{outcome: outUnchanged}}
	}
	d.tally.linked = linking
	next := *cur
	next.ExternalID, next.Source = u.ID, stakeholder.Entra
	for f, val := range m.values {
		next.Set(f, val)
	}
	next.Base = m.base
	if s.run.Kind == "full" {
		next.SeenRun = s.run.ID
	}
	if reactivated {
		next.Active, next.DeactivatedReason = true, ""
	}
	next.UpdatedAt, next.SyncedAt = s.now, s.now
	d.write = &write{next: next, prev: cur, etag: w.etag, user: u, name: name, clearConflict: w.open != nil, open: w.open}
	return d
}

// unchanged is a user its stakeholder agrees with, base included: the stakeholder is not
// written, only a full round's mark that its user was seen, and the close of an open conflict.
func (s *stepper) unchanged(w *work) decision {
	d := decision{tally: tally{outcome: outUnchanged}}
	seen := &write{next: stakeholder.Stakeholder{ID: w.cur.ID}, seenOnly: true, open: w.open, clearConflict: w.open != nil}
	switch {
	case s.run.Kind == "full" && w.cur.SeenRun != s.run.ID:
		d.write = seen
	case w.open != nil:
		seen.noMark = true
		d.write = seen
	}
	return d
}

func sameValues(a, b stakeholder.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
