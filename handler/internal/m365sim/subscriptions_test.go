package m365sim_test

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/richnotify"
)

// hook is a test webhook: it echoes validation tokens and records notification collections.
type hook struct {
	srv *httptest.Server

	mu     sync.Mutex
	got    []map[string]any // notification collections, in arrival order
	tokens []string         // validation tokens seen
	status func(n int) int  // answer to the n-th notification POST (0-based); default 202
	delay  time.Duration    // before answering a notification
	echo   func(tok string) string
	posts  int
}

// answerWith sets how the hook answers later notifications: status by post number (nil: 202
// Accepted), after delay.
func (h *hook) answerWith(status func(n int) int, delay time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status, h.delay = status, delay
}

func newHook(t *testing.T) *hook {
	h := &hook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("validationToken"); tok != "" {
			h.mu.Lock()
			h.tokens = append(h.tokens, tok)
			echo := h.echo
			h.mu.Unlock()
			if echo != nil {
				tok = echo(tok)
			}
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, tok)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("notification is not JSON: %v: %s", err, b)
		}
		h.mu.Lock()
		n := h.posts
		h.posts++
		status, delay := h.status, h.delay
		h.mu.Unlock()
		time.Sleep(delay)
		code := http.StatusAccepted
		if status != nil {
			code = status(n)
		}
		if code < 300 {
			h.mu.Lock()
			h.got = append(h.got, m)
			h.mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) notifications() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, c := range h.got {
		out = append(out, values(c)...)
	}
	return out
}

func (h *hook) collections() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.got...)
}

// subSim is a teams sim with the app allowed ChannelMessage.Read.All, fast retries, and the
// Finance team's Budget channel.
func subSim(t *testing.T, roles ...string) (sim *m365sim.Server, clk *clock, team, channel string) {
	t.Helper()
	sim, clk = newSim(t, m365sim.Options{})
	if err := sim.Consent(tenantA, clientID, roles...); err != nil {
		t.Fatal(err)
	}
	tm, err := sim.AddTeam(tenantA, m365sim.Team{DisplayName: "Finance"}, m365sim.Channel{DisplayName: "Budget"})
	if err != nil {
		t.Fatal(err)
	}
	chans, _ := sim.ChannelsOf(tenantA, tm.ID)
	sim.SetWebhookOptions(m365sim.WebhookOptions{RetryBackoff: time.Millisecond})
	return sim, clk, tm.ID, chans[1].ID
}

func subBody(team, channel, url string, exp time.Time, extra string) string {
	return fmt.Sprintf(`{"changeType":"created,updated,deleted","resource":"/teams/%s/channels/%s/messages","notificationUrl":%q,
		"expirationDateTime":%q,"clientState":"s3cret"%s}`, team, channel, url, exp.Format(time.RFC3339Nano), extra)
}

