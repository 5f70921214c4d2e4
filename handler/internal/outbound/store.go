package outbound

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// ErrBatchNotFound: no batch with this id in the org.
var ErrBatchNotFound = fmt.Errorf("outbound: no such batch: %w", errkind.NotFound)

// Store keeps batches, their idempotency keys and their delivery rows, all in the org's
// partition, and the index of batches still open (in a shared partition) for the reconciler.
type Store struct {
	batches, deliveries, open *tablestore.Table
}

// NewStore returns the store over s.
func NewStore(s *tablestore.Store) *Store {
	return &Store{batches: s.Table(BatchesTable), deliveries: s.Table(DeliveriesTable), open: s.Table(openTable)}
}

// openTable indexes open batches across orgs: one row per batch, "<org>|<batch>", in one shared
// partition; a batch leaves it once settled.
const openTable = "openbatches"

var openPartition = func() tablestore.Shared {
	p, err := tablestore.NewShared("outbound", "open")
	if err != nil {
		panic(err)
	}
	return p
}()

type openRow struct {
	Org   string `json:"org"`
	Batch string `json:"batch"`
}

// idempotencyKey is the row key remembering which batch a client's key created. The key is
// hashed: it is the client's text, of any characters and length up to the API's limit.
func idempotencyKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "k-" + hex.EncodeToString(sum[:20])
}

type keyRow struct {
	Batch string `json:"batch"`
}

// create writes b and its idempotency key in one transaction. When the key was used before, it
// returns that batch and created=false instead.
func (s *Store) create(ctx context.Context, org tablestore.Org, b Batch) (Batch, bool, error) {
	err := s.batches.Batch(ctx, org, []tablestore.Op{
		tablestore.InsertOp(idempotencyKey(b.IdempotencyKey), keyRow{Batch: b.ID}),
		tablestore.InsertOp(b.ID, b),
	})
	if err == nil {
		return b, true, nil
	}
	if !errors.Is(err, errkind.Conflict) {
		return Batch{}, false, err
	}
	k, _, err := tablestore.Get[keyRow](ctx, s.batches, org, idempotencyKey(b.IdempotencyKey))
	if err != nil {
		return Batch{}, false, err
	}
	prev, _, err := s.Batch(ctx, org, k.Batch)
	return prev, false, err
}

// Batch reads one batch.
func (s *Store) Batch(ctx context.Context, org tablestore.Org, id string) (Batch, tablestore.ETag, error) {
	if !ValidBatchID(id) {
		return Batch{}, "", ErrBatchNotFound
	}
	b, etag, err := tablestore.Get[Batch](ctx, s.batches, org, id)
	if errors.Is(err, errkind.NotFound) {
		return Batch{}, "", ErrBatchNotFound
	}
	return b, etag, err
}

func (s *Store) putBatch(ctx context.Context, org tablestore.Org, b Batch, etag tablestore.ETag) (tablestore.ETag, error) {
	return s.batches.Update(ctx, org, b.ID, b, etag, tablestore.Replace)
}

// Batches lists an org's batches newest first, after the id after ("" from the newest), with
// the id to continue after ("" at the end). The content fields are left out.
func (s *Store) Batches(ctx context.Context, org tablestore.Org, after string, limit int) ([]Batch, string, error) {
	q := tablestore.QueryOptions{KeyPrefix: "b", PageSize: min(limit, tablestore.MaxPageSize),
		Select: []string{"id", "kind", "campaignId", "channels", "subject", "scheduleAt", "createdAt", "state", "recipients", "rows", "cancelledAt", "settledAt", "updatedAt", "idempotencyKey"}}
	if after != "" {
		q.From = after + "\x00"
	}
	var out []Batch
	for row, err := range tablestore.Query[Batch](ctx, s.batches, org, q) {
		if err != nil {
			return nil, "", err
		}
		out = append(out, row.Value)
		if len(out) == limit {
			return out, row.Value.ID, nil
		}
	}
	return out, "", nil
}

// writeConcurrency is how many ≤100-row transactions of one batch are in flight at once.
const writeConcurrency = 4

