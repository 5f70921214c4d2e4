// Package azuritetest gives tests a Table Storage endpoint: Azurite, the Azure Storage emulator, started
// from the project's npm install (or the one scripts/test.sh already started).
//
// Tests never use an in-memory stand-in for our store; a missing Azurite is a test failure that names the
// command that fixes it.
//
// Use it from a test binary like this:
//
//	func TestMain(m *testing.M) { azuritetest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		conn := azuritetest.Start(t)
//		s, err := tablestore.Open(t.Context(), tablestore.Config{ConnectionString: conn, Prefix: azuritetest.Prefix()})
//		...
//	}
package azuritetest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// EnvConnection names the environment variable that, when set, holds the connection string of an
// Azurite that is already running (scripts/test.sh starts one for the whole run and exports it).
const EnvConnection = "AZURITE_TABLES_CONNECTION"

// AccountKey is the well-known key of Azurite's devstoreaccount1 account (public, documented by Microsoft).
const AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// ConnectionString returns the connection string for an Azurite table service on 127.0.0.1:port.
func ConnectionString(port int) string {
	return "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + AccountKey +
		";TableEndpoint=http://127.0.0.1:" + strconv.Itoa(port) + "/devstoreaccount1;"
}

var (
	once    sync.Once
	conn    string
	errOnce error
	proc    *exec.Cmd
	procMu  sync.Mutex
	exited  = make(chan struct{})
	stopped atomic.Bool
)

// Start returns a Table Storage connection string for tests. It uses $AZURITE_TABLES_CONNECTION when set;
// otherwise it starts one Azurite (in-memory, on a free loopback port) per test binary, shared by all
// tests, and stopped by Main or, if the test binary dies, by the kernel (parent-death signal on Linux).
//
// Start fails the test (never skips it) when Azurite cannot be started, saying how to fix it.
func Start(t testing.TB) string {
	t.Helper()
	if c := os.Getenv(EnvConnection); c != "" {
		return c
	}
	once.Do(func() { conn, errOnce = start() })
	if errOnce != nil {
		t.Fatalf("azuritetest: %v", errOnce)
	}
	return conn
}

// Main runs the tests and then stops the Azurite that Start may have started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop kills the Azurite started by Start, if any, and waits for it to exit. It is safe to call more than
// once. Main calls it; call it yourself only from a TestMain that cannot use Main.
func Stop() {
	procMu.Lock()
	p := proc
	procMu.Unlock()
	if p == nil || !stopped.CompareAndSwap(false, true) {
		return
	}
	_ = p.Process.Kill()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
	}
}

var (
	counter   atomic.Uint64
	prefixNow = time.Now().UnixNano()
)

// Prefix returns a table-name prefix unique to this call: "t", the test binary's start time in
// nanoseconds in base 36, and a counter in base 36 — letters and digits only, so prefix plus table name
// is a valid Table name. tablestore.DropTables accepts prefixes of this shape (see tablestore.IsTestPrefix).
func Prefix() string {
	n := counter.Add(1)
	return "t" + strconv.FormatInt(prefixNow, 36) + strconv.FormatUint(n, 36)
}

func start() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return startIn(root)
}

// startIn starts Azurite from root's node_modules.
func startIn(root string) (string, error) {
	bin := filepath.Join(root, "node_modules", ".bin", "azurite-table")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s not found: run `npm ci` in the repo root %s (scripts/test.sh does this), or set %s", bin, root, EnvConnection)
	}
	// A port picked by listening and closing can be taken by someone else before Azurite binds it; retry
	// a few times with fresh ports.
	var errs []error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return "", err
		}
		if err := launch(bin, port); err != nil {
			errs = append(errs, err)
			continue
		}
		return ConnectionString(port), nil
	}
	return "", errors.Join(errs...)
}

// launch starts Azurite on port and waits until it accepts connections.
func launch(bin string, port int) error {
	out := new(lockedWriter) // Azurite's own output, shown when it fails to start
	cmd := exec.Command(bin,
		"--inMemoryPersistence",
		"--skipApiVersionCheck",
		"--disableProductStyleUrl",
		"--disableTelemetry",
		"--silent",
		"--tableHost", "127.0.0.1",
		"--tablePort", strconv.Itoa(port),
	)
	cmd.Dir = os.TempDir()
	cmd.Stdout = out
	cmd.Stderr = out
	setDeathSignal(cmd)

	// The parent-death signal fires when the OS thread that started the child exits, so start it from a
	// goroutine locked to its thread that lives as long as the child does.
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
		// Stay locked: ending a locked goroutine ends its thread, which is fine now the child is gone.
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("azurite-table exited before listening on %s:\n%s", addr, out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("azurite-table did not listen on %s within 30s:\n%s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	procMu.Lock()
	proc = cmd
	procMu.Unlock()
	go func() { <-done; close(exited) }()
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// repoRoot walks up from the working directory (a test runs in its package directory) to the directory
// holding package.json.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "package.json")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no package.json above %s: run the tests inside the repository, or set %s", dir, EnvConnection)
		}
		d = parent
	}
}

type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
