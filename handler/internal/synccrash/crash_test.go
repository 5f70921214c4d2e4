package synccrash_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/devhost"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

const (
	orgName = "crash"
	users   = 400
	kills   = 2 // kill -9 of the handler during the sync; the host restarts it and redelivers
)

// liveness bounds every wait: generous, it only stops a hung test.
const liveness = time.Minute

func TestSyncSurvivesKillsAndALostQueue(t *testing.T) {
	ctx := t.Context()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	conn := azuritetest.Start(t)
	work := t.TempDir()
	var buildErr bytes.Buffer
	handlerPath, err := devhost.BuildHandler(ctx, root, work, &buildErr)
	if err != nil {
		t.Fatalf("building the handler: %v\n%s", err, buildErr.String())
	}

	env := testenv.New(t, testenv.Options{Sim: m365sim.Options{PageSize: 10}, Domain: "fabrikam.example"}) // 40 pages: the run is saved every 8
	sim, store, prefix := env.Sim, env.Store, env.Store.Prefix()
	must(t, sim.Generate(testenv.Tenant, m365sim.GenSpec{Users: users, Groups: 4, Depth: 1, Seed: 11}))
	// Slow pages, so the kills land inside the sync.
	must(t, sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Delay: 100 * time.Millisecond}))
	caFile := filepath.Join(work, "sim-ca.pem")
	must(t, os.WriteFile(caFile, sim.CACertPEM(), 0o600))
	org := tablestoretest.Org(t, orgName)

	var handlerErr bytes.Buffer
	newHost := func() *devhost.Host {
		port, err := devhost.FreePort()
		must(t, err)
		public := fmt.Sprintf("http://127.0.0.1:%d", port)
		h, err := devhost.New(devhost.Config{
			Root: root, Port: port, HandlerPath: handlerPath, Env: append(os.Environ(), "SSL_CERT_FILE="+caFile),
			Settings: map[string]string{
				"FUNCTIONS_WORKER_RUNTIME": "custom",
				"TablesConnection":         conn,
				"TABLE_PREFIX":             prefix,
				"ServiceBusConnection":     "devhost",
				"M365_CLIENT_ID":           testenv.ClientID,
				"M365_CLIENT_SECRET":       testenv.Secret,
				"GRAPH_BASE_URL":           sim.GraphURL(),
				"AZURE_AUTHORITY_HOST":     sim.URL() + "/",
				"BOT_APP_ID":               "00000000-0000-4000-8000-00000000b07a",
				"BOT_APP_SECRET":           "bot-secret-crash-test",
				"BOT_TENANT_ID":            testenv.Tenant,
				"PUBLIC_BASE_URL":          public,
				"LEAP_APP_URL":             "http://localhost:3000/settings/integrations",
				"STATE_SIGNING_KEY":        strings.Repeat("k", 40),
				"DEVHOST_FUNCTION_KEY":     "crash-key",
				// A lost step is taken for lost after 3 s without progress, not 20 minutes.
				"SYNC_STALL_AFTER": "3s",
			},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Stdout: &handlerErr, Stderr: &handlerErr,
			RestartLimit: 100, // the kills are ours
		})
		must(t, err)
		hctx, cancel := context.WithTimeout(ctx, liveness)
		defer cancel()
		if err := h.Start(hctx); err != nil {
			t.Fatalf("host start: %v\n%s", err, handlerErr.String())
		}
		go h.Serve(ctx)
		return h
	}

	host := newHost()
	api := &client{base: host.URL() + "/api/orgs/" + orgName, host: host.URL()}
	// Register the org (where orgs must exist), connect it and save settings, so the scheduler
	// visits it. The connection is written as the consent flow leaves it.
	api.tolerate(t, "PUT", "", map[string]any{"displayName": "Crash Test", "timeZone": "UTC"}, http.StatusNotFound, http.StatusMethodNotAllowed)
	if _, err := connection.NewStore(store).Put(ctx, org, connection.Record{Status: connection.Connected, TenantID: testenv.Tenant}, ""); err != nil {
		t.Fatal(err)
	}
	api.do(t, "PUT", "/m365/settings", map[string]any{
		"frequency": "manual", "timeZone": "UTC", "mergeStrategy": "entra_wins", "groupFilter": []string{}, "groupSync": false,
		"groupType": "custom", "deletionThreshold": map[string]int{"percent": 20, "count": 500},
	}, nil)

	var started struct {
		RunID string `json:"runId"`
	}
	api.do(t, "POST", "/m365/sync", map[string]any{}, &started)
	if started.RunID == "" {
		t.Fatal("no run id")
	}

	// Kill the handler during the sync: the host restarts it and redelivers the step.
	// Each kill waits for the next save of the run (every 8 pages), so every one lands in the
	// users round and the run makes progress between them.
	progressed := func(pages int) func() bool {
		n := 0
		return func() bool {
			r := api.run(t, started.RunID)
			if r.State != "running" || r.Pages >= pages {
				return true
			}
			// A kill can cost the step its message: the host fails the deliveries that reach
			// the handler while it restarts, and dead-letters the message after the tenth. The
			// scheduler's tick (every 15 minutes in Azure, every second here) recovers the run.
			if n++; n%5 == 0 {
				api.tolerate(t, "POST", "/admin/functions/SyncScheduler", map[string]any{"input": ""})
			}
			if n%25 == 0 { // every 5 s: what the host holds, should this hang
				_, queues := api.send(t, "GET", "/_devhost/queues", nil, nil)
				t.Logf("run %+v; queues %s", r, queues)
			}
			return false
		}
	}
	for i := range kills {
		waitFor(t, "the sync to make progress", progressed(8*(i+1)))
		killHandler(t, handlerPath)
	}
	// Kill it once more and lose the queue with the host: the run's step message is gone.
	waitFor(t, "the sync to make progress", progressed(8*(kills+1)))
	killHandler(t, handlerPath)
	host.Close()
	// As when the machine restarts: a handler the host restarted meanwhile dies too.
	killAll(handlerPath)
	lost := runRecord(t, store, org, started.RunID)
	if lost.State != "running" {
		t.Fatalf("the run ended before the queue was lost (state %s, %d pages, %+v): slow the tenant down", lost.State, lost.Pages, lost)
	}

	// A new host with empty queues: nothing would ever run the next step, but the scheduler's
	// tick finds the stalled run and republishes its step from the checkpoint.
	host = newHost()
	t.Cleanup(func() { host.Close() })
	api = &client{base: host.URL() + "/api/orgs/" + orgName, host: host.URL()}
	var final runView
	ticks := 0
	waitFor(t, "the run to recover and finish", func() bool {
		final = api.run(t, started.RunID)
		if ticks++; final.State == "running" && ticks%5 == 0 { // a tick a second; Recover acts only on a stalled run
			api.tolerate(t, "POST", "/admin/functions/SyncScheduler", map[string]any{"input": ""})
		}
		return final.State != "running"
	})
	if final.State != "succeeded" || final.Recoveries <= lost.Recoveries {
		t.Fatalf("run %s ended %s after %d recoveries: %+v\nhandler stderr:\n%s", final.ID, final.State, final.Recoveries, final, tail(handlerErr.String()))
	}

	// Exactly one stakeholder per enabled user, none for anyone else.
	want := map[string]bool{}
	for _, u := range sim.Users(testenv.Tenant) {
		if u.AccountEnabled {
			want[u.ID] = true
		}
	}
	got := map[string]int{}
	after := ""
	for {
		page, next, err := stakeholder.NewStore(store).List(ctx, org, stakeholder.ListOptions{After: after, Limit: 1000})
		must(t, err)
		for _, s := range page {
			got[s.ExternalID]++
		}
		if next == "" {
			break
		}
		after = next
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("user %s has %d stakeholders, want 1", id, got[id])
		}
	}
	for id, n := range got {
		if !want[id] {
			t.Errorf("stakeholder for %q (%d) that is no enabled user", id, n)
		}
	}
	t.Logf("run %s: %d kills, queue lost once, %d recoveries, highest redelivery seen by the handler %d; %d stakeholders for %d enabled users; created %d",
		final.ID, kills+1, final.Recoveries, final.Deliveries, len(got), len(want), final.Created)
}

