package dirsync

import (
	"context"
	"errors"
	"fmt"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// maxOps is Table Storage's limit of operations per transaction.
const maxOps = 100

// write stores the page's stakeholders in as few transactions as fit: each stakeholder's ops
// (the row and its index rows) stay in one transaction, so they change together. A transaction
// that fails (a stakeholder edited in Leap Change meanwhile, an email taken) is retried one
// stakeholder at a time, so one bad record never fails the page.
func (s *stepper) write(ctx context.Context, writes []write) error {
	var chunk []tablestore.Op
	var members []write
	keys := map[string]bool{}
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := s.e.stakeholders.Apply(ctx, s.org, chunk)
		if err == nil {
			for _, w := range members {
				s.noteConflict(w)
			}
		}
		if err != nil && (errors.Is(err, tablestore.ErrConflict) || errors.Is(err, tablestore.ErrNotFound) || errors.Is(err, stakeholder.ErrEmailInUse)) {
			err = s.writeOneByOne(ctx, members)
		}
		chunk, members = chunk[:0], members[:0]
		clear(keys)
		return err
	}
	for _, w := range writes {
		ops := w.ops(s.run.ID)
		// A transaction never names a key twice (the store would split it there and cut a
		// stakeholder's ops apart): two users taking the same address go in separate ones.
		repeats := false
		for _, op := range ops {
			repeats = repeats || keys[op.Key]
		}
		if repeats || len(chunk)+len(ops) > maxOps {
			if err := flush(); err != nil {
				return err
			}
		}
		for _, op := range ops {
			keys[op.Key] = true
		}
		chunk = append(chunk, ops...)
		members = append(members, w)
		s.remember(w)
	}
	return flush()
}

// writeOneByOne applies each write on its own; a stakeholder changed since it was read is read
// again and merged again once.
func (s *stepper) writeOneByOne(ctx context.Context, writes []write) error {
	for _, w := range writes {
		err := s.e.stakeholders.Apply(ctx, s.org, w.ops(s.run.ID))
		if err == nil {
			s.noteConflict(w)
		}
		if errors.Is(err, tablestore.ErrConflict) && !w.seenOnly && !errors.Is(err, stakeholder.ErrEmailInUse) {
			err = s.remerge(ctx, w) // notes the conflict of what it writes
		}
		if errors.Is(err, stakeholder.ErrEmailInUse) && w.prev == nil && !w.seenOnly && !s.redo {
			var linked bool
			if linked, err = s.linkInstead(ctx, w); linked || err != nil {
				if err != nil {
					return err
				}
				continue
			}
			err = stakeholder.ErrEmailInUse
		}
		switch {
		case err == nil:
		case errors.Is(err, stakeholder.ErrEmailInUse):
			s.count(tally{outcome: outInvalid}) // the user's outcome now (notWritten takes back the first one)
			detail := "email " + w.next.Email + " is already used by another stakeholder"
			s.run.addError(RunError{Code: "invalid_data", Object: w.user.ID, Detail: detail,
				Hint: "Change the address in Entra ID or on the other stakeholder in Leap Change."})
			s.forget(w)
			if err := s.notWritten(ctx, w, detail); err != nil {
				return err
			}
			if err := s.markSeen(ctx, w); err != nil {
				return err
			}
		case errors.Is(err, tablestore.ErrNotFound) && w.seenOnly:
			// Deleted in Leap Change since the index was read: nothing to mark.
		default:
			return err
		}
	}
	return nil
}

