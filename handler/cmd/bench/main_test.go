package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// TestSyncBenchEndToEnd runs the bench against an in-process simulated tenant and Azurite and
// checks the JSON line carries every key of the benchmark contract with sane values.
func TestSyncBenchEndToEnd(t *testing.T) {
	conn := azuritetest.Start(t)
	const users = 300
	sim := testenv.NewTenant(t, testenv.Options{Sim: m365sim.Options{Admin: true}, Domain: "bench.example"})
	if err := sim.SetAppPermissions(testenv.ClientID, "User.Read.All", "GroupMember.Read.All"); err != nil {
		t.Fatal(err)
	}
	if err := sim.Generate(testenv.Tenant, m365sim.GenSpec{Users: users, Groups: 5, Depth: 2, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(t.TempDir(), "sync.json")
	var stdout, stderr bytes.Buffer
	args := append(targetArgs(t, sim, conn, outFile), "-users", "300", "-groups", "5")
	if err := runWith(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("bench failed: %v\nstderr:\n%s", err, stderr.String())
	}
	got, line := resultLine(t, stdout.String(), "bench", "users", "full_s", "floor_s", "ratio", "delta_s", "delta_ratio",
		"graph_requests_full", "graph_requests_delta", "table_transactions_full", "peak_rss_mb", "floor_entities")
	num := got.num
	if got["bench"] != "sync" || num("users") != users {
		t.Errorf("bench/users = %v/%v", got["bench"], got["users"])
	}
	for _, k := range []string{"full_s", "floor_s", "ratio", "delta_s", "delta_ratio", "graph_requests_full",
		"graph_requests_delta", "table_transactions_full", "peak_rss_mb", "per_user_ms", "floor_per_user_ms",
		"floor_sequential_s", "floor_pipelined_s", "gogc", "gomemlimit_mb"} {
		if num(k) <= 0 {
			t.Errorf("%s = %v, want > 0", k, got[k])
		}
	}
	if num("graph_requests_delta") >= num("graph_requests_full") {
		t.Errorf("delta used %v Graph requests, full %v: want fewer", got["graph_requests_delta"], got["graph_requests_full"])
	}
	// Every created stakeholder has itself, its email index row and a change-log row behind it.
	if num("full_processed") != users || num("full_created") < users*9/10 || num("floor_entities") < 2*num("full_created")+num("full_changes") {
		t.Errorf("full_processed = %v, full_created = %v, full_changes = %v, floor_entities = %v", got["full_processed"], got["full_created"], got["full_changes"], got["floor_entities"])
	}
	if num("delta_mutated") <= 0 || num("delta_processed") < num("delta_mutated") {
		t.Errorf("delta_mutated = %v, delta_processed = %v", got["delta_mutated"], got["delta_processed"])
	}
	// Where each phase's Table time went: the full run looks disabled users up, the floor only
	// writes.
	for _, want := range []string{"full: Table requests by kind: ", "floor: Table requests by kind: ", "delta: Table requests by kind: "} {
		line := lineWith(stderr.String(), want)
		if !strings.Contains(line, "transaction ") {
			t.Errorf("no transactions in %q", line)
		}
		if strings.HasPrefix(want, "floor") && strings.Contains(line, "point read") {
			t.Errorf("the floor read entities: %q", line)
		}
	}
	saved, b := savedResult(t, outFile)
	if saved["date"] == nil || saved["machine"] == nil || saved["ratio"] != got["ratio"] {
		t.Errorf("result file lacks date/machine or differs: %s", b)
	}
	t.Logf("%s", line)
}

// targetArgs are the target flags of a benchmark run against sim's tenant as testenv's app,
// with its CA certificate in a file, the tables at conn and the result file out.
func targetArgs(t *testing.T, sim *m365sim.Server, conn, out string) []string {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, sim.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-sim", sim.URL(), "-ca", ca, "-tenant", testenv.Tenant, "-app-id", testenv.ClientID, "-app-secret", testenv.Secret,
		"-tables", conn, "-out", out}
}

// result is a benchmark's JSON result.
type result map[string]any

// num is key k's number; 0 when it is missing or not a number.
func (r result) num(k string) float64 { f, _ := r[k].(float64); return f }

// resultLine parses the last line of a benchmark's stdout, its result, and checks it has keys.
func resultLine(t *testing.T, stdout string, keys ...string) (result, string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	line := lines[len(lines)-1]
	var got result
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, stdout)
	}
	for _, k := range keys {
		if _, ok := got[k]; !ok {
			t.Errorf("key %q missing from %s", k, line)
		}
	}
	return got, line
}

