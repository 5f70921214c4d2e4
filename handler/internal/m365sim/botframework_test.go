package m365sim_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/leapchange/m365/handler/internal/botframework"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365sim"
)

const (
	botHome   = "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
	botApp    = "b7e0c3d1-2f4a-4b5c-9d6e-7f8091a2b3c4"
	botSecret = "bot-s3cret"
	ines      = "a41f7c02-9d3e-4b18-8c6a-2e5f0b9d7a13"
	jon       = "c52e8d13-0e4f-4c29-9d7b-3f6a1c0e8b24"
)

// botEndpoint stands in for the bot's messaging endpoint: it validates each activity with
// botframework.Validator (the sim's own clock) and keeps the valid ones.
type botEndpoint struct {
	srv   *httptest.Server
	v     *botframework.Validator
	reply func(a botframework.Activity) (int, any)

	mu  sync.Mutex
	got []botframework.Activity
}

func (e *botEndpoint) activities() []botframework.Activity {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]botframework.Activity(nil), e.got...)
}

// botSim is a sim with tenantA's users Ines and Jon and the bot registered in its own tenant,
// its endpoint validating what the sim sends.
func botSim(t *testing.T, opts m365sim.Options) (*m365sim.Server, *clock, *botEndpoint) {
	t.Helper()
	sim, clk := newSim(t, opts)
	for _, u := range []m365sim.User{{ID: ines, DisplayName: "Ines Okafor", AccountEnabled: true}, {ID: jon, DisplayName: "Jon Ruiz", AccountEnabled: true}} {
		if _, err := sim.AddUser(tenantA, u); err != nil {
			t.Fatal(err)
		}
	}
	ep := &botEndpoint{}
	ep.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a botframework.Activity
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := ep.v.Validate(r.Context(), r.Header.Get("Authorization"), a); err != nil {
			status := http.StatusUnauthorized
			if errors.Is(err, errkind.Forbidden) {
				status = http.StatusForbidden
			}
			http.Error(w, "refused", status)
			return
		}
		ep.mu.Lock()
		ep.got = append(ep.got, a)
		reply := ep.reply
		ep.mu.Unlock()
		if reply == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		status, body := reply(a)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(ep.srv.Close)
	sim.RegisterBot(botApp, botHome, botSecret, ep.srv.URL+"/api/messages")
	ep.v = botframework.NewValidator(botframework.ValidatorConfig{MetadataURL: sim.BotOpenIDMetadataURL(), AppID: botApp, HTTPClient: sim.HTTPClient(), Now: sim.Now})
	return sim, clk, ep
}

// botToken is the bot's Bot Connector token from its home tenant.
func botToken(t *testing.T, sim *m365sim.Server) string {
	t.Helper()
	tok, err := credential(t, sim, botHome, botApp, botSecret).GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://api.botframework.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// connector calls the Bot Connector at the sim's service URL (path after it).
func connector(t *testing.T, sim *m365sim.Server, method, tok, path string, body any) (int, http.Header, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	st, h, raw, _ := callRaw(t, sim, method, tok, sim.BotServiceURL()+path, strings.NewReader(string(b)))
	return st, h, raw
}

// callRaw is call without decoding the body.
func callRaw(t *testing.T, sim *m365sim.Server, method, tok, url string, body io.Reader) (int, http.Header, []byte, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, body)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := sim.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw, err
}

func createBody(tenant, member string) map[string]any {
	return map[string]any{"bot": map[string]string{"id": "28:" + botApp}, "members": []map[string]string{{"id": member}},
		"channelData": map[string]any{"tenant": map[string]string{"id": tenant}}, "isGroup": false, "tenantId": tenant}
}

func activitiesPath(conv string) string { return "v3/conversations/" + conv + "/activities" }

