// Package gcpolicy sets the garbage collector's policy of our processes (the handler, and the
// benchmarks that run its engine). Their live heap is small — a sync holds one page, tens of
// megabytes at a million users — while they allocate a great deal per request: the Azure SDK's
// Table transactions alone allocate a 32 KB copy buffer per entity. At Go's default (GOGC=100)
// that means a collection every few tens of megabytes, and the collector's CPU competes with
// the work on a small instance. A higher target with a soft memory limit trades a few tens of
// megabytes of heap for that CPU (README, "Benchmarks").
package gcpolicy

import "runtime/debug"

// Percent is the collector's target (as GOGC) unless the environment sets GOGC.
const Percent = 400

// SoftLimit is the soft memory limit (as GOMEMLIMIT) unless the environment sets GOMEMLIMIT:
// near it the collector works harder again, whatever Percent says.
const SoftLimit int64 = 1 << 30

// Apply sets Percent and SoftLimit, each unless the environment sets its variable (the runtime
// has applied that already); Current reads what is in force.
func Apply(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(Percent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(SoftLimit)
	}
}

// Current returns the collector's target and soft memory limit in force.
func Current() (percent int, limit int64) {
	percent = debug.SetGCPercent(-1)         // reads it: -1 turns the collector off …
	debug.SetGCPercent(percent)              // … until it is set back at once
	return percent, debug.SetMemoryLimit(-1) // a negative limit only reads
}
