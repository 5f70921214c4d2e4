package stakeholder_test

import (
	"errors"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// TestIndexFollowsTheStakeholder: the email and Entra index rows change with the stakeholder in
// one transaction; a taken address fails the whole write.
func TestIndexFollowsTheStakeholder(t *testing.T) {
	s, org := newDir(t)
	ctx := t.Context()
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	a := stakeholder.Stakeholder{ID: stakeholder.NewID(), FirstName: "Ann", Email: "Ann@Example.org", Source: stakeholder.Entra, ExternalID: "ext-a", Active: true, CreatedAt: now}
	etag := create(t, s, org, a)
	if id, _ := s.Lookup(ctx, org, "", "ann@example.org"); id != a.ID {
		t.Errorf("lookup by email (other case) = %q, want %s", id, a.ID)
	}
	b := stakeholder.Stakeholder{ID: stakeholder.NewID(), FirstName: "Bo", Email: "ANN@example.org", Source: stakeholder.Manual, Active: true}
	if _, err := s.Save(ctx, org, b, nil, ""); !errors.Is(err, stakeholder.ErrEmailInUse) {
		t.Fatalf("second stakeholder with the same address: %v, want ErrEmailInUse", err)
	}
	if _, _, err := s.Get(ctx, org, b.ID); !errors.Is(err, stakeholder.ErrNotFound) {
		t.Errorf("the refused stakeholder was stored: %v", err)
	}

	// Rename and deactivate: the old address is free, the Entra row carries the state.
	next := a
	next.Email, next.Active, next.DeactivatedReason = "anna@example.org", false, "disabled"
	if _, err := s.Save(ctx, org, next, &a, etag); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, org, next, &a, etag); !errors.Is(err, tablestore.ErrConflict) {
		t.Errorf("write with a stale ETag = %v, want ErrConflict", err)
	}
	ix, err := s.LoadIndex(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	if ix.ByEmail["anna@example.org"] != a.ID || ix.ByEmail["ann@example.org"] != "" || len(ix.ByEmail) != 1 {
		t.Errorf("email index = %v", ix.ByEmail)
	}
	if l := ix.ByExternal["ext-a"]; l.ID != a.ID || l.Active || l.Reason != "disabled" {
		t.Errorf("Entra index = %+v", l)
	}
	if _, err := s.Save(ctx, org, b, nil, ""); err != nil {
		t.Errorf("the freed address could not be taken: %v", err)
	}
	if err := s.Delete(ctx, org, a.ID, ""); !errors.Is(err, stakeholder.ErrSynced) {
		t.Errorf("delete of a synced stakeholder = %v, want ErrSynced", err)
	}
	if err := s.Delete(ctx, org, b.ID, ""); err != nil {
		t.Fatal(err)
	}
	if id, _ := s.Lookup(ctx, org, "", "ann@example.org"); id != "" {
		t.Errorf("deleted stakeholder's address still finds %q", id)
	}
}
