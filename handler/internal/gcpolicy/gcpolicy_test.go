package gcpolicy

import (
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	oldPercent, oldLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(oldPercent); debug.SetMemoryLimit(oldLimit) })

	for _, tc := range []struct {
		name        string
		env         map[string]string
		before      int   // GOGC as the runtime applied it
		beforeLimit int64 // GOMEMLIMIT as the runtime applied it
		wantPercent int
		wantLimit   int64
	}{
		{"nothing set: ours", nil, 100, 1 << 62, Percent, SoftLimit},
		{"GOGC set: kept, the limit ours", map[string]string{"GOGC": "50"}, 50, 1 << 62, 50, SoftLimit},
		{"GOMEMLIMIT set: kept, the target ours", map[string]string{"GOMEMLIMIT": "256MiB"}, 100, 256 << 20, Percent, 256 << 20},
		{"both set: both kept", map[string]string{"GOGC": "off", "GOMEMLIMIT": "2GiB"}, -1, 2 << 30, -1, 2 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(tc.before)
			debug.SetMemoryLimit(tc.beforeLimit)
			Apply(func(k string) string { return tc.env[k] })
			if p, l := Current(); p != tc.wantPercent || l != tc.wantLimit {
				t.Errorf("Current after Apply = %d, %d; want %d, %d", p, l, tc.wantPercent, tc.wantLimit)
			}
			if p := debug.SetGCPercent(tc.before); p != tc.wantPercent {
				t.Errorf("GC percent in force = %d, want %d", p, tc.wantPercent)
			}
			if l := debug.SetMemoryLimit(-1); l != tc.wantLimit {
				t.Errorf("memory limit in force = %d, want %d", l, tc.wantLimit)
			}
		})
	}
}
