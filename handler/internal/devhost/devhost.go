// Package devhost is a local stand-in for the Azure Functions host, for tests and development only.
// Azure runs the real Functions host in production; nothing here is deployed.
//
// A [Host] reads host.json and functions/*/function.json from the app root (package appfiles),
// starts the custom handler with FUNCTIONS_CUSTOMHANDLER_PORT, and then does what the real host
// does for the bindings this project uses:
//
//   - HTTP: each httpTrigger route is served under /api/ (host.json routePrefix) with its methods.
//     authLevel function or admin needs the key, as header x-functions-key or query parameter code
//     (setting DEVHOST_FUNCTION_KEY, default "dev"), else 401; anonymous needs none. Functions with
//     exactly one httpTrigger and one http output are reverse-proxied on the original path and
//     query (enableProxyingHttpRequest), with the host's invocation headers added; redirects are
//     not followed. Any other HTTP function is invoked in JSON mode (POST /<Name> with Data.req)
//     and its http output becomes the answer. Unknown routes answer 404.
//   - Timers fire on their NCRONTAB schedules (UTC) as POST /<Name> with the TimerInfo envelope;
//     runOnStartup is honoured; runs of one timer never overlap.
//   - Service Bus triggers consume in-process queues ([Queues]) with maxConcurrentCalls consumers
//     per function; a failed invocation abandons the message, which is redelivered at once with
//     DeliveryCount+1 and dead-lettered (MaxDeliveryCountExceeded) after the maximum delivery
//     count. Successful invocations send their serviceBus outputs to the in-process queues.
//   - POST /admin/functions/<Name> (key required, body {"input":"..."}) runs a timer function now
//     or enqueues input on a Service Bus function's queue, like the host's admin API; 202.
//
// # The devhost port (loopback only, no key)
//
//	POST /_devhost/queues/{queue}/messages   body: queue.DevHostMessage; 201 enqueued,
//	                                         200 duplicate message id (same outcome), 400 problem+json
//	GET  /_devhost/queues                    per-queue counts
//	GET  /_devhost/queues/{queue}/deadletter dead-lettered messages with reason and last error
//
// The handler publishes to the first endpoint: when the setting ServiceBusConnection (or another
// connection a serviceBus binding names) is absent or exactly "devhost", the handler gets
// ServiceBusConnection=devhost=http://127.0.0.1:<port>. Any other value is passed to the handler
// unchanged; the Service Bus triggers still consume the in-process queues, so messages the handler
// then sends to a real namespace are not seen by this host.
//
// # Handler process
//
// The handler is started with FUNCTIONS_CUSTOMHANDLER_PORT (a free port), FUNCTIONS_HTTPWORKER_PORT,
// FUNCTIONS_CUSTOMHANDLER_WORKER_ID, FUNCTIONS_APP_ROOT_PATH and every setting as environment.
// devhost pings GET / every 25 ms until any HTTP answer (failing after the init timeout with the
// tail of the handler's stderr), restarts the handler whenever it exits, holds invocations while it
// restarts, and gives up after 3 failures within 30 minutes.
//
// # Outputs
//
// A serviceBus output value that is an array sends one message per element; objects are sent as
// JSON (ContentType application/json); strings follow the host's base64 trap faithfully: a string
// that decodes as base64 is sent decoded ("test" becomes the bytes b5 eb 2d), anything else as its
// UTF-8 bytes. An http output in JSON mode ({"statusCode","headers","body"}) is the HTTP answer.
//
// # Differences from the real host
//
// Keys are checked on every function even though `func start` skips them locally; admin routes
// use the same key; queue sessions, topics, retry policies and cardinality many are not supported;
// the timer schedule monitor lives in memory (on the first run ScheduleStatus.Last is
// 0001-01-01T00:00:00+00:00); an invocation timeout (functionTimeout) fails the invocation and
// restarts the handler process, as the host does; POST /admin/functions/<Name> on a Service Bus
// function enqueues the input rather than invoking directly, so queue semantics still apply.
package devhost

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leapchange/m365/handler/internal/appfiles"
)

// DefaultHostVersion is the host version devhost claims in headers.
const DefaultHostVersion = "4.1037.0.0"

