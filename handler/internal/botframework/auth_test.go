package botframework_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/botframework"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// authRig is the simulated tenant posting activities to an endpoint whose Validator shares the
// sim's clock (plus skew, for the lifetime tests).
type authRig struct {
	sim  *m365sim.Server
	clk  *testenv.Clock
	ep   *endpoint
	skew time.Duration
}

func newAuthRig(t *testing.T) *authRig {
	r := &authRig{clk: testenv.NewClock(time.Date(2026, 3, 4, 9, 30, 0, 0, time.UTC))}
	r.ep = newEndpoint(t)
	r.sim = newSim(t, r.clk, r.ep.srv.URL)
	r.ep.v = botframework.NewValidator(botframework.ValidatorConfig{
		MetadataURL: r.sim.BotOpenIDMetadataURL(),
		AppID:       botAppID,
		HTTPClient:  r.sim.HTTPClient(),
		Now:         func() time.Time { return r.clk.Now().Add(r.skew) },
	})
	return r
}

// send posts a message from the user signed as opts say and returns the endpoint's status.
func (r *authRig) send(t *testing.T, activity map[string]any, opts m365sim.BotSign) int {
	t.Helper()
	if activity == nil {
		activity = map[string]any{"type": "message", "text": "help"}
	}
	resp, err := r.sim.SendBotActivity(t.Context(), customerTenant, userID, activity, opts)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (r *authRig) keyFetches() int64 { return r.sim.Stats().Routes["bot-keys"] }

func TestValidate(t *testing.T) {
	r := newAuthRig(t)
	for _, tc := range []struct {
		name     string
		activity map[string]any
		sign     m365sim.BotSign
		want     int
	}{
		{name: "valid RS256", want: 200},
		{name: "valid RS384", sign: m365sim.BotSign{Alg: "RS384"}, want: 200},
		{name: "valid RS512", sign: m365sim.BotSign{Alg: "RS512"}, want: 200},
		{name: "serviceurl claim without the trailing slash", sign: m365sim.BotSign{ServiceURL: strings.TrimSuffix(r.sim.BotServiceURL(), "/")}, want: 200},
		{name: "not yet valid within the skew", sign: m365sim.BotSign{NotBefore: 4 * time.Minute}, want: 200},
		{name: "bad signature", sign: m365sim.BotSign{WrongKey: true}, want: 401},
		{name: "unknown kid", sign: m365sim.BotSign{UnknownKid: true}, want: 401},
		{name: "wrong issuer", sign: m365sim.BotSign{Issuer: "https://sts.windows.net/" + customerTenant + "/"}, want: 401},
		{name: "wrong audience", sign: m365sim.BotSign{Audience: "00000000-1111-2222-3333-444444444444"}, want: 401},
		{name: "expired", sign: m365sim.BotSign{Expired: true}, want: 401},
		{name: "not yet valid beyond the skew", sign: m365sim.BotSign{NotYetValid: true}, want: 401},
		{name: "not yet valid just beyond the skew", sign: m365sim.BotSign{NotBefore: 6 * time.Minute}, want: 401},
		{name: "missing endorsement", sign: m365sim.BotSign{NoEndorsement: true}, want: 403},
		{name: "channel not endorsed", activity: map[string]any{"type": "message", "channelId": "webchat"}, want: 403},
		{name: "no channel", activity: map[string]any{"type": "message", "channelId": ""}, want: 403},
		{name: "serviceUrl mismatch", sign: m365sim.BotSign{ServiceURL: "https://smba.trafficmanager.net/emea/"}, want: 401},
		{name: "activity serviceUrl forged", activity: map[string]any{"type": "message", "serviceUrl": "https://evil.example/"}, sign: m365sim.BotSign{ServiceURL: r.sim.BotServiceURL()}, want: 401},
		{name: "alg none", sign: m365sim.BotSign{AlgNone: true}, want: 401},
		{name: "no Authorization header", sign: m365sim.BotSign{NoAuthorization: true}, want: 401},
		{name: "Basic scheme", sign: m365sim.BotSign{Authorization: "Basic dXNlcjpwYXNz"}, want: 401},
		{name: "Bearer without token", sign: m365sim.BotSign{Authorization: "Bearer "}, want: 401},
		{name: "not a JWT", sign: m365sim.BotSign{Authorization: "Bearer not-a-jwt"}, want: 401},
		{name: "garbage segments", sign: m365sim.BotSign{Authorization: "Bearer e30.e30.AAAA"}, want: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.send(t, tc.activity, tc.sign); got != tc.want {
				err, _ := r.ep.last()
				t.Fatalf("status %d, want %d (err %v)", got, tc.want, err)
			}
			err, hdr := r.ep.last()
			if tc.want == 200 {
				return
			}
			var e *errkind.Error
			if !errors.As(err, &e) || e.Status != tc.want {
				t.Fatalf("error %#v, want an *errkind.Error with status %d", err, tc.want)
			}
			wantKind := errkind.Unauthorized
			if tc.want == 403 {
				wantKind = errkind.Forbidden
			}
			if errkind.Of(err) != wantKind {
				t.Errorf("kind %v, want %v", errkind.Of(err), wantKind)
			}
			if tok, ok := strings.CutPrefix(hdr, "Bearer "); ok && len(tok) > 8 {
				for _, part := range strings.Split(tok, ".") {
					if len(part) > 8 && (strings.Contains(err.Error(), part) || strings.Contains(e.Message, part)) {
						t.Errorf("the error quotes the token: %v", err)
					}
				}
			}
		})
	}
	if n := r.keyFetches(); n > 3 {
		t.Errorf("%d JWKS fetches for one minute of traffic, want at most a few", n)
	}
}

