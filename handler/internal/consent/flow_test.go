package consent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/consent"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// The rig's tenant, app and secret are testenv's; otherTen is a second tenant.
const (
	otherTen  = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
	publicURL = "https://leap.example.net"
	appURL    = "https://app.leap.example.net/settings/integrations?tab=m365"
)

var allRoles = []string{"User.Read.All", "GroupMember.Read.All", "Mail.Send"}

type rig struct {
	store *tablestore.Store
	sim   *m365sim.Server
	creds *m365auth.Credentials // our app's, with the right secret
	flow  *consent.Flow
	conns *connection.Store
	logs  *bytes.Buffer // the flow logs from the test's goroutine only
	now   time.Time
}

// newRig is the project's rig (testenv) with our app's redirect URI, permissions and role
// claims registered, a second tenant, the admin signed in to the first, and a consent flow.
func newRig(t *testing.T) *rig {
	t.Helper()
	env := testenv.New(t, testenv.Options{Domain: "fabrikam.example", NoConsent: true})
	sim := env.Sim
	sim.RegisterRedirectURI(testenv.ClientID, publicURL+consent.CallbackPath)
	if err := sim.SetAppPermissions(testenv.ClientID, allRoles...); err != nil {
		t.Fatal(err)
	}
	// Our app registration emits directory roles (wids) in ID tokens.
	if err := sim.SetGroupMembershipClaims(testenv.ClientID, "DirectoryRole"); err != nil {
		t.Fatal(err)
	}
	sim.AddTenant(otherTen, "contoso.example")
	if err := sim.SetSignedInTenant(testenv.Tenant); err != nil {
		t.Fatal(err)
	}
	r := &rig{store: env.Store, sim: sim, creds: env.Credentials(testenv.Secret), conns: connection.NewStore(env.Store),
		logs: new(bytes.Buffer), now: time.Now().UTC()}
	r.configure(func(*consent.Config) {})
	return r
}

// configure replaces r's flow with one configured as the rig's, changed by fn.
func (r *rig) configure(fn func(*consent.Config)) {
	cfg := consent.Config{
		Store: r.store, Connections: r.conns, Tokens: r.creds, ClientID: testenv.ClientID, AuthorityHost: r.sim.URL() + "/",
		PublicBaseURL: publicURL, LeapAppURL: appURL, Key: []byte("0123456789abcdef0123456789abcdef"),
		Now:    func() time.Time { return r.now },
		Sleep:  func(context.Context, time.Duration) error { return nil },
		Logger: slog.New(slog.NewJSONHandler(r.logs, nil)),
	}
	fn(&cfg)
	r.flow = consent.New(cfg)
}

// begin starts consent for o and returns the consent URL.
func (r *rig) begin(t *testing.T, o string) string {
	t.Helper()
	u, _, err := r.flow.Begin(t.Context(), tablestoretest.Org(t, o))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// admin plays the admin's browser at the consent URL and returns the callback query Entra sends.
func (r *rig) admin(t *testing.T, consentURL string) url.Values {
	t.Helper()
	return r.follow(t, consentURL)
}

// callback delivers q to the ConsentCallback handler and, when it sends the admin on to sign
// in, plays the browser through the simulated sign-in and delivers that callback too.
func (r *rig) callback(t *testing.T, q url.Values) *httptest.ResponseRecorder {
	t.Helper()
	rec := r.callbackOnce(t, q)
	if loc := rec.Header().Get("Location"); rec.Code == http.StatusFound && strings.HasPrefix(loc, r.sim.URL()) {
		return r.callbackOnce(t, r.follow(t, loc))
	}
	return rec
}

// callbackOnce delivers q to the ConsentCallback handler.
func (r *rig) callbackOnce(t *testing.T, q url.Values) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	r.flow.Callback().ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), "GET", consent.CallbackPath+"?"+q.Encode(), nil))
	return rec
}

