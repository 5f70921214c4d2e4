package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/realtime"
	"github.com/leapchange/m365/handler/internal/richnotify"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
	"github.com/leapchange/m365/handler/internal/webhook"
)

// rtDebounce is the rig's REALTIME_DEBOUNCE: short, and only ever waited for on the fake clock.
const rtDebounce = 3 * time.Second

// hookedDirectory is the real Graph client with a hook that runs once, right after the next
// users/delta page was read: a test makes changes "while the run is running" there.
type hookedDirectory struct {
	*graph.Client
	mu   sync.Mutex
	hook func()
}

func (d *hookedDirectory) UsersDelta(ctx context.Context, tenantID, link string) (entra.UserPage, error) {
	page, err := d.Client.UsersDelta(ctx, tenantID, link)
	d.mu.Lock()
	hook := d.hook
	d.hook = nil
	d.mu.Unlock()
	if hook != nil && err == nil {
		hook()
	}
	return page, err
}

func (d *hookedDirectory) afterNextRead(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hook = fn
}

type realTimeRig struct {
	env          *testenv.Env
	clock        *testenv.Clock
	org          tablestore.Org
	settings     *syncsettings.Store
	engine       *dirsync.Engine
	rt           *realtime.Sync
	hooks        *webhook.Handler
	subs         *subscriptions.Store
	stakeholders *stakeholder.Store
	dir          *hookedDirectory
	users        []m365sim.User
	// held are the sync steps the test keeps back (a run that stays running meanwhile).
	held []queuetest.Delivery
}

