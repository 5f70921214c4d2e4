package insights

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

const (
	team  = "a1b2c3d4-0000-4000-8000-000000000001"
	chanA = "19:general@thread.tacv2"
	chanB = "19:rollout@thread.tacv2"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

type rig struct {
	s   *Store
	tbl *tablestore.Table
	org tablestore.Org
}

func newRig(t *testing.T) rig {
	t.Helper()
	ts := tablestoretest.Open(t)
	s := NewStore(ts).WithClock(func() time.Time { return t0.Add(24 * time.Hour) })
	return rig{s: s, tbl: ts.Table(Table), org: tablestoretest.Org(t, "acme")}
}

// msg is insight i: posted i minutes after t0, in chanA when i is even, chanB when odd.
func msg(i int, kws ...string) Insight {
	ch := chanA
	if i%2 == 1 {
		ch = chanB
	}
	return Insight{TeamID: team, ChannelID: ch, MessageID: fmt.Sprint(1000 + i), At: t0.Add(time.Duration(i) * time.Minute),
		DeepLink: "https://teams.microsoft.com/l/message/x/" + fmt.Sprint(i), AuthorID: "u1", AuthorName: "Ada",
		Excerpt: fmt.Sprintf("message %d", i), Keywords: kws}
}

func (r rig) capture(t *testing.T, in Insight) {
	t.Helper()
	created, err := r.s.Capture(t.Context(), r.org, in)
	if err != nil || !created {
		t.Fatalf("Capture(%s) = %v, %v", in.MessageID, created, err)
	}
}

func (r rig) keys(t *testing.T) []string {
	t.Helper()
	var out []string
	for row, err := range tablestore.Query[map[string]any](t.Context(), r.tbl, r.org, tablestore.QueryOptions{Select: []string{"messageId"}}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, row.Key)
	}
	return out
}

func ids(list []Insight) []string {
	out := []string{}
	for _, i := range list {
		out = append(out, i.MessageID)
	}
	return out
}

func want(is ...int) []string {
	out := []string{}
	for _, i := range is {
		out = append(out, fmt.Sprint(1000+i))
	}
	return out
}

// all follows next until it is empty, returning every insight and how many calls it took.
func (r rig) all(t *testing.T, f Filter) ([]string, int) {
	t.Helper()
	var got []string
	for calls := 1; ; calls++ {
		if calls > 100 {
			t.Fatal("List never ends")
		}
		page, next, err := r.s.List(t.Context(), r.org, f)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(page)...)
		if next == "" {
			return got, calls
		}
		f.After = next
	}
}

func TestCaptureOnce(t *testing.T) {
	r := newRig(t)
	in := msg(1, "migration", "migration", "Café")
	in.ReplyToID = "999"
	r.capture(t, in)
	got, ok, err := r.s.Get(t.Context(), r.org, team, chanB, "1001")
	if err != nil || !ok {
		t.Fatalf("Get = %v %v", ok, err)
	}
	wantIn := in
	wantIn.Org, wantIn.Keywords, wantIn.CapturedKeywords, wantIn.CapturedAt = "acme", []string{"migration", "Café"}, []string{"migration", "Café"}, t0.Add(24*time.Hour)
	if fmt.Sprint(got) != fmt.Sprint(wantIn) || !got.MatchesNow() {
		t.Errorf("Get = %+v\nwant  %+v", got, wantIn)
	}
	if k := r.keys(t); len(k) != 3 {
		t.Fatalf("rows %v, want message, time and channel rows", k)
	}
	// Again, even with other content: a no-op.
	in.Excerpt = "changed"
	if created, err := r.s.Capture(t.Context(), r.org, in); created || err != nil {
		t.Errorf("second Capture = %v, %v", created, err)
	}
	if got, _, _ := r.s.Get(t.Context(), r.org, team, chanB, "1001"); got.Excerpt != "message 1" {
		t.Errorf("second Capture changed the insight: %q", got.Excerpt)
	}
	if _, ok, err := r.s.Get(t.Context(), r.org, team, chanA, "1001"); ok || err != nil {
		t.Errorf("Get of another channel's message = %v %v", ok, err)
	}
	if k := r.keys(t); len(k) != 3 {
		t.Errorf("rows after a second capture: %v", k)
	}
}

