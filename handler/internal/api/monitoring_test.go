package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/api"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/monitoring"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/subscriptionstest"
	"github.com/leapchange/m365/handler/internal/teamsmsg"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// GET and PUT /teams/monitoring over a real monitoring.Monitor and its stores (Azurite); only
// Microsoft is stood in for: the tenant's teams and channels by teams_test.go's teamsTenant,
// its change-notification subscriptions by graphSubs. org-t has Teams connected (through POST
// /teams/connect), org-u never connected Microsoft 365, org-r's connection needs
// re-authorization.

const (
	monitoringPath = teamsOrg + "/teams/monitoring"
	publicBaseURL  = "https://leap.example.net"
	preconditionT  = "urn:leapchange:problem:precondition-failed"
)

// graphSubs stands in for Microsoft Graph's change-notification subscriptions of the tenant,
// checking each creation as Graph does for channel messages (monitoringCheck), and for the
// channel messages a catch-up reads (none).
type graphSubs struct{ *subscriptionstest.Graph }

// monitoringCheck accepts what Graph accepts for org-t's channel-message subscriptions at now:
// resource and change type, our URLs, a clientState, a lifetime between an hour and 4 320
// minutes (a lifecycle URL is required past an hour), and the resource-data certificate.
func monitoringCheck(now func() time.Time) func(string, subscriptions.Request) error {
	invalid := subscriptionstest.Invalid
	return func(tenantID string, s subscriptions.Request) error {
		switch {
		case tenantID != teamsTenantID:
			return invalid("subscription in tenant " + tenantID)
		case !strings.HasPrefix(s.Resource, "/teams/") || !strings.HasSuffix(s.Resource, "/messages") || s.ChangeType != "created,updated,deleted":
			return invalid("resource " + s.Resource + " changeType " + s.ChangeType)
		case s.NotificationURL != publicBaseURL+"/api/graph/notifications?org=org-t" || s.LifecycleURL != publicBaseURL+"/api/graph/lifecycle?org=org-t":
			return invalid("notificationUrl " + s.NotificationURL + " lifecycleNotificationUrl " + s.LifecycleURL)
		case s.ClientState == "" || len(s.ClientState) > 128:
			return invalid("clientState")
		case !s.Expires.After(now().Add(time.Hour)) || s.Expires.After(now().Add(4320*time.Minute)):
			return invalid("expirationDateTime " + s.Expires.String())
		case !s.IncludeResourceData || s.Certificate != testCertificate{}.Base64DER() || s.CertificateID != testCertificate{}.ID():
			return invalid("encryptionCertificate")
		}
		return nil
	}
}

func (g *graphSubs) ChannelMessage(context.Context, string, string, string, string) (teamsmsg.Message, error) {
	return teamsmsg.Message{}, &errkind.Error{Kind: errkind.NotFound, Status: http.StatusNotFound}
}

func (g *graphSubs) ChannelReply(context.Context, string, string, string, string, string) (teamsmsg.Message, error) {
	return teamsmsg.Message{}, &errkind.Error{Kind: errkind.NotFound, Status: http.StatusNotFound}
}

func (g *graphSubs) ChannelMessagesSince(context.Context, string, string, string, time.Time) ([]teamsmsg.Message, error) {
	return nil, nil
}

// testCertificate is the notification certificate monitoring hands Graph.
type testCertificate struct{}

func (testCertificate) ID() string        { return "notify-2026" }
func (testCertificate) Base64DER() string { return "MIIBdGVzdA==" }

type monitoringFixture struct {
	*fixture // serves the API with the Monitor
	tenant   *teamsTenant
	graph    *graphSubs
	clock    *testenv.Clock
}