func wait(t *testing.T, sim *m365sim.Server) {
	t.Helper()
	if err := sim.WaitDeliveries(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestSubscriptionCreateRules(t *testing.T) {
	sim, clk, team, channel := subSim(t, "Team.ReadBasic.All", "ChannelMessage.Read.All")
	tok := token(t, sim, tenantA)
	h := newHook(t)
	now := clk.Now()
	lifecycle := fmt.Sprintf(`,"lifecycleNotificationUrl":%q`, h.srv.URL+"/lifecycle")
	for _, tc := range []struct {
		name   string
		body   string
		echo   func(string) string
		status int
		code   string
	}{
		{"wrong echo", subBody(team, channel, h.srv.URL, now.Add(time.Hour), ""), func(string) string { return "nope" }, 400, "ValidationError"},
		{"encoded echo", subBody(team, channel, h.srv.URL, now.Add(time.Hour), ""), func(s string) string { return strings.ReplaceAll(s, " ", "%20") }, 400, "ValidationError"},
		{"past 4320 min", subBody(team, channel, h.srv.URL, now.Add(4321*time.Minute), lifecycle), nil, 400, "InvalidRequest"},
		{"past an hour without lifecycle URL", subBody(team, channel, h.srv.URL, now.Add(61*time.Minute), ""), nil, 400, "InvalidRequest"},
		{"in the past", subBody(team, channel, h.srv.URL, now.Add(-time.Minute), ""), nil, 400, "InvalidRequest"},
		{"resource data without certificate", subBody(team, channel, h.srv.URL, now.Add(time.Hour), `,"includeResourceData":true`), nil, 400, "InvalidRequest"},
		{"long clientState", strings.Replace(subBody(team, channel, h.srv.URL, now.Add(time.Hour), ""), "s3cret", strings.Repeat("x", 129), 1), nil, 400, "InvalidRequest"},
		{"bad changeType", strings.Replace(subBody(team, channel, h.srv.URL, now.Add(time.Hour), ""), "created,updated,deleted", "created,edited", 1), nil, 400, "InvalidRequest"},
		{"unknown team", subBody("00000000-0000-0000-0000-000000000001", channel, h.srv.URL, now.Add(time.Hour), ""), nil, 404, "ExtensionError"},
		{"3 days with lifecycle URL", subBody(team, channel, h.srv.URL, now.Add(4320*time.Minute), lifecycle), nil, 201, ""},
		{"one per app and resource", subBody(team, channel, h.srv.URL, now.Add(time.Hour), ""), nil, 409, "ExtensionError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.mu.Lock()
			h.echo = tc.echo
			h.mu.Unlock()
			st, _, raw, m := call(t, sim, "POST", tok, "/v1.0/subscriptions", strings.NewReader(tc.body), "Content-Type", "application/json")
			if st != tc.status || errorCode(m) != tc.code {
				t.Fatalf("status %d %s, want %d %s: %s", st, errorCode(m), tc.status, tc.code, raw)
			}
		})
	}
	h.mu.Lock()
	n := len(h.tokens)
	tok0 := h.tokens[0]
	h.mu.Unlock()
	if !strings.HasPrefix(tok0, "Validation: ") {
		t.Errorf("validation token %q", tok0)
	}
	if n < 4 { // 2 failed handshakes, then the notification and the lifecycle URL of the created one
		t.Errorf("%d validation requests", n)
	}
	subs := sim.Subscriptions(tenantA)
	if len(subs) != 1 || subs[0].LifecycleNotificationURL == "" || subs[0].ClientState != "s3cret" || subs[0].TeamID != team {
		t.Fatalf("subscriptions = %+v", subs)
	}
	// GET, PATCH (renew), reauthorize, DELETE; an expired subscription is gone.
	id := subs[0].ID
	if st, _, m := get(t, sim, tok, "/v1.0/subscriptions/"+id); st != 200 || m["resource"] == nil || m["applicationId"] != clientID {
		t.Errorf("GET: %d %v", st, m)
	}
	newExp := clk.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	st, _, raw, m := call(t, sim, "PATCH", tok, "/v1.0/subscriptions/"+id, strings.NewReader(fmt.Sprintf(`{"expirationDateTime":%q}`, newExp.Format(time.RFC3339))))
	if exp, _ := time.Parse(time.RFC3339, fmt.Sprint(m["expirationDateTime"])); st != 200 || !exp.Equal(newExp) {
		t.Errorf("PATCH: %d %s", st, raw)
	}
	if st, _, raw, _ := call(t, sim, "POST", tok, "/v1.0/subscriptions/"+id+"/reauthorize", nil); st != 204 {
		t.Errorf("reauthorize: %d %s", st, raw)
	}
	clk.Advance(3 * time.Hour)
	tok = token(t, sim, tenantA) // the old one expired too
	if st, _, m := get(t, sim, tok, "/v1.0/subscriptions/"+id); st != 404 {
		t.Errorf("expired subscription: %d %v", st, m)
	}
	if len(sim.Subscriptions(tenantA)) != 0 {
		t.Error("the expired subscription is listed")
	}
	if st, _, _, _ := call(t, sim, "DELETE", tok, "/v1.0/subscriptions/"+id, nil); st != 404 {
		t.Errorf("DELETE of a gone subscription: %d", st)
	}
}

func TestSubscriptionPermissions(t *testing.T) {
	sim, clk, team, channel := subSim(t, "Team.ReadBasic.All")
	tok := token(t, sim, tenantA)
	h := newHook(t)
	body := subBody(team, channel, h.srv.URL, clk.Now().Add(time.Hour), "")
	st, _, raw, m := call(t, sim, "POST", tok, "/v1.0/subscriptions", strings.NewReader(body))
	if st != 403 || errorCode(m) != "ExtensionError" {
		t.Fatalf("without the permission: %d %s", st, raw)
	}
	if st, _, m := get(t, sim, tok, "/v1.0/teams/"+team+"/channels/"+channel+"/messages"); st != 403 {
		t.Errorf("messages without the permission: %d %v", st, m)
	}
	// Resource-specific consent in the team (the app installed there) is enough.
	if err := sim.GrantRSC(tenantA, team, clientID); err != nil {
		t.Fatal(err)
	}
	st, _, raw, _ = call(t, sim, "POST", tok, "/v1.0/subscriptions", strings.NewReader(body))
	if st != 201 {
		t.Fatalf("with RSC: %d %s", st, raw)
	}
	if st, _, _ := get(t, sim, tok, "/v1.0/teams/"+team+"/channels/"+channel+"/messages"); st != 200 {
		t.Errorf("messages with RSC: %d", st)
	}
	// Uninstalling the app from the team revokes the consent and removes the subscription.
	if err := sim.RevokeRSC(tenantA, team, clientID); err != nil {
		t.Fatal(err)
	}
	if subs := sim.Subscriptions(tenantA); len(subs) != 0 {
		t.Errorf("subscriptions after RevokeRSC: %+v", subs)
	}
}

func TestNotificationsPlain(t *testing.T) {
	sim, clk, team, channel := subSim(t, "Team.ReadBasic.All", "ChannelMessage.Read.All")
	tok := token(t, sim, tenantA)
	h := newHook(t)
	st, _, raw, m := call(t, sim, "POST", tok, "/v1.0/subscriptions", strings.NewReader(subBody(team, channel, h.srv.URL+"/notify?org=acme", clk.Now().Add(time.Hour), "")))
	if st != 201 {
		t.Fatalf("create: %d %s", st, raw)
	}
	subID := m["id"].(string)
	id, err := sim.PostChannelMessage(tenantA, team, channel, m365sim.ChannelMessageInput{AuthorID: "u1", AuthorName: "Ines", Content: "<p>Budget freeze</p>"})
	if err != nil {
		t.Fatal(err)
	}
	reply, err := sim.PostChannelReply(tenantA, team, channel, id, m365sim.ChannelMessageInput{Content: "ok", ContentType: "text"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.EditChannelMessage(tenantA, team, channel, id, "<p>Budget thaw</p>"); err != nil {
		t.Fatal(err)
	}
	if err := sim.DeleteChannelMessage(tenantA, team, channel, reply); err != nil {
		t.Fatal(err)
	}
	wait(t, sim)
	got := h.notifications()
	if len(got) != 4 {
		t.Fatalf("%d notifications, want 4: %v", len(got), got)
	}
	kinds := map[string]string{}
	for _, n := range got {
		kinds[n["changeType"].(string)+" "+n["resource"].(string)] = ""
		rd := n["resourceData"].(map[string]any)
		if n["subscriptionId"] != subID || n["clientState"] != "s3cret" || n["tenantId"] != tenantA || n["subscriptionExpirationDateTime"] == nil ||
			!strings.EqualFold(fmt.Sprint(rd["@odata.type"]), "#microsoft.graph.chatMessage") || rd["@odata.id"] != n["resource"] || n["encryptedContent"] != nil {
			t.Errorf("notification %v", n)
		}
	}
	root := fmt.Sprintf("teams('%s')/channels('%s')/messages('%s')", team, channel, id)
	for _, want := range []string{"created " + root, "updated " + root, "created " + root + "/replies('" + reply + "')", "deleted " + root + "/replies('" + reply + "')"} {
		if _, ok := kinds[want]; !ok {
			t.Errorf("no notification %q in %v", want, kinds)
		}
	}
	if st := sim.WebhookStats(); st.Delivered != 4 || st.Failed != 0 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
}

func selfSigned(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "notify"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func TestNotificationsRich(t *testing.T) {
	sim, clk, team, channel := subSim(t, "Team.ReadBasic.All", "ChannelMessage.Read.All")
	tok := token(t, sim, tenantA)
	key, der := selfSigned(t)
	h := newHook(t)
	extra := fmt.Sprintf(`,"includeResourceData":true,"encryptionCertificate":%q,"encryptionCertificateId":"leap-2026"`, base64.StdEncoding.EncodeToString(der))
	if st, _, raw, _ := call(t, sim, "POST", tok, "/v1.0/subscriptions", strings.NewReader(subBody(team, channel, h.srv.URL, clk.Now().Add(time.Hour), extra))); st != 201 {
		t.Fatalf("create: %d %s", st, raw)
	}
	id, err := sim.PostChannelMessage(tenantA, team, channel, m365sim.ChannelMessageInput{AuthorID: "u1", AuthorName: "Ines",
		Content: `Ask <at id="0">Tom</at> about the Café`, Mentions: []m365sim.ChannelMention{{UserID: "u2", DisplayName: "Tom"}}})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, sim)
	cs := h.collections()
	if len(cs) != 1 {
		t.Fatalf("%d collections", len(cs))
	}
	toks, _ := cs[0]["validationTokens"].([]any)
	if len(toks) != 1 {
		t.Fatalf("validationTokens = %v", cs[0]["validationTokens"])
	}
	c := claims(t, toks[0].(string))
	if c["aud"] != clientID || c["azp"] != m365sim.GraphChangeTrackingAppID || c["tid"] != tenantA || c["iss"] != "https://login.microsoftonline.com/"+tenantA+"/v2.0" {
		t.Errorf("validation token claims %v", c)
	}
	verifyRS256(t, sim, toks[0].(string))
	n := values(cs[0])[0]
	ec := n["encryptedContent"].(map[string]any)
	thumb := sha1.Sum(der)
	if ec["encryptionCertificateId"] != "leap-2026" || !strings.EqualFold(ec["encryptionCertificateThumbprint"].(string), fmt.Sprintf("%x", thumb)) {
		t.Errorf("encryptedContent %v", ec)
	}
	plain := decrypt(t, key, ec)
	_, _, want, _ := call(t, sim, "GET", tok, "/v1.0/teams/"+team+"/channels/"+channel+"/messages/"+id, nil)
	var a, b map[string]any
	json.Unmarshal(plain, &a)
	json.Unmarshal(want, &b)
	delete(b, "@odata.context")
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("decrypted content\n%s\nGET answers\n%s", plain, want)
	}
}

func decrypt(t *testing.T, key *rsa.PrivateKey, ec map[string]any) []byte {
	t.Helper()
	b64 := func(k string) []byte {
		b, err := base64.StdEncoding.DecodeString(ec[k].(string))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return b
	}
	sym, err := rsa.DecryptOAEP(sha1.New(), nil, key, b64("dataKey"), nil)
	if err != nil || len(sym) != 32 {
		t.Fatalf("unwrap: %v (%d bytes)", err, len(sym))
	}
	data := b64("data")
	mac := hmac.New(sha256.New, sym)
	mac.Write(data)
	if !hmac.Equal(mac.Sum(nil), b64("dataSignature")) {
		t.Fatal("dataSignature does not match")
	}
	block, _ := aes.NewCipher(sym)
	out := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, sym[:16]).CryptBlocks(out, data)
	pad := int(out[len(out)-1])
	if pad < 1 || pad > 16 {
		t.Fatalf("bad padding %d", pad)
	}
	return out[:len(out)-pad]
}

func verifyRS256(t *testing.T, sim *m365sim.Server, jwt string) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(sim.SigningKey(), crypto.SHA256, sum[:], sig); err != nil {
		t.Errorf("validation token signature: %v", err)
	}
}

