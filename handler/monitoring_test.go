package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/insights"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/monitoring"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/richnotify"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/teamsconn"
	"github.com/leapchange/m365/handler/internal/testenv"
	"github.com/leapchange/m365/handler/internal/webhook"
)

// alerts records the watcher alerts the monitor asks for, by idempotency key (the pipeline
// sends a key once: the test checks the monitor never needs a second key for one message).
type alerts struct {
	mu   sync.Mutex
	keys map[string]int
}

func (a *alerts) Accept(_ context.Context, _ tablestore.Org, r outbound.Request) (outbound.Receipt, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.keys[r.IdempotencyKey]++
	return outbound.Receipt{}, nil
}

func (a *alerts) distinct() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.keys)
}

type monitorRig struct {
	env      *testenv.Env
	clock    *testenv.Clock
	org      tablestore.Org
	mon      *monitoring.Monitor
	hooks    *webhook.Handler
	insights *insights.Store
	subs     *subscriptions.Store
	alerts   *alerts
	team     m365sim.Team
	channel  m365sim.Channel
}

// newMonitorRig wires channel monitoring as the handler does — the real Graph client, the
// webhook on a loopback server, the keyring and validation tokens — against the simulated
// tenant and Azurite; only the watcher alerts are recorded instead of sent.
func newMonitorRig(t *testing.T) *monitorRig {
	t.Helper()
	c := testenv.NewClock(time.Now().UTC().Truncate(time.Second))
	env := testenv.New(t, testenv.Options{Sim: m365sim.Options{Clock: c.Now, TokenLifetime: 1000 * time.Hour},
		Permissions: []string{"User.Read.All", "ChannelMessage.Read.All", "Channel.ReadBasic.All", "Team.ReadBasic.All"}})
	env.Queue.Now = c.Now
	sim := env.Sim
	team, err := sim.AddTeam(testenv.Tenant, m365sim.Team{DisplayName: "Finance"}, m365sim.Channel{DisplayName: "Rollout"})
	if err != nil {
		t.Fatal(err)
	}
	chans, _ := sim.ChannelsOf(testenv.Tenant, team.ID)
	r := &monitorRig{env: env, clock: c, org: tablestoretest.Org(t, "acme"), team: team, channel: chans[len(chans)-1],
		insights: insights.NewStore(env.Store), subs: subscriptions.NewStore(env.Store), alerts: &alerts{keys: map[string]int{}}}
	conns, teams := connection.NewStore(env.Store), teamsconn.NewStore(env.Store)
	if _, err := conns.Put(t.Context(), r.org, connection.Record{Status: connection.Connected, TenantID: testenv.Tenant}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := teams.Put(t.Context(), r.org, teamsconn.Record{Status: teamsconn.Connected, TenantID: testenv.Tenant}, ""); err != nil {
		t.Fatal(err)
	}
	creds := m365auth.New(m365auth.Config{ClientID: testenv.ClientID, ClientSecret: testenv.Secret, AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()})
	gc, err := graph.New(graph.Config{BaseURL: sim.GraphURL(), Credentials: creds, HTTPClient: sim.HTTPClient(),
		Retry: graph.RetryPolicy{Sleep: func(context.Context, time.Duration) error { return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := richnotify.Generate("leap-test-1", c.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := richnotify.NewKeyring(cert)
	if err != nil {
		t.Fatal(err)
	}
	states, err := subscriptions.NewClientStates([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	r.hooks = webhook.New(webhook.Config{Subscriptions: r.subs, States: states, Queue: env.Queue, Now: c.Now,
		Tokens: richnotify.NewTokenValidator(richnotify.TokenConfig{KeysURL: sim.URL() + "/common/discovery/v2.0/keys", AppID: testenv.ClientID,
			HTTPClient: sim.HTTPClient(), Now: c.Now})})
	mux := http.NewServeMux()
	mux.Handle("POST /api/graph/notifications", r.hooks.Notifications())
	mux.Handle("POST /api/graph/lifecycle", r.hooks.Lifecycle())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	reconciler := subscriptions.NewReconciler(subscriptions.ReconcilerConfig{Store: r.subs, States: states, Graph: graphSubscriptions{gc},
		Certificate: notifyCertificate{cert}, PublicBaseURL: srv.URL, Forget: r.hooks.Forget, Now: c.Now})
	r.mon = monitoring.New(monitoring.Config{
		Settings: monitoring.NewStore(env.Store), Subscriptions: reconciler, Teams: teams, Connections: conns,
		Messages: gc, Channels: teamsGraph{gc}, Decrypter: keyringDecrypter{keyring}, Insights: r.insights, Alerts: r.alerts, Now: c.Now,
	})
	return r
}

// settle waits for the simulated tenant's deliveries and runs every channel event.
func (r *monitorRig) settle(t *testing.T) {
	t.Helper()
	for range 5 {
		if err := r.env.Sim.WaitDeliveries(t.Context()); err != nil {
			t.Fatal(err)
		}
		ran := 0
		for {
			d, ok := r.env.Queue.Next(r.clock.Now().Add(time.Hour))
			if !ok {
				break
			}
			if d.Queue != queue.ChannelEvents {
				t.Fatalf("a message for %s", d.Queue)
			}
			if err := r.mon.HandleEvent(t.Context(), d.Body); err != nil {
				t.Fatal(err)
			}
			ran++
		}
		if ran == 0 {
			return
		}
	}
}

func (r *monitorRig) post(t *testing.T, html string) string {
	t.Helper()
	id, err := r.env.Sim.PostChannelMessage(testenv.Tenant, r.team.ID, r.channel.ID, m365sim.ChannelMessageInput{AuthorName: "Ada Lovelace", Content: html})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (r *monitorRig) list(t *testing.T) []insights.Insight {
	t.Helper()
	got, _, err := r.insights.List(t.Context(), r.org, insights.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (r *monitorRig) enable(t *testing.T, on bool) monitoring.Report {
	t.Helper()
	_, rep, err := r.mon.Save(t.Context(), r.org, monitoring.Settings{Enabled: on,
		Channels: []monitoring.Channel{{TeamID: r.team.ID, ChannelID: r.channel.ID}}, Keywords: []string{"expense tool", "go-live"},
		Watchers: []monitoring.Watcher{{Email: "watch@contoso.example", Channel: "mail"}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestChannelMonitoringEndToEnd: the subscription's life, and notifications to insights, once.
func TestChannelMonitoringEndToEnd(t *testing.T) {
	r := newMonitorRig(t)
	sim := r.env.Sim
	if rep := r.enable(t, true); rep.Created != 1 {
		t.Fatalf("reconcile %+v, want one subscription created", rep)
	}
	subs := sim.Subscriptions(testenv.Tenant)
	if len(subs) != 1 || !subs[0].IncludeResourceData || subs[0].LifecycleNotificationURL == "" {
		t.Fatalf("subscriptions at Graph: %+v", subs)
	}

	// A match, delivered three times by Graph: one insight, one alert.
	sim.SetNotificationDuplicates(2)
	r.post(t, "<p>The <b>Expense-Tool</b> goes live; <at id=\"0\">Ada</at> has the go-live plan.</p>")
	r.post(t, "<p>Lunch?</p>")
	r.settle(t)
	sim.SetNotificationDuplicates(0)
	got := r.list(t)
	if len(got) != 1 || len(got[0].Keywords) != 2 {
		t.Fatalf("insights %+v, want one matching both keywords", got)
	}
	if r.alerts.distinct() != 1 {
		t.Errorf("%d alert keys for one message, want 1", r.alerts.distinct())
	}

	// Graph removes the subscription; a message posted meanwhile is caught up once it is back.
	if err := sim.FireLifecycle(subs[0].ID, "subscriptionRemoved"); err != nil {
		t.Fatal(err)
	}
	missedID := r.post(t, "<p>Reminder: expense tool training tomorrow.</p>")
	r.settle(t)
	now := sim.Subscriptions(testenv.Tenant)
	if len(now) != 1 || now[0].ID == subs[0].ID {
		t.Fatalf("after subscriptionRemoved: %+v, want a new one", now)
	}
	if _, found, err := r.insights.Get(t.Context(), r.org, r.team.ID, r.channel.ID, missedID); err != nil || !found {
		t.Errorf("the message posted while the subscription was gone: found %v, %v", found, err)
	}

	// Renewal: a day before expiry the renewer pushes the expiration out.
	before := now[0].ExpirationDateTime
	r.clock.Advance(50 * time.Hour)
	rep, err := subscriptions.RenewAll(t.Context(), r.subs, nil, r.mon)
	if err != nil || rep.Renewed != 1 {
		t.Fatalf("RenewAll = %+v, %v; want one renewal", rep, err)
	}
	if after := sim.Subscriptions(testenv.Tenant)[0].ExpirationDateTime; !after.After(before) {
		t.Errorf("expiration %v → %v", before, after)
	}

	// reauthorizationRequired is answered by reauthorizing, and recorded.
	if err := sim.FireLifecycle(now[0].ID, "reauthorizationRequired"); err != nil {
		t.Fatal(err)
	}
	r.settle(t)
	view, _, err := r.mon.View(t.Context(), r.org)
	if err != nil || len(view.Subscriptions) != 1 || view.Subscriptions[0].LastLifecycle != "reauthorizationRequired" || len(view.Status.Lifecycle) < 2 {
		t.Fatalf("view %+v %v", view, err)
	}

	// A forged notification (right subscription, wrong clientState) changes nothing.
	body, _ := json.Marshal(map[string]any{"value": []map[string]any{{"subscriptionId": now[0].ID, "clientState": "forged", "tenantId": testenv.Tenant,
		"changeType": "created", "resource": "teams('x')/channels('y')/messages('z')"}}})
	before2 := r.hooks.Dropped.Load()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/graph/notifications?org="+r.org.String(), bytesReader(body))
	r.hooks.Notifications().ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted || r.hooks.Dropped.Load() != before2+1 || len(r.env.Queue.Pending()) != 0 {
		t.Errorf("forged notification: %d, dropped %d → %d, pending %d", rec.Code, before2, r.hooks.Dropped.Load(), len(r.env.Queue.Pending()))
	}

	// Off: the subscription is deleted at Graph.
	if rep := r.enable(t, false); rep.Deleted != 1 || len(sim.Subscriptions(testenv.Tenant)) != 0 {
		t.Errorf("turning off: %+v, %d subscriptions left", rep, len(sim.Subscriptions(testenv.Tenant)))
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
