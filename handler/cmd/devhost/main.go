// Command devhost serves the app locally the way `func start` would, for tests and development.
// Azure runs the real Functions host; this is tooling only (see package devhost).
//
//	go run ./handler/cmd/devhost -root <repo root> -port <port>
//
// It reads <root>/local.settings.json Values (the environment overrides them), builds the handler
// (go build -o <tmp>/handler ./handler in root) unless -handler or -no-build says otherwise, starts
// it, and prints exactly one line "READY http://127.0.0.1:<port>" on stdout once serving. The
// handler's stdout and stderr are passed through; devhost's own logs go to stderr.
//
// Flags:
//
//	-root DIR                 app root (default ".")
//	-port N                   listen port on 127.0.0.1 (default 7071; 0 = any free port)
//	-handler PATH             prebuilt handler binary; no build
//	-no-build                 run host.json's defaultExecutablePath from the root; no build
//	-max-delivery-count N     deliveries before dead-lettering (default 10)
//	-max-concurrent-calls N   consumers per queue function (default: host.json, else 16)
//	-lock-duration D          peek-lock duration (default 5m)
//	-duplicate-window D       message-id duplicate detection window (default 10m)
//	-init-timeout D           handler start-up timeout (default: host.json, else 30s)
//	-restart-limit N          give up after N handler exits within -restart-window (default 3)
//	-restart-window D         the window of -restart-limit (default 30m)
//	-v                        debug logging
//
// SIGINT or SIGTERM shuts down gracefully: timers and consumers stop, in-flight invocations and
// requests drain, the handler gets SIGTERM. The handler never outlives devhost: on Linux it gets
// SIGKILL from the kernel when devhost dies, even by SIGKILL (see package devhost).
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/leapchange/m365/handler/internal/devhost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devhost:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devhost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", ".", "app root: host.json, functions/, local.settings.json")
	port := fs.Int("port", 7071, "listen port on 127.0.0.1 (0: any free port)")
	handler := fs.String("handler", "", "prebuilt handler binary (skips the build)")
	noBuild := fs.Bool("no-build", false, "do not build; run host.json's defaultExecutablePath from the root")
	maxDelivery := fs.Int("max-delivery-count", 10, "Service Bus deliveries before dead-lettering")
	concurrency := fs.Int("max-concurrent-calls", 0, "consumers per queue function (0: host.json extensions.serviceBus.maxConcurrentCalls, default 16)")
	lock := fs.Duration("lock-duration", 5*time.Minute, "peek-lock duration of a delivered message")
	dupWindow := fs.Duration("duplicate-window", 10*time.Minute, "message-id duplicate detection window")
	initTimeout := fs.Duration("init-timeout", 0, "handler start-up timeout (0: host.json customHandler.initializationTimeout, default 30s)")
	restartLimit := fs.Int("restart-limit", 3, "give up after this many handler exits within -restart-window")
	restartWindow := fs.Duration("restart-window", 30*time.Minute, "the window of -restart-limit")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *restartLimit < 1 || *restartWindow <= 0 {
		return fmt.Errorf("-restart-limit must be at least 1 and -restart-window positive (got %d, %v)", *restartLimit, *restartWindow)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("component", "devhost")

	absRoot, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	settings, err := devhost.LoadSettings(absRoot, getenv)
	if err != nil {
		return err
	}
	path := *handler
	if path == "" && !*noBuild {
		dir, err := os.MkdirTemp("", "devhost-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		log.Info("building the handler", "root", absRoot)
		if path, err = devhost.BuildHandler(ctx, absRoot, dir, stderr); err != nil {
			return err
		}
	}
	if path != "" {
		if path, err = filepath.Abs(path); err != nil {
			return err
		}
	}

	h, err := devhost.New(devhost.Config{
		Root: absRoot, Port: *port, HandlerPath: path, Env: os.Environ(), Settings: settings,
		Logger: log, Stdout: stdout, Stderr: stderr,
		Queue:              devhost.QueueOptions{MaxDeliveryCount: *maxDelivery, LockDuration: *lock, DuplicateWindow: *dupWindow},
		MaxConcurrentCalls: *concurrency, InitTimeout: *initTimeout,
		RestartLimit: *restartLimit, RestartWindow: *restartWindow,
	})
	if err != nil {
		return err
	}
	if err := h.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "READY %s\n", h.URL())
	serveErr := h.Serve(ctx)
	log.Info("shutting down")
	return cmp.Or(serveErr, h.Close())
}
