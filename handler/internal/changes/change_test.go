package changes

import (
	"slices"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/fielderr"
)

func valid() Change {
	return Change{ID: "CH-1", Title: "Office move", Status: Planned}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*Change)
		fields []string // the fields named, in order; none: valid
	}{
		{"minimal", func(*Change) {}, nil},
		{"everything", func(c *Change) {
			c.Description = "Line one\r\nLine\ttwo"
			c.ImpactedGroupIDs = []string{"e0123", "grp_2"}
			c.ImpactedStakeholderIDs = []string{"abcdefgh12345678"}
			c.Owner = Owner{Name: "Ada Lovelace", Email: "ada@contoso.example"}
			c.StartDate, c.EndDate = "2026-03-01", "2026-03-01"
			c.URL = "https://app.leapchange.example/changes/CH-1"
		}, nil},
		{"empty id", func(c *Change) { c.ID = "" }, []string{"id"}},
		{"id too long", func(c *Change) { c.ID = strings.Repeat("a", 65) }, []string{"id"}},
		{"id 64", func(c *Change) { c.ID = strings.Repeat("a", 64) }, nil},
		{"id with slash", func(c *Change) { c.ID = "a/b" }, []string{"id"}},
		{"id dots", func(c *Change) { c.ID = ".." }, []string{"id"}},
		{"id accent", func(c *Change) { c.ID = "café" }, []string{"id"}},
		{"no title", func(c *Change) { c.Title = "  " }, []string{"title"}},
		{"title 200 runes", func(c *Change) { c.Title = strings.Repeat("é", 200) }, nil},
		{"title 201", func(c *Change) { c.Title = strings.Repeat("a", 201) }, []string{"title"}},
		{"title newline", func(c *Change) { c.Title = "a\nb" }, []string{"title"}},
		{"no status", func(c *Change) { c.Status = "" }, []string{"status"}},
		{"odd status", func(c *Change) { c.Status = "done" }, []string{"status"}},
		{"description 4000", func(c *Change) { c.Description = strings.Repeat("ü", 4000) }, nil},
		{"description 4001", func(c *Change) { c.Description = strings.Repeat("a", 4001) }, []string{"description"}},
		{"description control", func(c *Change) { c.Description = "bell\a" }, []string{"description"}},
		{"bad group id", func(c *Change) { c.ImpactedGroupIDs = []string{"ok", "not ok"} }, []string{"impactedGroupIds[1]"}},
		{"too many groups", func(c *Change) { c.ImpactedGroupIDs = n("g", MaxImpactedGroups+1) }, []string{"impactedGroupIds"}},
		{"repeats do not count", func(c *Change) {
			ids := n("s", MaxImpactedStakeholders)
			c.ImpactedStakeholderIDs = append(ids, ids[0], ids[1])
		}, nil},
		{"too many stakeholders", func(c *Change) { c.ImpactedStakeholderIDs = n("s", MaxImpactedStakeholders+1) }, []string{"impactedStakeholderIds"}},
		{"bad stakeholder id", func(c *Change) { c.ImpactedStakeholderIDs = []string{""} }, []string{"impactedStakeholderIds[0]"}},
		{"owner email", func(c *Change) { c.Owner.Email = "Ada <ada@x.example>" }, []string{"owner.email"}},
		{"bad dates", func(c *Change) { c.StartDate, c.EndDate = "2026-02-30", "1/3/2026" }, []string{"startDate", "endDate"}},
		{"end before start", func(c *Change) { c.StartDate, c.EndDate = "2026-03-02", "2026-03-01" }, []string{"endDate"}},
		{"end alone", func(c *Change) { c.EndDate = "2026-03-01" }, nil},
		{"http url", func(c *Change) { c.URL = "http://app.example/x" }, []string{"url"}},
		{"relative url", func(c *Change) { c.URL = "/changes/1" }, []string{"url"}},
		{"url with user", func(c *Change) { c.URL = "https://u:p@app.example/" }, []string{"url"}},
		{"several", func(c *Change) { c.ID, c.Title, c.Status = "", "", "x" }, []string{"id", "title", "status"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.edit(&c)
			err := c.Normalize()
			var got []string
			if l, ok := err.(fielderr.List); ok {
				for _, f := range l {
					got = append(got, f.Field)
				}
			} else if err != nil {
				t.Fatalf("err %v is not a fielderr.List", err)
			}
			if !slices.Equal(got, tc.fields) {
				t.Errorf("fields %v, want %v (%v)", got, tc.fields, err)
			}
		})
	}
}

func TestNormalizeCleans(t *testing.T) {
	c := valid()
	c.Title = "  Office move \t"
	c.Description = " a\r\nb "
	c.ImpactedGroupIDs = []string{"g1", "g2", "g1"}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	if c.Title != "Office move" || c.Description != "a\nb" || !slices.Equal(c.ImpactedGroupIDs, []string{"g1", "g2"}) || c.ImpactedStakeholderIDs == nil {
		t.Errorf("normalised %+v", c)
	}
}

func n(prefix string, count int) []string {
	out := make([]string, count)
	for i := range out {
		out[i] = prefix + string(rune('0'+i/10%10)) + string(rune('0'+i%10)) + strings.Repeat("x", i/100)
	}
	return out
}

func TestWords(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Office move", "office move"},
		{"Déménagement du siège à Zürich", "demenagement du siege zurich"},
		{"STRASSE Straße", "strasse"},
		{"The plan for the new CRM (phase 2)", "plan new crm phase 2"},
		{"ÉCOLE école Ecole", "ecole"},
		{"e-mail, x; 2026-03!", "mail 2026 03"},
		{"東京 オフィス", "東京 オフィス"},
		{strings.Repeat("a", 40), strings.Repeat("a", maxWordRunes)},
	} {
		if got := strings.Join(words(tc.in), " "); got != tc.want {
			t.Errorf("words(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIndexWordsCap(t *testing.T) {
	var desc []string
	for i := range 100 {
		desc = append(desc, "word"+strings.Repeat("z", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	ws, inTitle := indexWords(Change{Title: "Alpha beta", Description: strings.Join(desc, " ")})
	if len(ws) != MaxIndexWords || ws[0] != "alpha" || ws[1] != "beta" || !inTitle["alpha"] || inTitle[ws[2]] {
		t.Errorf("indexWords = %d words %v", len(ws), ws[:3])
	}
	if MaxIndexWords+MaxImpactedGroups+MaxImpactedStakeholders+1 != 100 {
		t.Error("a change's rows do not fill one transaction exactly")
	}
}