// follow plays the browser at a simulated Entra page and returns the query it redirects to our
// callback with.
func (r *rig) follow(t *testing.T, u string) url.Values {
	t.Helper()
	hc := r.sim.HTTPClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), publicURL+consent.CallbackPath) {
		t.Fatalf("Entra answered %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query()
}

func (r *rig) record(t *testing.T, o string) connection.Record {
	t.Helper()
	rec, _, err := r.conns.Get(t.Context(), tablestoretest.Org(t, o))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// redirectToApp checks the redirect to the web app and returns its query.
func redirectToApp(t *testing.T, rec *httptest.ResponseRecorder) url.Values {
	t.Helper()
	loc, err := url.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), "https://app.leap.example.net/settings/integrations?") {
		t.Fatalf("callback answered %d %q, want a redirect to the web app: %s", rec.Code, rec.Header().Get("Location"), rec.Body.String())
	}
	if loc.Query().Get("tab") != "m365" {
		t.Errorf("LEAP_APP_URL's own query was lost: %s", loc)
	}
	return loc.Query()
}

// backToApp checks the redirect to the web app and plays the web app: a ticket to confirm is
// confirmed for the org the redirect names (as the web app does inside a session of that org).
// It returns the outcome as m365=connected|error, reason, missing.
func (r *rig) backToApp(t *testing.T, rec *httptest.ResponseRecorder) url.Values {
	t.Helper()
	q := redirectToApp(t, rec)
	if q.Get("m365") != "confirm" {
		return q
	}
	if q.Get("ticket") == "" {
		t.Fatalf("m365=confirm without a ticket: %v", q)
	}
	out, err := r.flow.Confirm(t.Context(), tablestoretest.Org(t, q.Get("org")), q.Get("ticket"))
	if err != nil {
		t.Fatalf("confirming the ticket for %s: %v", q.Get("org"), err)
	}
	res := url.Values{"org": {out.Org.String()}}
	if out.Connected {
		res.Set("m365", "connected")
		if len(out.Missing) > 0 {
			res.Set("missing", strings.Join(out.Missing, ","))
		}
	} else {
		res.Set("m365", "error")
		res.Set("reason", out.Reason)
	}
	return res
}

func TestConsentFlow(t *testing.T) {
	for _, tc := range []struct {
		name        string
		decision    *m365sim.ConsentDecision
		wantStatus  connection.Status
		wantResult  string
		wantReason  string
		wantMissing []string
	}{
		{name: "all granted", wantStatus: connection.Connected, wantResult: "connected"},
		{name: "partial grant", decision: &m365sim.ConsentDecision{Grant: true, Roles: []string{"User.Read.All"}},
			wantStatus: connection.Connected, wantResult: "connected", wantMissing: []string{"GroupMember.Read.All", "Mail.Send"}},
		{name: "refused", decision: &m365sim.ConsentDecision{Error: "access_denied", ErrorDescription: "AADSTS65004: User declined to consent to access the app."},
			wantStatus: connection.Failed, wantResult: "error", wantReason: "consent_denied"},
		{name: "error beside admin_consent=True", decision: &m365sim.ConsentDecision{Error: "consent_required", ErrorDescription: "AADSTS65004: declined", WithAdminConsentTrue: true},
			wantStatus: connection.Failed, wantResult: "error", wantReason: "consent_denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			if tc.decision != nil {
				if err := r.sim.SetConsentDecision(testenv.Tenant, *tc.decision); err != nil {
					t.Fatal(err)
				}
			}
			q := r.admin(t, r.begin(t, "acme"))
			if r.record(t, "acme").Status != connection.Pending {
				t.Errorf("status before the callback = %s, want pending", r.record(t, "acme").Status)
			}
			back := r.backToApp(t, r.callback(t, q))
			if back.Get("m365") != tc.wantResult || back.Get("reason") != tc.wantReason || back.Get("org") != "acme" {
				t.Errorf("back to the app with %v", back)
			}
			rec := r.record(t, "acme")
			if rec.Status != tc.wantStatus || !slices.Equal(rec.Missing, tc.wantMissing) {
				t.Errorf("record = %+v, want status %s missing %v", rec, tc.wantStatus, tc.wantMissing)
			}
			if tc.wantStatus == connection.Connected {
				if rec.TenantID != testenv.Tenant || rec.ConnectedAt.IsZero() {
					t.Errorf("record = %+v, want tenant %s", rec, testenv.Tenant)
				}
				if len(tc.wantMissing) > 0 && !strings.Contains(rec.ErrorHint, "GroupMember.Read.All (for group filter and group sync)") {
					t.Errorf("hint %q does not name what is missing and why", rec.ErrorHint)
				}
			} else if rec.LastError == "" || !strings.Contains(rec.ErrorHint, "Check admin permissions") {
				t.Errorf("failure without reason or hint: %+v", rec)
			}
			if strings.Contains(r.logs.String(), testenv.Secret) {
				t.Error("the app secret reached the logs")
			}
		})
	}
}

