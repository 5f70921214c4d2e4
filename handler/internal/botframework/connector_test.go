package botframework_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/botframework"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// connector is the slice of the client the Teams sender uses.
type connector interface {
	CreateConversation(ctx context.Context, serviceURL, tenantID, userID string) (string, error)
	Send(ctx context.Context, serviceURL, conversationID string, a botframework.Activity) (string, error)
	Update(ctx context.Context, serviceURL, conversationID, activityID string, a botframework.Activity) error
}

var _ connector = (*botframework.Client)(nil)

type clientRig struct {
	sim    *m365sim.Server
	clk    *testenv.Clock
	client *botframework.Client
	svc    string // the sim's service URL
}

func newClientRig(t *testing.T, mutate ...func(*botframework.ClientConfig)) *clientRig {
	t.Helper()
	r := &clientRig{clk: testenv.NewClock(time.Date(2026, 3, 4, 9, 30, 0, 0, time.UTC))}
	r.sim = newSim(t, r.clk, "")
	r.svc = r.sim.BotServiceURL()
	cfg := botframework.ClientConfig{AppID: botAppID, Secret: botSecret, TenantID: botTenant,
		AuthorityHost: r.sim.URL() + "/", HTTPClient: r.sim.HTTPClient(), TrustedHosts: []string{simHost(r.sim)}}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := botframework.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.client = c
	return r
}

// conversation installs the bot for the user and creates their conversation.
func (r *clientRig) conversation(t *testing.T) string {
	t.Helper()
	r.sim.BotInstall(customerTenant, userID)
	id, err := r.client.CreateConversation(t.Context(), r.svc, customerTenant, r.sim.BotUserID(customerTenant, userID))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func card(text string) botframework.Activity {
	return botframework.Activity{Type: "message", Attachments: []botframework.Attachment{{
		ContentType: botframework.ContentTypeAdaptiveCard,
		Content:     map[string]any{"type": "AdaptiveCard", "version": "1.5", "body": []any{map[string]any{"type": "TextBlock", "text": text}}},
	}}}
}

func wantKind(t *testing.T, err error, kind errkind.Kind, status int) *errkind.Error {
	t.Helper()
	var e *errkind.Error
	if !errors.As(err, &e) || e.Kind != kind || e.Status != status || e.Service != "botconnector" {
		t.Fatalf("err %#v (%v), want botconnector %v HTTP %d", err, err, kind, status)
	}
	return e
}

func TestCreateSendUpdate(t *testing.T) {
	r := newClientRig(t)
	conv := r.conversation(t)
	if conv != r.sim.BotConversation(customerTenant, userID) {
		t.Fatalf("conversation %q, want %q", conv, r.sim.BotConversation(customerTenant, userID))
	}
	again, err := r.client.CreateConversation(t.Context(), r.svc, customerTenant, r.sim.BotUserID(customerTenant, userID))
	if err != nil || again != conv {
		t.Fatalf("second create: %q, %v; want the same conversation", again, err)
	}
	id, err := r.client.Send(t.Context(), r.svc, conv, card("Survey: how ready are you?"))
	if err != nil || id == "" {
		t.Fatalf("send: %q, %v", id, err)
	}
	text, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "hello"}) // type defaults to message
	if err != nil || text == "" || text == id {
		t.Fatalf("send text: %q, %v", text, err)
	}
	if err := r.client.Update(t.Context(), r.svc, conv, id, card("Thanks, answered")); err != nil {
		t.Fatalf("update: %v", err)
	}
	posted := r.sim.BotPosted(conv)
	if len(posted) != 3 {
		t.Fatalf("posted %v, want send, send, update", posted)
	}
	if posted[0].Op != "send" || posted[0].ActivityID != id || posted[1].Text != "hello" || posted[2].Op != "update" || posted[2].ActivityID != id {
		t.Errorf("posted %+v", posted)
	}
	var a botframework.Activity
	if err := json.Unmarshal(posted[2].Activity, &a); err != nil || len(a.Attachments) != 1 || a.Attachments[0].ContentType != botframework.ContentTypeAdaptiveCard || !strings.Contains(string(posted[2].Activity), "Thanks, answered") {
		t.Errorf("updated activity %s (%v)", posted[2].Activity, err)
	}
	st := r.sim.BotStats()
	if st.Created != 2 || st.Sent != 2 || st.Updated != 1 || st.Violations != 0 {
		t.Errorf("stats %+v", st)
	}
	// The Graph chat id addresses the same conversation.
	if _, err := r.client.Send(t.Context(), r.svc, r.sim.BotChatID(customerTenant, userID), botframework.Activity{Text: "via chat id"}); err != nil {
		t.Fatalf("send by chat id: %v", err)
	}
	if n := len(r.sim.BotPosted(conv)); n != 4 {
		t.Errorf("%d posted after a send by chat id, want 4", n)
	}
	if toks := r.sim.Stats().Routes["token"]; toks != 1 {
		t.Errorf("%d token requests, want 1 (cached)", toks)
	}
}