// insertDeliveries inserts the rows that do not exist yet: a transaction that meets an existing
// row (a retried accept) is redone row by row, skipping the rows already there, which may have
// been queued or sent since.
func (s *Store) insertDeliveries(ctx context.Context, org tablestore.Org, rows []Delivery) error {
	ops := make([]tablestore.Op, len(rows))
	for i, d := range rows {
		ops[i] = tablestore.InsertOp(d.Key(), d)
	}
	return inChunks(len(ops), func(lo, hi int) error {
		err := s.deliveries.Batch(ctx, org, ops[lo:hi])
		if !errors.Is(err, errkind.Conflict) {
			return err
		}
		for _, op := range ops[lo:hi] {
			if err := s.deliveries.Batch(ctx, org, []tablestore.Op{op}); err != nil && !errors.Is(err, errkind.Conflict) {
				return err
			}
		}
		return nil
	})
}

// inChunks calls fn for consecutive ranges of up to 100 of n items (one transaction each), a few
// at a time, and returns the first error.
func inChunks(n int, fn func(lo, hi int) error) error {
	const chunk = 100
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, writeConcurrency)
	)
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(lo, hi); err != nil {
				mu.Lock()
				first = cmpErr(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// rows streams a batch's delivery rows from recipient index from on, in index order.
func (s *Store) rows(ctx context.Context, org tablestore.Org, batch string, from int, filter string, fields ...string) iter.Seq2[tablestore.Row[Delivery], error] {
	q := tablestore.QueryOptions{KeyPrefix: batch + "|", From: batch + "|" + indexKey(from), Filter: filter, Select: fields}
	return tablestore.Query[Delivery](ctx, s.deliveries, org, q)
}

// delivery reads one row by key.
func (s *Store) delivery(ctx context.Context, org tablestore.Org, key string) (Delivery, tablestore.ETag, error) {
	return tablestore.Get[Delivery](ctx, s.deliveries, org, key)
}

// updateDelivery replaces d if it is still at etag (errkind.Conflict otherwise).
func (s *Store) updateDelivery(ctx context.Context, org tablestore.Org, d Delivery, etag tablestore.ETag) (tablestore.ETag, error) {
	return s.deliveries.Update(ctx, org, d.Key(), d, etag, tablestore.Replace)
}

func (s *Store) markOpen(ctx context.Context, org tablestore.Org, batch string) error {
	_, err := s.open.Upsert(ctx, openPartition, org.String()+"|"+batch, openRow{Org: org.String(), Batch: batch}, tablestore.Replace)
	return err
}

func (s *Store) markClosed(ctx context.Context, org tablestore.Org, batch string) error {
	err := s.open.Delete(ctx, openPartition, org.String()+"|"+batch, tablestore.ETagAny)
	if errors.Is(err, errkind.NotFound) {
		return nil
	}
	return err
}

// openBatches lists every open batch of every org.
func (s *Store) openBatches(ctx context.Context) iter.Seq2[openRow, error] {
	return func(yield func(openRow, error) bool) {
		for row, err := range tablestore.Query[openRow](ctx, s.open, openPartition, tablestore.QueryOptions{}) {
			if !yield(row.Value, err) || err != nil {
				return
			}
		}
	}
}

// parseDeliveryID splits an API delivery id "<index>-<channel>".
func parseDeliveryID(id string) (int, string, bool) {
	i, ch, ok := strings.Cut(id, "-")
	if !ok || (ch != Mail && ch != Teams) {
		return 0, "", false
	}
	var n int
	if _, err := fmt.Sscanf(i, "%d", &n); err != nil || n < 0 {
		return 0, "", false
	}
	return n, ch, true
}

// applyDeliveries runs ops on delivery rows in transactions of up to 100, a few at a time.
func (s *Store) applyDeliveries(ctx context.Context, org tablestore.Org, ops []tablestore.Op) error {
	return inChunks(len(ops), func(lo, hi int) error { return s.deliveries.Batch(ctx, org, ops[lo:hi]) })
}
