package graph_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/m365sim"
)

// webhook is a tiny notification endpoint: it echoes Graph's validation token (or, with
// garble, something else) and acknowledges notifications with 202.
func webhook(t *testing.T, garble bool) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var validations atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("validationToken"); tok != "" {
			validations.Add(1)
			w.Header().Set("Content-Type", "text/plain")
			if garble {
				tok = strings.ToUpper(tok)
			}
			io.WriteString(w, tok)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv, &validations
}

// monitoredChannel is the first team's Budget channel.
func monitoredChannel(t *testing.T, sim *m365sim.Server) (team, channel string) {
	t.Helper()
	tm := sim.TeamsOf(tenantID)[0]
	chans, err := sim.ChannelsOf(tenantID, tm.ID)
	if err != nil {
		t.Fatal(err)
	}
	return tm.ID, chans[1].ID
}

func TestSubscriptionsThroughTheSDK(t *testing.T) {
	sim, _ := teamsTenant(t, "Team.ReadBasic.All", "ChannelMessage.Read.All")
	c := newClient(t, sim, secret)
	team, channel := monitoredChannel(t, sim)
	hook, validations := webhook(t, false)
	now := sim.Now()
	sub := graph.Subscription{
		Resource: graph.ChannelMessagesResource(team, channel), ChangeType: "created,updated,deleted",
		NotificationURL: hook.URL + "/notify?org=acme", LifecycleNotificationURL: hook.URL + "/lifecycle?org=acme",
		ClientState: "c1.acme.secret", ExpirationDateTime: now.Add(graph.MaxChannelMessageLifetime - time.Minute),
	}

	// Beyond the cap, and beyond an hour without a lifecycle URL: refused.
	tooLong := sub
	tooLong.ExpirationDateTime = now.Add(graph.MaxChannelMessageLifetime + time.Minute)
	if _, err := c.CreateSubscription(t.Context(), tenantID, tooLong); errkind.Of(err) != errkind.Invalid {
		t.Errorf("past the cap: err = %v, want invalid", err)
	}
	noLifecycle := sub
	noLifecycle.LifecycleNotificationURL = ""
	noLifecycle.ExpirationDateTime = now.Add(2 * time.Hour)
	if _, err := c.CreateSubscription(t.Context(), tenantID, noLifecycle); errkind.Of(err) != errkind.Invalid || !strings.Contains(err.Error(), "lifecycleNotificationUrl") {
		t.Errorf("no lifecycle URL: err = %v, want invalid naming lifecycleNotificationUrl", err)
	}

	got, err := c.CreateSubscription(t.Context(), tenantID, sub)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == "" || !near(got.ExpirationDateTime, sub.ExpirationDateTime) {
		t.Errorf("created %+v", got)
	}
	if n := validations.Load(); n != 2 {
		t.Errorf("%d validation requests, want 2 (notification and lifecycle URLs)", n)
	}
	stored := sim.Subscriptions(tenantID)
	if len(stored) != 1 || stored[0].ClientState != sub.ClientState || stored[0].NotificationURL != sub.NotificationURL {
		t.Fatalf("sim holds %+v", stored)
	}
	if _, err := c.CreateSubscription(t.Context(), tenantID, sub); errkind.Of(err) != errkind.Conflict {
		t.Errorf("second subscription to the channel: err = %v, want conflict", err)
	}
	list, err := c.Subscriptions(t.Context(), tenantID)
	if err != nil || len(list) != 1 || list[0].ID != got.ID || list[0].Resource != sub.Resource || list[0].LifecycleNotificationURL != sub.LifecycleNotificationURL {
		t.Errorf("Subscriptions = %+v, %v", list, err)
	}

	exp, err := c.RenewSubscription(t.Context(), tenantID, got.ID, now.Add(48*time.Hour))
	if err != nil || !near(exp, now.Add(48*time.Hour)) {
		t.Errorf("renew: %v, %v", exp, err)
	}
	if err := sim.FireLifecycle(got.ID, "reauthorizationRequired"); err != nil {
		t.Fatal(err)
	}
	if err := c.ReauthorizeSubscription(t.Context(), tenantID, got.ID); err != nil {
		t.Errorf("reauthorize: %v", err)
	}
	if sim.Subscriptions(tenantID)[0].ReauthorizationRequired {
		t.Error("still waiting for reauthorization")
	}
	if err := c.DeleteSubscription(t.Context(), tenantID, got.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSubscription(t.Context(), tenantID, got.ID); err != nil {
		t.Errorf("deleting a gone subscription: %v", err)
	}
	if _, err := c.RenewSubscription(t.Context(), tenantID, got.ID, now.Add(time.Hour)); errkind.Of(err) != errkind.NotFound {
		t.Errorf("renewing a gone subscription: err = %v, want not found", err)
	}
	if err := c.ReauthorizeSubscription(t.Context(), tenantID, got.ID); errkind.Of(err) != errkind.NotFound {
		t.Errorf("reauthorizing a gone subscription: err = %v, want not found", err)
	}
	if err := sim.WaitDeliveries(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// near reports whether two expirations agree to the second (Graph's answers may drop the
// fraction).
func near(a, b time.Time) bool { return a.Sub(b).Abs() < time.Second }

func TestSubscriptionHandshakeAndPermissions(t *testing.T) {
	sim, _ := teamsTenant(t, "Team.ReadBasic.All")
	c := newClient(t, sim, secret)
	team, channel := monitoredChannel(t, sim)
	good, _ := webhook(t, false)
	bad, _ := webhook(t, true)
	sub := graph.Subscription{Resource: graph.ChannelMessagesResource(team, channel), ChangeType: "created",
		NotificationURL: good.URL, ClientState: "x", ExpirationDateTime: sim.Now().Add(30 * time.Minute)}

	if _, err := c.CreateSubscription(t.Context(), tenantID, sub); errkind.Of(err) != errkind.Forbidden {
		t.Errorf("without ChannelMessage.Read.All or RSC: err = %v, want forbidden", err)
	}
	if _, err := c.ChannelMessagesSince(t.Context(), tenantID, team, channel, time.Time{}); errkind.Of(err) != errkind.Forbidden {
		t.Errorf("reading messages without permission: err = %v, want forbidden", err)
	}
	// The app installed in the team with resource-specific consent.
	if err := sim.GrantRSC(tenantID, team, clientID); err != nil {
		t.Fatal(err)
	}
	badSub := sub
	badSub.NotificationURL = bad.URL
	if _, err := c.CreateSubscription(t.Context(), tenantID, badSub); errkind.Of(err) != errkind.Invalid || !strings.Contains(err.Error(), "validation") {
		t.Errorf("an endpoint that does not echo the token: err = %v, want invalid", err)
	}
	if _, err := c.CreateSubscription(t.Context(), tenantID, sub); err != nil {
		t.Errorf("with RSC: %v", err)
	}
}
