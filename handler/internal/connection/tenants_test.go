package connection_test

import (
	"slices"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

const (
	tenantA = "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b"
	tenantB = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
)

func orgsOf(t *testing.T, m *connection.Tenants, tenant string) []string {
	t.Helper()
	orgs, err := m.Orgs(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range orgs {
		out = append(out, o.String())
	}
	slices.Sort(out)
	return out
}

// TestTenantMapping: a claim decides, completing records the org for the inbound lookup,
// another org is refused unless an operator shared the tenant, a stale unfinished claim is taken
// over, release frees the tenant, and Forget sweeps what a dead flow left behind.
func TestTenantMapping(t *testing.T) {
	store := tablestoretest.Open(t)
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	m := connection.NewTenants(store, func() time.Time { return now })
	ctx := t.Context()
	acme, _ := tablestore.NewOrg("acme")
	other, _ := tablestore.NewOrg("other")

	if got := orgsOf(t, m, tenantA); len(got) != 0 {
		t.Fatalf("an unbound tenant maps to %v", got)
	}
	if ok, err := m.Claim(ctx, tenantA, acme, false); !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	if got := orgsOf(t, m, tenantA); len(got) != 0 {
		t.Errorf("an unfinished claim maps the tenant to %v", got)
	}
	if ok, _ := m.Claim(ctx, tenantA, other, false); ok {
		t.Error("another org claimed a tenant held by a fresh claim")
	}
	if err := m.Complete(ctx, tenantA, acme, false); err != nil {
		t.Fatal(err)
	}
	// Tenant ids are matched case-insensitively.
	if got := orgsOf(t, m, "3B9E7C21-4F0A-4D6B-9A8E-5C1D2E3F4A5B"); !slices.Equal(got, []string{"acme"}) {
		t.Errorf("Orgs = %v, want [acme]", got)
	}
	now = now.Add(time.Hour)
	if ok, _ := m.Claim(ctx, tenantA, other, false); ok {
		t.Error("another org claimed a connected tenant")
	}
	// An operator's decision lets a second org connect too; the binding stays acme's.
	if _, err := store.Table(connection.TenantsTable).Insert(ctx, mustShared(t, tenantA), connection.SharedKey, map[string]string{"decidedBy": "ops"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := m.Claim(ctx, tenantA, other, true); !ok || err != nil {
		t.Fatalf("shared Claim = %v, %v", ok, err)
	}
	if err := m.Complete(ctx, tenantA, other, true); err != nil {
		t.Fatal(err)
	}
	if got := orgsOf(t, m, tenantA); !slices.Equal(got, []string{"acme", "other"}) {
		t.Errorf("Orgs of a shared tenant = %v, want [acme other]", got)
	}
	if err := m.Release(ctx, tenantA, acme); err != nil {
		t.Fatal(err)
	}
	if b, _ := m.Binding(ctx, tenantA); b != nil {
		t.Errorf("binding after release = %+v", b)
	}
	if got := orgsOf(t, m, tenantA); !slices.Equal(got, []string{"other"}) {
		t.Errorf("Orgs after acme released = %v, want [other]", got)
	}

	// A claim that never completed is taken over after the grace period…
	if ok, _ := m.Claim(ctx, tenantB, acme, false); !ok {
		t.Fatal("claim of a free tenant refused")
	}
	now = now.Add(connection.ClaimGrace + time.Minute)
	if ok, _ := m.Claim(ctx, tenantB, other, false); !ok {
		t.Error("a stale unfinished claim was not taken over")
	}
	if err := m.Complete(ctx, tenantB, acme, false); err == nil {
		t.Error("completing a lost claim succeeded")
	}
	// …and Forget sweeps what names an org wherever it is, leaving the rest.
	if ok, _ := m.Claim(ctx, tenantA, acme, true); !ok {
		t.Fatal("claim refused")
	}
	if err := m.Complete(ctx, tenantA, acme, true); err != nil {
		t.Fatal(err)
	}
	n, err := m.Forget(ctx, other)
	if err != nil || n != 2 {
		t.Errorf("Forget(other) = %d, %v; want the two tenants it held", n, err)
	}
	if got := orgsOf(t, m, tenantA); !slices.Equal(got, []string{"acme"}) {
		t.Errorf("Orgs after Forget(other) = %v, want [acme]", got)
	}
	if b, _ := m.Binding(ctx, tenantB); b != nil {
		t.Errorf("other's claim on tenant B survived Forget: %+v", b)
	}
}

// TestDisconnectReleasesBeforeForgetting: the tenant is released while the record still names
// it, so a Disconnect cut short is finished by the next one.
func TestDisconnectReleasesBeforeForgetting(t *testing.T) {
	store := tablestoretest.Open(t)
	conns := connection.NewStore(store)
	acme, _ := tablestore.NewOrg("acme")
	ctx := t.Context()
	if ok, _ := conns.Tenants().Claim(ctx, tenantA, acme, false); !ok {
		t.Fatal("claim refused")
	}
	if err := conns.Tenants().Complete(ctx, tenantA, acme, false); err != nil {
		t.Fatal(err)
	}
	if _, err := conns.Put(ctx, acme, connection.Record{Status: connection.Connected, TenantID: tenantA}, ""); err != nil {
		t.Fatal(err)
	}
	// A Disconnect that stops after releasing (as if the process died): the record still names
	// the tenant, so the retry has what it needs.
	if err := conns.Tenants().Release(ctx, tenantA, acme); err != nil {
		t.Fatal(err)
	}
	if rec, _, _ := conns.Get(ctx, acme); rec.TenantID != tenantA {
		t.Fatalf("record = %+v", rec)
	}
	if err := conns.Disconnect(ctx, acme, time.Now()); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := conns.Get(ctx, acme)
	if rec.Status != connection.Disconnected || rec.TenantID != "" {
		t.Errorf("record after Disconnect = %+v", rec)
	}
	if got := orgsOf(t, conns.Tenants(), tenantA); len(got) != 0 {
		t.Errorf("tenant still maps to %v", got)
	}
}

func mustShared(t *testing.T, tenant string) tablestore.Shared {
	t.Helper()
	p, err := tablestore.NewShared("tenant", tenant)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
