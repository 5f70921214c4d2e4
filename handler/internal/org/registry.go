package org

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// TenantReleaser ends an org's Microsoft 365 connection and frees its tenant for other orgs
// ((*consent.Flow).Disconnect), then drops whatever binding a flow that died half-way left
// naming the org (Forget).
type TenantReleaser interface {
	Disconnect(ctx context.Context, org tablestore.Org) error
	Forget(ctx context.Context, org tablestore.Org) (int, error)
}

// SubscriptionRemover deletes an org's Graph change-notification subscriptions at Microsoft.
// None exist yet (channel monitoring lands later): its feature must plug in here, so an erased
// org stops receiving notifications before its rows go.
type SubscriptionRemover interface {
	RemoveSubscriptions(ctx context.Context, org tablestore.Org) (int, error)
}

// ForeignTables are tables whose PartitionKey is not an org id, which erasure must leave alone:
// consent's tenant bindings are partitioned by Entra tenant id, and an org may have chosen an id
// that equals some tenant's (both are GUID-shaped), so erasing that org's "partition" there would
// free another org's tenant. The org's own binding is released through Config.Tenant instead.
var ForeignTables = []string{connection.TenantsTable}

// Config is what a Registry needs.
type Config struct {
	Store *tablestore.Store
	// Tenant releases the tenant binding on erasure; required.
	Tenant TenantReleaser
	// Subscriptions removes Graph subscriptions on erasure; nil while none exist.
	Subscriptions SubscriptionRemover
	Logger        *slog.Logger
	Now           func() time.Time
}

// Registry registers, reads and erases orgs.
type Registry struct {
	cfg Config
	t   *tablestore.Table
	log *slog.Logger
}

// New returns a Registry. It does no I/O.
func New(cfg Config) *Registry {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Registry{cfg: cfg, t: cfg.Store.Table(Table), log: cfg.Logger.With("component", "org")}
}

// Get returns the org, whatever its state; ErrNotFound if it is not registered.
func (r *Registry) Get(ctx context.Context, id tablestore.Org) (Org, error) {
	o, _, err := r.get(ctx, id)
	return o, err
}

func (r *Registry) get(ctx context.Context, id tablestore.Org) (Org, tablestore.ETag, error) {
	o, etag, err := tablestore.Get[Org](ctx, r.t, id, rowKey)
	if errors.Is(err, tablestore.ErrNotFound) {
		return Org{}, "", fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Org{}, "", fmt.Errorf("org: read %s: %w", id, err)
	}
	return o, etag, nil
}

// Active returns the org if it is registered and not being erased: ErrNotFound or ErrErasing
// otherwise. Every route of an org asks it before reading or writing anything.
func (r *Registry) Active(ctx context.Context, id tablestore.Org) (Org, error) {
	o, err := r.Get(ctx, id)
	if err == nil && o.State != Active {
		err = fmt.Errorf("%s: %w", id, ErrErasing)
	}
	return o, err
}

// Register creates the org or updates its display name and time zone. created says which. An org
// being erased cannot be registered again until its erasure finished (ErrErasing).
func (r *Registry) Register(ctx context.Context, id tablestore.Org, reg Registration) (o Org, created bool, err error) {
	if err := reg.Validate(); err != nil {
		return Org{}, false, err
	}
	for range 5 {
		old, etag, err := r.get(ctx, id)
		now := r.cfg.Now().UTC()
		switch {
		case errors.Is(err, ErrNotFound):
			o = Org{ID: id.String(), DisplayName: reg.DisplayName, TimeZone: reg.TimeZone, State: Active, CreatedAt: now, UpdatedAt: now}
			_, err = r.t.Insert(ctx, id, rowKey, o)
			created = true
		case err != nil:
			return Org{}, false, err
		case old.State != Active:
			return old, false, fmt.Errorf("%s: %w", id, ErrErasing)
		default:
			o = old
			if o.DisplayName == reg.DisplayName && o.TimeZone == reg.TimeZone {
				return o, false, nil // nothing to write: a repeated PUT is free
			}
			o.DisplayName, o.TimeZone, o.UpdatedAt = reg.DisplayName, reg.TimeZone, now
			_, err = r.t.Update(ctx, id, rowKey, o, etag, tablestore.Replace)
			created = false
		}
		if !errors.Is(err, tablestore.ErrConflict) {
			if err != nil {
				return Org{}, false, fmt.Errorf("org: register %s: %w", id, err)
			}
			return o, created, nil
		}
	}
	return Org{}, false, fmt.Errorf("org: %s keeps changing: %w", id, tablestore.ErrConflict)
}

// Report is what an erasure removed.
type Report struct {
	Org string `json:"org"`
	// Rows is how many rows were deleted per table (tables without rows of the org are not listed).
	// A resumed erasure counts only what it deleted itself.
	Rows map[string]int `json:"rows"`
	// TotalRows is the sum of Rows.
	TotalRows int `json:"totalRows"`
	// TenantReleased says the Microsoft 365 connection was ended and its tenant freed.
	TenantReleased bool `json:"tenantReleased"`
	// Subscriptions is how many Graph subscriptions were removed.
	Subscriptions int       `json:"subscriptions"`
	ErasingSince  time.Time `json:"erasingSince"`
	CompletedAt   time.Time `json:"completedAt"`
}

