package m365sim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

const (
	redirectURI  = "https://leap-func.example.net/api/consent/callback"
	graphDefault = "https://graph.microsoft.com/.default"
)

// consentSim is newSim with tenant B not yet consented, a redirect URI, three configured
// permissions and B's admin signed in.
func consentSim(t *testing.T) *m365sim.Server {
	t.Helper()
	sim, _ := newSim(t, m365sim.Options{})
	sim.RegisterRedirectURI(clientID, redirectURI)
	if err := sim.SetAppPermissions(clientID, "User.Read.All", "GroupMember.Read.All", "Mail.Send"); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetSignedInTenant(tenantB); err != nil {
		t.Fatal(err)
	}
	return sim
}

type consentAnswer struct {
	status   int
	location *url.URL // nil when there is no Location header
	query    url.Values
	body     string
}

// adminConsent sends the admin's browser to {sim}/{pathTenant}/v2.0/adminconsent without
// following the redirect.
func adminConsent(t *testing.T, sim *m365sim.Server, pathTenant string, q url.Values) consentAnswer {
	t.Helper()
	return browse(t, sim, "/"+pathTenant+"/v2.0/adminconsent", q)
}

// browse GETs path?q on the sim as a browser would, without following a redirect.
func browse(t *testing.T, sim *m365sim.Server, path string, q url.Values) consentAnswer {
	t.Helper()
	c := sim.HTTPClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(sim.URL() + path + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := consentAnswer{status: resp.StatusCode, body: string(b)}
	if loc := resp.Header.Get("Location"); loc != "" {
		if a.location, err = url.Parse(loc); err != nil {
			t.Fatalf("Location %q: %v", loc, err)
		}
		if a.query, err = url.ParseQuery(a.location.RawQuery); err != nil {
			t.Fatalf("Location query %q: %v", a.location.RawQuery, err)
		}
	}
	return a
}

func consentQuery(state string) url.Values {
	q := url.Values{"client_id": {clientID}, "scope": {graphDefault}, "redirect_uri": {redirectURI}}
	if state != "" {
		q.Set("state", state)
	}
	return q
}

// tokenRoles gets an app-only token for tenant with a plain form post and returns its roles, or
// the error code when the token endpoint refuses.
func tokenRoles(t *testing.T, sim *m365sim.Server, tenant string) (roles []string, tok, errCode string) {
	t.Helper()
	resp, err := sim.HTTPClient().PostForm(sim.URL()+"/"+tenant+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "scope": {graphDefault},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.AccessToken == "" {
		return nil, "", body.Error
	}
	rs, _ := claims(t, body.AccessToken)["roles"].([]any)
	for _, r := range rs {
		roles = append(roles, r.(string))
	}
	slices.Sort(roles)
	return roles, body.AccessToken, ""
}

// wantRedirect checks a 302 to the registered redirect URI.
func wantRedirect(t *testing.T, a consentAnswer) {
	t.Helper()
	if a.status != http.StatusFound || a.location == nil {
		t.Fatalf("want 302 with Location, got %d %v %s", a.status, a.location, a.body)
	}
	if got := a.location.Scheme + "://" + a.location.Host + a.location.Path; got != redirectURI {
		t.Fatalf("redirected to %s, want %s", got, redirectURI)
	}
}

// wantErrorPage checks Entra's error page: 400, no redirect, the AADSTS code in the text.
func wantErrorPage(t *testing.T, a consentAnswer, aadsts string) {
	t.Helper()
	if a.status != http.StatusBadRequest || a.location != nil || !strings.Contains(a.body, aadsts+": ") {
		t.Errorf("want 400 page with %s and no redirect, got %d Location=%v body %s", aadsts, a.status, a.location, a.body)
	}
}

func TestAdminConsentGrant(t *testing.T) {
	sim := consentSim(t)
	if _, _, code := tokenRoles(t, sim, tenantB); code != "unauthorized_client" {
		t.Fatalf("token before consent: error %q, want unauthorized_client", code)
	}
	sim.ResetStats()
	state := "a b&c=d/é%+?#x=y;\"'<>\\ \t~" // needs escaping, and must come back byte for byte
	a := adminConsent(t, sim, "organizations", consentQuery(state))
	wantRedirect(t, a)
	want := url.Values{"admin_consent": {"True"}, "tenant": {tenantB}, "scope": {graphDefault}, "state": {state}}
	if !equalValues(a.query, want) {
		t.Errorf("callback query %v, want %v", a.query, want)
	}
	if !strings.HasPrefix(a.location.RawQuery, "admin_consent=True&tenant=") {
		t.Errorf("callback query order %q", a.location.RawQuery)
	}
	roles, tok, _ := tokenRoles(t, sim, tenantB)
	if want := []string{"GroupMember.Read.All", "Mail.Send", "User.Read.All"}; !slices.Equal(roles, want) {
		t.Errorf("roles after consent %v, want %v", roles, want)
	}
	if st, _, _ := get(t, sim, tok, "/v1.0/users?$top=1&$select=id"); st != 200 {
		t.Errorf("GET /users after consent: %d", st)
	}
	st := sim.Stats()
	if st.Routes["adminconsent"] != 1 || st.Graph != 1 {
		t.Errorf("stats %+v", st)
	}

	// No state: none in the callback.
	a = adminConsent(t, sim, "organizations", consentQuery(""))
	wantRedirect(t, a)
	if a.query.Has("state") {
		t.Errorf("state in callback without one in the request: %v", a.query)
	}
}

func TestAdminConsentPartialGrant(t *testing.T) {
	sim := consentSim(t)
	if err := sim.SetConsentDecision("contoso.example", m365sim.ConsentDecision{Grant: true, Roles: []string{"User.Read.All"}}); err != nil {
		t.Fatal(err)
	}
	// A specific tenant (domain) in the path targets it whatever admin is signed in.
	if err := sim.SetSignedInTenant(tenantA); err != nil {
		t.Fatal(err)
	}
	a := adminConsent(t, sim, "contoso.example", consentQuery("s1"))
	wantRedirect(t, a)
	if a.query.Get("admin_consent") != "True" || a.query.Get("tenant") != tenantB || a.query.Get("state") != "s1" {
		t.Errorf("callback %v", a.query)
	}
	roles, tok, _ := tokenRoles(t, sim, tenantB)
	if !slices.Equal(roles, []string{"User.Read.All"}) {
		t.Errorf("roles %v, want [User.Read.All]", roles)
	}
	if st, _, _ := get(t, sim, tok, "/v1.0/users?$top=1&$select=id"); st != 200 {
		t.Errorf("GET /users: %d", st)
	}
	if st, _, m := get(t, sim, tok, "/v1.0/groups"); st != 403 || errCode(m) != "Authorization_RequestDenied" {
		t.Errorf("GET /groups without GroupMember.Read.All: %d %v", st, m)
	}

	// Granting none: the service principal exists, tokens carry no roles.
	if err := sim.SetConsentDecision(tenantB, m365sim.ConsentDecision{Grant: true, Roles: []string{}}); err != nil {
		t.Fatal(err)
	}
	wantRedirect(t, adminConsent(t, sim, tenantB, consentQuery("s2")))
	if roles, tok, code := tokenRoles(t, sim, tenantB); tok == "" || len(roles) != 0 {
		t.Errorf("after granting none: roles %v error %q", roles, code)
	}

	// A decision can only grant what the app asks for.
	if err := sim.SetConsentDecision(tenantB, m365sim.ConsentDecision{Grant: true, Roles: []string{"Directory.Read.All"}}); err != nil {
		t.Fatal(err)
	}
	if a := adminConsent(t, sim, tenantB, consentQuery("s3")); a.status != http.StatusInternalServerError || a.location != nil {
		t.Errorf("granting an unrequested permission: %d %v", a.status, a.location)
	}
	if err := sim.SetConsentDecision(tenantB, m365sim.ConsentDecision{Grant: true, Roles: []string{"No.Such.Permission"}}); err == nil {
		t.Error("SetConsentDecision accepted an unknown permission")
	}
}

func TestAdminConsentRefused(t *testing.T) {
	for _, tc := range []struct {
		name         string
		d            m365sim.ConsentDecision
		wantErr      string
		wantDesc     string
		adminConsent bool
	}{
		{"cancel", m365sim.ConsentDecision{}, "access_denied", "AADSTS65004: User declined to consent to access the app.", false},
		{"with admin_consent=True", m365sim.ConsentDecision{Error: "consent_required", ErrorDescription: "AADSTS65004: User declined to consent to access the app.", WithAdminConsentTrue: true},
			"consent_required", "AADSTS65004: User declined to consent to access the app.", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := consentSim(t)
			if err := sim.SetConsentDecision(tenantB, tc.d); err != nil {
				t.Fatal(err)
			}
			state := "st/ä+&=%20"
			a := adminConsent(t, sim, "organizations", consentQuery(state))
			wantRedirect(t, a)
			q := a.query
			if q.Get("error") != tc.wantErr || !strings.HasPrefix(q.Get("error_description"), tc.wantDesc+"\r\nTrace ID: ") ||
				q.Get("state") != state || q.Has("tenant") || q.Has("scope") || q.Get("error_uri") != sim.URL()+"/error?code=65004" {
				t.Errorf("callback %q", q)
			}
			if got := q.Get("admin_consent"); (got == "True") != tc.adminConsent || (!tc.adminConsent && q.Has("admin_consent")) {
				t.Errorf("admin_consent=%q, want present=%v", got, tc.adminConsent)
			}
			if _, _, code := tokenRoles(t, sim, tenantB); code != "unauthorized_client" {
				t.Errorf("token after refusal: error %q, want unauthorized_client", code)
			}
		})
	}
}

func TestAdminConsentBadRequests(t *testing.T) {
	sim := consentSim(t)
	with := func(k, v string) url.Values {
		q := consentQuery("s")
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return q
	}
	for _, tc := range []struct {
		name, tenant string
		q            url.Values
		aadsts       string
	}{
		{"unregistered redirect", "organizations", with("redirect_uri", "https://evil.example/cb"), "AADSTS50011"},
		{"redirect with trailing slash", "organizations", with("redirect_uri", redirectURI+"/"), "AADSTS50011"},
		{"redirect with other case", "organizations", with("redirect_uri", strings.ToUpper(redirectURI)), "AADSTS50011"},
		{"no redirect_uri", "organizations", with("redirect_uri", ""), "AADSTS900144"},
		{"unknown client", "organizations", with("client_id", "00000000-1111-4222-8333-444444444444"), "AADSTS700016"},
		{"no client_id", "organizations", with("client_id", ""), "AADSTS900144"},
		{"no scope", "organizations", with("scope", ""), "AADSTS900144"},
		{"unknown tenant", "nowhere.example", consentQuery("s"), "AADSTS90002"},
		{"common", "common", consentQuery("s"), "AADSTS90130"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErrorPage(t, adminConsent(t, sim, tc.tenant, tc.q), tc.aadsts)
		})
	}
	if _, _, code := tokenRoles(t, sim, tenantB); code != "unauthorized_client" {
		t.Errorf("a bad request consented: token error %q", code)
	}

	// A scope other than Graph's .default is redirected as invalid_scope (the redirect URI is
	// trusted by then).
	a := adminConsent(t, sim, "organizations", with("scope", "https://graph.microsoft.com/User.Read"))
	wantRedirect(t, a)
	if a.query.Get("error") != "invalid_scope" || a.query.Get("state") != "s" {
		t.Errorf("callback %v", a.query)
	}

	// organizations with nobody signed in.
	sim2, _ := newSim(t, m365sim.Options{})
	sim2.RegisterRedirectURI(clientID, redirectURI)
	wantErrorPage(t, adminConsent(t, sim2, "organizations", consentQuery("s")), "AADSTS50058")
}

