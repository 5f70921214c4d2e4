package stakeholder_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// TestConflictRows covers open conflicts in the store: they page in id order apart from the
// stakeholders and index rows beside them, closing a missing one fails nothing, and deleting a
// stakeholder closes its conflict.
func TestConflictRows(t *testing.T) {
	dir, org := newDir(t)
	since := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 5 {
		st := stakeholder.Stakeholder{ID: stakeholder.NewID(), FirstName: "P", LastName: fmt.Sprint(i), Email: fmt.Sprintf("p%d@example.test", i),
			Source: stakeholder.Manual, Active: true, CreatedAt: since}
		create(t, dir, org, st)
		base := "Ops"
		c := stakeholder.Conflict{StakeholderID: st.ID, ExternalID: fmt.Sprintf("u%d", i), Name: "P", Since: since.Add(time.Duration(i) * time.Hour),
			Fields: []stakeholder.ConflictField{{Field: stakeholder.Department, Base: &base, Entra: "E", Leap: "L"}}, Entra: stakeholder.Values{stakeholder.Department: "E"}}
		if err := dir.Apply(t.Context(), org, []tablestore.Op{stakeholder.ConflictOp(c)}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, st.ID)
	}
	slices.Sort(ids)

	var got []string
	after := ""
	for range 10 {
		page, next, err := dir.Conflicts(t.Context(), org, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			got = append(got, c.StakeholderID)
			if len(c.Fields) != 1 || *c.Fields[0].Base != "Ops" || c.Entra[stakeholder.Department] != "E" {
				t.Errorf("conflict read back as %+v", c)
			}
		}
		if after = next; next == "" {
			break
		}
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("paged conflicts = %v, want %v", got, ids)
	}
	if list, _, _ := dir.List(t.Context(), org, stakeholder.ListOptions{Limit: 100}); len(list) != 5 {
		t.Errorf("the directory lists %d stakeholders, want 5 (conflict rows are not stakeholders)", len(list))
	}

	// Closing a conflict that is not there fails nothing; deleting a stakeholder closes its own.
	if err := dir.Apply(t.Context(), org, []tablestore.Op{stakeholder.ClearConflictOp(ids[0])}); err != nil {
		t.Fatal(err)
	}
	if err := dir.Apply(t.Context(), org, []tablestore.Op{stakeholder.ClearConflictOp(ids[0])}); err != nil {
		t.Errorf("closing a closed conflict: %v", err)
	}
	if err := dir.Delete(t.Context(), org, ids[1], ""); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Conflict(t.Context(), org, ids[1]); !errors.Is(err, stakeholder.ErrNoConflict) {
		t.Errorf("conflict of a deleted stakeholder: err = %v, want ErrNoConflict", err)
	}
	open, err := dir.OpenConflicts(t.Context(), org)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 3 || open[ids[0]] != (time.Time{}) || open[ids[1]] != (time.Time{}) {
		t.Errorf("open conflicts = %v, want the 3 left", open)
	}
	for id, at := range open {
		if at.Before(since) {
			t.Errorf("conflict %s: since %v, want as stored", id, at)
		}
	}
}

// TestCloseConflictAtETag: a conflict read with its ETag closes only while its row is that
// version; a row rewritten (a sync refreshed it) or removed meanwhile fails the whole
// transaction with ErrConflict, the stakeholder's write included.
func TestCloseConflictAtETag(t *testing.T) {
	dir, org := newDir(t)
	st := stakeholder.Stakeholder{ID: stakeholder.NewID(), FirstName: "P", LastName: "Q", Email: "pq@example.test", Source: stakeholder.Manual, Active: true}
	etag := create(t, dir, org, st)
	c := stakeholder.Conflict{StakeholderID: st.ID, ExternalID: "u1", Entra: stakeholder.Values{stakeholder.Role: "E1"}}
	if err := dir.Apply(t.Context(), org, []tablestore.Op{stakeholder.ConflictOp(c)}); err != nil {
		t.Fatal(err)
	}
	read, err := dir.Conflict(t.Context(), org, st.ID)
	if err != nil || read.ETag == "" || read.Entra[stakeholder.Role] != "E1" {
		t.Fatalf("Conflict = %+v, %v; want the row with its ETag", read, err)
	}
	next := st
	next.Role = "resolved"
	write := func() error {
		return dir.Apply(t.Context(), org, append(stakeholder.Ops(next, &st, etag), stakeholder.CloseConflictOp(st.ID, read.ETag)))
	}

	c.Entra = stakeholder.Values{stakeholder.Role: "E2"} // refreshed meanwhile
	if err := dir.Apply(t.Context(), org, []tablestore.Op{stakeholder.ConflictOp(c)}); err != nil {
		t.Fatal(err)
	}
	if err := write(); !errors.Is(err, tablestore.ErrConflict) {
		t.Errorf("closing a refreshed conflict: err = %v, want ErrConflict", err)
	}
	if err := dir.Apply(t.Context(), org, []tablestore.Op{stakeholder.ClearConflictOp(st.ID)}); err != nil {
		t.Fatal(err)
	}
	if err := write(); !errors.Is(err, tablestore.ErrConflict) {
		t.Errorf("closing a conflict closed meanwhile: err = %v, want ErrConflict", err)
	}
	if got, now, err := dir.Get(t.Context(), org, st.ID); err != nil || now != etag || got.Role != "" {
		t.Errorf("the stakeholder was written by a failed transaction: %+v, %v", got, err)
	}
}
