// Command handler is the Azure Functions custom handler of the Leap Change Microsoft 365
// integration: one net/http server that the Functions host starts, pings, and calls for every
// function in functions/ (see the README's Architecture).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/leapchange/m365/handler/internal/gcpolicy"
	"github.com/leapchange/m365/handler/internal/invoke"
)

func main() {
	gcpolicy.Apply(os.Getenv) // the real environment: the runtime read GOGC and GOMEMLIMIT from it
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "handler:", err)
		os.Exit(1)
	}
}

// run reads the configuration, listens, wires the app and serves until ctx ends.
func run(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	// Normal logs go to stdout: the host logs stderr at Error level.
	log := slog.New(invoke.LogHandler(slog.NewJSONHandler(stdout, nil)))
	// Listen before anything else: the host gives the handler a few seconds to answer its ping,
	// and nothing below does network I/O.
	ln, err := net.Listen("tcp", "127.0.0.1:"+cfg.Port)
	if err != nil {
		return err
	}
	app, err := newApp(ctx, cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer app.close(context.WithoutCancel(ctx))
	return serve(ctx, ln, invoke.Middleware(app.routes()), log)
}

// serve serves until ctx ends, then drains in-flight invocations for up to 30 s.
func serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("handler listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if errors.Is(<-errc, http.ErrServerClosed) {
		log.Info("handler stopped")
	}
	return err
}
