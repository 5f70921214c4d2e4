package changes

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/leapchange/m365/handler/internal/fielderr"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

func TestPutGetDelete(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	c := Change{ID: "CH-1", Title: " Office move ", Status: Planned, Description: "Moving to Zürich.",
		ImpactedGroupIDs: []string{"g1"}, ImpactedStakeholderIDs: []string{"s1", "s2"},
		Owner: Owner{Name: "Ada", Email: "ada@contoso.example"}, StartDate: "2026-04-01", EndDate: "2026-05-01",
		URL: "https://app.leapchange.example/changes/CH-1"}

	got, tag1, created, err := r.s.Put(ctx, r.org, c, "")
	if err != nil || !created || got.Title != "Office move" || got.UpdatedAt.IsZero() || tag1 == "" {
		t.Fatalf("Put new = %+v %q %v %v", got, tag1, created, err)
	}
	read, tag, err := r.s.Get(ctx, r.org, "CH-1")
	if err != nil || tag != tag1 || !read.UpdatedAt.Equal(got.UpdatedAt) || read.Owner != c.Owner || !slices.Equal(read.ImpactedStakeholderIDs, c.ImpactedStakeholderIDs) {
		t.Fatalf("Get = %+v %q %v", read, tag, err)
	}
	want := []string{"c-CH-1", "g-g1|CH-1", "s-s1|CH-1", "s-s2|CH-1", "w-move|CH-1", "w-moving|CH-1", "w-office|CH-1", "w-zurich|CH-1"}
	if k := r.keys(t); !slices.Equal(k, want) {
		t.Fatalf("rows %v, want %v", k, want)
	}

	// Replace: the rows follow; the old ETag no longer matches.
	c.ImpactedStakeholderIDs, c.Description, c.Status = []string{"s3"}, "", InProgress
	_, tag2, created, err := r.s.Put(ctx, r.org, c, tag1)
	if err != nil || created || tag2 == tag1 {
		t.Fatalf("Put replace = %q %v %v", tag2, created, err)
	}
	want = []string{"c-CH-1", "g-g1|CH-1", "s-s3|CH-1", "w-move|CH-1", "w-office|CH-1"}
	if k := r.keys(t); !slices.Equal(k, want) {
		t.Fatalf("rows %v, want %v", k, want)
	}
	for _, tc := range []struct {
		name, id, ifMatch string
		want              error
	}{
		{"stale etag", "CH-1", tag1, ErrStale},
		{"star on missing", "CH-2", "*", ErrStale},
		{"etag on missing", "CH-2", tag2, ErrStale},
		{"weak form of current", "CH-1", "W/" + tag2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := r.s.Put(ctx, r.org, Change{ID: tc.id, Title: "x", Status: Planned}, tc.ifMatch)
			if !errors.Is(err, tc.want) {
				t.Errorf("Put If-Match %q = %v, want %v", tc.ifMatch, err, tc.want)
			}
		})
	}

	// Invalid input is refused whole.
	_, _, _, err = r.s.Put(ctx, r.org, Change{ID: "CH-3", Status: "x"}, "")
	var bad fielderr.List
	if !errors.As(err, &bad) || len(bad) != 2 {
		t.Errorf("Put invalid = %v", err)
	}

	// Delete: a stale If-Match keeps it; then it goes with its rows; twice is fine.
	if err := r.s.Delete(ctx, r.org, "CH-1", tag1); !errors.Is(err, ErrStale) {
		t.Errorf("Delete stale = %v", err)
	}
	for range 2 {
		if err := r.s.Delete(ctx, r.org, "CH-1", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.s.Get(ctx, r.org, "CH-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get deleted = %v", err)
	}
	if k := r.keys(t); len(k) != 0 {
		t.Errorf("rows left: %v", k)
	}
	if _, _, err := r.s.Get(ctx, r.org, "../x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a bad id = %v", err)
	}
}

// A change whose every index row changes at once needs more than one transaction: the new
// version is written whole, the old rows are deleted after, and none of them is ever an answer.
func TestPutReplacingEveryRow(t *testing.T) {
	r := newRig(t)
	full := func(tag string) Change {
		var desc []string
		for i := range MaxIndexWords {
			desc = append(desc, fmt.Sprintf("%sword%02d", tag, i))
		}
		return Change{ID: "big", Title: tag + "title", Status: Planned, Description: strings.Join(desc, " "),
			ImpactedGroupIDs: n(tag+"g", MaxImpactedGroups), ImpactedStakeholderIDs: n(tag+"s", MaxImpactedStakeholders)}
	}
	r.put(t, full("a"))
	if k := r.keys(t); len(k) != 100 {
		t.Fatalf("%d rows, want 100", len(k))
	}
	r.put(t, full("b"))
	k := r.keys(t)
	if len(k) != 100 || slices.ContainsFunc(k, func(k string) bool { return strings.Contains(k, "-a") }) {
		t.Fatalf("after replacing every row: %d rows %v", len(k), k[:5])
	}
	got, _, err := r.s.Get(t.Context(), r.org, "big")
	if err != nil || len(got.ImpactedGroupIDs) != MaxImpactedGroups {
		t.Fatal(got, err)
	}
	rec, _, _ := r.s.get(t.Context(), r.org, "big")
	if len(rec.Stale) != 0 {
		t.Errorf("stale keys left listed: %v", rec.Stale)
	}
	if cs, err := r.s.Impacting(t.Context(), r.org, "as00", nil); err != nil || len(cs) != 0 {
		t.Errorf("Impacting the old stakeholder = %v %v", cs, err)
	}
	if cs, err := r.s.Impacting(t.Context(), r.org, "bs00", nil); err != nil || len(cs) != 1 {
		t.Errorf("Impacting the new stakeholder = %v %v", cs, err)
	}
}

