package main

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/stakeholder"
)

func TestChangeLatencies(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	made := []time.Time{at(0), at(1), at(2), {}, at(4)}
	seen := []time.Time{at(20), at(12), {}, {}, at(16)}
	lat, lost := changeLatencies(made, seen)
	want := []time.Duration{11 * time.Second, 12 * time.Second, 20 * time.Second}
	if lost != 1 || len(lat) != len(want) {
		t.Fatalf("latencies %v, lost %d; want %v, 1 lost (a change never made is neither)", lat, lost, want)
	}
	for i := range want {
		if lat[i] != want[i] {
			t.Errorf("latency %d = %v, want %v (sorted)", i, lat[i], want[i])
		}
	}
}

func TestPercentile(t *testing.T) {
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing should be 0")
	}
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Second)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0, 1 * time.Second}, {0.5, 101 * time.Second}, {0.95, 191 * time.Second}, {0.99, 199 * time.Second}, {1, 200 * time.Second}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
}

// TestPickFilter: a tree of 6 groups over 100 users; the pick has nested groups, neither group
// inside the other, and the union nearest to half.
func TestPickFilter(t *testing.T) {
	users := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	tree := groupTree{
		ids: []string{"top1", "mid1", "leaf1", "top2", "mid2", "flat"},
		// top1 ⊃ mid1 ⊃ leaf1: 0..40; top2 ⊃ mid2: 40..80; flat: 80..90 and 0..5 again.
		users:    [][]int{users(0, 10), users(10, 25), users(25, 40), users(40, 60), users(60, 80), append(users(80, 90), users(0, 5)...)},
		children: [][]int{{1}, {2}, nil, {4}, nil, nil},
		nUsers:   100,
	}
	p, ok := pickFilter(tree, 100)
	if !ok {
		t.Fatal("no pick")
	}
	// Candidates with a nested group first: top1 (40 users) + flat (10 new) = 50 is exactly half.
	if tree.ids[p.a] != "top1" || tree.ids[p.b] != "flat" || p.users != 50 || p.nested != 2 {
		t.Errorf("picked %s + %s: %d users, %d nested; want top1 + flat: 50 users, 2 nested", tree.ids[p.a], tree.ids[p.b], p.users, p.nested)
	}
	if _, ok := pickFilter(groupTree{ids: []string{"a", "b"}, users: [][]int{{0}, {1}}, children: [][]int{nil, nil}, nUsers: 2}, 2); ok {
		t.Error("flat groups only: want no pick")
	}
}

func TestUserChange(t *testing.T) {
	st := stakeholder.Stakeholder{ID: "e1", ExternalID: "x", FirstName: "Ada", LastName: "Okafor", Department: "Sales"}
	r := newChange(7, st, true)
	if p := r.patch(); p["surname"] != "Okafor-Rt7" || p["displayName"] != "Ada Okafor-Rt7" {
		t.Errorf("rename patch %v", p)
	}
	d := newChange(8, st, false)
	if p := d.patch(); p["department"] != "Realtime Dept 8" || len(p) != 1 {
		t.Errorf("department patch %v", p)
	}
	if r.shows(st) || d.shows(st) {
		t.Error("the old stakeholder shows a change")
	}
	st.LastName, st.Department = "Okafor-Rt7", "Realtime Dept 8"
	if !r.shows(st) || !d.shows(st) {
		t.Error("the changed stakeholder does not show its changes")
	}
}

func TestProcParsing(t *testing.T) {
	comm, ppid, ok := parseStat("4242 (handler (x)) S 17 4242 17 0 -1 4194560")
	if !ok || comm != "handler (x)" || ppid != 17 {
		t.Errorf("parseStat = %q, %d, %v", comm, ppid, ok)
	}
	if _, _, ok := parseStat("garbage"); ok {
		t.Error("parseStat accepted garbage")
	}
	if got := parseVmHWM("Name:\thandler\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n"); got != 50 {
		t.Errorf("parseVmHWM = %v, want 50", got)
	}
}

func TestRealtimeBenchUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	target := []string{"-sim", "https://127.0.0.1:1", "-ca", "ca.pem", "-tenant", "t", "-app-id", "a", "-app-secret", "s", "-tables", "x"}
	for _, extra := range [][]string{{}, {"-users", "10"}, {"-users", "10", "-changes", "5", "-rate", "0"}, {"-users", "10", "-changes", "5", "-debounce", "500ms"}} {
		if err := runRealtime(t.Context(), append(append([]string{}, target...), extra...), &out, &errOut); !errors.Is(err, errUsage) {
			t.Errorf("%q: err %v, want a usage error", extra, err)
		}
	}
}
