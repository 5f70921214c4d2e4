package dirsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// pendingDeactivation is a stakeholder a run will deactivate (table "syncpending", keyed by run
// and stakeholder, so a retried step writes the same rows). Deactivations wait until the users
// round is done so the deletion guard can weigh them all at once.
type pendingDeactivation struct {
	StakeholderID string `json:"stakeholderId"`
	ExternalID    string `json:"externalId"`
	Reason        string `json:"reason"` // deleted, disabled, out_of_filter
	// Withdrawn is set when a later page of the round shows the user enabled and in scope
	// again (delta may return an object more than once); written explicitly, never omitted, so a
	// merge can set it back.
	Withdrawn bool `json:"withdrawn"`
}

// withdrawPending takes back pending deactivations of stakeholders a later page shows active.
// A step keeps the run's pending deactivations in memory while they are few (the usual case:
// no read per page); past pendingCacheMax (a mass deactivation) it reads the page's own.
func (s *stepper) withdrawPending(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if s.pendingIDs == nil && !s.pendingUncached {
		rows, err := s.pendingRows(ctx, "", pendingCacheMax+1)
		if err != nil {
			return err
		}
		s.pendingIDs = map[string]bool{}
		for _, r := range rows {
			if !r.Value.Withdrawn {
				s.pendingIDs[r.Value.StakeholderID] = true
			}
		}
		s.capPending()
	}
	pending := s.pendingIDs
	if s.pendingUncached {
		var err error
		if pending, err = s.pendingOf(ctx, ids); err != nil {
			return err
		}
	}
	var ops []tablestore.Op
	for _, id := range ids {
		if pending[id] {
			delete(s.pendingIDs, id)
			ops = append(ops, tablestore.UpdateOp(pendingKey(s.run.ID, id), withdrawal{Withdrawn: true}, tablestore.ETagAny, tablestore.Merge))
		}
	}
	return s.e.pending.Batch(ctx, s.org, ops)
}

// pendingCacheMax is how many pending deactivations a step keeps in memory (see withdrawPending).
var pendingCacheMax = tablestore.MaxPageSize

// guardPage is how many pending deactivations one call of the guard phase reads.
var guardPage = tablestore.MaxPageSize

// capPending drops the in-memory pending deactivations once they are too many to keep.
func (s *stepper) capPending() {
	if len(s.pendingIDs) > pendingCacheMax {
		s.pendingIDs, s.pendingUncached = nil, true
	}
}

type withdrawal struct {
	Withdrawn bool `json:"withdrawn"`
}

func pendingKey(runID, stakeholderID string) string { return runID + "." + stakeholderID }

// addPending records deactivations. A stakeholder recorded again gets the later reason (an
// upsert), so callers skip stakeholders already pending.
func (s *stepper) addPending(ctx context.Context, pd []pendingDeactivation) error {
	if len(pd) == 0 {
		return nil
	}
	ops := make([]tablestore.Op, 0, len(pd))
	seen := map[string]bool{}
	for _, p := range pd {
		if seen[p.StakeholderID] {
			continue
		}
		seen[p.StakeholderID] = true
		ops = append(ops, tablestore.UpsertOp(pendingKey(s.run.ID, p.StakeholderID), p, tablestore.Merge))
		if s.pendingIDs != nil {
			s.pendingIDs[p.StakeholderID] = true
		}
	}
	s.capPending()
	return s.e.pending.Batch(ctx, s.org, ops)
}