// setupMonitoring serves the API with a Monitor over the teams fixture's stores and tenant,
// with Teams connected for org-t.
func setupMonitoring(t *testing.T) *monitoringFixture {
	t.Helper()
	tf := setupTeams(t)
	if a := tf.do(t, "POST", teamsOrg+"/teams/connect", "", ""); a.status != http.StatusOK {
		t.Fatalf("POST /teams/connect = %d %s", a.status, a.raw)
	}
	clock := testenv.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	states, err := subscriptions.NewClientStates([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	g := &graphSubs{&subscriptionstest.Graph{Check: monitoringCheck(clock.Now)}}
	conns := connection.NewStore(tf.store)
	subs := subscriptions.NewReconciler(subscriptions.ReconcilerConfig{Store: subscriptions.NewStore(tf.store), States: states, Graph: g,
		Certificate: testCertificate{}, PublicBaseURL: publicBaseURL + "/", Now: clock.Now})
	mon := monitoring.New(monitoring.Config{Settings: monitoring.NewStore(tf.store), Subscriptions: subs,
		Teams: tf.teams, Connections: conns, Messages: g, Channels: tf.tenant, Now: clock.Now})
	f := &monitoringFixture{fixture: &fixture{store: tf.store, orgs: tf.orgs}, tenant: tf.tenant, graph: g, clock: clock}
	f.srv = httptest.NewServer(api.New(api.Deps{Orgs: tf.orgs, Connections: conns, TeamsRecords: tf.teams, Monitoring: mon, Now: clock.Now}))
	t.Cleanup(f.srv.Close)
	return f
}

// monitoringView is GET /teams/monitoring (and PUT's answer) as a client reads it.
type monitoringView struct {
	monitoring.Settings
	Subscriptions []monitoring.SubscriptionView `json:"subscriptions"`
	Status        monitoring.Status             `json:"status"`
	Reconciled    *monitoring.Report            `json:"reconciled"`
}

func decodeView(t *testing.T, a answer) monitoringView {
	t.Helper()
	var v monitoringView
	if err := json.Unmarshal([]byte(a.raw), &v); err != nil {
		t.Fatalf("%s: %v", a.raw, err)
	}
	return v
}

// view reads GET /teams/monitoring.
func (f *monitoringFixture) view(t *testing.T, path string) (monitoringView, answer) {
	t.Helper()
	a := f.do(t, "GET", path, "", "")
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s = %d %s", path, a.status, a.raw)
	}
	return decodeView(t, a), a
}

// put sends PUT /teams/monitoring, wanting 200.
func (f *monitoringFixture) put(t *testing.T, body string, header ...string) monitoringView {
	t.Helper()
	a := f.doH(t, "PUT", monitoringPath, body, header...)
	if a.status != http.StatusOK || a.header.Get("ETag") == "" {
		t.Fatalf("PUT = %d ETag %q %s", a.status, a.header.Get("ETag"), a.raw)
	}
	v := decodeView(t, a)
	if v.Reconciled == nil {
		t.Fatalf("PUT answered no reconciled report: %s", a.raw)
	}
	return v
}

func monitorChannel(team, ch string) string {
	return fmt.Sprintf(`{"teamId":%q,"channelId":%q}`, team, ch)
}

// monitoringBody is a settings body with the given channels (JSON objects) and the rest valid.
func monitoringBody(enabled bool, channels ...string) string {
	return fmt.Sprintf(`{"enabled":%t,"channels":[%s],"keywords":["migration","go live"],"watchers":[{"email":"ops@contoso.example","channel":"mail"}]}`,
		enabled, strings.Join(channels, ","))
}

func resource(team, ch string) string {
	return "/teams/" + url.PathEscape(team) + "/channels/" + url.PathEscape(ch) + "/messages"
}

func TestMonitoringNeverConfigured(t *testing.T) {
	f := setupMonitoring(t)
	for _, o := range []string{teamsOrg, teamsOffline} {
		v, a := f.view(t, o+"/teams/monitoring")
		if v.Enabled || v.Channels == nil || len(v.Channels) != 0 || v.Keywords == nil || len(v.Keywords) != 0 || v.Watchers == nil || len(v.Watchers) != 0 ||
			v.Subscriptions == nil || len(v.Subscriptions) != 0 || v.Status.Lifecycle == nil || len(v.Status.Lifecycle) != 0 || v.Status.LastError != "" {
			t.Errorf("GET %s of an org that never configured monitoring = %s", o, a.raw)
		}
		if a.header.Get("ETag") != "" || strings.Contains(a.raw, "updatedAt") || a.body["reconciled"] != nil {
			t.Errorf("GET %s: ETag %q, body %s: nothing saved, nothing to match", o, a.header.Get("ETag"), a.raw)
		}
	}
	if a := f.do(t, "GET", "/api/orgs/org-z/teams/monitoring", "", ""); a.status != http.StatusNotFound {
		t.Errorf("GET of an unknown org = %d %s", a.status, a.raw)
	}
}

func TestMonitoringRefused(t *testing.T) {
	f := setupMonitoring(t)
	general := monitorChannel(teamOps, chanGeneral)
	var many []string
	for i := range monitoring.MaxChannels + 1 {
		many = append(many, monitorChannel(teamOps, fmt.Sprintf("19:c%d@thread.tacv2", i)))
	}
	var kws []string
	for i := range 501 {
		kws = append(kws, fmt.Sprintf("%q", fmt.Sprint("k", i)))
	}
	tooManyKeywords := "[" + strings.Join(kws, ",") + "]"
	withKeywords := func(kw string) string {
		return `{"enabled":true,"channels":[` + general + `],"keywords":` + kw + `}`
	}
	withWatcher := func(w string) string {
		return `{"enabled":true,"channels":[` + general + `],"keywords":["migration"],"watchers":[` + w + `]}`
	}
	forbidden := &errkind.Error{Kind: errkind.Forbidden, Status: http.StatusForbidden, Code: "Forbidden", Message: "Missing role permissions"}
	unavailable := &errkind.Error{Kind: errkind.Unavailable, Status: http.StatusServiceUnavailable, Message: "Graph is down"}

	for _, tc := range []struct {
		name, org, body string
		tenant          func(*tenantState)
		status          int
		typ             string
		fields          []string
		missing         []string
	}{
		{name: "no body", body: "", status: 400, typ: invalidType, fields: []string{"body"}},
		{name: "not JSON", body: `{"enabled":`, status: 400, typ: invalidType, fields: []string{"body"}},
		{name: "unknown field", body: `{"enabled":false,"channel":[]}`, status: 400, typ: invalidType, fields: []string{"body"}},
		{name: "enabled without a channel", body: `{"enabled":true,"keywords":["migration"]}`, status: 400, typ: invalidType, fields: []string{"channels"}},
		{name: "enabled without a keyword", body: `{"enabled":true,"channels":[` + general + `]}`, status: 400, typ: invalidType, fields: []string{"keywords"}},
		{name: "too many channels", body: monitoringBody(true, many...), status: 400, typ: invalidType, fields: []string{"channels"}},
		{name: "blank teamId", body: monitoringBody(true, general, monitorChannel("  ", chanGeneral)), status: 400, typ: invalidType, fields: []string{"channels[1].teamId"}},
		{name: "blank channelId", body: monitoringBody(true, monitorChannel(teamOps, "")), status: 400, typ: invalidType, fields: []string{"channels[0].channelId"}},
		{name: "teamId too long", body: monitoringBody(true, monitorChannel(strings.Repeat("t", 201), chanGeneral)), status: 400, typ: invalidType, fields: []string{"channels[0].teamId"}},
		{name: "blank keyword", body: withKeywords(`["migration"," "]`), status: 400, typ: invalidType, fields: []string{"keywords[1]"}},
		{name: "keyword of punctuation only", body: withKeywords(`["?!"]`), status: 400, typ: invalidType, fields: []string{"keywords[0]"}},
		{name: "keyword too long", body: withKeywords(`["` + strings.Repeat("é", 101) + `"]`), status: 400, typ: invalidType, fields: []string{"keywords[0]"}},
		{name: "too many keywords", body: withKeywords(tooManyKeywords), status: 400, typ: invalidType, fields: []string{"keywords"}},
		{name: "watcher with stakeholderId and email", body: withWatcher(`{"stakeholderId":"s1","email":"a@contoso.example","channel":"mail"}`), status: 400, typ: invalidType, fields: []string{"watchers[0]"}},
		{name: "watcher with neither", body: withWatcher(`{"channel":"mail"}`), status: 400, typ: invalidType, fields: []string{"watchers[0]"}},
		{name: "bad email", body: withWatcher(`{"email":"Ops <ops@contoso.example>","channel":"mail"}`), status: 400, typ: invalidType, fields: []string{"watchers[0].email"}},
		{name: "email watcher by teams", body: withWatcher(`{"email":"ops@contoso.example","channel":"teams"}`), status: 400, typ: invalidType, fields: []string{"watchers[0].channel"}},
		{name: "bad watcher channel", body: withWatcher(`{"stakeholderId":"s1","channel":"sms"}`), status: 400, typ: invalidType, fields: []string{"watchers[0].channel"}},
		{name: "bad stakeholderId", body: withWatcher(`{"stakeholderId":"a/b","channel":"teams"}`), status: 400, typ: invalidType, fields: []string{"watchers[0].stakeholderId"}},
		{name: "every bad field at once", status: 400, typ: invalidType, fields: []string{"channels[0].teamId", "keywords[0]", "watchers[0].email", "watchers[1]"},
			body: `{"enabled":true,"channels":[` + monitorChannel("", chanGeneral) + `],"keywords":[" "],"watchers":[{"email":"nope","channel":"mail"},{"channel":"mail"}]}`},
		{name: "no such team", body: monitoringBody(true, general, monitorChannel("0a5e3c1d-0000-4000-8000-00000000ffff", chanGeneral)), status: 400, typ: invalidType, fields: []string{"channels[1].teamId"}},
		{name: "no such channel", body: monitoringBody(true, monitorChannel(teamHR, chanGeneral), general), status: 400, typ: invalidType, fields: []string{"channels[0].channelId"}},
		{name: "Teams not connected", org: teamsOffline, body: monitoringBody(true, general), status: 409, typ: notReadyType},
		{name: "Teams not connected, re-authorization needed", org: teamsReauth, body: monitoringBody(true, general), status: 409, typ: notReadyType},
		{name: "channels unreadable", body: monitoringBody(true, general), status: 409, typ: notReadyType, missing: []string{"Channel.ReadBasic.All"},
			tenant: func(s *tenantState) { s.fail["ChannelNames"] = forbidden }},
		{name: "token refused", body: monitoringBody(true, general), status: 409, typ: notConnectedType,
			tenant: func(s *tenantState) {
				s.fail["ChannelNames"] = &errkind.Error{Kind: errkind.Unauthorized, Status: http.StatusUnauthorized}
			}},
		{name: "Graph unavailable", body: monitoringBody(true, general), status: 502, typ: unavailableType,
			tenant: func(s *tenantState) { s.fail["ChannelNames"] = unavailable }},
		{name: "Graph throttling", body: monitoringBody(true, general), status: 502, typ: unavailableType,
			tenant: func(s *tenantState) {
				s.fail["ChannelNames"] = &errkind.Error{Kind: errkind.Throttled, Status: http.StatusTooManyRequests, RetryAfter: time.Second}
			}},
		{name: "stale If-Match", body: monitoringBody(true, general), status: 412, typ: preconditionT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.tenant.reset(tc.tenant)
			o := teamsOrg
			if tc.org != "" {
				o = tc.org
			}
			var header []string
			if tc.status == http.StatusPreconditionFailed {
				header = []string{"If-Match", staleETag}
			}
			a := f.doH(t, "PUT", o+"/teams/monitoring", tc.body, header...)
			for _, field := range cmpOr(tc.fields, []string{""}) {
				wantProblem(t, a, tc.status, tc.typ, field)
			}
			if n := len(arr(a.body["errors"])); n != len(tc.fields) {
				t.Errorf("%d field errors, want %d: %s", n, len(tc.fields), a.raw)
			}
			got := strs(a.body["missingPermissions"])
			if !slices.Equal(got, tc.missing) {
				t.Errorf("missingPermissions = %v, want %v", got, tc.missing)
			}
			if strings.Contains(a.raw, "Missing role") || strings.Contains(a.raw, "Graph is down") {
				t.Errorf("the problem leaks Microsoft's answer: %s", a.raw)
			}
			// Nothing was saved, nothing subscribed.
			if v, va := f.view(t, o+"/teams/monitoring"); v.Enabled || len(v.Channels) != 0 || va.header.Get("ETag") != "" {
				t.Errorf("a refused PUT saved %s", va.raw)
			}
			if live := f.graph.Live(); len(live) != 0 {
				t.Errorf("a refused PUT subscribed to %v", live)
			}
		})
	}
}