func TestBotConnectorAuth(t *testing.T) {
	sim, clk, _ := botSim(t, m365sim.Options{})
	sim.BotInstall(tenantA, ines)
	body := createBody(tenantA, sim.BotUserID(tenantA, ines))
	bot := botToken(t, sim)
	for _, tc := range []struct {
		name string
		tok  string
		want int
	}{
		{"no token", "", 401},
		{"a Graph token", token(t, sim, tenantA), 401},
		{"garbage", "abc.def.ghi", 401},
		{"the bot's token", bot, 201},
	} {
		if st, _, raw := connector(t, sim, "POST", tc.tok, "v3/conversations", body); st != tc.want {
			t.Errorf("%s: status %d, want %d: %s", tc.name, st, tc.want, raw)
		}
	}
	// Only the bot's home tenant issues its Bot Connector token.
	_, err := credential(t, sim, tenantA, botApp, botSecret).GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://api.botframework.com/.default"}})
	if err == nil || !strings.Contains(err.Error(), "AADSTS700016") {
		t.Errorf("bot token from a customer tenant: %v, want AADSTS700016", err)
	}
	clk.Advance(2 * time.Hour)
	if st, _, _ := connector(t, sim, "POST", bot, "v3/conversations", body); st != 401 {
		t.Errorf("expired token: status %d, want 401", st)
	}
	if st := sim.BotStats(); st.Unauthorized != 4 || st.Created != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestBotConnectorAnswers(t *testing.T) {
	sim, _, _ := botSim(t, m365sim.Options{})
	tok := botToken(t, sim)
	// Not installed: create is refused as Teams does.
	st, _, raw := connector(t, sim, "POST", tok, "v3/conversations", createBody(tenantA, sim.BotUserID(tenantA, ines)))
	if st != 403 || !strings.Contains(string(raw), "ForbiddenOperationException") {
		t.Fatalf("create before install: %d %s", st, raw)
	}
	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"no tenant", createBody("", sim.BotUserID(tenantA, ines))},
		{"unknown member", createBody(tenantA, "29:nobody")},
		{"member of another tenant", createBody(tenantB, sim.BotUserID(tenantA, ines))},
	} {
		if st, _, raw := connector(t, sim, "POST", tok, "v3/conversations", tc.body); st != 400 {
			t.Errorf("%s: %d %s, want 400", tc.name, st, raw)
		}
	}
	sim.BotInstall(tenantA, ines)
	// The Entra object id works as the member once installed.
	st, _, raw = connector(t, sim, "POST", tok, "v3/conversations", createBody(tenantA, ines))
	var created struct{ ID string }
	if json.Unmarshal(raw, &created); st != 201 || created.ID != sim.BotConversation(tenantA, ines) {
		t.Fatalf("create by object id: %d %s", st, raw)
	}
	conv := created.ID
	st, _, raw = connector(t, sim, "POST", tok, activitiesPath(conv), map[string]any{"type": "message", "text": "hello"})
	var sent struct{ ID string }
	if json.Unmarshal(raw, &sent); st != 201 || sent.ID == "" {
		t.Fatalf("send: %d %s", st, raw)
	}
	for _, tc := range []struct {
		name, method, path string
		body               any
		want               int
		code               string
	}{
		{"unknown conversation", "POST", activitiesPath("a:nope"), map[string]any{"type": "message"}, 404, "ConversationNotFound"},
		{"unknown activity", "PUT", activitiesPath(conv) + "/999", map[string]any{"type": "message"}, 404, "ActivityNotFound"},
		{"no type", "POST", activitiesPath(conv), map[string]any{"text": "x"}, 400, "BadArgument"},
		{"not JSON", "POST", activitiesPath(conv), "just a string", 400, "BadSyntax"},
		{"too big", "POST", activitiesPath(conv), map[string]any{"type": "message", "text": strings.Repeat("x", 30<<10)}, 413, "MessageSizeTooBig"},
	} {
		st, _, raw := connector(t, sim, tc.method, tok, tc.path, tc.body)
		var e struct{ Error struct{ Code string } }
		json.Unmarshal(raw, &e)
		if st != tc.want || e.Error.Code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, st, raw, tc.want, tc.code)
		}
	}
	// Escaped conversation ids are accepted.
	if st, _, raw := connector(t, sim, "PUT", tok, "v3/conversations/"+strings.ReplaceAll(conv, ":", "%3A")+"/activities/"+sent.ID, map[string]any{"type": "message", "text": "edited"}); st != 200 {
		t.Fatalf("update: %d %s", st, raw)
	}
	posted := sim.BotPosted(conv)
	if len(posted) != 2 || posted[0].Text != "hello" || posted[1].Op != "update" || posted[1].Text != "edited" || posted[1].ActivityID != sent.ID {
		t.Errorf("posted %+v", posted)
	}
	if n := sim.Stats().Graph; n != 0 {
		t.Errorf("Bot Framework requests counted as Graph: %d", n)
	}
}

