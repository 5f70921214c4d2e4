package devhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// process runs and supervises the custom handler process.
type process struct {
	h       *Host
	path    string
	args    []string
	dir     string
	timeout time.Duration // readiness

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has exited
	stopping bool
	tail     *tailBuffer
}

// BuildHandler runs `go build -o <outDir>/handler ./handler` in root and returns the binary's path.
func BuildHandler(ctx context.Context, root, outDir string, stderr io.Writer) (string, error) {
	out := filepath.Join(outDir, "handler")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./handler")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("devhost: building the handler (go build -o %s ./handler in %s): %w", out, root, err)
	}
	return out, nil
}

var settingRef = regexp.MustCompile(`%([^%]+)%`)

func (h *Host) newProcess() (*process, error) {
	ch := h.app.Host.CustomHandler
	p := &process{h: h, dir: h.cfg.Root, path: h.cfg.HandlerPath, tail: &tailBuffer{max: 8 << 10}}
	if ch != nil {
		if wd := ch.Description.WorkingDirectory; wd != "" {
			if !filepath.IsAbs(wd) {
				wd = filepath.Join(h.cfg.Root, wd)
			}
			p.dir = wd
		}
		for _, a := range ch.Description.Arguments {
			p.args = append(p.args, settingRef.ReplaceAllStringFunc(a, func(m string) string { return h.settings[m[1:len(m)-1]] }))
		}
	}
	if p.path == "" {
		if ch == nil || ch.Description.DefaultExecutablePath == "" {
			return nil, errors.New("devhost: no handler: set Config.HandlerPath or host.json customHandler.description.defaultExecutablePath")
		}
		p.path = ch.Description.DefaultExecutablePath
		if cand := filepath.Join(p.dir, p.path); fileExecutable(cand) {
			p.path = cand
		} else if _, err := exec.LookPath(p.path); err != nil {
			return nil, fmt.Errorf("devhost: handler %q is neither an executable file in %s nor a command on PATH (build it, or use -handler)", p.path, p.dir)
		}
	}
	var err error
	if p.timeout = h.cfg.InitTimeout; p.timeout == 0 {
		if p.timeout, err = h.app.InitializationTimeout(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func fileExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// FreePort is a loopback TCP port free at the time of asking, for a process about to listen on it.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start launches the handler on a free port and waits for the readiness ping: GET / until any HTTP
// answer. It fails when the process exits first or the init timeout passes, with the tail of the
// handler's stderr.
func (p *process) start(ctx context.Context) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	p.h.setReady(false)
	p.mu.Lock()
	workerID := uuid.NewString()
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Env = p.h.handlerEnv(port, workerID)
	cmd.Stdout = orDiscard(p.h.cfg.Stdout)
	cmd.Stderr = io.MultiWriter(orDiscard(p.h.cfg.Stderr), p.tail)
	cmd.WaitDelay = 2 * time.Second
	tieToParent(cmd)
	p.tail.reset()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("devhost: starting handler %s: %w", p.path, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	go func() { cmd.Wait(); close(exited) }()

	u := "http://127.0.0.1:" + strconv.Itoa(port)
	log := p.h.log.With("pid", cmd.Process.Pid, "port", port, "worker_id", workerID)
	log.Info("handler started", "path", p.path)
	deadline := time.NewTimer(p.timeout)
	defer deadline.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		if res, err := client.Get(u + "/"); err == nil {
			res.Body.Close()
			p.h.target.Store(&u)
			p.h.setReady(true)
			log.Info("handler ready")
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("devhost: handler exited during start-up (%v); stderr tail:\n%s", cmd.ProcessState, p.tail.String())
		case <-deadline.C:
			p.kill()
			return fmt.Errorf("devhost: handler did not answer GET / within %v; stderr tail:\n%s", p.timeout, p.tail.String())
		case <-ctx.Done():
			p.kill()
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// supervise restarts the handler whenever it exits, and gives up (failing the host) after
// RestartLimit failures within RestartWindow.
func (h *Host) supervise() {
	limit, window := h.cfg.RestartLimit, h.cfg.RestartWindow
	if limit <= 0 {
		limit = 3
	}
	if window <= 0 {
		window = 30 * time.Minute
	}
	var failures []time.Time
	p := h.proc
	for {
		p.mu.Lock()
		exited, cmd := p.exited, p.cmd
		p.mu.Unlock()
		<-exited
		if h.closing.Load() {
			return
		}
		h.setReady(false)
		now := time.Now()
		failures = append(failures, now)
		for len(failures) > 0 && now.Sub(failures[0]) > window {
			failures = failures[1:]
		}
		h.log.Error("handler exited", "state", cmd.ProcessState.String(), "failures", len(failures), "stderr_tail", p.tail.String())
		if len(failures) >= limit {
			h.fail(fmt.Errorf("devhost: the handler failed %d times within %v; giving up (last: %v)", len(failures), window, cmd.ProcessState))
			return
		}
		for {
			err := p.start(context.Background())
			if err == nil || h.closing.Load() {
				break
			}
			failures = append(failures, time.Now())
			h.log.Error("handler restart failed", "err", err)
			if len(failures) >= limit {
				h.fail(fmt.Errorf("devhost: the handler failed %d times within %v; giving up: %w", len(failures), window, err))
				return
			}
		}
	}
}

// kill ends the current handler process at once (after an invocation timeout); supervise restarts it.
func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		signalGroup(p.cmd, syscall.SIGKILL)
	}
}

// stop sends SIGTERM and waits up to 10 s before killing.
func (p *process) stop() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	signalGroup(cmd, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		signalGroup(cmd, syscall.SIGKILL)
		<-exited
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(b), nil
}

func (t *tailBuffer) reset() {
	t.mu.Lock()
	t.buf = nil
	t.mu.Unlock()
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
