package stakeholder

import (
	"context"
	"errors"
	"time"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Conflict is an open sync conflict: a stakeholder whose synced fields changed both in Entra ID
// and in Leap Change, left untouched by the "skip conflicts" strategy. It is state of its own
// (a "c-" row beside the stakeholder, in the same partition and table, so it is written in the
// stakeholder's own transaction) because Entra's losing values exist nowhere else: a delta sync
// does not see the user again until Entra changes it, so without this row the conflict would
// drop out of sight after one run while the record silently stopped taking Entra's updates.
type Conflict struct {
	StakeholderID string          `json:"stakeholderId"`
	ExternalID    string          `json:"externalId"` // the Entra user
	Name          string          `json:"name"`
	Since         time.Time       `json:"since"`     // first found
	UpdatedAt     time.Time       `json:"updatedAt"` // last found by a sync
	RunID         string          `json:"runId"`     // the run that last found it
	Fields        []ConflictField `json:"fields"`    // the fields in conflict
	// Entra is every synced field's value in Entra when the conflict was last found: the input
	// of the resolution, which also applies Entra's non-conflicting changes the skip held back.
	Entra Values `json:"entra"`
}

// ConflictField is one field in conflict, with its three values.
type ConflictField struct {
	Field string `json:"field"`
	// Base is the value last synced from Entra (the common ancestor); nil when the stakeholder
	// was never linked to its user (a first match by email).
	Base  *string `json:"base"`
	Entra string  `json:"entra"`
	Leap  string  `json:"leap"`
}

// ErrNoConflict is returned for a stakeholder without an open conflict.
var ErrNoConflict = errors.New("stakeholder: no open conflict")

func conflictKey(id string) string { return "c-" + id }

// ConflictOp records c (replacing any earlier version of the same stakeholder's conflict).
func ConflictOp(c Conflict) tablestore.Op {
	return tablestore.UpsertOp(conflictKey(c.StakeholderID), c, tablestore.Replace)
}

// ClearConflictOp closes a stakeholder's open conflict. Apply drops it when the row is not
// there (closed by someone else meanwhile), so it never fails a stakeholder's transaction.
func ClearConflictOp(id string) tablestore.Op {
	return tablestore.DeleteOp(conflictKey(id), tablestore.ETagAny)
}

// StoredConflict is a conflict with the ETag of its row.
type StoredConflict struct {
	Conflict
	ETag tablestore.ETag
}

// CloseConflictOp closes a conflict only if its row is still the version read at etag: a sync
// may have found it again meanwhile. Apply fails with tablestore.ErrConflict when the row
// changed or is gone.
func CloseConflictOp(id string, etag tablestore.ETag) tablestore.Op {
	return tablestore.DeleteOp(conflictKey(id), etag)
}

// Conflict returns a stakeholder's open conflict with the ETag of its row, or ErrNoConflict.
// Whoever acts on what it read closes it with CloseConflictOp at that ETag, so a sync that
// refreshed the row meanwhile (without writing the stakeholder) is not overruled.
func (s *Store) Conflict(ctx context.Context, org tablestore.Org, id string) (StoredConflict, error) {
	if err := tablestore.CheckKey(conflictKey(id)); err != nil || id == "" {
		return StoredConflict{}, ErrNoConflict
	}
	c, etag, err := tablestore.Get[Conflict](ctx, s.t, org, conflictKey(id))
	if errors.Is(err, tablestore.ErrNotFound) {
		return StoredConflict{}, ErrNoConflict
	}
	return StoredConflict{Conflict: c, ETag: etag}, err
}

// Conflicts returns open conflicts in stakeholder id order, at most limit after the id after,
// and the id to continue after ("" at the end).
func (s *Store) Conflicts(ctx context.Context, org tablestore.Org, after string, limit int) ([]StoredConflict, string, error) {
	limit = min(max(limit, 1), tablestore.MaxPageSize)
	q := tablestore.QueryOptions{KeyPrefix: "c-", PageSize: limit}
	if after != "" {
		q.From = conflictKey(after) + "\x00"
	}
	var out []StoredConflict
	for row, err := range tablestore.Query[Conflict](ctx, s.t, org, q) {
		if err != nil {
			return nil, "", err
		}
		out = append(out, StoredConflict{Conflict: row.Value, ETag: row.ETag})
		if len(out) == limit {
			return out, row.Value.StakeholderID, nil
		}
	}
	return out, "", nil
}

// OpenConflicts returns the ids of the stakeholders with an open conflict, with when each was
// first found. Conflicts are few (each needs an admin's attention), so a sync reads them all.
func (s *Store) OpenConflicts(ctx context.Context, org tablestore.Org) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	q := tablestore.QueryOptions{KeyPrefix: "c-", Select: []string{"stakeholderId", "since"}}
	for row, err := range tablestore.Query[Conflict](ctx, s.t, org, q) {
		if err != nil {
			return nil, err
		}
		out[row.Value.StakeholderID] = row.Value.Since
	}
	return out, nil
}
