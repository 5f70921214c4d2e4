package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/entra"
)

// deletingDir is twoPages whose delta rounds say u2 was deleted: the second run would deactivate
// 1 of 2 synced stakeholders (over the default 20 %), so the deletion guard holds it.
type deletingDir struct{ twoPages }

func (d deletingDir) UsersDelta(ctx context.Context, tenant, link string) (entra.UserPage, error) {
	if strings.Contains(link, "deltatoken") {
		return entra.UserPage{Users: []entra.User{{ID: "u2", Removed: entra.HardDeleted}}, DeltaLink: link}, nil
	}
	return d.twoPages.UsersDelta(ctx, tenant, link)
}

// startRun starts a run through the API and returns its id.
func (f *fixture) startRun(t *testing.T, body string) string {
	t.Helper()
	a := f.do(t, "POST", base+"/sync", "application/json", body)
	id, _ := a.body["runId"].(string)
	if a.status != http.StatusAccepted || id == "" || a.body["started"] != true {
		t.Fatalf("POST sync = %d %s, want a new run", a.status, a.raw)
	}
	return id
}

func (f *fixture) runState(t *testing.T, id string) string {
	t.Helper()
	a := f.do(t, "GET", base+"/sync/runs/"+id, "", "")
	if a.status != http.StatusOK {
		t.Fatalf("GET run %s = %d %s", id, a.status, a.raw)
	}
	s, _ := a.body["state"].(string)
	return s
}

// Ways to bring a run to the state a cancel case starts from; each returns the run's id.
func runningRun(t *testing.T, f *fixture) string { return f.startRun(t, "") } // its first step queued

func dryRunning(t *testing.T, f *fixture) string { return f.startRun(t, `{"dryRun":true}`) }

func heldRunAPI(t *testing.T, f *fixture) string {
	f.startRun(t, "")
	drain(t, f.q, f.eng)
	id := f.startRun(t, "")
	drain(t, f.q, f.eng)
	if s := f.runState(t, id); s != "held" {
		t.Fatalf("second run is %s, want held by the deletion guard", s)
	}
	return id
}

func succeededRun(t *testing.T, f *fixture) string {
	id := f.startRun(t, "")
	drain(t, f.q, f.eng)
	return id
}

func cancelledRun(t *testing.T, f *fixture) string {
	id := f.startRun(t, "")
	if a := f.do(t, "POST", base+"/sync/runs/"+id+"/cancel", "", ""); a.status != http.StatusOK {
		t.Fatalf("first cancel = %d %s", a.status, a.raw)
	}
	return id
}

func TestCancelRun(t *testing.T) {
	for _, tc := range []struct {
		name        string
		prepare     func(*testing.T, *fixture) string // nil: no run
		id          string                            // the run to cancel when there is none
		contentType string
		body        string
		status      int
		typ, field  string
		detail      string // in the problem's detail
		before      string // the run's state, unchanged by a refused cancel
	}{
		{name: "running", prepare: runningRun, status: 200},
		{name: "running, by someone", prepare: runningRun, contentType: "application/json", body: `{"cancelledBy":"admin@contoso.example"}`, status: 200},
		{name: "held", prepare: heldRunAPI, contentType: "application/json", body: `{"cancelledBy":"admin@contoso.example"}`, status: 200},
		{name: "dry run", prepare: dryRunning, contentType: "application/json", body: `{}`, status: 200},
		{name: "succeeded", prepare: succeededRun, status: 409, typ: conflictType, detail: "succeeded", before: "succeeded"},
		{name: "cancelled already", prepare: cancelledRun, status: 409, typ: conflictType, detail: "cancelled", before: "cancelled"},
		{name: "unknown run", id: "1klxow0l9apkv-fc96", status: 404, typ: notFoundType},
		{name: "malformed run id", id: "nonsense", status: 404, typ: notFoundType},
		{name: "bad JSON", prepare: runningRun, contentType: "application/json", body: `{"cancelledBy":`, status: 400, typ: invalidType, field: "body", before: "running"},
		{name: "unknown field", prepare: runningRun, contentType: "application/json", body: `{"by":"ada"}`, status: 400, typ: invalidType, field: "body", before: "running"},
		{name: "cancelledBy not text", prepare: runningRun, contentType: "application/json", body: `{"cancelledBy":1}`, status: 400, typ: invalidType, field: "body", before: "running"},
		{name: "cancelledBy too long", prepare: heldRunAPI, contentType: "application/json", body: `{"cancelledBy":"` + strings.Repeat("é", 201) + `"}`,
			status: 400, typ: invalidType, field: "cancelledBy", before: "held"},
		{name: "not JSON", prepare: runningRun, contentType: "text/plain", body: "ada", status: 400, typ: invalidType, field: "Content-Type", before: "running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setupWith(t, deletingDir{})
			id := tc.id
			if tc.prepare != nil {
				id = tc.prepare(t, f)
			}
			a := f.do(t, "POST", base+"/sync/runs/"+id+"/cancel", tc.contentType, tc.body)
			if tc.status != http.StatusOK {
				wantProblem(t, a, tc.status, tc.typ, tc.field)
				if detail, _ := a.body["detail"].(string); !strings.Contains(detail, tc.detail) {
					t.Errorf("detail %q does not say %q", detail, tc.detail)
				}
				if tc.before != "" {
					if s := f.runState(t, id); s != tc.before {
						t.Errorf("run is %s after a refused cancel, want %s", s, tc.before)
					}
				}
				return
			}

			by := ""
			if strings.Contains(tc.body, "cancelledBy") {
				by = "admin@contoso.example"
			}
			if a.status != http.StatusOK || a.body["id"] != id || a.body["state"] != "cancelled" || a.body["finishedAt"] == nil || a.body["progress"] != nil {
				t.Fatalf("cancel = %d %s, want 200 with the run cancelled", a.status, a.raw)
			}
			if got, _ := a.body["cancelledBy"].(string); got != by {
				t.Errorf("cancelledBy = %q, want %q", got, by)
			}
			if s := f.runState(t, id); s != "cancelled" {
				t.Errorf("GET run after cancel: %s", s)
			}
			if st := f.do(t, "GET", base+"/status", "", ""); st.body["running"] != nil {
				t.Errorf("status after cancel still shows a running run: %s", st.raw)
			}
			// The org is free: a new sync starts at once, and the cancelled run's queued step
			// (if any) does nothing.
			next := f.startRun(t, "")
			if next == id {
				t.Fatal("POST sync answered with the cancelled run")
			}
			drain(t, f.q, f.eng)
			if s := f.runState(t, id); s != "cancelled" {
				t.Errorf("the cancelled run is %s after the next run", s)
			}
			if s := f.runState(t, next); s != "succeeded" && s != "held" {
				t.Errorf("the next run is %s, want it to have run", s)
			}
			again := f.do(t, "POST", base+"/sync/runs/"+id+"/cancel", "", "")
			wantProblem(t, again, http.StatusConflict, conflictType, "")
		})
	}
}
