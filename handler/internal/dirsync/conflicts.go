package dirsync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Open conflicts
//
// With "skip conflicts", a stakeholder changed on both sides is left untouched and its conflict
// is kept as a row of its own (stakeholder.Conflict) until one of these closes it:
//
//   - a sync finds the two sides agree again (Entra or Leap Change moved to the other's value,
//     or Entra went back to the base), or the org switched to Entra wins / Leap wins, which
//     resolves it: the record is merged and the row removed in the same transaction;
//   - the user goes away: the stakeholder is deactivated (deleted, disabled, out of the filter),
//     or the (manual, never linked) stakeholder is deleted;
//   - an admin resolves it (ResolveConflict).
//
// While it is open the record takes no Entra updates, as the strategy promises; each sync that
// sees the user again refreshes the row (Entra's values, the fields in conflict) and keeps the
// time it was first found.

// Choices of a resolution.
const (
	TakeEntra = "entra" // write Entra's value
	KeepLeap  = "leap"  // keep Leap Change's value
)

// Resolution is an admin's answer to an open conflict: a choice per field, and one for every
// conflicting field not named (either may be empty, but together they must cover every field
// in conflict when the resolution is applied).
type Resolution struct {
	Choice string            // TakeEntra or KeepLeap
	Fields map[string]string // field name → TakeEntra or KeepLeap
}

// ErrInvalidResolution is a resolution naming an unknown field or choice.
var ErrInvalidResolution = errors.New("dirsync: invalid conflict resolution")

// UnresolvedError is a resolution that leaves a field in conflict: Leap Change or Entra changed
// since the conflict was read, or the request named too few fields.
type UnresolvedError struct{ Fields []string }

func (e *UnresolvedError) Error() string {
	return "dirsync: no choice for the conflicting fields " + strings.Join(e.Fields, ", ")
}

// OpenConflict is an open conflict with the stakeholder's current ETag, the If-Match of its
// resolution.
type OpenConflict struct {
	stakeholder.Conflict
	ETag tablestore.ETag `json:"etag"`
}

// Conflicts returns org's open conflicts in stakeholder id order, at most limit after the
// stakeholder id after, and the id to continue after ("" at the end). See current for what is
// listed.
func (e *Engine) Conflicts(ctx context.Context, org tablestore.Org, after string, limit int) ([]OpenConflict, string, error) {
	list, next, err := e.stakeholders.Conflicts(ctx, org, after, limit)
	if err != nil {
		return nil, "", err
	}
	out, err := e.current(ctx, org, list)
	return out, next, err
}

// OpenConflictCount is how many conflicts of org are open: one query of small rows, cheap
// enough for a status poll. It reads the stored rows as they are, so it may count a conflict a
// Leap Change edit settled until a sync or a listing closes it.
func (e *Engine) OpenConflictCount(ctx context.Context, org tablestore.Org) (int, error) {
	open, err := e.stakeholders.OpenConflicts(ctx, org)
	return len(open), err
}

// current brings stored conflicts up to date with their stakeholders as they are now: each
// field's Leap value is the stakeholder's current one (the version its ETag stands for), and a
// conflict that no longer holds is closed rather than listed — its stakeholder is gone or linked
// to another user, or the two sides agree now (a Leap Change edit took Entra's value, or a sync
// that raced an admin's resolution wrote the row again). Closing is conditional on the row's
// ETag, so a conflict a sync found again meanwhile stays open.
func (e *Engine) current(ctx context.Context, org tablestore.Org, list []stakeholder.StoredConflict) ([]OpenConflict, error) {
	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.StakeholderID
	}
	found, err := e.stakeholders.GetMany(ctx, org, ids)
	if err != nil {
		return nil, err
	}
	out := make([]OpenConflict, 0, len(list))
	for _, c := range list {
		v, ok := found[c.StakeholderID]
		if ok {
			if fields, open := stillOpen(v.Stakeholder, c.Conflict); open {
				c.Fields = fields
				out = append(out, OpenConflict{Conflict: c.Conflict, ETag: v.ETag})
				continue
			}
		}
		err := e.stakeholders.Apply(ctx, org, []tablestore.Op{stakeholder.CloseConflictOp(c.StakeholderID, c.ETag)})
		if err != nil && !errors.Is(err, tablestore.ErrConflict) {
			// Only housekeeping: the conflict is not listed either way.
			e.cfg.Logger.WarnContext(ctx, "could not close a settled sync conflict", "org", org.String(), "stakeholder", c.StakeholderID, "error", err.Error())
		}
	}
	return out, nil
}

// stillOpen merges the stakeholder now with the Entra values recorded with its conflict: the
// fields still in conflict, and whether there are any.
func stillOpen(st stakeholder.Stakeholder, c stakeholder.Conflict) ([]stakeholder.ConflictField, bool) {
	if st.ExternalID != "" && st.ExternalID != c.ExternalID {
		return nil, false
	}
	base := st.Base
	if st.ExternalID == "" {
		base = nil
	}
	m := merge(st.Values(), base, c.Entra, syncsettings.SkipConflicts)
	return m.conflicts, m.skip
}

// Resolved is the outcome of a resolution.
type Resolved struct {
	Stakeholder stakeholder.Stakeholder
	ETag        tablestore.ETag
	Fields      []FieldChange // every field the resolution changed, and the conflicts it settled
}

