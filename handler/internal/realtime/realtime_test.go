package realtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/realtime"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/subscriptionstest"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
	"github.com/leapchange/m365/handler/internal/webhook"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

const (
	tenant   = "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b"
	debounce = 15 * time.Second
)

var t0 = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

// userSubscription accepts what Graph accepts for real-time sync's subscriptions: /users or
// /groups of our tenant, updates and deletions, no resource data, a clientState, our webhook.
func userSubscription(tenantID string, s subscriptions.Request) error {
	if tenantID != tenant || (s.Resource != "/users" && s.Resource != "/groups") || s.ChangeType != "updated,deleted" ||
		s.IncludeResourceData || s.ClientState == "" || !strings.Contains(s.NotificationURL, "/api/graph/notifications?org=") {
		return subscriptionstest.Invalid(fmt.Sprintf("bad subscription %+v", s))
	}
	return nil
}

// runs is the sync engine's Start: it records each start; busy makes it answer with a running run.
type runs struct {
	now func() time.Time
	// start, when set, decides whether a round can start now (false: one is running).
	start   func(now time.Time) bool
	mu      sync.Mutex
	started []dirsync.StartOptions
	busy    bool
}

func (r *runs) Start(_ context.Context, _ tablestore.Org, opts dirsync.StartOptions) (dirsync.Run, bool, error) {
	// start runs unlocked: it may start a round itself (another nudge handled meanwhile).
	if r.start != nil && !r.start(r.now()) {
		return dirsync.Run{ID: "running-run", State: dirsync.Running}, false, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy {
		return dirsync.Run{ID: "running-run", State: dirsync.Running}, false, nil
	}
	r.started = append(r.started, opts)
	return dirsync.Run{ID: fmt.Sprintf("run-%d", len(r.started)), State: dirsync.Running, StartedAt: r.now()}, true, nil
}

func (r *runs) triggers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, o := range r.started {
		out = append(out, o.Trigger)
	}
	return out
}

type rig struct {
	org      tablestore.Org
	clock    *testenv.Clock
	queue    *queuetest.Queue
	graph    *subscriptionstest.Graph
	runs     *runs
	conns    *connection.Store
	settings *syncsettings.Store
	subs     *subscriptions.Store
	states   subscriptions.ClientStates
	sync     *realtime.Sync
}