// killHandler kill -9s the handler process the host started (found by its binary's path).
func killHandler(t *testing.T, path string) {
	t.Helper()
	waitFor(t, "a handler process to kill", func() bool { return killAll(path) > 0 }) // it may be restarting
}

// killAll kill -9s every process running the binary at path and returns how many it signalled.
func killAll(path string) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(cmd, []byte(path+"\x00")) && string(cmd) != path {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			n++
		}
	}
	return n
}

type runView struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	Pages      int    `json:"pages"`
	Created    int    `json:"created"`
	Recoveries int    `json:"recoveries"`
	Deliveries int    `json:"deliveries"`
	LastError  string `json:"lastError"`
	Errors     []struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

func runRecord(t *testing.T, store *tablestore.Store, org tablestore.Org, id string) runView {
	t.Helper()
	v, _, err := tablestore.Get[runView](t.Context(), store.Table("syncruns"), org, id)
	must(t, err)
	return v
}

type client struct{ base, host string }

func (c *client) send(t *testing.T, method, path string, body, out any) (int, string) {
	t.Helper()
	url := c.base + path
	if strings.HasPrefix(path, "/admin/") || strings.HasPrefix(path, "/_devhost/") {
		url = c.host + path
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(b))
	must(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-functions-key", "crash-key")
	ctx, cancel := context.WithTimeout(t.Context(), liveness)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		must(t, json.Unmarshal(raw, out))
	}
	return resp.StatusCode, string(raw)
}

func (c *client) do(t *testing.T, method, path string, body, out any) {
	t.Helper()
	if status, raw := c.send(t, method, path, body, out); status/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, status, raw)
	}
}

// tolerate sends a request whose failure with one of the given statuses is acceptable.
func (c *client) tolerate(t *testing.T, method, path string, body any, ok ...int) {
	t.Helper()
	status, raw := c.send(t, method, path, body, nil)
	if status/100 == 2 {
		return
	}
	for _, s := range ok {
		if status == s {
			return
		}
	}
	t.Fatalf("%s %s: %d %s", method, path, status, raw)
}

func (c *client) run(t *testing.T, id string) runView {
	t.Helper()
	var v runView
	for range 50 { // the handler may be restarting: the host holds or refuses requests meanwhile
		if status, _ := c.send(t, "GET", "/m365/sync/runs/"+id, nil, &v); status == http.StatusOK {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET run %s keeps failing", id)
	return v
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(liveness)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
