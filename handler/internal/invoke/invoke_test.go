package invoke_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/invoke"
)

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post invokes h the way the host does and returns the status and decoded answer.
func post(t *testing.T, h http.Handler, path string, body []byte) (int, invoke.Response, http.Header) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("X-Azure-Functions-InvocationId", "inv-1")
	rec := httptest.NewRecorder()
	invoke.Middleware(h).ServeHTTP(rec, req)
	var resp invoke.Response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("answer is not JSON (%v): %q", err, rec.Body.String())
	}
	return rec.Code, resp, rec.Header()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestTimerGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		want invoke.TimerInfo
	}{
		{"timer.json", invoke.TimerInfo{ScheduleStatus: &invoke.ScheduleStatus{
			Last: ts("2025-03-04T09:00:00Z"), Next: ts("2025-03-04T09:15:00Z"), LastUpdated: ts("2025-03-04T09:00:00.031295Z")}}},
		{"timer-nostatus.json", invoke.TimerInfo{IsPastDue: true}},
		{"timer-zulu.json", invoke.TimerInfo{ScheduleStatus: &invoke.ScheduleStatus{
			Last: ts("2025-03-04T09:00:00Z"), Next: ts("2025-03-04T09:15:00Z"), LastUpdated: ts("2025-03-04T09:00:00.031295Z")}}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var got invoke.TimerInfo
			var gotID string
			h := invoke.Timer("timer", quiet(), func(ctx context.Context, ti invoke.TimerInfo) error {
				got, gotID = ti, invoke.ID(ctx)
				return nil
			})
			code, resp, hdr := post(t, h, "/SyncScheduler", golden(t, tc.file))
			if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, content type %q, want 200 application/json", code, hdr.Get("Content-Type"))
			}
			if resp.Outputs == nil || resp.Logs == nil {
				t.Errorf("answer must carry {} Outputs and [] Logs, got %+v", resp)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("TimerInfo = %+v, want %+v", got, tc.want)
			}
			if gotID != "inv-1" {
				t.Errorf("invocation id in context = %q, want inv-1", gotID)
			}
		})
	}
}

