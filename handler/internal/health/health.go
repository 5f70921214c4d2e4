// Package health answers the Health function: the handler's version and whether the services it
// depends on (Table Storage, Service Bus) answer, for App Service health checks and availability
// tests. The endpoint is anonymous, so it shows no secret, no address and no error text: those go
// to the log.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/problem"
)

// Check is one dependency: its name as shown and a cheap call that proves it answers.
type Check struct {
	Name  string // e.g. "tableStorage"
	Title string // e.g. "Table Storage", for the problem's detail
	Ping  func(ctx context.Context) error
}

// Config tunes a Handler.
type Config struct {
	Version string        // default: the build's VCS revision (Version())
	Timeout time.Duration // per check; default 5 s
	// CacheFor is how long one set of results answers later requests: the endpoint is anonymous,
	// and a flood of probes must not become a flood of calls to our dependencies. Default 5 s.
	CacheFor time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// Handler serves GET /api/health.
type Handler struct {
	cfg    Config
	checks []Check

	mu     sync.Mutex // held while checking, so concurrent probes share one round
	last   Report
	lastAt time.Time
}

// Report is the answer's body (on 503 it extends the problem document).
type Report struct {
	Status  string   `json:"status"` // healthy or unhealthy
	Version string   `json:"version"`
	Checks  []Result `json:"checks"`
}

// Result is one check's outcome.
type Result struct {
	Name      string `json:"name"`
	Healthy   bool   `json:"healthy"`
	LatencyMs int64  `json:"latencyMs"`
	Problem   string `json:"problem,omitempty"` // "timed out" or "does not answer"; details are logged
}

// New returns the handler for checks.
func New(cfg Config, checks ...Check) *Handler {
	if cfg.Version == "" {
		cfg.Version = Version()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.CacheFor <= 0 {
		cfg.CacheFor = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{cfg: cfg, checks: checks}
}

// ServeHTTP answers 200 with the report when every check passes, else 503 problem+json naming
// what does not answer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep := h.Check(r.Context())
	w.Header().Set("Cache-Control", "no-store")
	if rep.Status == "healthy" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(rep)
		return
	}
	var down []string
	for _, c := range h.checks {
		for _, res := range rep.Checks {
			if res.Name == c.Name && !res.Healthy {
				down = append(down, c.Title+" "+res.Problem)
			}
		}
	}
	// The problem's own status is the HTTP status, so the report's status word is left out.
	body := struct {
		problem.Problem
		Version string   `json:"version"`
		Checks  []Result `json:"checks"`
	}{problem.New(http.StatusServiceUnavailable, problem.Unavailable, strings.Join(down, "; ")), rep.Version, rep.Checks}
	body.Instance = r.URL.Path
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Retry-After", "30")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(body)
}

// Check runs every check at once (or answers the last round's results while they are fresh).
func (h *Handler) Check(ctx context.Context) Report {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.lastAt.IsZero() && h.cfg.Now().Sub(h.lastAt) < h.cfg.CacheFor {
		return h.last
	}
	// The round is shared by whoever waits on the lock: one caller's cancellation must not fail it.
	ctx = context.WithoutCancel(ctx)
	rep := Report{Status: "healthy", Version: h.cfg.Version, Checks: make([]Result, len(h.checks))}
	var wg sync.WaitGroup
	for i, c := range h.checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
			defer cancel()
			start := time.Now()
			err := c.Ping(cctx)
			res := Result{Name: c.Name, Healthy: err == nil, LatencyMs: time.Since(start).Milliseconds()}
			if err != nil {
				res.Problem = "does not answer"
				if errors.Is(err, context.DeadlineExceeded) || cctx.Err() != nil {
					res.Problem = "timed out"
				}
				h.cfg.Logger.WarnContext(ctx, "health check failed", "check", c.Name, "error", err.Error())
			}
			rep.Checks[i] = res
		})
	}
	wg.Wait()
	for _, res := range rep.Checks {
		if !res.Healthy {
			rep.Status = "unhealthy"
		}
	}
	h.last, h.lastAt = rep, h.cfg.Now()
	return rep
}

// Version is the build's VCS revision (12 digits, "-dirty" when built from a modified tree), or
// the module version, or "dev".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	switch {
	case rev != "":
		return rev + dirty
	case bi.Main.Version != "" && bi.Main.Version != "(devel)":
		return bi.Main.Version
	}
	return "dev"
}
