package appfiles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	a, err := Load("testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range a.Functions {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, ","); got != "Api,Hook,Tick,Worker" {
		t.Fatalf("functions = %s", got)
	}
	ps := a.Validate()
	if err := ps.Err(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if w := ps.Warnings(); len(w) != 1 || !strings.Contains(w[0].String(), "Hook/function.json: warning: HTTP function is not proxied") {
		t.Errorf("warnings = %v, want only the JSON-mode note for Hook", w)
	}
	if !a.IsRawHTTP(a.Function("Api")) {
		t.Error("Api should be proxied")
	}
	if a.IsRawHTTP(a.Function("Hook")) {
		t.Error("Hook has a serviceBus output: JSON mode")
	}
	if d, _ := a.FunctionTimeout(); d != 5*time.Minute {
		t.Errorf("FunctionTimeout = %v", d)
	}
	if d, _ := a.InitializationTimeout(); d != 10*time.Second {
		t.Errorf("InitializationTimeout = %v", d)
	}
	if n := a.MaxConcurrentCalls(); n != 4 {
		t.Errorf("MaxConcurrentCalls = %d", n)
	}
	if p := a.RoutePrefix(); p != "api" {
		t.Errorf("RoutePrefix = %q", p)
	}
	w := a.Function("Worker")
	if tr := w.Trigger(); tr == nil || tr.QueueName != "jobs" || tr.DataType != "binary" {
		t.Errorf("Worker trigger = %+v", tr)
	}
	if outs := w.Outputs(); len(outs) != 1 || outs[0].Name != "next" {
		t.Errorf("Worker outputs = %+v", outs)
	}
}

func TestLoadDeployedLayout(t *testing.T) {
	a, err := Load("testdata/deployed")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Functions) != 1 || a.Functions[0].Name != "Ping" || !a.IsRawHTTP(a.Functions[0]) {
		t.Fatalf("functions = %+v", a.Functions)
	}
	if err := a.Validate().Err(); err != nil {
		t.Error(err)
	}
}

func TestValidateBad(t *testing.T) {
	a, err := Load("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	ps := a.Validate()
	all := ps.Err().Error()
	for _, want := range []string{
		`host.json: version must be "2.0"`,
		"host.json: functionTimeout: invalid TimeSpan",
		"host.json: customHandler section is missing",
		"autoCompleteMessages must stay true",
		"Clock/function.json: timerTrigger \"timer\": schedule \"*/15 * * * *\": want 6 fields",
		`Queue/function.json: serviceBusTrigger "msg": cardinality must be "one"`,
		`Queue/function.json: serviceBusTrigger "msg": queueName is required`,
		`Queue/function.json: serviceBusTrigger "msg": connection is required`,
		"Route/function.json: httpTrigger \"req\": route \"a/{*rest}/b\": catch-all {*rest} must be the last segment",
		`Route/function.json: httpTrigger "req": authLevel must be`,
		`2Fast/function.json: folder name "2Fast" is not a valid function name`,
		`2Fast/function.json: timerTrigger "t": schedule "0 0 0 30 2 *" never fires`,
		`2Fast/function.json: binding name "t" is used twice`,
		`2Fast/function.json: must have exactly one trigger binding, has 2`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing problem %q", want)
		}
	}
	if w := ps.Warnings(); len(w) == 0 || !strings.Contains(w[0].String(), "dataType") {
		t.Errorf("warnings = %v, want the binary dataType advice", w)
	}
}

func TestLoadMalformed(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "host.json"), []byte(`{"version":"2.0"}`), 0o644)
	os.MkdirAll(filepath.Join(dir, "Broken"), 0o755)
	os.WriteFile(filepath.Join(dir, "Broken", "function.json"), []byte(`{"bindings": [`), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "Broken/function.json") {
		t.Fatalf("Load = %v, want an error naming Broken/function.json", err)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Fatal("Load without host.json succeeded")
	}
}

// TestRepositoryApp validates the project's own function folders, when present.
func TestRepositoryApp(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	if _, err := os.Stat(filepath.Join(root, "host.json")); err != nil {
		t.Skip("no host.json at the repository root")
	}
	a, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Validate().Err(); err != nil {
		t.Fatal(err)
	}
	if len(a.Functions) == 0 {
		t.Fatal("no functions found under functions/")
	}
}

func TestParseTimeSpan(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"00:10:00":     10 * time.Minute,
		"00:00:30":     30 * time.Second,
		"1.02:00:00":   26 * time.Hour,
		"00:00:01.500": 1500 * time.Millisecond,
	} {
		if got, err := ParseTimeSpan(in); err != nil || got != want {
			t.Errorf("ParseTimeSpan(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10", "00:60:00", "24:00:00", "a:b:c", "-1.00:00:00"} {
		if _, err := ParseTimeSpan(in); err == nil {
			t.Errorf("ParseTimeSpan(%q) succeeded", in)
		}
	}
}