func TestBadStatesWriteNothing(t *testing.T) {
	r := newRig(t)
	q := r.admin(t, r.begin(t, "acme"))
	before := r.record(t, "acme")

	forged := url.Values{}
	for k, v := range q {
		forged[k] = v
	}
	forged.Set("state", "s1.eyJvIjoiYWNtZSIsIm4iOiJ4IiwiZSI6OTk5OTk5OTk5OX0.AAAA")
	missing := url.Values{"admin_consent": {"True"}, "tenant": {testenv.Tenant}}
	for name, query := range map[string]url.Values{"forged": forged, "missing": missing} {
		if rec := r.callback(t, query); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "invalid-consent-state") {
			t.Errorf("%s state: %d %s, want 400 invalid-consent-state", name, rec.Code, rec.Body.String())
		}
	}
	if after := r.record(t, "acme"); after.Status != before.Status || after.UpdatedAt != before.UpdatedAt {
		t.Errorf("a bad state changed the record: %+v → %+v", before, after)
	}

	// The real state works once; a replay is refused and changes nothing.
	r.backToApp(t, r.callback(t, q))
	connected := r.record(t, "acme")
	r.now = r.now.Add(time.Minute)
	if rec := r.callback(t, q); rec.Code != http.StatusBadRequest {
		t.Errorf("replayed state: %d, want 400", rec.Code)
	}
	if r.record(t, "acme").UpdatedAt != connected.UpdatedAt {
		t.Error("a replayed state changed the record")
	}

	// An expired state is refused.
	q2 := r.admin(t, r.begin(t, "acme"))
	r.now = r.now.Add(11 * time.Minute)
	if rec := r.callback(t, q2); rec.Code != http.StatusBadRequest {
		t.Errorf("expired state: %d, want 400", rec.Code)
	}
}

func TestCallbackNeverTrustsTheQuery(t *testing.T) {
	r := newRig(t)
	// The attacker starts consent for their own org and rewrites the callback's tenant to a
	// tenant that never consented: the token proof fails, and only the attacker's org is touched.
	q := r.admin(t, r.begin(t, "attacker"))
	q.Set("tenant", otherTen)
	back := r.backToApp(t, r.callback(t, q))
	if back.Get("m365") != "error" || back.Get("reason") != "signin_failed" {
		t.Errorf("tampered tenant: back with %v", back)
	}
	if rec := r.record(t, "attacker"); rec.Status != connection.Failed || rec.TenantID != "" {
		t.Errorf("attacker's record = %+v", rec)
	}
	if rec := r.record(t, "victim"); rec.Status != connection.Disconnected {
		t.Errorf("another org was touched: %+v", rec)
	}
}

