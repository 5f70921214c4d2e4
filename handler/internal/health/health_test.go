package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHealth(t *testing.T) {
	ok := func(context.Context) error { return nil }
	// An error text that must never reach the anonymous answer.
	leaky := func(context.Context) error {
		return errors.New("dial tcp 10.1.2.3:443: AccountKey=c2VjcmV0 refused")
	}
	slow := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	for _, tc := range []struct {
		name         string
		tables, bus  func(context.Context) error
		status       int
		contentType  string
		detail       string
		healthyTable bool
	}{
		{"all answer", ok, ok, 200, "application/json", "", true},
		{"table storage down", leaky, ok, 503, "application/problem+json", "Table Storage does not answer", false},
		{"service bus times out", ok, slow, 503, "application/problem+json", "Service Bus timed out", true},
		{"both down", leaky, leaky, 503, "application/problem+json", "Table Storage does not answer; Service Bus does not answer", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(Config{Version: "abc123", Timeout: 50 * time.Millisecond},
				Check{Name: "tableStorage", Title: "Table Storage", Ping: tc.tables},
				Check{Name: "serviceBus", Title: "Service Bus", Ping: tc.bus})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/health", nil))
			if rec.Code != tc.status || rec.Header().Get("Content-Type") != tc.contentType {
				t.Fatalf("status %d %q, want %d %q", rec.Code, rec.Header().Get("Content-Type"), tc.status, tc.contentType)
			}
			body := rec.Body.String()
			if strings.Contains(body, "AccountKey") || strings.Contains(body, "10.1.2.3") {
				t.Errorf("the answer shows an error's text: %s", body)
			}
			var got struct {
				Type, Detail, Status string
				Version              string
				Checks               []Result
			}
			// status is a number in a problem and a word in a report: decode the rest.
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			json.Unmarshal(raw["version"], &got.Version)
			json.Unmarshal(raw["checks"], &got.Checks)
			json.Unmarshal(raw["detail"], &got.Detail)
			json.Unmarshal(raw["type"], &got.Type)
			if got.Version != "abc123" || len(got.Checks) != 2 || got.Checks[0].Healthy != tc.healthyTable {
				t.Errorf("report = %s", body)
			}
			if tc.status == 503 && (got.Detail != tc.detail || got.Type != "urn:leapchange:problem:temporarily-unavailable") {
				t.Errorf("problem = %s, want detail %q", body, tc.detail)
			}
		})
	}
}

// TestHealthSharesRecentResults: probes within CacheFor are answered from the last round, so an
// anonymous flood never multiplies calls to Table Storage and Service Bus.
func TestHealthSharesRecentResults(t *testing.T) {
	var calls atomic.Int32
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	h := New(Config{Now: func() time.Time { return now }, CacheFor: 5 * time.Second},
		Check{Name: "tableStorage", Title: "Table Storage", Ping: func(context.Context) error { calls.Add(1); return nil }})
	for range 10 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/health", nil))
	}
	if calls.Load() != 1 {
		t.Errorf("%d pings for 10 probes within the cache time, want 1", calls.Load())
	}
	now = now.Add(6 * time.Second)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/health", nil))
	if calls.Load() != 2 {
		t.Errorf("%d pings after the cache time, want 2", calls.Load())
	}
}

func TestVersionIsNeverEmpty(t *testing.T) {
	if Version() == "" {
		t.Error("empty version")
	}
	if h := New(Config{}); h.cfg.Version == "" || h.cfg.Version != Version() {
		t.Errorf("default version %q", h.cfg.Version)
	}
}
