package stakeholder

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

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

// Index is an org's lookup tables, loaded whole: for tests and tools only. A sync step never
// loads it (its size is the org's); it looks up the page's users (Links, ByEmails).
type Index struct {
	ByExternal map[string]Link   // Entra object id → linked stakeholder
	ByEmail    map[string]string // normalized email → stakeholder id
}

// Link is a stakeholder linked to an Entra user.
type Link struct {
	ID     string
	Active bool
	Reason string // why it is inactive
	// Current is the stakeholder itself when the lookup read it anyway (derived ids).
	Current *Versioned
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

// Existing says what an org's directory held when a full round began, from three reads of at
// most one row each: whether any stakeholder was linked to an Entra user (synced, or linked by
// email), and whether any stakeholder had an address. A full round of an org without them has
// nothing to find by Entra id or by email except what it creates itself, so it skips those
// lookups (a repeated user meets its own earlier write as a conflict, and is merged then).
type Existing struct {
	Synced bool
	Emails bool
}

// Existing reads what the org's directory holds now (see Existing).
func (s *Store) Existing(ctx context.Context, org tablestore.Org) (Existing, error) {
	exists := func(what string, q tablestore.QueryOptions) (bool, error) {
		q.PageSize, q.Select = 1, []string{"id"}
		for _, err := range tablestore.Query[pointer](ctx, s.t, org, q) {
			if err != nil {
				return false, fmt.Errorf("look for %s: %w", what, err)
			}
			return true, nil
		}
		return false, nil
	}
	// Derived ids start "s-e" (random ids may too, hence the filter); stakeholders linked by
	// email have an Entra index row.
	derivedRows, err := exists("synced stakeholders", tablestore.QueryOptions{KeyPrefix: "s-e", Filter: "source eq " + tablestore.Quote(Entra)})
	if err != nil {
		return Existing{}, err
	}
	indexRows, err := exists("linked stakeholders", tablestore.QueryOptions{KeyPrefix: "x-"})
	if err != nil {
		return Existing{}, err
	}
	emails, err := exists("addresses", tablestore.QueryOptions{KeyPrefix: "m-"})
	if err != nil {
		return Existing{}, err
	}
	return Existing{Synced: derivedRows || indexRows, Emails: emails}, nil
}

// Synced streams the org's stakeholders synced from Entra (active only, when activeOnly), in
// id order from after (exclusive; "" from the start), reading only their link fields and
// seenRun. It is the one read of a sync run that visits the whole directory: once per full
// round (unseen stakeholders, the count of synced ones) and for a group filter's full scan,
// never per page, and streamed a page at a time.
func (s *Store) Synced(ctx context.Context, org tablestore.Org, activeOnly bool, after string) iter.Seq2[Stakeholder, error] {
	filter := "source eq " + tablestore.Quote(Entra)
	if activeOnly {
		filter += " and active eq true"
	}
	q := tablestore.QueryOptions{KeyPrefix: rowKey(""), Select: append(slices.Clone(linkFields), "seenRun"), Filter: filter}
	if after != "" {
		q.From = rowKey(after) + "\x00"
	}
	return func(yield func(Stakeholder, error) bool) {
		for row, err := range tablestore.Query[Stakeholder](ctx, s.t, org, q) {
			if !yield(row.Value, err) || err != nil {
				return
			}
		}
	}
}

// ActiveSyncedNotSeenIn streams the active stakeholders synced from Entra that full run runID
// did not mark seen (see MarkSeenOp): those whose user the run did not find — including one no
// full run ever marked (created or linked in a delta round), which has no seenRun property at
// all. The table's filter cannot say "seenRun ne X" for those (a comparison with a missing
// property matches nothing), so the seen mark is compared here. Only the link fields and
// SeenRun are read; the other fields are zero.
func (s *Store) ActiveSyncedNotSeenIn(ctx context.Context, org tablestore.Org, runID string) iter.Seq2[Stakeholder, error] {
	return func(yield func(Stakeholder, error) bool) {
		for st, err := range s.Synced(ctx, org, true, "") {
			if err == nil && st.SeenRun == runID {
				continue
			}
			if !yield(st, err) || err != nil {
				return
			}
		}
	}
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
	// A manual stakeholder matched by email can have an open conflict; it goes with it.
	ops = append(ops, ClearConflictOp(id))
	return s.Apply(ctx, org, ops)
}

// Apply runs one stakeholder's transaction from Ops. An index row that should have been there
// but is not (left over from an interrupted older version), or a conflict closed by someone else
// meanwhile, does not block the write: the transaction is retried without deleting it. A delete
// conditional on an ETag (other than ETagAny) is different: the version it names is gone, and
// the transaction fails with tablestore.ErrConflict.
func (s *Store) Apply(ctx context.Context, org tablestore.Org, ops []tablestore.Op) error {
	for {
		err := s.t.Batch(ctx, org, ops)
		var be *tablestore.BatchError
		if err == nil || !errors.As(err, &be) || !errors.Is(err, tablestore.ErrNotFound) || be.Failed < 0 {
			return explain(err)
		}
		switch op := ops[be.Failed]; {
		case op.Kind != tablestore.OpDelete || strings.HasPrefix(op.Key, "s-"):
			return explain(err)
		case op.ETag != tablestore.ETagAny:
			return fmt.Errorf("%w: row %s was deleted meanwhile", tablestore.ErrConflict, op.Key)
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

// lookupConcurrency bounds the point reads of a lookup in flight. Point reads are the one
// efficient query of Table Storage (an "or" of keys scans the partition), so lookups of a few
// hundred keys are that many point reads, a few at a time.
const lookupConcurrency = 16

// eachConcurrently runs fn for 0..n-1 with at most lookupConcurrency at once; the first error
// wins.
func eachConcurrently(n int, fn func(i int) error) error {
	var g errgroup.Group
	g.SetLimit(lookupConcurrency)
	for i := range n {
		g.Go(func() error { return fn(i) })
	}
	return g.Wait()
}

// Links finds the stakeholders linked to these Entra object ids (absent ones are not in the
// map) with point reads: the derived id first (which also returns the stakeholder itself, in
// Link.Current), then the index row of stakeholders linked by email. A delta round touches only
// what changed, never the whole directory.
func (s *Store) Links(ctx context.Context, org tablestore.Org, entraIDs []string) (map[string]Link, error) {
	return readEach(entraIDs, func(id string) (*Link, error) {
		if l, err := s.derivedLink(ctx, org, id); l != nil || err != nil {
			return l, err
		}
		return s.indexLink(ctx, org, id)
	})
}

// DerivedLinks finds the stakeholders at these Entra object ids' derived ids only, a point read
// each: Links without the index rows, for a round that has linked nobody by address (so no
// index row can name them). Ids without a derived id find nothing.
func (s *Store) DerivedLinks(ctx context.Context, org tablestore.Org, entraIDs []string) (map[string]Link, error) {
	return readEach(entraIDs, func(id string) (*Link, error) { return s.derivedLink(ctx, org, id) })
}

// derivedLink reads the stakeholder at entraID's derived id; nil when there is none, or when
// it belongs to another user.
func (s *Store) derivedLink(ctx context.Context, org tablestore.Org, entraID string) (*Link, error) {
	d := SyncedID(entraID)
	if d == "" {
		return nil, nil
	}
	st, etag, err := tablestore.Get[Stakeholder](ctx, s.t, org, rowKey(d))
	switch {
	case err == nil && st.ExternalID == entraID:
		return &Link{ID: st.ID, Active: st.Active, Reason: st.DeactivatedReason, Current: &Versioned{Stakeholder: st, ETag: etag}}, nil
	case err != nil && !errors.Is(err, tablestore.ErrNotFound):
		return nil, err
	}
	return nil, nil
}

// IndexLinks finds the stakeholders linked by email to these Entra object ids: their Entra
// index rows only, a point read each. It is Links without the derived ids, for a full round
// that meets its own creates by their derived ids anyway (see Existing).
func (s *Store) IndexLinks(ctx context.Context, org tablestore.Org, entraIDs []string) (map[string]Link, error) {
	return readEach(entraIDs, func(id string) (*Link, error) { return s.indexLink(ctx, org, id) })
}

// indexLink reads one Entra index row; nil when there is none.
func (s *Store) indexLink(ctx context.Context, org tablestore.Org, entraID string) (*Link, error) {
	p, _, err := tablestore.Get[pointer](ctx, s.t, org, externalKey(entraID))
	switch {
	case err == nil:
		return &Link{ID: p.ID, Active: p.Active, Reason: p.Reason}, nil
	case !errors.Is(err, tablestore.ErrNotFound):
		return nil, fmt.Errorf("read the Entra index row of %s: %w", entraID, err)
	}
	return nil, nil
}

// ByEmails finds stakeholder ids by (normalized) email, a point read each.
func (s *Store) ByEmails(ctx context.Context, org tablestore.Org, emails []string) (map[string]string, error) {
	var norm []string
	seen := map[string]bool{}
	for _, e := range emails {
		if e = NormalizeEmail(e); e != "" && !seen[e] {
			seen[e] = true
			norm = append(norm, e)
		}
	}
	return readEach(norm, func(email string) (*string, error) {
		p, _, err := tablestore.Get[pointer](ctx, s.t, org, emailKey(email))
		switch {
		case err == nil && p.ID != "":
			return &p.ID, nil
		case err != nil && !errors.Is(err, tablestore.ErrNotFound):
			return nil, err
		}
		return nil, nil
	})
}

// readEach reads every key with read, concurrently (see eachConcurrently), and returns what it
// found by key; read returns nil for a key that is not there. On an error, the map holds what
// the other reads found.
func readEach[K comparable, V any](keys []K, read func(key K) (*V, error)) (map[K]V, error) {
	found := make([]*V, len(keys))
	err := eachConcurrently(len(keys), func(i int) error {
		v, err := read(keys[i])
		found[i] = v
		return err
	})
	out := make(map[K]V, len(keys))
	for i, v := range found {
		if v != nil {
			out[keys[i]] = *v
		}
	}
	return out, err
}

// linkFields are the stakeholder properties a link is made of.
var linkFields = []string{"id", "externalId", "active", "deactivatedReason", "source"}

// Versioned is a stakeholder with the ETag it was read at.
type Versioned struct {
	Stakeholder Stakeholder
	ETag        tablestore.ETag
}

// GetMany reads stakeholders by id, a point read each; missing ids are not in the map.
func (s *Store) GetMany(ctx context.Context, org tablestore.Org, ids []string) (map[string]Versioned, error) {
	return readEach(ids, func(id string) (*Versioned, error) {
		st, etag, err := s.Get(ctx, org, id)
		switch {
		case err == nil:
			return &Versioned{Stakeholder: st, ETag: etag}, nil
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
		return nil, nil
	})
}
