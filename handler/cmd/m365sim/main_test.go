package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sim is the simulator that run serves in the background of a test, once it printed READY.
type sim struct {
	base   string
	roots  *x509.CertPool
	cancel context.CancelFunc
	done   chan error
}

// startSim runs the simulator with args (plus -ca-out) until stop and waits for its READY line.
func startSim(t *testing.T, args ...string) *sim {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append(args, "-ca-out", caFile), pw)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	if !ok {
		t.Fatalf("first line %q", line)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &sim{base: base, roots: pool, cancel: cancel, done: done}
}

// client trusts the simulator's certificate authority.
func (s *sim) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.roots}}}
}

// token asks tenant t1 for an app-only token as app/sec; the caller closes the body.
func (s *sim) token(t *testing.T, c *http.Client) *http.Response {
	t.Helper()
	resp, err := c.PostForm(s.base+"/t1/oauth2/v2.0/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"sec"}, "scope": {"https://graph.microsoft.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// stop cancels the simulator and fails the test if run did not end cleanly.
func (s *sim) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
}

// call sends a JSON body to url with bearer token tok (none when empty), decodes the answer
// into v (when not nil) and returns its status.
func call(t *testing.T, c *http.Client, method, url, tok, body string, v any) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

func TestRun(t *testing.T) {
	s := startSim(t, "-tenant", "t1", "-users", "50", "-groups", "3", "-app-id", "app", "-app-secret", "sec")
	c, base := s.client(), s.base

	resp, err := c.Post(base+"/_sim/tenants/t1/mutate", "application/json", strings.NewReader(`{"fraction":0.1,"seed":3}`))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]int
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.StatusCode != 200 || m["changed"] != 5 {
		t.Errorf("mutate: %d %v", resp.StatusCode, m)
	}
	resp = s.token(t, c)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("token: %d", resp.StatusCode)
	}
	s.stop(t)
}

