package richnotify_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/richnotify"
	"github.com/leapchange/m365/handler/internal/testenv"
)

const (
	tenantID    = "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b"
	otherTenant = "7d0c1e2f-3a4b-4c5d-8e9f-0a1b2c3d4e5f"
	appID       = "8e460676-ae3f-4b1e-8790-ee0fb5d6148f"
)

// tokenRig is the simulated tenant (which signs validation tokens with its identity keys) and a
// validator reading the keys the sim serves at /common/discovery/v2.0/keys, on one clock.
type tokenRig struct {
	sim *m365sim.Server
	clk *testenv.Clock
	v   *richnotify.TokenValidator
}

func newTokenRig(t *testing.T) *tokenRig {
	t.Helper()
	r := &tokenRig{clk: testenv.NewClock(testNow)}
	r.sim = testenv.StartSim(t, m365sim.Options{Clock: r.clk.Now})
	r.sim.AddTenant(tenantID, "contoso.example")
	r.sim.AddTenant(otherTenant, "fabrikam.example")
	r.v = richnotify.NewTokenValidator(richnotify.TokenConfig{
		KeysURL:    r.sim.URL() + "/common/discovery/v2.0/keys",
		AppID:      appID,
		HTTPClient: r.sim.HTTPClient(),
		Now:        r.clk.Now,
	})
	return r
}