// Config configures a [Host].
type Config struct {
	Root string // app root: host.json and functions/ (or function folders)
	Port int    // listen port on 127.0.0.1; 0 picks a free one

	// HandlerURL, when set, is an already running handler (e.g. an httptest server); no process is
	// started. Otherwise HandlerPath is started; when that is empty too, host.json's
	// defaultExecutablePath is used as the host would.
	HandlerURL  string
	HandlerPath string
	// Env is the base environment of the handler process (typically os.Environ()); Settings are
	// added on top, then the host's own variables.
	Env []string
	// Settings are the app settings (local.settings.json Values overridden by the environment; see
	// [LoadSettings]).
	Settings map[string]string

	Clock  Clock        // default: system clock
	Logger *slog.Logger // default: discard
	// Stdout and Stderr receive the handler's output as is (default: discarded).
	Stdout, Stderr io.Writer

	Queue              QueueOptions
	MaxConcurrentCalls int           // overrides extensions.serviceBus.maxConcurrentCalls when > 0
	InitTimeout        time.Duration // overrides customHandler.initializationTimeout when > 0
	FunctionTimeout    time.Duration // overrides host.json functionTimeout when > 0
	HostVersion        string        // default DefaultHostVersion
	// RestartLimit and RestartWindow: give up after this many handler failures within the window
	// (defaults 3 and 30 minutes, like the host).
	RestartLimit  int
	RestartWindow time.Duration
}

// Host is a running local Functions host. Create it with [New].
type Host struct {
	cfg         Config
	app         *appfiles.App
	log         *slog.Logger
	clock       Clock
	queues      *Queues
	routes      []*httpRoute
	key         string
	hostVersion string
	timeout     time.Duration
	client      *http.Client
	settings    map[string]string
	timerList   []*timer

	ln      net.Listener
	srv     *http.Server
	proc    *process // nil with HandlerURL
	target  atomic.Pointer[string]
	readyMu sync.Mutex
	readyCh chan struct{} // closed while the handler is ready
	url     string
	fatal   chan error
	stop    context.CancelFunc
	work    sync.WaitGroup // timers and consumers
	active  sync.WaitGroup // in-flight invocations
	closing atomic.Bool
	closed  sync.Once
}

// New loads and validates the app files (warnings are logged, errors returned) and prepares the
// host. Nothing runs until [Host.Start].
func New(cfg Config) (*Host, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	app, err := appfiles.Load(cfg.Root)
	if err != nil {
		return nil, err
	}
	ps := app.Validate()
	for _, p := range ps.Warnings() {
		log.Warn("app files", "problem", p.String())
	}
	if err := ps.Err(); err != nil {
		return nil, fmt.Errorf("devhost: app files are invalid:\n%w", err)
	}
	h := &Host{
		cfg: cfg, app: app, log: log, clock: cmp.Or[Clock](cfg.Clock, systemClock{}),
		hostVersion: cmp.Or(cfg.HostVersion, DefaultHostVersion),
		settings:    map[string]string{},
		fatal:       make(chan error, 1),
	}
	for k, v := range cfg.Settings {
		h.settings[k] = v
	}
	h.key = cmp.Or(h.settings["DEVHOST_FUNCTION_KEY"], "dev")
	if rt := h.settings["FUNCTIONS_WORKER_RUNTIME"]; !strings.EqualFold(rt, "custom") {
		log.Warn("FUNCTIONS_WORKER_RUNTIME should be custom", "value", rt)
		if rt == "" {
			h.settings["FUNCTIONS_WORKER_RUNTIME"] = "custom"
		}
	}
	if h.timeout = cfg.FunctionTimeout; h.timeout == 0 {
		if h.timeout, err = app.FunctionTimeout(); err != nil {
			return nil, err
		}
	}
	// The host's HTTP client waits functionTimeout + 1 min; devhost fails the invocation at
	// functionTimeout, which is what the host reports.
	h.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	var queueNames []string
	for _, f := range app.Functions {
		for _, b := range f.Bindings {
			if (b.Is(appfiles.TypeServiceBusTrigger, "") || b.Is(appfiles.TypeServiceBus, "")) && !slices.Contains(queueNames, b.QueueName) {
				queueNames = append(queueNames, b.QueueName)
			}
		}
	}
	h.queues = NewQueues(h.clock, cfg.Queue, queueNames...)
	h.timers() // build the timer list once, before any goroutine reads it
	if h.routes, err = buildRoutes(app); err != nil {
		return nil, err
	}
	return h, nil
}

// Queues returns the in-process queue store.
func (h *Host) Queues() *Queues { return h.queues }

// URL is the base URL, http://127.0.0.1:<port>, valid after Start.
func (h *Host) URL() string { return h.url }

func (h *Host) handlerURL() string { return *h.target.Load() }

// setReady records whether the handler answers; invocations wait while it (re)starts, as the host
// does not invoke a worker that is not running.
func (h *Host) setReady(ready bool) {
	h.readyMu.Lock()
	defer h.readyMu.Unlock()
	if h.readyCh == nil {
		h.readyCh = make(chan struct{})
	}
	select {
	case <-h.readyCh:
		if !ready {
			h.readyCh = make(chan struct{})
		}
	default:
		if ready {
			close(h.readyCh)
		}
	}
}

