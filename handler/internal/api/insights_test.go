package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/api"
	"github.com/leapchange/m365/handler/internal/insights"
	"github.com/leapchange/m365/handler/internal/org"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

// Channels of the insights fixture.
const (
	insightTeam   = "a1b2c3d4-0000-4000-8000-000000000001"
	insightChanA  = "19:general@thread.tacv2"
	insightChanB  = "19:rollout@thread.tacv2"
	insightsPath  = "/api/orgs/org-a/insights"
	insightsCount = 5
)

// insightsStart is the first message's time; message i is posted i minutes later, in channel A
// when i is even, B when odd; message 2 was edited to match nothing, message 3 deleted.
var insightsStart = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// setupInsights serves the API with an insight store holding insightsCount insights of org-a.
func setupInsights(t *testing.T) *fixture {
	t.Helper()
	store := tablestoretest.Open(t)
	orgs := org.New(org.Config{Store: store, Now: func() time.Time { return insightsStart }})
	orgA := tablestoretest.Org(t, "org-a")
	if _, _, err := orgs.Register(t.Context(), orgA, org.Registration{DisplayName: "A", TimeZone: "Europe/London"}); err != nil {
		t.Fatal(err)
	}
	is := insights.NewStore(store).WithClock(func() time.Time { return insightsStart.Add(time.Hour) })
	for i := range insightsCount {
		ch := insightChanA
		if i%2 == 1 {
			ch = insightChanB
		}
		in := insights.Insight{TeamID: insightTeam, ChannelID: ch, MessageID: fmt.Sprint(1700000000000 + i), At: insightsStart.Add(time.Duration(i) * time.Minute),
			DeepLink: "https://teams.microsoft.com/l/message/" + url.PathEscape(ch) + "/" + fmt.Sprint(i), AuthorID: "u1", AuthorName: "Zoë Ops",
			Excerpt: fmt.Sprintf("Message %d about the Café migration", i), Keywords: []string{"migration"}}
		if i == 4 {
			in.Keywords = []string{"migration", "Café"}
		}
		if _, err := is.Capture(t.Context(), orgA, in); err != nil {
			t.Fatal(err)
		}
	}
	if err := is.Edited(t.Context(), orgA, insightTeam, insightChanA, "1700000000002", nil, "nothing to see", insightsStart.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := is.Deleted(t.Context(), orgA, insightTeam, insightChanB, "1700000000003", insightsStart.Add(40*time.Minute)); err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, orgs: orgs}
	f.srv = httptest.NewServer(api.New(api.Deps{Orgs: orgs, Insights: is}))
	t.Cleanup(f.srv.Close)
	return f
}

// messageIDs lists the messageId of each insight of a GET /insights answer.
func messageIDs(t *testing.T, a answer) []string {
	t.Helper()
	list, ok := a.body["insights"].([]any)
	if !ok {
		t.Fatalf("no insights in %s", a.raw)
	}
	out := []string{}
	for _, e := range list {
		out = append(out, e.(map[string]any)["messageId"].(string))
	}
	return out
}

func TestListInsights(t *testing.T) {
	f := setupInsights(t)
	m := func(is ...int) []string {
		out := []string{}
		for _, i := range is {
			out = append(out, fmt.Sprint(1700000000000+i))
		}
		return out
	}
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"all, newest first", "", m(4, 3, 2, 1, 0)},
		{"channel", "?channel=" + url.QueryEscape(insightTeam+"|"+insightChanA), m(4, 2, 0)},
		{"keyword any case and accents", "?keyword=CAFE", m(4)},
		{"keyword matched at capture, gone after an edit", "?keyword=Migration", m(4, 3, 2, 1, 0)},
		{"text", "?text=" + url.QueryEscape("café MIGRATION"), m(4, 3, 1, 0)},
		{"time range", "?from=2026-03-01T09:01:00Z&to=2026-03-01T09:03:00Z", m(2, 1)},
		{"from only", "?from=2026-03-01T09:03:00%2B00:00", m(4, 3)},
		{"nothing", "?text=zzz", m()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(t, "GET", insightsPath+tc.query, "", "")
			if a.status != http.StatusOK {
				t.Fatalf("%d %s", a.status, a.raw)
			}
			if got := messageIDs(t, a); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	// The insight as shown: an edit that no longer matches, a deletion.
	a := f.do(t, "GET", insightsPath+"?limit=3", "", "")
	list := a.body["insights"].([]any)
	edited, deleted := list[2].(map[string]any), list[1].(map[string]any)
	if edited["matchesNow"] != false || edited["edited"] != true || fmt.Sprint(edited["keywords"]) != "[]" ||
		fmt.Sprint(edited["capturedKeywords"]) != "[migration]" || edited["excerpt"] != "nothing to see" {
		t.Errorf("edited insight = %v", edited)
	}
	if deleted["deleted"] != true || deleted["deletedAt"] != "2026-03-01T09:40:00Z" || deleted["matchesNow"] != true || deleted["org"] != "org-a" {
		t.Errorf("deleted insight = %v", deleted)
	}

	// Paging: two at a time, every insight once.
	var got []string
	next := ""
	for page := 0; ; page++ {
		if page > insightsCount {
			t.Fatal("paging does not end")
		}
		a := f.do(t, "GET", insightsPath+"?limit=2&after="+url.QueryEscape(next), "", "")
		if a.status != http.StatusOK {
			t.Fatalf("%d %s", a.status, a.raw)
		}
		got = append(got, messageIDs(t, a)...)
		if next = a.body["next"].(string); next == "" {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(m(4, 3, 2, 1, 0)) {
		t.Errorf("pages gave %v", got)
	}

	// Bad input: 400 naming the field.
	first := f.do(t, "GET", insightsPath+"?limit=1", "", "")
	cursor := first.body["next"].(string)
	for _, tc := range []struct{ query, field string }{
		{"?from=yesterday", "from"},
		{"?to=2026-03-01", "to"},
		{"?from=2026-03-01T10:00:00Z&to=2026-03-01T09:00:00Z", "to"},
		{"?limit=0", "limit"},
		{"?limit=201", "limit"},
		{"?limit=x", "limit"},
		{"?after=not-a-cursor", "after"},
		{"?after=" + url.QueryEscape(cursor) + "&channel=" + url.QueryEscape(insightTeam+"|"+insightChanA), "after"}, // a cursor of another listing
		{"?channel=" + url.QueryEscape(insightChanA), "channel"},
		{"?channel=" + url.QueryEscape("|"+insightChanA), "channel"},
		{"?keyword=%20%20", "keyword"},
		{"?text=" + url.QueryEscape(string(make([]byte, 201))), "text"},
	} {
		a := f.do(t, "GET", insightsPath+tc.query, "", "")
		errs, _ := a.body["errors"].([]any)
		if a.status != http.StatusBadRequest || len(errs) == 0 || errs[0].(map[string]any)["field"] != tc.field {
			t.Errorf("GET %s = %d %s, want 400 naming %s", tc.query, a.status, a.raw, tc.field)
		}
	}
	if a := f.do(t, "GET", "/api/orgs/org-z/insights", "", ""); a.status != http.StatusNotFound {
		t.Errorf("unknown org = %d", a.status)
	}
}
