// Package tablestore is the project's one Azure Table Storage layer.
//
// Domain packages keep their own structs; the store marshals them as JSON (see encode for the type
// mapping), puts every entity in its org's partition, and gives back kinds of errors, not service codes.
//
// # Contract
//
// These sentences are checked by package storetest against Azurite:
//
//   - Tables are named Prefix+name and created on first use, once per Store and table, even under
//     concurrent first use. Open does no network I/O. A table deleted behind the store's back costs
//     one failed operation (ErrNotFound); the next one creates it again.
//   - The PartitionKey is always the Partition an operation is given: an Org, or a Shared partition
//     of another keyspace (a tenant's binding); no operation reads, lists or writes another
//     partition's rows.
//   - Get of a missing key is ErrNotFound. Insert of an existing key is ErrConflict.
//   - Update and Delete require an ETag. A stale ETag is ErrConflict and changes nothing, so
//     read-modify-write loops that retry on ErrConflict never lose an update. ETagAny skips the check.
//   - Upsert with Merge keeps properties the new value does not carry; with Replace the stored entity
//     becomes exactly the new value.
//   - Batch writes ops in consecutive transactions of at most 100 operations (and under the 4 MiB
//     payload limit), never putting one key twice in a transaction. Each transaction is atomic; the
//     batch is not: a *BatchError says which transaction failed and which ops were applied.
//   - Query streams one org's rows in key order, by prefix or range, a page (up to 1000 rows) per request.
//   - Bad orgs, keys, property names and over-sized values are ErrInvalid before anything is sent.
//   - Stats counts every HTTP request sent to the table service (each retry, each batch transaction,
//     each query page, each table creation).
//   - DropTables deletes only this store's tables, and only when the prefix looks like a test prefix.
package tablestore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// Config says how to reach Table Storage. Set ConnectionString, or ServiceURL and Credential (managed
// identity); main chooses from the TablesConnection / TablesConnection__tableServiceUri settings.
type Config struct {
	// ConnectionString is an account connection string (Azurite's, locally).
	ConnectionString string
	// ServiceURL is the table endpoint, e.g. https://acct.table.core.windows.net, used with Credential.
	ServiceURL string
	Credential azcore.TokenCredential
	// Prefix is put before every table name (TABLE_PREFIX): letters and digits, starting with a
	// letter, at most 32 characters; empty for none.
	Prefix string
	// ClientOptions tune the SDK client: Transport, Retry, Logging. The store adds its own request
	// counter to PerRetryPolicies.
	ClientOptions azcore.ClientOptions
}

// Store is a connection to one Table Storage account under one prefix. It is safe for concurrent use.
type Store struct {
	svc    *aztables.ServiceClient
	prefix string

	mu     sync.Mutex
	tables map[string]*Table

	requests  atomic.Int64
	throttled atomic.Int64
}

var prefixRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,31}$`)

// Open checks cfg and builds a client. It sends nothing: tables are created on first use.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	_ = ctx // reserved: Open does no I/O so the handler can listen at once
	if cfg.Prefix != "" && !prefixRE.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("tablestore: prefix %q must be letters and digits, starting with a letter, at most 32: %w", cfg.Prefix, ErrInvalid)
	}
	s := &Store{prefix: cfg.Prefix, tables: map[string]*Table{}}
	opts := &aztables.ClientOptions{ClientOptions: cfg.ClientOptions}
	opts.PerRetryPolicies = append(append([]policy.Policy(nil), cfg.ClientOptions.PerRetryPolicies...), counter{s})
	var err error
	switch {
	case cfg.ConnectionString != "" && cfg.ServiceURL != "":
		return nil, fmt.Errorf("tablestore: set ConnectionString or ServiceURL, not both: %w", ErrInvalid)
	case cfg.ConnectionString != "":
		s.svc, err = aztables.NewServiceClientFromConnectionString(cfg.ConnectionString, opts)
	case cfg.ServiceURL != "":
		if cfg.Credential == nil {
			return nil, fmt.Errorf("tablestore: ServiceURL %s needs a Credential: %w", cfg.ServiceURL, ErrInvalid)
		}
		s.svc, err = aztables.NewServiceClient(cfg.ServiceURL, cfg.Credential, opts)
	default:
		return nil, fmt.Errorf("tablestore: no ConnectionString or ServiceURL: %w", ErrInvalid)
	}
	if err != nil {
		// Never echo the connection string: it holds the account key.
		return nil, fmt.Errorf("tablestore: open: %w", errors.Join(ErrInvalid, err))
	}
	return s, nil
}

// Ping asks the table service for one table name: a cheap read that proves the account answers
// and accepts our credentials (the health check).
func (s *Store) Ping(ctx context.Context) error {
	top := int32(1)
	if _, err := s.svc.NewListTablesPager(&aztables.ListTablesOptions{Top: &top}).NextPage(ctx); err != nil {
		err, _ = translate("ping", err)
		return err
	}
	return nil
}

// Prefix returns the table-name prefix.
func (s *Store) Prefix() string { return s.prefix }

// Stats are counters since Open.
type Stats struct {
	// Requests is the number of HTTP requests sent to the table service (Table Storage bills
	// transactions per request): single-entity operations, each batch transaction, each query page,
	// table creation and deletion, and each retry of any of them.
	Requests int64
	// Throttled is how many of those were answered 429 or 503.
	Throttled int64
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Throttled: s.throttled.Load()}
}

type counter struct{ s *Store }

func (c counter) Do(req *policy.Request) (*http.Response, error) {
	c.s.requests.Add(1)
	resp, err := req.Next()
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		c.s.throttled.Add(1)
	}
	return resp, err
}

// Table is one table of a Store. Get it with Store.Table; it is safe for concurrent use.
type Table struct {
	s      *Store
	name   string // without prefix
	full   string
	client *aztables.Client

	mu    sync.Mutex
	ready atomic.Bool
}

var tableNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,30}$`)

