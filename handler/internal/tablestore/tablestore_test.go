package tablestore_test

import (
	"context"
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/storetest"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// TestStore runs the conformance suite against Azurite.
func TestStore(t *testing.T) {
	conn := azuritetest.Start(t)
	storetest.Run(t, func(t *testing.T) *tablestore.Store {
		s, err := tablestore.Open(t.Context(), tablestore.Config{ConnectionString: conn, Prefix: azuritetest.Prefix()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.DropTables(context.Background()); err != nil {
				t.Errorf("DropTables: %v", err)
			}
		})
		return s
	})
}
