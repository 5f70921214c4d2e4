package changes

import (
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// rig is a store on a Table Storage of the test's own, with a clock that advances a second at
// every reading (so later writes are newer), and org "acme".
type rig struct {
	s   *Store
	ts  *tablestore.Store
	tbl *tablestore.Table
	org tablestore.Org
}

func newRig(t *testing.T) rig {
	t.Helper()
	ts := tablestoretest.Open(t)
	clock := testenv.Ticking(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), time.Second)
	return rig{s: NewStore(ts).WithClock(clock), ts: ts, tbl: ts.Table(Table), org: tablestoretest.Org(t, "acme")}
}

// put stores c, failing the test on an error.
func (r rig) put(t *testing.T, c Change) (Change, string) {
	t.Helper()
	got, tag, _, err := r.s.Put(t.Context(), r.org, c, "")
	if err != nil {
		t.Fatalf("Put(%s): %v", c.ID, err)
	}
	return got, tag
}

// keys lists every row key of the org, in order.
func (r rig) keys(t *testing.T) []string {
	t.Helper()
	var out []string
	for row, err := range tablestore.Query[map[string]any](t.Context(), r.tbl, r.org, tablestore.QueryOptions{Select: []string{"id"}}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, row.Key)
	}
	return out
}
