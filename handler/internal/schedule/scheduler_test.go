package schedule_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/schedule"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

var _ schedule.Starter = (*dirsync.Engine)(nil)
var _ schedule.SettingsReader = (*syncsettings.Store)(nil)

// fakeStarter records Start calls. Per org it can fail (err) or answer a run already going (busy).
type fakeStarter struct {
	mu    sync.Mutex
	calls map[string]int
	err   map[string]error
	busy  map[string]bool
	n     int
	now   func() time.Time
	runs  map[string][]dirsync.Run // newest first
}

func (f *fakeStarter) Runs(_ context.Context, org tablestore.Org, limit int) ([]dirsync.Run, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.runs[org.String()]
	return r[:min(limit, len(r))], nil
}

func (f *fakeStarter) Start(_ context.Context, org tablestore.Org, opts dirsync.StartOptions) (dirsync.Run, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if opts.Trigger != "schedule" || opts.DryRun {
		return dirsync.Run{}, false, fmt.Errorf("fake: unexpected options %+v", opts)
	}
	f.calls[org.String()]++
	if err := f.err[org.String()]; err != nil {
		return dirsync.Run{}, false, err
	}
	f.n++
	run := dirsync.Run{ID: fmt.Sprintf("run-%d", f.n), State: dirsync.Running, Trigger: opts.Trigger}
	if f.now != nil {
		run.StartedAt = f.now()
	}
	if f.runs != nil {
		f.runs[org.String()] = append([]dirsync.Run{run}, f.runs[org.String()]...)
	}
	return run, !f.busy[org.String()], nil
}

func (f *fakeStarter) count(org string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[org]
}

type env struct {
	t        *testing.T
	settings *syncsettings.Store
	starter  *fakeStarter
	now      time.Time
	sched    *schedule.Scheduler
}

