package org_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/org"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"acme", true}, {"org-a", true}, {"org_1", true}, {"9lives", true},
		{"", false}, {".", false}, {"..", false}, {"a.b", false}, {"%2e%2e", false}, {"%2E", false},
		{"a/b", false}, {`a\b`, false}, {" acme", false}, {"acme ", false}, {"ac me", false}, {"a\tb", false},
		{"Acme", false}, {"ACME", false}, {"-acme", false}, {"_acme", false}, {"it's", false},
		{"acm\u00e9", false}, {"a\u0131", false}, {string(make([]byte, 64)), false},
		{"a123456789012345678901234567890123456789012345678901234567890bc", true},   // 63
		{"a1234567890123456789012345678901234567890123456789012345678901bc", false}, // 64
	} {
		_, err := org.ParseID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ParseID(%q) = %v, want ok %v", tc.id, err, tc.ok)
		}
		var inv org.Invalid
		if err != nil && (!errors.As(err, &inv) || inv[0].Field != "org") {
			t.Errorf("ParseID(%q) = %v, want Invalid naming org", tc.id, err)
		}
	}
}

func TestRegistrationValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reg    org.Registration
		fields []string
	}{
		{"ok", org.Registration{"Acme Ltd", "Europe/Paris"}, nil},
		{"utc", org.Registration{"Acme", "UTC"}, nil},
		{"empty", org.Registration{}, []string{"displayName", "timeZone"}},
		{"blank name", org.Registration{"  ", "UTC"}, []string{"displayName"}},
		{"control", org.Registration{"a\x00b", "UTC"}, []string{"displayName"}},
		{"long", org.Registration{string(make([]rune, 201)), "UTC"}, []string{"displayName"}},
		{"Local", org.Registration{"Acme", "Local"}, []string{"timeZone"}},
		{"unknown zone", org.Registration{"Acme", "Mars/Olympus"}, []string{"timeZone"}},
		{"path zone", org.Registration{"Acme", "../etc/passwd"}, []string{"timeZone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.reg.Validate()
			var inv org.Invalid
			errors.As(err, &inv)
			var got []string
			for _, f := range inv {
				got = append(got, f.Field)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.fields) {
				t.Errorf("Validate() fields = %v, want %v (%v)", got, tc.fields, err)
			}
		})
	}
}

// releaser stands in for consent.Flow: it records the orgs it released, failing while fail > 0.
type releaser struct {
	fail      int
	released  []string
	forgotten []string
}

func (r *releaser) Forget(_ context.Context, o tablestore.Org) (int, error) {
	r.forgotten = append(r.forgotten, o.String())
	return 0, nil
}

func (r *releaser) Disconnect(_ context.Context, o tablestore.Org) error {
	if r.fail > 0 {
		r.fail--
		return errors.New("token endpoint down")
	}
	r.released = append(r.released, o.String())
	return nil
}

type subs struct{ n int }

func (s subs) RemoveSubscriptions(context.Context, tablestore.Org) (int, error) { return s.n, nil }

func TestRegisterGetUpdate(t *testing.T) {
	s := tablestoretest.Open(t)
	reg := org.New(org.Config{Store: s, Tenant: &releaser{}})
	ctx, acme := t.Context(), tablestoretest.Org(t, "acme")
	if _, err := reg.Active(ctx, acme); !errors.Is(err, org.ErrNotFound) {
		t.Fatalf("Active before registration = %v, want ErrNotFound", err)
	}
	o, created, err := reg.Register(ctx, acme, org.Registration{"Acme", "Europe/Paris"})
	if err != nil || !created || o.State != org.Active || o.TimeZone != "Europe/Paris" {
		t.Fatalf("Register = %+v, %v, %v", o, created, err)
	}
	o, created, err = reg.Register(ctx, acme, org.Registration{"Acme Ltd", "Europe/Paris"})
	if err != nil || created || o.DisplayName != "Acme Ltd" {
		t.Fatalf("second Register = %+v, %v, %v", o, created, err)
	}
	got, err := reg.Active(ctx, acme)
	if err != nil || got.DisplayName != "Acme Ltd" || !got.CreatedAt.Equal(o.CreatedAt) {
		t.Fatalf("Active = %+v, %v", got, err)
	}
	if _, _, err := reg.Register(ctx, acme, org.Registration{"", "x"}); !errors.As(err, new(org.Invalid)) {
		t.Fatalf("invalid Register = %v", err)
	}
}

