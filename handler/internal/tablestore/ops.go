package tablestore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// ETag is an entity's version as the service reports it. Pass the ETag you read to Update or Delete so
// they fail with ErrConflict if someone changed the entity since.
type ETag string

// ETagAny makes Update and Delete unconditional (last writer wins). Use it only where losing a
// concurrent change is acceptable.
const ETagAny ETag = "*"

// Mode says how a write treats the properties of an existing entity.
type Mode int

const (
	// Merge writes the given properties and keeps the others the stored entity has. Properties the
	// value omits (nil, omitempty, zero time) keep their stored values.
	Merge Mode = iota + 1
	// Replace makes the stored entity exactly the given value; properties it does not carry are removed.
	Replace
)

func (m Mode) String() string {
	switch m {
	case Merge:
		return "merge"
	case Replace:
		return "replace"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

func (m Mode) check() error {
	if m != Merge && m != Replace {
		return fmt.Errorf("tablestore: %v: use Merge or Replace: %w", m, ErrInvalid)
	}
	return nil
}

func (e ETag) check() error {
	if e == "" {
		return fmt.Errorf("tablestore: empty ETag (pass the ETag you read, or ETagAny to overwrite unconditionally): %w", ErrInvalid)
	}
	return nil
}

// Row is one entity read by Query.
type Row[T any] struct {
	Key       string // RowKey
	ETag      ETag
	Timestamp time.Time // set by the service on every write
	Value     T
}

func (t *Table) op(verb string, org Org, key string) string {
	return verb + " " + t.full + "/" + org.id + "/" + key
}

func (t *Table) prepare(ctx context.Context, org Org, key string) error {
	if err := org.check(); err != nil {
		return err
	}
	if err := CheckKey(key); err != nil {
		return err
	}
	return t.ensure(ctx)
}

// Get reads the entity key of org into a T. A missing entity is ErrNotFound.
func Get[T any](ctx context.Context, t *Table, part Partition, key string) (T, ETag, error) {
	org := part.partition()
	var zero T
	if err := t.prepare(ctx, org, key); err != nil {
		return zero, "", err
	}
	resp, err := t.client.GetEntity(ctx, org.id, key, nil)
	if err != nil {
		err = t.fail(t.op("get", org, key), err)
		return zero, "", err
	}
	v, m, err := decode[T](resp.Value)
	if err != nil {
		return zero, "", err
	}
	if m.partition != org.id || m.key != key {
		return zero, "", fmt.Errorf("tablestore: %s: service returned %q/%q", t.op("get", org, key), m.partition, m.key)
	}
	return v, ETag(resp.ETag), nil
}

// Insert adds v as the entity key of org. If it exists already, Insert is ErrConflict and changes nothing.
func (t *Table) Insert(ctx context.Context, part Partition, key string, v any) (ETag, error) {
	return t.write(ctx, "insert", part.partition(), key, v, func(body []byte) (azcore.ETag, error) {
		resp, err := t.client.AddEntity(ctx, body, &aztables.AddEntityOptions{Format: noMetadata()})
		return resp.ETag, err
	})
}

// write makes sure the table exists, encodes v as the entity key of org and sends it; a failure
// to send is named after op.
func (t *Table) write(ctx context.Context, op string, org Org, key string, v any, send func(body []byte) (azcore.ETag, error)) (ETag, error) {
	if err := t.prepare(ctx, org, key); err != nil {
		return "", err
	}
	e, err := encode(org, key, v)
	if err != nil {
		return "", err
	}
	etag, err := send(e.body)
	if err != nil {
		return "", t.fail(t.op(op, org, key), err)
	}
	return ETag(etag), nil
}

// Upsert writes v as the entity key of org whether or not it exists, merging into or replacing an
// existing one as mode says. It never checks an ETag: use it for data that has one writer, or where
// the last write should win; use Update for read-modify-write.
func (t *Table) Upsert(ctx context.Context, part Partition, key string, v any, mode Mode) (ETag, error) {
	if err := mode.check(); err != nil {
		return "", err
	}
	return t.write(ctx, "upsert", part.partition(), key, v, func(body []byte) (azcore.ETag, error) {
		resp, err := t.client.UpsertEntity(ctx, body, &aztables.UpsertEntityOptions{UpdateMode: updateMode(mode)})
		return resp.ETag, err
	})
}

// Update writes v over the existing entity key of org (merging or replacing as mode says) if its ETag
// still equals etag. A changed entity is ErrConflict and nothing is written; a missing one is
// ErrNotFound. etag must not be empty; ETagAny updates whatever version is stored.
func (t *Table) Update(ctx context.Context, part Partition, key string, v any, etag ETag, mode Mode) (ETag, error) {
	if err := mode.check(); err != nil {
		return "", err
	}
	if err := etag.check(); err != nil {
		return "", err
	}
	ifMatch := azcore.ETag(etag)
	return t.write(ctx, "update", part.partition(), key, v, func(body []byte) (azcore.ETag, error) {
		resp, err := t.client.UpdateEntity(ctx, body, &aztables.UpdateEntityOptions{IfMatch: &ifMatch, UpdateMode: updateMode(mode)})
		return resp.ETag, err
	})
}

// Save is the write of a read-modify-write under optimistic concurrency: with etag "" (nothing
// was read) it creates the entity, ErrConflict if one appeared meanwhile; otherwise it replaces
// the entity whose ETag is still etag, ErrConflict if it changed.
func (t *Table) Save(ctx context.Context, part Partition, key string, v any, etag ETag) (ETag, error) {
	if etag == "" {
		return t.Insert(ctx, part, key, v)
	}
	return t.Update(ctx, part, key, v, etag, Replace)
}

// Delete removes the entity key of org if its ETag still equals etag (ETagAny: any version). A changed
// entity is ErrConflict and is kept; a missing one is ErrNotFound.
func (t *Table) Delete(ctx context.Context, part Partition, key string, etag ETag) error {
	org := part.partition()
	if err := etag.check(); err != nil {
		return err
	}
	if err := t.prepare(ctx, org, key); err != nil {
		return err
	}
	ifMatch := azcore.ETag(etag)
	if _, err := t.client.DeleteEntity(ctx, org.id, key, &aztables.DeleteEntityOptions{IfMatch: &ifMatch}); err != nil {
		err = t.fail(t.op("delete", org, key), err)
		return err
	}
	return nil
}

// fail translates err and, if the table has vanished (deleted by DropTables elsewhere, or by hand),
// forgets that it exists so the next operation creates it again.
func (t *Table) fail(op string, err error) error {
	err, _ = translate(op, err)
	var e *Error
	if errors.As(err, &e) && e.Code == string(aztables.TableNotFound) {
		t.ready.Store(false)
	}
	return err
}

func updateMode(m Mode) aztables.UpdateMode {
	if m == Replace {
		return aztables.UpdateModeReplace
	}
	return aztables.UpdateModeMerge
}

func noMetadata() *aztables.MetadataFormat {
	f := aztables.MetadataFormatNone
	return &f
}

// QueryOptions select the rows of one org that Query returns. All conditions are combined with "and".
type QueryOptions struct {
	// KeyPrefix keeps rows whose RowKey starts with it.
	KeyPrefix string
	// From keeps rows with RowKey >= From; To keeps rows with RowKey < To. Empty means unbounded.
	From, To string
	// Filter is an extra OData filter on properties, e.g. "Active eq true and Dept eq " + Quote(d).
	// It is combined with the org and key conditions by "and", so it can only narrow them.
	Filter string
	// Select names the properties to fetch (JSON names of T); the others are left zero. Empty: all.
	Select []string
	// PageSize is how many rows one request fetches, 1 to 1000; 0 means 1000.
	PageSize int
}

// MaxPageSize is the most rows the service returns per request.
const MaxPageSize = 1000

// Query streams org's rows matching q, in RowKey order, fetching a page per request as the loop asks for
// more. An error is yielded once, with a zero Row, and ends the sequence. Breaking out of the loop stops
// fetching.
func Query[T any](ctx context.Context, t *Table, part Partition, q QueryOptions) iter.Seq2[Row[T], error] {
	org := part.partition()
	return func(yield func(Row[T], error) bool) {
		opts, err := t.listOptions(org, q)
		if err == nil {
			err = t.ensure(ctx)
		}
		if err != nil {
			yield(Row[T]{}, err)
			return
		}
		pager := t.client.NewListEntitiesPager(opts)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				err = t.fail("query "+t.full+"/"+org.id, err)
				yield(Row[T]{}, err)
				return
			}
			for _, body := range page.Entities {
				v, m, err := decode[T](body)
				if err == nil && m.partition != org.id {
					err = fmt.Errorf("tablestore: query %s/%s returned a row of partition %q", t.full, org.id, m.partition)
				}
				if err != nil {
					yield(Row[T]{}, err)
					return
				}
				if !yield(Row[T]{Key: m.key, ETag: m.etag, Timestamp: m.timestamp, Value: v}, nil) {
					return
				}
			}
		}
	}
}

