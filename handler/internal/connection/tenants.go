package connection

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// TenantsTable holds the org↔tenant mapping, partitioned by tenant id (lower case): the binding
// row that decides which org a tenant belongs to, an operator's sharing decision, and one row per
// connected org for the inbound lookup (webhooks and bot activities arrive keyed by tenant).
const TenantsTable = "tenantbindings"

// Row keys in a tenant's partition.
const (
	bindingKey = "org"
	// SharedKey is the row key of an operator's decision that a tenant may be connected to more
	// than one org. No API path writes it (README: Connecting Microsoft 365).
	SharedKey    = "shared"
	orgKeyPrefix = "org-" // + org id: that org is connected to the tenant
)

// ClaimGrace is how long an unfinished claim holds a tenant; a flow that died in between is
// taken over after it.
const ClaimGrace = 10 * time.Minute

// ErrClaimLost says a claim was taken over (after ClaimGrace) before it completed.
var ErrClaimLost = errors.New("connection: the tenant was claimed by another org meanwhile")

// Binding says which org a tenant belongs to. It is the one record that decides: a claim is taken
// with the row's ETag, so of two orgs completing at once one wins.
type Binding struct {
	Org       string    `json:"org"`
	Connected bool      `json:"connected"` // false while the claiming org is still completing
	At        time.Time `json:"at"`
}

// tenantLink is the row of one org connected to a tenant.
type tenantLink struct {
	Org string    `json:"org"`
	At  time.Time `json:"at"`
}

// Tenants is the org↔tenant mapping.
type Tenants struct {
	t   *tablestore.Table
	now func() time.Time
}

// NewTenants returns the mapping over s. It does no I/O.
func NewTenants(s *tablestore.Store, now func() time.Time) *Tenants {
	if now == nil {
		now = time.Now
	}
	return &Tenants{t: s.Table(TenantsTable), now: now}
}

func tenantPartition(tenant string) (tablestore.Shared, error) {
	return tablestore.NewShared("tenant", strings.ToLower(tenant))
}