func TestRevokedSecret(t *testing.T) {
	r := newRig(t)
	r.sim.RevokeSecret(testenv.ClientID, testenv.Secret)
	back := r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme"))))
	rec := r.record(t, "acme")
	if back.Get("reason") != "signin_failed" || rec.Status != connection.Failed || !strings.Contains(rec.LastError, "AADSTS7000215") {
		t.Errorf("back %v, record %+v; want a stored AADSTS7000215 failure", back, rec)
	}
	if strings.Contains(r.logs.String(), testenv.Secret) || strings.Contains(rec.LastError, testenv.Secret) {
		t.Error("the secret was logged or stored")
	}
}

func TestOneTenantOneOrg(t *testing.T) {
	r := newRig(t)
	r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "first"))))

	back := r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "second"))))
	if back.Get("reason") != "tenant_in_use" || r.record(t, "second").Status != connection.Failed {
		t.Errorf("second org on the same tenant: %v, %+v", back, r.record(t, "second"))
	}
	// Once the first org disconnects, the tenant is free.
	if err := r.flow.Disconnect(t.Context(), tablestoretest.Org(t, "first")); err != nil {
		t.Fatal(err)
	}
	if back := r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "second")))); back.Get("m365") != "connected" {
		t.Errorf("after the first org disconnected: %v", back)
	}
	if rec := r.record(t, "first"); rec.Status != connection.Disconnected {
		t.Errorf("first = %+v, want disconnected", rec)
	}
}

func TestReauthorizationRestoresTheConnection(t *testing.T) {
	r := newRig(t)
	r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme"))))
	if err := r.conns.NeedsReauthorization(t.Context(), tablestoretest.Org(t, "acme"), "AADSTS7000222: secret expired", r.now); err != nil {
		t.Fatal(err)
	}
	// Starting re-authorization keeps the status visible until the admin finishes.
	q := r.admin(t, r.begin(t, "acme"))
	if s := r.record(t, "acme").Status; s != connection.NeedsReauthorization {
		t.Errorf("status during re-authorization = %s", s)
	}
	r.backToApp(t, r.callback(t, q))
	if rec := r.record(t, "acme"); rec.Status != connection.Connected || rec.LastError != "" {
		t.Errorf("after re-consent: %+v, want connected without error", rec)
	}
}

func TestExpiredStatesAreDropped(t *testing.T) {
	r := newRig(t)
	for range 3 {
		r.begin(t, "acme") // abandoned attempts
	}
	r.now = r.now.Add(time.Hour)
	q := r.admin(t, r.begin(t, "acme"))
	if n := r.countStates(t, "acme"); n != 1 {
		t.Errorf("%d consent states stored, want only the live one", n)
	}
	r.backToApp(t, r.callback(t, q))
	if n := r.countStates(t, "acme"); n != 0 {
		t.Errorf("%d consent states left after the callback, want 0", n)
	}
}

func (r *rig) countStates(t *testing.T, o string) int {
	t.Helper()
	return tablestoretest.Count(t, r.store.Table("consentstates"), tablestoretest.Org(t, o))
}

// refusingGroups is what Graph says when GroupMember.Read.All is in the token but the call is
// refused anyway (consent still propagating, or a tenant policy).
type refusingGroups struct{}

func (refusingGroups) CheckAccess(context.Context, string) (map[string]bool, error) {
	return map[string]bool{"User.Read.All": true, "GroupMember.Read.All": false}, nil
}

func TestGraphRefusalOverridesTheToken(t *testing.T) {
	r := newRig(t)
	r.configure(func(c *consent.Config) { c.Access = refusingGroups{} })
	back := r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme"))))
	rec := r.record(t, "acme")
	if back.Get("missing") != "GroupMember.Read.All" || !slices.Equal(rec.Missing, []string{"GroupMember.Read.All"}) || !slices.Equal(rec.Granted, []string{"User.Read.All", "Mail.Send"}) {
		t.Errorf("back %v, record %+v; want GroupMember.Read.All missing", back, rec)
	}
}

