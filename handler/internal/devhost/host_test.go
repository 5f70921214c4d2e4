package devhost

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// call is one request the fake handler received.
type call struct {
	Method, URI string
	Header      http.Header
	Body        []byte
	ctx         context.Context // the request's: done when the host hangs up
}

// fakeHandler stands in for the custom handler: it records every call and answers with respond,
// or with {"Outputs":{}} as JSON when respond is nil or returns false.
type fakeHandler struct {
	mu      sync.Mutex
	respond func(w http.ResponseWriter, c call) bool
	calls   chan call
}

func (f *fakeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c := call{Method: r.Method, URI: r.URL.RequestURI(), Header: r.Header.Clone(), Body: b, ctx: r.Context()}
	f.calls <- c
	f.mu.Lock()
	respond := f.respond
	f.mu.Unlock()
	if respond != nil && respond(w, c) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"Outputs":{},"Logs":["ok"]}`)
}

func (f *fakeHandler) setRespond(fn func(w http.ResponseWriter, c call) bool) {
	f.mu.Lock()
	f.respond = fn
	f.mu.Unlock()
}

// answerJSON makes the calls whose URI has the given prefix answer body as JSON.
func (f *fakeHandler) answerJSON(uriPrefix, body string) {
	f.setRespond(func(w http.ResponseWriter, c call) bool {
		if !strings.HasPrefix(c.URI, uriPrefix) {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
		return true
	})
}

// next returns the next call whose URI has the given prefix, skipping others.
func (f *fakeHandler) next(t *testing.T, uriPrefix string) call {
	t.Helper()
	deadline := time.After(time.Minute) // liveness only
	for {
		select {
		case c := <-f.calls:
			if strings.HasPrefix(c.URI, uriPrefix) {
				return c
			}
		case <-deadline:
			t.Fatalf("no call to %s within a minute", uriPrefix)
		}
	}
}

type testHost struct {
	*Host
	fake  *fakeHandler
	clock *fakeClock
}

func startHost(t *testing.T, tweak func(*Config)) *testHost {
	t.Helper()
	fake := &fakeHandler{calls: make(chan call, 1000)}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	clk := newFakeClock(t0)
	cfg := Config{
		Root: "testdata/app", HandlerURL: srv.URL, Clock: clk,
		Settings: map[string]string{"FUNCTIONS_WORKER_RUNTIME": "custom"},
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &testHost{Host: h, fake: fake, clock: clk}
}

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestHTTPRoutingAndKeys(t *testing.T) {
	h := startHost(t, func(c *Config) { c.Settings["DEVHOST_FUNCTION_KEY"] = "s3cret" })
	for _, tc := range []struct {
		name, method, path, key string
		want                    int
		forwarded               string // URI the handler must see; "" = not called
	}{
		{"key header", "GET", "/api/orgs/acme/m365?x=1", "s3cret", 200, "/api/orgs/acme/m365?x=1"},
		{"key in code query is kept", "GET", "/api/orgs/acme/m365?code=s3cret&y=2", "", 200, "/api/orgs/acme/m365?code=s3cret&y=2"},
		{"catch-all empty", "DELETE", "/api/orgs/acme", "s3cret", 200, "/api/orgs/acme"},
		{"escaped path kept", "GET", "/api/orgs/a%2Fb/m365", "s3cret", 200, "/api/orgs/a%2Fb/m365"},
		{"wrong key", "GET", "/api/orgs/acme/m365", "nope", 401, ""},
		{"no key", "GET", "/api/orgs/acme/m365", "", 401, ""},
		{"method not in methods", "PATCH", "/api/orgs/acme/m365", "s3cret", 404, ""},
		{"anonymous", "GET", "/api/consent/callback?code=abc&state=xyz", "", 200, "/api/consent/callback?code=abc&state=xyz"},
		{"anonymous wrong method", "POST", "/api/consent/callback", "", 404, ""},
		{"admin level needs key", "POST", "/api/ops/12", "", 401, ""},
		{"admin level with key", "POST", "/api/ops/12", "s3cret", 200, "/api/ops/12"},
		{"route constraint", "POST", "/api/ops/abc", "s3cret", 404, ""},
		{"unknown route", "GET", "/api/nothing/here", "s3cret", 404, ""},
		{"outside the prefix", "GET", "/orgs/acme/m365", "s3cret", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, h.URL()+tc.path, nil)
			if tc.key != "" {
				req.Header.Set("x-functions-key", tc.key)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d", res.StatusCode, tc.want)
			}
			if tc.forwarded != "" {
				if c := h.fake.next(t, "/api/"); c.URI != tc.forwarded || c.Method != tc.method {
					t.Fatalf("handler saw %s %s, want %s %s", c.Method, c.URI, tc.method, tc.forwarded)
				}
			}
			select {
			case c := <-h.fake.calls:
				t.Fatalf("unexpected handler call %s %s", c.Method, c.URI)
			default:
			}
		})
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestProxyHeadersBodyAndRedirect(t *testing.T) {
	h := startHost(t, nil)
	h.fake.setRespond(func(w http.ResponseWriter, c call) bool {
		w.Header().Set("Location", "https://example.com/done")
		w.Header().Set("X-Custom", "1")
		w.WriteHeader(http.StatusFound)
		io.WriteString(w, "moved")
		return true
	})
	req, _ := http.NewRequest("POST", h.URL()+"/api/orgs/acme/m365/sync?dry=1", strings.NewReader(`{"dryRun":true}`))
	req.Header.Set("x-functions-key", "dev")
	req.Header.Set("User-Agent", "leap-web/1.0")
	req.Header.Set("Authorization", "Bearer abc")
	res, err := noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "https://example.com/done" || res.Header.Get("X-Custom") != "1" || string(body) != "moved" {
		t.Fatalf("answer = %d %v %q; want the handler's 302 passed back", res.StatusCode, res.Header, body)
	}
	c := h.fake.next(t, "/api/")
	if string(c.Body) != `{"dryRun":true}` {
		t.Errorf("body = %q", c.Body)
	}
	id := c.Header.Get("X-Azure-Functions-InvocationId")
	if !uuidRE.MatchString(id) || c.Header.Get("x-ms-invocation-id") != id {
		t.Errorf("invocation id headers = %q / %q", id, c.Header.Get("x-ms-invocation-id"))
	}
	if v := c.Header.Get("X-Azure-Functions-HostVersion"); v != DefaultHostVersion {
		t.Errorf("host version = %q", v)
	}
	if ua := c.Header.Get("User-Agent"); ua != "leap-web/1.0 Azure-Functions-Host/"+DefaultHostVersion {
		t.Errorf("User-Agent = %q", ua)
	}
	if c.Header.Get("Authorization") != "Bearer abc" || c.Header.Get("x-functions-key") != "dev" {
		t.Errorf("caller headers not kept: %v", c.Header)
	}
}

// normalize replaces the random parts of a JSON-mode payload so it can be compared with a golden file.
func normalize(t *testing.T, body []byte) []byte {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("payload is not JSON: %v\n%s", err, body)
	}
	md, _ := v["Metadata"].(map[string]any)
	if sys, ok := md["sys"].(map[string]any); ok && uuidRE.MatchString(fmt.Sprint(sys["RandGuid"])) {
		sys["RandGuid"] = "<uuid>"
	}
	if lt, ok := md["LockToken"].(string); ok {
		var s string
		if json.Unmarshal([]byte(lt), &s) == nil && uuidRE.MatchString(s) {
			md["LockToken"] = `"<uuid>"`
		}
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(v)
	return out.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		os.WriteFile(path, got, 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestTimerFiresOnSchedule(t *testing.T) {
	h := startHost(t, nil)
	h.clock.Advance(time.Minute) // 09:14 → 09:15
	c := h.fake.next(t, "/Tick")
	if c.Method != "POST" || c.Header.Get("Content-Type") != "application/json" || !uuidRE.MatchString(c.Header.Get("X-Azure-Functions-InvocationId")) ||
		!strings.Contains(c.Header.Get("User-Agent"), "Azure-Functions-Host/") {
		t.Errorf("request = %s %s %v", c.Method, c.URI, c.Header)
	}
	golden(t, "timer-first.json", normalize(t, c.Body))

	h.clock.Advance(15 * time.Minute) // 09:30
	golden(t, "timer-second.json", normalize(t, h.fake.next(t, "/Tick").Body))

	h.clock.Advance(45 * time.Minute) // 10:15: 09:45 and 10:00 were missed
	c = h.fake.next(t, "/Tick")
	var p struct {
		Data struct{ Timer struct{ IsPastDue bool } }
	}
	json.Unmarshal(c.Body, &p)
	if !p.Data.Timer.IsPastDue {
		t.Errorf("late run not flagged past due: %s", c.Body)
	}
}

func postJSON(t *testing.T, url, key string, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("x-functions-key", key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func TestAdminInvoke(t *testing.T) {
	h := startHost(t, nil)
	if res := postJSON(t, h.URL()+"/admin/functions/Tick", "", `{"input":""}`); res.StatusCode != 401 {
		t.Fatalf("without key: %d", res.StatusCode)
	}
	if res := postJSON(t, h.URL()+"/admin/functions/Nope", "dev", `{}`); res.StatusCode != 404 {
		t.Fatalf("unknown function: %d", res.StatusCode)
	}
	if res := postJSON(t, h.URL()+"/admin/functions/Tick", "dev", `{"input":""}`); res.StatusCode != 202 {
		t.Fatalf("timer: %d", res.StatusCode)
	}
	h.fake.next(t, "/Tick")
	if res := postJSON(t, h.URL()+"/admin/functions/Worker", "dev", `{"input":"hello"}`); res.StatusCode != 202 {
		t.Fatalf("queue function: %d", res.StatusCode)
	}
	c := h.fake.next(t, "/Worker")
	if !bytes.Contains(c.Body, []byte(`"msg":"aGVsbG8="`)) {
		t.Errorf("Worker payload = %s", c.Body)
	}
}

func publish(t *testing.T, h *testHost, queue, body string) (*http.Response, map[string]any) {
	t.Helper()
	res := postJSON(t, h.URL()+"/_devhost/queues/"+queue+"/messages", "", body)
	var v map[string]any
	json.NewDecoder(res.Body).Decode(&v)
	return res, v
}

func TestPublishEndpoint(t *testing.T) {
	h := startHost(t, nil)
	h.fake.setRespond(func(w http.ResponseWriter, c call) bool {
		if strings.HasPrefix(c.URI, "/Worker") {
			time.Sleep(0) // answered by default
		}
		return false
	})
	sched := t0.Add(time.Hour).Format(time.RFC3339)
	res, v := publish(t, h, "jobs", `{"messageId":"m-1","body":"e30=","contentType":"application/json","scheduledEnqueueTime":"`+sched+`"}`)
	if res.StatusCode != 201 || v["duplicate"] != false || v["messageId"] != "m-1" {
		t.Fatalf("first publish: %d %v", res.StatusCode, v)
	}
	res, v2 := publish(t, h, "jobs", `{"messageId":"m-1","body":"e30="}`)
	if res.StatusCode != 200 || v2["duplicate"] != true || v2["sequenceNumber"] != v["sequenceNumber"] {
		t.Fatalf("duplicate publish: %d %v", res.StatusCode, v2)
	}
	for _, tc := range []struct {
		queue, body, field string
		status             int
	}{
		{"jobs", `{"body":"e30="}`, "messageId", 400},
		{"no-such-queue", `{"messageId":"x"}`, "queue", 404},
		{"jobs", `{"messageId":"x","body":"not base64!"}`, "body", 400},
		{"jobs", `{"messageId":"x","scheduledEnqueueTime":"tomorrow"}`, "body", 400},
		{"jobs", `[`, "body", 400},
	} {
		res, p := publish(t, h, tc.queue, tc.body)
		errs, _ := p["errors"].([]any)
		var field any
		if len(errs) == 1 {
			field = errs[0].(map[string]any)["field"]
		}
		if res.StatusCode != tc.status || res.Header.Get("Content-Type") != "application/problem+json" || field != tc.field || p["status"] != float64(tc.status) {
			t.Errorf("publish %s %s: %d %s %v; want %d problem naming %s", tc.queue, tc.body, res.StatusCode, res.Header.Get("Content-Type"), p, tc.status, tc.field)
		}
	}
	res, err := http.Get(h.URL() + "/_devhost/queues")
	if err != nil {
		t.Fatal(err)
	}
	var counts map[string]QueueCounts
	json.NewDecoder(res.Body).Decode(&counts)
	res.Body.Close()
	if counts["jobs"].Scheduled != 1 || len(counts) != 3 {
		t.Fatalf("counts = %+v", counts)
	}
	res, _ = http.Get(h.URL() + "/_devhost/queues/nope/deadletter")
	if res.StatusCode != 404 {
		t.Errorf("dead letters of an unknown queue: %d", res.StatusCode)
	}
	res, _ = http.Get(h.URL() + "/_devhost/queues/jobs/deadletter")
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("dead letters: %d %s", res.StatusCode, b)
	}
}

func TestServiceBusPayloadGolden(t *testing.T) {
	h := startHost(t, nil)
	msg := `{"messageId":"b41c0e9a55f04c3e8f0e6f1d2a3b4c5d","body":"eyJvcmciOiJhY21lIiwicnVuSWQiOiJyLTc3In0=",` +
		`"contentType":"application/json","subject":"sync","applicationProperties":{"kind":"delta"}}`
	if res, v := publish(t, h, "jobs", msg); res.StatusCode != 201 {
		t.Fatalf("publish: %d %v", res.StatusCode, v)
	}
	golden(t, "servicebus-binary.json", normalize(t, h.fake.next(t, "/Worker").Body))

	// String dataType: double-encoded body, and the body's scalar fields promoted into Metadata,
	// overwriting MessageId.
	body := `{"org":"acme","runId":"r-77","attempt":2,"MessageId":"from-body","nested":{"x":1}}`
	raw, _ := json.Marshal(map[string]any{"messageId": "m-str", "body": []byte(body), "contentType": "application/json"})
	if res, v := publish(t, h, "strings", string(raw)); res.StatusCode != 201 {
		t.Fatalf("publish: %d %v", res.StatusCode, v)
	}
	golden(t, "servicebus-string.json", normalize(t, h.fake.next(t, "/StringWorker").Body))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // liveness only: a busy machine is slow, never wrong
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFailedInvocationsRetryThenDeadLetter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		respond func(w http.ResponseWriter)
		lastErr string
	}{
		{"status 500", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(500)
			io.WriteString(w, `{"error":"boom"}`)
		}, "status 500"},
		{"not JSON content type", func(w http.ResponseWriter) { io.WriteString(w, `{"Outputs":{}}`) }, "Content-Type"},
		{"invalid JSON", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"Outputs":`)
		}, "not valid JSON"},
		{"empty 200", func(w http.ResponseWriter) { w.Header().Set("Content-Type", "application/json") }, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHost(t, func(c *Config) { c.Queue.MaxDeliveryCount = 3 })
			h.fake.setRespond(func(w http.ResponseWriter, c call) bool {
				if !strings.HasPrefix(c.URI, "/Worker") {
					return false
				}
				tc.respond(w)
				return true
			})
			publish(t, h, "jobs", `{"messageId":"poison","body":"eA=="}`)
			for want := 1; want <= 3; want++ {
				var p struct {
					Metadata struct{ DeliveryCount string }
				}
				json.Unmarshal(h.fake.next(t, "/Worker").Body, &p)
				if p.Metadata.DeliveryCount != fmt.Sprint(want) {
					t.Fatalf("DeliveryCount = %q, want %d", p.Metadata.DeliveryCount, want)
				}
			}
			waitFor(t, "dead-lettering", func() bool { return h.Queues().Counts()["jobs"].DeadLettered == 1 })
			res, _ := http.Get(h.URL() + "/_devhost/queues/jobs/deadletter")
			var dl []DeadLetter
			json.NewDecoder(res.Body).Decode(&dl)
			res.Body.Close()
			if len(dl) != 1 || dl[0].DeadLetterReason != "MaxDeliveryCountExceeded" || !strings.Contains(dl[0].LastError, tc.lastErr) || dl[0].MessageID != "poison" {
				t.Fatalf("dead letters = %+v", dl)
			}
			if c := h.Queues().Counts()["jobs"]; c.Failures != 3 || c.Deliveries != 3 || c.Completed != 0 {
				t.Fatalf("counts = %+v", c)
			}
		})
	}
}

