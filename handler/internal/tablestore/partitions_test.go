package tablestore_test

import (
	"slices"
	"testing"

	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

func TestPartitionsListsOrgsOnce(t *testing.T) {
	tbl := tablestoretest.Open(t).Table("settings")
	for _, o := range []string{"acme", "globex", "acme"} {
		org, _ := tablestore.NewOrg(o)
		if _, err := tbl.Upsert(t.Context(), org, "k"+o+string(rune('0'+len(o))), map[string]string{"v": o}, tablestore.Replace); err != nil {
			t.Fatal(err)
		}
	}
	acme, _ := tablestore.NewOrg("acme")
	tbl.Upsert(t.Context(), acme, "second", map[string]string{"v": "x"}, tablestore.Replace)
	orgs, err := tbl.Partitions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range orgs {
		names = append(names, o.String())
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"acme", "globex"}) {
		t.Errorf("Partitions = %v, want [acme globex]", names)
	}
}