// cmpOr is a, or b when a is empty.
func cmpOr(a, b []string) []string {
	if len(a) == 0 {
		return b
	}
	return a
}

func TestMonitoringSave(t *testing.T) {
	f := setupMonitoring(t)
	general, alerts := resource(teamOps, chanGeneral), resource(teamOps, chanAlerts)

	// Switched on for two channels (one given twice, with spaces): named from Graph, subscribed.
	body := `{"enabled":true,"channels":[` + monitorChannel(" "+teamOps+" ", chanGeneral) + `,` + monitorChannel(teamOps, chanAlerts) + `,` +
		monitorChannel(teamOps, chanGeneral) + `],"keywords":["Migration","go live","café"],` +
		`"watchers":[{"email":" ops@contoso.example ","channel":"mail"},{"stakeholderId":"s-42","channel":"teams"}]}`
	v := f.put(t, body)
	if *v.Reconciled != (monitoring.Report{Created: 2}) {
		t.Errorf("reconciled = %+v, want 2 created", *v.Reconciled)
	}
	wantChannels := []monitoring.Channel{
		{TeamID: teamOps, ChannelID: chanGeneral, TeamName: "Operations", ChannelName: "General"},
		{TeamID: teamOps, ChannelID: chanAlerts, TeamName: "Operations", ChannelName: "Alerts"},
	}
	wantWatchers := []monitoring.Watcher{{Email: "ops@contoso.example", Channel: "mail"}, {StakeholderID: "s-42", Channel: "teams"}}
	if !v.Enabled || !slices.Equal(v.Channels, wantChannels) || !slices.Equal(v.Keywords, []string{"Migration", "go live", "café"}) ||
		!slices.Equal(v.Watchers, wantWatchers) || !v.UpdatedAt.Equal(f.clock.Now()) {
		t.Errorf("saved settings = %+v", v.Settings)
	}
	got, a := f.view(t, monitoringPath)
	etag := a.header.Get("ETag")
	if etag == "" || !slices.Equal(got.Channels, v.Channels) || got.Reconciled != nil {
		t.Errorf("GET after PUT = %s (ETag %q)", a.raw, etag)
	}
	wantSubs := func(v monitoringView, want map[string]bool) {
		t.Helper()
		var res []string
		for _, s := range v.Subscriptions {
			res = append(res, resource(s.TeamID, s.ChannelID))
			if !s.RichData || !s.Expires.After(f.clock.Now().Add(24*time.Hour)) || s.Expires.After(f.clock.Now().Add(4320*time.Minute)) {
				t.Errorf("subscription %+v: want rich data, expiring in about three days", s)
			}
			if s.Healthy != want[resource(s.TeamID, s.ChannelID)] {
				t.Errorf("subscription %+v: healthy %v, want %v", s, s.Healthy, want[resource(s.TeamID, s.ChannelID)])
			}
		}
		slices.Sort(res)
		var keys []string
		for k := range want {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(res, keys) || !slices.Equal(f.graph.Live(), keys) {
			t.Errorf("subscriptions %v, at Graph %v, want %v", res, f.graph.Live(), keys)
		}
	}
	wantSubs(got, map[string]bool{general: true, alerts: true})

	// Saved again unchanged, with the ETag read: nothing to do.
	v = f.put(t, body, "If-Match", etag)
	if *v.Reconciled != (monitoring.Report{}) {
		t.Errorf("reconciled = %+v, want nothing done", *v.Reconciled)
	}
	// The ETag from before that save is stale now.
	wantProblem(t, f.doH(t, "PUT", monitoringPath, body, "If-Match", etag), http.StatusPreconditionFailed, preconditionT, "")

	// One channel dropped: its subscription deleted.
	v = f.put(t, monitoringBody(true, monitorChannel(teamOps, chanAlerts)))
	if *v.Reconciled != (monitoring.Report{Deleted: 1}) {
		t.Errorf("reconciled = %+v, want 1 deleted", *v.Reconciled)
	}
	wantSubs(v, map[string]bool{alerts: true})

	// Turned off: the settings kept, every subscription deleted.
	v = f.put(t, monitoringBody(false, monitorChannel(teamOps, chanAlerts)))
	if *v.Reconciled != (monitoring.Report{Deleted: 1}) || v.Enabled || len(v.Channels) != 1 {
		t.Errorf("turned off: %+v", v)
	}
	wantSubs(v, nil)
	if got, _ = f.view(t, monitoringPath); len(got.Subscriptions) != 0 || got.Enabled {
		t.Errorf("GET after turning off = %+v", got)
	}
	// Off with no channels and no keywords is fine too.
	if v = f.put(t, `{"enabled":false}`); v.Channels == nil || len(v.Channels) != 0 || v.Keywords == nil || v.Watchers == nil {
		t.Errorf("off and empty: %+v", v.Settings)
	}
}

func TestMonitoringSubscriptionFailures(t *testing.T) {
	f := setupMonitoring(t)
	general, alerts := resource(teamOps, chanGeneral), resource(teamOps, chanAlerts)
	body := monitoringBody(true, monitorChannel(teamOps, chanGeneral), monitorChannel(teamOps, chanAlerts))

	// Graph refuses one subscription: the settings stand, the other is made, the status says why.
	f.graph.Refuse(alerts, &errkind.Error{Kind: errkind.Forbidden, Status: http.StatusForbidden, Code: "ExtensionError",
		Message: "Operation: Create; Exception: [Status Code: Forbidden; Reason: Caller does not have access to ChannelMessage.Read.All]"})
	v := f.put(t, body)
	if *v.Reconciled != (monitoring.Report{Created: 1, Failed: 1}) || !v.Enabled || len(v.Channels) != 2 {
		t.Errorf("reconciled %+v, settings %+v", *v.Reconciled, v.Settings)
	}
	if len(v.Subscriptions) != 1 || resource(v.Subscriptions[0].TeamID, v.Subscriptions[0].ChannelID) != general || !v.Subscriptions[0].Healthy {
		t.Errorf("subscriptions = %+v, want the General one", v.Subscriptions)
	}
	if !strings.Contains(v.Status.LastError, "creating") || !strings.Contains(v.Status.LastError, "ChannelMessage.Read.All") || !v.Status.LastErrorAt.Equal(f.clock.Now()) {
		t.Errorf("status = %+v, want the refusal", v.Status)
	}
	got, _ := f.view(t, monitoringPath)
	if got.Status.LastError != v.Status.LastError || len(got.Subscriptions) != 1 {
		t.Errorf("GET shows %+v", got)
	}

	// Granted: the next save makes the missing one.
	f.graph.Heal()
	v = f.put(t, body)
	if *v.Reconciled != (monitoring.Report{Created: 1}) || len(v.Subscriptions) != 2 || !slices.Equal(f.graph.Live(), []string{alerts, general}) {
		t.Errorf("after the grant: reconciled %+v, subscriptions %+v", *v.Reconciled, v.Subscriptions)
	}

	// Two days on, both are due for renewal; Graph fails it: each subscription shows why.
	f.clock.Advance(48 * time.Hour)
	f.graph.FailRenewals(&errkind.Error{Kind: errkind.Unavailable, Status: http.StatusServiceUnavailable, Message: "try later"})
	v = f.put(t, body)
	if *v.Reconciled != (monitoring.Report{Failed: 2}) || len(v.Subscriptions) != 2 {
		t.Fatalf("renewal refused: reconciled %+v, subscriptions %+v", *v.Reconciled, v.Subscriptions)
	}
	for _, s := range v.Subscriptions {
		if s.Healthy || !strings.Contains(s.LastError, "renewing") {
			t.Errorf("subscription %+v: want unhealthy, saying the renewal failed", s)
		}
	}
	// Graph answers again: renewed, healthy.
	f.graph.Heal()
	v = f.put(t, body)
	if *v.Reconciled != (monitoring.Report{Renewed: 2}) {
		t.Errorf("reconciled = %+v, want 2 renewed", *v.Reconciled)
	}
	for _, s := range v.Subscriptions {
		if !s.Healthy || s.LastError != "" || !s.Expires.Equal(f.clock.Now().Add(4230*time.Minute)) {
			t.Errorf("renewed subscription %+v", s)
		}
	}

	// Graph lost one: it is made again.
	f.graph.Lose(general)
	f.clock.Advance(48 * time.Hour)
	v = f.put(t, body)
	if *v.Reconciled != (monitoring.Report{Renewed: 1, Recreated: 1}) || !slices.Equal(f.graph.Live(), []string{alerts, general}) {
		t.Errorf("reconciled = %+v, at Graph %v", *v.Reconciled, f.graph.Live())
	}
}