// TestEraseRemovesEveryRowOfTheOrgOnly seeds rows in tables no list in the org package names (a
// table added later must not be forgotten), lets the first attempt fail half-way, and checks the
// org answers "erasing" meanwhile, a second Erase finishes, and the other org keeps everything.
func TestEraseRemovesEveryRowOfTheOrgOnly(t *testing.T) {
	s := tablestoretest.Open(t)
	rel := &releaser{fail: 1}
	reg := org.New(org.Config{Store: s, Tenant: rel, Subscriptions: subs{n: 2}})
	ctx, acme, globex := t.Context(), tablestoretest.Org(t, "acme"), tablestoretest.Org(t, "globex")
	for _, o := range []tablestore.Org{acme, globex} {
		if _, _, err := reg.Register(ctx, o, org.Registration{o.String(), "UTC"}); err != nil {
			t.Fatal(err)
		}
	}
	seed := map[string]int{"stakeholders": 1234, "syncruns": 3, "somefuturetable": 2}
	for name, n := range seed {
		var ops []tablestore.Op
		for i := range n {
			ops = append(ops, tablestore.InsertOp(fmt.Sprintf("k%05d", i), map[string]int{"i": i}))
		}
		for _, o := range []tablestore.Org{acme, globex} {
			if err := s.Table(name).Batch(ctx, o, ops); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A table the registry's process never opened: Erase must find it in the account.
	other, err := tablestore.Open(ctx, tablestore.Config{ConnectionString: azuritetest.Start(t), Prefix: s.Prefix()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Table("unopened").Insert(ctx, acme, "k", map[string]int{"i": 1}); err != nil {
		t.Fatal(err)
	}

	if _, err := reg.Erase(ctx, acme); err == nil {
		t.Fatal("first Erase succeeded despite the failing tenant release")
	}
	if _, err := reg.Active(ctx, acme); !errors.Is(err, org.ErrErasing) {
		t.Fatalf("Active while erasing = %v, want ErrErasing", err)
	}
	if _, _, err := reg.Register(ctx, acme, org.Registration{"acme", "UTC"}); !errors.Is(err, org.ErrErasing) {
		t.Fatalf("Register while erasing = %v, want ErrErasing", err)
	}
	if got, err := reg.Filter(ctx, []tablestore.Org{acme, globex}); err != nil || len(got) != 1 || got[0] != globex {
		t.Fatalf("Filter while erasing = %v, %v, want [globex]", got, err)
	}

	rep, err := reg.Erase(ctx, acme)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"stakeholders": 1234, "syncruns": 3, "somefuturetable": 2, "unopened": 1, org.Table: 1}
	if fmt.Sprint(rep.Rows) != fmt.Sprint(want) || rep.TotalRows != 1241 || !rep.TenantReleased || rep.Subscriptions != 2 {
		t.Errorf("report = %+v, want rows %v", rep, want)
	}
	if fmt.Sprint(rel.released) != "[acme]" {
		t.Errorf("released %v, want [acme]", rel.released)
	}
	if _, err := reg.Get(ctx, acme); !errors.Is(err, org.ErrNotFound) {
		t.Errorf("Get after erasure = %v, want ErrNotFound", err)
	}
	if _, err := reg.Erase(ctx, acme); !errors.Is(err, org.ErrNotFound) {
		t.Errorf("Erase after erasure = %v, want ErrNotFound", err)
	}
	for _, name := range []string{"stakeholders", "syncruns", "somefuturetable", "unopened", org.Table} {
		if n := tablestoretest.Count(t, s.Table(name), acme); n != 0 {
			t.Errorf("%s still holds %d rows of acme", name, n)
		}
	}
	for name, n := range seed {
		if got := tablestoretest.Count(t, s.Table(name), globex); got != n {
			t.Errorf("%s holds %d rows of globex, want %d", name, got, n)
		}
	}
	if _, err := reg.Active(ctx, globex); err != nil {
		t.Errorf("globex after acme's erasure: %v", err)
	}
}

// TestActiveOrgsDropsUnregisteredAndErased is the scheduler's org list: settings may outlive a
// registration (or predate it); only active orgs are scheduled.
func TestActiveOrgsDropsUnregisteredAndErased(t *testing.T) {
	s := tablestoretest.Open(t)
	reg := org.New(org.Config{Store: s, Tenant: &releaser{}})
	ctx := t.Context()
	a, b, c := tablestoretest.Org(t, "a"), tablestoretest.Org(t, "b"), tablestoretest.Org(t, "c")
	for _, o := range []tablestore.Org{a, b} {
		if _, _, err := reg.Register(ctx, o, org.Registration{o.String(), "UTC"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.Erase(ctx, b); err != nil {
		t.Fatal(err)
	}
	list := reg.ActiveOrgs(func(context.Context) ([]tablestore.Org, error) { return []tablestore.Org{a, b, c}, nil })
	got, err := list(ctx)
	if err != nil || fmt.Sprint(got) != fmt.Sprint([]tablestore.Org{a}) {
		t.Errorf("ActiveOrgs = %v, %v; want [a]", got, err)
	}
}

// TestEraseLeavesTablesNotPartitionedByOrg: an org whose id is some tenant's id must not take
// that tenant's binding (partitioned by tenant id) with it.
func TestEraseLeavesTablesNotPartitionedByOrg(t *testing.T) {
	s := tablestoretest.Open(t)
	reg := org.New(org.Config{Store: s, Tenant: &releaser{}})
	ctx := t.Context()
	tenant := tablestoretest.Org(t, "11111111-2222-3333-4444-555555555555")
	if _, _, err := reg.Register(ctx, tenant, org.Registration{"Look-alike", "UTC"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Table("tenantbindings").Insert(ctx, tenant, "binding", map[string]string{"org": "victim"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Erase(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if n := tablestoretest.Count(t, s.Table("tenantbindings"), tenant); n != 1 {
		t.Errorf("the tenant's binding was erased with a look-alike org (%d rows left)", n)
	}
}