// pendingRows streams the run's pending deactivations after cursor.
func (s *stepper) pendingRows(ctx context.Context, after string, limit int) ([]tablestore.Row[pendingDeactivation], error) {
	q := tablestore.QueryOptions{KeyPrefix: s.run.ID + ".", PageSize: min(limit, tablestore.MaxPageSize)}
	if after != "" {
		q.From = after + "\x00"
	}
	var out []tablestore.Row[pendingDeactivation]
	for row, err := range tablestore.Query[pendingDeactivation](ctx, s.e.pending, s.org, q) {
		if err != nil {
			return nil, err
		}
		out = append(out, row)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// unseen ends a full round: synced stakeholders whose user the round did not return are gone
// from Entra ID (deleted users are not listed in a full round) and are deactivated. The users
// round marked every stakeholder it saw (seenRun); this phase streams the active synced ones
// once, a page (unseenPage rows) per call from the cursor, so neither a step nor memory grows
// with the directory, and counts them on the way (Counted) for the guard and the final count.
func (s *stepper) unseen(ctx context.Context) (bool, error) {
	if s.run.Cursor == "" {
		s.run.Counted, s.run.CountedAll = 0, false
	}
	var page []stakeholder.Stakeholder
	for st, err := range s.e.stakeholders.Synced(ctx, s.org, true, s.run.Cursor) {
		if err != nil {
			return false, err
		}
		page = append(page, st)
		if len(page) == unseenPage {
			break
		}
	}
	var ids []string
	for _, st := range page {
		if st.SeenRun != s.run.ID {
			ids = append(ids, st.ID)
		}
	}
	// Users the round deactivates already keep their reason (disabled, out of the filter).
	already, err := s.pendingOf(ctx, ids)
	if err != nil {
		return false, err
	}
	var pd []pendingDeactivation
	for _, st := range page {
		if st.SeenRun != s.run.ID && !already[st.ID] {
			pd = append(pd, pendingDeactivation{StakeholderID: st.ID, ExternalID: st.ExternalID, Reason: "deleted"})
		}
	}
	if err := s.addPending(ctx, pd); err != nil {
		return false, err
	}
	s.run.Counted += len(page)
	if len(page) < unseenPage {
		s.run.CountedAll = true
		return true, nil
	}
	s.run.Cursor = page[len(page)-1].ID
	return false, nil
}

// unseenPage is how many stakeholders one call of the unseen phase looks at: one query page.
const unseenPage = tablestore.MaxPageSize

// pendingOf says which of these stakeholders the run deactivates already (pending and not
// withdrawn), a point read each.
func (s *stepper) pendingOf(ctx context.Context, ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	var mu sync.Mutex
	err := concurrently(len(ids), func(i int) error {
		p, _, err := tablestore.Get[pendingDeactivation](ctx, s.e.pending, s.org, pendingKey(s.run.ID, ids[i]))
		if errors.Is(err, tablestore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		mu.Lock()
		out[ids[i]] = !p.Withdrawn
		mu.Unlock()
		return nil
	})
	return out, err
}

// guard counts the run's deactivations and holds the run for approval when they exceed the
// org's threshold (a percentage of its active synced stakeholders, or an absolute count). The
// pending deactivations are logged when the run is held or dry, so an admin sees what approval
// would do. A page of them per call, from the run's cursor ("c|<after>" counting, then "l|<after>"
// logging): a wide deactivation is never held in memory or done in one call.
func (s *stepper) guard(ctx context.Context) (done bool, err error) {
	pass, after, _ := strings.Cut(s.run.Cursor, "|")
	if pass == "" {
		pass, s.run.PendingDeactivations = "c", 0
	}
	rows, err := s.pendingRows(ctx, after, guardPage)
	if err != nil {
		return false, err
	}
	rest := len(rows) == guardPage
	if rest {
		s.run.Cursor = pass + "|" + rows[len(rows)-1].Key
	}
	rows = slices.DeleteFunc(rows, func(r tablestore.Row[pendingDeactivation]) bool { return r.Value.Withdrawn })
	if pass == "c" {
		s.run.PendingDeactivations += len(rows)
		if rest {
			return false, nil
		}
		over, _, err := s.overThreshold(ctx)
		if err != nil || s.run.PendingDeactivations == 0 || !over && !s.run.DryRun {
			return err == nil, err
		}
		s.run.Cursor = "l|" // log them, from the first
		return false, nil
	}
	reason := "would be deactivated (dry run): "
	if !s.run.DryRun {
		reason = "waiting for approval: "
	}
	changes := make([]Change, 0, len(rows))
	for _, r := range rows {
		changes = append(changes, Change{Action: ActDeactivated, StakeholderID: r.Value.StakeholderID, ExternalID: r.Value.ExternalID, Reason: reason + r.Value.Reason})
	}
	if err := s.e.logChanges(ctx, s.org, &s.run, changes, nil); err != nil {
		return false, err
	}
	if rest {
		return false, nil
	}
	over, active, err := s.overThreshold(ctx)
	if err != nil {
		return false, err
	}
	if over && !s.run.DryRun {
		n, th := s.run.PendingDeactivations, s.settings.DeletionThreshold
		s.run.State = Held
		s.run.Hold = &Hold{Deactivations: n, ActiveSynced: active,
			Threshold: fmt.Sprintf("more than %d%% of %d active synced stakeholders or more than %d", th.Percent, active, th.Count)}
		s.run.addError(RunError{Code: "deletion_threshold", Detail: fmt.Sprintf("this run would deactivate %d of %d active synced stakeholders", n, active),
			Hint: "Check the sync's changes; approve the run if the deactivations are intended, or fix the group filter or Entra ID and sync again."})
		s.e.cfg.Logger.WarnContext(ctx, "sync run held by the deletion guard", "org", s.org.String(), "run", s.run.ID, "deactivations", n, "active", active)
	}
	return true, nil
}

// overThreshold says whether the run's counted deactivations exceed the org's threshold, with
// the active synced stakeholders it weighed them against.
func (s *stepper) overThreshold(ctx context.Context) (over bool, active int, err error) {
	if active, err = s.activeSynced(ctx); err != nil {
		return false, 0, err
	}
	n, th := s.run.PendingDeactivations, s.settings.DeletionThreshold
	return n > th.Count || n*100 > th.Percent*active, active, nil
}

// deprovision applies the pending deactivations, a chunk per call, resuming at the cursor.
func (s *stepper) deprovision(ctx context.Context) (bool, error) {
	rows, err := s.pendingRows(ctx, s.run.Cursor, 100)
	if err != nil {
		return false, err
	}
	if len(rows) == 0 {
		return true, nil
	}
	items := make([]*work, 0, len(rows))
	reasons := map[string]string{}
	for _, r := range rows {
		if r.Value.Withdrawn {
			continue
		}
		items = append(items, &work{id: r.Value.StakeholderID})
		reasons[r.Value.StakeholderID] = r.Value.Reason
	}
	if err := s.load(ctx, items); err != nil {
		return false, err
	}
	if err := s.markOpen(ctx, items); err != nil {
		return false, err
	}
	var writes []write
	var changes []Change
	for _, w := range items {
		switch {
		case w.cur == nil:
			continue // gone
		case !w.cur.Active:
			// Deactivated already (in Leap Change meanwhile, or by a retried chunk): its user
			// went away all the same, so an open conflict still closes.
			if w.open != nil {
				writes = append(writes, write{next: stakeholder.Stakeholder{ID: w.cur.ID}, seenOnly: true, noMark: true, clearConflict: true})
			}
			continue
		}
		next := *w.cur
		next.Active, next.DeactivatedReason, next.UpdatedAt = false, reasons[next.ID], s.now
		// The user went away: an open conflict of theirs is closed with the deactivation.
		writes = append(writes, write{next: next, prev: w.cur, etag: w.etag, clearConflict: w.open != nil,
			name: strings.TrimSpace(next.FirstName + " " + next.LastName), undo: func(r *Run) { r.Deactivated-- }})
		changes = append(changes, Change{Action: ActDeactivated, StakeholderID: next.ID, ExternalID: next.ExternalID,
			Name: strings.TrimSpace(next.FirstName + " " + next.LastName), Reason: reasons[next.ID]})
	}
	// Recorded even with nothing to write: a redo of this chunk after a kill finds its
	// stakeholders deactivated already and takes the counts back from the marker.
	if _, err := s.record(ctx, func(mark func() tablestore.Op) error {
		s.run.Deactivated += len(changes)
		return s.e.logChanges(ctx, s.org, &s.run, changes, mark)
	}); err != nil {
		return false, err
	}
	if err := s.write(ctx, writes); err != nil {
		return false, err
	}
	s.run.Cursor = rows[len(rows)-1].Key
	return len(rows) < 100, nil
}
