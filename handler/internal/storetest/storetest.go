// Package storetest checks that a tablestore.Store honours the contract written in tablestore's doc
// comments. tablestore's own test runs it against Azurite; run it against any other account the same
// way (it only creates tables under the store's prefix).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

// Run runs the suite. open must return a new, empty store with its own test prefix each time it is
// called (Run calls it more than once in some subtests) and drop its tables when the test ends.
func Run(t *testing.T, open func(t *testing.T) *tablestore.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) *tablestore.Store)
	}{
		{"GetMissing", getMissing},
		{"InsertTwiceConflicts", insertTwice},
		{"RoundTripTypes", roundTrip},
		{"UpdateStaleETagConflicts", updateStale},
		{"SaveCreatesThenReplacesByETag", saveByETag},
		{"NoLostUpdates", noLostUpdates},
		{"DeleteStaleETagConflicts", deleteStale},
		{"UpsertMergeVersusReplace", upsertModes},
		{"BatchSplitsIntoTransactions", batchSplits},
		{"BatchFailureNamesTransaction", batchFailure},
		{"BatchSameKeyTwice", batchSameKey},
		{"BatchChecksBeforeSending", batchChecks},
		{"OrgIsolation", orgIsolation},
		{"SharedPartitions", sharedPartitions},
		{"PrefixIsolation", prefixIsolation},
		{"QueryPrefixAndPaging", queryPaging},
		{"QueryRangeFilterSelect", queryRange},
		{"InvalidInputRejectedBeforeSending", invalidInput},
		{"EscapedKeys", escapedKeys},
		{"TableCreatedOnceUnderConcurrency", tableCreatedOnce},
		{"DropTablesOnlyOwnPrefix", dropTables},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open)
		})
	}
}

// record exercises every type mapping of tablestore's encoder.
type record struct {
	Name   string            `json:"name"`
	Count  int64             `json:"count"`
	Small  int32             `json:"small,omitempty"`
	Ratio  float64           `json:"ratio,omitempty"`
	Active bool              `json:"active,omitempty"`
	At     time.Time         `json:"at"`
	When   *time.Time        `json:"when,omitempty"`
	Notes  string            `json:"notes,omitempty"`
	Blob   []byte            `json:"blob,omitempty"`
	Tags   []string          `json:"tags,omitempty"`
	Extra  map[string]string `json:"extra,omitempty"`
}

// named carries only a name: merging it leaves a record's other properties alone. (Merging a record
// would write all its fields without omitempty, zeros included.)
type named struct {
	Name string `json:"name"`
}

type counter struct {
	N int64 `json:"n"`
}

// ready returns a table that exists already, so request counts below exclude its creation.
func ready(t *testing.T, s *tablestore.Store, name string) *tablestore.Table {
	t.Helper()
	tbl := s.Table(name)
	_, _, err := tablestore.Get[record](t.Context(), tbl, tablestoretest.Org(t, "warmup"), "none")
	if !errors.Is(err, tablestore.ErrNotFound) {
		t.Fatalf("warm-up Get: err = %v, want ErrNotFound", err)
	}
	return tbl
}

func wantKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: err = %v, want %v", what, err, kind)
	}
}

func getMissing(t *testing.T, open func(*testing.T) *tablestore.Store) {
	tbl := open(t).Table("items")
	_, _, err := tablestore.Get[record](t.Context(), tbl, tablestoretest.Org(t, "acme"), "no-such-key")
	wantKind(t, "Get(missing)", err, tablestore.ErrNotFound)
}

