package azuritetest

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

func TestStartServesTables(t *testing.T) {
	conn := Start(t)
	i := strings.Index(conn, "TableEndpoint=")
	if i < 0 {
		t.Fatalf("connection string %q has no TableEndpoint", conn)
	}
	endpoint := strings.TrimSuffix(conn[i+len("TableEndpoint="):], ";")
	endpoint = strings.TrimSuffix(endpoint, ";")
	resp, err := http.Get(endpoint + "/Tables")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Unauthenticated, Azurite answers 403; what matters is that it answers.
	if resp.StatusCode == 0 {
		t.Fatalf("no answer from %s", endpoint)
	}
	if again := Start(t); again != conn {
		t.Errorf("second Start = %q, want the same Azurite %q", again, conn)
	}
}

func TestPrefixIsUniqueAndTableSafe(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z][a-z0-9]{2,40}$`)
	seen := map[string]bool{}
	for range 100 {
		p := Prefix()
		if !valid.MatchString(p) {
			t.Fatalf("Prefix() = %q, not letters/digits starting with a letter", p)
		}
		if seen[p] {
			t.Fatalf("Prefix() repeated %q", p)
		}
		seen[p] = true
	}
}

func TestMissingNodeModulesSaysHowToFix(t *testing.T) {
	root := t.TempDir()
	_, err := startIn(root)
	if err == nil || !strings.Contains(err.Error(), "npm ci") {
		t.Fatalf("startIn(no node_modules) err = %v, want the `npm ci` fix", err)
	}
}
