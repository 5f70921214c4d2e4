package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
)

// TestHealthFunction serves GET /api/health through the handler's routes with the real Table
// Storage and queue clients: Azurite up and the host stand-in's queue answering is healthy;
// Table Storage down is a 503 naming it, with no setting's value in the answer.
func TestHealthFunction(t *testing.T) {
	queues := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" && r.URL.Path == "/_devhost/queues" {
			w.Write([]byte(`{}`))
			return
		}
		http.NotFound(w, r)
	}))
	defer queues.Close()
	azurite := azuritetest.Start(t)
	down := azuritetest.ConnectionString(1) // nothing listens on port 1
	for _, tc := range []struct {
		name, tables, bus string
		status            int
		detail            string
	}{
		{"all answer", azurite, "devhost=" + queues.URL, 200, ""},
		{"table storage down", down, "devhost=" + queues.URL, 503, "Table Storage"},
		{"queue down", azurite, "devhost=http://127.0.0.1:1", 503, "Service Bus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(validEnv(map[string]string{"TablesConnection": tc.tables, "ServiceBusConnection": tc.bus}))
			if err != nil {
				t.Fatal(err)
			}
			a, err := newApp(t.Context(), cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			a.routes().ServeHTTP(rec, httptest.NewRequest("GET", "/api/health", nil))
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			if rec.Code != tc.status || body["version"] == "" || len(body["checks"].([]any)) != 2 {
				t.Fatalf("GET /api/health = %d %s", rec.Code, rec.Body)
			}
			// A refused connection is retried by the SDK, so on a slow machine it may time out instead.
			if d, _ := body["detail"].(string); tc.status == 503 && d != tc.detail+" does not answer" && d != tc.detail+" timed out" {
				t.Errorf("detail = %q, want it to name %s only", d, tc.detail)
			}
			for _, secret := range []string{azuritetest.AccountKey, "top-secret-value", "bot-secret-value", "0123456789abcdef"} {
				if strings.Contains(rec.Body.String(), secret) {
					t.Errorf("the answer shows a secret: %s", rec.Body)
				}
			}
		})
	}
}