// Many workers capturing the same message at once (duplicate notifications, a redelivered
// queue message) store it once, and exactly one of them is told it created it.
func TestConcurrentCapture(t *testing.T) {
	r := newRig(t)
	const n = 8
	var wg sync.WaitGroup
	results := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = r.s.Capture(t.Context(), r.org, msg(2, "migration"))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if c := slices.Index(results, true); c < 0 || slices.Index(results[c+1:], true) >= 0 {
		t.Errorf("created = %v, want exactly one true", results)
	}
	if k := r.keys(t); len(k) != 3 {
		t.Errorf("rows %v, want 3", k)
	}
	if got, _ := r.all(t, Filter{}); !slices.Equal(got, want(2)) {
		t.Errorf("List = %v", got)
	}
}

func TestCaptureInvalid(t *testing.T) {
	r := newRig(t)
	for name, edit := range map[string]func(*Insight){
		"no team":       func(i *Insight) { i.TeamID = "" },
		"no channel":    func(i *Insight) { i.ChannelID = "" },
		"no message":    func(i *Insight) { i.MessageID = "" },
		"no time":       func(i *Insight) { i.At = time.Time{} },
		"long id":       func(i *Insight) { i.MessageID = strings.Repeat("1", MaxIDBytes+1) },
		"long reply id": func(i *Insight) { i.ReplyToID = strings.Repeat("1", MaxIDBytes+1) },
	} {
		in := msg(0)
		edit(&in)
		if _, err := r.s.Capture(t.Context(), r.org, in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Capture = %v, want ErrInvalid", name, err)
		}
	}
	if k := r.keys(t); len(k) != 0 {
		t.Errorf("rows written: %v", k)
	}
	// Odd ids are fine: keys hold only hashes.
	in := msg(0)
	in.TeamID, in.MessageID = "team/with#odd?chars'", strings.Repeat("é", 400)
	r.capture(t, in)
	// Long excerpts are cut; keywords kept up to MaxKeywords.
	in = msg(1)
	in.Excerpt = strings.Repeat("ab", MaxExcerpt)
	for i := range MaxKeywords + 5 {
		in.Keywords = append(in.Keywords, fmt.Sprint("k", i))
	}
	r.capture(t, in)
	got, _, _ := r.s.Get(t.Context(), r.org, team, chanB, "1001")
	if n := len([]rune(got.Excerpt)); n != MaxExcerpt || !strings.HasSuffix(got.Excerpt, "…") || len(got.Keywords) != MaxKeywords {
		t.Errorf("excerpt %d runes, %d keywords", n, len(got.Keywords))
	}
}

