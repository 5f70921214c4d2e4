package tablestore

import (
	"context"
	"errors"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// OpKind is what one batch operation does.
type OpKind int

const (
	OpInsert        OpKind = iota + 1 // add; ErrConflict if the key exists
	OpUpsertMerge                     // insert or merge, no ETag check
	OpUpsertReplace                   // insert or replace, no ETag check
	OpUpdateMerge                     // merge into an existing entity whose ETag matches
	OpUpdateReplace                   // replace an existing entity whose ETag matches
	OpDelete                          // delete an existing entity whose ETag matches
)

// Op is one operation of a Batch. Build it with InsertOp, UpsertOp, UpdateOp or DeleteOp.
type Op struct {
	Kind  OpKind
	Key   string // RowKey; the PartitionKey is Batch's org
	Value any    // not used by OpDelete
	ETag  ETag   // required by OpUpdate* and OpDelete (ETagAny: any version)
}

// InsertOp adds v under key.
func InsertOp(key string, v any) Op { return Op{Kind: OpInsert, Key: key, Value: v} }

// UpsertOp writes v under key, merging or replacing (no ETag check).
func UpsertOp(key string, v any, mode Mode) Op {
	if mode == Replace {
		return Op{Kind: OpUpsertReplace, Key: key, Value: v}
	}
	if mode == Merge {
		return Op{Kind: OpUpsertMerge, Key: key, Value: v}
	}
	return Op{Key: key, Value: v} // invalid kind: Batch reports it
}

// UpdateOp writes v over key if its ETag still equals etag.
func UpdateOp(key string, v any, etag ETag, mode Mode) Op {
	if mode == Replace {
		return Op{Kind: OpUpdateReplace, Key: key, Value: v, ETag: etag}
	}
	if mode == Merge {
		return Op{Kind: OpUpdateMerge, Key: key, Value: v, ETag: etag}
	}
	return Op{Key: key, Value: v, ETag: etag}
}

// DeleteOp deletes key if its ETag still equals etag.
func DeleteOp(key string, etag ETag) Op { return Op{Kind: OpDelete, Key: key, ETag: etag} }

const (
	maxTransactionOps   = 100
	maxTransactionBytes = 4<<20 - 256<<10 // the service allows 4 MiB per transaction; leave room for the multipart framing
	opOverhead          = 512             // framing per operation, generously
)

// Batch applies ops to org's rows in order, as consecutive entity group transactions. A transaction
// holds at most 100 operations and at most ~4 MiB, and never the same key twice: a repeated key starts
// a new transaction, so a later op on a key sees the earlier one's result. Each transaction is atomic;
// the batch as a whole is not. On failure Batch returns a *BatchError naming the failed transaction
// and the rejected op; ops before that transaction were applied, the rest were not (none of the failed
// transaction's ops). errors.Is sees the kind (e.g. ErrConflict for a stale ETag).
//
// Every op is checked (kind, key, ETag, value encoding) before anything is sent; a bad op is ErrInvalid
// and nothing is written. An empty batch does nothing.
func (t *Table) Batch(ctx context.Context, part Partition, ops []Op) error {
	org := part.partition()
	if len(ops) == 0 {
		return nil
	}
	if err := org.check(); err != nil {
		return err
	}
	actions := make([]aztables.TransactionAction, len(ops))
	sizes := make([]int, len(ops))
	for i, op := range ops {
		a, size, err := action(org, op)
		if err != nil {
			return fmt.Errorf("tablestore: batch %s/%s op %d (key %q): %w", t.full, org.id, i, op.Key, err)
		}
		actions[i], sizes[i] = a, size
	}
	if err := t.ensure(ctx); err != nil {
		return err
	}
	chunks := split(ops, sizes)
	for n, c := range chunks {
		if _, err := t.client.SubmitTransaction(ctx, actions[c.first:c.end], nil); err != nil {
			terr, failed := translate(fmt.Sprintf("batch %s/%s", t.full, org.id), err)
			if e := (*Error)(nil); errors.As(terr, &e) && e.Code == string(aztables.TableNotFound) {
				t.ready.Store(false)
			}
			be := &BatchError{Transaction: n, Transactions: len(chunks), First: c.first, End: c.end, Failed: -1, Err: terr}
			if failed >= 0 && c.first+failed < c.end {
				be.Failed = c.first + failed
				be.Key = ops[be.Failed].Key
			}
			return be
		}
	}
	return nil
}

type chunk struct{ first, end int }

// split cuts ops into transactions: at most maxTransactionOps, at most maxTransactionBytes, no key twice.
func split(ops []Op, sizes []int) []chunk {
	var chunks []chunk
	cur := chunk{}
	bytes := 0
	keys := map[string]bool{}
	for i, op := range ops {
		if i > cur.first && (i-cur.first == maxTransactionOps || keys[op.Key] || bytes+sizes[i] > maxTransactionBytes) {
			cur.end = i
			chunks = append(chunks, cur)
			cur, bytes = chunk{first: i}, 0
			clear(keys)
		}
		keys[op.Key] = true
		bytes += sizes[i]
	}
	cur.end = len(ops)
	return append(chunks, cur)
}

func action(org Org, op Op) (aztables.TransactionAction, int, error) {
	if err := CheckKey(op.Key); err != nil {
		return aztables.TransactionAction{}, 0, err
	}
	var a aztables.TransactionAction
	switch op.Kind {
	case OpInsert:
		a.ActionType = aztables.TransactionTypeAdd
	case OpUpsertMerge:
		a.ActionType = aztables.TransactionTypeInsertMerge
	case OpUpsertReplace:
		a.ActionType = aztables.TransactionTypeInsertReplace
	case OpUpdateMerge:
		a.ActionType = aztables.TransactionTypeUpdateMerge
	case OpUpdateReplace:
		a.ActionType = aztables.TransactionTypeUpdateReplace
	case OpDelete:
		a.ActionType = aztables.TransactionTypeDelete
	default:
		return a, 0, fmt.Errorf("tablestore: op kind %d: %w", op.Kind, ErrInvalid)
	}
	if op.Kind == OpUpdateMerge || op.Kind == OpUpdateReplace || op.Kind == OpDelete {
		if err := op.ETag.check(); err != nil {
			return a, 0, err
		}
		e := azcore.ETag(op.ETag)
		a.IfMatch = &e
	}
	var value any = op.Value
	if op.Kind == OpDelete {
		value = struct{}{}
	}
	e, err := encode(org, op.Key, value)
	if err != nil {
		return a, 0, err
	}
	a.Entity = e.body
	return a, len(e.body) + opOverhead, nil
}