func TestValidateLifetimeSkew(t *testing.T) {
	r := newAuthRig(t)
	for _, tc := range []struct {
		name string
		skew time.Duration // validator clock minus sim clock
		want int
	}{
		{"4 minutes before nbf", -4 * time.Minute, 200},
		{"6 minutes before nbf", -6 * time.Minute, 401},
		{"4 minutes after exp", time.Hour + 4*time.Minute, 200},
		{"6 minutes after exp", time.Hour + 6*time.Minute, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.skew = tc.skew
			if got := r.send(t, nil, m365sim.BotSign{}); got != tc.want {
				err, _ := r.ep.last()
				t.Fatalf("status %d, want %d (err %v)", got, tc.want, err)
			}
		})
	}
}

func TestValidateRefetchesKeysAfterRotation(t *testing.T) {
	r := newAuthRig(t)
	if got := r.send(t, nil, m365sim.BotSign{}); got != 200 {
		t.Fatalf("status %d before rotation", got)
	}
	if n := r.keyFetches(); n != 1 {
		t.Fatalf("%d key fetches, want 1", n)
	}
	r.sim.RotateBotKeys()
	// The new kid is unknown, but the keys were fetched less than a minute ago.
	if got := r.send(t, nil, m365sim.BotSign{}); got != 401 {
		t.Fatalf("status %d for a new kid within a minute of the last fetch, want 401", got)
	}
	if n := r.keyFetches(); n != 1 {
		t.Fatalf("%d key fetches within a minute, want 1", n)
	}
	r.clk.Advance(time.Minute)
	if got := r.send(t, nil, m365sim.BotSign{}); got != 200 {
		t.Fatalf("status %d after rotation, want 200 after a refetch", got)
	}
	if n := r.keyFetches(); n != 2 {
		t.Fatalf("%d key fetches, want 2", n)
	}
	// Unknown kids do not refetch more than once a minute.
	for range 5 {
		if got := r.send(t, nil, m365sim.BotSign{UnknownKid: true}); got != 401 {
			t.Fatalf("status %d for an unknown kid", got)
		}
	}
	if n := r.keyFetches(); n != 2 {
		t.Fatalf("%d key fetches after unknown kids within a minute, want 2", n)
	}
	r.clk.Advance(30 * time.Second)
	if got := r.send(t, nil, m365sim.BotSign{}); got != 200 {
		t.Fatalf("status %d with a known kid", got)
	}
	if n := r.keyFetches(); n != 2 {
		t.Fatalf("%d key fetches for a known kid, want 2", n)
	}
	// The keys are refreshed daily.
	r.clk.Advance(24 * time.Hour)
	if got := r.send(t, nil, m365sim.BotSign{}); got != 200 {
		t.Fatalf("status %d a day later", got)
	}
	if n := r.keyFetches(); n != 3 {
		t.Fatalf("%d key fetches a day later, want 3", n)
	}
}

func TestValidateKeysUnavailable(t *testing.T) {
	r := newAuthRig(t)
	if err := r.sim.AddFault(m365sim.FaultRule{PathPrefix: "/botframework/", Status: http.StatusServiceUnavailable}); err != nil {
		t.Fatal(err)
	}
	if got := r.send(t, nil, m365sim.BotSign{}); got != 401 {
		t.Fatalf("status %d without keys, want 401", got)
	}
	r.sim.ClearFaults()
	if got := r.send(t, nil, m365sim.BotSign{}); got != 401 {
		t.Fatalf("status %d within a minute of the failed fetch, want 401", got)
	}
	r.clk.Advance(time.Minute)
	if got := r.send(t, nil, m365sim.BotSign{}); got != 200 {
		t.Fatalf("status %d once the keys are back, want 200", got)
	}
	// A failed daily refresh keeps the cached keys.
	r.clk.Advance(25 * time.Hour)
	if err := r.sim.AddFault(m365sim.FaultRule{PathPrefix: "/botframework/", Status: http.StatusServiceUnavailable}); err != nil {
		t.Fatal(err)
	}
	if got := r.send(t, nil, m365sim.BotSign{}); got != 200 {
		t.Fatalf("status %d when the daily refresh fails, want 200 with the cached keys", got)
	}
}