// savedResult reads the result file a benchmark wrote (-out).
func savedResult(t *testing.T, path string) (result, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var saved result
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatalf("result file: %v %s", err, b)
	}
	return saved, b
}

// lineWith returns the first line of text that contains s, or "".
func lineWith(text, s string) string {
	for line := range strings.Lines(text) {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

func TestRequestKind(t *testing.T) {
	for _, tc := range []struct{ method, url, want string }{
		{"POST", "http://127.0.0.1:10002/devstoreaccount1/$batch", "transaction"},
		{"GET", "http://127.0.0.1:10002/devstoreaccount1/t(PartitionKey='o',RowKey='s-1')", "point read"},
		{"GET", "http://127.0.0.1:10002/devstoreaccount1/t()?$filter=PartitionKey%20eq%20'o'", "query"},
		{"PUT", "http://127.0.0.1:10002/devstoreaccount1/t(PartitionKey='o',RowKey='r')", "put entity"},
		{"POST", "http://127.0.0.1:10002/devstoreaccount1/Tables", "post entity"},
	} {
		req, err := http.NewRequest(tc.method, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := requestKind(req); got != tc.want {
			t.Errorf("requestKind(%s %s) = %q, want %q", tc.method, tc.url, got, tc.want)
		}
	}
}

func TestUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := runWith(t.Context(), []string{"-nope"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("bad flag: %v", err)
	}
	if err := runWith(t.Context(), []string{"-sim", "https://x"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("missing flags: %v", err)
	}
	full := []string{"-sim", "https://x", "-ca", "ca.pem", "-tenant", "t", "-app-id", "a", "-app-secret", "s", "-tables", "conn"}
	if err := runWith(t.Context(), append(full, "-floor", "twice"), &out, &errOut); err == nil || !strings.Contains(err.Error(), `-floor "twice"`) {
		t.Errorf("bad -floor: %v", err)
	}
}

// TestTeamsBenchEndToEnd runs the Teams bench on a few recipients against an in-process simulated
// tenant and Azurite: every recipient gets exactly one post, the ones without the app get it
// installed through Graph, and the simulated tenant saw no request over a limit. It asserts
// behaviour, never timing.
func TestTeamsBenchEndToEnd(t *testing.T) {
	conn := azuritetest.Start(t)
	const (
		recipients = 40
		botApp     = "b07a0000-0000-4000-8000-00000000b07a"
		botTenant  = "b07a0000-0000-4000-8000-0000000071d0"
	)
	sim := testenv.NewTenant(t, testenv.Options{Sim: m365sim.Options{Admin: true}, Domain: "bench.example",
		Permissions: []string{"User.Read.All", "TeamsAppInstallation.ReadWriteSelfForUser.All"}})
	if err := sim.Generate(testenv.Tenant, m365sim.GenSpec{Users: recipients, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	sim.RegisterBot(botApp, botTenant, "bot-secret", "")
	outFile := filepath.Join(t.TempDir(), "teams.json")
	var stdout, stderr bytes.Buffer
	// A rate well above what 40 posts need: the test is about what arrives, not how fast.
	args := append(targetArgs(t, sim, conn, outFile), "-bot-app-id", botApp, "-bot-tenant", botTenant, "-bot-secret", "bot-secret",
		"-recipients", "40", "-rate", "200", "-workers", "8", "-uninstalled", "0.1")
	if err := runTeams(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("bench failed: %v\nstderr:\n%s", err, stderr.String())
	}
	got, line := resultLine(t, stdout.String(), "bench", "recipients", "accept_s", "accept_floor_s", "accept_ratio", "send_s", "rate_per_s", "limit_per_s",
		"rate_ratio", "sent", "lost", "duplicated", "limit_violations", "installed_via_graph", "peak_rss_mb", "workers")
	num := got.num
	if got["bench"] != "teams" || num("recipients") != recipients || num("sent") != recipients {
		t.Errorf("bench/recipients/sent = %v/%v/%v", got["bench"], got["recipients"], got["sent"])
	}
	for _, k := range []string{"lost", "duplicated", "limit_violations"} {
		if num(k) != 0 {
			t.Errorf("%s = %v, want 0", k, got[k])
		}
	}
	if num("installed_via_graph") != 4 || num("preinstalled") != 36 {
		t.Errorf("installed_via_graph = %v, preinstalled = %v, want 4 and 36", got["installed_via_graph"], got["preinstalled"])
	}
	if st := sim.BotStats(); st.Sent != recipients {
		t.Errorf("the simulated Bot Connector counted %d posts, want %d", st.Sent, recipients)
	}
	if saved, b := savedResult(t, outFile); saved["date"] == nil || saved["bench"] != "teams" {
		t.Errorf("result file: %s", b)
	}
	t.Logf("%s", line)
}
