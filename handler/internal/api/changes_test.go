package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/api"
	"github.com/leapchange/m365/handler/internal/changes"
	"github.com/leapchange/m365/handler/internal/org"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

// setupChanges serves the API with a change store, for registered org "org-a" (and no other).
func setupChanges(t *testing.T) *fixture {
	t.Helper()
	store := tablestoretest.Open(t)
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	orgs := org.New(org.Config{Store: store, Now: func() time.Time { return now }})
	if _, _, err := orgs.Register(t.Context(), tablestoretest.Org(t, "org-a"), org.Registration{DisplayName: "A", TimeZone: "Europe/London"}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, orgs: orgs}
	f.srv = httptest.NewServer(api.New(api.Deps{Orgs: orgs, Changes: changes.NewStore(store)}))
	t.Cleanup(f.srv.Close)
	return f
}

const changeBody = `{"title":"Office move","status":"planned","description":"To Zürich.","impactedGroupIds":["g1"],
	"impactedStakeholderIds":["s1"],"owner":{"name":"Ada","email":"ada@contoso.example"},"startDate":"2026-04-01",
	"endDate":"2026-05-01","url":"https://app.leapchange.example/changes/CH-1"}`

func TestChangeLifecycle(t *testing.T) {
	f := setupChanges(t)
	const p = "/api/orgs/org-a/changes/CH-1"

	a := f.doH(t, "PUT", p, changeBody)
	etag1 := a.header.Get("ETag")
	if a.status != http.StatusCreated || a.header.Get("Location") != p || etag1 == "" || a.body["id"] != "CH-1" || a.body["updatedAt"] == nil {
		t.Fatalf("PUT new = %d %v %s", a.status, a.header, a.raw)
	}
	putAt := a.body["updatedAt"]
	a = f.doH(t, "GET", p, "")
	if a.status != http.StatusOK || a.header.Get("ETag") != etag1 || a.body["updatedAt"] != putAt || a.body["title"] != "Office move" || a.body["owner"].(map[string]any)["email"] != "ada@contoso.example" {
		t.Fatalf("GET = %d %s", a.status, a.raw)
	}
	// What GET answers can be written back as is.
	a = f.doH(t, "PUT", p, a.raw, "If-Match", etag1)
	etag2 := a.header.Get("ETag")
	if a.status != http.StatusOK || etag2 == "" || etag2 == etag1 || a.header.Get("Location") != "" {
		t.Fatalf("PUT back = %d %v %s", a.status, a.header, a.raw)
	}
	wantProblem(t, f.doH(t, "PUT", p, changeBody, "If-Match", etag1), 412, "urn:leapchange:problem:precondition-failed", "")
	wantProblem(t, f.doH(t, "PUT", "/api/orgs/org-a/changes/CH-2", changeBody, "If-Match", "*"), 412, "urn:leapchange:problem:precondition-failed", "")
	wantProblem(t, f.doH(t, "DELETE", p, "", "If-Match", etag1), 412, "urn:leapchange:problem:precondition-failed", "")

	a = f.doH(t, "DELETE", p, "", "If-Match", etag2)
	if a.status != http.StatusNoContent || a.raw != "" {
		t.Fatalf("DELETE = %d %s", a.status, a.raw)
	}
	if a = f.doH(t, "DELETE", p, ""); a.status != http.StatusNoContent {
		t.Fatalf("DELETE again = %d %s", a.status, a.raw)
	}
	wantProblem(t, f.doH(t, "GET", p, ""), 404, "urn:leapchange:problem:not-found", "")
}

func TestChangeErrors(t *testing.T) {
	f := setupChanges(t)
	const p = "/api/orgs/org-a/changes/"
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		typ, field               string
	}{
		{"unknown org", "PUT", "/api/orgs/org-z/changes/CH-1", changeBody, 404, "urn:leapchange:problem:not-found", ""},
		{"unknown org get", "GET", "/api/orgs/org-z/changes/CH-1", "", 404, "urn:leapchange:problem:not-found", ""},
		{"bad id", "PUT", p + "a%20b", changeBody, 400, invalidType, "changeId"},
		{"long id", "GET", p + strings.Repeat("x", 65), "", 400, invalidType, "changeId"},
		{"bad id delete", "DELETE", p + "a~b", "", 400, invalidType, "changeId"},
		{"no body", "PUT", p + "CH-1", "", 400, invalidType, "body"},
		{"not JSON", "PUT", p + "CH-1", `{"title":`, 400, invalidType, "body"},
		{"unknown field", "PUT", p + "CH-1", `{"title":"t","status":"planned","colour":"red"}`, 400, invalidType, "body"},
		{"id differs", "PUT", p + "CH-1", `{"id":"CH-2","title":"t","status":"planned"}`, 400, invalidType, "id"},
		{"no title", "PUT", p + "CH-1", `{"status":"planned"}`, 400, invalidType, "title"},
		{"bad status", "PUT", p + "CH-1", `{"title":"t","status":"done"}`, 400, invalidType, "status"},
		{"title too long", "PUT", p + "CH-1", `{"title":"` + strings.Repeat("t", 201) + `","status":"planned"}`, 400, invalidType, "title"},
		{"description too long", "PUT", p + "CH-1", `{"title":"t","status":"planned","description":"` + strings.Repeat("d", 4001) + `"}`, 400, invalidType, "description"},
		{"bad stakeholder id", "PUT", p + "CH-1", `{"title":"t","status":"planned","impactedStakeholderIds":["ok","no/pe"]}`, 400, invalidType, "impactedStakeholderIds[1]"},
		{"end before start", "PUT", p + "CH-1", `{"title":"t","status":"planned","startDate":"2026-05-01","endDate":"2026-04-01"}`, 400, invalidType, "endDate"},
		{"bad date", "PUT", p + "CH-1", `{"title":"t","status":"planned","startDate":"1 May"}`, 400, invalidType, "startDate"},
		{"http url", "PUT", p + "CH-1", `{"title":"t","status":"planned","url":"http://app.example/c/1"}`, 400, invalidType, "url"},
		{"owner email", "PUT", p + "CH-1", `{"title":"t","status":"planned","owner":{"email":"nope"}}`, 400, invalidType, "owner.email"},
		{"owner unknown field", "PUT", p + "CH-1", `{"title":"t","status":"planned","owner":{"phone":"1"}}`, 400, invalidType, "body"},
		{"method", "POST", p + "CH-1", "", 405, "urn:leapchange:problem:method-not-allowed", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, f.doH(t, tc.method, tc.path, tc.body), tc.status, tc.typ, tc.field)
		})
	}
	// Many groups: a distinct 21st is refused, naming the list.
	var ids []string
	for i := range 21 {
		ids = append(ids, `"g`+string(rune('a'+i))+`"`)
	}
	wantProblem(t, f.doH(t, "PUT", p+"CH-1", `{"title":"t","status":"planned","impactedGroupIds":[`+strings.Join(ids, ",")+`]}`), 400, invalidType, "impactedGroupIds")
	// Nothing was stored by any of them.
	wantProblem(t, f.doH(t, "GET", p+"CH-1", ""), 404, "urn:leapchange:problem:not-found", "")
}