func TestLifecycleDuplicatesRetriesAndSlowAcks(t *testing.T) {
	sim, clk, team, channel := subSim(t, "Team.ReadBasic.All", "ChannelMessage.Read.All")
	tok := token(t, sim, tenantA)
	h, lh := newHook(t), newHook(t)
	body := subBody(team, channel, h.srv.URL, clk.Now().Add(3*time.Hour), fmt.Sprintf(`,"lifecycleNotificationUrl":%q`, lh.srv.URL))
	st, _, raw, m := call(t, sim, "POST", tok, "/v1.0/subscriptions", strings.NewReader(body))
	if st != 201 {
		t.Fatalf("create: %d %s", st, raw)
	}
	id := m["id"].(string)

	// Lifecycle: reauthorizationRequired marks the subscription until reauthorized.
	if err := sim.FireLifecycle(id, "reauthorizationRequired"); err != nil {
		t.Fatal(err)
	}
	wait(t, sim)
	ln := lh.notifications()
	if len(ln) != 1 || ln[0]["lifecycleEvent"] != "reauthorizationRequired" || ln[0]["subscriptionId"] != id || ln[0]["clientState"] != "s3cret" || ln[0]["tenantId"] != tenantA {
		t.Fatalf("lifecycle notifications %v", ln)
	}
	if !sim.Subscriptions(tenantA)[0].ReauthorizationRequired {
		t.Error("not marked for reauthorization")
	}
	call(t, sim, "POST", tok, "/v1.0/subscriptions/"+id+"/reauthorize", nil)
	if sim.Subscriptions(tenantA)[0].ReauthorizationRequired {
		t.Error("still marked after reauthorize")
	}

	// Duplicates: each notification delivered twice.
	sim.SetNotificationDuplicates(1)
	if _, err := sim.PostChannelMessage(tenantA, team, channel, m365sim.ChannelMessageInput{Content: "one"}); err != nil {
		t.Fatal(err)
	}
	wait(t, sim)
	sim.SetNotificationDuplicates(0)
	if got := h.notifications(); len(got) != 2 || got[0]["resource"] != got[1]["resource"] {
		t.Fatalf("duplicates: %v", got)
	}

	// postStats posts a message and returns the webhook stats of its deliveries alone.
	postStats := func(content string) m365sim.WebhookStats {
		sim.ResetWebhookStats()
		sim.PostChannelMessage(tenantA, team, channel, m365sim.ChannelMessageInput{Content: content})
		wait(t, sim)
		return sim.WebhookStats()
	}

	// A 500 then 202: retried once, delivered once.
	h.mu.Lock()
	first := h.posts
	h.mu.Unlock()
	h.answerWith(func(n int) int {
		if n == first {
			return 500
		}
		return 202
	}, 0)
	if st := postStats("two"); st.Delivered != 1 || st.Retried != 1 || st.Failed != 0 {
		t.Errorf("after a 500: %+v", st)
	}
	// Always 500: given up after the retries.
	h.answerWith(func(int) int { return 503 }, 0)
	if st := postStats("three"); st.Failed != 1 || st.Retried != 3 || st.Delivered != 0 {
		t.Errorf("always 503: %+v", st)
	}

	// Slow acks: a 300 ms answer against a 20 ms threshold counts as slow.
	h.answerWith(nil, 300*time.Millisecond)
	sim.SetWebhookOptions(m365sim.WebhookOptions{SlowAfter: 20 * time.Millisecond, RetryBackoff: time.Millisecond})
	if st := postStats("four"); st.Slow != 1 || st.Delivered != 1 || st.AckP99 < 20*time.Millisecond {
		t.Errorf("slow ack: %+v", st)
	}

	// subscriptionRemoved removes it: later messages notify nobody.
	if err := sim.FireLifecycle(id, "subscriptionRemoved"); err != nil {
		t.Fatal(err)
	}
	wait(t, sim)
	if len(sim.Subscriptions(tenantA)) != 0 {
		t.Error("subscription still listed after subscriptionRemoved")
	}
	if ln := lh.notifications(); len(ln) != 2 || ln[1]["lifecycleEvent"] != "subscriptionRemoved" {
		t.Errorf("lifecycle notifications %v", ln)
	}
}