// Erase removes the org and everything it has: it marks the org Erasing first (from then on every
// other route answers 404 and the scheduler skips it), removes its Graph subscriptions, ends its
// connection and releases its tenant, deletes its rows in every table of the store, and deletes
// the org row last. Interrupted at any point, calling Erase again continues: each step is
// idempotent and the marker stays until the end. ErrNotFound if the org is not registered.
func (r *Registry) Erase(ctx context.Context, id tablestore.Org) (Report, error) {
	o, err := r.markErasing(ctx, id)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Org: id.String(), Rows: map[string]int{}, ErasingSince: o.ErasingSince}
	r.log.InfoContext(ctx, "erasing org", "org", id.String(), "erasingSince", o.ErasingSince)
	if r.cfg.Subscriptions != nil {
		n, err := r.cfg.Subscriptions.RemoveSubscriptions(ctx, id)
		if err != nil {
			return rep, fmt.Errorf("org: erase %s: remove Graph subscriptions: %w", id, err)
		}
		rep.Subscriptions = n
	}
	if err := r.cfg.Tenant.Disconnect(ctx, id); err != nil {
		return rep, fmt.Errorf("org: erase %s: release the tenant: %w", id, err)
	}
	if _, err := r.cfg.Tenant.Forget(ctx, id); err != nil {
		return rep, fmt.Errorf("org: erase %s: forget its tenant bindings: %w", id, err)
	}
	rep.TenantReleased = true
	tables, err := r.cfg.Store.Tables(ctx)
	if err != nil {
		return rep, fmt.Errorf("org: erase %s: %w", id, err)
	}
	// The org row is the erasure marker: it goes last, so an interrupted erasure is resumed.
	tables = slices.DeleteFunc(tables, func(n string) bool { return n == Table || slices.Contains(ForeignTables, n) })
	for _, name := range tables {
		n, err := r.cfg.Store.Table(name).EraseOrg(ctx, id)
		if n > 0 {
			rep.Rows[name] = n
			rep.TotalRows += n
		}
		if err != nil {
			return rep, fmt.Errorf("org: erase %s: %w", id, err)
		}
	}
	if err := r.t.Delete(ctx, id, rowKey, tablestore.ETagAny); err != nil && !errors.Is(err, tablestore.ErrNotFound) {
		return rep, fmt.Errorf("org: erase %s: delete the org: %w", id, err)
	}
	rep.Rows[Table]++
	rep.TotalRows++
	rep.CompletedAt = r.cfg.Now().UTC()
	r.log.InfoContext(ctx, "org erased", "org", id.String(), "rows", rep.TotalRows, "subscriptions", rep.Subscriptions)
	return rep, nil
}

// markErasing sets the org's state to Erasing, keeping the first erasure's start.
func (r *Registry) markErasing(ctx context.Context, id tablestore.Org) (Org, error) {
	for range 5 {
		o, etag, err := r.get(ctx, id)
		if err != nil {
			return Org{}, err
		}
		if o.State == Erasing {
			return o, nil
		}
		now := r.cfg.Now().UTC()
		o.State, o.ErasingSince, o.UpdatedAt = Erasing, now, now
		if _, err = r.t.Update(ctx, id, rowKey, o, etag, tablestore.Replace); !errors.Is(err, tablestore.ErrConflict) {
			if err != nil {
				return Org{}, fmt.Errorf("org: mark %s erasing: %w", id, err)
			}
			return o, nil
		}
	}
	return Org{}, fmt.Errorf("org: %s keeps changing: %w", id, tablestore.ErrConflict)
}

// Filter keeps the active orgs of ids, for work that visits every org (the scheduler lists orgs
// from their settings): an org being erased, or whose registration is gone, is dropped.
func (r *Registry) Filter(ctx context.Context, ids []tablestore.Org) ([]tablestore.Org, error) {
	out := make([]tablestore.Org, 0, len(ids))
	for _, id := range ids {
		_, err := r.Active(ctx, id)
		switch {
		case err == nil:
			out = append(out, id)
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrErasing):
		default:
			return nil, err
		}
	}
	return out, nil
}

// ActiveOrgs wraps a lister of org ids (e.g. (*syncsettings.Store).Orgs) so it lists only active
// orgs: the scheduler's Orgs.
func (r *Registry) ActiveOrgs(list func(context.Context) ([]tablestore.Org, error)) func(context.Context) ([]tablestore.Org, error) {
	return func(ctx context.Context) ([]tablestore.Org, error) {
		ids, err := list(ctx)
		if err != nil {
			return nil, err
		}
		return r.Filter(ctx, ids)
	}
}
