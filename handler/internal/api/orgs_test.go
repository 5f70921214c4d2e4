package api_test

// Tests of the org registry's endpoints (issue 8 item 4) and of input handling (item 6).

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/api"
	"github.com/leapchange/m365/handler/internal/org"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

// rowsOf counts org's rows in every table of the store.
func rowsOf(t *testing.T, s *tablestore.Store, id string) map[string]int {
	t.Helper()
	names, err := s.Tables(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, n := range names {
		for _, err := range tablestore.Query[map[string]any](t.Context(), s.Table(n), tablestoretest.Org(t, id), tablestore.QueryOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			out[n]++
		}
	}
	return out
}

// TestUnregisteredOrgIs404AndWritesNothing calls every routed path and method for an org that
// was never registered, with a body each write would accept.
func TestUnregisteredOrgIs404AndWritesNothing(t *testing.T) {
	f := setup(t)
	bodies := map[string]string{
		"/m365/connect":  `{}`,
		"/m365/settings": `{"frequency":"daily"}`,
		"/stakeholders":  `{"firstName":"Grace","email":"grace@navy.example"}`,
		"/m365/sync":     `{}`,
	}
	for p, methods := range routeTable(t) {
		if !strings.HasPrefix(p, "/api/orgs/{org}/") {
			continue // the org's own path, and the consent callback
		}
		rest := strings.TrimPrefix(p, "/api/orgs/{org}")
		concrete := regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString("/api/orgs/ghost"+rest, "x")
		for _, m := range methods {
			a := f.doH(t, m, concrete, bodies[rest], "If-Match", "*")
			wantProblem(t, a, http.StatusNotFound, notFoundType, "")
		}
	}
	if got := rowsOf(t, f.store, "ghost"); len(got) != 0 {
		t.Errorf("requests for an unregistered org wrote rows: %v", got)
	}
}

func TestOrgLifecycle(t *testing.T) {
	f := setup(t)
	const o = "/api/orgs/acme"
	wantProblem(t, f.do(t, "GET", o, "", ""), 404, notFoundType, "")
	wantProblem(t, f.do(t, "GET", o+"/m365", "", ""), 404, notFoundType, "")
	wantProblem(t, f.do(t, "PUT", o, "application/json", ""), 400, invalidType, "body")
	a := f.do(t, "PUT", o, "application/json", `{"displayName":"","timeZone":"Mars/Olympus"}`)
	wantProblem(t, a, 400, invalidType, "displayName")
	wantProblem(t, a, 400, invalidType, "timeZone")

	a = f.do(t, "PUT", o, "application/json", `{"displayName":"Acme","timeZone":"Europe/Paris"}`)
	if a.status != 201 || a.header.Get("Location") != o || a.body["id"] != "acme" || a.body["state"] != "active" || a.body["timeZone"] != "Europe/Paris" {
		t.Fatalf("PUT org = %d %s (Location %q)", a.status, a.raw, a.header.Get("Location"))
	}
	if a = f.do(t, "PUT", o, "application/json", `{"displayName":"Acme Ltd","timeZone":"Europe/Paris"}`); a.status != 200 || a.body["displayName"] != "Acme Ltd" {
		t.Fatalf("second PUT org = %d %s", a.status, a.raw)
	}
	if a = f.do(t, "GET", o, "", ""); a.status != 200 || a.body["displayName"] != "Acme Ltd" {
		t.Fatalf("GET org = %d %s", a.status, a.raw)
	}

	// Give the org data in several tables, then erase it.
	if a = f.do(t, "POST", o+"/stakeholders", "application/json", `{"firstName":"Grace","email":"grace@navy.example"}`); a.status != 201 {
		t.Fatalf("POST stakeholder = %d %s", a.status, a.raw)
	}
	if a = f.do(t, "PUT", o+"/m365/settings", "application/json", `{"frequency":"daily"}`); a.status != 200 {
		t.Fatalf("PUT settings = %d %s", a.status, a.raw)
	}
	if a = f.do(t, "POST", o+"/m365/connect", "application/json", `{}`); a.status != 200 {
		t.Fatalf("connect = %d %s", a.status, a.raw)
	}
	before := rowsOf(t, f.store, "acme")
	otherBefore := rowsOf(t, f.store, "org-a")
	a = f.do(t, "DELETE", o, "", "")
	if a.status != 200 || a.body["tenantReleased"] != true {
		t.Fatalf("DELETE org = %d %s", a.status, a.raw)
	}
	removed := obj(a.body["rows"])
	for table, n := range before {
		if removed[table] == nil || int(removed[table].(float64)) < n {
			t.Errorf("report says %v rows of %s removed, %d were there", removed[table], table, n)
		}
	}
	if got := rowsOf(t, f.store, "acme"); len(got) != 0 {
		t.Errorf("rows left after erasure: %v", got)
	}
	if got := rowsOf(t, f.store, "org-a"); len(got) != len(otherBefore) {
		t.Errorf("another org's rows changed: %v, were %v", got, otherBefore)
	}
	wantProblem(t, f.do(t, "GET", o, "", ""), 404, notFoundType, "")
	wantProblem(t, f.do(t, "DELETE", o, "", ""), 404, notFoundType, "")
	wantProblem(t, f.do(t, "GET", o+"/stakeholders", "", ""), 404, notFoundType, "")
}

// TestOrgIDsRefused sends ids a client, proxy or host could normalise into another org's.
func TestOrgIDsRefused(t *testing.T) {
	f := setup(t)
	for _, id := range []string{"%2e", "%2e%2e", "%2E%2E", ".a", "a.", "ORG-A", "Org-a", "org-a%20", "%20org-a", "a%5Cb", "a%2Fb", "a%09b", "it's", "org%2Da%00", "org-%61", "%6Frg-a", "org%2da"} {
		for _, p := range []string{"/api/orgs/" + id, "/api/orgs/" + id + "/m365"} {
			wantProblem(t, f.do(t, "GET", p, "", ""), 400, invalidType, "org")
		}
	}
	// "." and ".." as path segments never reach an org: the path is cleaned first.
	for _, p := range []string{"/api/orgs/./m365", "/api/orgs/../orgs/org-a/m365"} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", f.srv.URL, nil)
		req.URL.Opaque = p // sent as written, not cleaned by the client
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("GET %s = 200: a dot segment reached an org", p)
		}
	}
}