// TestConsentElsewhereIsNoProof: a tenant that consented to our app once (for another org that
// has since disconnected) cannot be claimed by a forged callback: the flow wants the tenant's
// administrator to sign in, and someone from another tenant cannot.
func TestConsentElsewhereIsNoProof(t *testing.T) {
	r := newRig(t)
	r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "victim"))))
	must(t, r.flow.Disconnect(t.Context(), tablestoretest.Org(t, "victim")))

	// The attacker signs in as the administrator of their own tenant.
	if err := r.sim.SetSignedInTenant(otherTen); err != nil {
		t.Fatal(err)
	}
	u, _, err := r.flow.Begin(t.Context(), tablestoretest.Org(t, "attacker"))
	if err != nil {
		t.Fatal(err)
	}
	state, _ := url.Parse(u)
	forged := url.Values{"admin_consent": {"True"}, "tenant": {testenv.Tenant}, "state": {state.Query().Get("state")}}
	back := r.backToApp(t, r.callback(t, forged))
	if back.Get("m365") != "error" || back.Get("reason") != "signin_failed" {
		t.Errorf("forged callback: back with %v", back)
	}
	if rec := r.record(t, "attacker"); rec.Status == connection.Connected || rec.TenantID != "" {
		t.Errorf("attacker's record = %+v", rec)
	}
}

func TestOnlyAConsentAdminConnects(t *testing.T) {
	r := newRig(t)
	must(t, r.sim.SetSignedInUser(testenv.Tenant, m365sim.SignedInUser{ObjectID: "4d1b8c2e-0000-4000-8000-000000000001", UserPrincipalName: "clerk@fabrikam.example", Name: "Clerk"}))
	back := r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme"))))
	rec := r.record(t, "acme")
	if back.Get("reason") != "not_admin" || rec.Status != connection.Failed || !strings.Contains(rec.LastError, "clerk@fabrikam.example") {
		t.Errorf("back %v, record %+v", back, rec)
	}
	// Application and Cloud Application Administrators cannot grant Microsoft Graph application
	// permissions (Microsoft documents it), so their sign-in proves nothing.
	for i, role := range []string{m365sim.RoleApplicationAdministrator, m365sim.RoleCloudApplicationAdministrator} {
		must(t, r.sim.SetSignedInUser(testenv.Tenant, m365sim.SignedInUser{ObjectID: fmt.Sprintf("4d1b8c2e-0000-4000-8000-00000000001%d", i), UserPrincipalName: "apps@fabrikam.example",
			DirectoryRoles: []string{role}}))
		back := r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme"))))
		if rec := r.record(t, "acme"); back.Get("reason") != "not_admin" || rec.Status == connection.Connected {
			t.Errorf("role %s: back %v, record %+v; want not_admin", role, back, rec)
		}
	}
	// A Privileged Role Administrator may grant consent.
	must(t, r.sim.SetSignedInUser(testenv.Tenant, m365sim.SignedInUser{ObjectID: "4d1b8c2e-0000-4000-8000-000000000002", UserPrincipalName: "roles@fabrikam.example",
		DirectoryRoles: []string{m365sim.RolePrivilegedRoleAdministrator}}))
	r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme"))))
	if rec := r.record(t, "acme"); rec.Status != connection.Connected || rec.ConnectedBy != "roles@fabrikam.example" {
		t.Errorf("record = %+v, want connected by roles@fabrikam.example", rec)
	}
}

// TestSignInMustCarryTheNonce: a sign-in whose ID token carries another nonce than the one bound
// into the state (an authorization code injected from another sign-in) proves nothing.
func TestSignInMustCarryTheNonce(t *testing.T) {
	r := newRig(t)
	signIn := r.callbackOnce(t, r.admin(t, r.begin(t, "acme")))
	u, err := url.Parse(signIn.Header().Get("Location"))
	if signIn.Code != http.StatusFound || err != nil || !strings.HasPrefix(u.String(), r.sim.URL()) || u.Query().Get("nonce") == "" {
		t.Fatalf("first leg answered %d %q, want a sign-in with a nonce", signIn.Code, signIn.Header().Get("Location"))
	}
	q := u.Query()
	q.Set("nonce", "another-sign-ins-nonce")
	u.RawQuery = q.Encode()
	back := r.backToApp(t, r.callbackOnce(t, r.follow(t, u.String())))
	rec := r.record(t, "acme")
	if back.Get("m365") != "error" || back.Get("reason") != "signin_failed" || rec.Status != connection.Failed || !strings.Contains(rec.LastError, "does not belong") {
		t.Errorf("back %v, record %+v; want a sign-in failure", back, rec)
	}
}

