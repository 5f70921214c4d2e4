package main

import (
	"bytes"
	"errors"
	"path/filepath"
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
	got, line := resultLine(t, stdout.String(), "bench", "rate", "accepted", "lost", "p50_ms", "p99_ms")
	num := got.num
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
	if saved, b := savedResult(t, outFile); saved["date"] == nil || saved["bench"] != "webhook" {
		t.Errorf("result file: %s", b)
	}
	t.Logf("%s", line)
}

func TestWebhookBenchUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{"-nope"}, {"-tables", "x"}, {"-rate", "10", "-seconds", "0", "-tables", "x"}, {"-rate", "10", "-per-request", "0", "-tables", "x"}, {"-rate", "10", "-route", "azure", "-tables", "x"}} {
		if err := runWebhook(t.Context(), args, &out, &errOut); !errors.Is(err, errUsage) {
			t.Errorf("%q: err %v, want a usage error", args, err)
		}
	}
}
