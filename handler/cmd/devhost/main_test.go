package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const appRoot = "../../internal/devhost/testdata/app"

func buildFake(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "handler")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/fakehandler")
	cmd.Dir = "../../internal/devhost"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the fake handler: %v\n%s", err, out)
	}
	return bin
}

func TestRunPrintsReadyAndServes(t *testing.T) {
	bin := buildFake(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	env := map[string]string{"DEVHOST_FUNCTION_KEY": "k1"}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-root", appRoot, "-port", "0", "-handler", bin}, func(k string) string { return env[k] }, pw, t.Output())
		pw.Close()
	}()

	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var url string
	var seen []string
	timeout := time.After(2 * time.Minute) // liveness only: a cold build of the handler is slow
	for url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stdout closed before READY: %v (run: %v)", seen, <-done)
			}
			seen = append(seen, l)
			if u, ok := strings.CutPrefix(l, "READY "); ok {
				url = u
			}
		case <-timeout:
			t.Fatalf("no READY line; stdout so far: %v", seen)
		}
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("READY %q", url)
	}
	req, _ := http.NewRequest("GET", url+"/api/orgs/acme/m365?code=k1", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("proxied call = %d", res.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return after cancel")
	}
	ready := 0
	for l := range lines {
		seen = append(seen, l)
	}
	for _, l := range seen {
		if strings.HasPrefix(l, "READY ") {
			ready++
		}
	}
	if ready != 1 {
		t.Fatalf("%d READY lines in %v", ready, seen)
	}
}

func TestRunErrors(t *testing.T) {
	none := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-bogus"}, "flag provided but not defined"},
		{[]string{"-root", appRoot, "extra"}, "unexpected arguments"},
		{[]string{"-root", t.TempDir(), "-no-build"}, "host.json"},
		{[]string{"-root", appRoot, "-no-build", "-port", "0"}, "neither an executable file"},
		{[]string{"-root", appRoot, "-restart-limit", "0"}, "-restart-limit must be at least 1"},
		{[]string{"-root", appRoot, "-restart-window", "-1s"}, "-restart-limit must be at least 1"},
	} {
		err := run(t.Context(), tc.args, none, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}
