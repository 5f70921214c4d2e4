package stakeholder_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

// TestActiveSyncedNotSeenIn: a full run's unseen stakeholders are the active synced ones it did
// not mark seen, in the org asked for; manual, inactive and seen ones are not among them, nor
// one no full run ever marked, and only their identity is read.
func TestActiveSyncedNotSeenIn(t *testing.T) {
	dir, org := newDir(t)
	ctx := t.Context()
	other := tablestoretest.Org(t, "other")
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	const run = "run-2"
	derived := "6f1c2b3a-0000-4000-8000-00000000000a" // an object id: the stakeholder's id derives from it
	for _, st := range []stakeholder.Stakeholder{
		{ID: stakeholder.SyncedID(derived), ExternalID: derived, Source: stakeholder.Entra, Active: true, SeenRun: "run-1"},
		{ID: "linked", ExternalID: "ext-linked", Source: stakeholder.Entra, Active: true, SeenRun: "run-1"},
		{ID: "seen", ExternalID: "ext-seen", Source: stakeholder.Entra, Active: true, SeenRun: "run-1"},
		{ID: "inactive", ExternalID: "ext-inactive", Source: stakeholder.Entra, Active: false, DeactivatedReason: "disabled", SeenRun: "run-1"},
		{ID: "manual", Source: stakeholder.Manual, Active: true},
		{ID: "never-marked", ExternalID: "ext-never-marked", Source: stakeholder.Entra, Active: true}, // no seenRun property
	} {
		st.FirstName, st.Email, st.CreatedAt = "P", st.ID+"@example.org", now
		create(t, dir, org, st)
	}
	elsewhere := stakeholder.Stakeholder{ID: "elsewhere", ExternalID: "ext-elsewhere", Source: stakeholder.Entra, Active: true, SeenRun: "run-1"}
	create(t, dir, other, elsewhere)
	if err := dir.Apply(ctx, org, []tablestore.Op{stakeholder.MarkSeenOp("seen", run)}); err != nil {
		t.Fatal(err)
	}

	got := map[string]stakeholder.Stakeholder{}
	for st, err := range dir.ActiveSyncedNotSeenIn(ctx, org, run) {
		if err != nil {
			t.Fatal(err)
		}
		got[st.ID] = st
	}
	// "never-marked" has no seenRun property: a full round that did not see it must find it too.
	if ids, want := slices.Sorted(maps.Keys(got)), []string{stakeholder.SyncedID(derived), "linked", "never-marked"}; !slices.Equal(ids, want) {
		t.Fatalf("ActiveSyncedNotSeenIn(%s) = %v, want %v", run, ids, want)
	}
	if st := got["linked"]; st.ExternalID != "ext-linked" || st.SeenRun != "run-1" || st.FirstName != "" || st.Email != "" {
		t.Errorf("unseen stakeholder read as %+v, want its id, Entra id and last run only", st)
	}
}