func newEnv(t *testing.T) *env {
	t.Helper()
	store := tablestoretest.Open(t)
	e := &env{t: t, settings: syncsettings.NewStore(store),
		starter: &fakeStarter{calls: map[string]int{}, err: map[string]error{}, busy: map[string]bool{}}}
	var err error
	e.sched, err = schedule.New(schedule.Config{
		Orgs: e.settings.Orgs, Settings: e.settings, Starter: e.starter, Store: store,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Now:    func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// org saves settings for name, as saved at updated.
func (e *env) org(name string, f syncsettings.Frequency, zone string, updated string) tablestore.Org {
	e.t.Helper()
	org, err := tablestore.NewOrg(name)
	if err != nil {
		e.t.Fatal(err)
	}
	s := settings(f, zone)
	s.UpdatedAt = utc(updated)
	_, etag, err := e.settings.Get(e.t.Context(), org)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.settings.Put(e.t.Context(), org, s, etag); err != nil {
		e.t.Fatal(err)
	}
	return org
}

// tick runs the scheduler at now and returns the orgs started (with their slots), skipped and failed.
func (e *env) tick(now string) schedule.Result {
	e.t.Helper()
	e.now = utc(now)
	res, err := e.sched.Run(e.t.Context())
	if err != nil {
		e.t.Fatalf("Run at %s: %v", now, err)
	}
	return res
}

// summary renders a Result compactly: "started org@slot(new)", "skipped org@slot:reason", "failed org".
func summary(r schedule.Result) []string {
	var out []string
	for _, s := range r.Started {
		out = append(out, fmt.Sprintf("started %s@%s new=%v", s.Org, s.Slot.UTC().Format(time.RFC3339), s.New))
	}
	for _, s := range r.Skipped {
		out = append(out, fmt.Sprintf("skipped %s@%s:%s", s.Org, s.Slot.UTC().Format(time.RFC3339), s.Reason))
	}
	for _, f := range r.Failed {
		out = append(out, fmt.Sprintf("failed %s", f.Org))
	}
	return out
}

func TestSchedulerTicks(t *testing.T) {
	const saved = "2026-01-01T00:00:00Z"
	type tick struct {
		at   string
		want []string
	}
	for _, tc := range []struct {
		name  string
		setup func(e *env)
		ticks []tick
	}{
		{
			name:  "due org starts once per slot",
			setup: func(e *env) { e.org("acme", daily, "Europe/Berlin", saved) },
			ticks: []tick{
				{"2026-06-01T03:55:00Z", []string{"started acme@2026-05-31T04:00:00Z new=true"}}, // first sight: yesterday's slot, settings older
				{"2026-06-01T04:00:00Z", []string{"started acme@2026-06-01T04:00:00Z new=true"}}, // 06:00 CEST
				{"2026-06-01T04:15:00Z", nil},
				{"2026-06-01T22:00:00Z", nil},
				{"2026-06-02T04:10:00Z", []string{"started acme@2026-06-02T04:00:00Z new=true"}},
			},
		},
		{
			name:  "missed slots over three days start once",
			setup: func(e *env) { e.org("acme", twice, "America/New_York", saved) },
			ticks: []tick{
				{"2026-06-01T10:05:00Z", []string{"started acme@2026-06-01T10:00:00Z new=true"}},
				// host down until three days later at 15:00 EDT: six slots missed, one run
				{"2026-06-04T19:00:00Z", []string{"started acme@2026-06-04T10:00:00Z new=true"}},
				{"2026-06-04T19:15:00Z", nil},
			},
		},
		{
			name:  "twice daily fires at 18:00 local",
			setup: func(e *env) { e.org("acme", twice, "America/New_York", saved) },
			ticks: []tick{
				{"2026-06-01T10:00:00Z", []string{"started acme@2026-06-01T10:00:00Z new=true"}},
				{"2026-06-01T21:45:00Z", nil}, // 17:45 EDT
				{"2026-06-01T22:00:00Z", []string{"started acme@2026-06-01T22:00:00Z new=true"}},
				{"2026-06-01T22:15:00Z", nil},
			},
		},
		{
			name: "first sight after settings saved past the slot records a baseline",
			setup: func(e *env) {
				e.org("late", daily, "Europe/Berlin", "2026-06-01T08:00:00Z")  // saved 10:00 CEST
				e.org("early", daily, "Europe/Berlin", "2026-06-01T03:00:00Z") // saved 05:00 CEST
			},
			ticks: []tick{
				{"2026-06-01T08:15:00Z", []string{"started early@2026-06-01T04:00:00Z new=true", "skipped late@2026-06-01T04:00:00Z:baseline"}},
				{"2026-06-01T08:30:00Z", nil},
				{"2026-06-02T04:00:00Z", []string{"started early@2026-06-02T04:00:00Z new=true", "started late@2026-06-02T04:00:00Z new=true"}},
			},
		},
		{
			name: "editing other settings after the slot does not cancel it",
			setup: func(e *env) {
				org := e.org("edited", daily, "Europe/Berlin", saved)
				st, etag, err := e.settings.Get(e.t.Context(), org)
				if err != nil {
					e.t.Fatal(err)
				}
				// The merge strategy changed at 08:05 UTC; the schedule itself is from January.
				st.MergeStrategy, st.UpdatedAt, st.ScheduleUpdatedAt = syncsettings.LeapWins, utc("2026-06-01T08:05:00Z"), utc(saved)
				if _, err := e.settings.Put(e.t.Context(), org, st, etag); err != nil {
					e.t.Fatal(err)
				}
			},
			ticks: []tick{
				{"2026-06-01T08:15:00Z", []string{"started edited@2026-06-01T04:00:00Z new=true"}},
			},
		},
		{
			name: "manual orgs never start",
			setup: func(e *env) {
				e.org("manual", manual, "Europe/Berlin", saved)
			},
			ticks: []tick{{"2026-06-01T04:00:00Z", nil}, {"2026-06-08T04:00:00Z", nil}},
		},
		{
			name: "a run already going serves the slot",
			setup: func(e *env) {
				e.org("acme", daily, "UTC", saved)
				e.starter.busy["acme"] = true
			},
			ticks: []tick{
				{"2026-06-01T06:00:00Z", []string{"started acme@2026-06-01T06:00:00Z new=false"}},
				{"2026-06-01T06:15:00Z", nil},
			},
		},
		{
			name: "a failing org does not stop the others and is retried",
			setup: func(e *env) {
				for _, o := range []string{"alpha", "bravo", "charlie"} {
					e.org(o, daily, "UTC", saved)
				}
				e.starter.err["bravo"] = errors.New("table storage unavailable")
			},
			ticks: []tick{
				{"2026-06-01T06:00:00Z", []string{"started alpha@2026-06-01T06:00:00Z new=true", "started charlie@2026-06-01T06:00:00Z new=true", "failed bravo"}},
				{"2026-06-01T06:15:00Z", []string{"failed bravo"}},
			},
		},
		{
			name: "not connected is skipped and catches up once after reconnecting",
			setup: func(e *env) {
				e.org("acme", daily, "UTC", saved)
				e.starter.err["acme"] = fmt.Errorf("dirsync: %w (status revoked)", connection.ErrNotConnected)
			},
			ticks: []tick{
				{"2026-06-01T06:00:00Z", []string{"skipped acme@2026-06-01T06:00:00Z:not_connected"}},
				{"2026-06-01T06:15:00Z", []string{"skipped acme@2026-06-01T06:00:00Z:not_connected"}},
				{"2026-06-03T09:00:00Z", []string{"skipped acme@2026-06-03T06:00:00Z:not_connected"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(e)
			for _, tk := range tc.ticks {
				if got := summary(e.tick(tk.at)); !slices.Equal(got, tk.want) {
					t.Errorf("tick at %s:\n got  %q\n want %q", tk.at, got, tk.want)
				}
			}
		})
	}
}

func TestNotConnectedCatchUp(t *testing.T) {
	e := newEnv(t)
	e.org("acme", daily, "UTC", "2026-01-01T00:00:00Z")
	e.starter.err["acme"] = connection.ErrNotConnected
	for at := utc("2026-06-01T05:00:00Z"); at.Before(utc("2026-06-03T12:00:00Z")); at = at.Add(15 * time.Minute) {
		e.tick(at.Format(time.RFC3339))
	}
	e.starter.mu.Lock()
	e.starter.err["acme"] = nil // the admin reconnects
	e.starter.mu.Unlock()
	if got, want := summary(e.tick("2026-06-03T12:15:00Z")), []string{"started acme@2026-06-03T06:00:00Z new=true"}; !slices.Equal(got, want) {
		t.Errorf("after reconnecting: %q, want %q", got, want)
	}
	if got := summary(e.tick("2026-06-03T12:30:00Z")); got != nil {
		t.Errorf("tick after the catch-up: %q, want nothing", got)
	}
	if got, want := summary(e.tick("2026-06-04T06:00:00Z")), []string{"started acme@2026-06-04T06:00:00Z new=true"}; !slices.Equal(got, want) {
		t.Errorf("next slot: %q, want %q", got, want)
	}
}

// TestWeeklyOnlyOnMonday ticks every 15 minutes for two weeks in Tokyo (Monday 06:00 JST is
// Sunday 21:00 UTC) and Honolulu (Monday 16:00 UTC).
func TestWeeklyOnlyOnMonday(t *testing.T) {
	e := newEnv(t)
	e.org("tokyo", weekly, "Asia/Tokyo", "2026-01-01T00:00:00Z")
	e.org("honolulu", weekly, "Pacific/Honolulu", "2026-01-01T00:00:00Z")
	var got []string
	for at := utc("2026-11-24T00:00:00Z"); at.Before(utc("2026-12-08T00:00:00Z")); at = at.Add(15 * time.Minute) {
		for _, s := range e.tick(at.Format(time.RFC3339)).Started {
			got = append(got, at.Format(time.RFC3339)+" "+s.Org.String()+"@"+s.Slot.Format("Mon 15:04 MST"))
		}
	}
	want := []string{
		"2026-11-24T00:00:00Z honolulu@Mon 06:00 HST", // first sight: the Monday just past
		"2026-11-24T00:00:00Z tokyo@Mon 06:00 JST",
		"2026-11-29T21:00:00Z tokyo@Mon 06:00 JST",
		"2026-11-30T16:00:00Z honolulu@Mon 06:00 HST",
		"2026-12-06T21:00:00Z tokyo@Mon 06:00 JST",
		"2026-12-07T16:00:00Z honolulu@Mon 06:00 HST",
	}
	if !slices.Equal(got, want) {
		t.Errorf("weekly starts:\n got  %q\n want %q", got, want)
	}
}

// TestConcurrentRunsStartOnce runs four schedulers at once over twenty due orgs: each org is
// started exactly once.
func TestConcurrentRunsStartOnce(t *testing.T) {
	e := newEnv(t)
	var orgs []string
	for i := range 20 {
		name := fmt.Sprintf("org%02d", i)
		orgs = append(orgs, name)
		e.org(name, daily, "Europe/Berlin", "2026-01-01T00:00:00Z")
	}
	e.now = utc("2026-06-01T04:05:00Z")
	var wg sync.WaitGroup
	results := make([]schedule.Result, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = e.sched.Run(t.Context()) })
	}
	wg.Wait()
	started := map[string]int{}
	for i, r := range results {
		if errs[i] != nil || len(r.Failed) > 0 {
			t.Errorf("Run %d: %v, failed %v", i, errs[i], r.Failed)
		}
		for _, s := range r.Started {
			started[s.Org.String()]++
		}
		for _, s := range r.Skipped {
			if s.Reason != schedule.Claimed {
				t.Errorf("Run %d skipped %s: %s, want claimed", i, s.Org, s.Reason)
			}
		}
	}
	for _, o := range orgs {
		if started[o] != 1 || e.starter.count(o) != 1 {
			t.Errorf("%s: in Started %d times, Start called %d times; want 1", o, started[o], e.starter.count(o))
		}
	}
}

// TestLapsedClaimWhoseRunStartedIsNotStartedAgain: an invocation that started the slot's run
// but died before recording it leaves a claim; once the lease lapses, the next tick finds that
// run instead of starting a second one.
func TestLapsedClaimWhoseRunStartedIsNotStartedAgain(t *testing.T) {
	store := tablestoretest.Open(t)
	settings := syncsettings.NewStore(store)
	now := utc("2026-06-01T06:05:00Z")
	starter := &fakeStarter{calls: map[string]int{}, err: map[string]error{}, busy: map[string]bool{},
		now: func() time.Time { return now }, runs: map[string][]dirsync.Run{}}
	sched, err := schedule.New(schedule.Config{Orgs: settings.Orgs, Settings: settings, Starter: starter, Store: store, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	org, _ := tablestore.NewOrg("acme")
	st := syncsettings.Defaults()
	st.Frequency, st.TimeZone = syncsettings.Daily, "UTC"
	if _, err := settings.Put(t.Context(), org, st, ""); err != nil {
		t.Fatal(err)
	}
	// The run started at 06:05, then the invocation died: only its claim is recorded.
	if _, _, err := starter.Start(t.Context(), org, dirsync.StartOptions{Trigger: "schedule"}); err != nil {
		t.Fatal(err)
	}
	type lapsed struct {
		Claim     time.Time `json:"claim"`
		ClaimedAt time.Time `json:"claimedAt"`
	}
	if _, err := store.Table(schedule.Table).Insert(t.Context(), org, "dirsync", lapsed{Claim: utc("2026-06-01T06:00:00Z"), ClaimedAt: now}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(schedule.ClaimLease + time.Minute)
	res, err := sched.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if starter.count("acme") != 1 || len(res.Started) != 1 || res.Started[0].New || res.Started[0].Run.ID != "run-1" {
		t.Errorf("after the lease: %d starts, result %+v; want run-1 found, no second start", starter.count("acme"), res)
	}
	if res, _ := sched.Run(t.Context()); len(res.Started)+len(res.Skipped)+len(res.Failed) != 0 {
		t.Errorf("the slot is not recorded as served: %+v", res)
	}
}