// Shared reports whether an operator allowed tenant to be connected to more than one org (a
// SharedKey row in its partition; its properties are the operator's notes and are not read).
func (m *Tenants) Shared(ctx context.Context, tenant string) (bool, error) {
	part, err := tenantPartition(tenant)
	if err != nil {
		return false, err
	}
	_, _, err = tablestore.Get[map[string]any](ctx, m.t, part, SharedKey)
	if errors.Is(err, tablestore.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Binding returns tenant's binding, or nil when it has none.
func (m *Tenants) Binding(ctx context.Context, tenant string) (*Binding, error) {
	part, err := tenantPartition(tenant)
	if err != nil {
		return nil, err
	}
	b, _, err := tablestore.Get[Binding](ctx, m.t, part, bindingKey)
	if errors.Is(err, tablestore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// Claim claims tenant for org. It fails (false) when another org holds or is claiming it, unless
// an operator allowed sharing the tenant (then nothing is claimed).
func (m *Tenants) Claim(ctx context.Context, tenant string, org tablestore.Org, allowShared bool) (bool, error) {
	part, err := tenantPartition(tenant)
	if err != nil {
		return false, err
	}
	for range 3 {
		b, etag, err := tablestore.Get[Binding](ctx, m.t, part, bindingKey)
		now := m.now().UTC()
		switch {
		case errors.Is(err, tablestore.ErrNotFound):
			_, err = m.t.Insert(ctx, part, bindingKey, Binding{Org: org.String(), At: now})
		case err != nil:
			return false, err
		case b.Org == org.String():
			_, err = m.t.Update(ctx, part, bindingKey, Binding{Org: org.String(), Connected: b.Connected, At: now}, etag, tablestore.Replace)
		case allowShared:
			return true, nil
		case !b.Connected && now.Sub(b.At) > ClaimGrace:
			_, err = m.t.Update(ctx, part, bindingKey, Binding{Org: org.String(), At: now}, etag, tablestore.Replace)
		default:
			return false, nil
		}
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, tablestore.ErrConflict) {
			return false, err
		}
	}
	return false, fmt.Errorf("connection: tenant binding keeps changing: %w", tablestore.ErrConflict)
}

// Complete marks org's claim on tenant connected and records org among the tenant's orgs. A claim
// lost meanwhile (taken over after ClaimGrace) is ErrClaimLost.
func (m *Tenants) Complete(ctx context.Context, tenant string, org tablestore.Org, allowShared bool) error {
	part, err := tenantPartition(tenant)
	if err != nil {
		return err
	}
	b, etag, err := tablestore.Get[Binding](ctx, m.t, part, bindingKey)
	switch {
	case err == nil && b.Org == org.String():
		b.Connected = true
		if _, err := m.t.Update(ctx, part, bindingKey, b, etag, tablestore.Replace); err != nil {
			return err
		}
	case allowShared && (err == nil || errors.Is(err, tablestore.ErrNotFound)):
	case err != nil && !errors.Is(err, tablestore.ErrNotFound):
		return err
	default:
		return ErrClaimLost
	}
	_, err = m.t.Upsert(ctx, part, orgKeyPrefix+org.String(), tenantLink{Org: org.String(), At: m.now().UTC()}, tablestore.Replace)
	return err
}

// Release gives up org's claim on tenant, if it holds one, and drops org from the tenant's orgs.
func (m *Tenants) Release(ctx context.Context, tenant string, org tablestore.Org) error {
	part, err := tenantPartition(tenant)
	if err != nil {
		return nil // a tenant id that could never have been claimed
	}
	if err := m.t.Delete(ctx, part, orgKeyPrefix+org.String(), tablestore.ETagAny); err != nil && !errors.Is(err, tablestore.ErrNotFound) {
		return err
	}
	b, etag, err := tablestore.Get[Binding](ctx, m.t, part, bindingKey)
	if errors.Is(err, tablestore.ErrNotFound) || (err == nil && b.Org != org.String()) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.t.Delete(ctx, part, bindingKey, etag); err != nil && !errors.Is(err, tablestore.ErrNotFound) && !errors.Is(err, tablestore.ErrConflict) {
		return err
	}
	return nil
}

// Orgs returns the orgs connected to tenant: one, or several where an operator allowed sharing;
// none for a tenant nobody connected. Inbound handlers (Graph notifications, bot activities)
// resolve their org with it.
func (m *Tenants) Orgs(ctx context.Context, tenant string) ([]tablestore.Org, error) {
	part, err := tenantPartition(tenant)
	if err != nil {
		return nil, nil // not a tenant id: nobody's
	}
	seen := map[string]bool{}
	var out []tablestore.Org
	add := func(id string) error {
		if id == "" || seen[id] {
			return nil
		}
		o, err := tablestore.NewOrg(id)
		if err != nil {
			return err
		}
		seen[id] = true
		out = append(out, o)
		return nil
	}
	for row, err := range tablestore.Query[tenantLink](ctx, m.t, part, tablestore.QueryOptions{KeyPrefix: orgKeyPrefix}) {
		if err != nil {
			return nil, err
		}
		if err := add(row.Value.Org); err != nil {
			return nil, err
		}
	}
	// Bindings completed before the per-org rows existed still name their org.
	if b, err := m.Binding(ctx, tenant); err != nil {
		return nil, err
	} else if b != nil && b.Connected {
		if err := add(b.Org); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Forget drops every row naming org in any tenant's partition (its binding, claim or link) and
// returns how many. An erased org must not keep a tenant through a flow that died half-way; the
// table holds a few rows per customer tenant, so one pass over it is cheap.
func (m *Tenants) Forget(ctx context.Context, org tablestore.Org) (int, error) {
	parts, err := m.t.Partitions(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range parts {
		tenant := p.String()
		b, err := m.Binding(ctx, tenant)
		if err != nil {
			return n, err
		}
		part, err := tenantPartition(tenant)
		if err != nil {
			continue
		}
		_, _, lerr := tablestore.Get[tenantLink](ctx, m.t, part, orgKeyPrefix+org.String())
		if lerr != nil && !errors.Is(lerr, tablestore.ErrNotFound) {
			return n, lerr
		}
		if (b == nil || b.Org != org.String()) && lerr != nil {
			continue
		}
		if err := m.Release(ctx, tenant, org); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
