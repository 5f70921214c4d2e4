package connection_test

import (
	"errors"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

func TestRecordLifecycle(t *testing.T) {
	store := tablestoretest.Open(t)
	conns := connection.NewStore(store)
	acme, _ := tablestore.NewOrg("acme")
	other, _ := tablestore.NewOrg("other")

	rec, etag, err := conns.Get(t.Context(), acme)
	if err != nil || rec.Status != connection.Disconnected || etag != "" {
		t.Fatalf("missing record = %+v %q %v, want disconnected with no ETag", rec, etag, err)
	}
	if _, err := conns.Tenant(t.Context(), acme); !errors.Is(err, connection.ErrNotConnected) {
		t.Errorf("Tenant of an unconnected org: %v, want ErrNotConnected", err)
	}

	now := time.Now().UTC().Truncate(time.Millisecond)
	etag, err = conns.Put(t.Context(), acme, connection.Record{Status: connection.Connected, TenantID: "t-1", Granted: []string{"User.Read.All"}, ConnectedAt: now}, "")
	if err != nil {
		t.Fatal(err)
	}
	if tenant, err := conns.Tenant(t.Context(), acme); err != nil || tenant != "t-1" {
		t.Errorf("Tenant = %q, %v; want t-1", tenant, err)
	}
	if _, err := conns.Put(t.Context(), acme, connection.Record{Status: connection.Pending}, ""); !errors.Is(err, tablestore.ErrConflict) {
		t.Errorf("second create: %v, want ErrConflict", err)
	}
	// A writer holding the old ETag must not overwrite a newer record.
	if _, err := conns.Put(t.Context(), acme, connection.Record{Status: connection.NeedsReauthorization, TenantID: "t-1"}, etag); err != nil {
		t.Fatal(err)
	}
	if _, err := conns.Put(t.Context(), acme, connection.Record{Status: connection.Connected, TenantID: "t-1"}, etag); !errors.Is(err, tablestore.ErrConflict) {
		t.Errorf("stale ETag write: %v, want ErrConflict", err)
	}
	got, _, err := conns.Get(t.Context(), acme)
	if err != nil || got.Status != connection.NeedsReauthorization {
		t.Errorf("record = %+v, %v; want needs_reauthorization", got, err)
	}
	if rec, _, _ := conns.Get(t.Context(), other); rec.Status != connection.Disconnected {
		t.Errorf("org other sees %+v", rec)
	}
}

func TestNeedsReauthorization(t *testing.T) {
	store := tablestoretest.Open(t)
	conns := connection.NewStore(store)
	acme, _ := tablestore.NewOrg("acme")
	gone, _ := tablestore.NewOrg("gone")
	if _, err := conns.Put(t.Context(), acme, connection.Record{Status: connection.Connected, TenantID: "t-1"}, ""); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := conns.NeedsReauthorization(t.Context(), acme, "AADSTS7000222: secret expired", now); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := conns.Get(t.Context(), acme)
	if rec.Status != connection.NeedsReauthorization || rec.LastError != "AADSTS7000222: secret expired" || rec.ErrorHint == "" {
		t.Errorf("record = %+v", rec)
	}
	if _, err := conns.Tenant(t.Context(), acme); !errors.Is(err, connection.ErrNotConnected) {
		t.Errorf("a connection needing re-authorization must not be used: %v", err)
	}
	// A disconnected org stays disconnected.
	if err := conns.NeedsReauthorization(t.Context(), gone, "x", now); err != nil {
		t.Fatal(err)
	}
	if rec, _, _ := conns.Get(t.Context(), gone); rec.Status != connection.Disconnected {
		t.Errorf("disconnected org became %s", rec.Status)
	}
}