// Table returns the table called Prefix+name. name is a constant of the calling package: letters and
// digits, starting with a letter, 3 to 31 characters; Table panics otherwise, as regexp.MustCompile
// does. Nothing is sent until the first operation, which creates the table if needed.
func (s *Store) Table(name string) *Table {
	if !tableNameRE.MatchString(name) {
		panic(fmt.Sprintf("tablestore: table name %q must be letters and digits, starting with a letter, 3 to 31 characters", name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tables[name]; ok {
		return t
	}
	full := s.prefix + name
	t := &Table{s: s, name: name, full: full, client: s.svc.NewClient(full)}
	s.tables[name] = t
	return t
}

// Name returns the table's full name (with the prefix).
func (t *Table) Name() string { return t.full }

// ensure creates the table once; concurrent first users wait for the one creating it. A failed
// creation is retried by the next use.
func (t *Table) ensure(ctx context.Context) error {
	if t.ready.Load() {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ready.Load() {
		return nil
	}
	_, err := t.s.svc.CreateTable(ctx, t.full, nil)
	var re *azcore.ResponseError
	if err != nil && !(errors.As(err, &re) && re.ErrorCode == string(aztables.TableAlreadyExists)) {
		err, _ = translate("create table "+t.full, err)
		return err
	}
	t.ready.Store(true)
	return nil
}

// IsTestPrefix reports whether prefix looks like one made for tests, the only kind DropTables accepts:
// it starts with "test", or it is azuritetest.Prefix's shape ("t", then a base-36 nanosecond time of
// this century, then a counter).
func IsTestPrefix(prefix string) bool {
	if strings.HasPrefix(prefix, "test") && len(prefix) > len("test") {
		return prefixRE.MatchString(prefix)
	}
	if len(prefix) < 14 || prefix[0] != 't' || !prefixRE.MatchString(prefix) {
		return false
	}
	ns, err := strconv.ParseInt(prefix[1:13], 36, 64)
	if err != nil {
		return false
	}
	at := time.Unix(0, ns)
	return at.Year() >= 2020 && at.Year() < 2100
}

// DropTables deletes every table whose name starts with the store's prefix. It refuses (ErrInvalid)
// unless IsTestPrefix(prefix), so it cannot wipe a real deployment's tables.
func (s *Store) DropTables(ctx context.Context) error {
	if !IsTestPrefix(s.prefix) {
		return fmt.Errorf("tablestore: refusing to drop tables with prefix %q: not a test prefix: %w", s.prefix, ErrInvalid)
	}
	// Table names only hold letters and digits, so every name with the prefix sorts below prefix+"{".
	filter := "TableName ge " + quote(s.prefix) + " and TableName lt " + quote(s.prefix+"{")
	pager := s.svc.NewListTablesPager(&aztables.ListTablesOptions{Filter: &filter})
	var names []string
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			err, _ = translate("list tables "+s.prefix+"*", err)
			return err
		}
		for _, tp := range page.Tables {
			if tp.Name != nil && strings.HasPrefix(*tp.Name, s.prefix) {
				names = append(names, *tp.Name)
			}
		}
	}
	s.mu.Lock()
	for _, t := range s.tables {
		t.ready.Store(false)
	}
	s.mu.Unlock()
	var errs []error
	for _, n := range names {
		if _, err := s.svc.DeleteTable(ctx, n, nil); err != nil {
			if err, _ := translate("delete table "+n, err); !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
