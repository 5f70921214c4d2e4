package main

// What the webhook and real-time benchmarks share: the real handler behind the host stand-in.

import (
	"context"
	"flag"
	"io"
	"maps"
	"path/filepath"

	"github.com/leapchange/m365/handler/internal/devhost"
)

// handlerApp is the app the host stand-in serves: the repository's app files (host.json,
// functions/) and the handler binary.
type handlerApp struct{ root, handler string }

// flags declares -root and -handler on fs.
func (a *handlerApp) flags(fs *flag.FlagSet) {
	fs.StringVar(&a.root, "root", ".", "repository root (host.json, functions/)")
	fs.StringVar(&a.handler, "handler", "", "prebuilt handler binary (default: build ./handler into a temporary directory)")
}

// binary is the handler binary's absolute path: -handler, or ./handler built into work.
func (a *handlerApp) binary(ctx context.Context, work string, stderr io.Writer, logf func(string, ...any)) (string, error) {
	path := a.handler
	if path == "" {
		logf("building ./handler")
		var err error
		if path, err = devhost.BuildHandler(ctx, a.root, work, stderr); err != nil {
			return "", err
		}
	}
	return filepath.Abs(path)
}

// hostSettings are the handler's settings behind the host stand-in: this run's tables, the
// stand-in's Service Bus, a bot that is never called (the handler needs its settings to start),
// and the benchmark's own (more).
func hostSettings(tables, prefix string, more map[string]string) map[string]string {
	s := map[string]string{
		"FUNCTIONS_WORKER_RUNTIME": "custom",
		"TablesConnection":         tables,
		"TABLE_PREFIX":             prefix,
		"ServiceBusConnection":     "devhost",
		"BOT_APP_ID":               "6d7e8f90-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
		"BOT_APP_SECRET":           "unused",
		"BOT_TENANT_ID":            "2f3e4d5c-6b7a-4980-9a1b-2c3d4e5f6a7b",
	}
	maps.Copy(s, more)
	return s
}