func TestCreateConversationNotInstalled(t *testing.T) {
	r := newClientRig(t)
	_, err := r.client.CreateConversation(t.Context(), r.svc, customerTenant, r.sim.BotUserID(customerTenant, userID))
	e := wantKind(t, err, errkind.Forbidden, 403)
	if e.Code != "ForbiddenOperationException" || botframework.Blocked(err) {
		t.Errorf("code %q, blocked %v", e.Code, botframework.Blocked(err))
	}
}

func TestSendThrottledPerConversation(t *testing.T) {
	r := newClientRig(t)
	conv := r.conversation(t) // one operation in this second already
	for i := range 6 {
		if _, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "n"}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	_, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "eighth in a second"})
	e := wantKind(t, err, errkind.Throttled, 429)
	if e.RetryAfter <= 0 || e.RetryAfter > time.Second {
		t.Errorf("RetryAfter %v, want (0, 1s]", e.RetryAfter)
	}
	if st := r.sim.BotStats(); st.Violations != 1 || st.ConversationViolations != 1 || st.Throttled != 1 || st.Sent != 6 {
		t.Errorf("stats %+v", st)
	}
	r.clk.Advance(time.Second)
	// 8 per 2 s: one more fits in the next second, then the 2-second window is full.
	if _, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "ok"}); err != nil {
		t.Fatalf("send after a second: %v", err)
	}
	_, err = r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "ninth in 2 s"})
	wantKind(t, err, errkind.Throttled, 429)
}

func TestSendThrottledPerTenant(t *testing.T) {
	r := newClientRig(t)
	r.sim.SetBotTenantRate(2)
	conv := r.conversation(t)
	if _, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "1"}); err != nil {
		t.Fatal(err)
	}
	err := r.client.Update(t.Context(), r.svc, conv, "1", botframework.Activity{Text: "x"})
	wantKind(t, err, errkind.NotFound, 404) // unknown activity: refused before the limits
	_, err = r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "2"})
	wantKind(t, err, errkind.Throttled, 429)
	if st := r.sim.BotStats(); st.TenantViolations != 1 || st.ConversationViolations != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSendBlocked(t *testing.T) {
	r := newClientRig(t)
	conv := r.conversation(t)
	r.sim.BlockBot(customerTenant, userID)
	_, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "hi"})
	e := wantKind(t, err, errkind.Forbidden, 403)
	if !botframework.Blocked(err) || e.Code != botframework.CodeMessageWritesBlocked {
		t.Errorf("Blocked %v, code %q", botframework.Blocked(err), e.Code)
	}
	if st := r.sim.BotStats(); st.Blocked != 1 {
		t.Errorf("stats %+v", st)
	}
	// Installing again unblocks.
	r.sim.BotInstall(customerTenant, userID)
	if _, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "hi"}); err != nil {
		t.Fatalf("after reinstall: %v", err)
	}
	if botframework.Blocked(errors.New("MessageWritesBlocked")) {
		t.Error("Blocked is true for an unclassified error")
	}
}

func TestSendNotFound(t *testing.T) {
	r := newClientRig(t)
	_, err := r.client.Send(t.Context(), r.svc, "a:unknown", botframework.Activity{Text: "hi"})
	wantKind(t, err, errkind.NotFound, 404)
}

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rule    m365sim.FaultRule
		kind    errkind.Kind
		retry   time.Duration
		blocked bool
	}{
		{"429 with Retry-After", m365sim.FaultRule{Status: 429, RetryAfter: 2500 * time.Millisecond}, errkind.Throttled, 2500 * time.Millisecond, false},
		{"503 with Retry-After", m365sim.FaultRule{Status: 503, RetryAfter: 3 * time.Second}, errkind.Unavailable, 3 * time.Second, false},
		{"412", m365sim.FaultRule{Status: 412}, errkind.Unavailable, 0, false},
		{"502", m365sim.FaultRule{Status: 502}, errkind.Unavailable, 0, false},
		{"504", m365sim.FaultRule{Status: 504}, errkind.Unavailable, 0, false},
		{"400", m365sim.FaultRule{Status: 400, Code: "BadArgument"}, errkind.Invalid, 0, false},
		{"403 blocked", m365sim.FaultRule{Status: 403, Code: "MessageWritesBlocked"}, errkind.Forbidden, 0, true},
		{"403 other", m365sim.FaultRule{Status: 403, Code: "ForbiddenOperationException"}, errkind.Forbidden, 0, false},
		{"404", m365sim.FaultRule{Status: 404}, errkind.NotFound, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newClientRig(t)
			conv := r.conversation(t)
			tc.rule.Method, tc.rule.PathPrefix, tc.rule.Times = http.MethodPost, "/bot/", 1
			if err := r.sim.AddFault(tc.rule); err != nil {
				t.Fatal(err)
			}
			_, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "hi"})
			e := wantKind(t, err, tc.kind, tc.rule.Status)
			if e.RetryAfter != tc.retry || botframework.Blocked(err) != tc.blocked {
				t.Errorf("RetryAfter %v, Blocked %v; want %v, %v", e.RetryAfter, botframework.Blocked(err), tc.retry, tc.blocked)
			}
			if tc.rule.Code != "" && tc.rule.Code != e.Code {
				t.Errorf("code %q, want %q", e.Code, tc.rule.Code)
			}
			if st := r.sim.BotStats(); st.Sent != 0 || st.Faults != 1 {
				t.Errorf("stats %+v: the fault answered no send", st)
			}
		})
	}
}

