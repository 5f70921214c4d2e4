package stakeholder

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Table is the stakeholders table (stakeholders and their index rows).
const Table = "stakeholders"

// Store reads and writes the directory.
type Store struct{ t *tablestore.Table }

// NewStore returns a Store over s.
func NewStore(s *tablestore.Store) *Store { return &Store{t: s.Table(Table)} }

// Get returns a stakeholder and its ETag.
func (s *Store) Get(ctx context.Context, org tablestore.Org, id string) (Stakeholder, tablestore.ETag, error) {
	if err := tablestore.CheckKey(rowKey(id)); err != nil || id == "" {
		return Stakeholder{}, "", ErrNotFound
	}
	st, etag, err := tablestore.Get[Stakeholder](ctx, s.t, org, rowKey(id))
	if errors.Is(err, tablestore.ErrNotFound) {
		return Stakeholder{}, "", ErrNotFound
	}
	return st, etag, err
}

// Lookup finds a stakeholder id by Entra object id (first) or email; "" when neither is known.
func (s *Store) Lookup(ctx context.Context, org tablestore.Org, entraID, email string) (string, error) {
	if entraID != "" {
		links, err := s.Links(ctx, org, []string{entraID})
		if err != nil {
			return "", err
		}
		if l, ok := links[entraID]; ok {
			return l.ID, nil
		}
	}
	if NormalizeEmail(email) != "" {
		p, _, err := tablestore.Get[pointer](ctx, s.t, org, emailKey(email))
		if err == nil {
			return p.ID, nil
		}
		if !errors.Is(err, tablestore.ErrNotFound) {
			return "", err
		}
	}
	return "", nil
}

// Index is an org's lookup tables, loaded at once for a sync step.
type Index struct {
	ByExternal map[string]Link   // Entra object id → linked stakeholder
	ByEmail    map[string]string // normalized email → stakeholder id
}

// Link is a stakeholder linked to an Entra user.
type Link struct {
	ID     string
	Active bool
	Reason string // why it is inactive
}

// LoadIndex reads every index row of org (two prefix queries of small rows).
func (s *Store) LoadIndex(ctx context.Context, org tablestore.Org) (Index, error) {
	ix := Index{ByExternal: map[string]Link{}, ByEmail: map[string]string{}}
	// Stakeholders created from Entra are found by their derived ids: read just the link fields.
	q := tablestore.QueryOptions{KeyPrefix: "s-e", Filter: "source eq " + tablestore.Quote(Entra), Select: linkFields}
	for row, err := range tablestore.Query[Stakeholder](ctx, s.t, org, q) {
		if err != nil {
			return Index{}, err
		}
		if st := row.Value; derived(&st) {
			ix.ByExternal[st.ExternalID] = Link{ID: st.ID, Active: st.Active, Reason: st.DeactivatedReason}
		}
	}
	for _, prefix := range []string{"x-", "m-"} {
		for row, err := range tablestore.Query[pointer](ctx, s.t, org, tablestore.QueryOptions{KeyPrefix: prefix, Select: []string{"id", "active", "reason"}}) {
			if err != nil {
				return Index{}, err
			}
			key, err := tablestore.KeyUnescape(strings.TrimPrefix(row.Key, prefix))
			if err != nil {
				return Index{}, fmt.Errorf("index row %q: %w", row.Key, err)
			}
			if prefix == "x-" {
				ix.ByExternal[key] = Link{ID: row.Value.ID, Active: row.Value.Active, Reason: row.Value.Reason}
			} else {
				ix.ByEmail[key] = row.Value.ID
			}
		}
	}
	return ix, nil
}

// ListOptions select a page of the directory.
type ListOptions struct {
	After  string // the last id of the previous page
	Limit  int    // 1..1000
	Source string // "", Manual or Entra
	Active *bool
}

// List returns stakeholders in id order, and the id to continue after ("" at the end).
func (s *Store) List(ctx context.Context, org tablestore.Org, o ListOptions) ([]Stakeholder, string, error) {
	q := tablestore.QueryOptions{KeyPrefix: "s-", PageSize: min(max(o.Limit, 1), tablestore.MaxPageSize)}
	if o.After != "" {
		q.From = rowKey(o.After) + "\x00"
	}
	var filters []string
	if o.Source != "" {
		filters = append(filters, "source eq "+tablestore.Quote(o.Source))
	}
	if o.Active != nil {
		filters = append(filters, fmt.Sprintf("active eq %t", *o.Active))
	}
	q.Filter = strings.Join(filters, " and ")
	var out []Stakeholder
	for row, err := range tablestore.Query[Stakeholder](ctx, s.t, org, q) {
		if err != nil {
			return nil, "", err
		}
		out = append(out, row.Value)
		if len(out) == o.Limit {
			return out, row.Value.ID, nil
		}
	}
	return out, "", nil
}