func TestValidateNeedsAppID(t *testing.T) {
	r := newAuthRig(t)
	v := botframework.NewValidator(botframework.ValidatorConfig{MetadataURL: r.sim.BotOpenIDMetadataURL(), HTTPClient: r.sim.HTTPClient(), Now: r.clk.Now})
	tok, err := r.sim.BotToken(r.sim.BotServiceURL(), m365sim.BotSign{})
	if err != nil {
		t.Fatal(err)
	}
	a := botframework.Activity{Type: "message", ChannelID: "msteams", ServiceURL: r.sim.BotServiceURL()}
	if err := v.Validate(context.Background(), "Bearer "+tok, a); !errors.Is(err, errkind.Unauthorized) {
		t.Fatalf("err %v without an app id, want Unauthorized", err)
	}
}

func TestInstallSendsSignedActivities(t *testing.T) {
	r := newAuthRig(t)
	r.sim.BotInstall(customerTenant, userID)
	r.sim.BotWait()
	got := r.ep.activities()
	if len(got) != 2 {
		t.Fatalf("got %d activities, want conversationUpdate and installationUpdate: %+v", len(got), got)
	}
	cu, iu := got[0], got[1]
	if cu.Type != "conversationUpdate" || len(cu.MembersAdded) != 1 || cu.MembersAdded[0].ID != "28:"+botAppID || cu.Recipient.ID != "28:"+botAppID {
		t.Errorf("conversationUpdate %+v", cu)
	}
	if cu.From.AADObjectID != userID || cu.From.ID != r.sim.BotUserID(customerTenant, userID) || cu.From.Name != "Ines Okafor" {
		t.Errorf("from %+v", cu.From)
	}
	if cu.Conversation.ID != r.sim.BotConversation(customerTenant, userID) || cu.Conversation.TenantID != customerTenant || cu.Conversation.ConversationType != "personal" || cu.TenantID() != customerTenant {
		t.Errorf("conversation %+v, tenant %q", cu.Conversation, cu.TenantID())
	}
	if cu.ServiceURL != r.sim.BotServiceURL() || cu.ChannelID != "msteams" {
		t.Errorf("serviceUrl %q channelId %q", cu.ServiceURL, cu.ChannelID)
	}
	if iu.Type != "installationUpdate" || iu.Action != "add" {
		t.Errorf("installationUpdate %+v", iu)
	}
}

func TestValidateRefusesHMACWithThePublicKey(t *testing.T) {
	r := newAuthRig(t)
	good, err := r.sim.BotToken(r.sim.BotServiceURL(), m365sim.BotSign{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.send(t, nil, m365sim.BotSign{Authorization: "Bearer " + good}); got != 200 {
		t.Fatalf("status %d for a good token", got)
	}
	// The same header and claims re-signed HS256 (the classic algorithm confusion, where the
	// public key serves as the HMAC secret): refused by algorithm, whatever the secret.
	parts := strings.Split(good, ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	hdr = []byte(strings.Replace(string(hdr), `"RS256"`, `"HS256"`, 1))
	signing := base64.RawURLEncoding.EncodeToString(hdr) + "." + parts[1]
	mac := hmac.New(sha256.New, []byte("anything public"))
	mac.Write([]byte(signing))
	forged := signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	if got := r.send(t, nil, m365sim.BotSign{Authorization: "Bearer " + forged}); got != 401 {
		t.Fatalf("status %d for an HS256 token, want 401", got)
	}
	// No kid at all.
	noKid := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]
	if got := r.send(t, nil, m365sim.BotSign{Authorization: "Bearer " + noKid}); got != 401 {
		t.Fatalf("status %d for a token without kid, want 401", got)
	}
}

// TestValidateConcurrentFirstActivities: several activities arriving at once on a validator
// that has no keys yet all wait for the one fetch and are accepted (a burst after a start, or
// the install activities of several people).
func TestValidateConcurrentFirstActivities(t *testing.T) {
	r := newAuthRig(t)
	// A slow keys document keeps the first fetch in flight while the others arrive.
	r.sim.AddFault(m365sim.FaultRule{PathPrefix: "/botframework/v1/.well-known/keys", Times: 1, Delay: 200 * time.Millisecond})
	const n = 8
	statuses := make(chan int, n)
	for range n {
		go func() { statuses <- r.send(t, nil, m365sim.BotSign{}) }()
	}
	for range n {
		if s := <-statuses; s != http.StatusOK {
			t.Errorf("an activity of the burst was answered %d", s)
		}
	}
	if f := r.keyFetches(); f != 1 {
		t.Errorf("%d key fetches for the burst, want 1", f)
	}
}
