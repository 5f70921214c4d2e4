package tablestore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/storetest"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// TestStore runs the conformance suite against Azurite.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *tablestore.Store { return tablestoretest.Open(t) })
}

// A table deleted behind a Store's back (here by another Store with the same prefix) costs one failed
// operation (ErrNotFound); the next one creates it again.
func TestTableRecreatedAfterExternalDelete(t *testing.T) {
	conn, prefix := azuritetest.Start(t), azuritetest.Prefix()
	open := func() *tablestore.Store {
		s, err := tablestore.Open(t.Context(), tablestore.Config{ConnectionString: conn, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1, s2 := open(), open()
	t.Cleanup(func() { s1.DropTables(context.Background()) })
	org, _ := tablestore.NewOrg("acme")
	tbl := s1.Table("items")
	if _, err := tbl.Insert(t.Context(), org, "k", struct{}{}); err != nil {
		t.Fatal(err)
	}
	if err := s2.DropTables(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Insert(t.Context(), org, "k", struct{}{}); !errors.Is(err, tablestore.ErrNotFound) {
		t.Fatalf("Insert into a deleted table: err = %v, want ErrNotFound", err)
	}
	if _, err := tbl.Insert(t.Context(), org, "k", struct{}{}); err != nil {
		t.Fatalf("Insert after the table vanished: %v", err)
	}
}