func TestTenantChangeNeedsADisconnect(t *testing.T) {
	r := newRig(t)
	r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme"))))
	must(t, r.sim.SetSignedInTenant(otherTen))
	back := r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme"))))
	if rec := r.record(t, "acme"); back.Get("reason") != "tenant_changed" || rec.Status != connection.Connected || rec.TenantID != testenv.Tenant {
		t.Errorf("back %v, record %+v; want the first tenant kept", back, rec)
	}
	must(t, r.flow.Disconnect(t.Context(), tablestoretest.Org(t, "acme")))
	r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme"))))
	if rec := r.record(t, "acme"); rec.Status != connection.Connected || rec.TenantID != otherTen {
		t.Errorf("after disconnecting: %+v, want connected to %s", rec, otherTen)
	}
}

func TestDisconnectDuringTheFlowWins(t *testing.T) {
	r := newRig(t)
	q := r.admin(t, r.begin(t, "acme"))
	r.now = r.now.Add(time.Second)
	must(t, r.flow.Disconnect(t.Context(), tablestoretest.Org(t, "acme")))
	r.now = r.now.Add(time.Second)
	back := r.backToApp(t, r.callback(t, q))
	if rec := r.record(t, "acme"); back.Get("reason") != "disconnected" || rec.Status != connection.Disconnected {
		t.Errorf("back %v, record %+v; want the disconnect to stand", back, rec)
	}
	// The tenant is free for another org.
	r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "other"))))
	if rec := r.record(t, "other"); rec.Status != connection.Connected {
		t.Errorf("other org: %+v", rec)
	}
}