func TestSubscriptionAdminAPI(t *testing.T) {
	sim, clk := newSim(t, m365sim.Options{Admin: true})
	if err := sim.Consent(tenantA, clientID, "ChannelMessage.Read.All"); err != nil {
		t.Fatal(err)
	}
	tm, _ := sim.AddTeam(tenantA, m365sim.Team{DisplayName: "Ops"})
	chans, _ := sim.ChannelsOf(tenantA, tm.ID)
	h := newHook(t)
	tok := token(t, sim, tenantA)
	if st, _, raw, _ := call(t, sim, "POST", tok, "/v1.0/subscriptions", strings.NewReader(subBody(tm.ID, chans[0].ID, h.srv.URL, clk.Now().Add(time.Hour), ""))); st != 201 {
		t.Fatalf("create: %d %s", st, raw)
	}
	var posted struct{ ID string }
	base := "/_sim/teams/" + tenantA + "/channels/" + tm.ID + "/" + strings.NewReplacer(":", "%3A", "@", "%40").Replace(chans[0].ID) + "/messages"
	if st := admin(t, sim, "POST", base, `{"authorName":"Ines","content":"hello"}`, &posted); st != 200 || posted.ID == "" {
		t.Fatalf("post: %d %+v", st, posted)
	}
	if st := admin(t, sim, "PATCH", base+"/"+posted.ID, `{"content":"hello again"}`, nil); st != 204 {
		t.Errorf("edit: %d", st)
	}
	if st := admin(t, sim, "POST", "/_sim/webhook/wait", "", nil); st != 204 {
		t.Errorf("wait: %d", st)
	}
	var stats m365sim.WebhookStats
	if admin(t, sim, "GET", "/_sim/webhook/stats", "", &stats); stats.Delivered != 2 {
		t.Errorf("stats %+v", stats)
	}
	var subs []m365sim.Subscription
	if admin(t, sim, "GET", "/_sim/subscriptions", "", &subs); len(subs) != 1 {
		t.Fatalf("subscriptions %+v", subs)
	}
	if st := admin(t, sim, "POST", "/_sim/subscriptions/"+subs[0].ID+"/lifecycle", `{"event":"missed"}`, nil); st != 400 {
		t.Errorf("lifecycle without a lifecycle URL: %d", st) // it has none
	}
}