func TestOutputsAreSent(t *testing.T) {
	h := startHost(t, nil)
	// An array fans out; an object is sent as JSON; a string that decodes as base64 is sent
	// decoded (the host's base64 trap: "test" is valid base64); others as UTF-8.
	h.fake.answerJSON("/Worker", `{"Outputs":{"done":[{"org":"acme","n":1},"dGVzdA==","test","not base64!"]},"Logs":["fan out"],"ReturnValue":null}`)
	publish(t, h, "jobs", `{"messageId":"fan","body":"eyJ4IjoxfQ=="}`)
	var got []string
	for range 4 {
		var p struct{ Data struct{ Msg []byte } }
		json.Unmarshal(h.fake.next(t, "/Sink").Body, &p)
		got = append(got, fmt.Sprintf("%q", p.Data.Msg))
	}
	want := []string{`"{\"org\":\"acme\",\"n\":1}"`, `"test"`, `"\xb5\xeb-"`, `"not base64!"`}
	slices.Sort(got) // two Sink consumers: any order
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Sink got %v, want %v", got, want)
	}
	waitFor(t, "completion", func() bool { return h.Queues().Counts()["jobs"].Completed == 1 })
}

func TestHTTPFunctionInJSONMode(t *testing.T) {
	h := startHost(t, nil)
	h.fake.answerJSON("/Enqueue", `{"Outputs":{"res":{"statusCode":"202","headers":{"Content-Type":"application/json"},"body":"{\"queued\":true}"},"jobs":{"kind":"mail"}}}`)
	res := postJSON(t, h.URL()+"/api/enqueue/mail?x=1&x=2", "", `{"to":"a@b"}`)
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 202 || string(b) != `{"queued":true}` || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("answer = %d %q %v", res.StatusCode, b, res.Header)
	}
	c := h.fake.next(t, "/Enqueue")
	var p struct {
		Data struct {
			Req struct {
				URL     string `json:"Url"`
				Method  string
				Query   map[string]string
				Headers map[string][]string
				Params  map[string]string
				Body    string
			}
		}
		Metadata map[string]any
	}
	if err := json.Unmarshal(c.Body, &p); err != nil {
		t.Fatal(err)
	}
	r := p.Data.Req
	if r.Method != "POST" || !strings.HasSuffix(r.URL, "/api/enqueue/mail?x=1&x=2") || r.Query["x"] != "1,2" || r.Params["kind"] != "mail" ||
		r.Body != `{"to":"a@b"}` || r.Headers["Content-Type"][0] != "application/json" || p.Metadata["kind"] != "mail" {
		t.Fatalf("Data.req = %+v, Metadata = %v", r, p.Metadata)
	}
	w := h.fake.next(t, "/Worker")
	if !bytes.Contains(w.Body, []byte(`"msg":"eyJraW5kIjoibWFpbCJ9"`)) { // {"kind":"mail"}
		t.Errorf("output not delivered to Worker: %s", w.Body)
	}
}

