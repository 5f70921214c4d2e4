// Package tablestoretest gives a test a Table Storage of its own: Azurite (see azuritetest, whose
// Main the test binary's TestMain must call), a table prefix no other test uses, and the tables
// dropped when the test ends.
package tablestoretest

import (
	"context"
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Open returns a store on Azurite under a fresh prefix; its tables are dropped at cleanup.
func Open(t testing.TB) *tablestore.Store {
	t.Helper()
	store, err := tablestore.Open(t.Context(), tablestore.Config{ConnectionString: azuritetest.Start(t), Prefix: azuritetest.Prefix()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.DropTables(context.Background()); err != nil {
			t.Logf("dropping the test's tables: %v", err)
		}
	})
	return store
}

// Org returns the org id as a tablestore.Org, failing the test if it is not one.
func Org(t testing.TB, id string) tablestore.Org {
	t.Helper()
	o, err := tablestore.NewOrg(id)
	if err != nil {
		t.Fatalf("org %q: %v", id, err)
	}
	return o
}

// Count counts the entities of part in tbl, failing the test on an error.
func Count(t testing.TB, tbl *tablestore.Table, part tablestore.Partition) int {
	t.Helper()
	n := 0
	for _, err := range tablestore.Query[map[string]any](t.Context(), tbl, part, tablestore.QueryOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}