// linkInstead matches a user to the stakeholder holding its address when its create found the
// address taken by one linked to no Entra user (or to this one): a manual stakeholder created
// while the round ran, or one a full round did not look up (see resolve). The user is linked to
// it as a lookup would have, counted and logged so instead of the create; linked is false when
// the address belongs to another Entra user's stakeholder, which stays an error.
func (s *stepper) linkInstead(ctx context.Context, w write) (linked bool, err error) {
	owners, err := s.e.stakeholders.ByEmails(ctx, s.org, []string{w.next.Email})
	if err != nil {
		return false, err
	}
	id := owners[stakeholder.NormalizeEmail(w.next.Email)]
	if id == "" {
		return false, nil
	}
	st, etag, err := s.e.stakeholders.Get(ctx, s.org, id)
	if errors.Is(err, stakeholder.ErrNotFound) {
		return false, nil
	}
	if err != nil || st.ExternalID != "" && st.ExternalID != w.user.ID {
		return false, err
	}
	if w.undo != nil {
		w.undo(&s.run)
	}
	values, _ := valuesOf(w.user)
	again, changes, _ := s.decide(&work{user: w.user, values: values, id: st.ID, cur: &st, etag: etag})
	if err := s.e.logChanges(ctx, s.org, &s.run, append([]Change{{Action: ActError, StakeholderID: w.next.ID, ExternalID: w.user.ID, Name: w.name,
		Reason: "not written: its address belongs to stakeholder " + st.ID + "; linked to it instead"}}, changes...), nil); err != nil {
		return true, err
	}
	if again == nil {
		return true, nil
	}
	err = s.e.stakeholders.Apply(ctx, s.org, again.ops(s.run.ID))
	if errors.Is(err, tablestore.ErrConflict) && !errors.Is(err, stakeholder.ErrEmailInUse) {
		return true, s.remerge(ctx, *again) // edited in Leap Change meanwhile: read again, merge again
	}
	if err == nil {
		s.noteConflict(*again)
	}
	return true, err
}

// remerge re-reads a stakeholder edited during the sync and merges the user into the new
// version; a second conflict is left to the next run.
func (s *stepper) remerge(ctx context.Context, w write) error {
	st, etag, err := s.e.stakeholders.Get(ctx, s.org, w.next.ID)
	if errors.Is(err, stakeholder.ErrNotFound) && w.prev == nil {
		// A new stakeholder whose insert conflicted although its row does not exist: its email
		// row did (the store cannot always tell which op failed).
		return stakeholder.ErrEmailInUse
	}
	if err != nil {
		return err
	}
	if w.prev == nil && w.user.ID != "" && st.ExternalID != w.user.ID {
		return fmt.Errorf("%w: stakeholder id %s is taken by another record", tablestore.ErrConflict, st.ID)
	}
	if w.prev == nil && w.user.AccountEnabled {
		// A create that met the user's stakeholder (see below): had a lookup found it, the page
		// would have withdrawn a deactivation an earlier page asked for (a listing of the user
		// disabled meanwhile, which is looked up); the user is enabled now.
		if err := s.withdrawPending(ctx, []string{st.ID}); err != nil {
			return err
		}
	}
	if w.user.ID == "" {
		// A deactivation (no user to merge): deactivate the new version, keeping its edits, and
		// close the open conflict with it, as the first write would have.
		var ops []tablestore.Op
		if st.Active {
			prev := st
			st.Active, st.DeactivatedReason, st.UpdatedAt = false, w.next.DeactivatedReason, s.now
			ops = stakeholder.Ops(st, &prev, etag)
		}
		if w.clearConflict {
			ops = append(ops, stakeholder.ClearConflictOp(st.ID))
		}
		if len(ops) == 0 {
			return nil
		}
		err := s.e.stakeholders.Apply(ctx, s.org, ops)
		if err == nil {
			s.noteConflict(w)
		}
		if errors.Is(err, tablestore.ErrConflict) {
			detail := "the stakeholder kept changing in Leap Change during its deactivation"
			s.run.addError(RunError{Code: "conflict", Object: st.ExternalID, Detail: detail, Hint: "It was left active; deactivate it in Leap Change or sync again after the edits."})
			return s.notWritten(ctx, w, detail)
		}
		return err
	}
	values, _ := valuesOf(w.user)
	if w.prev == nil && !s.redo {
		// A create that met the stakeholder it would create: a full round that skipped the
		// lookups (see resolve) meeting a user for the second time. The user's outcome is the
		// merge, counted and logged now instead of the create.
		if w.undo != nil {
			w.undo(&s.run)
		}
		again, changes, _ := s.decide(&work{user: w.user, values: values, id: st.ID, cur: &st, etag: etag, open: w.open})
		if err := s.e.logChanges(ctx, s.org, &s.run, append([]Change{{Action: ActError, StakeholderID: st.ID, ExternalID: w.user.ID, Name: w.name,
			Reason: "not written: the stakeholder exists already (the user came twice); merged instead"}}, changes...), nil); err != nil {
			return err
		}
		if again == nil {
			return nil
		}
		err := s.e.stakeholders.Apply(ctx, s.org, again.ops(s.run.ID))
		if err == nil {
			s.noteConflict(*again)
		}
		return err
	}
	// The first decision was counted and logged already (or, redoing a page after a kill, by
	// the first attempt): this one only redoes the write.
	counted := s.run
	again, _, _ := s.decide(&work{user: w.user, values: values, id: st.ID, cur: &st, etag: etag, open: w.open})
	s.run = counted
	if again == nil {
		return nil
	}
	err = s.e.stakeholders.Apply(ctx, s.org, again.ops(s.run.ID))
	if err == nil {
		s.noteConflict(*again)
	}
	if errors.Is(err, tablestore.ErrConflict) && !errors.Is(err, stakeholder.ErrEmailInUse) {
		// Left as it is in Leap Change. A delta round sees the user again only once Entra ID
		// changes it, so the hint promises no more than that (or a full round).
		detail := "the stakeholder kept changing in Leap Change during the sync"
		s.run.addError(RunError{Code: "conflict", Object: w.user.ID, Detail: detail,
			Hint: "It was left as it is in Leap Change: Entra ID's changes to this user reach it when the user changes in Entra ID again, or in a full sync."})
		if err := s.notWritten(ctx, w, detail); err != nil {
			return err
		}
		s.count(tally{outcome: outSkipped}) // the user's outcome: left untouched (notWritten took back the first one)
		return s.markSeen(ctx, write{next: stakeholder.Stakeholder{ID: st.ID}, prev: &st})
	}
	return err
}

