package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/api"
	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/consent"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/org"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// twoPages is a directory whose every round is two pages of one user each. The API tests are
// about HTTP; the sync against the simulated tenant is tested in dirsync.
type twoPages struct{}

func (twoPages) UsersDelta(_ context.Context, _, link string) (entra.UserPage, error) {
	if !strings.Contains(link, "skiptoken") {
		return entra.UserPage{
			Users:    []entra.User{{ID: "u1", GivenName: "Ada", Surname: "Lovelace", Mail: "ada@contoso.example", AccountEnabled: true}},
			NextLink: "https://graph.example/v1.0/users/delta?$skiptoken=secret-skip",
		}, nil
	}
	return entra.UserPage{
		Users:     []entra.User{{ID: "u2", GivenName: "Alan", Surname: "Turing", Mail: "alan@contoso.example", AccountEnabled: true}},
		DeltaLink: "https://graph.example/v1.0/users/delta?$deltatoken=secret-state",
	}, nil
}

func (twoPages) User(context.Context, string, string) (entra.User, error) {
	return entra.User{}, &errkind.Error{Kind: errkind.NotFound}
}

func (twoPages) Group(_ context.Context, _, id string) (entra.Group, error) {
	if id == knownGroup {
		return entra.Group{ID: id, DisplayName: "Change champions"}, nil
	}
	return entra.Group{}, &errkind.Error{Kind: errkind.NotFound}
}

func (twoPages) TransitiveUserIDs(context.Context, string, string) ([]string, error) {
	return []string{"u1"}, nil
}

func (twoPages) SearchGroups(_ context.Context, _, q string, limit int) ([]entra.Group, error) {
	if strings.Contains(q, `"`) { // as Graph does for a $search it cannot parse
		return nil, &errkind.Error{Kind: errkind.Invalid, Status: http.StatusBadRequest, Code: "Request_UnsupportedQuery"}
	}
	if strings.Contains("change champions", strings.ToLower(q)) {
		return []entra.Group{{ID: knownGroup, DisplayName: "Change champions"}}, nil
	}
	return nil, nil
}

const knownGroup = "e2c4a6b8-1d3f-4e5a-9b7c-0d2e4f6a8b0c"

// drain runs every published step, at once (the tests' clock is not the queue's), failing the
// test on the first error.
func drain(t *testing.T, q *queuetest.Queue, eng *dirsync.Engine) {
	t.Helper()
	_, err := q.Drain(t.Context(), func(ctx context.Context, d queuetest.Delivery) error {
		return eng.Step(ctx, d.Body, d.Count)
	}, queuetest.DrainOptions{IgnoreSchedule: true, MaxDeliveries: 100, FailOnDeadLetter: true})
	if err != nil {
		t.Fatal(err)
	}
}

type fixture struct {
	srv   *httptest.Server
	eng   *dirsync.Engine
	q     *queuetest.Queue
	store *tablestore.Store
	orgs  *org.Registry
}

// registered are the orgs setup registers; every other org is unknown.
var registered = []string{"org-a", "org-b", "org-new"}

// testDirectory is the tenant's directory as the sync engine and the API read it.
type testDirectory interface {
	UsersDelta(ctx context.Context, tenant, link string) (entra.UserPage, error)
	User(ctx context.Context, tenant, id string) (entra.User, error)
	Group(ctx context.Context, tenant, id string) (entra.Group, error)
	TransitiveUserIDs(ctx context.Context, tenant, group string) ([]string, error)
	SearchGroups(ctx context.Context, tenant, q string, limit int) ([]entra.Group, error)
}

// setup serves the API over Azurite with org-a connected, the registered orgs, and the
// two-page directory.
func setup(t *testing.T) *fixture { return setupWith(t, twoPages{}) }