// newRealTimeRig wires real-time sync as the handler does (app.go) — the real Graph client, the
// subscriptions reconciler, the webhook on a loopback server the simulated tenant notifies, the
// sync engine — against the simulated tenant and Azurite, on one fake clock; the test delivers
// the queue's messages as the SyncWorker and the ChannelEventWorker route them.
func newRealTimeRig(t *testing.T) *realTimeRig {
	t.Helper()
	c := testenv.NewClock(time.Now().UTC().Truncate(time.Second))
	env := testenv.New(t, testenv.Options{Sim: m365sim.Options{Clock: c.Now, TokenLifetime: 1000 * time.Hour}})
	env.Queue.Now = c.Now
	sim := env.Sim
	r := &realTimeRig{env: env, clock: c, org: tablestoretest.Org(t, "acme"), settings: syncsettings.NewStore(env.Store),
		subs: subscriptions.NewStore(env.Store), stakeholders: stakeholder.NewStore(env.Store)}
	for _, u := range []m365sim.User{
		{GivenName: "Ada", Surname: "Lovelace", Department: "Research", JobTitle: "Analyst"},
		{GivenName: "Grace", Surname: "Hopper", Department: "Engineering", JobTitle: "Engineer"},
		{GivenName: "Alan", Surname: "Turing", Department: "Research", JobTitle: "Scientist"},
		{GivenName: "Edsger", Surname: "Dijkstra", Department: "Engineering", JobTitle: "Engineer"},
	} {
		u.DisplayName = u.GivenName + " " + u.Surname
		u.Mail = strings.ToLower(u.GivenName+"."+u.Surname) + "@contoso.example"
		u.UserPrincipalName, u.AccountEnabled = u.Mail, true
		added, err := sim.AddUser(testenv.Tenant, u)
		if err != nil {
			t.Fatal(err)
		}
		r.users = append(r.users, added)
	}
	conns := connection.NewStore(env.Store)
	if _, err := conns.Put(t.Context(), r.org, connection.Record{Status: connection.Connected, TenantID: testenv.Tenant}, ""); err != nil {
		t.Fatal(err)
	}
	set := syncsettings.Defaults()
	if _, err := r.settings.Put(t.Context(), r.org, set, ""); err != nil {
		t.Fatal(err)
	}
	creds := m365auth.New(m365auth.Config{ClientID: testenv.ClientID, ClientSecret: testenv.Secret, AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()})
	gc, err := graph.New(graph.Config{BaseURL: sim.GraphURL(), Credentials: creds, HTTPClient: sim.HTTPClient(),
		Retry: graph.RetryPolicy{Sleep: func(context.Context, time.Duration) error { return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	r.dir = &hookedDirectory{Client: gc}
	r.engine = dirsync.New(dirsync.Config{Store: env.Store, Directory: r.dir, Queue: env.Queue, Tenants: conns, Reauth: conns,
		Settings: r.settings, Now: c.Now})
	cert, err := richnotify.Generate("leap-test-1", c.Now())
	if err != nil {
		t.Fatal(err)
	}
	states, err := subscriptions.NewClientStates([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	reconciler := subscriptions.NewReconciler(subscriptions.ReconcilerConfig{Store: r.subs, States: states, Graph: graphSubscriptions{gc},
		Certificate: notifyCertificate{cert}, PublicBaseURL: srv.URL, Now: c.Now,
		Forget: func(org tablestore.Org, id string) { r.hooks.Forget(org, id) }})
	r.rt = realtime.New(realtime.Config{Store: env.Store, Settings: r.settings, Connections: conns, Subscriptions: reconciler,
		Runs: r.engine, Queue: env.Queue, Debounce: rtDebounce, Now: c.Now})
	r.hooks = webhook.New(webhook.Config{Subscriptions: r.subs, States: states, Queue: env.Queue, Directory: r.rt, Now: c.Now,
		Tokens: richnotify.NewTokenValidator(richnotify.TokenConfig{KeysURL: sim.URL() + "/common/discovery/v2.0/keys", AppID: testenv.ClientID,
			HTTPClient: sim.HTTPClient(), Now: c.Now})})
	mux.Handle("POST /api/graph/notifications", r.hooks.Notifications())
	mux.Handle("POST /api/graph/lifecycle", r.hooks.Lifecycle())
	return r
}

// deliver waits for the simulated tenant's notifications, then delivers every message due on
// the rig's clock as the workers route them: on sync-jobs a nudge to HandleNudge and a step to
// the engine (or, with holdSteps, to r.held); on channel-events a directory subscription's
// event to HandleEvent. It returns the number of deliveries.
func (r *realTimeRig) deliver(t *testing.T, holdSteps bool) int {
	t.Helper()
	ctx := t.Context()
	n := 0
	for range 100 {
		if err := r.env.Sim.WaitDeliveries(ctx); err != nil {
			t.Fatal(err)
		}
		d, ok := r.env.Queue.Next(r.clock.Now())
		if !ok {
			return n
		}
		n++
		var err error
		switch {
		case d.Queue == queue.SyncJobs && realtime.IsNudge(d.Body):
			err = r.rt.HandleNudge(ctx, d.Body)
		case d.Queue == queue.SyncJobs && holdSteps:
			r.held = append(r.held, d)
		case d.Queue == queue.SyncJobs:
			err = r.engine.Step(ctx, d.Body, d.Count)
		case d.Queue == queue.ChannelEvents && subscriptions.Directory(webhook.EventPurpose(d.Body)):
			err = r.rt.HandleEvent(ctx, d.Body)
		default:
			t.Fatalf("a message for %s: %s", d.Queue, d.Body)
		}
		if err != nil {
			t.Fatalf("delivering %s %s: %v", d.Queue, d.Body, err)
		}
	}
	t.Fatal("the queue never ran dry")
	return n
}

// release runs the held sync steps, then whatever they queue.
func (r *realTimeRig) release(t *testing.T) {
	t.Helper()
	held := r.held
	r.held = nil
	for _, d := range held {
		if err := r.engine.Step(t.Context(), d.Body, d.Count); err != nil {
			t.Fatalf("step %s: %v", d.Body, err)
		}
	}
	r.deliver(t, false)
}

func (r *realTimeRig) nudgesPending() []queuetest.Delivery {
	var out []queuetest.Delivery
	for _, d := range r.env.Queue.Pending() {
		if realtime.IsNudge(d.Body) {
			out = append(out, d)
		}
	}
	return out
}

func (r *realTimeRig) status(t *testing.T) realtime.Status {
	t.Helper()
	st, err := r.rt.Status(t.Context(), r.org)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// stakeholder is the synced stakeholder of the simulated user u.
func (r *realTimeRig) stakeholder(t *testing.T, u m365sim.User) stakeholder.Stakeholder {
	t.Helper()
	id, err := r.stakeholders.Lookup(t.Context(), r.org, u.ID, "")
	if err != nil || id == "" {
		t.Fatalf("user %s (%s) has no stakeholder: %v", u.DisplayName, u.ID, err)
	}
	st, _, err := r.stakeholders.Get(t.Context(), r.org, id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// runs lists the org's runs, oldest first.
func (r *realTimeRig) runs(t *testing.T) []dirsync.Run {
	t.Helper()
	runs, err := r.engine.Runs(t.Context(), r.org, 100)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(runs) // Runs lists newest first
	return runs
}

func (r *realTimeRig) setRealTime(t *testing.T, on bool) subscriptions.Report {
	t.Helper()
	set, etag, err := r.settings.Get(t.Context(), r.org)
	if err != nil {
		t.Fatal(err)
	}
	set.RealTime = on
	if _, err := r.settings.Put(t.Context(), r.org, set, etag); err != nil {
		t.Fatal(err)
	}
	// What PUT /m365/settings does after saving a changed realTime.
	rep, err := r.rt.Reconcile(t.Context(), r.org)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func (r *realTimeRig) update(t *testing.T, u m365sim.User, fn func(*m365sim.User)) {
	t.Helper()
	if err := r.env.Sim.UpdateUser(testenv.Tenant, u.ID, fn); err != nil {
		t.Fatal(err)
	}
}

// TestRealTimeSyncEndToEnd: user changes in the tenant reach the stakeholders through the
// subscription, the webhook, the debounced nudge and an ordinary delta run with trigger
// notification; changes made while a run is running fold into one later run; a forged
// notification changes nothing; turning real-time sync off deletes the subscription.
func TestRealTimeSyncEndToEnd(t *testing.T) {
	r := newRealTimeRig(t)
	ctx := t.Context()
	sim := r.env.Sim
	ada, grace, alan, edsger := r.users[0], r.users[1], r.users[2], r.users[3]

	// The first sync, as an admin starts it.
	if _, started, err := r.engine.Start(ctx, r.org, dirsync.StartOptions{Trigger: dirsync.TriggerManual}); err != nil || !started {
		t.Fatalf("first sync: started %v, %v", started, err)
	}
	r.deliver(t, false)
	if runs := r.runs(t); len(runs) != 1 || runs[0].State != dirsync.Succeeded || runs[0].Created != 4 {
		t.Fatalf("first sync: %+v, want one succeeded run that created 4 stakeholders", runs)
	}
	if st := r.status(t); st.Enabled || st.Healthy || len(st.Subscriptions) != 0 {
		t.Errorf("real-time status before it is on: %+v", st)
	}

	// Real-time sync on: a /users subscription at Graph (no group filter: no /groups one).
	if rep := r.setRealTime(t, true); rep.Created != 1 {
		t.Fatalf("reconcile %+v, want one subscription created", rep)
	}
	subs := sim.Subscriptions(testenv.Tenant)
	if len(subs) != 1 || subs[0].Resource != "/users" || subs[0].ChangeType != realtime.ChangeType || subs[0].IncludeResourceData ||
		!strings.Contains(subs[0].NotificationURL, "/api/graph/notifications?org="+r.org.String()) {
		t.Fatalf("subscriptions at Graph: %+v, want one on /users for our webhook", subs)
	}
	if st := r.status(t); !st.Enabled || !st.Healthy || len(st.Subscriptions) != 1 || st.Pending || st.LastNotification != nil {
		t.Fatalf("real-time status once on: %+v", st)
	}

	// A notification with a wrong clientState (the right subscription and tenant) changes
	// nothing: dropped, answered 202, no mark, no nudge.
	published := len(r.env.Queue.Published())
	dropped := r.hooks.Dropped.Load()
	body, _ := json.Marshal(map[string]any{"value": []map[string]any{{"subscriptionId": subs[0].ID, "clientState": "forged",
		"tenantId": testenv.Tenant, "changeType": "updated", "resource": "Users/" + ada.ID,
		"resourceData": map[string]any{"@odata.type": "#Microsoft.Graph.User", "@odata.id": "Users/" + ada.ID, "id": ada.ID}}}})
	rec := httptest.NewRecorder()
	r.hooks.Notifications().ServeHTTP(rec, httptest.NewRequest("POST", "/api/graph/notifications?org="+r.org.String(), bytesReader(body)))
	if rec.Code != http.StatusAccepted || r.hooks.Dropped.Load() != dropped+1 || len(r.env.Queue.Published()) != published {
		t.Errorf("forged notification: %d, dropped %d → %d, published %d → %d", rec.Code, dropped, r.hooks.Dropped.Load(),
			published, len(r.env.Queue.Published()))
	}
	if st := r.status(t); st.Pending || st.LastNotification != nil {
		t.Errorf("after a forged notification: %+v, want nothing pending and no notification recorded", st)
	}

	// A rename and a department move in Entra: two notifications, one mark, one nudge due a
	// debounce after the first.
	changedAt := r.clock.Now()
	r.update(t, ada, func(u *m365sim.User) { u.Surname, u.DisplayName = "King", "Ada King" })
	r.update(t, grace, func(u *m365sim.User) { u.Department = "Operations" })
	if n := r.deliver(t, false); n != 0 {
		t.Fatalf("%d messages delivered before the debounce ended", n)
	}
	st := r.status(t)
	if !st.Pending || st.LastNotification == nil || !st.LastNotification.Equal(changedAt) {
		t.Fatalf("after the changes: %+v, want pending with the notification recorded", st)
	}
	if n := r.nudgesPending(); len(n) != 1 || !n[0].NotBefore.Equal(changedAt.Add(rtDebounce)) {
		t.Fatalf("nudges %+v, want one due a debounce after the notification", n)
	}
	if got := r.stakeholder(t, ada).LastName; got != "Lovelace" {
		t.Errorf("Ada's last name %q before any run", got)
	}
	r.clock.Advance(rtDebounce)
	r.deliver(t, false)
	runs := r.runs(t)
	if len(runs) != 2 || runs[1].Trigger != dirsync.TriggerNotification || runs[1].Kind != "delta" || runs[1].State != dirsync.Succeeded ||
		runs[1].Updated != 2 {
		t.Fatalf("runs %+v, want a second, delta run with trigger notification that updated 2", runs)
	}
	if got := r.stakeholder(t, ada); got.LastName != "King" {
		t.Errorf("Ada's last name %q, want King", got.LastName)
	}
	if got := r.stakeholder(t, grace); got.Department != "Operations" {
		t.Errorf("Grace's department %q, want Operations", got.Department)
	}
	if st := r.status(t); st.Pending || st.LastRunID != runs[1].ID || !st.Healthy || st.LastNotification == nil {
		t.Errorf("after the round: %+v, want nothing pending, last run %s", st, runs[1].ID)
	}

	// A second batch while a run is running. Alan's new title starts a round; the test keeps
	// its step back, so the run stays running. Meanwhile (after its users/delta page was read:
	// the run cannot see them) Edsger is renamed and Ada moves: their nudge comes while the run
	// still runs and starts nothing; they are folded into one later run.
	r.clock.Advance(time.Minute)
	r.update(t, alan, func(u *m365sim.User) { u.JobTitle = "Principal Scientist" })
	r.deliver(t, true)
	r.clock.Advance(rtDebounce)
	r.deliver(t, true)
	runs = r.runs(t)
	if len(runs) != 3 || runs[2].Trigger != dirsync.TriggerNotification || runs[2].State != dirsync.Running || len(r.held) != 1 {
		t.Fatalf("runs %+v (%d steps held), want a third run, running", runs, len(r.held))
	}
	running := runs[2]
	var during realtime.Status
	r.dir.afterNextRead(func() {
		r.clock.Advance(time.Second)
		r.update(t, edsger, func(u *m365sim.User) { u.Surname, u.DisplayName = "Dijkstra-Smits", "Edsger Dijkstra-Smits" })
		r.update(t, ada, func(u *m365sim.User) { u.Department = "Management" })
		r.deliver(t, true)
		r.clock.Advance(rtDebounce)
		r.deliver(t, true) // the nudge: the run is running, so it only schedules the next
		during = r.status(t)
	})
	r.release(t)
	if !during.Pending || !strings.Contains(during.Waiting, running.ID) {
		t.Errorf("status while the run ran: %+v, want pending, waiting for run %s", during, running.ID)
	}
	runs = r.runs(t)
	if len(runs) != 3 || runs[2].State != dirsync.Succeeded || runs[2].Updated != 1 {
		t.Fatalf("runs %+v, want the third run succeeded with Alan's update alone, and no fourth yet", runs)
	}
	if got := r.stakeholder(t, alan).Role; got != "Principal Scientist" {
		t.Errorf("Alan's role %q", got)
	}
	if got := r.stakeholder(t, edsger).LastName; got != "Dijkstra" {
		t.Errorf("Edsger's last name %q after the run that read the directory before his rename", got)
	}
	if n := r.nudgesPending(); len(n) != 1 {
		t.Fatalf("nudges %+v, want the one the busy run put off", n)
	}
	r.clock.Advance(rtDebounce)
	r.deliver(t, false)
	runs = r.runs(t)
	if len(runs) != 4 || runs[3].Trigger != dirsync.TriggerNotification || runs[3].State != dirsync.Succeeded || runs[3].Updated != 2 {
		t.Fatalf("runs %+v, want one fourth run with trigger notification that updated 2", runs)
	}
	if got := r.stakeholder(t, edsger).LastName; got != "Dijkstra-Smits" {
		t.Errorf("Edsger's last name %q, want Dijkstra-Smits", got)
	}
	if got := r.stakeholder(t, ada).Department; got != "Management" {
		t.Errorf("Ada's department %q, want Management", got)
	}
	// Folded: nothing is left to start another round.
	r.clock.Advance(10 * rtDebounce)
	r.deliver(t, false)
	if n, err := r.rt.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("Sweep = %d, %v; want nothing overdue", n, err)
	}
	if runs := r.runs(t); len(runs) != 4 {
		t.Errorf("%d runs, want 4: the second batch made one round", len(runs))
	}
	if st := r.status(t); st.Pending || st.LastRunID != runs[3].ID {
		t.Errorf("in the end: %+v", st)
	}

	// Off: the subscription is deleted at Graph, and a change notifies no one.
	if rep := r.setRealTime(t, false); rep.Deleted != 1 || len(sim.Subscriptions(testenv.Tenant)) != 0 {
		t.Fatalf("turning off: %+v, %d subscriptions left at Graph", rep, len(sim.Subscriptions(testenv.Tenant)))
	}
	if st := r.status(t); st.Enabled || st.Healthy || len(st.Subscriptions) != 0 {
		t.Errorf("status once off: %+v", st)
	}
	accepted := r.hooks.Accepted.Load()
	r.update(t, grace, func(u *m365sim.User) { u.Department = "Finance" })
	r.clock.Advance(10 * rtDebounce)
	r.deliver(t, false)
	if r.hooks.Accepted.Load() != accepted || len(r.runs(t)) != 4 || r.status(t).Pending {
		t.Errorf("a change with real-time sync off: accepted %d → %d, %d runs, %+v", accepted, r.hooks.Accepted.Load(), len(r.runs(t)), r.status(t))
	}
}
