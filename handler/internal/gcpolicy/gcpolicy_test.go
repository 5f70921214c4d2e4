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
		want        Policy
	}{
		{"nothing set: ours", nil, 100, 1 << 62,
			Policy{Percent: Percent, Limit: SoftLimit, Defaults: true}},
		{"GOGC set: kept, the limit ours", map[string]string{"GOGC": "50"}, 50, 1 << 62,
			Policy{Percent: 50, Limit: SoftLimit, FromEnv: true, Defaults: true}},
		{"GOMEMLIMIT set: kept, the target ours", map[string]string{"GOMEMLIMIT": "256MiB"}, 100, 256 << 20,
			Policy{Percent: Percent, Limit: 256 << 20, FromEnv: true, Defaults: true}},
		{"both set: both kept", map[string]string{"GOGC": "off", "GOMEMLIMIT": "2GiB"}, -1, 2 << 30,
			Policy{Percent: -1, Limit: 2 << 30, FromEnv: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(tc.before)
			debug.SetMemoryLimit(tc.beforeLimit)
			got := Apply(func(k string) string { return tc.env[k] })
			if got != tc.want {
				t.Errorf("Apply = %+v, want %+v", got, tc.want)
			}
			if p := debug.SetGCPercent(tc.before); p != tc.want.Percent {
				t.Errorf("GC percent in force = %d, want %d", p, tc.want.Percent)
			}
			if l := debug.SetMemoryLimit(-1); l != tc.want.Limit {
				t.Errorf("memory limit in force = %d, want %d", l, tc.want.Limit)
			}
		})
	}
}