func TestBotConversationLimits(t *testing.T) {
	sim, clk, _ := botSim(t, m365sim.Options{})
	tok := botToken(t, sim)
	sim.BotInstall(tenantA, ines)
	conv := sim.BotConversation(tenantA, ines)
	send := func() (int, http.Header) {
		st, h, _ := connector(t, sim, "POST", tok, activitiesPath(conv), map[string]any{"type": "message", "text": "n"})
		return st, h
	}
	// 7 per second.
	for i := range 7 {
		if st, _ := send(); st != 201 {
			t.Fatalf("send %d: %d", i, st)
		}
	}
	st, h := send()
	if st != 429 || h.Get("Retry-After") != "1.000" {
		t.Fatalf("8th in a second: %d Retry-After %q, want 429 1.000", st, h.Get("Retry-After"))
	}
	// 8 per 2 seconds.
	clk.Advance(time.Second)
	if st, _ := send(); st != 201 {
		t.Fatalf("send in the next second: %d", st)
	}
	if st, h := send(); st != 429 || h.Get("Retry-After") != "1.000" {
		t.Fatalf("9th in 2 s: %d %q", st, h.Get("Retry-After"))
	}
	// 60 per 30 s: four a second fit 8 per 2 s, and the 61st in 30 s is refused.
	clk.Advance(time.Hour)
	tok = botToken(t, sim) // the last one expired in sim time
	n := 0
	for ; n < 100; n++ {
		if st, _ := send(); st != 201 {
			break
		}
		clk.Advance(250 * time.Millisecond)
	}
	if n != 60 {
		t.Fatalf("%d sends at 4 a second before a 429, want 60", n)
	}
	if testing.Short() {
		return // the hourly limit takes 1 800 requests
	}
	// 1800 per hour: two a second fit 60 per 30 s, and the 1801st in an hour is refused.
	clk.Advance(time.Hour)
	tok = botToken(t, sim)
	for n = 0; n < 2000; n++ {
		if st, _ := send(); st != 201 {
			break
		}
		clk.Advance(500 * time.Millisecond)
	}
	if n != 1800 {
		t.Fatalf("%d sends at 2 a second before a 429, want 1800", n)
	}
	bs := sim.BotStats()
	if bs.Violations != 4 || bs.ConversationViolations != 4 || bs.TenantViolations != 0 || bs.Throttled != 4 || bs.Sent != 7+1+60+1800 {
		t.Errorf("stats %+v", bs)
	}
	// Updates count toward the tenant's rate only.
	sim.ResetBotStats()
	clk.Advance(time.Hour)
	tok = botToken(t, sim)
	id := sim.BotPosted(conv)[0].ActivityID
	for i := range 20 {
		if st, _, raw := connector(t, sim, "PUT", tok, activitiesPath(conv)+"/"+id, map[string]any{"type": "message"}); st != 200 {
			t.Fatalf("update %d: %d %s", i, st, raw)
		}
	}
}

