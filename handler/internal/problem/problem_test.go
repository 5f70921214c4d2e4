package problem_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/problem"
)

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p          problem.Problem
		wantStatus int
		wantRetry  string
		wantDetail string
	}{
		{"not found", problem.New(404, problem.NotFound, "org acme is unknown"), 404, "", "org acme is unknown"},
		{"one field", problem.InvalidFields(problem.FieldError{Field: "timeZone", Message: "unknown IANA zone"}), 400, "", "timeZone: unknown IANA zone"},
		{"retry rounds up", problem.Problem{Type: problem.Unavailable, Status: 503, RetryAfter: 1500 * time.Millisecond}, 503, "2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			problem.Write(rec, httptest.NewRequest("GET", "/api/orgs/acme/m365", nil), tc.p)
			if rec.Code != tc.wantStatus || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("status %d type %q", rec.Code, rec.Header().Get("Content-Type"))
			}
			if got := rec.Header().Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tc.wantRetry)
			}
			var doc map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			if doc["type"] != string(tc.p.Type) || doc["instance"] != "/api/orgs/acme/m365" || doc["title"] != http.StatusText(tc.wantStatus) {
				t.Errorf("document = %v", doc)
			}
			if tc.wantDetail != "" && doc["detail"] != tc.wantDetail {
				t.Errorf("detail = %v, want %q", doc["detail"], tc.wantDetail)
			}
		})
	}
}