func (r *tokenRig) token(t *testing.T, o m365sim.ValidationTokenOptions) string {
	t.Helper()
	tok, err := r.sim.ValidationTokenWith(tenantID, appID, o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestValidateToken(t *testing.T) {
	r := newTokenRig(t)
	plain, err := r.sim.ValidationToken(tenantID, appID)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.v.Validate(t.Context(), plain, tenantID); err != nil {
		t.Fatalf("ValidationToken: %v", err)
	}
	for _, tc := range []struct {
		name   string
		o      m365sim.ValidationTokenOptions
		tenant string // the notification's tenantId; default tenantID
		ok     bool
	}{
		{name: "v2 token", ok: true},
		{name: "v1 token (sts issuer, appid)", o: m365sim.ValidationTokenOptions{V1: true}, ok: true},
		{name: "v2 token with the sts issuer", o: m365sim.ValidationTokenOptions{Issuer: "https://sts.windows.net/" + tenantID + "/"}, ok: true},
		{name: "v1 token with the v2.0 issuer", o: m365sim.ValidationTokenOptions{V1: true, Issuer: "https://login.microsoftonline.com/" + tenantID + "/v2.0"}, ok: true},
		{name: "tenant id in another case", tenant: strings.ToUpper(tenantID), ok: true},
		{name: "not yet valid within the skew", o: m365sim.ValidationTokenOptions{NotBefore: 4 * time.Minute}, ok: true},
		{name: "not yet valid beyond the skew", o: m365sim.ValidationTokenOptions{NotBefore: 6 * time.Minute}},
		{name: "expired", o: m365sim.ValidationTokenOptions{Expired: true}},
		{name: "bad signature", o: m365sim.ValidationTokenOptions{WrongKey: true}},
		{name: "unknown kid", o: m365sim.ValidationTokenOptions{UnknownKid: true}},
		{name: "wrong audience", o: m365sim.ValidationTokenOptions{Audience: "00000000-1111-2222-3333-444444444444"}},
		{name: "issued for another app (azp)", o: m365sim.ValidationTokenOptions{Publisher: "11111111-2222-3333-4444-555555555555"}},
		{name: "issued for another app (v1 appid)", o: m365sim.ValidationTokenOptions{V1: true, Publisher: "11111111-2222-3333-4444-555555555555"}},
		{name: "tid of another tenant", o: m365sim.ValidationTokenOptions{TenantClaim: otherTenant}},
		{name: "notification of another tenant", tenant: otherTenant},
		{name: "no tenant on the notification", tenant: " "},
		{name: "issuer of another tenant", o: m365sim.ValidationTokenOptions{Issuer: "https://login.microsoftonline.com/" + otherTenant + "/v2.0"}},
		{name: "issuer of another authority", o: m365sim.ValidationTokenOptions{Issuer: "https://login.example.com/" + tenantID + "/v2.0"}},
		{name: "issuer without the version", o: m365sim.ValidationTokenOptions{Issuer: "https://login.microsoftonline.com/" + tenantID + "/"}},
		{name: "the sim's own access-token issuer", o: m365sim.ValidationTokenOptions{Issuer: r.sim.URL() + "/" + tenantID + "/v2.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tenant := tc.tenant
			if tenant == "" {
				tenant = tenantID
			}
			tenant = strings.TrimSpace(tenant)
			err := r.v.Validate(t.Context(), r.token(t, tc.o), tenant)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tc.ok && !errors.Is(err, errkind.Unauthorized):
				t.Fatalf("err %v, want Unauthorized", err)
			}
		})
	}
}

func TestValidateTokenRefusesForgeries(t *testing.T) {
	r := newTokenRig(t)
	good := r.token(t, m365sim.ValidationTokenOptions{})
	parts := strings.Split(good, ".")
	reheader := func(hdr string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." + parts[1]
	}
	hs := reheader(`{"alg":"HS256","typ":"JWT"}`)
	mac := hmac.New(sha256.New, []byte("anything public"))
	mac.Write([]byte(hs))
	var claims map[string]any
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(payload, &claims)
	for name, tok := range map[string]string{
		"empty":             "",
		"garbage":           "not a token",
		"HS256":             hs + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)),
		"alg none":          reheader(`{"alg":"none","typ":"JWT"}`) + ".",
		"no kid":            reheader(`{"alg":"RS256","typ":"JWT"}`) + "." + parts[2],
		"RS384 header":      reheader(`{"alg":"RS384","typ":"JWT","kid":"x"}`) + "." + parts[2],
		"signature dropped": parts[0] + "." + parts[1] + ".",
	} {
		if err := r.v.Validate(t.Context(), tok, tenantID); !errors.Is(err, errkind.Unauthorized) {
			t.Errorf("%s: err %v, want Unauthorized", name, err)
		} else if good != "" && strings.Contains(err.Error(), parts[2]) {
			t.Errorf("%s: the error quotes the token", name)
		}
	}
	noApp := richnotify.NewTokenValidator(richnotify.TokenConfig{KeysURL: r.sim.URL() + "/common/discovery/v2.0/keys", HTTPClient: r.sim.HTTPClient(), Now: r.clk.Now})
	if err := noApp.Validate(t.Context(), good, tenantID); !errors.Is(err, errkind.Unauthorized) {
		t.Errorf("no app id: err %v, want Unauthorized", err)
	}
}

// keysProxy serves a JWKS: before the rotation one without the sim's key (a key set of
// yesterday), after it the sim's own (/common/discovery/v2.0/keys). It counts fetches and can
// hold them (to gather concurrent callers).
type keysProxy struct {
	srv     *httptest.Server
	rotated atomic.Bool
	fetches atomic.Int64
	hold    chan struct{} // when not nil, fetches wait for it to close
	started chan struct{} // receives once a fetch has begun (when there is room)
}