// The sim's rich notifications are what the webhook's decryption and token validation accept.
func TestRichNotificationsAgreeWithRichnotify(t *testing.T) {
	sim, clk, team, channel := subSim(t, "Team.ReadBasic.All", "ChannelMessage.Read.All")
	cert, err := richnotify.Generate("leap-notify-1", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	ring, err := richnotify.NewKeyring(cert)
	if err != nil {
		t.Fatal(err)
	}
	h := newHook(t)
	extra := fmt.Sprintf(`,"includeResourceData":true,"encryptionCertificate":%q,"encryptionCertificateId":%q`, cert.Base64DER(), cert.ID)
	tok := token(t, sim, tenantA)
	if st, _, raw, _ := call(t, sim, "POST", tok, "/v1.0/subscriptions", strings.NewReader(subBody(team, channel, h.srv.URL, clk.Now().Add(time.Hour), extra))); st != 201 {
		t.Fatalf("create: %d %s", st, raw)
	}
	id, _ := sim.PostChannelMessage(tenantA, team, channel, m365sim.ChannelMessageInput{AuthorID: "u1", Content: "Zürich rollout – 東京 too"})
	wait(t, sim)
	cs := h.collections()
	if len(cs) != 1 {
		t.Fatalf("%d collections", len(cs))
	}
	raw, _ := json.Marshal(values(cs[0])[0]["encryptedContent"])
	var ec richnotify.EncryptedContent
	if err := json.Unmarshal(raw, &ec); err != nil {
		t.Fatal(err)
	}
	plain, err := ring.Decrypt(ec)
	if err != nil {
		t.Fatalf("richnotify cannot decrypt the sim's content: %v", err)
	}
	var msg map[string]any
	if json.Unmarshal(plain, &msg); msg["id"] != id || !strings.Contains(fmt.Sprint(msg["body"]), "東京") {
		t.Errorf("decrypted %s", plain)
	}
	v := richnotify.NewTokenValidator(richnotify.TokenConfig{KeysURL: sim.URL() + "/common/discovery/v2.0/keys", AppID: clientID,
		HTTPClient: sim.HTTPClient(), Now: clk.Now})
	for _, tk := range cs[0]["validationTokens"].([]any) {
		if err := v.Validate(t.Context(), tk.(string), tenantA); err != nil {
			t.Errorf("richnotify refuses the sim's validation token: %v", err)
		}
	}
}