// Ops returns the transaction that writes st (new when etag is ""), keeping its index rows in
// step with the previous version prev (nil when new). Callers put it in one Batch so the
// stakeholder and its index rows change together.
func Ops(st Stakeholder, prev *Stakeholder, etag tablestore.ETag) []tablestore.Op {
	var ops []tablestore.Op
	if prev == nil {
		ops = append(ops, tablestore.InsertOp(rowKey(st.ID), st))
	} else {
		ops = append(ops, tablestore.UpdateOp(rowKey(st.ID), st, etag, tablestore.Replace))
	}
	oldEmail, oldExt := "", ""
	if prev != nil {
		oldEmail, oldExt = NormalizeEmail(prev.Email), prev.ExternalID
	}
	if e := NormalizeEmail(st.Email); e != oldEmail {
		if oldEmail != "" {
			ops = append(ops, tablestore.DeleteOp(emailKey(oldEmail), tablestore.ETagAny))
		}
		if e != "" {
			// Insert, not upsert: an address another stakeholder holds must fail the transaction.
			ops = append(ops, tablestore.InsertOp(emailKey(e), pointer{ID: st.ID}))
		}
	}
	if oldExt != "" && st.ExternalID != oldExt && !derived(prev) {
		ops = append(ops, tablestore.DeleteOp(externalKey(oldExt), tablestore.ETagAny))
	}
	if st.ExternalID != "" && !derived(&st) && (st.ExternalID != oldExt || prev.Active != st.Active || prev.DeactivatedReason != st.DeactivatedReason) {
		ops = append(ops, tablestore.UpsertOp(externalKey(st.ExternalID), pointer{ID: st.ID, Active: st.Active, Reason: st.DeactivatedReason}, tablestore.Replace))
	}
	return ops
}

// MarkSeenOp records that full run runID found the stakeholder's user in Entra, touching
// nothing else (a merge of one property).
func MarkSeenOp(id, runID string) tablestore.Op {
	return tablestore.UpdateOp(rowKey(id), seenMark{SeenRun: runID}, tablestore.ETagAny, tablestore.Merge)
}

type seenMark struct {
	SeenRun string `json:"seenRun"`
}

// Save writes st atomically with its index rows: create when etag is "", else replace the
// version prev read with etag. A taken email is ErrEmailInUse; a stale ETag is tablestore.ErrConflict.
func (s *Store) Save(ctx context.Context, org tablestore.Org, st Stakeholder, prev *Stakeholder, etag tablestore.ETag) (tablestore.ETag, error) {
	if err := s.Apply(ctx, org, Ops(st, prev, etag)); err != nil {
		return "", err
	}
	_, newETag, err := s.Get(ctx, org, st.ID)
	return newETag, err
}

// Delete removes a manual stakeholder and its index rows; synced ones are ErrSynced.
func (s *Store) Delete(ctx context.Context, org tablestore.Org, id string, etag tablestore.ETag) error {
	st, current, err := s.Get(ctx, org, id)
	if err != nil {
		return err
	}
	if st.Source == Entra {
		return ErrSynced
	}
	if etag == "" {
		etag = current
	}
	ops := []tablestore.Op{tablestore.DeleteOp(rowKey(id), etag)}
	if e := NormalizeEmail(st.Email); e != "" {
		ops = append(ops, tablestore.DeleteOp(emailKey(e), tablestore.ETagAny))
	}
	return s.Apply(ctx, org, ops)
}

// Apply runs one stakeholder's transaction from Ops. An index row that should have been there
// but is not (left over from an interrupted older version) does not block the write: the
// transaction is retried without deleting it.
func (s *Store) Apply(ctx context.Context, org tablestore.Org, ops []tablestore.Op) error {
	for {
		err := s.t.Batch(ctx, org, ops)
		var be *tablestore.BatchError
		if err == nil || !errors.As(err, &be) || !errors.Is(err, tablestore.ErrNotFound) || be.Failed < 0 ||
			ops[be.Failed].Kind != tablestore.OpDelete || strings.HasPrefix(ops[be.Failed].Key, "s-") {
			return explain(err)
		}
		ops = append(ops[:be.Failed:be.Failed], ops[be.Failed+1:]...)
	}
}

// explain turns a failed index insert into ErrEmailInUse.
func explain(err error) error {
	if err == nil {
		return nil
	}
	var be *tablestore.BatchError
	if errors.As(err, &be) && errors.Is(err, tablestore.ErrConflict) && strings.HasPrefix(be.Key, "m-") {
		return fmt.Errorf("%w: %w", ErrEmailInUse, err)
	}
	return err
}