func TestBodyNotUTF8(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct{ path, method, body, field string }{
		{orgA + "/stakeholders", "POST", "{\"firstName\":\"Gr\xffce\",\"email\":\"g@navy.example\"}", "firstName"},
		{orgA + "/stakeholders", "POST", "{\"firstName\":\"Jos\\ud800\",\"email\":\"g@navy.example\"}", "firstName"},
		{orgA + "/m365/settings", "PUT", "{\"frequency\":\"daily\",\"groupFilter\":[\"a\",\"b\xc3\"]}", "groupFilter[1]"},
		{orgA + "/m365/settings", "PUT", "{\"deletionThreshold\":{\"percent\":1,\"n\xffte\":\"x\"}}", "body"},
		{"/api/orgs/acme2", "PUT", "{\"displayName\":\"\xe2\x82\",\"timeZone\":\"UTC\"}", "displayName"},
	} {
		a := f.doH(t, tc.method, tc.path, tc.body, "If-Match", "*")
		wantProblem(t, a, 400, invalidType, tc.field)
	}
	if got := rowsOf(t, f.store, "acme2"); len(got) != 0 {
		t.Errorf("an org was registered from a body that is not UTF-8: %v", got)
	}
	if l := f.do(t, "GET", orgA+"/stakeholders", "", ""); len(list(l.body["stakeholders"])) != 0 {
		t.Errorf("a stakeholder was created from a body that is not UTF-8: %s", l.raw)
	}
}

func TestSearchTextGraphRefuses(t *testing.T) {
	f := setup(t)
	wantProblem(t, f.do(t, "GET", base+"/groups?search=%22change", "", ""), 400, invalidType, "search")
	wantProblem(t, f.do(t, "GET", base+"/groups?search=%FFchange", "", ""), 400, invalidType, "search")
}

// failReader fails the test if the handler reads the body.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("the body was read")
	return 0, io.EOF
}

// TestBodyTooLargeRefusedUnread checks a declared length over the limit is a 413 before anything
// is read or looked up (Deps are empty: a lookup would panic).
func TestBodyTooLargeRefusedUnread(t *testing.T) {
	srv := api.New(api.Deps{Logger: slog.New(slog.DiscardHandler)})
	for _, p := range []string{"/api/orgs/org-a/stakeholders", "/api/orgs/org-a", "/api/orgs/org-a/m365/settings"} {
		method := "POST"
		if !strings.HasSuffix(p, "stakeholders") {
			method = "PUT"
		}
		req := httptest.NewRequestWithContext(context.Background(), method, p, failReader{t})
		req.ContentLength = 5 << 20
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusRequestEntityTooLarge || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s with 5 MiB = %d %s", method, p, w.Code, w.Body)
		}
	}
	// An undeclared (chunked) body over the limit is refused once read that far.
	f := setup(t)
	big := `{"firstName":"` + strings.Repeat("a", 4<<20) + `"}`
	req, _ := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+orgA+"/stakeholders", io.MultiReader(bytes.NewReader([]byte(big))))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("chunked 4 MiB body = %d", resp.StatusCode)
	}
}

func TestHeadOptionsPatch(t *testing.T) {
	f := setup(t)
	h := f.do(t, "HEAD", base+"/status", "", "")
	if h.status != 200 || h.raw != "" {
		t.Errorf("HEAD status = %d %q, want 200 without a body", h.status, h.raw)
	}
	for _, m := range []string{"OPTIONS", "PATCH"} {
		a := f.do(t, m, "/api/orgs/org-a/stakeholders/x", "", "")
		wantProblem(t, a, http.StatusMethodNotAllowed, "urn:leapchange:problem:method-not-allowed", "")
		if a.header.Get("Allow") != "DELETE, GET, PUT" {
			t.Errorf("%s: Allow = %q", m, a.header.Get("Allow"))
		}
	}
	// HEAD of a path without GET is a 405 too (with no body, as HEAD answers have none).
	if a := f.do(t, "HEAD", base+"/sync", "", ""); a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") != "POST" {
		t.Errorf("HEAD sync = %d Allow %q", a.status, a.header.Get("Allow"))
	}
}

// everyOrg is a registry in which every org is registered and active, for stand-in servers that
// test one endpoint without a store.
type everyOrg struct{}

func (everyOrg) Active(_ context.Context, id tablestore.Org) (org.Org, error) {
	return org.Org{ID: id.String(), State: org.Active}, nil
}
func (e everyOrg) Get(ctx context.Context, id tablestore.Org) (org.Org, error) {
	return e.Active(ctx, id)
}
func (everyOrg) Register(context.Context, tablestore.Org, org.Registration) (org.Org, bool, error) {
	return org.Org{}, false, errors.New("everyOrg: read-only")
}
func (everyOrg) Erase(context.Context, tablestore.Org) (org.Report, error) {
	return org.Report{}, errors.New("everyOrg: read-only")
}
