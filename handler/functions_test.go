package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/appfiles"
)

// designTable is the function contract (README, Architecture; functions/): names, triggers and
// queues are fixed.
var designTable = map[string]struct {
	trigger, route, authLevel, queue, schedule string
	methods                                    []string
}{
	"Api":                 {trigger: "httpTrigger", route: "orgs/{org}/{*rest}", authLevel: "function", methods: []string{"get", "post", "put", "delete", "patch", "head", "options"}},
	"ConsentCallback":     {trigger: "httpTrigger", route: "consent/callback", authLevel: "anonymous", methods: []string{"get"}},
	"GraphNotifications":  {trigger: "httpTrigger", route: "graph/notifications", authLevel: "anonymous", methods: []string{"post"}},
	"GraphLifecycle":      {trigger: "httpTrigger", route: "graph/lifecycle", authLevel: "anonymous", methods: []string{"post"}},
	"BotMessages":         {trigger: "httpTrigger", route: "messages", authLevel: "anonymous", methods: []string{"post"}},
	"Health":              {trigger: "httpTrigger", route: "health", authLevel: "anonymous", methods: []string{"get"}},
	"SyncScheduler":       {trigger: "timerTrigger", schedule: "0 */15 * * * *"},
	"SubscriptionRenewer": {trigger: "timerTrigger", schedule: "0 */10 * * * *"},
	"SyncWorker":          {trigger: "serviceBusTrigger", queue: "sync-jobs"},
	"ChannelEventWorker":  {trigger: "serviceBusTrigger", queue: "channel-events"},
	"MailSender":          {trigger: "serviceBusTrigger", queue: "outbound-mail"},
	"TeamsSender":         {trigger: "serviceBusTrigger", queue: "outbound-teams"},
}