func TestBotTenantRate(t *testing.T) {
	sim, clk, _ := botSim(t, m365sim.Options{})
	tok := botToken(t, sim)
	var convs []string
	for i := range 6 {
		u := fmt.Sprintf("d0000000-0000-4000-8000-%012d", i)
		if _, err := sim.AddUser(tenantA, m365sim.User{ID: u, AccountEnabled: true}); err != nil {
			t.Fatal(err)
		}
		sim.BotInstall(tenantA, u)
		convs = append(convs, sim.BotConversation(tenantA, u))
	}
	for i := range 30 {
		if st, _, raw := connector(t, sim, "POST", tok, activitiesPath(convs[i%6]), map[string]any{"type": "message"}); st != 201 {
			t.Fatalf("send %d: %d %s", i, st, raw)
		}
	}
	if st, h, _ := connector(t, sim, "POST", tok, activitiesPath(convs[0]), map[string]any{"type": "message"}); st != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("31st in a second: %d", st)
	}
	if bs := sim.BotStats(); bs.TenantViolations != 1 || bs.ConversationViolations != 0 {
		t.Errorf("stats %+v", bs)
	}
	clk.Advance(time.Second)
	sim.SetBotTenantRate(2)
	for i, want := range []int{201, 201, 429} {
		if st, _, _ := connector(t, sim, "POST", tok, activitiesPath(convs[i]), map[string]any{"type": "message"}); st != want {
			t.Fatalf("send %d at 2/s: %d, want %d", i, st, want)
		}
	}
	sim.SetBotTenantRate(-1)
	for i := range 6 {
		if st, _, _ := connector(t, sim, "POST", tok, activitiesPath(convs[i]), map[string]any{"type": "message"}); st != 201 {
			t.Fatalf("send %d without a tenant limit: %d", i, st)
		}
	}
}

func TestBotInstallUninstallBlock(t *testing.T) {
	sim, _, ep := botSim(t, m365sim.Options{})
	tok := botToken(t, sim)
	catalog, err := sim.PublishTeamsApp(tenantA, "leap-change-manifest")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.InstallTeamsApp(tenantA, ines, catalog); err != nil {
		t.Fatal(err)
	}
	sim.BotWait()
	got := ep.activities()
	if len(got) != 2 || got[0].Type != "conversationUpdate" || got[1].Type != "installationUpdate" || got[1].Action != "add" {
		t.Fatalf("after install the bot got %+v", got)
	}
	cu := got[0]
	if len(cu.MembersAdded) != 1 || cu.MembersAdded[0].ID != "28:"+botApp || cu.From.AADObjectID != ines || cu.From.ID != sim.BotUserID(tenantA, ines) ||
		cu.Conversation.ID != sim.BotConversation(tenantA, ines) || cu.Conversation.TenantID != tenantA || cu.TenantID() != tenantA || cu.ServiceURL != sim.BotServiceURL() {
		t.Errorf("conversationUpdate %+v", cu)
	}
	conv := sim.BotConversation(tenantA, ines)
	if st, _, raw := connector(t, sim, "POST", tok, activitiesPath(conv), map[string]any{"type": "message"}); st != 201 {
		t.Fatalf("send after install: %d %s", st, raw)
	}
	sim.UninstallBot(tenantA, ines)
	sim.BotWait()
	got = ep.activities()
	if len(got) != 3 || got[2].Type != "installationUpdate" || got[2].Action != "remove" {
		t.Fatalf("after uninstall the bot got %+v", got)
	}
	st, _, raw := connector(t, sim, "POST", tok, activitiesPath(conv), map[string]any{"type": "message"})
	var outer struct {
		ErrorCode int    `json:"errorCode"`
		Message   string `json:"message"`
	}
	if err := json.Unmarshal(raw, &outer); err != nil || st != 403 || outer.ErrorCode != 209 {
		t.Fatalf("send after uninstall: %d %s", st, raw)
	}
	var inner struct{ SubCode string }
	if err := json.Unmarshal([]byte(outer.Message), &inner); err != nil || inner.SubCode != "MessageWritesBlocked" {
		t.Errorf("nested message %q: %v", outer.Message, err)
	}
	// Blocking works the same way for an installed user.
	sim.BotInstall(tenantA, jon)
	sim.BlockBot(tenantA, jon)
	if st, _, raw := connector(t, sim, "POST", tok, activitiesPath(sim.BotConversation(tenantA, jon)), map[string]any{"type": "message"}); st != 403 || !strings.Contains(string(raw), "MessageWritesBlocked") {
		t.Errorf("send to a blocking user: %d %s", st, raw)
	}
	sim.BotWait()
	if bs := sim.BotStats(); bs.Blocked != 2 || bs.Inbound != 5 || bs.InboundFailed != 0 {
		t.Errorf("stats %+v", bs)
	}
}