func TestUnauthorizedRefreshesTokenOnce(t *testing.T) {
	r := newClientRig(t)
	conv := r.conversation(t)
	if err := r.sim.AddFault(m365sim.FaultRule{Method: http.MethodPost, PathPrefix: "/bot/", Times: 1, Status: 401}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "hi"}); err != nil {
		t.Fatalf("send after one 401: %v", err)
	}
	if n := r.sim.Stats().Routes["token"]; n != 2 {
		t.Errorf("%d token requests, want 2 (one refresh)", n)
	}
	if err := r.sim.AddFault(m365sim.FaultRule{Method: http.MethodPost, PathPrefix: "/bot/", Times: 3, Status: 401}); err != nil {
		t.Fatal(err)
	}
	_, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "hi"})
	wantKind(t, err, errkind.Unauthorized, 401)
	if n := r.sim.Stats().Routes["bot-send"]; n != 4 {
		t.Errorf("%d sends reached the service, want 4 (1+1, then 1+1 refused)", n)
	}
}

func TestExpiredTokenIsRenewed(t *testing.T) {
	r := newClientRig(t)
	conv := r.conversation(t)
	r.clk.Advance(2 * time.Hour) // the cached token expired in sim time, azidentity still holds it
	if _, err := r.client.Send(t.Context(), r.svc, conv, botframework.Activity{Text: "later"}); err != nil {
		t.Fatalf("send with an expired token: %v", err)
	}
}

func TestTokenRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*botframework.ClientConfig)
	}{
		{"wrong secret", func(c *botframework.ClientConfig) { c.Secret = "wrong" }},
		{"customer tenant instead of the bot's home", func(c *botframework.ClientConfig) { c.TenantID = customerTenant }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newClientRig(t, tc.mutate)
			r.sim.BotInstall(customerTenant, userID)
			_, err := r.client.CreateConversation(t.Context(), r.svc, customerTenant, r.sim.BotUserID(customerTenant, userID))
			var e *errkind.Error
			if !errors.As(err, &e) || e.Kind != errkind.Unauthorized || e.Service != "botconnector" {
				t.Fatalf("err %v, want a botconnector Unauthorized", err)
			}
			if strings.Contains(err.Error(), botSecret) || strings.Contains(err.Error(), "wrong") {
				t.Errorf("error quotes the secret: %v", err)
			}
			if n := r.sim.Stats().Routes["bot-create-conversation"]; n != 0 {
				t.Errorf("%d requests reached the Bot Connector without a token", n)
			}
		})
	}
}

func TestUntrustedServiceURLGetsNoToken(t *testing.T) {
	r := newClientRig(t)
	conv := r.conversation(t)
	before := r.sim.Stats()
	for _, u := range []string{
		"https://evil.example/bot/emea/",
		"http://" + simHost(r.sim) + "/bot/emea/",            // not https
		"https://smba.trafficmanager.net.evil.example/emea/", // suffix trick
		"https://user@" + simHost(r.sim) + "/bot/emea/",      // userinfo
		"https://127.0.0.1:1/bot/emea/",                      // another port
		"not a url",
	} {
		if r.client.Trusted(u) {
			t.Errorf("Trusted(%q)", u)
		}
		_, err := r.client.Send(t.Context(), u, conv, botframework.Activity{Text: "hi"})
		wantKind(t, err, errkind.Invalid, 0)
	}
	after := r.sim.Stats()
	if after.Total != before.Total {
		t.Errorf("%d requests reached the sim for untrusted service URLs", after.Total-before.Total)
	}
	for _, u := range []string{
		"https://smba.trafficmanager.net/emea/", "https://smba.trafficmanager.net/teams/", "https://SMBA.trafficmanager.net:443/amer/",
		"https://europe.botframework.com/", "https://smba.infra.gcc.teams.microsoft.com/gcc/", r.svc,
	} {
		if !r.client.Trusted(u) {
			t.Errorf("Trusted(%q) = false", u)
		}
	}
}

func TestNewClientValidates(t *testing.T) {
	_, err := botframework.NewClient(botframework.ClientConfig{TenantID: "not a tenant/../x"})
	if err == nil || !strings.Contains(err.Error(), "AppID") || !strings.Contains(err.Error(), "Secret") || !strings.Contains(err.Error(), "TenantID") {
		t.Fatalf("err %v, want every problem named", err)
	}
}