func testApp(t *testing.T) *app {
	t.Helper()
	cfg, err := loadConfig(validEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestFunctionFoldersMatchDesignAndRoutes checks every function.json against the design table
// and against the handler's routes: same names, valid bindings, the binding names and data types
// the handler decodes.
func TestFunctionFoldersMatchDesignAndRoutes(t *testing.T) {
	fa, err := appfiles.Load("..")
	if err != nil {
		t.Fatal(err)
	}
	if probs := fa.Validate(); probs.Err() != nil {
		t.Fatalf("function.json / host.json problems:\n%v", probs.Err())
	}
	var folders []string
	for _, f := range fa.Functions {
		folders = append(folders, f.Name)
	}
	var served []string
	byName := map[string]function{}
	for _, f := range testApp(t).functions() {
		served = append(served, f.name)
		byName[f.name] = f
	}
	var design []string
	for name := range designTable {
		design = append(design, name)
	}
	slices.Sort(folders)
	slices.Sort(served)
	slices.Sort(design)
	if !slices.Equal(folders, design) || !slices.Equal(served, design) {
		t.Fatalf("functions differ:\n folders %v\n served  %v\n design  %v", folders, served, design)
	}
	for _, f := range fa.Functions {
		t.Run(f.Name, func(t *testing.T) {
			want := designTable[f.Name]
			trig := f.Trigger()
			if trig == nil || !strings.EqualFold(trig.Type, want.trigger) {
				t.Fatalf("trigger = %+v, want %s", trig, want.trigger)
			}
			h := byName[f.Name]
			switch want.trigger {
			case "httpTrigger":
				if !fa.IsRawHTTP(f) {
					t.Error("HTTP function would be invoked in JSON mode: it must have exactly httpTrigger + http out")
				}
				if trig.Route != want.route || trig.AuthLevel != want.authLevel || !slices.Equal(trig.Methods, want.methods) {
					t.Errorf("binding = route %q auth %q methods %v, want %q %q %v", trig.Route, trig.AuthLevel, trig.Methods, want.route, want.authLevel, want.methods)
				}
				if h.http == "" || !strings.Contains(h.http, "/api/"+strings.Split(want.route, "{")[0]) {
					t.Errorf("handler path %q does not serve route %q", h.http, want.route)
				}
			case "timerTrigger":
				if trig.Schedule != want.schedule || trig.Name != "timer" {
					t.Errorf("timer = %q named %q, want %q named timer", trig.Schedule, trig.Name, want.schedule)
				}
			case "serviceBusTrigger":
				if trig.QueueName != want.queue || trig.Name != "msg" || trig.DataType != "binary" || trig.Connection != "ServiceBusConnection" {
					t.Errorf("trigger = %+v, want queue %s, name msg, dataType binary, connection ServiceBusConnection", trig, want.queue)
				}
			}
		})
	}
}

// TestRoutesAnswerEveryFunction invokes each function once the way the host would and checks
// that it is served (never the catch-all 404), and that the start-up ping is answered.
func TestRoutesAnswerEveryFunction(t *testing.T) {
	h := testApp(t).routes()
	do := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), method, path, strings.NewReader(body)))
		return rec
	}
	if rec := do("GET", "/", ""); rec.Code != http.StatusOK {
		t.Errorf("ping: %d", rec.Code)
	}
	timer := `{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}`
	msg := `{"Data":{"msg":"e30="},"Metadata":{"DeliveryCount":"1"}}`
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
		wantType                 string
	}{
		{"ConsentCallback", "GET", "/api/consent/callback?state=x", "", 400, "application/problem+json"},
		{"GraphNotifications without an org", "POST", "/api/graph/notifications", "{}", 400, "application/problem+json"},
		{"GraphNotifications handshake", "POST", "/api/graph/notifications?validationToken=a%2Bb+c", "", 200, "text/plain; charset=utf-8"},
		{"GraphLifecycle without an org", "POST", "/api/graph/lifecycle", "{}", 400, "application/problem+json"},
		{"BotMessages without a token", "POST", "/api/messages", "{}", 401, "text/plain; charset=utf-8"},
		{"Api unknown path", "GET", "/api/orgs/acme/nothing-here", "", 404, "application/problem+json"},
		// (The API's own answers, 501 for planned paths included, need a registered org: package api tests them.)
		{"Api org path, no rest", "PATCH", "/api/orgs/acme", "", 405, "application/problem+json"},
		{"Health bad method", "PATCH", "/api/health", "", 405, "application/problem+json"},
		{"callback OPTIONS", "OPTIONS", "/api/consent/callback", "", 405, "application/problem+json"},
		{"Api bad method", "PATCH", "/api/orgs/acme/m365/sync", "", 405, "application/problem+json"},
		{"SubscriptionRenewer", "POST", "/SubscriptionRenewer", timer, 500, "application/json"},
		{"ChannelEventWorker", "POST", "/ChannelEventWorker", msg, 500, "application/json"},
		{"MailSender", "POST", "/MailSender", msg, 500, "application/json"},
		{"TeamsSender", "POST", "/TeamsSender", msg, 500, "application/json"},
		{"SyncWorker malformed job", "POST", "/SyncWorker", msg, 500, "application/json"},
		{"JSON-mode fallback", "POST", "/ConsentCallback", `{"Data":{"req":{"Url":"https://x/api/consent/callback","Method":"GET","Headers":{}}},"Metadata":{}}`, 200, "application/json"},
		{"unknown function", "POST", "/NoSuchFunction", "{}", 404, "application/problem+json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(tc.method, tc.path, tc.body)
			if rec.Code != tc.want || rec.Header().Get("Content-Type") != tc.wantType {
				b, _ := io.ReadAll(rec.Body)
				t.Fatalf("%s %s = %d %s, want %d %s: %s", tc.method, tc.path, rec.Code, rec.Header().Get("Content-Type"), tc.want, tc.wantType, b)
			}
			if tc.wantType == "application/json" {
				var resp struct{ Logs []string }
				if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || (tc.want != 200 && len(resp.Logs) == 0) {
					t.Errorf("invocation answer %q has no reason", rec.Body.String())
				}
			}
		})
	}
}

func TestExampleSettingsListEverySetting(t *testing.T) {
	b, err := os.ReadFile("../local.settings.example.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Values map[string]string }
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, name := range settingNames {
		if name == "FUNCTIONS_CUSTOMHANDLER_PORT" {
			continue // the host sets it
		}
		if _, ok := doc.Values[name]; !ok {
			t.Errorf("local.settings.example.json lacks %s", name)
		}
	}
	hostOnly := []string{"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "DEVHOST_FUNCTION_KEY"}
	for name := range doc.Values {
		if !slices.Contains(settingNames, name) && !slices.Contains(hostOnly, name) {
			t.Errorf("local.settings.example.json has %s, which nothing reads", name)
		}
	}
}
