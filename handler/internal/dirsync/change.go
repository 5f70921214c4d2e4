package dirsync

import (
	"context"
	"fmt"
	"strings"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Actions of a change record.
const (
	ActCreated     = "created"
	ActUpdated     = "updated"
	ActConflict    = "conflict"    // resolved by the strategy; Fields show both sides
	ActSkipped     = "skipped"     // skip conflicts: left untouched
	ActDeactivated = "deactivated" // or, in a dry or held run, would be
	ActReactivated = "reactivated"
	ActInvalid     = "invalid"
	ActError       = "error"
)

// Change is one per-record entry of a run's change log (table "syncchanges"), with old and new
// values, like a provisioning log.
type Change struct {
	Seq           int           `json:"seq"`
	Action        string        `json:"action"`
	StakeholderID string        `json:"stakeholderId,omitempty"`
	ExternalID    string        `json:"externalId,omitempty"`
	Name          string        `json:"name,omitempty"`
	Reason        string        `json:"reason,omitempty"`
	Fields        []FieldChange `json:"fields,omitempty"`
}

// FieldChange is one field's change. A conflict also records the three values of the merge,
// whichever side won: Base (the value last synced from Entra; nil when there was none, on a
// first link), Entra's and Leap Change's. On a conflict an absent entra or leap is "" (the two
// always differ, so at most one of them is empty).
type FieldChange struct {
	Field    string  `json:"field"`
	Old      string  `json:"old"`
	New      string  `json:"new"`
	Base     *string `json:"base,omitempty"`
	Entra    string  `json:"entra,omitempty"`
	Leap     string  `json:"leap,omitempty"`
	Conflict bool    `json:"conflict,omitempty"`
}

// ChangesTable is the change log table.
const ChangesTable = "syncchanges"

func changeKey(runID string, seq int) string { return fmt.Sprintf("%s.%08d", runID, seq) }

// logChanges appends changes to the run's log and advances its sequence.
// mark, when set, adds the step's marker as the last row, so it lands in the last transaction.
func (e *Engine) logChanges(ctx context.Context, org tablestore.Org, run *Run, changes []Change, mark func() tablestore.Op) error {
	if len(changes) == 0 && mark == nil {
		return nil
	}
	ops := make([]tablestore.Op, 0, len(changes)+1)
	for _, c := range changes {
		run.Changes++
		c.Seq = run.Changes
		// Upsert: a step retried after a crash rewrites the same sequence numbers.
		ops = append(ops, tablestore.UpsertOp(changeKey(run.ID, c.Seq), c, tablestore.Replace))
	}
	if mark != nil {
		ops = append(ops, mark())
	}
	return e.changes.Batch(ctx, org, ops)
}

// Changes returns a run's change log in order, at most limit entries after sequence after.
func (e *Engine) Changes(ctx context.Context, org tablestore.Org, runID string, after, limit int) ([]Change, error) {
	if !validRunID(runID) {
		return nil, ErrRunNotFound
	}
	q := tablestore.QueryOptions{KeyPrefix: runID + ".", PageSize: min(max(limit, 1), tablestore.MaxPageSize)}
	if after > 0 {
		q.From = changeKey(runID, after+1)
	}
	var out []Change
	for row, err := range tablestore.Query[Change](ctx, e.changes, org, q) {
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(row.Key, runID+".") {
			break
		}
		out = append(out, row.Value)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}
