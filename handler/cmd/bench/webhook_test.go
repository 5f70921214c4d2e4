package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
)

// TestWebhookBenchEndToEnd runs the webhook bench briefly against the real handler behind the
// host stand-in and Azurite: every request is acknowledged and every notification reaches
// channel-events once. It asserts behaviour, never timing.
func TestWebhookBenchEndToEnd(t *testing.T) {
	for _, route := range []string{"devhost", "inprocess"} {
		t.Run(route, func(t *testing.T) { webhookBenchEndToEnd(t, route) })
	}
}

func webhookBenchEndToEnd(t *testing.T, route string) {
	conn := azuritetest.Start(t)
	outFile := filepath.Join(t.TempDir(), "webhook.json")
	var stdout, stderr bytes.Buffer
	args := []string{"-root", "../../..", "-route", route, "-rate", "40", "-seconds", "1", "-per-request", "3", "-subscriptions", "4", "-tables", conn, "-out", outFile}
	if err := runWebhook(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("bench failed: %v\nstderr:\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, stdout.String())
	}
	for _, k := range []string{"bench", "rate", "accepted", "lost", "p50_ms", "p99_ms"} {
		if _, ok := got[k]; !ok {
			t.Errorf("key %q missing from %s", k, lines[len(lines)-1])
		}
	}
	num := func(k string) float64 { f, _ := got[k].(float64); return f }
	// 40 requests of 3 notifications, plus 4 warm-up requests.
	if got["route"] != route {
		t.Errorf("route %v, want %s", got["route"], route)
	}
	if got["bench"] != "webhook" || num("rate") != 40 || num("accepted") != 120 || num("requests") != 40 {
		t.Errorf("bench/rate/accepted/requests = %v/%v/%v/%v", got["bench"], got["rate"], got["accepted"], got["requests"])
	}
	if num("lost") != 0 || num("duplicated") != 0 || num("failed") != 0 || num("on_channel_events") != 132 {
		t.Errorf("lost %v, duplicated %v, failed %v, on channel-events %v; want 0, 0, 0, 132", got["lost"], got["duplicated"], got["failed"], got["on_channel_events"])
	}
	if num("p50_ms") <= 0 || num("p99_ms") < num("p50_ms") {
		t.Errorf("p50_ms %v, p99_ms %v", got["p50_ms"], got["p99_ms"])
	}
	b, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	var saved map[string]any
	if err := json.Unmarshal(b, &saved); err != nil || saved["date"] == nil || saved["bench"] != "webhook" {
		t.Errorf("result file: %v %s", err, b)
	}
	t.Logf("%s", lines[len(lines)-1])
}

func TestWebhookBenchUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{"-nope"}, {"-tables", "x"}, {"-rate", "10", "-seconds", "0", "-tables", "x"}, {"-rate", "10", "-per-request", "0", "-tables", "x"}, {"-rate", "10", "-route", "azure", "-tables", "x"}} {
		if err := runWebhook(t.Context(), args, &out, &errOut); !errors.Is(err, errUsage) {
			t.Errorf("%q: err %v, want a usage error", args, err)
		}
	}
}