// Index rows another version left behind (a crash between a write and its clean-up) are ignored.
func TestStaleRowsIgnored(t *testing.T) {
	r := newRig(t)
	r.put(t, Change{ID: "CH-1", Title: "Payroll", Status: Planned, ImpactedStakeholderIDs: []string{"s1"}})
	for _, k := range []string{stakeholderKey("s2", "CH-1"), wordKey("ghost", "CH-1"), stakeholderKey("s2", "CH-gone")} {
		id := k[strings.LastIndex(k, "|")+1:]
		if _, err := r.tbl.Upsert(t.Context(), r.org, k, entry{ID: id, Version: "old", Status: Planned}, tablestore.Replace); err != nil {
			t.Fatal(err)
		}
	}
	if cs, err := r.s.Impacting(t.Context(), r.org, "s2", nil); err != nil || len(cs) != 0 {
		t.Errorf("Impacting through stale rows = %v %v", cs, err)
	}
	if cs, err := r.s.Search(t.Context(), r.org, "ghost", 10); err != nil || len(cs) != 0 {
		t.Errorf("Search through a stale row = %v %v", cs, err)
	}
	// A row to delete that is already gone does not block the next write.
	if err := r.tbl.Delete(t.Context(), r.org, stakeholderKey("s1", "CH-1"), tablestore.ETagAny); err != nil {
		t.Fatal(err)
	}
	r.put(t, Change{ID: "CH-1", Title: "Payroll", Status: Planned, ImpactedStakeholderIDs: []string{"s3"}})
	if err := r.s.Delete(t.Context(), r.org, "CH-1", ""); err != nil {
		t.Fatal(err)
	}
}

// Concurrent writers of one change: each write is whole, and the rows are the last one's.
func TestConcurrentPuts(t *testing.T) {
	r := newRig(t)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _, errs[i] = r.s.Put(t.Context(), r.org, Change{ID: "CH-1", Title: fmt.Sprintf("Version%d", i), Status: Planned,
				ImpactedStakeholderIDs: []string{fmt.Sprintf("s%d", i)}}, "")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, tablestore.ErrConflict) {
			t.Fatal(err)
		}
	}
	got, _, err := r.s.Get(t.Context(), r.org, "CH-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"c-CH-1", stakeholderKey(got.ImpactedStakeholderIDs[0], "CH-1"), wordKey(strings.ToLower(got.Title), "CH-1")}
	if k := r.keys(t); !slices.Equal(k, want) {
		t.Errorf("rows %v, want %v", k, want)
	}
}

func TestImpacting(t *testing.T) {
	r := newRig(t)
	for _, c := range []Change{
		{ID: "direct-planned", Title: "a", Status: Planned, ImpactedStakeholderIDs: []string{"me"}},
		{ID: "group-progress", Title: "b", Status: InProgress, ImpactedGroupIDs: []string{"g1"}},
		{ID: "both-hold", Title: "c", Status: OnHold, ImpactedGroupIDs: []string{"g2"}, ImpactedStakeholderIDs: []string{"me"}},
		{ID: "group-planned-newer", Title: "d", Status: Planned, ImpactedGroupIDs: []string{"g2", "g1"}},
		{ID: "done", Title: "e", Status: Completed, ImpactedStakeholderIDs: []string{"me"}},
		{ID: "cancelled-newer", Title: "f", Status: Cancelled, ImpactedGroupIDs: []string{"g1"}},
		{ID: "someone-else", Title: "g", Status: InProgress, ImpactedStakeholderIDs: []string{"you"}, ImpactedGroupIDs: []string{"g3"}},
	} {
		r.put(t, c)
	}
	other := tablestoretest.Org(t, "other")
	if _, _, _, err := r.s.Put(t.Context(), other, Change{ID: "elsewhere", Title: "x", Status: InProgress, ImpactedStakeholderIDs: []string{"me"}}, ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		sid    string
		groups []string
		want   []string
	}{
		{"direct only: few active, closed fill up", "me", nil, []string{"direct-planned", "both-hold", "done"}},
		{"with groups", "me", []string{"g1", "g2", "g1", "bad id"},
			[]string{"group-progress", "group-planned-newer", "direct-planned", "both-hold", "cancelled-newer"}},
		{"groups only", "", []string{"g3"}, []string{"someone-else"}},
		{"nobody", "ghost", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := r.s.Impacting(t.Context(), r.org, tc.sid, tc.groups)
			if err != nil {
				t.Fatal(err)
			}
			if got := changeIDs(cs); !slices.Equal(got, tc.want) {
				t.Errorf("Impacting = %v, want %v", got, tc.want)
			}
		})
	}

	// With enough active changes, closed ones are left out.
	for i := range MinImpacting {
		r.put(t, Change{ID: fmt.Sprintf("more%d", i), Title: "m", Status: Planned, ImpactedStakeholderIDs: []string{"me"}})
	}
	cs, err := r.s.Impacting(t.Context(), r.org, "me", nil)
	if err != nil || len(cs) != MinImpacting+2 || slices.ContainsFunc(cs, func(c Change) bool { return !c.Status.Active() }) {
		t.Errorf("Impacting with many active = %v %v", cs, err)
	}
	// A change closed since is ranked by what it says now.
	r.put(t, Change{ID: "direct-planned", Title: "a", Status: Completed, ImpactedStakeholderIDs: []string{"me"}})
	cs, _ = r.s.Impacting(t.Context(), r.org, "me", nil)
	if slices.ContainsFunc(cs, func(c Change) bool { return c.ID == "direct-planned" }) {
		t.Errorf("a completed change among enough active ones: %v", cs)
	}
}