func equalValues(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestAdminConsentAdminAPI(t *testing.T) {
	sim, _ := newSim(t, m365sim.Options{Admin: true})
	do := func(method, path, body string) int {
		t.Helper()
		return admin(t, sim, method, path, body, nil)
	}
	for _, step := range []struct{ method, path, body string }{
		{"POST", "/_sim/apps/" + clientID + "/redirect-uris", `{"uri":"` + redirectURI + `"}`},
		{"PUT", "/_sim/apps/" + clientID + "/permissions", `{"roles":["User.Read.All","Mail.Send"]}`},
		{"POST", "/_sim/tenants/" + tenantA + "/sign-in", ``},
		{"POST", "/_sim/tenants/" + tenantA + "/consent-decision", `{"grant":true,"roles":["Mail.Send"]}`},
	} {
		if st := do(step.method, step.path, step.body); st != 204 {
			t.Fatalf("%s %s: %d", step.method, step.path, st)
		}
	}
	if st := do("PUT", "/_sim/apps/"+clientID+"/permissions", `{"roles":["Nope"]}`); st != 400 {
		t.Errorf("unknown permission: %d", st)
	}
	if st := do("POST", "/_sim/tenants/nowhere/sign-in", ``); st != 404 {
		t.Errorf("sign-in to unknown tenant: %d", st)
	}
	wantRedirect(t, adminConsent(t, sim, "organizations", consentQuery("s")))
	if roles, _, _ := tokenRoles(t, sim, tenantA); !slices.Equal(roles, []string{"Mail.Send"}) {
		t.Errorf("roles %v", roles)
	}
	if st := do("DELETE", "/_sim/tenants/"+tenantA+"/consents/"+clientID, ``); st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	if _, _, code := tokenRoles(t, sim, tenantA); code != "unauthorized_client" {
		t.Errorf("token after revoke: %q", code)
	}
}