func insertTwice(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl, org := t.Context(), open(t).Table("items"), tablestoretest.Org(t, "acme")
	if _, err := tbl.Insert(ctx, org, "k", record{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	_, err := tbl.Insert(ctx, org, "k", record{Name: "second"})
	wantKind(t, "second Insert", err, tablestore.ErrConflict)
	got, _, err := tablestore.Get[record](ctx, tbl, org, "k")
	if err != nil || got.Name != "first" {
		t.Fatalf("after failed Insert: Get = %+v, %v; want the first value", got, err)
	}
}

func roundTrip(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl, org := t.Context(), open(t).Table("items"), tablestoretest.Org(t, "acme")
	when := time.Date(2031, 12, 31, 23, 59, 59, 0, time.FixedZone("UTC+2", 2*3600))
	want := record{
		Name:   "Zoë 👩‍💼",
		Count:  1<<53 + 1, // not exact as a float64: shows Edm.Int64 is used
		Small:  -7,
		Ratio:  1, // integral: must stay a double
		Active: true,
		At:     time.Date(2026, 1, 2, 3, 4, 5, 123456700, time.UTC), // Table Storage keeps 100 ns
		When:   &when,
		Notes:  strings.Repeat("x", 30000),
		Blob:   []byte{0, 1, 2, 255},
		Tags:   []string{"a", "b"},
		Extra:  map[string]string{"k": "v"},
	}
	etag, err := tbl.Insert(ctx, org, "k", want)
	if err != nil {
		t.Fatal(err)
	}
	if etag == "" {
		t.Error("Insert returned an empty ETag")
	}
	got, getTag, err := tablestore.Get[record](ctx, tbl, org, "k")
	if err != nil {
		t.Fatal(err)
	}
	if getTag != etag {
		t.Errorf("Get ETag = %q, want Insert's %q", getTag, etag)
	}
	if !got.When.Equal(*want.When) || !got.At.Equal(want.At) {
		t.Errorf("times: got At %v When %v, want %v %v", got.At, got.When, want.At, want.When)
	}
	got.When, want.When = nil, nil
	got.At = want.At
	if g, w := fmt.Sprintf("%#v", got), fmt.Sprintf("%#v", want); g != w {
		t.Errorf("round trip:\n got %.400s\nwant %.400s", g, w)
	}

	// Zero values: zero time and nil pointers are omitted and come back zero.
	if _, err := tbl.Insert(ctx, org, "zero", record{}); err != nil {
		t.Fatal(err)
	}
	zero, _, err := tablestore.Get[record](ctx, tbl, org, "zero")
	if err != nil {
		t.Fatal(err)
	}
	if !zero.At.IsZero() || zero.When != nil || zero.Count != 0 || zero.Tags != nil {
		t.Errorf("zero record came back as %+v", zero)
	}

	// Rows from Query carry the key, ETag and service timestamp.
	for row, err := range tablestore.Query[record](ctx, tbl, org, tablestore.QueryOptions{KeyPrefix: "k"}) {
		if err != nil {
			t.Fatal(err)
		}
		if row.Key != "k" || row.ETag != etag || row.Timestamp.IsZero() || row.Value.Count != want.Count {
			t.Errorf("Query row = key %q etag %q ts %v count %d", row.Key, row.ETag, row.Timestamp, row.Value.Count)
		}
	}
}

func updateStale(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl, org := t.Context(), open(t).Table("items"), tablestoretest.Org(t, "acme")
	first, err := tbl.Insert(ctx, org, "k", counter{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	second, err := tbl.Update(ctx, org, "k", counter{N: 2}, first, tablestore.Replace)
	if err != nil {
		t.Fatalf("Update with current ETag: %v", err)
	}
	if second == first || second == "" {
		t.Fatalf("Update returned ETag %q, want a new one (was %q)", second, first)
	}
	_, err = tbl.Update(ctx, org, "k", counter{N: 3}, first, tablestore.Replace)
	wantKind(t, "Update with stale ETag", err, tablestore.ErrConflict)
	_, err = tbl.Update(ctx, org, "k", counter{N: 3}, first, tablestore.Merge)
	wantKind(t, "Update(Merge) with stale ETag", err, tablestore.ErrConflict)
	if got, _, _ := tablestore.Get[counter](ctx, tbl, org, "k"); got.N != 2 {
		t.Fatalf("after stale Update, N = %d, want 2", got.N)
	}
	_, err = tbl.Update(ctx, org, "k", counter{N: 4}, "", tablestore.Replace)
	wantKind(t, "Update with empty ETag", err, tablestore.ErrInvalid)
	if _, err := tbl.Update(ctx, org, "k", counter{N: 5}, tablestore.ETagAny, tablestore.Replace); err != nil {
		t.Fatalf("Update with ETagAny: %v", err)
	}
	_, err = tbl.Update(ctx, org, "missing", counter{N: 1}, tablestore.ETagAny, tablestore.Replace)
	wantKind(t, "Update of a missing entity", err, tablestore.ErrNotFound)
}

// saveByETag: Save creates without an ETag (once), then replaces only the version it was given.
func saveByETag(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl, org := t.Context(), open(t).Table("items"), tablestoretest.Org(t, "acme")
	first, err := tbl.Save(ctx, org, "k", counter{N: 1}, "")
	if err != nil || first == "" {
		t.Fatalf("Save without an ETag = %q, %v", first, err)
	}
	_, err = tbl.Save(ctx, org, "k", counter{N: 9}, "")
	wantKind(t, "Save without an ETag over an existing entity", err, tablestore.ErrConflict)
	second, err := tbl.Save(ctx, org, "k", counter{N: 2}, first)
	if err != nil || second == first {
		t.Fatalf("Save with the current ETag = %q, %v (was %q)", second, err, first)
	}
	_, err = tbl.Save(ctx, org, "k", counter{N: 9}, first)
	wantKind(t, "Save with a stale ETag", err, tablestore.ErrConflict)
	if got, tag, _ := tablestore.Get[counter](ctx, tbl, org, "k"); got.N != 2 || tag != second {
		t.Fatalf("after Save, N = %d (ETag %q), want 2 (%q)", got.N, tag, second)
	}
	_, err = tbl.Save(ctx, org, "missing", counter{N: 1}, second)
	wantKind(t, "Save with an ETag of a missing entity", err, tablestore.ErrNotFound)
}

// noLostUpdates runs read-modify-write loops that retry on ErrConflict; every increment must survive.
func noLostUpdates(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl, org := t.Context(), open(t).Table("items"), tablestoretest.Org(t, "acme")
	if _, err := tbl.Insert(ctx, org, "c", counter{}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 3, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	var conflicts sync.Map
	for w := range workers {
		wg.Go(func() {
			for range each {
				for {
					c, etag, err := tablestore.Get[counter](ctx, tbl, org, "c")
					if err != nil {
						errs <- err
						return
					}
					c.N++
					_, err = tbl.Update(ctx, org, "c", c, etag, tablestore.Replace)
					if errors.Is(err, tablestore.ErrConflict) {
						conflicts.Store(w, true)
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, _, err := tablestore.Get[counter](ctx, tbl, org, "c")
	if err != nil {
		t.Fatal(err)
	}
	if got.N != workers*each {
		t.Fatalf("counter = %d after %d increments: updates were lost", got.N, workers*each)
	}
}

func deleteStale(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl, org := t.Context(), open(t).Table("items"), tablestoretest.Org(t, "acme")
	first, err := tbl.Insert(ctx, org, "k", counter{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	second, err := tbl.Update(ctx, org, "k", counter{N: 2}, first, tablestore.Merge)
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, "Delete with stale ETag", tbl.Delete(ctx, org, "k", first), tablestore.ErrConflict)
	if _, _, err := tablestore.Get[counter](ctx, tbl, org, "k"); err != nil {
		t.Fatalf("entity gone after a stale Delete: %v", err)
	}
	wantKind(t, "Delete with empty ETag", tbl.Delete(ctx, org, "k", ""), tablestore.ErrInvalid)
	if err := tbl.Delete(ctx, org, "k", second); err != nil {
		t.Fatalf("Delete with current ETag: %v", err)
	}
	_, _, err = tablestore.Get[counter](ctx, tbl, org, "k")
	wantKind(t, "Get after Delete", err, tablestore.ErrNotFound)
	wantKind(t, "Delete of a missing entity", tbl.Delete(ctx, org, "k", tablestore.ETagAny), tablestore.ErrNotFound)
}

func upsertModes(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl, org := t.Context(), open(t).Table("items"), tablestoretest.Org(t, "acme")
	type partial struct {
		Count int64 `json:"count"`
	}
	for _, mode := range []tablestore.Mode{tablestore.Merge, tablestore.Replace} {
		key := mode.String()
		if _, err := tbl.Upsert(ctx, org, key, record{Name: "n", Count: 1, Notes: "keep?"}, mode); err != nil {
			t.Fatalf("Upsert(%v) of a new entity: %v", mode, err)
		}
		if _, err := tbl.Upsert(ctx, org, key, partial{Count: 2}, mode); err != nil {
			t.Fatalf("Upsert(%v) of an existing entity: %v", mode, err)
		}
		got, _, err := tablestore.Get[record](ctx, tbl, org, key)
		if err != nil {
			t.Fatal(err)
		}
		want := record{Count: 2}
		if mode == tablestore.Merge {
			want = record{Name: "n", Count: 2, Notes: "keep?"}
		}
		if got.Name != want.Name || got.Count != want.Count || got.Notes != want.Notes {
			t.Errorf("after Upsert(%v): %+v, want %+v", mode, got, want)
		}
	}
	_, err := tbl.Upsert(ctx, org, "k", counter{}, 0)
	wantKind(t, "Upsert without a mode", err, tablestore.ErrInvalid)
}

func count(t *testing.T, tbl *tablestore.Table, org tablestore.Org, q tablestore.QueryOptions) []string {
	t.Helper()
	var keys []string
	for row, err := range tablestore.Query[record](t.Context(), tbl, org, q) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, row.Key)
	}
	return keys
}

func key(i int) string { return fmt.Sprintf("k%04d", i) }

func batchSplits(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, s, org := t.Context(), open(t), tablestoretest.Org(t, "acme")
	tbl := ready(t, s, "items")
	ops := make([]tablestore.Op, 250)
	for i := range ops {
		ops[i] = tablestore.InsertOp(key(i), record{Count: int64(i)})
	}
	before := s.Stats().Requests
	if err := tbl.Batch(ctx, org, ops); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Requests - before; n != 3 {
		t.Errorf("250 ops took %d requests, want 3 transactions", n)
	}
	if keys := count(t, tbl, org, tablestore.QueryOptions{}); len(keys) != 250 {
		t.Fatalf("after Batch: %d rows, want 250", len(keys))
	}
	// A mixed batch on the same rows: every kind of op.
	rows := map[string]tablestore.ETag{}
	for row, err := range tablestore.Query[record](ctx, tbl, org, tablestore.QueryOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		rows[row.Key] = row.ETag
	}
	mixed := []tablestore.Op{
		tablestore.UpdateOp(key(0), named{Name: "merged"}, rows[key(0)], tablestore.Merge),
		tablestore.UpdateOp(key(1), record{Name: "replaced"}, rows[key(1)], tablestore.Replace),
		tablestore.UpsertOp(key(2), named{Name: "upsert-merged"}, tablestore.Merge),
		tablestore.UpsertOp(key(300), record{Name: "upserted"}, tablestore.Replace),
		tablestore.DeleteOp(key(3), rows[key(3)]),
	}
	if err := tbl.Batch(ctx, org, mixed); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]record{
		key(0):   {Name: "merged", Count: 0},
		key(5):   {Count: 5},
		key(1):   {Name: "replaced"},
		key(2):   {Name: "upsert-merged", Count: 2},
		key(300): {Name: "upserted"},
	} {
		got, _, err := tablestore.Get[record](ctx, tbl, org, k)
		if err != nil || got.Name != want.Name || got.Count != want.Count {
			t.Errorf("%s = %+v, %v; want %+v", k, got, err, want)
		}
	}
	_, _, err := tablestore.Get[record](ctx, tbl, org, key(3))
	wantKind(t, "Get of a row deleted by Batch", err, tablestore.ErrNotFound)
}

func batchFailure(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, s, org := t.Context(), open(t), tablestoretest.Org(t, "acme")
	tbl := ready(t, s, "items")
	if _, err := tbl.Insert(ctx, org, key(150), record{Name: "already here"}); err != nil {
		t.Fatal(err)
	}
	ops := make([]tablestore.Op, 250)
	for i := range ops {
		ops[i] = tablestore.InsertOp(key(i), record{Count: int64(i)})
	}
	before := s.Stats().Requests
	err := tbl.Batch(ctx, org, ops)
	wantKind(t, "Batch inserting an existing key", err, tablestore.ErrConflict)
	var be *tablestore.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("err = %T %v, want *BatchError", err, err)
	}
	if be.Transaction != 1 || be.Transactions != 3 || be.First != 100 || be.End != 200 || be.Failed != 150 || be.Key != key(150) {
		t.Errorf("BatchError = %+v, want transaction 1 of 3, ops 100..199, failed op 150", be)
	}
	if !strings.Contains(err.Error(), "transaction 2 of 3") || !strings.Contains(err.Error(), key(150)) {
		t.Errorf("message %q does not name the transaction and key", err)
	}
	if n := s.Stats().Requests - before; n != 2 {
		t.Errorf("Batch sent %d requests, want 2 (the third transaction is not attempted)", n)
	}
	keys := count(t, tbl, org, tablestore.QueryOptions{})
	want := []string{key(150)}
	for i := range 100 {
		want = append(want, key(i))
	}
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("after failed Batch: %d rows (%v…), want the first transaction's 100 and the pre-existing one", len(keys), keys[:min(3, len(keys))])
	}
}

func batchSameKey(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, s, org := t.Context(), open(t), tablestoretest.Org(t, "acme")
	tbl := ready(t, s, "items")
	ops := []tablestore.Op{
		tablestore.InsertOp("a", record{Name: "a1", Count: 1}),
		tablestore.InsertOp("b", record{Name: "b1"}),
		tablestore.UpdateOp("a", named{Name: "a2"}, tablestore.ETagAny, tablestore.Merge),
		tablestore.DeleteOp("b", tablestore.ETagAny),
		tablestore.InsertOp("b", record{Name: "b3"}),
	}
	before := s.Stats().Requests
	if err := tbl.Batch(ctx, org, ops); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Requests - before; n != 3 {
		t.Errorf("Batch with keys repeated twice took %d requests, want 3 transactions", n)
	}
	a, _, err := tablestore.Get[record](ctx, tbl, org, "a")
	if err != nil || a.Name != "a2" || a.Count != 1 {
		t.Errorf("a = %+v, %v; want merged a2 with count 1", a, err)
	}
	b, _, err := tablestore.Get[record](ctx, tbl, org, "b")
	if err != nil || b.Name != "b3" {
		t.Errorf("b = %+v, %v; want b3", b, err)
	}
}

func batchChecks(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, s, org := t.Context(), open(t), tablestoretest.Org(t, "acme")
	tbl := ready(t, s, "items")
	before := s.Stats().Requests
	for name, op := range map[string]tablestore.Op{
		"bad key":       tablestore.InsertOp("a/b", record{}),
		"update no tag": tablestore.UpdateOp("a", record{}, "", tablestore.Replace),
		"delete no tag": tablestore.DeleteOp("a", ""),
		"no mode":       tablestore.UpsertOp("a", record{}, 0),
		"too large":     tablestore.InsertOp("a", record{Notes: strings.Repeat("x", 40000)}),
	} {
		err := tbl.Batch(ctx, org, []tablestore.Op{tablestore.InsertOp("ok", record{}), op})
		wantKind(t, "Batch with "+name, err, tablestore.ErrInvalid)
	}
	if n := s.Stats().Requests - before; n != 0 {
		t.Errorf("invalid batches sent %d requests, want 0", n)
	}
	if err := tbl.Batch(ctx, org, nil); err != nil {
		t.Errorf("empty Batch: %v", err)
	}
}

func orgIsolation(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl := t.Context(), open(t).Table("items")
	a, b := tablestoretest.Org(t, "org-a"), tablestoretest.Org(t, "org-b")
	if _, err := tbl.Insert(ctx, a, "shared", record{Name: "A's"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Insert(ctx, a, "only-a", record{Name: "A's"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Insert(ctx, b, "shared", record{Name: "B's"}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := tablestore.Get[record](ctx, tbl, b, "shared"); err != nil || got.Name != "B's" {
		t.Errorf("org B Get(shared) = %+v, %v; want B's own row", got, err)
	}
	_, _, err := tablestore.Get[record](ctx, tbl, b, "only-a")
	wantKind(t, "org B Get of org A's key", err, tablestore.ErrNotFound)
	if keys := count(t, tbl, b, tablestore.QueryOptions{}); !slices.Equal(keys, []string{"shared"}) {
		t.Errorf("org B Query = %v, want only [shared]", keys)
	}
	// A filter cannot widen the query beyond the org.
	keys := count(t, tbl, b, tablestore.QueryOptions{Filter: "PartitionKey eq 'org-a' or RowKey eq 'only-a'"})
	if len(keys) != 0 {
		t.Errorf("org B Query with a filter naming org A = %v, want none", keys)
	}
	for _, err := range tablestore.Query[record](ctx, tbl, b, tablestore.QueryOptions{Filter: "true) or (true"}) {
		wantKind(t, "Query with a filter escaping its parentheses", err, tablestore.ErrInvalid)
	}
	err = tbl.Batch(ctx, b, []tablestore.Op{tablestore.UpdateOp("only-a", record{Name: "B was here"}, tablestore.ETagAny, tablestore.Merge)})
	wantKind(t, "org B Batch update of org A's key", err, tablestore.ErrNotFound)
	wantKind(t, "org B Delete of org A's key", tbl.Delete(ctx, b, "only-a", tablestore.ETagAny), tablestore.ErrNotFound)
	if got, _, err := tablestore.Get[record](ctx, tbl, a, "only-a"); err != nil || got.Name != "A's" {
		t.Errorf("org A's row = %+v, %v after org B's attempts; want it untouched", got, err)
	}
}

// sharedPartitions: a partition of another keyspace (a tenant's) takes every operation an org's
// does, is validated like one, and is keyed by its id alone.
func sharedPartitions(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl := t.Context(), open(t).Table("bindings")
	tenant, err := tablestore.NewShared("tenant", "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b")
	if err != nil {
		t.Fatal(err)
	}
	etag, err := tbl.Insert(ctx, tenant, "binding", record{Name: "org-a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Update(ctx, tenant, "binding", record{Name: "org-b"}, etag, tablestore.Replace); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Batch(ctx, tenant, []tablestore.Op{tablestore.InsertOp("shared", record{Name: "allowed"})}); err != nil {
		t.Fatal(err)
	}
	if keys := count(t, tbl, tablestoretest.Org(t, "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b"), tablestore.QueryOptions{}); !slices.Equal(keys, []string{"binding", "shared"}) {
		t.Errorf("the partition's rows = %v, want [binding shared] (the PartitionKey is the id itself)", keys)
	}
	if got, _, err := tablestore.Get[record](ctx, tbl, tenant, "binding"); err != nil || got.Name != "org-b" {
		t.Errorf("Get = %+v, %v", got, err)
	}
	if err := tbl.Delete(ctx, tenant, "binding", tablestore.ETagAny); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "a/b", "a#b", "a'b"} {
		_, err := tablestore.NewShared("tenant", id)
		wantKind(t, fmt.Sprintf("NewShared(%q)", id), err, tablestore.ErrInvalid)
	}
	if _, _, err := tablestore.Get[record](ctx, tbl, tablestore.Shared{}, "binding"); !errors.Is(err, tablestore.ErrInvalid) {
		t.Errorf("zero Shared: %v, want ErrInvalid", err)
	}
}

func prefixIsolation(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, org := t.Context(), tablestoretest.Org(t, "acme")
	s1, s2 := open(t), open(t)
	if s1.Prefix() == s2.Prefix() {
		t.Fatalf("open returned two stores with prefix %q", s1.Prefix())
	}
	t1, t2 := s1.Table("items"), s2.Table("items")
	if t1.Name() == t2.Name() {
		t.Fatalf("two prefixes, one table name %q", t1.Name())
	}
	if _, err := t1.Insert(ctx, org, "k", record{Name: "one"}); err != nil {
		t.Fatal(err)
	}
	_, _, err := tablestore.Get[record](ctx, t2, org, "k")
	wantKind(t, "Get through the other prefix", err, tablestore.ErrNotFound)
	if _, err := t2.Insert(ctx, org, "k", record{Name: "two"}); err != nil {
		t.Fatalf("Insert of the same key under another prefix: %v", err)
	}
}

func queryPaging(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, s, org := t.Context(), open(t), tablestoretest.Org(t, "acme")
	tbl := ready(t, s, "items")
	const n = 1100
	var ops []tablestore.Op
	for i := range n {
		ops = append(ops, tablestore.InsertOp("u|"+key(i), record{Count: int64(i)}))
	}
	for i := range 30 {
		ops = append(ops, tablestore.InsertOp("g|"+key(i), record{}), tablestore.InsertOp("v|"+key(i), record{}))
	}
	if err := tbl.Batch(ctx, org, ops); err != nil {
		t.Fatal(err)
	}
	before := s.Stats().Requests
	var keys []string
	for row, err := range tablestore.Query[record](ctx, tbl, org, tablestore.QueryOptions{KeyPrefix: "u|"}) {
		if err != nil {
			t.Fatal(err)
		}
		if row.Value.Count != int64(len(keys)) {
			t.Fatalf("row %s has count %d, want %d (key order)", row.Key, row.Value.Count, len(keys))
		}
		keys = append(keys, row.Key)
	}
	if len(keys) != n {
		t.Fatalf("Query(prefix u|) = %d rows, want %d", len(keys), n)
	}
	if pages := s.Stats().Requests - before; pages != 2 {
		t.Errorf("%d rows took %d requests, want 2 pages of up to 1000", n, pages)
	}
	before = s.Stats().Requests
	if got := count(t, tbl, org, tablestore.QueryOptions{KeyPrefix: "g|", PageSize: 7}); len(got) != 30 {
		t.Errorf("Query(prefix g|, page 7) = %d rows, want 30", len(got))
	}
	if pages := s.Stats().Requests - before; pages < 5 || pages > 6 {
		t.Errorf("30 rows at 7 a page took %d requests, want 5 (or 6 with an empty last page)", pages)
	}
	// Breaking out of the loop stops fetching.
	before = s.Stats().Requests
	for range tablestore.Query[record](ctx, tbl, org, tablestore.QueryOptions{PageSize: 10}) {
		break
	}
	if pages := s.Stats().Requests - before; pages != 1 {
		t.Errorf("break after the first row: %d requests, want 1", pages)
	}
	for _, err := range tablestore.Query[record](ctx, tbl, org, tablestore.QueryOptions{PageSize: 1001}) {
		wantKind(t, "Query with page size 1001", err, tablestore.ErrInvalid)
	}
}

func queryRange(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl, org := t.Context(), open(t).Table("items"), tablestoretest.Org(t, "acme")
	var ops []tablestore.Op
	for i := range 10 {
		ops = append(ops, tablestore.InsertOp(key(i), record{Name: fmt.Sprint("n", i), Count: int64(i), Active: i%2 == 0, Notes: "long"}))
	}
	if err := tbl.Batch(ctx, org, ops); err != nil {
		t.Fatal(err)
	}
	if got := count(t, tbl, org, tablestore.QueryOptions{From: key(3), To: key(6)}); !slices.Equal(got, []string{key(3), key(4), key(5)}) {
		t.Errorf("From k0003 To k0006 = %v", got)
	}
	got := count(t, tbl, org, tablestore.QueryOptions{Filter: "active eq true and count ge 4L"})
	if !slices.Equal(got, []string{key(4), key(6), key(8)}) {
		t.Errorf("Filter active and count >= 4 = %v", got)
	}
	got = count(t, tbl, org, tablestore.QueryOptions{Filter: "name eq " + tablestore.Quote("n7")})
	if !slices.Equal(got, []string{key(7)}) {
		t.Errorf("Filter name eq 'n7' = %v", got)
	}
	for row, err := range tablestore.Query[record](ctx, tbl, org, tablestore.QueryOptions{KeyPrefix: key(2), Select: []string{"count"}}) {
		if err != nil {
			t.Fatal(err)
		}
		if row.Key != key(2) || row.Value.Count != 2 || row.Value.Name != "" || row.Value.Notes != "" || row.ETag == "" {
			t.Errorf("Select count: row %+v", row)
		}
	}
}

func invalidInput(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, s := t.Context(), open(t)
	tbl := ready(t, s, "items")
	for _, id := range []string{"", "a/b", `a\b`, "a#b", "a?b", "a'b", "a\tb", "a\x7fb", "a\u0085b", strings.Repeat("o", 256), "\xff"} {
		_, err := tablestore.NewOrg(id)
		wantKind(t, fmt.Sprintf("NewOrg(%.20q)", id), err, tablestore.ErrInvalid)
	}
	if _, err := tablestore.NewOrg(strings.Repeat("o", 255)); err != nil {
		t.Errorf("NewOrg(255 bytes): %v", err)
	}
	org := tablestoretest.Org(t, "acme")
	before := s.Stats().Requests
	_, _, err := tablestore.Get[record](ctx, tbl, tablestore.Org{}, "k")
	wantKind(t, "Get with the zero Org", err, tablestore.ErrInvalid)
	for _, k := range []string{"", "a/b", "a#b", "a?b", `a\b`, "a'b", "a\nb", strings.Repeat("k", 1025)} {
		_, _, err := tablestore.Get[record](ctx, tbl, org, k)
		wantKind(t, fmt.Sprintf("Get(key %.20q)", k), err, tablestore.ErrInvalid)
		_, err = tbl.Insert(ctx, org, k, record{})
		wantKind(t, fmt.Sprintf("Insert(key %.20q)", k), err, tablestore.ErrInvalid)
	}
	tooMany := map[string]int{}
	for i := range tablestore.MaxProperties + 1 {
		tooMany[fmt.Sprint("p", i)] = i
	}
	for name, v := range map[string]any{
		"string over 64 KiB":         record{Notes: strings.Repeat("x", 32*1024+1)},
		"non-BMP string over 64 KiB": record{Notes: strings.Repeat("😀", 16*1024+1)},
		"binary over 64 KiB":         record{Blob: make([]byte, 64*1024+1)},
		"too many properties":        tooMany,
		"entity over 1 MiB":          bigEntity(),
		"reserved property name":     map[string]string{"RowKey": "x"},
		"bad property name":          map[string]string{"a-b": "x"},
		"not an object":              []int{1},
		"uint64 over MaxInt64":       map[string]uint64{"u": 1 << 63},
		"time before 1601":           record{At: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		_, err := tbl.Insert(ctx, org, "k", v)
		wantKind(t, "Insert of "+name, err, tablestore.ErrInvalid)
	}
	if n := s.Stats().Requests - before; n != 0 {
		t.Errorf("invalid input sent %d requests, want 0 (checked before sending)", n)
	}
	if _, err := tbl.Insert(ctx, org, "max", record{Notes: strings.Repeat("x", 32*1024)}); err != nil {
		t.Errorf("Insert of a 32 Ki-character string (the limit): %v", err)
	}
}

func bigEntity() map[string]string {
	m := map[string]string{}
	for i := range 20 {
		m[fmt.Sprint("p", i)] = strings.Repeat("x", 30000)
	}
	return m
}

func escapedKeys(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, tbl, org := t.Context(), open(t).Table("items"), tablestoretest.Org(t, "acme")
	ids := []string{"o'brien+tag@example.com", "a/b#c?d\\e", "AAMkAGI2-THhE=", "Zoë 👩‍💼", "100%~", "tab\there"}
	var ops []tablestore.Op
	for _, id := range ids {
		k := "email|" + tablestore.KeyEscape(id)
		if err := tablestore.CheckKey(k); err != nil {
			t.Fatalf("KeyEscape(%q) = %q is not a valid key: %v", id, k, err)
		}
		ops = append(ops, tablestore.InsertOp(k, record{Name: id}))
	}
	if err := tbl.Batch(ctx, org, ops); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		got, etag, err := tablestore.Get[record](ctx, tbl, org, "email|"+tablestore.KeyEscape(id))
		if err != nil || got.Name != id {
			t.Errorf("Get(escaped %q) = %q, %v", id, got.Name, err)
			continue
		}
		if err := tbl.Delete(ctx, org, "email|"+tablestore.KeyEscape(id), etag); err != nil {
			t.Errorf("Delete(escaped %q): %v", id, err)
		}
	}
	back := map[string]bool{}
	for _, id := range ids {
		u, err := tablestore.KeyUnescape(tablestore.KeyEscape(id))
		if err != nil || u != id {
			t.Errorf("KeyUnescape(KeyEscape(%q)) = %q, %v", id, u, err)
		}
		back[u] = true
	}
	if len(back) != len(ids) {
		t.Errorf("KeyEscape is not injective on %v", slices.Collect(maps.Keys(back)))
	}
}

func tableCreatedOnce(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, s, org := t.Context(), open(t), tablestoretest.Org(t, "acme")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// Each goroutine asks for the table itself: Store.Table hands out one shared *Table.
			_, errs[i] = s.Table("fresh").Insert(ctx, org, key(i), record{})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Requests; got != n+1 {
		t.Errorf("%d concurrent first inserts took %d requests, want %d (one table creation)", n, got, n+1)
	}
	if keys := count(t, s.Table("fresh"), org, tablestore.QueryOptions{}); len(keys) != n {
		t.Errorf("%d rows, want %d", len(keys), n)
	}
}

func dropTables(t *testing.T, open func(*testing.T) *tablestore.Store) {
	ctx, org := context.Background(), tablestoretest.Org(t, "acme")
	s1, s2 := open(t), open(t)
	for _, s := range []*tablestore.Store{s1, s2} {
		for _, name := range []string{"one", "two"} {
			if _, err := s.Table(name).Insert(ctx, org, "k", record{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s1.DropTables(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"one", "two"} {
		if _, _, err := tablestore.Get[record](ctx, s2.Table(name), org, "k"); err != nil {
			t.Errorf("other store's %s after DropTables: %v", name, err)
		}
	}
	// The dropped store recreates its tables on next use. Azure may answer TableBeingDeleted for a
	// while after a delete (ErrUnavailable); Azurite deletes at once.
	_, _, err := tablestore.Get[record](ctx, s1.Table("one"), org, "k")
	wantKind(t, "Get after DropTables", err, tablestore.ErrNotFound)
}
