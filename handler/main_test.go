package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
)

// TestMain stops the Azurite that a test of the package may start.
func TestMain(m *testing.M) { azuritetest.Main(m) }

// TestRunServesAndShutsDown starts the handler as the host would: it must answer the start-up
// ping without any network I/O of its own (the stores are unreachable here), log JSON to stdout,
// and return cleanly when its context ends.
func TestRunServesAndShutsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()

	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, validEnv(map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": port}), &stdout, &stderr)
	}()

	var resp *http.Response
	// A liveness bound only, generous for a busy machine: the host's own ping loop waits too.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		if resp, err = http.Get("http://127.0.0.1:" + port + "/"); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("start-up ping never answered: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("ping: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return after its context ended")
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first["msg"] != "handler listening" {
		t.Errorf("stdout is not structured JSON logs: %q", stdout.String())
	}
	for _, secret := range []string{"top-secret-value", "bot-secret-value"} {
		if strings.Contains(stdout.String()+stderr.String(), secret) {
			t.Errorf("a secret reached the logs")
		}
	}
}