func TestSendBotActivity(t *testing.T) {
	sim, _, ep := botSim(t, m365sim.Options{})
	ep.reply = func(a botframework.Activity) (int, any) {
		return 200, botframework.InvokeResponse{StatusCode: 200, Type: botframework.ContentTypeAdaptiveCard, Value: map[string]any{"type": "AdaptiveCard"}}
	}
	resp, err := sim.SendBotActivity(t.Context(), tenantA, ines, botframework.Activity{Type: "invoke", Name: "adaptiveCard/action",
		Value: json.RawMessage(`{"action":{"type":"Action.Execute","verb":"ack"}}`), ChannelData: json.RawMessage(`{"source":{"name":"message"}}`)}, m365sim.BotSign{})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ir botframework.InvokeResponse
	if err := json.NewDecoder(resp.Body).Decode(&ir); err != nil || resp.StatusCode != 200 || ir.Type != botframework.ContentTypeAdaptiveCard {
		t.Fatalf("invoke answer %d %+v %v", resp.StatusCode, ir, err)
	}
	a := ep.activities()[0]
	if a.Type != "invoke" || a.Name != "adaptiveCard/action" || a.ChannelID != "msteams" || a.From.Name != "Ines Okafor" || a.Recipient.ID != "28:"+botApp ||
		a.TenantID() != tenantA || !strings.Contains(string(a.ChannelData), `"source"`) || a.ID == "" || a.Timestamp == "" {
		t.Errorf("activity %+v", a)
	}
	// Each wrong signing is refused by a validating endpoint.
	for name, opts := range map[string]m365sim.BotSign{
		"wrong key": {WrongKey: true}, "unknown kid": {UnknownKid: true}, "issuer": {Issuer: "https://example.com"},
		"audience": {Audience: clientID}, "expired": {Expired: true}, "not yet valid": {NotYetValid: true},
		"no endorsement": {NoEndorsement: true}, "service url": {ServiceURL: "https://smba.trafficmanager.net/emea/"},
		"alg none": {AlgNone: true}, "no header": {NoAuthorization: true}, "malformed": {Authorization: "Bearer x"},
	} {
		resp, err := sim.SendBotActivity(t.Context(), tenantA, ines, map[string]any{"type": "message", "text": "hi"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 && resp.StatusCode != 403 {
			t.Errorf("%s: status %d, want 401 or 403", name, resp.StatusCode)
		}
	}
	if _, err := sim.SendBotActivity(t.Context(), "00000000-0000-4000-8000-000000000000", ines, nil, m365sim.BotSign{}); !errors.Is(err, m365sim.ErrNotFound) {
		t.Errorf("unknown tenant: %v", err)
	}
}

func TestBotFaults(t *testing.T) {
	sim, _, _ := botSim(t, m365sim.Options{})
	tok := botToken(t, sim)
	sim.BotInstall(tenantA, ines)
	conv := sim.BotConversation(tenantA, ines)
	if err := sim.AddFault(m365sim.FaultRule{PathPrefix: "/bot/", Times: 1, Status: 429, RetryAfter: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	st, h, raw := connector(t, sim, "POST", tok, activitiesPath(conv), map[string]any{"type": "message"})
	if st != 429 || h.Get("Retry-After") != "1.5" || !strings.Contains(string(raw), `"code":"TooManyRequests"`) {
		t.Errorf("fault: %d %q %s", st, h.Get("Retry-After"), raw)
	}
	if bs := sim.BotStats(); bs.Faults != 1 || bs.Throttled != 1 || bs.Violations != 0 || bs.Sent != 0 {
		t.Errorf("stats %+v", bs)
	}
}

func TestBotAdminAPI(t *testing.T) {
	sim, _, ep := botSim(t, m365sim.Options{Admin: true})
	ep.reply = func(a botframework.Activity) (int, any) { return 200, map[string]string{"echo": a.Text} }
	if st := admin(t, sim, "POST", "/_sim/bot/register", fmt.Sprintf(`{"appId":%q,"homeTenant":%q,"secret":%q,"endpoint":%q}`, botApp, botHome, botSecret, ep.srv.URL+"/api/messages"), nil); st != 204 {
		t.Fatalf("register: %d", st)
	}
	var out struct {
		Status int
		Body   map[string]string
	}
	if st := admin(t, sim, "POST", "/_sim/bot/activities", fmt.Sprintf(`{"tenant":%q,"user":%q,"activity":{"type":"message","text":"who is Jon"}}`, tenantA, ines), &out); st != 200 || out.Status != 200 || out.Body["echo"] != "who is Jon" {
		t.Fatalf("send as user: %d %+v", st, out)
	}
	var bad struct{ Status int }
	if st := admin(t, sim, "POST", "/_sim/bot/activities", fmt.Sprintf(`{"tenant":%q,"user":%q,"sign":{"expired":true}}`, tenantA, ines), &bad); st != 200 || bad.Status != 401 {
		t.Errorf("send expired: %d %+v", st, bad)
	}
	var conv struct{ ConversationID, ChatID, UserID, ServiceURL string }
	admin(t, sim, "GET", "/_sim/bot/conversations?tenant="+tenantA+"&user="+ines, "", &conv)
	if conv.ConversationID != sim.BotConversation(tenantA, ines) || conv.ChatID != sim.BotChatID(tenantA, ines) || conv.UserID != sim.BotUserID(tenantA, ines) || conv.ServiceURL != sim.BotServiceURL() {
		t.Errorf("conversation %+v", conv)
	}
	tok := botToken(t, sim)
	if st, _, raw := connector(t, sim, "POST", tok, activitiesPath(conv.ConversationID), map[string]any{"type": "message", "text": "Jon Ruiz, Finance"}); st != 201 {
		t.Fatalf("send: %d %s", st, raw)
	}
	var posted []m365sim.PostedActivity
	if st := admin(t, sim, "GET", "/_sim/bot/conversations/"+conv.ConversationID+"/activities", "", &posted); st != 200 || len(posted) != 1 || posted[0].Text != "Jon Ruiz, Finance" {
		t.Errorf("posted: %d %+v", st, posted)
	}
	if st := admin(t, sim, "POST", "/_sim/bot/block", fmt.Sprintf(`{"tenant":%q,"user":%q}`, tenantA, ines), nil); st != 204 {
		t.Errorf("block: %d", st)
	}
	var bs m365sim.BotStats
	if st := admin(t, sim, "GET", "/_sim/bot/stats", "", &bs); st != 200 || bs.Sent != 1 || bs.Inbound != 2 || bs.InboundFailed != 1 {
		t.Errorf("stats: %d %+v", st, bs)
	}
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/_sim/bot/tenant-rate", `{"perSecond":50}`}, {"POST", "/_sim/bot/rotate-keys", ``}, {"DELETE", "/_sim/bot/stats", ``},
	} {
		if st := admin(t, sim, c.method, c.path, c.body, nil); st != 204 {
			t.Errorf("%s %s: %d", c.method, c.path, st)
		}
	}
	var e map[string]string
	if st := admin(t, sim, "POST", "/_sim/bot/activities", `{"tenant":""}`, &e); st != 400 {
		t.Errorf("missing user: %d %v", st, e)
	}
}