// lookupChunk is how many keys one lookup query names: Table Storage evaluates up to 15
// discrete comparisons per filter efficiently.
const lookupChunk = 15

// Links finds the stakeholders linked to these Entra object ids (absent ones are not in the
// map), a query per 15 ids for derived ids and one for index rows: a delta round touches only
// what changed, not the whole directory.
func (s *Store) Links(ctx context.Context, org tablestore.Org, entraIDs []string) (map[string]Link, error) {
	out := make(map[string]Link, len(entraIDs))
	var keys []string
	for _, id := range entraIDs {
		if d := SyncedID(id); d != "" {
			keys = append(keys, rowKey(d))
		}
	}
	for start := 0; start < len(keys); start += lookupChunk {
		chunk := keys[start:min(start+lookupChunk, len(keys))]
		conds := make([]string, len(chunk))
		for i, k := range chunk {
			conds[i] = "RowKey eq " + tablestore.Quote(k)
		}
		q := tablestore.QueryOptions{KeyPrefix: "s-e", Filter: strings.Join(conds, " or "), Select: linkFields}
		for row, err := range tablestore.Query[Stakeholder](ctx, s.t, org, q) {
			if err != nil {
				return nil, err
			}
			if st := row.Value; derived(&st) {
				out[st.ExternalID] = Link{ID: st.ID, Active: st.Active, Reason: st.DeactivatedReason}
			}
		}
	}
	err := s.lookup(ctx, org, "x-", entraIDs, func(key string, p pointer) {
		out[key] = Link{ID: p.ID, Active: p.Active, Reason: p.Reason}
	})
	return out, err
}

// linkFields are the stakeholder properties a link is made of.
var linkFields = []string{"id", "externalId", "active", "deactivatedReason", "source"}

// ByEmails finds stakeholder ids by (normalized) email, a query per 15 addresses.
func (s *Store) ByEmails(ctx context.Context, org tablestore.Org, emails []string) (map[string]string, error) {
	norm := make([]string, 0, len(emails))
	for _, e := range emails {
		if e = NormalizeEmail(e); e != "" {
			norm = append(norm, e)
		}
	}
	out := make(map[string]string, len(norm))
	err := s.lookup(ctx, org, "m-", norm, func(key string, p pointer) { out[key] = p.ID })
	return out, err
}

func (s *Store) lookup(ctx context.Context, org tablestore.Org, prefix string, keys []string, found func(string, pointer)) error {
	for start := 0; start < len(keys); start += lookupChunk {
		chunk := keys[start:min(start+lookupChunk, len(keys))]
		conds := make([]string, len(chunk))
		for i, k := range chunk {
			conds[i] = "RowKey eq " + tablestore.Quote(prefix+tablestore.KeyEscape(k))
		}
		q := tablestore.QueryOptions{KeyPrefix: prefix, Filter: strings.Join(conds, " or "), Select: []string{"id", "active", "reason"}}
		for row, err := range tablestore.Query[pointer](ctx, s.t, org, q) {
			if err != nil {
				return err
			}
			key, err := tablestore.KeyUnescape(strings.TrimPrefix(row.Key, prefix))
			if err != nil {
				return fmt.Errorf("index row %q: %w", row.Key, err)
			}
			found(key, row.Value)
		}
	}
	return nil
}

// Versioned is a stakeholder with the ETag it was read at.
type Versioned struct {
	Stakeholder Stakeholder
	ETag        tablestore.ETag
}

// GetMany reads stakeholders by id, a query per 15 ids; missing ids are not in the map.
func (s *Store) GetMany(ctx context.Context, org tablestore.Org, ids []string) (map[string]Versioned, error) {
	out := make(map[string]Versioned, len(ids))
	for start := 0; start < len(ids); start += lookupChunk {
		chunk := ids[start:min(start+lookupChunk, len(ids))]
		conds := make([]string, 0, len(chunk))
		for _, id := range chunk {
			if tablestore.CheckKey(rowKey(id)) == nil && id != "" {
				conds = append(conds, "RowKey eq "+tablestore.Quote(rowKey(id)))
			}
		}
		if len(conds) == 0 {
			continue
		}
		q := tablestore.QueryOptions{KeyPrefix: "s-", Filter: strings.Join(conds, " or ")}
		for row, err := range tablestore.Query[Stakeholder](ctx, s.t, org, q) {
			if err != nil {
				return nil, err
			}
			out[row.Value.ID] = Versioned{Stakeholder: row.Value, ETag: row.ETag}
		}
	}
	return out, nil
}
