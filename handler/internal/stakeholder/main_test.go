package stakeholder_test

import (
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// newDir returns a stakeholder directory on a Table Storage of the test's own, and org "acme".
func newDir(t *testing.T) (*stakeholder.Store, tablestore.Org) {
	t.Helper()
	return stakeholder.NewStore(tablestoretest.Open(t)), tablestoretest.Org(t, "acme")
}

// create saves a new stakeholder of org and returns its ETag.
func create(t *testing.T, dir *stakeholder.Store, org tablestore.Org, st stakeholder.Stakeholder) tablestore.ETag {
	t.Helper()
	etag, err := dir.Save(t.Context(), org, st, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return etag
}
