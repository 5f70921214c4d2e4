package stakeholder_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// TestLookupsFindExactlyTheAskedKeys covers lookups across several 15-key chunks, keys that
// need escaping, and keys that are not there.
func TestLookupsFindExactlyTheAskedKeys(t *testing.T) {
	dir, org := newDir(t)
	var ext, mails []string
	want := map[string]string{}
	for i := range 40 {
		st := stakeholder.Stakeholder{ID: stakeholder.NewID(), FirstName: "P", LastName: fmt.Sprint(i), Email: fmt.Sprintf("p.%d+o'k@Example.test", i),
			Source: stakeholder.Entra, ExternalID: fmt.Sprintf("ext-%02d", i), Active: i%3 != 0, CreatedAt: time.Now()}
		create(t, dir, org, st)
		want[st.ExternalID] = st.ID
		if i%2 == 0 { // ask for half of them, plus unknown keys
			ext = append(ext, st.ExternalID)
			mails = append(mails, strings.ToUpper(st.Email))
		}
	}
	ext = append(ext, "nobody", "ext-99")
	mails = append(mails, "nobody@example.test")

	links, err := dir.Links(t.Context(), org, ext)
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 20 {
		t.Fatalf("Links found %d, want 20", len(links))
	}
	for k, l := range links {
		n := 0
		fmt.Sscanf(k, "ext-%d", &n)
		if l.ID != want[k] || l.Active != (n%3 != 0) || n%2 != 0 {
			t.Errorf("link %s = %+v", k, l)
		}
	}
	byMail, err := dir.ByEmails(t.Context(), org, mails)
	if err != nil {
		t.Fatal(err)
	}
	if len(byMail) != 20 || byMail["p.4+o'k@example.test"] != want["ext-04"] {
		t.Errorf("ByEmails found %d: %v", len(byMail), byMail)
	}
	other, _ := tablestore.NewOrg("other")
	if l, err := dir.Links(t.Context(), other, ext); err != nil || len(l) != 0 {
		t.Errorf("another org sees %d links, %v", len(l), err)
	}
}

func TestGetManyReadsWithETags(t *testing.T) {
	dir, org := newDir(t)
	var ids []string
	for i := range 20 {
		st := stakeholder.Stakeholder{ID: stakeholder.NewID(), FirstName: fmt.Sprint("P", i), Source: stakeholder.Manual, Active: true}
		create(t, dir, org, st)
		ids = append(ids, st.ID)
	}
	got, err := dir.GetMany(t.Context(), org, append(ids, "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("GetMany found %d, want 20", len(got))
	}
	one, etag, _ := dir.Get(t.Context(), org, ids[17])
	if v := got[ids[17]]; v.ETag != etag || v.Stakeholder.FirstName != one.FirstName {
		t.Errorf("GetMany[%s] = %+v, want ETag %s", ids[17], v, etag)
	}
}