// ResolveConflict settles the open conflict of stakeholder id, which must still be at ETag
// ifMatch ("*": any version). It is the three-way merge of the stakeholder now, its base and
// Entra's values recorded with the conflict, each conflicting field decided by r:
//
//   - TakeEntra writes Entra's value;
//   - KeepLeap keeps Leap Change's value.
//
// Either way the new base is Entra's value, exactly as a sync with Entra wins or Leap wins would
// leave it: from then on the field counts as changed only in Leap Change (kept) until Entra
// changes it again, which is a new conflict. Entra's changes to other fields, held back while
// the conflict was open, are applied; Leap-only changes are kept. The stakeholder and the removal
// of the conflict are one transaction, conditional on the stakeholder's ETag and on the ETag of
// the conflict row as read, so neither a Leap Change edit nor a sync meanwhile (which may
// refresh only the conflict row) is lost (stale is tablestore.ErrConflict).
func (e *Engine) ResolveConflict(ctx context.Context, org tablestore.Org, id string, r Resolution, ifMatch tablestore.ETag) (Resolved, error) {
	if err := r.check(); err != nil {
		return Resolved{}, err
	}
	c, err := e.stakeholders.Conflict(ctx, org, id)
	if err != nil {
		return Resolved{}, err
	}
	st, etag, err := e.stakeholders.Get(ctx, org, id)
	if errors.Is(err, stakeholder.ErrNotFound) {
		// Gone since: its conflict goes with it (unless it changed meanwhile).
		if err := e.stakeholders.Apply(ctx, org, []tablestore.Op{stakeholder.CloseConflictOp(id, c.ETag)}); err != nil {
			return Resolved{}, fmt.Errorf("resolve conflict of %s: %w", id, err)
		}
		return Resolved{}, stakeholder.ErrNoConflict
	}
	if err != nil {
		return Resolved{}, err
	}
	if ifMatch != tablestore.ETagAny && ifMatch != etag {
		return Resolved{}, fmt.Errorf("resolve conflict of %s: %w", id, tablestore.ErrConflict)
	}
	if st.ExternalID != "" && st.ExternalID != c.ExternalID {
		// Linked to another user since: this conflict no longer describes it.
		if err := e.stakeholders.Apply(ctx, org, []tablestore.Op{stakeholder.CloseConflictOp(id, c.ETag)}); err != nil {
			return Resolved{}, fmt.Errorf("resolve conflict of %s: %w", id, err)
		}
		return Resolved{}, stakeholder.ErrNoConflict
	}
	base := st.Base
	if st.ExternalID == "" {
		base = nil // never linked: no common ancestor, as in the sync's first match
	}
	var missing []string
	m := mergeWith(st.Values(), base, c.Entra, func(f string) syncsettings.Strategy {
		switch cmp.Or(r.Fields[f], r.Choice) {
		case TakeEntra:
			return syncsettings.EntraWins
		case KeepLeap:
			return syncsettings.LeapWins
		}
		missing = append(missing, f)
		return syncsettings.SkipConflicts
	})
	if len(missing) > 0 {
		return Resolved{}, &UnresolvedError{Fields: missing}
	}
	next := st
	for f, v := range m.values {
		next.Set(f, v)
	}
	next.Base = m.base
	next.ExternalID, next.Source = c.ExternalID, stakeholder.Entra
	next.UpdatedAt = e.cfg.Now().UTC()
	// Conditional on both rows: a delta sync that refreshed only the conflict row meanwhile
	// recorded Entra values this resolution has not seen.
	ops := append(stakeholder.Ops(next, &st, etag), stakeholder.CloseConflictOp(id, c.ETag))
	if err := e.stakeholders.Apply(ctx, org, ops); err != nil {
		return Resolved{}, fmt.Errorf("resolve conflict of %s: %w", id, err)
	}
	_, newETag, err := e.stakeholders.Get(ctx, org, id)
	if err != nil {
		return Resolved{}, err
	}
	e.cfg.Logger.InfoContext(ctx, "sync conflict resolved", "org", org.String(), "stakeholder", id, "fields", len(m.fields))
	return Resolved{Stakeholder: next, ETag: newETag, Fields: m.fields}, nil
}

func (r Resolution) check() error {
	ok := func(c string) bool { return c == TakeEntra || c == KeepLeap }
	if r.Choice != "" && !ok(r.Choice) {
		return fmt.Errorf("%w: choice %q is neither %q nor %q", ErrInvalidResolution, r.Choice, TakeEntra, KeepLeap)
	}
	for f, c := range r.Fields {
		if !slices.Contains(stakeholder.SyncedFields, f) {
			return fmt.Errorf("%w: %q is not a synced field", ErrInvalidResolution, f)
		}
		if !ok(c) {
			return fmt.Errorf("%w: choice %q for %s is neither %q nor %q", ErrInvalidResolution, c, f, TakeEntra, KeepLeap)
		}
	}
	return nil
}

// markOpen notes which of the items' stakeholders have an open conflict. The open conflicts are
// read once a step and kept in step with the writes applied (noteConflict), so a page costs no
// extra read; without them a delta round would never learn that a user it sees again closes one.
func (s *stepper) markOpen(ctx context.Context, items []*work) error {
	if len(items) == 0 {
		return nil
	}
	if s.open == nil {
		// Once a step, not once a page: a page's cost must not grow with the org's conflicts.
		open, err := s.e.stakeholders.OpenConflicts(ctx, s.org)
		if err != nil {
			return err
		}
		s.open = open
	}
	for _, w := range items {
		if since, ok := s.open[w.id]; ok && w.id != "" {
			w.open = &since
		}
	}
	return nil
}