func (t *Table) listOptions(org Org, q QueryOptions) (*aztables.ListEntitiesOptions, error) {
	if err := org.check(); err != nil {
		return nil, err
	}
	conds := []string{"PartitionKey eq " + quote(org.id)}
	if q.KeyPrefix != "" {
		conds = append(conds, "RowKey ge "+quote(q.KeyPrefix))
		if end, ok := prefixEnd(q.KeyPrefix); ok {
			conds = append(conds, "RowKey lt "+quote(end))
		}
	}
	if q.From != "" {
		conds = append(conds, "RowKey ge "+quote(q.From))
	}
	if q.To != "" {
		conds = append(conds, "RowKey lt "+quote(q.To))
	}
	if q.Filter != "" {
		if !balanced(q.Filter) {
			return nil, fmt.Errorf("tablestore: filter %q has unbalanced parentheses or quotes: %w", q.Filter, ErrInvalid)
		}
		conds = append(conds, "("+q.Filter+")")
	}
	filter := strings.Join(conds, " and ")
	opts := &aztables.ListEntitiesOptions{Filter: &filter}
	if len(q.Select) > 0 {
		names := []string{"PartitionKey", "RowKey", "Timestamp"}
		for _, n := range q.Select {
			if err := checkPropertyName(n); err != nil {
				return nil, err
			}
			names = append(names, n)
		}
		sel := strings.Join(names, ",")
		opts.Select = &sel
	}
	switch {
	case q.PageSize == 0:
		q.PageSize = MaxPageSize
	case q.PageSize < 0 || q.PageSize > MaxPageSize:
		return nil, fmt.Errorf("tablestore: page size %d not in 1..%d: %w", q.PageSize, MaxPageSize, ErrInvalid)
	}
	top := int32(q.PageSize)
	opts.Top = &top
	return opts, nil
}

// prefixEnd returns the smallest string greater than every string starting with p (p with its last
// rune incremented), and false if there is none worth writing.
func prefixEnd(p string) (string, bool) {
	r, size := utf8.DecodeLastRuneInString(p)
	if r == utf8.RuneError || r >= utf8.MaxRune || r == 0xD7FF {
		return "", false
	}
	return p[:len(p)-size] + string(r+1), true
}

// balanced reports whether the parentheses of an OData filter outside string literals are balanced, so
// wrapping it in parentheses keeps it inside them.
func balanced(f string) bool {
	depth, inStr := 0, false
	for i := 0; i < len(f); i++ {
		switch c := f[i]; {
		case c == '\'':
			inStr = !inStr // a doubled quote toggles twice
		case inStr:
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0 && !inStr
}