func newKeysProxy(t *testing.T, sim *m365sim.Server) *keysProxy {
	p := &keysProxy{started: make(chan struct{}, 1)}
	c := cert(t, "other")
	n := base64.RawURLEncoding.EncodeToString(c.Key.N.Bytes())
	stale := `{"keys":[{"kty":"RSA","use":"sig","kid":"yesterday","n":"` + n + `","e":"AQAB"}]}`
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		select {
		case p.started <- struct{}{}:
		default:
		}
		if p.hold != nil {
			<-p.hold
		}
		w.Header().Set("Content-Type", "application/json")
		if !p.rotated.Load() {
			io.WriteString(w, stale)
			return
		}
		resp, err := sim.HTTPClient().Get(sim.URL() + "/common/discovery/v2.0/keys")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func TestValidateTokenRefetchesKeysAfterRotation(t *testing.T) {
	r := newTokenRig(t)
	p := newKeysProxy(t, r.sim)
	v := richnotify.NewTokenValidator(richnotify.TokenConfig{KeysURL: p.srv.URL, AppID: appID, Now: r.clk.Now})
	tok := r.token(t, m365sim.ValidationTokenOptions{})
	validate := func() error { return v.Validate(context.Background(), tok, tenantID) }

	if err := validate(); !errors.Is(err, errkind.Unauthorized) {
		t.Fatalf("kid not published yet: err %v, want Unauthorized", err)
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	p.rotated.Store(true)
	// Published now, but the keys were fetched less than a minute ago.
	for range 3 {
		if err := validate(); !errors.Is(err, errkind.Unauthorized) {
			t.Fatalf("within a minute of the last fetch: err %v, want Unauthorized", err)
		}
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches within a minute, want 1", n)
	}
	r.clk.Advance(time.Minute)
	if err := validate(); err != nil {
		t.Fatalf("after the rotation and a minute: %v", err)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// Known kid: no fetch. Unknown kids: at most one fetch a minute.
	unknown := r.token(t, m365sim.ValidationTokenOptions{UnknownKid: true})
	for range 5 {
		if err := validate(); err != nil {
			t.Fatal(err)
		}
		if err := v.Validate(context.Background(), unknown, tenantID); !errors.Is(err, errkind.Unauthorized) {
			t.Fatalf("unknown kid: err %v", err)
		}
	}
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// Daily refresh.
	r.clk.Advance(24 * time.Hour)
	tok = r.token(t, m365sim.ValidationTokenOptions{})
	if err := validate(); err != nil {
		t.Fatal(err)
	}
	if n := p.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches a day later, want 3", n)
	}
}

// Several notifications validated at once on a validator without keys wait for one fetch.
func TestValidateTokenConcurrentFirstUse(t *testing.T) {
	r := newTokenRig(t)
	p := newKeysProxy(t, r.sim)
	p.rotated.Store(true)
	p.hold = make(chan struct{})
	v := richnotify.NewTokenValidator(richnotify.TokenConfig{KeysURL: p.srv.URL, AppID: appID, Now: r.clk.Now})
	tok := r.token(t, m365sim.ValidationTokenOptions{})
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() { errs <- v.Validate(context.Background(), tok, tenantID) }()
	}
	// Release the fetch once it has started; the others are queued behind it or find the keys.
	<-p.started
	close(p.hold)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("a concurrent validation failed: %v", err)
		}
	}
	if f := p.fetches.Load(); f != 1 {
		t.Errorf("%d fetches, want 1", f)
	}
}

// Keys that cannot be fetched refuse tokens (Unauthorized), and are tried again a minute later.
func TestValidateTokenKeysUnavailable(t *testing.T) {
	r := newTokenRig(t)
	var down atomic.Bool
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		resp, err := r.sim.HTTPClient().Get(r.sim.URL() + "/common/discovery/v2.0/keys")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	v := richnotify.NewTokenValidator(richnotify.TokenConfig{KeysURL: srv.URL, AppID: appID, Now: r.clk.Now})
	tok := r.token(t, m365sim.ValidationTokenOptions{})
	if err := v.Validate(t.Context(), tok, tenantID); !errors.Is(err, errkind.Unauthorized) {
		t.Fatalf("keys down: err %v, want Unauthorized", err)
	}
	down.Store(false)
	r.clk.Advance(time.Minute)
	if err := v.Validate(t.Context(), tok, tenantID); err != nil {
		t.Fatalf("keys back: %v", err)
	}
}
