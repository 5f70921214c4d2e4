package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/richnotify"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
	"github.com/leapchange/m365/handler/internal/webhook"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

const (
	tenantA = "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b"
	tenantB = "7d0c1e2f-3a4b-4c5d-8e9f-0a1b2c3d4e5f"
	appID   = "8e460676-ae3f-4b1e-8790-ee0fb5d6148f"

	subPlain  = "d3a1c5e7-9b2f-4d6a-8c0e-2f4a6c8e0b1d" // acme, tenant A, no resource data
	subRich   = "a1b2c3d4-0000-4000-8000-00000000e1c4" // acme, tenant A, resource data
	subGlobex = "b1b2c3d4-0000-4000-8000-0000000a10b3" // globex, tenant B
	subShared = "c1c2c3d4-0000-4000-8000-000000005a3d" // the same id in both orgs, each with its own nonce

	channelResource = "teams('9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d')/channels('19:0d4c2e8f6a1b4c3d9e7f5a2b8c6d4e1f@thread.tacv2')/messages('%s')"
)

// queueStandIn is the in-memory queue with Service Bus semantics, counting PublishBatch calls
// and failing them on demand (as Service Bus does when it is unreachable: nothing accepted).
type queueStandIn struct {
	*queuetest.Queue
	batches atomic.Int64
	fail    atomic.Bool
}

func (q *queueStandIn) PublishBatch(ctx context.Context, msgs []queue.Message) error {
	q.batches.Add(1)
	if q.fail.Load() {
		return errors.New("service bus: connection refused")
	}
	return q.Queue.PublishBatch(ctx, msgs)
}

// rig is the webhook over subscriptions in Azurite, an in-memory queue, and a validator of the
// simulated tenant's validationTokens; every log record is kept.
type rig struct {
	h      *webhook.Handler
	cfg    webhook.Config
	store  *subscriptions.Store
	q      *queueStandIn
	sim    *m365sim.Server
	states subscriptions.ClientStates
	logs   *testenv.Buffer
	// clientStates of the subscriptions, by org and id.
	secret map[string]string
}

var (
	acme   = mustOrg("acme")
	globex = mustOrg("globex")
)

func mustOrg(id string) tablestore.Org {
	o, err := tablestore.NewOrg(id)
	if err != nil {
		panic(err)
	}
	return o
}