// setupWith is setup reading dir; the engine runs one step per page.
func setupWith(t *testing.T, dir testDirectory) *fixture {
	t.Helper()
	store := tablestoretest.Open(t)
	conns := connection.NewStore(store)
	orgA, _ := tablestore.NewOrg("org-a")
	if _, err := conns.Put(t.Context(), orgA, connection.Record{Status: connection.Connected, TenantID: "11111111-2222-3333-4444-555555555555"}, ""); err != nil {
		t.Fatal(err)
	}
	clock := testenv.Ticking(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), time.Millisecond) // run ids sort by start
	f := &fixture{q: &queuetest.Queue{}, store: store}
	f.eng = dirsync.New(dirsync.Config{Store: store, Directory: dir, Queue: f.q, Tenants: conns, Now: clock, StepBudget: time.Nanosecond})
	flow := consent.New(consent.Config{Store: store, Connections: conns, ClientID: "6d0a4f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6",
		PublicBaseURL: "https://leap.example.net", LeapAppURL: "https://app.leap.example.net/settings", Key: []byte("0123456789abcdef0123456789abcdef"), Now: clock})
	f.orgs = org.New(org.Config{Store: store, Tenant: flow, Now: clock})
	for _, id := range registered {
		if _, _, err := f.orgs.Register(t.Context(), tablestoretest.Org(t, id), org.Registration{DisplayName: id, TimeZone: "Europe/London"}); err != nil {
			t.Fatal(err)
		}
	}
	f.srv = httptest.NewServer(api.New(api.Deps{
		Orgs: f.orgs, Sync: f.eng, Connections: conns, Consent: flow, Settings: syncsettings.NewStore(store), Directory: dir,
		Stakeholders: stakeholder.NewStore(store), Groups: stakeholder.NewGroups(store), Now: clock,
		NextSync: func(syncsettings.Settings, time.Time) (time.Time, bool) {
			return time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC), true
		},
	}))
	t.Cleanup(f.srv.Close)
	return f
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (f *fixture) do(t *testing.T, method, path, contentType, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return send(t, req)
}

// send sends req and reads the answer, whose body must be a JSON object when there is one.
func send(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object: %v", req.Method, req.URL.Path, raw, err)
		}
	}
	return a
}

// wantProblem checks a problem+json answer of status and type, naming field when given.
func wantProblem(t *testing.T, a answer, status int, typ, field string) {
	t.Helper()
	if a.status != status || a.header.Get("Content-Type") != "application/problem+json" || a.body["type"] != typ {
		t.Fatalf("answer %d %s %s, want %d problem %s", a.status, a.header.Get("Content-Type"), a.raw, status, typ)
	}
	if field == "" {
		return
	}
	errs, _ := a.body["errors"].([]any)
	for _, e := range errs {
		if m, _ := e.(map[string]any); m["field"] == field {
			return
		}
	}
	t.Errorf("problem %s does not name field %q", a.raw, field)
}

const (
	base        = "/api/orgs/org-a/m365"
	invalidType = "urn:leapchange:problem:invalid-request"
)

func TestStartSync(t *testing.T) {
	f := setup(t)
	a := f.do(t, "POST", base+"/sync", "", "")
	id, _ := a.body["runId"].(string)
	if a.status != http.StatusAccepted || id == "" || a.body["started"] != true || a.body["state"] != "running" {
		t.Fatalf("POST sync = %d %s", a.status, a.raw)
	}
	if loc := a.header.Get("Location"); loc != base+"/sync/runs/"+id {
		t.Errorf("Location = %q", loc)
	}
	again := f.do(t, "POST", base+"/sync", "application/json", `{"dryRun":false}`)
	if again.status != http.StatusAccepted || again.body["runId"] != id || again.body["started"] != false {
		t.Errorf("second POST sync = %d %s, want 202 with run %s and started false", again.status, again.raw, id)
	}
	run := f.do(t, "GET", base+"/sync/runs/"+id, "", "")
	if run.status != http.StatusOK || run.body["id"] != id || run.body["state"] != "running" {
		t.Errorf("GET run = %d %s", run.status, run.raw)
	}
}