func TestSearch(t *testing.T) {
	r := newRig(t)
	for _, c := range []Change{
		{ID: "CH-1", Title: "Office move to Zürich", Status: Planned, Description: "Everyone moves to the new building."},
		{ID: "CH-2", Title: "Payroll migration", Status: InProgress, Description: "Salaries move to the new system in Zurich."},
		{ID: "CH-3", Title: "Déménagement du siège", Status: Planned, Description: "Le siège déménage."},
		{ID: "office", Title: "Printer rollout", Status: Completed, Description: "New printers on every floor."},
		{ID: "CH-5", Title: "Zurich office closure", Status: Cancelled},
	} {
		r.put(t, c)
	}
	for _, tc := range []struct {
		name, q string
		limit   int
		want    []string
	}{
		{"exact id", "CH-2", 0, []string{"CH-2"}},
		{"id then words", "office", 0, []string{"office", "CH-1", "CH-5"}},
		{"accents and case", "ZURICH", 0, []string{"CH-1", "CH-5", "CH-2"}},
		{"folded query", "déménagement", 0, []string{"CH-3"}},
		{"unaccented query", "SIEGE", 0, []string{"CH-3"}},
		{"prefix", "migr", 0, []string{"CH-2"}},
		{"all words first", "office zurich", 0, []string{"CH-1", "CH-5", "CH-2"}},
		{"description", "building", 0, []string{"CH-1"}},
		{"limit", "zurich", 2, []string{"CH-1", "CH-5"}},
		{"stop words only", "the to", 0, nil},
		{"nothing", "helicopter", 0, nil},
		{"short words match whole", "mo", 0, nil},
		{"empty", "  ", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := r.s.Search(t.Context(), r.org, tc.q, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := changeIDs(cs); !slices.Equal(got, tc.want) {
				t.Errorf("Search(%q) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
	if cs, err := r.s.Search(t.Context(), tablestoretest.Org(t, "other"), "zurich", 0); err != nil || len(cs) != 0 {
		t.Errorf("another org's search = %v %v", cs, err)
	}
}

// The bot's queries read their index rows and the changes they answer with, not the org's
// other changes: the requests they send do not grow with the org.
func TestQueriesDoNotScanTheOrg(t *testing.T) {
	r := newRig(t)
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _, errs[i] = r.s.Put(t.Context(), r.org, Change{ID: fmt.Sprintf("other%03d", i), Title: "Unrelated rollout", Status: InProgress,
				Description: "Something else entirely.", ImpactedStakeholderIDs: []string{"someone"}, ImpactedGroupIDs: []string{"g-other"}}, "")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r.put(t, Change{ID: "mine", Title: "Payroll migration", Status: Planned, ImpactedStakeholderIDs: []string{"me"}})
	r.put(t, Change{ID: "my-group", Title: "Badge readers", Status: InProgress, ImpactedGroupIDs: []string{"g1"}})

	before := r.ts.Stats().Requests
	cs, err := r.s.Impacting(t.Context(), r.org, "me", []string{"g1"})
	if err != nil || len(cs) != 2 {
		t.Fatalf("Impacting = %v %v", cs, err)
	}
	if n := r.ts.Stats().Requests - before; n > 4 { // two index queries, two reads
		t.Errorf("Impacting sent %d requests", n)
	}
	before = r.ts.Stats().Requests
	cs, err = r.s.Search(t.Context(), r.org, "payroll", 5)
	if err != nil || len(cs) != 1 || cs[0].ID != "mine" {
		t.Fatalf("Search = %v %v", cs, err)
	}
	if n := r.ts.Stats().Requests - before; n > 3 { // "payroll" as an id, one index query, one read
		t.Errorf("Search sent %d requests", n)
	}
}

// changeIDs are the changes' ids, in order.
func changeIDs(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}