func (h *Host) waitHandler(ctx context.Context) error {
	h.readyMu.Lock()
	ch := h.readyCh
	h.readyMu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start listens, starts the handler and waits for its readiness ping, then starts timers (firing
// runOnStartup ones), queue consumers and the HTTP server. ctx bounds only the start-up.
func (h *Host) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(h.cfg.Port)))
	if err != nil {
		return fmt.Errorf("devhost: %w", err)
	}
	h.ln = ln
	h.url = "http://" + ln.Addr().String()
	h.connectServiceBus()

	if h.cfg.HandlerURL != "" {
		u := strings.TrimSuffix(h.cfg.HandlerURL, "/")
		h.target.Store(&u)
	} else {
		if h.proc, err = h.newProcess(); err != nil {
			ln.Close()
			return err
		}
		if err := h.proc.start(ctx); err != nil {
			ln.Close()
			return err
		}
		go h.supervise()
	}

	h.srv = &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelWarn)}
	go func() {
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.fail(fmt.Errorf("devhost: serve: %w", err))
		}
	}()

	workCtx, stop := context.WithCancel(context.Background())
	h.stop = stop
	h.startTimers(workCtx)
	h.startConsumers(workCtx)
	h.log.Info("devhost serving", "url", h.url, "functions", len(h.app.Functions), "queues", h.queues.Names())
	return nil
}

// connectServiceBus points the handler's Service Bus connection settings at the devhost port when
// they are absent or exactly "devhost".
func (h *Host) connectServiceBus() {
	names := []string{"ServiceBusConnection"}
	for _, f := range h.app.Functions {
		for _, b := range f.Bindings {
			if b.Connection != "" && !slices.Contains(names, b.Connection) {
				names = append(names, b.Connection)
			}
		}
	}
	for _, n := range names {
		if v, ok := h.settings[n]; !ok || v == "devhost" {
			h.settings[n] = "devhost=" + h.url
		} else {
			h.log.Warn("Service Bus connection is not devhost: the handler publishes there, while triggers consume the in-process queues", "setting", n)
		}
	}
}

func (h *Host) fail(err error) {
	select {
	case h.fatal <- err:
	default:
	}
}

// Serve blocks until ctx ends (nil) or the host fails for good (the handler keeps crashing, or the
// listener fails).
func (h *Host) Serve(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-h.fatal:
		return err
	}
}

// Close shuts down gracefully: timers and consumers stop taking work, in-flight invocations and
// HTTP requests are drained (up to 30 s), then the handler gets SIGTERM.
func (h *Host) Close() error {
	var err error
	h.closed.Do(func() {
		h.closing.Store(true)
		if h.stop != nil {
			h.stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if h.srv != nil {
			err = h.srv.Shutdown(ctx)
		}
		done := make(chan struct{})
		go func() { h.work.Wait(); h.active.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			h.log.Warn("in-flight invocations did not finish in time")
		}
		if h.proc != nil {
			err = errors.Join(err, h.proc.stop())
		}
	})
	return err
}

// handlerEnv is the environment of the handler process.
func (h *Host) handlerEnv(port int, workerID string) []string {
	env := slices.Clone(h.cfg.Env)
	for _, k := range slices.Sorted(maps.Keys(h.settings)) {
		env = append(env, k+"="+h.settings[k])
	}
	p := strconv.Itoa(port)
	root, _ := filepath.Abs(h.cfg.Root)
	return append(env,
		"FUNCTIONS_CUSTOMHANDLER_PORT="+p, "FUNCTIONS_HTTPWORKER_PORT="+p,
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID="+workerID, "FUNCTIONS_HTTPWORKER_ID="+workerID,
		"FUNCTIONS_APP_ROOT_PATH="+root)
}

// onTimeout restarts the handler process after an invocation timeout, as the host does.
func (h *Host) onTimeout() {
	if h.proc != nil && !h.closing.Load() {
		h.log.Warn("restarting the handler after a function timeout")
		h.proc.kill()
	}
}

// LoadSettings reads <root>/local.settings.json Values (when the file exists) and lets the
// environment override each of them; getenv is consulted for the keys devhost itself reads too.
func LoadSettings(root string, getenv func(string) string) (map[string]string, error) {
	s := map[string]string{}
	b, err := os.ReadFile(filepath.Join(root, "local.settings.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		var f struct {
			Values map[string]any `json:"Values"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("local.settings.json: %w", err)
		}
		for k, v := range f.Values {
			s[k] = fmt.Sprint(v)
		}
	}
	keys := append(slices.Collect(maps.Keys(s)), "DEVHOST_FUNCTION_KEY", "ServiceBusConnection", "FUNCTIONS_WORKER_RUNTIME")
	for _, k := range keys {
		if v := getenv(k); v != "" {
			s[k] = v
		}
	}
	return s, nil
}