// tampered changes the ticket's first character to a different one (a fixed replacement
// would sometimes equal the original).
func tampered(ticket string) string {
	c := byte('A')
	if ticket[0] == c {
		c = 'B'
	}
	return string(c) + ticket[1:]
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTheWebAppConfirmsForTheOrgThatStarted: the callback binds nothing; the tenant is bound
// only when the web app confirms the ticket for the org that started the flow. An org that
// sends its consent link to another tenant's admin gets nothing: the ticket lands in that
// admin's browser, and confirmed in any other org's session it is refused. A ticket works once
// and only for a while.
func TestTheWebAppConfirmsForTheOrgThatStarted(t *testing.T) {
	r := newRig(t)
	back := redirectToApp(t, r.callback(t, r.admin(t, r.begin(t, "attacker"))))
	ticket := back.Get("ticket")
	if back.Get("m365") != "confirm" || back.Get("org") != "attacker" || ticket == "" {
		t.Fatalf("back to the app with %v, want a ticket to confirm for attacker", back)
	}
	if rec := r.record(t, "attacker"); rec.Status != connection.Pending || rec.TenantID != "" {
		t.Errorf("before the confirmation: %+v, want pending without a tenant", rec)
	}
	if n := r.countBindings(t, testenv.Tenant); n != 0 {
		t.Errorf("the callback wrote %d tenant bindings, want none before the confirmation", n)
	}

	// The admin is signed in to Leap Change in their own org: its web app confirms there.
	for _, tc := range []struct{ org, ticket string }{
		{"victim", ticket},
		{"attacker", tampered(ticket)},
		{"attacker", ticket + "A"},
		{"attacker", ""},
	} {
		if _, err := r.flow.Confirm(t.Context(), tablestoretest.Org(t, tc.org), tc.ticket); !errors.Is(err, consent.ErrBadTicket) {
			t.Errorf("confirming %q for %s: %v, want ErrBadTicket", tc.ticket, tc.org, err)
		}
	}
	if rec := r.record(t, "victim"); rec.Status != connection.Disconnected {
		t.Errorf("victim = %+v, want untouched", rec)
	}
	if rec := r.record(t, "attacker"); rec.Status != connection.Pending || rec.TenantID != "" {
		t.Errorf("attacker = %+v, want still pending", rec)
	}
	if n := r.countBindings(t, testenv.Tenant); n != 0 {
		t.Errorf("%d tenant bindings after refused confirmations, want none", n)
	}

	// In the session of the org that started it, the ticket connects, once.
	out, err := r.flow.Confirm(t.Context(), tablestoretest.Org(t, "attacker"), ticket)
	if err != nil || !out.Connected {
		t.Fatalf("Confirm = %+v, %v", out, err)
	}
	connected := r.record(t, "attacker")
	if connected.Status != connection.Connected || connected.TenantID != testenv.Tenant {
		t.Errorf("after the confirmation: %+v", connected)
	}
	r.now = r.now.Add(time.Minute)
	if _, err := r.flow.Confirm(t.Context(), tablestoretest.Org(t, "attacker"), ticket); !errors.Is(err, consent.ErrBadTicket) {
		t.Errorf("reused ticket: %v, want ErrBadTicket", err)
	}
	if rec := r.record(t, "attacker"); !rec.UpdatedAt.Equal(connected.UpdatedAt) {
		t.Error("a reused ticket changed the record")
	}

	// An expired ticket changes nothing.
	must(t, r.flow.Disconnect(t.Context(), tablestoretest.Org(t, "attacker")))
	r.now = r.now.Add(time.Minute)
	late := redirectToApp(t, r.callback(t, r.admin(t, r.begin(t, "late"))))
	r.now = r.now.Add(11 * time.Minute)
	if _, err := r.flow.Confirm(t.Context(), tablestoretest.Org(t, "late"), late.Get("ticket")); !errors.Is(err, consent.ErrBadTicket) {
		t.Errorf("expired ticket: %v, want ErrBadTicket", err)
	}
	if rec := r.record(t, "late"); rec.Status != connection.Pending || rec.TenantID != "" {
		t.Errorf("after an expired ticket: %+v, want pending", rec)
	}
	if strings.Contains(r.logs.String(), ticket) {
		t.Error("a ticket reached the logs")
	}
}

func (r *rig) countBindings(t *testing.T, tenant string) int {
	t.Helper()
	return tablestoretest.Count(t, r.store.Table("tenantbindings"), tablestoretest.Org(t, tenant))
}

// TestSharingATenantIsAnOperatorDecision: no request of an org can share a tenant; a row an
// operator writes into the tenant's partition of tenantbindings can.
func TestSharingATenantIsAnOperatorDecision(t *testing.T) {
	r := newRig(t)
	r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "first"))))
	if back := r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "second")))); back.Get("reason") != "tenant_in_use" {
		t.Fatalf("second org without the operator's decision: %v, want tenant_in_use", back)
	}
	if _, err := r.store.Table("tenantbindings").Insert(t.Context(), tablestoretest.Org(t, testenv.Tenant), connection.SharedKey,
		map[string]any{"decidedBy": "ops@leapchange.example", "reason": "one customer, two Leap Change orgs"}); err != nil {
		t.Fatal(err)
	}
	if back := r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "second")))); back.Get("m365") != "connected" {
		t.Errorf("second org after the operator allowed sharing: %v", back)
	}
	for _, o := range []string{"first", "second"} {
		if rec := r.record(t, o); rec.Status != connection.Connected || rec.TenantID != testenv.Tenant {
			t.Errorf("%s = %+v, want connected to %s", o, rec, testenv.Tenant)
		}
	}
}

// otherTenantSignIn redeems codes as the real credentials do, then reports the ID token of an
// admin of another tenant: what a code from another tenant would look like if Entra let it by.
type otherTenantSignIn struct{ *m365auth.Credentials }