func newRig(t *testing.T, set func(*syncsettings.Settings)) *rig {
	t.Helper()
	store := tablestoretest.Open(t)
	clock := testenv.NewClock(t0)
	r := &rig{org: tablestoretest.Org(t, "acme"), clock: clock, queue: &queuetest.Queue{Now: clock.Now}, graph: &subscriptionstest.Graph{Check: userSubscription},
		runs: &runs{now: clock.Now}, conns: connection.NewStore(store), settings: syncsettings.NewStore(store), subs: subscriptions.NewStore(store)}
	var err error
	if r.states, err = subscriptions.NewClientStates([]byte("0123456789abcdef0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	rec := connection.Record{Status: connection.Connected, TenantID: tenant, ConnectedAt: t0}
	if _, err := r.conns.Put(t.Context(), r.org, rec, ""); err != nil {
		t.Fatal(err)
	}
	s := syncsettings.Defaults()
	s.RealTime = true
	if set != nil {
		set(&s)
	}
	if _, err := r.settings.Put(t.Context(), r.org, s, ""); err != nil {
		t.Fatal(err)
	}
	reconciler := subscriptions.NewReconciler(subscriptions.ReconcilerConfig{Store: r.subs, States: r.states, Graph: r.graph,
		PublicBaseURL: "https://leap.example.net", Now: clock.Now})
	r.sync = realtime.New(realtime.Config{Store: store, Settings: r.settings, Connections: r.conns, Subscriptions: reconciler,
		Runs: r.runs, Queue: r.queue, Debounce: debounce, Now: clock.Now})
	return r
}

// drain delivers every nudge due by now to the SyncWorker's real-time path.
// notifyAt sets the clock to at after t0 and records a change notification for the org then.
func (r *rig) notifyAt(t *testing.T, at time.Duration) {
	t.Helper()
	r.clock.Set(t0.Add(at))
	if err := r.sync.Notified(t.Context(), r.org); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) drain(t *testing.T) int {
	t.Helper()
	n, err := r.queue.Drain(t.Context(), func(ctx context.Context, d queuetest.Delivery) error {
		if !realtime.IsNudge(d.Body) {
			return fmt.Errorf("not a nudge on sync-jobs: %s", d.Body)
		}
		return r.sync.HandleNudge(ctx, d.Body)
	}, queuetest.DrainOptions{Now: r.clock.Now, Wait: func(context.Context, time.Time) error { return errNotDue }, FailOnDeadLetter: true})
	if err != nil && err != errNotDue {
		t.Fatal(err)
	}
	return n
}

var errNotDue = fmt.Errorf("scheduled for later")

func (r *rig) nudges() []queue.Message {
	var out []queue.Message
	for _, m := range r.queue.Published() {
		if m.Subject == realtime.Subject {
			out = append(out, m)
		}
	}
	return out
}

func (r *rig) status(t *testing.T) realtime.Status {
	t.Helper()
	st, err := r.sync.Status(t.Context(), r.org)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestNotificationsMarkTheOrgAndStartOneDebouncedRound(t *testing.T) {
	r := newRig(t, nil)
	for i := range 3 {
		r.clock.Set(t0.Add(time.Duration(i) * time.Second))
		if err := r.sync.Notified(t.Context(), r.org); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.nudges(); len(n) != 1 || !n[0].NotBefore.Equal(t0.Add(debounce)) {
		t.Fatalf("nudges = %+v; want one, due %s after the first notification", n, debounce)
	}
	st := r.status(t)
	if !st.Pending || st.PendingSince == nil || !st.PendingSince.Equal(t0) || st.LastNotification == nil {
		t.Fatalf("status = %+v; want pending since the first notification", st)
	}
	r.clock.Set(t0.Add(debounce - time.Second))
	r.drain(t)
	if got := r.runs.triggers(); len(got) != 0 {
		t.Fatalf("a round started before the debounce: %v", got)
	}
	r.clock.Set(t0.Add(debounce))
	r.drain(t)
	if got := r.runs.triggers(); !slices.Equal(got, []string{"notification"}) {
		t.Fatalf("rounds = %v; want one started by a notification", got)
	}
	if st := r.status(t); st.Pending || st.LastRunID != "run-1" {
		t.Fatalf("status = %+v; want clean with the run recorded", st)
	}
	// A redelivered nudge does nothing more.
	for _, m := range r.nudges() {
		if err := r.sync.HandleNudge(t.Context(), m.Body); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.runs.triggers(); len(got) != 1 {
		t.Fatalf("a redelivered nudge started another round: %v", got)
	}
}

// A change notified just after its round started (a mark seconds earlier, so an instance that
// skipped writes would have skipped it) keeps the org dirty for the next round: nothing waits
// for the next scheduled sync.
func TestANotificationJustAfterTheRoundStartedIsNotLost(t *testing.T) {
	r := newRig(t, nil)
	notify := func(at time.Duration) { t.Helper(); r.notifyAt(t, at) }
	notify(0)
	notify(debounce - time.Second) // marked: close to the round, so the next one within seconds is too
	r.clock.Set(t0.Add(debounce))
	r.drain(t) // the round starts at the debounce
	notify(debounce + 500*time.Millisecond)
	if st := r.status(t); !st.Pending {
		t.Fatalf("status = %+v; a change notified after the round started must keep the org pending", st)
	}
	r.clock.Set(t0.Add(3 * debounce))
	r.drain(t)
	if got := r.runs.triggers(); !slices.Equal(got, []string{"notification", "notification"}) {
		t.Fatalf("rounds = %v; want a second round for the late change", got)
	}
}

// A nudge delivered late, after a notification scheduled the next one: the late nudge leaves the
// round to the next (which covers the notifications the instance skips meanwhile), and nothing
// is pending once it ran.
func TestALateNudgeLeavesTheRoundToTheNext(t *testing.T) {
	r := newRig(t, nil)
	var starts []time.Time
	r.runs.start = func(now time.Time) bool { starts = append(starts, now); return true }
	notify := func(at time.Duration) { t.Helper(); r.notifyAt(t, at) }
	notify(0)
	notify(debounce + 400*time.Millisecond) // the nudge due at the debounce has not come yet
	r.clock.Set(t0.Add(debounce + 900*time.Millisecond))
	r.drain(t)                               // it comes now
	notify(debounce + 1500*time.Millisecond) // skipped by the memo: the next round covers it
	r.clock.Set(t0.Add(3 * debounce))
	r.drain(t)
	if len(starts) == 0 || !starts[len(starts)-1].After(t0.Add(debounce+1500*time.Millisecond)) {
		t.Fatalf("rounds started at %v; want one after the last notification", starts)
	}
	if st := r.status(t); st.Pending {
		t.Fatalf("status = %+v; want nothing pending", st)
	}
}

// A nudge handled twice at once (two marks of the same moment each scheduling one, or a
// redelivery): when the second copy reads the org dirty and then finds the round the first
// started running (which cleaned the org), it must leave the org as that round left it:
// nothing pending, no waiting reason.
func TestANudgeThatLosesTheRaceToTheRoundLeavesTheOrgClean(t *testing.T) {
	r := newRig(t, nil)
	r.notifyAt(t, 0)
	nudges := r.nudges()
	if len(nudges) != 1 {
		t.Fatalf("nudges = %d; want 1", len(nudges))
	}
	nudge := nudges[0].Body
	raced := false
	r.runs.start = func(time.Time) bool {
		if raced {
			return true // the first nudge's round
		}
		raced = true
		if err := r.sync.HandleNudge(t.Context(), nudge); err != nil {
			t.Error(err)
		}
		return false // the second finds that round running
	}
	r.clock.Set(t0.Add(debounce))
	if err := r.sync.HandleNudge(t.Context(), nudge); err != nil {
		t.Fatal(err)
	}
	if got := r.runs.triggers(); !slices.Equal(got, []string{"notification"}) {
		t.Fatalf("rounds = %v; want the first nudge's", got)
	}
	if st := r.status(t); st.Pending || st.Waiting != "" {
		t.Fatalf("status = %+v; want nothing pending and no waiting reason: the round covers the notifications", st)
	}
	r.clock.Set(t0.Add(3 * debounce))
	r.drain(t)
	if got := r.runs.triggers(); !slices.Equal(got, []string{"notification"}) {
		t.Fatalf("rounds = %v; a nudge left over must find the org clean and start nothing", got)
	}
}

func TestARunningRoundFoldsLaterNotificationsIntoTheNext(t *testing.T) {
	r := newRig(t, nil)
	r.runs.busy = true
	if err := r.sync.Notified(t.Context(), r.org); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(debounce)
	r.drain(t)
	if got := r.runs.triggers(); len(got) != 0 {
		t.Fatalf("rounds = %v while one was running", got)
	}
	if st := r.status(t); !st.Pending || !strings.Contains(st.Waiting, "running-run") {
		t.Fatalf("status = %+v; want pending, waiting for the running run", st)
	}
	r.runs.busy = false
	r.clock.Advance(debounce)
	r.drain(t)
	if got := r.runs.triggers(); !slices.Equal(got, []string{"notification"}) {
		t.Fatalf("rounds = %v; want one once the running run ended", got)
	}
}

func TestNotificationsWaitWhileTheConnectionNeedsReauthorization(t *testing.T) {
	r := newRig(t, nil)
	if err := r.conns.NeedsReauthorization(t.Context(), r.org, "token refused", t0); err != nil {
		t.Fatal(err)
	}
	if err := r.sync.Notified(t.Context(), r.org); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(debounce)
	r.drain(t)
	st := r.status(t)
	if len(r.runs.triggers()) != 0 || !st.Pending || !strings.Contains(st.Waiting, "re-authorization") {
		t.Fatalf("rounds %v, status %+v; want none, pending, waiting for re-authorization", r.runs.triggers(), st)
	}
	// Nothing is lost: once the admin consents again, the scheduler's sweep starts the round.
	rec, etag, err := r.conns.Get(t.Context(), r.org)
	if err != nil {
		t.Fatal(err)
	}
	rec.Status = connection.Connected
	if _, err := r.conns.Put(t.Context(), r.org, rec, etag); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(15 * time.Minute)
	if n, err := r.sync.Sweep(t.Context()); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want one round", n, err)
	}
	if got := r.runs.triggers(); !slices.Equal(got, []string{"notification"}) {
		t.Fatalf("rounds = %v; want the waiting one", got)
	}
	if n, err := r.sync.Sweep(t.Context()); err != nil || n != 0 {
		t.Fatalf("second Sweep = %d, %v; want nothing to do", n, err)
	}
}

func TestSubscriptionsFollowTheSettings(t *testing.T) {
	const group = "00000000-0000-4000-8000-0000000000aa"
	r := newRig(t, nil)
	ctx := t.Context()
	steps := []struct {
		name   string
		change func(*syncsettings.Settings)
		want   []string
	}{
		{"on", func(s *syncsettings.Settings) {}, []string{"/users"}},
		{"a group filter adds /groups", func(s *syncsettings.Settings) { s.GroupFilter = []string{group} }, []string{"/groups", "/users"}},
		{"no filter removes it", func(s *syncsettings.Settings) { s.GroupFilter = nil }, []string{"/users"}},
		{"off removes all", func(s *syncsettings.Settings) { s.RealTime = false }, nil},
		{"on again", func(s *syncsettings.Settings) { s.RealTime = true }, []string{"/users"}},
	}
	for _, step := range steps {
		s, etag, err := r.settings.Get(ctx, r.org)
		if err != nil {
			t.Fatal(err)
		}
		step.change(&s)
		if _, err := r.settings.Put(ctx, r.org, s, etag); err != nil {
			t.Fatal(err)
		}
		if _, err := r.sync.Reconcile(ctx, r.org); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := r.graph.Live(); !slices.Equal(got, step.want) {
			t.Fatalf("%s: Graph has %v; want %v", step.name, got, step.want)
		}
	}
	st := r.status(t)
	if !st.Enabled || !st.Healthy || len(st.Subscriptions) != 1 || st.Subscriptions[0].Expires.Sub(t0) < 28*24*time.Hour {
		t.Fatalf("status = %+v; want enabled and healthy with a ~29-day /users subscription", st)
	}

	// Renewed a day before expiry; recreated when Graph lost it (a resync round follows).
	r.clock.Set(st.Subscriptions[0].Expires.Add(-23 * time.Hour))
	if rep, err := r.sync.Reconcile(ctx, r.org); err != nil || rep.Renewed != 1 {
		t.Fatalf("Reconcile near expiry = %+v, %v; want one renewal", rep, err)
	}
	r.graph.Lose("")
	r.clock.Advance(28 * 24 * time.Hour)
	if rep, err := r.sync.Reconcile(ctx, r.org); err != nil || rep.Recreated != 1 {
		t.Fatalf("Reconcile after Graph lost it = %+v, %v; want it recreated", rep, err)
	}
	r.clock.Advance(debounce)
	r.drain(t)
	if got := r.runs.triggers(); !slices.Equal(got, []string{"resync"}) {
		t.Fatalf("rounds = %v; want a resync after the lost subscription", got)
	}

	// Disconnecting removes them.
	if err := r.conns.Disconnect(ctx, r.org, r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sync.Reconcile(ctx, r.org); err != nil {
		t.Fatal(err)
	}
	if got := r.graph.Live(); len(got) != 0 {
		t.Fatalf("after disconnect Graph still has %v", got)
	}
}

func TestAFailedSubscriptionIsRecordedOnTheStatus(t *testing.T) {
	r := newRig(t, nil)
	r.graph.Refuse("", &errkind.Error{Kind: errkind.Forbidden, Status: 403, Message: "User.Read.All is not granted"})
	if _, err := r.sync.Reconcile(t.Context(), r.org); err == nil {
		t.Fatal("Reconcile succeeded though Graph refused")
	}
	if st := r.status(t); st.Healthy || !strings.Contains(st.LastError, "creating") {
		t.Fatalf("status = %+v; want unhealthy naming the failure", st)
	}
	r.graph.Refuse("", nil)
	if _, err := r.sync.Reconcile(t.Context(), r.org); err != nil {
		t.Fatal(err)
	}
	if st := r.status(t); !st.Healthy || st.LastError != "" {
		t.Fatalf("status = %+v; want healthy again", st)
	}
}

// post sends a notification collection to the webhook.
func post(t *testing.T, h http.Handler, path string, value []map[string]any) int {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"value": value})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
	return w.Code
}

func (r *rig) hooks(q *queuetest.Queue) *webhook.Handler {
	return webhook.New(webhook.Config{Subscriptions: r.subs, States: r.states, Queue: q, Directory: r.sync, Now: r.clock.Now})
}

func (r *rig) usersSub(t *testing.T) subscriptions.Sub {
	t.Helper()
	if _, err := r.sync.Reconcile(t.Context(), r.org); err != nil {
		t.Fatal(err)
	}
	for sub, err := range r.subs.List(t.Context(), r.org) {
		if err != nil {
			t.Fatal(err)
		}
		if sub.Purpose == subscriptions.Users {
			return sub
		}
	}
	t.Fatal("no users subscription")
	return subscriptions.Sub{}
}

func userNotification(sub subscriptions.Sub, clientState, user string) map[string]any {
	return map[string]any{"subscriptionId": sub.ID, "clientState": clientState, "changeType": "updated", "tenantId": tenant,
		"resource": "Users/" + user, "resourceData": map[string]any{"@odata.type": "#Microsoft.Graph.User", "id": user}}
}

func TestAStormOfNotificationsMakesAHandfulOfRounds(t *testing.T) {
	r := newRig(t, nil)
	sub := r.usersSub(t)
	channel := &queuetest.Queue{}
	h := r.hooks(channel)
	cs := r.states.For(r.org, sub.Nonce)
	// 10 000 notifications over 60 seconds, 100 per POST as Graph batches them, with the rounds
	// the nudges start run as they come due.
	const total, perPost = 10_000, 100
	for i := 0; i < total; i += perPost {
		r.clock.Set(t0.Add(time.Duration(i) * 60 * time.Second / total))
		batch := make([]map[string]any, perPost)
		for j := range batch {
			batch[j] = userNotification(sub, cs, fmt.Sprintf("u-%d", i+j))
		}
		if code := post(t, h.Notifications(), "/api/graph/notifications?org=acme", batch); code != http.StatusAccepted {
			t.Fatalf("POST %d answered %d", i/perPost, code)
		}
		r.drain(t)
	}
	r.clock.Advance(2 * debounce)
	r.drain(t)
	rounds, nudges := len(r.runs.triggers()), len(r.nudges())
	if rounds < 1 || rounds > 6 || nudges > 8 {
		t.Fatalf("%d notifications made %d rounds from %d nudges; want a handful", total, rounds, nudges)
	}
	if n := len(channel.Published()); n != 0 {
		t.Fatalf("%d user notifications were queued one by one; want none", n)
	}
	if got := h.Accepted.Load(); got != total {
		t.Fatalf("webhook accepted %d; want %d", got, total)
	}
	if st := r.status(t); st.Pending {
		t.Fatalf("status = %+v; want every notification covered by a round", st)
	}
}

func TestAWrongClientStateChangesNothing(t *testing.T) {
	r := newRig(t, nil)
	sub := r.usersSub(t)
	h := r.hooks(&queuetest.Queue{})
	other, err := subscriptions.NewClientStates([]byte("another key, another key, another"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range []string{"", "forged", other.For(r.org, sub.Nonce), r.states.For(tablestoretest.Org(t, "other-org"), sub.Nonce)} {
		if code := post(t, h.Notifications(), "/api/graph/notifications?org=acme", []map[string]any{userNotification(sub, cs, "u-1")}); code != http.StatusAccepted {
			t.Fatalf("clientState %q answered %d; want 202 (dropped quietly)", cs, code)
		}
	}
	if st := r.status(t); st.Pending || st.LastNotification != nil || len(r.nudges()) != 0 || h.Dropped.Load() != 4 {
		t.Fatalf("status %+v, %d nudges, %d dropped; want nothing changed and 4 dropped", st, len(r.nudges()), h.Dropped.Load())
	}
}

func TestLifecycleEvents(t *testing.T) {
	cases := []struct {
		event       string
		wantRounds  []string
		wantReauths int
		wantNewSub  bool
	}{
		{"missed", []string{"resync"}, 0, false},
		{"subscriptionRemoved", []string{"resync"}, 0, true},
		{"reauthorizationRequired", nil, 1, false},
	}
	for _, c := range cases {
		t.Run(c.event, func(t *testing.T) {
			r := newRig(t, nil)
			sub := r.usersSub(t)
			if c.event == "subscriptionRemoved" {
				r.graph.Lose("") // Graph removed it before telling us
			}
			n, _ := json.Marshal(map[string]any{"subscriptionId": sub.ID, "lifecycleEvent": c.event, "tenantId": tenant,
				"clientState": r.states.For(r.org, sub.Nonce)})
			ev, _ := json.Marshal(webhook.Event{Org: "acme", Lifecycle: true, Purpose: subscriptions.Users, Notification: n})
			if got := webhook.EventPurpose(ev); got != subscriptions.Users {
				t.Fatalf("EventPurpose = %q", got)
			}
			if err := r.sync.HandleEvent(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
			r.clock.Advance(debounce)
			r.drain(t)
			if got := r.runs.triggers(); !slices.Equal(got, c.wantRounds) {
				t.Errorf("rounds = %v; want %v", got, c.wantRounds)
			}
			if r.graph.Reauthorizations() != c.wantReauths {
				t.Errorf("reauthorizations = %d; want %d", r.graph.Reauthorizations(), c.wantReauths)
			}
			if got := r.graph.Live(); !slices.Equal(got, []string{"/users"}) {
				t.Errorf("Graph has %v; want the /users subscription", got)
			}
			after := r.usersSub(t)
			if (after.ID != sub.ID) != c.wantNewSub {
				t.Errorf("subscription %s → %s; want new %v", sub.ID, after.ID, c.wantNewSub)
			}
			if !c.wantNewSub && after.LastLifecycle != c.event {
				t.Errorf("LastLifecycle = %q; want %q", after.LastLifecycle, c.event)
			}
		})
	}
}

// Changes at a steady rate while rounds take a while: every notification is covered by a round
// that started after it (none waits for the next scheduled sync).
func TestSteadyChangesAreAllCovered(t *testing.T) {
	for _, roundTakes := range []time.Duration{0, 3 * time.Second, 8 * time.Second, 20 * time.Second} {
		t.Run(roundTakes.String(), func(t *testing.T) {
			r := newRig(t, nil)
			var starts []time.Time
			busyUntil := time.Time{}
			r.runs.start = func(now time.Time) bool {
				if now.Before(busyUntil) {
					return false
				}
				starts = append(starts, now)
				busyUntil = now.Add(roundTakes)
				return true
			}
			var notified []time.Time
			step := 200 * time.Millisecond
			for at := time.Duration(0); at < 3*time.Minute; at += step {
				r.clock.Set(t0.Add(at))
				if at < 40*time.Second {
					if err := r.sync.Notified(t.Context(), r.org); err != nil {
						t.Fatal(err)
					}
					notified = append(notified, r.clock.Now())
				}
				r.drain(t)
			}
			last := notified[len(notified)-1]
			if len(starts) == 0 || !starts[len(starts)-1].After(last) {
				t.Fatalf("rounds started at %v; the last notification (%v) has no round after it", starts, last)
			}
			if st := r.status(t); st.Pending {
				t.Fatalf("status = %+v; want nothing pending", st)
			}
		})
	}
}