func TestServiceBusGolden(t *testing.T) {
	want := invoke.Message{
		Body:          []byte(`{"org":"acme","runId":"r-77"}`),
		MessageID:     "b41c0e9a55f04c3e8f0e6f1d2a3b4c5d",
		ContentType:   "application/json",
		DeliveryCount: 2, SequenceNumber: 4107,
		EnqueuedTime: ts("2025-03-04T09:15:02Z"),
	}
	withProps := want
	withProps.ApplicationProperties = map[string]any{"kind": "delta"}
	for _, tc := range []struct {
		file string
		dt   invoke.DataType
		want invoke.Message
	}{
		{"sb-binary.json", invoke.BinaryData, withProps},
		{"sb-string-double.json", invoke.StringData, withProps},
		{"sb-string-single.json", invoke.StringData, want},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var got invoke.Message
			h := invoke.ServiceBus("msg", tc.dt, quiet(), func(_ context.Context, m invoke.Message) error {
				got = m
				return nil
			})
			if code, _, _ := post(t, h, "/SyncWorker", golden(t, tc.file)); code != http.StatusOK {
				t.Fatalf("status %d, want 200", code)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Message =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

func TestMalformedFailsWithReason(t *testing.T) {
	called := false
	timer := invoke.Timer("timer", quiet(), func(context.Context, invoke.TimerInfo) error { called = true; return nil })
	sb := invoke.ServiceBus("msg", invoke.BinaryData, quiet(), func(context.Context, invoke.Message) error { called = true; return nil })
	for _, tc := range []struct {
		file   string
		h      http.Handler
		reason string
	}{
		{"malformed-notjson.json", timer, "not a JSON object"},
		{"malformed-nodata.json", sb, "no Data"},
		{"malformed-sb-notbase64.json", sb, "not base64"},
		{"malformed-timer-badtime.json", timer, `unrecognised time "yesterday"`},
		{"malformed-timer-notobject.json", timer, "not a TimerInfo"},
		{"malformed-missing-binding.json", timer, "no Data.timer"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			called = false
			code, resp, _ := post(t, tc.h, "/F", golden(t, tc.file))
			if code < 400 {
				t.Errorf("status %d, want a failed invocation (non-2xx)", code)
			}
			if called {
				t.Error("function ran on a malformed payload")
			}
			if len(resp.Logs) != 1 || !strings.Contains(resp.Logs[0], tc.reason) {
				t.Errorf("Logs = %q, want a reason containing %q", resp.Logs, tc.reason)
			}
		})
	}
}

func TestFunctionErrorAndPanicFailTheInvocation(t *testing.T) {
	body := golden(t, "sb-binary.json")
	for name, fn := range map[string]func(context.Context, invoke.Message) error{
		"error": func(context.Context, invoke.Message) error { return errors.New("table unavailable") },
		"panic": func(context.Context, invoke.Message) error { panic("boom") },
	} {
		t.Run(name, func(t *testing.T) {
			code, resp, _ := post(t, invoke.ServiceBus("msg", invoke.BinaryData, quiet(), fn), "/SyncWorker", body)
			if code != http.StatusInternalServerError {
				t.Errorf("status %d, want 500", code)
			}
			if len(resp.Logs) == 0 || !strings.HasPrefix(resp.Logs[0], "failed: ") {
				t.Errorf("Logs = %q, want the failure reason", resp.Logs)
			}
		})
	}
}

func TestHTTPFallbackRebuildsTheRequest(t *testing.T) {
	for _, tc := range []struct {
		file, method, uri, body string
	}{
		{"http-jsonmode.json", "POST", "/api/orgs/acme/m365?verbose=1", "{\"dry\":true}\n"},
		{"http-jsonmode-nobody.json", "GET", "/api/orgs/acme/m365", ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var seen *http.Request
			var seenBody string
			inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = r
				b, _ := io.ReadAll(r.Body)
				seenBody = string(b)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusAccepted)
				io.WriteString(w, `{"ok":true}`)
			})
			code, resp, _ := post(t, invoke.HTTPFallback("req", "res", quiet(), inner), "/Api", golden(t, tc.file))
			if code != http.StatusOK {
				t.Fatalf("status %d, want 200", code)
			}
			if seen.Method != tc.method || seen.URL.RequestURI() != tc.uri || seenBody != tc.body {
				t.Errorf("inner saw %s %s %q, want %s %s %q", seen.Method, seen.URL.RequestURI(), seenBody, tc.method, tc.uri, tc.body)
			}
			res, _ := resp.Outputs["res"].(map[string]any)
			if res["statusCode"] != "202" || res["body"] != `{"ok":true}` {
				t.Errorf("Outputs.res = %v, want statusCode 202 and the body", res)
			}
		})
	}
}

func TestUnwrap(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"abc"`, "abc"},
		{`"\"abc\""`, "abc"},
		{`"\"\\\"abc\\\"\""`, `"abc"`}, // unquoted at most twice
		{`{"a":1}`, `{"a":1}`},
		{`3`, `3`},
	} {
		got, err := invoke.Unwrap(json.RawMessage(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("Unwrap(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := invoke.Unwrap(json.RawMessage(`null`)); !errors.Is(err, invoke.ErrMalformed) {
		t.Errorf("Unwrap(null) err = %v, want ErrMalformed", err)
	}
}

func TestLogHandlerAddsInvocationID(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(invoke.LogHandler(slog.NewJSONHandler(&buf, nil))).With("fn", "x")
	log.InfoContext(invoke.WithID(context.Background(), "inv-42"), "hello")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["invocation_id"] != "inv-42" || rec["fn"] != "x" {
		t.Errorf("record = %v, want invocation_id inv-42 and fn x", rec)
	}
}
