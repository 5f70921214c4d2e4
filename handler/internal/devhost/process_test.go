package devhost

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/testenv"
)

var (
	fakeOnce sync.Once
	fakeDir  string
	fakeBin  string
	fakeErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if fakeDir != "" {
		os.RemoveAll(fakeDir)
	}
	os.Exit(code)
}

// fakeHandlerBinary builds testdata/fakehandler once per test binary.
func fakeHandlerBinary(t *testing.T) string {
	t.Helper()
	fakeOnce.Do(func() {
		if fakeDir, fakeErr = os.MkdirTemp("", "devhost-test-"); fakeErr != nil {
			return
		}
		fakeBin = filepath.Join(fakeDir, "handler")
		out, err := exec.Command("go", "build", "-o", fakeBin, "./testdata/fakehandler").CombinedOutput()
		if err != nil {
			fakeErr = fmt.Errorf("building testdata/fakehandler: %v\n%s", err, out)
		}
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	return fakeBin
}

func processHost(t *testing.T, mode string, tweak func(*Config)) (*Host, *testenv.Buffer, error) {
	t.Helper()
	bin := fakeHandlerBinary(t)
	stdout := &testenv.Buffer{}
	cfg := Config{
		Root: "testdata/app", HandlerPath: bin,
		Settings: map[string]string{"FUNCTIONS_WORKER_RUNTIME": "custom", "FAKE_MODE": mode, "FROM_FILE": "file"},
		Logger:   slog.New(slog.NewTextHandler(t.Output(), nil)),
		Stdout:   stdout, Stderr: t.Output(),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = h.Start(t.Context())
	t.Cleanup(func() { h.Close() })
	return h, stdout, err
}

type handlerInfo struct {
	Path, Port, SB, Worker, Root, FromFile string
	Pid                                    int
}

func getInfo(t *testing.T, h *Host) (handlerInfo, error) {
	req, _ := http.NewRequest("GET", h.URL()+"/api/orgs/acme/m365?x=1", nil)
	req.Header.Set("x-functions-key", "dev")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return handlerInfo{}, err
	}
	defer res.Body.Close()
	var info handlerInfo
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &info); err != nil {
		return info, err
	}
	return info, nil
}

func TestProcessStartsServesAndRestarts(t *testing.T) {
	h, stdout, err := processHost(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := getInfo(t, h)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("testdata/app")
	if info.Path != "/api/orgs/acme/m365?x=1" || info.SB != "devhost="+h.URL() || info.FromFile != "file" ||
		info.Root != root || !uuidRE.MatchString(info.Worker) || info.Port == "" || strings.HasSuffix(h.URL(), ":"+info.Port) {
		t.Fatalf("handler saw %+v", info)
	}
	waitFor(t, "handler stdout passed through", func() bool { return strings.Contains(stdout.String(), "fakehandler: listening on") })

	// The handler dies: devhost starts a new one and keeps serving.
	http.Post(h.handlerURL()+"/_exit", "text/plain", nil)
	waitFor(t, "a restarted handler", func() bool {
		again, err := getInfo(t, h)
		return err == nil && again.Pid != info.Pid && again.Pid != 0
	})
}

func TestProcessGivesUpAfterRepeatedFailures(t *testing.T) {
	h, _, err := processHost(t, "", func(c *Config) { c.RestartLimit = 2 })
	if err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- h.Serve(t.Context()) }()
	for i := 0; i < 2; i++ {
		waitFor(t, "a ready handler", func() bool { _, err := getInfo(t, h); return err == nil })
		http.Post(h.handlerURL()+"/_exit", "text/plain", nil)
		if i == 0 {
			// wait for the restart before killing again
			first := h.handlerURL()
			waitFor(t, "restart", func() bool { return h.handlerURL() != first })
		}
	}
	select {
	case err := <-serveErr:
		if err == nil || !strings.Contains(err.Error(), "giving up") {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Serve did not give up")
	}
}

func TestProcessStartFailures(t *testing.T) {
	for _, tc := range []struct{ mode, want, tail string }{
		{"crash", "exited during start-up", "boom at start-up"},
		{"slow", "did not answer GET / within", "too slow to listen"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			_, _, err := processHost(t, tc.mode, func(c *Config) { c.InitTimeout = 500 * time.Millisecond })
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.tail) {
				t.Fatalf("Start = %v; want %q with stderr tail %q", err, tc.want, tc.tail)
			}
		})
	}
}

func TestNoHandlerExecutable(t *testing.T) {
	h, err := New(Config{Root: "testdata/app", Settings: map[string]string{"FUNCTIONS_WORKER_RUNTIME": "custom"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "neither an executable file") {
		t.Fatalf("Start = %v", err)
	}
}
