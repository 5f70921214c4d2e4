package tablestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// Tables lists the names (without the prefix) of this store's tables: every table the account
// holds under the prefix, plus every table this Store has handed out. Erasing an org walks this
// list rather than a hand-kept one, so a table added by a later feature cannot be forgotten:
// any table that holds a row exists in the account.
//
// With an empty prefix every table of the account counts as ours, as the deployment gives the
// handler an account of its own; a name that Table would refuse is skipped.
func (s *Store) Tables(ctx context.Context) ([]string, error) {
	var opts *aztables.ListTablesOptions
	if s.prefix != "" {
		// Table names only hold letters and digits, so every name with the prefix sorts below prefix+"{".
		filter := "TableName ge " + quote(s.prefix) + " and TableName lt " + quote(s.prefix+"{")
		opts = &aztables.ListTablesOptions{Filter: &filter}
	}
	seen := map[string]bool{}
	pager := s.svc.NewListTablesPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			err, _ = translate("list tables "+s.prefix+"*", err)
			return nil, err
		}
		for _, tp := range page.Tables {
			if tp.Name == nil || !strings.HasPrefix(*tp.Name, s.prefix) {
				continue
			}
			if name := strings.TrimPrefix(*tp.Name, s.prefix); tableNameRE.MatchString(name) {
				seen[name] = true
			}
		}
	}
	s.mu.Lock()
	for name := range s.tables {
		seen[name] = true
	}
	s.mu.Unlock()
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

// EraseOrg deletes every row of org in t and returns how many it deleted. It reads keys only, a
// page at a time, and deletes each page in transactions, so it is bounded in memory and can be
// run again after an interruption: rows already gone are simply not found. A table that does not
// exist holds nothing to erase.
func (t *Table) EraseOrg(ctx context.Context, org Org) (int, error) {
	if err := org.check(); err != nil {
		return 0, err
	}
	n := 0
	for {
		// Collect one page's keys, then delete them: deleting while paging would move the
		// continuation under the pager's feet.
		ops, err := t.eraseKeys(ctx, org)
		if errors.Is(err, ErrNotFound) {
			t.ready.Store(false)
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("tablestore: erase %s/%s: %w", t.full, org.id, err)
		}
		if len(ops) == 0 {
			return n, nil
		}
		if err := t.Batch(ctx, org, ops); err != nil {
			var be *BatchError
			if errors.As(err, &be) {
				n += be.First
			}
			// A row deleted meanwhile (a concurrent eraser) fails its transaction; the next
			// pass reads what is left.
			if !errors.Is(err, ErrNotFound) {
				return n, fmt.Errorf("tablestore: erase %s/%s: %w", t.full, org.id, err)
			}
			continue
		}
		n += len(ops)
	}
}

// eraseKeys reads up to a page of org's row keys in t, as delete ops.
func (t *Table) eraseKeys(ctx context.Context, org Org) ([]Op, error) {
	if err := t.ensure(ctx); err != nil {
		return nil, err
	}
	filter, sel, top := "PartitionKey eq "+quote(org.id), "RowKey", int32(MaxPageSize)
	pager := t.client.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter, Select: &sel, Top: &top, Format: noMetadata()})
	if !pager.More() {
		return nil, nil
	}
	page, err := pager.NextPage(ctx)
	if err != nil {
		return nil, t.fail("list keys "+t.full+"/"+org.id, err)
	}
	ops := make([]Op, 0, len(page.Entities))
	for _, body := range page.Entities {
		var e struct{ RowKey string }
		if err := json.Unmarshal(body, &e); err != nil {
			return nil, fmt.Errorf("tablestore: list keys %s/%s: %w", t.full, org.id, err)
		}
		ops = append(ops, DeleteOp(e.RowKey, ETagAny))
	}
	return ops, nil
}