func TestServiceBusConnectionSetting(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		set         bool
		wantPrefix  string
	}{
		{"absent", "", false, "devhost=http://127.0.0.1:"},
		{"devhost", "devhost", true, "devhost=http://127.0.0.1:"},
		{"real", "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v", true, "Endpoint=sb://x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHost(t, func(c *Config) {
				if tc.set {
					c.Settings["ServiceBusConnection"] = tc.value
				}
			})
			got := h.settings["ServiceBusConnection"]
			if !strings.HasPrefix(got, tc.wantPrefix) {
				t.Fatalf("ServiceBusConnection = %q", got)
			}
			if tc.wantPrefix[0] == 'd' && got != "devhost="+h.URL() {
				t.Fatalf("ServiceBusConnection = %q, want devhost=%s", got, h.URL())
			}
		})
	}
}

func TestLoadSettings(t *testing.T) {
	env := map[string]string{"OVERRIDDEN": "env", "DEVHOST_FUNCTION_KEY": "k"}
	s, err := LoadSettings("testdata/app", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s["FROM_FILE"] != "file" || s["OVERRIDDEN"] != "env" || s["DEVHOST_FUNCTION_KEY"] != "k" || s["ServiceBusConnection"] != "devhost" {
		t.Fatalf("settings = %v", s)
	}
	if _, ok := s["UNRELATED"]; ok {
		t.Fatal("unrelated key")
	}
	s, err = LoadSettings(t.TempDir(), func(string) string { return "" })
	if err != nil || len(s) != 0 {
		t.Fatalf("no file: %v %v", s, err)
	}
}

func TestTimerRunOnStartupWithoutMonitor(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "functions", "Boot"), 0o755)
	os.WriteFile(filepath.Join(root, "host.json"), []byte(`{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"},"enableProxyingHttpRequest":true}}`), 0o644)
	os.WriteFile(filepath.Join(root, "functions", "Boot", "function.json"), []byte(
		`{"bindings":[{"type":"timerTrigger","direction":"in","name":"myTimer","schedule":"*/30 * * * * *","runOnStartup":true}]}`), 0o644)
	h := startHost(t, func(c *Config) { c.Root = root })
	c := h.fake.next(t, "/Boot")
	var p struct {
		Data map[string]struct {
			ScheduleStatus *json.RawMessage
			IsPastDue      bool
		}
	}
	if err := json.Unmarshal(c.Body, &p); err != nil {
		t.Fatal(err)
	}
	tm, ok := p.Data["myTimer"]
	if !ok || tm.ScheduleStatus != nil || tm.IsPastDue {
		t.Fatalf("startup run payload = %s; want ScheduleStatus null (monitor off below one minute)", c.Body)
	}
	h.clock.Advance(30 * time.Second)
	h.fake.next(t, "/Boot")
}

func TestInvocationTimeoutFails(t *testing.T) {
	h := startHost(t, func(c *Config) { c.FunctionTimeout = 200 * time.Millisecond; c.Queue.MaxDeliveryCount = 1 })
	h.fake.setRespond(func(w http.ResponseWriter, c call) bool {
		if !strings.HasPrefix(c.URI, "/Worker") {
			return false
		}
		select { // answers only after the host gave up on it
		case <-c.ctx.Done():
		case <-time.After(time.Minute):
		}
		return false
	})
	publish(t, h, "jobs", `{"messageId":"slow","body":"eA=="}`)
	waitFor(t, "dead-lettering after the timeout", func() bool { return h.Queues().Counts()["jobs"].DeadLettered == 1 })
	dl, _ := h.Queues().DeadLetters("jobs")
	if !strings.Contains(dl[0].LastError, "timed out") {
		t.Fatalf("last error = %q", dl[0].LastError)
	}
}