func newRig(t testing.TB) *rig {
	t.Helper()
	store := subscriptions.NewStore(tablestoretest.Open(t))
	states, err := subscriptions.NewClientStates([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{store: store, q: &queueStandIn{Queue: &queuetest.Queue{}}, states: states, logs: &testenv.Buffer{}, secret: map[string]string{}}
	now := time.Now().UTC()
	for _, s := range []struct {
		org  tablestore.Org
		sub  subscriptions.Sub
		rich bool
	}{
		{acme, subscriptions.Sub{ID: subPlain, Tenant: tenantA}, false},
		{acme, subscriptions.Sub{ID: subRich, Tenant: tenantA}, true},
		{acme, subscriptions.Sub{ID: subShared, Tenant: tenantA}, false},
		{globex, subscriptions.Sub{ID: subGlobex, Tenant: tenantB}, false},
		{globex, subscriptions.Sub{ID: subShared, Tenant: tenantB}, false},
	} {
		sub := s.sub
		sub.Purpose, sub.ChangeType, sub.Nonce = subscriptions.ChannelMessages, "created,updated,deleted", subscriptions.NewNonce()
		sub.Resource, sub.Expires, sub.CreatedAt = "/teams/t/channels/c/messages", now.Add(72*time.Hour), now
		sub.RichData = s.rich
		if err := store.Put(t.Context(), s.org, sub); err != nil {
			t.Fatal(err)
		}
		r.secret[s.org.String()+"/"+sub.ID] = states.For(s.org, sub.Nonce)
	}

	r.sim = testenv.StartSim(t, m365sim.Options{})
	r.sim.AddTenant(tenantA, "contoso.example")
	r.sim.AddTenant(tenantB, "fabrikam.example")
	tokens := richnotify.NewTokenValidator(richnotify.TokenConfig{
		KeysURL: r.sim.URL() + "/common/discovery/v2.0/keys", AppID: appID, HTTPClient: r.sim.HTTPClient(),
	})
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.cfg = webhook.Config{Subscriptions: store, States: states, Tokens: tokens, Queue: r.q, Logger: log}
	r.h = webhook.New(r.cfg)
	return r
}

// state is the clientState of org's subscription id.
func (r *rig) state(org tablestore.Org, id string) string { return r.secret[org.String()+"/"+id] }

// token mints a validationTokens JWT with the simulated tenant's identity keys.
func (r *rig) token(t testing.TB, tenant string, o m365sim.ValidationTokenOptions) string {
	t.Helper()
	tok, err := r.sim.ValidationTokenWith(tenant, appID, o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// post sends body to the endpoint ("notifications" or "lifecycle") with the raw query.
func (r *rig) post(endpoint, rawQuery string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/graph/"+endpoint, bytes.NewReader(body))
	req.URL.RawQuery = rawQuery
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h := r.h.Notifications()
	if endpoint == "lifecycle" {
		h = r.h.Lifecycle()
	}
	h.ServeHTTP(rec, req)
	return rec
}

// n is a notification as Graph sends it.
type n struct {
	SubscriptionID   string          `json:"subscriptionId,omitempty"`
	ChangeType       string          `json:"changeType,omitempty"`
	LifecycleEvent   string          `json:"lifecycleEvent,omitempty"`
	ClientState      string          `json:"clientState,omitempty"`
	TenantID         string          `json:"tenantId,omitempty"`
	Resource         string          `json:"resource,omitempty"`
	Expiration       string          `json:"subscriptionExpirationDateTime,omitempty"`
	ResourceData     map[string]any  `json:"resourceData,omitempty"`
	EncryptedContent json.RawMessage `json:"encryptedContent,omitempty"`
}

func plain(sub, state, tenant, msgID string) n {
	res := fmt.Sprintf(channelResource, msgID)
	return n{SubscriptionID: sub, ChangeType: "created", ClientState: state, TenantID: tenant, Resource: res,
		Expiration:   "2026-12-05T08:00:00+00:00",
		ResourceData: map[string]any{"id": msgID, "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": res}}
}

func rich(sub, state, tenant, msgID string) n {
	x := plain(sub, state, tenant, msgID)
	delete(x.ResourceData, "@odata.id")
	x.EncryptedContent = json.RawMessage(`{"data":"ZGF0YQ==","dataSignature":"c2ln","dataKey":"a2V5","encryptionCertificateId":"leap-notify-1","encryptionCertificateThumbprint":"8F3A61C0D2B94E7715A0C3D6E9F1B2A4C5D6E7F8"}`)
	return x
}

func lifecycle(sub, state, tenant, event string) n {
	return n{SubscriptionID: sub, LifecycleEvent: event, ClientState: state, TenantID: tenant, Expiration: "2026-12-05T08:00:00+00:00"}
}

func body(t testing.TB, tokens []string, ns ...n) []byte {
	t.Helper()
	env := map[string]any{"value": ns}
	if tokens != nil {
		env["validationTokens"] = tokens
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// delta is what one request changed.
type delta struct {
	published []queue.Message
	accepted  int64
	dropped   int64
	batches   int64
}

func (r *rig) do(endpoint, rawQuery string, b []byte) (*httptest.ResponseRecorder, delta) {
	p0, a0, d0, b0 := len(r.q.Published()), r.h.Accepted.Load(), r.h.Dropped.Load(), r.q.batches.Load()
	rec := r.post(endpoint, rawQuery, b)
	return rec, delta{published: r.q.Published()[p0:], accepted: r.h.Accepted.Load() - a0, dropped: r.h.Dropped.Load() - d0, batches: r.q.batches.Load() - b0}
}

// events decodes the channel-events messages, checking their envelope.
func events(t *testing.T, msgs []queue.Message) []webhook.Event {
	t.Helper()
	var out []webhook.Event
	for _, m := range msgs {
		if m.Queue != queue.ChannelEvents || m.ID == "" || m.ContentType != "application/json" {
			t.Errorf("message queue %q id %q content type %q: want channel-events, an id, JSON", m.Queue, m.ID, m.ContentType)
		}
		var ev webhook.Event
		if err := json.Unmarshal(m.Body, &ev); err != nil {
			t.Fatalf("message body %s: %v", m.Body, err)
		}
		out = append(out, ev)
	}
	return out
}

func TestHandshake(t *testing.T) {
	r := newRig(t)
	token := "Validation: Testing client application reachability for subscription Request-Id: 1a2b+3c/é&x=y"
	for _, tc := range []struct {
		name, endpoint, query string
		status                int
		want                  string
	}{
		{"notifications", "notifications", url.Values{"validationToken": {token}, "org": {"acme"}}.Encode(), 200, token},
		{"lifecycle", "lifecycle", url.Values{"validationToken": {token}, "org": {"acme"}}.Encode(), 200, token},
		{"no org needed", "notifications", url.Values{"validationToken": {token}}.Encode(), 200, token},
		{"plus decoded as a space", "notifications", "validationToken=a%2Bb+c&org=acme", 200, "a+b c"},
		{"markup echoed as text, not HTML", "notifications", url.Values{"validationToken": {"<script>alert(1)</script>"}}.Encode(), 200, "<script>alert(1)</script>"},
		{"longest token", "notifications", url.Values{"validationToken": {strings.Repeat("t", 4096)}}.Encode(), 200, strings.Repeat("t", 4096)},
		{"too long", "notifications", url.Values{"validationToken": {strings.Repeat("t", 4097)}}.Encode(), 400, ""},
		{"too long on the lifecycle URL", "lifecycle", url.Values{"validationToken": {strings.Repeat("t", 5000)}}.Encode(), 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Graph's handshake POST is text/plain with an empty body.
			rec, d := r.do(tc.endpoint, tc.query, nil)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if len(d.published) != 0 || d.batches != 0 {
				t.Errorf("the handshake enqueued %d messages in %d batches", len(d.published), d.batches)
			}
			if tc.status != 200 {
				return
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want text/plain", ct)
			}
			if got := rec.Body.String(); got != tc.want {
				t.Errorf("body %q, want the decoded token %q", got, tc.want)
			}
		})
	}
}

func TestNotifications(t *testing.T) {
	r := newRig(t)
	good := r.token(t, tenantA, m365sim.ValidationTokenOptions{})
	tok := func(o m365sim.ValidationTokenOptions) string { return r.token(t, tenantA, o) }
	sA, sRich := r.state(acme, subPlain), r.state(acme, subRich)

	for _, tc := range []struct {
		name     string
		endpoint string // default notifications
		query    string // default org=acme
		tokens   []string
		ns       []n
		status   int   // default 202
		enqueued []int // indexes of ns that reach channel-events
		dropped  int64
	}{
		{name: "valid plain notification", ns: []n{plain(subPlain, sA, tenantA, "1001")}, enqueued: []int{0}},
		{name: "tenant id in another case", ns: []n{plain(subPlain, sA, strings.ToUpper(tenantA), "1002")}, enqueued: []int{0}},
		{name: "org among other query parameters", query: "x=1&org=acme&y=2", ns: []n{plain(subPlain, sA, tenantA, "1003")}, enqueued: []int{0}},
		{name: "wrong clientState", ns: []n{plain(subPlain, "c1.acme.Zm9vYmFyYmF6cXV4", tenantA, "1010")}, dropped: 1},
		{name: "clientState of another subscription", ns: []n{plain(subPlain, sRich, tenantA, "1011")}, dropped: 1},
		{name: "clientState with a character more", ns: []n{plain(subPlain, sA+"x", tenantA, "1012")}, dropped: 1},
		{name: "missing clientState", ns: []n{plain(subPlain, "", tenantA, "1013")}, dropped: 1},
		{name: "unknown subscription", ns: []n{plain("00000000-0000-4000-8000-000000000000", sA, tenantA, "1014")}, dropped: 1},
		{name: "no subscription id", ns: []n{plain("", sA, tenantA, "1015")}, dropped: 1},
		{name: "subscription id too long", ns: []n{plain(strings.Repeat("s", 300), sA, tenantA, "1016")}, dropped: 1},
		{name: "other org's subscription: globex's id and secret on acme's URL",
			ns: []n{plain(subGlobex, r.state(globex, subGlobex), tenantB, "1020")}, dropped: 1},
		{name: "other org's subscription: acme's id and secret on globex's URL", query: "org=globex",
			ns: []n{plain(subPlain, sA, tenantA, "1021")}, dropped: 1},
		{name: "same id in both orgs: acme's secret on globex's URL", query: "org=globex",
			ns: []n{plain(subShared, r.state(acme, subShared), tenantB, "1022")}, dropped: 1},
		{name: "same id in both orgs: each org's own secret", query: "org=globex",
			ns: []n{plain(subShared, r.state(globex, subShared), tenantB, "1023")}, enqueued: []int{0}},
		{name: "tenant mismatch", ns: []n{plain(subPlain, sA, tenantB, "1030")}, dropped: 1},
		{name: "no tenant", ns: []n{plain(subPlain, sA, "", "1031")}, dropped: 1},
		{name: "good and bad in one POST", ns: []n{
			plain(subPlain, sA, tenantA, "1040"), plain(subPlain, "nope", tenantA, "1041"), plain(subPlain, sA, tenantA, "1042"),
		}, enqueued: []int{0, 2}, dropped: 1},
		{name: "a lifecycle event on the notification URL", ns: []n{lifecycle(subPlain, sA, tenantA, "reauthorizationRequired")}, dropped: 1},
		{name: "lifecycle event", endpoint: "lifecycle", ns: []n{lifecycle(subPlain, sA, tenantA, "reauthorizationRequired")}, enqueued: []int{0}},
		{name: "lifecycle events: removed and missed", endpoint: "lifecycle",
			ns: []n{lifecycle(subPlain, sA, tenantA, "subscriptionRemoved"), lifecycle(subRich, sRich, tenantA, "missed")}, enqueued: []int{0, 1}},
		{name: "lifecycle event with a wrong clientState", endpoint: "lifecycle", ns: []n{lifecycle(subPlain, sRich, tenantA, "missed")}, dropped: 1},
		{name: "a change notification on the lifecycle URL", endpoint: "lifecycle", ns: []n{plain(subPlain, sA, tenantA, "1050")}, dropped: 1},

		// Rich notifications: the validationTokens decide.
		{name: "rich with a valid validation token", tokens: []string{good}, ns: []n{rich(subRich, sRich, tenantA, "2001")}, enqueued: []int{0}},
		{name: "rich with a valid v1 token", tokens: []string{tok(m365sim.ValidationTokenOptions{V1: true})}, ns: []n{rich(subRich, sRich, tenantA, "2002")}, enqueued: []int{0}},
		{name: "rich with two valid tokens", tokens: []string{good, tok(m365sim.ValidationTokenOptions{V1: true})},
			ns: []n{rich(subRich, sRich, tenantA, "2003"), rich(subRich, sRich, tenantA, "2004")}, enqueued: []int{0, 1}},
		{name: "rich without validation tokens", ns: []n{rich(subRich, sRich, tenantA, "2010")}, dropped: 1},
		{name: "rich with an empty token list", tokens: []string{}, ns: []n{rich(subRich, sRich, tenantA, "2011")}, dropped: 1},
		{name: "rich with a token that is not a JWT", tokens: []string{"not.a.jwt"}, ns: []n{rich(subRich, sRich, tenantA, "2012")}, dropped: 1},
		{name: "rich with an empty token", tokens: []string{""}, ns: []n{rich(subRich, sRich, tenantA, "2013")}, dropped: 1},
		{name: "rich with an expired token", tokens: []string{tok(m365sim.ValidationTokenOptions{Expired: true})}, ns: []n{rich(subRich, sRich, tenantA, "2014")}, dropped: 1},
		{name: "rich with a token for another app", tokens: []string{tok(m365sim.ValidationTokenOptions{Audience: "00000000-1111-2222-3333-444444444444"})},
			ns: []n{rich(subRich, sRich, tenantA, "2015")}, dropped: 1},
		{name: "rich with a token not from Graph", tokens: []string{tok(m365sim.ValidationTokenOptions{Publisher: "11111111-2222-3333-4444-555555555555"})},
			ns: []n{rich(subRich, sRich, tenantA, "2016")}, dropped: 1},
		{name: "rich with a forged signature", tokens: []string{tok(m365sim.ValidationTokenOptions{WrongKey: true})}, ns: []n{rich(subRich, sRich, tenantA, "2017")}, dropped: 1},
		{name: "rich with a token of another tenant", tokens: []string{r.token(t, tenantB, m365sim.ValidationTokenOptions{})},
			ns: []n{rich(subRich, sRich, tenantA, "2018")}, dropped: 1},
		{name: "rich with one good and one expired token", tokens: []string{good, tok(m365sim.ValidationTokenOptions{Expired: true})},
			ns: []n{rich(subRich, sRich, tenantA, "2019")}, dropped: 1},
		{name: "rich with a bad token does not hold back plain ones", tokens: []string{"garbage"},
			ns: []n{plain(subPlain, sA, tenantA, "2020"), rich(subRich, sRich, tenantA, "2021")}, enqueued: []int{0}, dropped: 1},
		{name: "plain ones need no token", ns: []n{plain(subPlain, sA, tenantA, "2030"), plain(subRich, sRich, tenantA, "2031")}, enqueued: []int{0, 1}},
		{name: "a valid token does not excuse a wrong clientState", tokens: []string{good}, ns: []n{rich(subRich, sA, tenantA, "2040")}, dropped: 1},

		// Garbage: 400, nothing enqueued.
		{name: "no org in the URL", query: "-", ns: []n{plain(subPlain, sA, tenantA, "3001")}, status: 400},
		{name: "empty org", query: "org=", ns: []n{plain(subPlain, sA, tenantA, "3002")}, status: 400},
		{name: "org that is not an id", query: "org=a%2Fb", ns: []n{plain(subPlain, sA, tenantA, "3003")}, status: 400},
		{name: "empty value", ns: []n{}, status: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			query := tc.query
			switch query {
			case "":
				query = "org=acme"
			case "-":
				query = ""
			}
			endpoint := tc.endpoint
			if endpoint == "" {
				endpoint = "notifications"
			}
			raw := body(t, tc.tokens, tc.ns...)
			rec, d := r.do(endpoint, query, raw)
			status := tc.status
			if status == 0 {
				status = http.StatusAccepted
			}
			if rec.Code != status {
				t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body)
			}
			if status == 400 && !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") {
				t.Errorf("400 with Content-Type %q, want problem+json", rec.Header().Get("Content-Type"))
			}
			if d.dropped != tc.dropped {
				t.Errorf("dropped %d, want %d", d.dropped, tc.dropped)
			}
			if d.accepted != int64(len(tc.enqueued)) {
				t.Errorf("accepted %d, want %d", d.accepted, len(tc.enqueued))
			}
			evs := events(t, d.published)
			if len(evs) != len(tc.enqueued) {
				t.Fatalf("%d messages on channel-events, want %d", len(evs), len(tc.enqueued))
			}
			switch {
			case len(tc.enqueued) == 0 && d.batches != 0:
				t.Errorf("%d PublishBatch calls for nothing to enqueue", d.batches)
			case len(tc.enqueued) > 0 && d.batches != 1:
				t.Errorf("%d PublishBatch calls, want 1", d.batches)
			}
			// The message is the notification as Graph sent it, for the org of the URL.
			var sent struct{ Value []json.RawMessage }
			if err := json.Unmarshal(raw, &sent); err != nil {
				t.Fatal(err)
			}
			wantOrg, _ := url.ParseQuery(query)
			for i, ev := range evs {
				want := sent.Value[tc.enqueued[i]]
				if ev.Org != wantOrg.Get("org") || ev.Lifecycle != (endpoint == "lifecycle") || !bytes.Equal(ev.Notification, want) {
					t.Errorf("event %d = {org %q lifecycle %v %s}, want {org %q lifecycle %v %s}", i, ev.Org, ev.Lifecycle, ev.Notification,
						wantOrg.Get("org"), endpoint == "lifecycle", want)
				}
			}
		})
	}
}

func TestGarbageBodies(t *testing.T) {
	r := newRig(t)
	sA := r.state(acme, subPlain)
	valid := string(body(t, nil, plain(subPlain, sA, tenantA, "4000")))
	many := make([]n, 1001)
	for i := range many {
		many[i] = plain(subPlain, sA, tenantA, fmt.Sprint(5000+i))
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty body", nil},
		{"not JSON", []byte("this is not JSON")},
		{"truncated JSON", []byte(valid[:len(valid)/2])},
		{"JSON array", []byte(`[` + valid + `]`)},
		{"JSON string", []byte(`"value"`)},
		{"JSON null", []byte(`null`)},
		{"no value", []byte(`{"validationTokens":[]}`)},
		{"value null", []byte(`{"value":null}`)},
		{"value empty", []byte(`{"value":[]}`)},
		{"value not an array", []byte(`{"value":{"subscriptionId":"` + subPlain + `"}}`)},
		{"validationTokens not strings", []byte(`{"value":[{"subscriptionId":"` + subPlain + `"}],"validationTokens":[1]}`)},
		{"trailing garbage", []byte(valid + "xyz")},
		{"more than 1000 notifications", body(t, nil, many...)},
		{"too large (over 4 MiB)", []byte(`{"value":[{"subscriptionId":"` + subPlain + `","clientState":"` + sA + `","tenantId":"` + tenantA +
			`","changeType":"created","resource":"` + strings.Repeat("x", 4<<20) + `"}]}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, ep := range []string{"notifications", "lifecycle"} {
				rec, d := r.do(ep, "org=acme", tc.body)
				if rec.Code != http.StatusBadRequest {
					t.Errorf("%s: status %d, want 400: %.200s", ep, rec.Code, rec.Body)
				}
				if len(d.published) != 0 || d.batches != 0 || d.accepted != 0 {
					t.Errorf("%s: %d messages enqueued in %d batches", ep, len(d.published), d.batches)
				}
			}
		})
	}
	// Entries that are not notifications inside a valid collection are dropped one by one (202:
	// the collection itself was well formed).
	if rec, d := r.do("notifications", "org=acme", []byte(`{"value":["a","b"]}`)); rec.Code != http.StatusAccepted || len(d.published) != 0 || d.dropped != 2 {
		t.Errorf("entries that are strings: status %d, %d enqueued, %d dropped; want 202, 0, 2", rec.Code, len(d.published), d.dropped)
	}
	rec, d := r.do("notifications", "org=acme", []byte(`{"value":[1,"x",null,{},{"subscriptionId":7},`+valid[len(`{"value":[`):len(valid)-2]+`]}`))
	if rec.Code != http.StatusAccepted || len(d.published) != 1 || d.dropped != 5 {
		t.Errorf("mixed entries: status %d, %d enqueued, %d dropped; want 202, 1, 5: %s", rec.Code, len(d.published), d.dropped, rec.Body)
	}
}

// TestQueueFailure: when Service Bus refuses the batch the answer is 503, so Graph delivers the
// POST again, and that delivery goes through: nothing is lost, nothing is doubled.
func TestQueueFailure(t *testing.T) {
	r := newRig(t)
	sA := r.state(acme, subPlain)
	raw := body(t, nil, plain(subPlain, sA, tenantA, "6001"), plain(subPlain, sA, tenantA, "6002"))
	r.q.fail.Store(true)
	rec, d := r.do("notifications", "org=acme", raw)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d with the queue down, want 503: %s", rec.Code, rec.Body)
	}
	if len(d.published) != 0 || d.accepted != 0 || d.batches != 1 {
		t.Errorf("queue down: %d published, %d accepted, %d batch attempts; want 0, 0, 1", len(d.published), d.accepted, d.batches)
	}
	if strings.Contains(r.logs.String(), sA) {
		t.Errorf("the clientState reached the logs")
	}
	// Lifecycle events too.
	if rec, _ := r.do("lifecycle", "org=acme", body(t, nil, lifecycle(subPlain, sA, tenantA, "missed"))); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("lifecycle with the queue down: status %d, want 503", rec.Code)
	}

	// Graph retries.
	r.q.fail.Store(false)
	rec, d = r.do("notifications", "org=acme", raw)
	if rec.Code != http.StatusAccepted || len(d.published) != 2 || d.accepted != 2 {
		t.Fatalf("retry: status %d, %d published, %d accepted; want 202, 2, 2", rec.Code, len(d.published), d.accepted)
	}
	// A second retry (Graph did not see our 202) is the same two messages: duplicate detection.
	rec, d = r.do("notifications", "org=acme", raw)
	if rec.Code != http.StatusAccepted || len(d.published) != 0 {
		t.Errorf("second retry: status %d, %d more published; want 202, 0", rec.Code, len(d.published))
	}
}

// failingStore is a subscription table that cannot be reached.
type failingStore struct{}

func (failingStore) Get(context.Context, tablestore.Org, string) (subscriptions.Sub, tablestore.ETag, error) {
	return subscriptions.Sub{}, "", fmt.Errorf("table storage: %w", errkind.Unavailable)
}

func TestStorageFailure(t *testing.T) {
	q := &queueStandIn{Queue: &queuetest.Queue{}}
	states, _ := subscriptions.NewClientStates([]byte("0123456789abcdef0123456789abcdef"))
	h := webhook.New(webhook.Config{Subscriptions: failingStore{}, States: states, Queue: q})
	req := httptest.NewRequest(http.MethodPost, "/api/graph/notifications?org=acme", bytes.NewReader(body(t, nil, plain(subPlain, "x", tenantA, "7001"))))
	rec := httptest.NewRecorder()
	h.Notifications().ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || len(q.Published()) != 0 {
		t.Errorf("status %d, %d published; want 503 (Graph retries), 0", rec.Code, len(q.Published()))
	}
}

func TestBatchOfHundred(t *testing.T) {
	r := newRig(t)
	sA := r.state(acme, subPlain)
	ns := make([]n, 100)
	for i := range ns {
		ns[i] = plain(subPlain, sA, tenantA, fmt.Sprint(8000+i))
	}
	rec, d := r.do("notifications", "org=acme", body(t, nil, ns...))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if d.batches != 1 || len(d.published) != 100 || d.accepted != 100 || d.dropped != 0 {
		t.Errorf("%d PublishBatch calls, %d published, %d accepted, %d dropped; want 1, 100, 100, 0", d.batches, len(d.published), d.accepted, d.dropped)
	}
	ids := map[string]bool{}
	for _, m := range d.published {
		ids[m.ID] = true
	}
	if len(ids) != 100 {
		t.Errorf("%d distinct message ids for 100 distinct notifications", len(ids))
	}
}

// TestDuplicates: Graph may deliver a notification twice; the message id is the same, so
// Service Bus's duplicate detection keeps one.
func TestDuplicates(t *testing.T) {
	r := newRig(t)
	sA := r.state(acme, subPlain)
	one := plain(subPlain, sA, tenantA, "9001")
	raw := body(t, nil, one)

	// Two POSTs of the same body: the ids the handler gives, before any duplicate detection.
	spy := &idSpy{}
	h := webhook.New(webhook.Config{Subscriptions: r.store, States: r.states, Queue: spy})
	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/api/graph/notifications?org=acme", bytes.NewReader(raw))
		rec := httptest.NewRecorder()
		h.Notifications().ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status %d", rec.Code)
		}
	}
	ids := spy.ids
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Fatalf("message ids %q: want the same id twice", ids)
	}
	if _, d := r.do("notifications", "org=acme", raw); len(d.published) != 1 {
		t.Fatalf("first delivery: %d published", len(d.published))
	}
	if rec, d := r.do("notifications", "org=acme", raw); rec.Code != http.StatusAccepted || len(d.published) != 0 {
		t.Errorf("second delivery: status %d, %d published; want 202 and the copy dropped by duplicate detection", rec.Code, len(d.published))
	}
	// The same notification twice in one POST.
	twice := plain(subPlain, sA, tenantA, "9002")
	if _, d := r.do("notifications", "org=acme", body(t, nil, twice, twice)); len(d.published) != 1 || d.batches != 1 {
		t.Errorf("the same notification twice in a POST: %d published in %d batches; want 1 in 1", len(d.published), d.batches)
	}
	// Different notifications (another change of the same message) get different ids.
	edited := one
	edited.ChangeType = "updated"
	if _, d := r.do("notifications", "org=acme", body(t, nil, edited)); len(d.published) != 1 {
		t.Errorf("an update of the same message: %d published, want 1 (a different id)", len(d.published))
	}
	// The same notification for another org is another message.
	g := plain(subShared, r.state(globex, subShared), tenantB, "9001")
	a := plain(subShared, r.state(acme, subShared), tenantA, "9001")
	_, d1 := r.do("notifications", "org=globex", body(t, nil, g))
	_, d2 := r.do("notifications", "org=acme", body(t, nil, a))
	if len(d1.published) != 1 || len(d2.published) != 1 || d1.published[0].ID == d2.published[0].ID {
		t.Errorf("the same message in two orgs: %d and %d published", len(d1.published), len(d2.published))
	}
}

type idSpy struct {
	mu  sync.Mutex
	ids []string
}

func (s *idSpy) PublishBatch(_ context.Context, msgs []queue.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.ids = append(s.ids, m.ID)
	}
	return nil
}

// TestSecretsNotLogged: whatever is dropped or fails, no clientState (presented or stored) and
// no validation token reaches the logs.
func TestSecretsNotLogged(t *testing.T) {
	r := newRig(t)
	sA, sRich, sG := r.state(acme, subPlain), r.state(acme, subRich), r.state(globex, subGlobex)
	good := r.token(t, tenantA, m365sim.ValidationTokenOptions{})
	expired := r.token(t, tenantA, m365sim.ValidationTokenOptions{Expired: true})
	presented := "c1.acme.Zm9vYmFyYmF6cXV4-presented"
	posts := [][]byte{
		body(t, nil, plain(subPlain, presented, tenantA, "1")),
		body(t, nil, plain(subPlain, sRich, tenantA, "2")),
		body(t, nil, plain(subGlobex, sG, tenantB, "3")),
		body(t, nil, plain(subPlain, sA, tenantB, "4")),
		body(t, []string{expired}, rich(subRich, sRich, tenantA, "5")),
		body(t, []string{good}, rich(subRich, presented, tenantA, "6")),
		body(t, nil, lifecycle(subPlain, sA, tenantA, "missed")),
		body(t, nil, plain(subPlain, sA, tenantA, "7")),
	}
	for _, b := range posts {
		r.do("notifications", "org=acme", b)
	}
	r.q.fail.Store(true)
	r.do("notifications", "org=acme", body(t, []string{good}, plain(subPlain, sA, tenantA, "8"), rich(subRich, sRich, tenantA, "9")))
	r.q.fail.Store(false)

	logs := r.logs.String()
	if r.h.Dropped.Load() < 7 || !strings.Contains(logs, "dropped") {
		t.Fatalf("expected drops to be counted and logged (dropped %d):\n%s", r.h.Dropped.Load(), logs)
	}
	for name, secret := range map[string]string{"presented clientState": presented, "acme's clientState": sA, "rich clientState": sRich,
		"globex's clientState": sG, "validation token": good, "expired token": expired} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s appears in the logs:\n%s", name, logs)
		}
	}
}

// FuzzNotifications: random bodies and query strings, on either endpoint, with the queue up or
// down. The handler never panics and never answers 5xx except 503 when the queue failed; a 400
// or a handshake enqueues nothing; what is enqueued is on channel-events for the URL's org.
func FuzzNotifications(f *testing.F) {
	r := newRig(f)
	cfg := r.cfg
	cfg.Logger = nil // the fuzzer's millions of drops are not kept
	h := webhook.New(cfg)
	sA, sRich := r.state(acme, subPlain), r.state(acme, subRich)
	good := r.token(f, tenantA, m365sim.ValidationTokenOptions{})
	f.Add("org=acme", body(f, nil, plain(subPlain, sA, tenantA, "1")), false, false)
	f.Add("org=acme", body(f, nil, plain(subPlain, sA, tenantA, "1")), false, true)
	f.Add("org=acme", body(f, []string{good}, rich(subRich, sRich, tenantA, "2"), plain(subPlain, sA, tenantA, "3")), false, false)
	f.Add("org=acme", body(f, []string{"x.y.z"}, rich(subRich, sRich, tenantA, "2")), false, false)
	f.Add("org=acme", body(f, nil, lifecycle(subPlain, sA, tenantA, "missed")), true, false)
	f.Add("org=globex&x=%zz", body(f, nil, plain(subShared, r.state(globex, subShared), tenantB, "4")), false, false)
	f.Add("validationToken=a%2Bb+c%00%ff", []byte(nil), false, false)
	f.Add("validationToken=&org=acme", []byte("{}"), true, false)
	f.Add("org=acme;x", []byte(`{"value":[{"subscriptionId":"`+subPlain+`","clientState":null,"tenantId":7}]}`), false, false)
	f.Add("org=acme", []byte(`{"value":[1,"x",null,{},[]],"validationTokens":[""]}`), false, false)
	f.Add("org=acme", []byte(`{"value":[{"subscriptionId":"`+subRich+`","encryptedContent":null}],"validationTokens":null}`), false, false)
	f.Add("", []byte("\xff\xfe{"), false, false)
	f.Fuzz(func(t *testing.T, query string, b []byte, lc, queueFails bool) {
		req := httptest.NewRequest(http.MethodPost, "/api/graph/notifications", bytes.NewReader(b))
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		r.q.fail.Store(queueFails)
		p0, a0 := len(r.q.Published()), h.Accepted.Load()
		if lc {
			h.Lifecycle().ServeHTTP(rec, req)
		} else {
			h.Notifications().ServeHTTP(rec, req)
		}
		published := r.q.Published()[p0:]
		accepted := h.Accepted.Load() - a0
		switch rec.Code {
		case http.StatusOK:
			if tok := req.URL.Query().Get("validationToken"); rec.Body.String() != tok || !req.URL.Query().Has("validationToken") {
				t.Fatalf("200 with body %q: not the handshake's token %q", rec.Body, tok)
			}
		case http.StatusAccepted:
			if queueFails && len(published) > 0 {
				t.Fatalf("202 although the queue failed and %d messages were published", len(published))
			}
			if int64(len(published)) > accepted {
				t.Fatalf("%d published, %d accepted", len(published), accepted)
			}
			org := req.URL.Query().Get("org")
			for _, m := range published {
				var ev webhook.Event
				if m.Queue != queue.ChannelEvents || json.Unmarshal(m.Body, &ev) != nil || ev.Org != org || ev.Lifecycle != lc {
					t.Fatalf("published %s on %q for URL org %q", m.Body, m.Queue, org)
				}
			}
			return
		case http.StatusBadRequest:
		case http.StatusServiceUnavailable:
			if !queueFails {
				t.Fatalf("503 with the queue up: %s", rec.Body)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if len(published) != 0 || accepted != 0 {
			t.Fatalf("status %d, yet %d published (%d accepted)", rec.Code, len(published), accepted)
		}
	})
}

// countingStore knows no subscription and counts the lookups.
type countingStore struct{ n int }

func (c *countingStore) Get(context.Context, tablestore.Org, string) (subscriptions.Sub, tablestore.ETag, error) {
	c.n++
	return subscriptions.Sub{}, "", fmt.Errorf("no such subscription: %w", errkind.NotFound)
}

// TestMadeUpSubscriptionsCostFewReads: an anonymous POST of a thousand made-up subscription ids
// (and ids that are not ids) is answered after a handful of lookups, everything dropped.
func TestMadeUpSubscriptionsCostFewReads(t *testing.T) {
	store := &countingStore{}
	q := &queueStandIn{Queue: &queuetest.Queue{}}
	states, _ := subscriptions.NewClientStates([]byte("0123456789abcdef0123456789abcdef"))
	h := webhook.New(webhook.Config{Subscriptions: store, States: states, Queue: q})
	var ns []n
	for i := range 1000 {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		if i%10 == 0 {
			id = "not-a-guid-" + fmt.Sprint(i)
		}
		ns = append(ns, plain(id, "x", tenantA, fmt.Sprint(i)))
	}
	req := httptest.NewRequest(http.MethodPost, "/api/graph/notifications?org=acme", bytes.NewReader(body(t, nil, ns...)))
	rec := httptest.NewRecorder()
	h.Notifications().ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted || len(q.Published()) != 0 || h.Dropped.Load() != 1000 {
		t.Errorf("status %d, %d published, %d dropped; want 202, 0, 1000", rec.Code, len(q.Published()), h.Dropped.Load())
	}
	if store.n > 8 {
		t.Errorf("%d subscription lookups for one POST, want at most 8", store.n)
	}
}
