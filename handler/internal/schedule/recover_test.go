package schedule_test

import (
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/schedule"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

// The tick recovers a run whose step message was lost — for a manual org too — instead of
// letting it serve every later slot while nothing runs.
func TestTickRecoversStalledRun(t *testing.T) {
	store := tablestoretest.Open(t)
	now := utc("2026-06-01T05:00:00Z")
	clock := func() time.Time { return now }
	settings := syncsettings.NewStore(store)
	conns := connection.NewStore(store)
	q := &queuetest.Queue{} // never drained: the step of every run is lost
	eng := dirsync.New(dirsync.Config{Store: store, Queue: q, Tenants: conns, Settings: settings, Now: clock})
	sched, err := schedule.New(schedule.Config{Orgs: settings.Orgs, Settings: settings, Starter: eng, Store: store, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]dirsync.Run{}
	for _, name := range []string{"daily", "manual"} {
		org, _ := tablestore.NewOrg(name)
		st := syncsettings.Defaults()
		st.Frequency, st.TimeZone = syncsettings.Daily, "UTC"
		if name == "manual" {
			st.Frequency = syncsettings.Manual
		}
		st.UpdatedAt, st.ScheduleUpdatedAt = now.Add(-48*time.Hour), now.Add(-48*time.Hour)
		if _, err := settings.Put(t.Context(), org, st, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := conns.Put(t.Context(), org, connection.Record{Status: connection.Connected, TenantID: "t-" + name}, ""); err != nil {
			t.Fatal(err)
		}
		run, started, err := eng.Start(t.Context(), org, dirsync.StartOptions{})
		if err != nil || !started {
			t.Fatalf("start %s: %v %v", name, started, err)
		}
		runs[name] = run
	}
	sent := len(q.Published())

	now = now.Add(5 * time.Minute) // not stalled yet
	res, err := sched.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Recovered) != 0 {
		t.Fatalf("recovered too early: %+v", res.Recovered)
	}

	now = now.Add(time.Hour) // both runs stalled; the daily org's 06:00 slot is due
	res, err = sched.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Recovered) != 2 || res.Recovered[0].Run.ID != runs["daily"].ID || res.Recovered[1].Run.ID != runs["manual"].ID {
		t.Fatalf("recovered %+v; want both stalled runs", res.Recovered)
	}
	if got := len(q.Published()) - sent; got < 2 {
		t.Errorf("%d messages republished, want the two lost steps", got)
	}
	if len(res.Started) != 1 || res.Started[0].New || res.Started[0].Run.ID != runs["daily"].ID {
		t.Errorf("started %+v; want the recovered run to serve the daily slot", res.Started)
	}
	for name, r := range runs {
		org, _ := tablestore.NewOrg(name)
		got, _, err := eng.Run(t.Context(), org, r.ID)
		if err != nil || got.State != dirsync.Running || got.Recoveries != 1 {
			t.Errorf("%s: %+v %v; want running with one recovery", name, got, err)
		}
	}
}