func TestEditedAndDeleted(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.capture(t, msg(0, "migration"))
	get := func() Insight {
		t.Helper()
		got, ok, err := r.s.Get(ctx, r.org, team, chanA, "1000")
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		// The listing rows agree with the message row.
		for _, f := range []Filter{{}, {TeamID: team, ChannelID: chanA}} {
			page, _, err := r.s.List(ctx, r.org, f)
			if err != nil || len(page) != 1 || fmt.Sprint(page[0]) != fmt.Sprint(got) {
				t.Fatalf("List(%+v) = %v %v, Get = %v", f, page, err, got)
			}
		}
		return got
	}
	steps := []struct {
		name  string
		do    func() error
		check func(Insight) bool
	}{
		{"edit, still matching", func() error {
			return r.s.Edited(ctx, r.org, team, chanA, "1000", []string{"Café"}, "now about the café", t0.Add(10*time.Minute))
		}, func(i Insight) bool {
			return i.Edited && i.EditedAt.Equal(t0.Add(10*time.Minute)) && fmt.Sprint(i.Keywords) == "[Café]" &&
				fmt.Sprint(i.CapturedKeywords) == "[migration]" && i.Excerpt == "now about the café" && i.MatchesNow()
		}},
		{"an older edit arriving late is ignored", func() error {
			return r.s.Edited(ctx, r.org, team, chanA, "1000", nil, "older", t0.Add(5*time.Minute))
		}, func(i Insight) bool { return i.Excerpt == "now about the café" }},
		{"edit matching nothing keeps the insight", func() error {
			return r.s.Edited(ctx, r.org, team, chanA, "1000", nil, "nothing here", t0.Add(20*time.Minute))
		}, func(i Insight) bool {
			return !i.MatchesNow() && i.Keywords != nil && len(i.Keywords) == 0 && fmt.Sprint(i.CapturedKeywords) == "[migration]" && i.Excerpt == "nothing here"
		}},
		{"deleted", func() error { return r.s.Deleted(ctx, r.org, team, chanA, "1000", t0.Add(30*time.Minute)) },
			func(i Insight) bool {
				return i.Deleted && i.DeletedAt.Equal(t0.Add(30*time.Minute)) && i.Excerpt == "nothing here"
			}},
		{"deleted again keeps the first time", func() error { return r.s.Deleted(ctx, r.org, team, chanA, "1000", t0.Add(40*time.Minute)) },
			func(i Insight) bool { return i.Deleted && i.DeletedAt.Equal(t0.Add(30*time.Minute)) }},
		{"an edit from before the deletion is ignored", func() error {
			return r.s.Edited(ctx, r.org, team, chanA, "1000", []string{"x"}, "late", t0.Add(25*time.Minute))
		}, func(i Insight) bool { return i.Deleted && i.Excerpt == "nothing here" }},
		{"an edit after the deletion restores it", func() error {
			return r.s.Edited(ctx, r.org, team, chanA, "1000", []string{"migration"}, "back", t0.Add(50*time.Minute))
		}, func(i Insight) bool {
			return !i.Deleted && i.DeletedAt.IsZero() && i.Excerpt == "back" && i.MatchesNow()
		}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := get(); !st.check(got) {
			t.Errorf("%s: %+v", st.name, got)
		}
	}
	if k := r.keys(t); len(k) != 3 {
		t.Errorf("rows %v", k)
	}
	if err := r.s.Edited(ctx, r.org, team, chanA, "nope", nil, "x", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Edited of a message never captured = %v", err)
	}
}

// A deletion seen before the capture (out-of-order or redelivered notifications) leaves a
// tombstone: the late capture stores nothing.
func TestDeletedBeforeCapture(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if err := r.s.Deleted(ctx, r.org, team, chanA, "1000", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := r.s.Deleted(ctx, r.org, team, chanA, "1000", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if created, err := r.s.Capture(ctx, r.org, msg(0, "migration")); created || err != nil {
		t.Errorf("Capture after deletion = %v %v", created, err)
	}
	if _, ok, err := r.s.Get(ctx, r.org, team, chanA, "1000"); ok || err != nil {
		t.Errorf("Get of a tombstone = %v %v", ok, err)
	}
	if err := r.s.Edited(ctx, r.org, team, chanA, "1000", []string{"migration"}, "x", t0.Add(3*time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Edited of a tombstone = %v", err)
	}
	if got, _ := r.all(t, Filter{}); len(got) != 0 {
		t.Errorf("List = %v", got)
	}
	if k := r.keys(t); len(k) != 1 || !strings.HasPrefix(k[0], "m-") {
		t.Errorf("rows %v, want the tombstone only", k)
	}
}

func TestListFilters(t *testing.T) {
	r := newRig(t)
	for i := range 8 {
		kws := []string{"migration"}
		if i%3 == 0 {
			kws = append(kws, "Café")
		}
		in := msg(i, kws...)
		in.Excerpt = fmt.Sprintf("Message %d: the ZÜRICH office", i)
		if i == 5 {
			in.Excerpt = "nothing"
		}
		r.capture(t, in)
	}
	// Two messages posted at the same instant in different channels both show, in a fixed order.
	same := msg(9, "migration")
	same.At = t0.Add(7 * time.Minute)
	r.capture(t, same)
	if err := r.s.Edited(t.Context(), r.org, team, chanA, "1006", nil, "edited away", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"all", Filter{}, nil},
		{"channel A", Filter{TeamID: team, ChannelID: chanA}, want(6, 4, 2, 0)},
		{"channel B", Filter{TeamID: team, ChannelID: chanB}, nil},
		{"unknown channel", Filter{TeamID: team, ChannelID: "19:none@thread.tacv2"}, want()},
		{"keyword, case and accents ignored", Filter{Keyword: "cafe"}, want(6, 3, 0)},
		{"keyword is whole", Filter{Keyword: "caf"}, want()},
		{"keyword and channel", Filter{Keyword: "CAFÉ", TeamID: team, ChannelID: chanB}, want(3)},
		{"from", Filter{From: at(6)}, nil},
		{"to (exclusive)", Filter{To: at(2)}, want(1, 0)},
		{"from and to", Filter{From: at(2), To: at(5)}, want(4, 3, 2)},
		{"from and to, channel", Filter{From: at(2), To: at(5), TeamID: team, ChannelID: chanA}, want(4, 2)},
		{"from a nanosecond later", Filter{From: at(2).Add(time.Nanosecond), To: at(5)}, want(4, 3)},
		{"empty range", Filter{From: at(5), To: at(5)}, want()},
		{"text, case and accents ignored", Filter{Text: "zurich OFFICE"}, want(7, 4, 3, 2, 1, 0)},
		{"text and time", Filter{Text: "zurich", From: at(3)}, want(7, 4, 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				// Computed: check against a plain scan below.
				got, _ := r.all(t, tc.f)
				var exp []string
				for _, row := range allRows(t, r) {
					if (tc.f.TeamID == "" || row.ChannelID == tc.f.ChannelID) && (tc.f.From.IsZero() || !row.At.Before(tc.f.From)) {
						exp = append(exp, row.MessageID)
					}
				}
				if !slices.Equal(got, exp) {
					t.Errorf("got %v, want %v", got, exp)
				}
				return
			}
			if got, _ := r.all(t, tc.f); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// allRows reads the time rows: every insight, newest first (ties in key order).
func allRows(t *testing.T, r rig) []record {
	var out []record
	for row, err := range tablestore.Query[record](t.Context(), r.tbl, r.org, tablestore.QueryOptions{KeyPrefix: "t-"}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, row.Value)
	}
	for i := 1; i < len(out); i++ {
		if out[i].At.After(out[i-1].At) {
			t.Fatalf("time rows out of order at %d", i)
		}
	}
	return out
}

func TestListPaging(t *testing.T) {
	r := newRig(t)
	for i := range 7 {
		r.capture(t, msg(i, "migration"))
	}
	for _, tc := range []struct {
		name  string
		f     Filter
		want  []string
		calls int
	}{
		{"pages of 3", Filter{Limit: 3}, want(6, 5, 4, 3, 2, 1, 0), 3},
		{"pages of 7: one call", Filter{Limit: 7}, want(6, 5, 4, 3, 2, 1, 0), 1},
		{"pages of 2, channel A", Filter{Limit: 2, TeamID: team, ChannelID: chanA}, want(6, 4, 2, 0), 2},
		{"pages of 1, with a time range", Filter{Limit: 1, From: t0.Add(time.Minute), To: t0.Add(4 * time.Minute)}, want(3, 2, 1), 3},
		{"default limit", Filter{}, want(6, 5, 4, 3, 2, 1, 0), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, calls := r.all(t, tc.f)
			if !slices.Equal(got, tc.want) || calls != tc.calls {
				t.Errorf("got %v in %d calls, want %v in %d", got, calls, tc.want, tc.calls)
			}
		})
	}
	// A new insight captured between pages does not disturb the pages after the cursor.
	page, next, err := r.s.List(t.Context(), r.org, Filter{Limit: 3})
	if err != nil || next == "" {
		t.Fatal(page, next, err)
	}
	r.capture(t, msg(7, "migration"))
	rest, _ := r.all(t, Filter{Limit: 3, After: next})
	if !slices.Equal(rest, want(3, 2, 1, 0)) {
		t.Errorf("after a new capture, the rest = %v", rest)
	}

	// Bad cursors.
	_, chanNext, err := r.s.List(t.Context(), r.org, Filter{Limit: 1, TeamID: team, ChannelID: chanA})
	if err != nil || chanNext == "" {
		t.Fatal(chanNext, err)
	}
	for name, f := range map[string]Filter{
		"garbage":                       {After: "!!"},
		"not base64 of a key":           {After: "bm90IGEga2V5"},
		"channel cursor, no channel":    {After: chanNext},
		"channel cursor, other channel": {After: chanNext, TeamID: team, ChannelID: chanB},
		"time cursor, channel":          {After: next, TeamID: team, ChannelID: chanA},
	} {
		if _, _, err := r.s.List(t.Context(), r.org, f); !errors.Is(err, ErrBadCursor) {
			t.Errorf("%s: List = %v, want ErrBadCursor", name, err)
		}
	}
	if _, _, err := r.s.List(t.Context(), r.org, Filter{TeamID: team}); !errors.Is(err, ErrInvalid) {
		t.Errorf("team without channel: %v", err)
	}
}

// Filters that are not key ranges read at most maxScan rows per call and answer a cursor.
func TestListScanBound(t *testing.T) {
	r := newRig(t)
	r.s.maxScan = 3
	for i := range 10 {
		kws := []string{"migration"}
		if i == 0 || i == 9 {
			kws = []string{"rare"}
		}
		r.capture(t, msg(i, kws...))
	}
	page, next, err := r.s.List(t.Context(), r.org, Filter{Keyword: "rare"})
	if err != nil || !slices.Equal(ids(page), want(9)) || next == "" {
		t.Fatalf("first page = %v %q %v", ids(page), next, err)
	}
	page, next, err = r.s.List(t.Context(), r.org, Filter{Keyword: "rare", After: next})
	if err != nil || len(page) != 0 || next == "" {
		t.Fatalf("second page = %v %q %v, want none and a cursor", ids(page), next, err)
	}
	got, calls := r.all(t, Filter{Keyword: "rare"})
	if !slices.Equal(got, want(9, 0)) || calls != 4 {
		t.Errorf("got %v in %d calls, want [9 0] in 4 (10 rows, 3 a call)", got, calls)
	}
	// Without a streaming filter the page is what the scan allows too.
	if got, calls := r.all(t, Filter{Limit: 5}); len(got) != 10 || calls != 4 {
		t.Errorf("unfiltered: %d in %d calls", len(got), calls)
	}
}

// Erasing an org's partition erases its insights, and only its own.
func TestEraseOrg(t *testing.T) {
	r := newRig(t)
	other := rig{s: r.s, tbl: r.tbl, org: tablestoretest.Org(t, "globex")}
	for i := range 3 {
		r.capture(t, msg(i, "migration"))
		other.capture(t, msg(i, "migration"))
	}
	if err := r.s.Deleted(t.Context(), r.org, team, chanA, "tomb", t0); err != nil {
		t.Fatal(err)
	}
	n, err := r.tbl.EraseOrg(t.Context(), r.org)
	if err != nil || n != 10 {
		t.Fatalf("EraseOrg = %d %v, want 10 rows (3 insights of 3 rows, a tombstone)", n, err)
	}
	if got, _ := r.all(t, Filter{}); len(got) != 0 {
		t.Errorf("acme still lists %v", got)
	}
	if got, _ := other.all(t, Filter{}); !slices.Equal(got, want(2, 1, 0)) {
		t.Errorf("globex lists %v", got)
	}
	if _, ok, _ := other.s.Get(t.Context(), other.org, team, chanA, "1000"); !ok {
		t.Error("globex lost an insight")
	}
	// Captured again after the erasure: a fresh insight.
	r.capture(t, msg(0, "migration"))
}