func TestRequestErrors(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct {
		name, method, path, contentType, body string
		status                                int
		typ, field                            string
	}{
		{"not connected", "POST", "/api/orgs/org-b/m365/sync", "", "", 409, "urn:leapchange:problem:not-connected", ""},
		{"bad org", "POST", "/api/orgs/it's/m365/sync", "", "", 400, invalidType, "org"},
		{"bad org on insights", "GET", "/api/orgs/it's/insights", "", "", 400, invalidType, "org"},
		{"unknown run", "GET", base + "/sync/runs/1klxow0l9apkv-fc96", "", "", 404, "urn:leapchange:problem:not-found", ""},
		{"malformed run id", "GET", base + "/sync/runs/nonsense", "", "", 404, "urn:leapchange:problem:not-found", ""},
		{"invalid JSON", "POST", base + "/sync", "application/json", `{"dryRun":`, 400, invalidType, "body"},
		{"unknown field", "POST", base + "/sync", "application/json", `{"dryrun":true,"full":1}`, 400, invalidType, "body"},
		{"trailing data", "POST", base + "/sync", "application/json", `{} {}`, 400, invalidType, "body"},
		{"not JSON", "POST", base + "/sync", "text/plain", `hello`, 400, invalidType, "Content-Type"},
		{"limit 0", "GET", base + "/sync/runs?limit=0", "", "", 400, invalidType, "limit"},
		{"limit 101", "GET", base + "/sync/runs?limit=101", "", "", 400, invalidType, "limit"},
		{"limit text", "GET", base + "/sync/runs?limit=ten", "", "", 400, invalidType, "limit"},
		{"delete unknown stakeholder", "DELETE", "/api/orgs/org-a/stakeholders/x", "", "", 404, "urn:leapchange:problem:not-found", ""},
		{"no such path", "GET", "/api/nothing", "", "", 404, "urn:leapchange:problem:not-found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, f.do(t, tc.method, tc.path, tc.contentType, tc.body), tc.status, tc.typ, tc.field)
		})
	}
	// None of these started a run.
	if runs, err := f.eng.Runs(t.Context(), tablestoretest.Org(t, "org-a"), 10); err != nil || len(runs) != 0 {
		t.Errorf("runs after bad requests = %d, %v", len(runs), err)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", base + "/sync", "POST"},
		{"DELETE", base + "/status", "GET"},
		{"POST", base + "/sync/runs", "GET"},
		{"PATCH", "/api/orgs/org-a/teams", "DELETE, GET"},
	} {
		a := f.do(t, tc.method, tc.path, "", "")
		wantProblem(t, a, http.StatusMethodNotAllowed, "urn:leapchange:problem:method-not-allowed", "")
		if got := a.header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

func TestRunsAndStatus(t *testing.T) {
	f := setup(t)
	st := f.do(t, "GET", base+"/status", "", "")
	if st.status != 200 || st.body["connection"] != "connected" || st.body["lastRun"] != nil || st.body["running"] != nil {
		t.Fatalf("status before any run = %d %s", st.status, st.raw)
	}
	var ids []string
	for range 3 {
		a := f.do(t, "POST", base+"/sync", "", "")
		ids = append(ids, a.body["runId"].(string))
		drain(t, f.q, f.eng)
	}
	running := f.do(t, "POST", base+"/sync", "", "")
	ids = append(ids, running.body["runId"].(string))

	list := f.do(t, "GET", base+"/sync/runs?limit=3", "", "")
	runs, _ := list.body["runs"].([]any)
	if list.status != 200 || len(runs) != 3 {
		t.Fatalf("GET runs?limit=3 = %d %s", list.status, list.raw)
	}
	for i, r := range runs {
		if got := r.(map[string]any)["id"]; got != ids[len(ids)-1-i] {
			t.Errorf("runs[%d] = %v, want %s (newest first)", i, got, ids[len(ids)-1-i])
		}
	}
	if strings.Contains(list.raw, "nextLink") || strings.Contains(list.raw, "secret") {
		t.Errorf("the run list shows sync state: %s", list.raw)
	}

	st = f.do(t, "GET", base+"/status", "", "")
	last, _ := st.body["lastRun"].(map[string]any)
	run, _ := st.body["running"].(map[string]any)
	if st.status != 200 || last["id"] != ids[2] || last["state"] != "succeeded" || run["id"] != ids[3] ||
		st.body["lastSync"] == nil || st.body["recordsSynced"] != 2.0 {
		t.Errorf("status = %s", st.raw)
	}
}

// TestRunViewHidesCheckpoint looks at a run paused between steps, when its record holds the
// Graph link it resumes from.
func TestRunViewHidesCheckpoint(t *testing.T) {
	f := setup(t)
	a := f.do(t, "POST", base+"/sync", "", "")
	id := a.body["runId"].(string)
	m := f.q.Lose()[0] // the first step only: the run stays between steps
	if err := f.eng.Step(t.Context(), m.Body, 1); err != nil {
		t.Fatal(err)
	}
	stored, _, err := f.eng.Run(t.Context(), tablestoretest.Org(t, "org-a"), id)
	if err != nil || stored.NextLink == "" || stored.State != dirsync.Running {
		t.Fatalf("stored run = %+v, %v; want a running run with a checkpoint link", stored, err)
	}
	for _, path := range []string{base + "/sync/runs/" + id, base + "/sync/runs", base + "/status"} {
		got := f.do(t, "GET", path, "", "")
		if got.status != 200 || strings.Contains(got.raw, "nextLink") || strings.Contains(got.raw, "secret") ||
			strings.Contains(got.raw, `"recorded"`) || strings.Contains(got.raw, `"hadSynced"`) || strings.Contains(got.raw, `"cursor"`) {
			t.Errorf("GET %s = %d %s: shows the checkpoint", path, got.status, got.raw)
		}
	}
	if got := f.do(t, "GET", base+"/sync/runs/"+id, "", ""); got.body["step"] != 1.0 || got.body["processed"] != 1.0 {
		t.Errorf("run view = %s, want step 1, processed 1", got.raw)
	}
}

func TestConnectionEndpoints(t *testing.T) {
	f := setup(t)
	const fresh = "/api/orgs/org-new/m365"

	a := f.do(t, "GET", fresh, "", "")
	if a.status != 200 || a.body["status"] != "disconnected" || a.body["needsReauthorization"] != false {
		t.Fatalf("GET before connecting: %d %s", a.status, a.raw)
	}
	if req, _ := a.body["requiredPermissions"].([]any); len(req) != 3 {
		t.Errorf("requiredPermissions = %v, want the three least-privilege permissions", a.body["requiredPermissions"])
	}

	a = f.do(t, "POST", fresh+"/connect", "application/json", `{}`)
	if a.status != 200 {
		t.Fatalf("connect: %d %s", a.status, a.raw)
	}
	u, err := url.Parse(a.body["consentUrl"].(string))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Host != "login.microsoftonline.com" || u.Path != "/organizations/v2.0/adminconsent" ||
		q.Get("scope") != "https://graph.microsoft.com/.default" || q.Get("redirect_uri") != "https://leap.example.net/api/consent/callback" ||
		q.Get("client_id") != "6d0a4f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6" || q.Get("state") == "" {
		t.Errorf("consentUrl = %s", u)
	}
	if a := f.do(t, "GET", fresh, "", ""); a.body["status"] != "pending" {
		t.Errorf("status after connect = %v, want pending", a.body["status"])
	}
	wantProblem(t, f.do(t, "POST", fresh+"/connect", "application/json", `{"allowShared":true}`), 400, invalidType, "body")
	// Sharing a tenant between orgs is an operator setting, not a flag any org can send.
	wantProblem(t, f.do(t, "POST", fresh+"/connect", "application/json", `{"allowSharedTenant":true}`), 400, invalidType, "body")
	// The confirm step: a ticket is required, and one this org was not handed confirms nothing.
	wantProblem(t, f.do(t, "POST", fresh+"/connect/confirm", "application/json", `{}`), 400, invalidType, "ticket")
	wantProblem(t, f.do(t, "POST", fresh+"/connect/confirm", "application/json", `{"ticket":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`), 400, "urn:leapchange:problem:invalid-consent-state", "")
	if a := f.do(t, "GET", fresh, "", ""); a.body["status"] != "pending" {
		t.Errorf("status after a refused confirmation = %v, want pending", a.body["status"])
	}

	// Disconnect keeps the record (and history) and is idempotent.
	for range 2 {
		if a := f.do(t, "DELETE", "/api/orgs/org-a/m365", "", ""); a.status != 204 {
			t.Fatalf("disconnect: %d %s", a.status, a.raw)
		}
	}
	a = f.do(t, "GET", "/api/orgs/org-a/m365", "", "")
	if a.body["status"] != "disconnected" || a.body["tenantId"] != nil {
		t.Errorf("after disconnect: %s", a.raw)
	}
	wantProblem(t, f.do(t, "POST", base+"/sync", "", ""), 409, "urn:leapchange:problem:not-connected", "")
}
