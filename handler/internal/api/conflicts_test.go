package api_test

import (
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

// openConflict stores a synced stakeholder of org-a with an open conflict on its department
// (base Operations, Entra "Entra B", Leap Change "Leap B"), as a skip-conflicts sync leaves it,
// and returns it with its ETag. (The dirsync tests make conflicts through real syncs.)
func openConflict(t *testing.T, f *fixture) (stakeholder.Stakeholder, tablestore.ETag) {
	t.Helper()
	shs := stakeholder.NewStore(f.store)
	org := tablestoretest.Org(t, "org-a")
	synced := stakeholder.Values{stakeholder.FirstName: "Bea", stakeholder.LastName: "Both", stakeholder.Email: "bea@contoso.example", stakeholder.Department: "Operations"}
	st := stakeholder.Stakeholder{ID: stakeholder.NewID(), Source: stakeholder.Entra, ExternalID: "u-conflict", Active: true, Base: synced}
	for f, v := range synced {
		st.Set(f, v)
	}
	st.Department, st.Influence = "Leap B", "high"
	etag, err := shs.Save(t.Context(), org, st, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	entra := stakeholder.Values{}
	for f, v := range synced {
		entra[f] = v
	}
	entra[stakeholder.Department], entra[stakeholder.Role] = "Entra B", "Lead"
	ops := "Operations"
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	c := stakeholder.Conflict{StakeholderID: st.ID, ExternalID: st.ExternalID, Name: "Bea Both", Since: now, UpdatedAt: now, RunID: "1klxow0l9apkv-fc96",
		Fields: []stakeholder.ConflictField{{Field: stakeholder.Department, Base: &ops, Entra: "Entra B", Leap: "Leap B"}}, Entra: entra}
	if err := shs.Apply(t.Context(), org, []tablestore.Op{stakeholder.ConflictOp(c)}); err != nil {
		t.Fatal(err)
	}
	return st, etag
}

func TestConflictEndpoints(t *testing.T) {
	f := setup(t)
	const cf = base + "/conflicts"
	if a := f.do(t, "GET", base+"/status", "", ""); a.status != 200 || a.body["openConflicts"] != 0.0 {
		t.Fatalf("status before = %d %s, want openConflicts 0", a.status, a.raw)
	}
	st, etag := openConflict(t, f)

	a := f.do(t, "GET", cf, "", "")
	cs := list(a.body["conflicts"])
	if a.status != 200 || len(cs) != 1 || a.body["next"] != "" {
		t.Fatalf("GET conflicts = %d %s", a.status, a.raw)
	}
	c := cs[0].(map[string]any)
	fields := list(c["fields"])
	if c["stakeholderId"] != st.ID || c["etag"] != string(etag) || c["since"] != "2026-03-01T09:00:00Z" || len(fields) != 1 {
		t.Errorf("conflict = %v", c)
	}
	if fl := fields[0].(map[string]any); fl["field"] != "department" || fl["base"] != "Operations" || fl["entra"] != "Entra B" || fl["leap"] != "Leap B" {
		t.Errorf("conflict field = %v, want base, Entra and Leap values", fl)
	}
	if a := f.do(t, "GET", base+"/status", "", ""); a.body["openConflicts"] != 1.0 {
		t.Errorf("status openConflicts = %v, want 1", a.body["openConflicts"])
	}
	if a := f.do(t, "GET", cf+"?limit=1", "", ""); a.body["next"] != st.ID {
		t.Errorf("a full page: next = %v, want %s", a.body["next"], st.ID)
	}

	resolve := cf + "/" + st.ID + "/resolve"
	wantProblem(t, f.doH(t, "POST", resolve, `{"choice":"leap"}`), 428, preconditionTyp, "")
	wantProblem(t, f.doH(t, "POST", resolve, `{"choice":"mine"}`, "If-Match", string(etag)), 400, invalidType, "choice")
	wantProblem(t, f.doH(t, "POST", resolve, `{"fields":{"influence":"leap"}}`, "If-Match", string(etag)), 400, invalidType, "fields.influence")
	wantProblem(t, f.doH(t, "POST", resolve, `{"fields":{"role":"entra"}}`, "If-Match", string(etag)), 400, invalidType, "fields.department")
	wantProblem(t, f.doH(t, "POST", resolve, `{"choice":"leap"}`, "If-Match", staleTag), 412, preconditionTyp, "")
	wantProblem(t, f.doH(t, "POST", cf+"/nosuch/resolve", `{"choice":"leap"}`, "If-Match", "*"), 404, notFoundType, "")

	a = f.doH(t, "POST", resolve, `{"choice":"leap","fields":{"department":"entra"}}`, "If-Match", string(etag))
	got, _ := a.body["stakeholder"].(map[string]any)
	if a.status != 200 || got["department"] != "Entra B" || got["role"] != "Lead" || got["influence"] != "high" || a.header.Get("ETag") == "" {
		t.Fatalf("resolve = %d %s", a.status, a.raw)
	}
	if a := f.do(t, "GET", cf, "", ""); len(list(a.body["conflicts"])) != 0 {
		t.Errorf("after resolving: %s", a.raw)
	}
	if a := f.do(t, "GET", base+"/status", "", ""); a.body["openConflicts"] != 0.0 {
		t.Errorf("status openConflicts after resolving = %v", a.body["openConflicts"])
	}
	wantProblem(t, f.doH(t, "POST", resolve, `{"choice":"leap"}`, "If-Match", "*"), 404, notFoundType, "")
}

// checkConflictAnswers runs the conflict endpoints' answers through the OpenAPI conformance
// check (called from TestOpenAPIResponses).
func checkConflictAnswers(t *testing.T, c *conformance, f *fixture, srv string) {
	t.Helper()
	const cf = "/api/orgs/org-a/m365/conflicts"
	st, etag := openConflict(t, f)
	c.call(srv, "GET", cf, "")                                                                                  // 200
	c.call(srv, "GET", cf+"?limit=0", "")                                                                       // 400
	c.call(srv, "POST", cf+"/"+st.ID+"/resolve", `{"choice":"leap"}`)                                           // 428
	c.call(srv, "POST", cf+"/"+st.ID+"/resolve", `{"choice":"mine"}`, "If-Match", string(etag))                 // 400
	c.call(srv, "POST", cf+"/"+st.ID+"/resolve", `{"choice":"leap"}`, "If-Match", staleETag)                    // 412
	c.call(srv, "POST", cf+"/"+st.ID+"/resolve", `{"fields":{"department":"entra"}}`, "If-Match", string(etag)) // 200
	c.call(srv, "POST", cf+"/"+st.ID+"/resolve", `{"choice":"leap"}`, "If-Match", "*")                          // 404
	for _, want := range []string{"GET /api/orgs/{org}/m365/conflicts 200", "GET /api/orgs/{org}/m365/conflicts 400",
		"POST /api/orgs/{org}/m365/conflicts/{stakeholderId}/resolve 200", "POST /api/orgs/{org}/m365/conflicts/{stakeholderId}/resolve 400",
		"POST /api/orgs/{org}/m365/conflicts/{stakeholderId}/resolve 404", "POST /api/orgs/{org}/m365/conflicts/{stakeholderId}/resolve 412",
		"POST /api/orgs/{org}/m365/conflicts/{stakeholderId}/resolve 428"} {
		if !c.seen[want] {
			t.Errorf("not checked: %s", want)
		}
	}
}
