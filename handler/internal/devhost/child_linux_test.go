package devhost

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces, so read the state after the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// waitGone waits (generously: this is liveness, not timing) for pid to end.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s (pid %d) still runs a minute later", what, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const parentEnv = "DEVHOST_TEST_PARENT_HANDLER"

// TestParentHelper is the devhost process of TestHandlerDiesWithDevhost when run by it.
func TestParentHelper(t *testing.T) {
	bin := os.Getenv(parentEnv)
	if bin == "" {
		t.Skip("helper process only")
	}
	h, err := New(Config{Root: "testdata/app", HandlerPath: bin, Logger: slog.New(slog.DiscardHandler),
		Settings: map[string]string{"FUNCTIONS_WORKER_RUNTIME": "custom", "FROM_FILE": "file"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err := getInfo(t, h)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("HANDLER " + strconv.Itoa(info.Pid) + "\n")
	time.Sleep(time.Hour) // until the test kills this process
}

// TestHandlerDiesWithDevhost kills devhost with SIGKILL — no cleanup of ours runs — and expects
// the kernel to take the handler with it.
func TestHandlerDiesWithDevhost(t *testing.T) {
	parent := exec.Command(os.Args[0], "-test.run=^TestParentHelper$", "-test.v")
	parent.Env = append(os.Environ(), parentEnv+"="+fakeHandlerBinary(t))
	parent.Stderr = t.Output()
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { parent.Process.Kill(); parent.Wait() })
	pid := 0
	sc := bufio.NewScanner(out)
	for pid == 0 && sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "HANDLER "); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid == 0 {
		t.Fatalf("the helper devhost never reported its handler (%v)", sc.Err())
	}
	if !alive(pid) {
		t.Fatalf("handler %d is not running before devhost is killed", pid)
	}
	parent.Process.Signal(syscall.SIGKILL)
	parent.Wait()
	waitGone(t, pid, "the handler of a SIGKILLed devhost")
}

// TestStopEndsAWrappedHandler runs the handler through a wrapper that does not exec it (as `go
// run` or a shell script does): closing the host must end the handler too, not only the wrapper.
func TestStopEndsAWrappedHandler(t *testing.T) {
	wrapper := filepath.Join(t.TempDir(), "wrapper.sh")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\n"+fakeHandlerBinary(t)+"\necho wrapper done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h, _, err := processHost(t, "", func(c *Config) { c.HandlerPath = wrapper })
	if err != nil {
		t.Fatal(err)
	}
	info, err := getInfo(t, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, info.Pid, "the wrapped handler after Close")
}