func TestRunAdminConsent(t *testing.T) {
	const cb = "https://localhost:7071/api/consent/callback"
	s := startSim(t, "-tenant", "t1", "-users", "5", "-groups", "1", "-app-id", "app", "-app-secret", "sec",
		"-consented=false", "-redirect-uri", cb)
	c, base := s.client(), s.base
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	tokenStatus := func() int {
		resp := s.token(t, c)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := tokenStatus(); st != 400 {
		t.Errorf("token before consent: %d", st)
	}
	resp, err := c.Post(base+"/_sim/tenants/t1/consent-decision", "application/json", strings.NewReader(`{"grant":true,"roles":["User.Read.All"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("consent-decision: %d", resp.StatusCode)
	}
	q := url.Values{"client_id": {"app"}, "scope": {"https://graph.microsoft.com/.default"}, "redirect_uri": {cb}, "state": {"x y"}}
	resp, err = c.Get(base + "/organizations/v2.0/adminconsent?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 302 || loc == nil || loc.Query().Get("tenant") != "t1" || loc.Query().Get("state") != "x y" {
		t.Errorf("adminconsent: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if st := tokenStatus(); st != 200 {
		t.Errorf("token after consent: %d", st)
	}
	s.stop(t)
}

func TestRunMailFlags(t *testing.T) {
	s := startSim(t, "-tenant", "t1", "-users", "5", "-groups", "1", "-app-id", "app", "-app-secret", "sec",
		"-mail-per-minute", "2", "-mail-concurrency", "3", "-mail-daily-recipients", "40", "-mail-latency", "5ms")
	c, base := s.client(), s.base
	do := func(method, path, tok, body string, v any) int {
		t.Helper()
		return call(t, c, method, base+path, tok, body, v)
	}
	var lim map[string]int
	if st := do("GET", "/_sim/mail/limits", "", "", &lim); st != 200 || lim["perMinute"] != 2 || lim["concurrency"] != 3 || lim["dailyRecipients"] != 40 || lim["latency"] != 5 || lim["requestsPer10Min"] != 10000 {
		t.Fatalf("limits: %d %v", st, lim)
	}
	resp := s.token(t, c)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	var users struct {
		Value []struct {
			Mail string `json:"mail"`
		} `json:"value"`
	}
	do("GET", "/v1.0/users?$select=mail", tok.AccessToken, "", &users)
	from := ""
	for _, u := range users.Value {
		if u.Mail != "" {
			from = u.Mail
			break
		}
	}
	if from == "" {
		t.Fatalf("no user with mail: %+v", users)
	}
	send := `{"message":{"subject":"Hi","body":{"contentType":"Text","content":"x"},"toRecipients":[{"emailAddress":{"address":"a@example.com"}}]}}`
	for i, want := range []int{202, 202, 429} { // -mail-per-minute 2
		if st := do("POST", "/v1.0/users/"+from+"/sendMail", tok.AccessToken, send, nil); st != want {
			t.Fatalf("send %d: %d, want %d", i, st, want)
		}
	}
	var sent []map[string]any
	if st := do("GET", "/_sim/tenants/t1/mail?since=1", "", "", &sent); st != 200 || len(sent) != 1 || sent[0]["from"] != from {
		t.Fatalf("mail: %d %v", st, sent)
	}
	s.stop(t)
}

func TestRunBotFlags(t *testing.T) {
	const bot, botTenant = "b0b0b0b0-0000-4000-8000-000000000001", "b0b0b0b0-0000-4000-8000-0000000000aa"
	s := startSim(t, "-tenant", "t1", "-users", "3", "-groups", "0", "-app-id", "app", "-app-secret", "sec",
		"-bot-app-id", bot, "-bot-tenant", botTenant, "-bot-secret", "bsec", "-bot-tenant-rate", "2")
	c, base := s.client(), s.base
	token := func(tenant, id, secret, resource string) string {
		t.Helper()
		resp, err := c.PostForm(base+"/"+tenant+"/oauth2/v2.0/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "scope": {resource + "/.default"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tok)
		if resp.StatusCode != 200 || tok.AccessToken == "" {
			t.Fatalf("token of %s in %s: %d", id, tenant, resp.StatusCode)
		}
		return tok.AccessToken
	}
	var users struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	if st := call(t, c, "GET", base+"/v1.0/users?$select=id", token("t1", "app", "sec", "https://graph.microsoft.com"), "", &users); st != 200 || len(users.Value) == 0 {
		t.Fatalf("users: %d %+v", st, users)
	}
	user := users.Value[0].ID
	// The user installs the bot's app; the bot then reaches them in its conversation.
	var app struct {
		ID string `json:"id"`
	}
	if st := call(t, c, "POST", base+"/_sim/teams/t1/apps", "", `{"externalId":"`+bot+`"}`, &app); st != 200 || app.ID == "" {
		t.Fatalf("apps: %d %+v", st, app)
	}
	if st := call(t, c, "POST", base+"/_sim/teams/t1/users/"+user+"/installations", "", `{"teamsAppId":"`+app.ID+`"}`, nil); st != 200 {
		t.Fatalf("installations: %d", st)
	}
	var conv struct {
		ConversationID string `json:"conversationId"`
		ServiceURL     string `json:"serviceUrl"`
	}
	if st := call(t, c, "GET", base+"/_sim/bot/conversations?tenant=t1&user="+user, "", "", &conv); st != 200 || conv.ConversationID == "" {
		t.Fatalf("conversations: %d %+v", st, conv)
	}
	// The bot's token is issued in its home tenant; -bot-tenant-rate 2 refuses the third post
	// within a second.
	botTok := token(botTenant, bot, "bsec", "https://api.botframework.com")
	post := `{"type":"message","text":"hi"}`
	for i, want := range []int{201, 201, 429} {
		if st := call(t, c, "POST", conv.ServiceURL+"v3/conversations/"+url.PathEscape(conv.ConversationID)+"/activities", botTok, post, nil); st != want {
			t.Fatalf("post %d: %d, want %d", i, st, want)
		}
	}
	var stats map[string]any
	if st := call(t, c, "GET", base+"/_sim/bot/stats", "", "", &stats); st != 200 || stats["sent"] != 2.0 || stats["tenantViolations"] != 1.0 {
		t.Fatalf("stats: %d %v", st, stats)
	}
	s.stop(t)
}

func TestRunBotFlagsIncomplete(t *testing.T) {
	for _, args := range [][]string{{"-bot-app-id", "b"}, {"-bot-app-id", "b", "-bot-tenant", "bt"}, {"-bot-secret", "s"}} {
		err := run(t.Context(), append([]string{"-tenant", "t1", "-app-id", "app", "-app-secret", "sec"}, args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-bot-") {
			t.Errorf("%v: err = %v, want one naming the missing -bot- flag", args, err)
		}
	}
}