// notWritten takes back the counts of a write that never happened and says so in the change
// log, after the entry that announced it (the log is written before the writes, for redo).
func (s *stepper) notWritten(ctx context.Context, w write, why string) error {
	if w.undo != nil {
		w.undo(&s.run)
	}
	return s.e.logChanges(ctx, s.org, &s.run, []Change{{Action: ActError, StakeholderID: w.next.ID, ExternalID: w.user.ID, Name: w.name, Reason: "not written: " + why}}, nil)
}

// markSeen records, in a full round, that a stakeholder's user was found even though its write
// failed: the unseen phase must not take a live user for a deleted one.
func (s *stepper) markSeen(ctx context.Context, w write) error {
	if s.run.Kind != "full" || w.prev == nil || s.run.DryRun {
		return nil
	}
	err := s.e.stakeholders.Apply(ctx, s.org, []tablestore.Op{stakeholder.MarkSeenOp(w.next.ID, s.run.ID)})
	if errors.Is(err, tablestore.ErrNotFound) {
		return nil // deleted in Leap Change meanwhile
	}
	return err
}

// noteConflict keeps the step's open conflicts (see markOpen) in step with a write that was
// applied: the one decided first, or the one a re-merge wrote instead.
func (s *stepper) noteConflict(w write) {
	if s.open == nil {
		return
	}
	switch {
	case w.conflict != nil:
		s.open[w.next.ID] = w.conflict.Since
	case w.clearConflict:
		delete(s.open, w.next.ID)
	}
}

// remember keeps, in a dry run's delta round, what it would have written: nothing is written,
// and the step's scope phase must not take a user the round would create for one still to
// fetch. It is bounded by the round's changes; a real run finds its writes in the store, and a
// full round keeps nothing (its scope phase fetches nobody).
func (s *stepper) remember(w write) {
	if !s.run.DryRun || s.run.Kind == "full" || w.seenOnly {
		return
	}
	if s.dryLinks == nil {
		s.dryLinks, s.dryEmails = map[string]stakeholder.Link{}, map[string]string{}
	}
	if w.next.ExternalID != "" {
		s.dryLinks[w.next.ExternalID] = stakeholder.Link{ID: w.next.ID, Active: w.next.Active, Reason: w.next.DeactivatedReason}
	}
	if e := stakeholder.NormalizeEmail(w.next.Email); e != "" {
		s.dryEmails[e] = w.next.ID
	}
}

func (s *stepper) forget(w write) {
	if s.dryLinks == nil || w.prev != nil {
		return
	}
	delete(s.dryLinks, w.next.ExternalID)
}