func (o otherTenantSignIn) RedeemCode(ctx context.Context, tenant, code, redirectURI string) (m365auth.SignIn, error) {
	who, err := o.Credentials.RedeemCode(ctx, tenant, code, redirectURI)
	who.TenantID = otherTen
	return who, err
}

// TestSignInMustBeInTheConsentedTenant: the ID token's tenant is compared with the tenant that
// consented. Otherwise an admin of a tenant that consented once before (here otherTen, whose
// org has since disconnected) could get that tenant bound through another tenant's consent.
func TestSignInMustBeInTheConsentedTenant(t *testing.T) {
	r := newRig(t)
	must(t, r.sim.SetSignedInTenant(otherTen))
	r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "earlier"))))
	must(t, r.flow.Disconnect(t.Context(), tablestoretest.Org(t, "earlier")))
	must(t, r.sim.SetSignedInTenant(testenv.Tenant))

	r.configure(func(c *consent.Config) { c.Tokens = otherTenantSignIn{r.creds} })
	back := r.backToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme"))))
	rec := r.record(t, "acme")
	if back.Get("reason") != "signin_failed" || rec.Status == connection.Connected || rec.TenantID != "" || !strings.Contains(rec.LastError, "another tenant") {
		t.Errorf("back %v, record %+v; want a sign-in failure naming the other tenant", back, rec)
	}
}

// hookFirstGet runs hook once, right after its first Get has read: a deterministic interleaving
// of two confirmations.
type hookFirstGet struct {
	*connection.Store
	hook func()
	done *bool
}

func (h hookFirstGet) Get(ctx context.Context, o tablestore.Org) (connection.Record, tablestore.ETag, error) {
	rec, e, err := h.Store.Get(ctx, o)
	if !*h.done {
		*h.done = true
		h.hook()
	}
	return rec, e, err
}

// TestConfirmsOfTwoTenantsBindOne: two tickets of one org for two tenants, the second confirmed
// while the first completes in between, must not leave both tenants bound (the first for ever,
// since the record names only one): the later one is refused as tenant_changed and releases its
// claim.
func TestConfirmsOfTwoTenantsBindOne(t *testing.T) {
	r := newRig(t)
	t1 := redirectToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme")))).Get("ticket")
	must(t, r.sim.SetSignedInTenant(otherTen))
	t2 := redirectToApp(t, r.callback(t, r.admin(t, r.begin(t, "acme")))).Get("ticket")
	if t1 == "" || t2 == "" {
		t.Fatalf("tickets %q %q", t1, t2)
	}
	done := false
	f2 := consent.New(consent.Config{Store: r.store, Key: []byte("0123456789abcdef0123456789abcdef"), Now: func() time.Time { return r.now },
		Connections: hookFirstGet{r.conns, func() {
			if out, err := r.flow.Confirm(t.Context(), tablestoretest.Org(t, "acme"), t1); err != nil || !out.Connected {
				t.Errorf("first confirmation = %+v, %v", out, err)
			}
		}, &done}})
	out, err := f2.Confirm(t.Context(), tablestoretest.Org(t, "acme"), t2)
	if err != nil || out.Connected || out.Reason != "tenant_changed" {
		t.Errorf("second confirmation = %+v, %v; want tenant_changed", out, err)
	}
	if rec := r.record(t, "acme"); rec.TenantID != testenv.Tenant || rec.Status != connection.Connected {
		t.Errorf("record = %+v, want connected to the first tenant", rec)
	}
	if n := r.countBindings(t, otherTen); n != 0 {
		t.Errorf("the refused tenant keeps %d binding rows", n)
	}
	must(t, r.flow.Disconnect(t.Context(), tablestoretest.Org(t, "acme")))
	if n1, n2 := r.countBindings(t, testenv.Tenant), r.countBindings(t, otherTen); n1+n2 != 0 {
		t.Errorf("after Disconnect bindings remain: %d and %d", n1, n2)
	}
}
