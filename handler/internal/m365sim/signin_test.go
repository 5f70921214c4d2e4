package m365sim_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

const signInRedirect = "https://leap-func.example.net/api/signin/callback"

// signInSim is newSim with a sign-in redirect URI, wids in ID tokens and tenant B's default
// Global Administrator signed in.
func signInSim(t *testing.T) (*m365sim.Server, *clock) {
	t.Helper()
	sim, clk := newSim(t, m365sim.Options{})
	sim.RegisterRedirectURI(clientID, signInRedirect)
	if err := sim.SetGroupMembershipClaims(clientID, "DirectoryRole"); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetSignedInTenant(tenantB); err != nil {
		t.Fatal(err)
	}
	return sim, clk
}

func authorizeQuery(state, nonce string) url.Values {
	return url.Values{
		"client_id": {clientID}, "response_type": {"code"}, "redirect_uri": {signInRedirect},
		"scope": {"openid profile"}, "state": {state}, "nonce": {nonce}, "response_mode": {"query"},
	}
}

func authorize(t *testing.T, sim *m365sim.Server, pathTenant string, q url.Values) consentAnswer {
	t.Helper()
	return browse(t, sim, "/"+pathTenant+"/oauth2/v2.0/authorize", q)
}

type codeAnswer struct {
	status int
	body   map[string]any
}

func redeem(t *testing.T, sim *m365sim.Server, pathTenant string, form url.Values) codeAnswer {
	t.Helper()
	resp, err := sim.HTTPClient().PostForm(sim.URL()+"/"+pathTenant+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return codeAnswer{resp.StatusCode, body}
}

func codeForm(code, redirect string) url.Values {
	return url.Values{
		"grant_type": {"authorization_code"}, "client_id": {clientID}, "client_secret": {secret},
		"code": {code}, "redirect_uri": {redirect}, "scope": {"openid profile"},
	}
}

// signIn runs authorize and returns the code.
func signIn(t *testing.T, sim *m365sim.Server, pathTenant string) string {
	t.Helper()
	a := authorize(t, sim, pathTenant, authorizeQuery("st", "n0nce"))
	if a.status != http.StatusFound || a.query.Get("code") == "" {
		t.Fatalf("authorize: %d %v %s", a.status, a.location, a.body)
	}
	return a.query.Get("code")
}

// verifyWithJWKS checks an RS256 JWT against the keys the sim serves and returns its claims.
func verifyWithJWKS(t *testing.T, sim *m365sim.Server, tenant, jwt string) map[string]any {
	t.Helper()
	resp, err := sim.HTTPClient().Get(sim.URL() + "/" + tenant + "/discovery/v2.0/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jwks struct {
		Keys []struct{ Kid, N, E string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	var hdr struct{ Alg, Kid string }
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr.Alg != "RS256" {
		t.Fatalf("header %s", hb)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	for _, k := range jwks.Keys {
		if k.Kid != hdr.Kid {
			continue
		}
		n, _ := base64.RawURLEncoding.DecodeString(k.N)
		e, _ := base64.RawURLEncoding.DecodeString(k.E)
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			t.Fatalf("signature: %v", err)
		}
		return claims(t, jwt)
	}
	t.Fatalf("no JWKS key with kid %q", hdr.Kid)
	return nil
}

func wids(c map[string]any) []string {
	var out []string
	for _, w := range asSlice(c["wids"]) {
		out = append(out, w.(string))
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func TestSignInCodeFlow(t *testing.T) {
	sim, clk := signInSim(t)
	state := "a b+c/=&é"
	a := authorize(t, sim, tenantB, authorizeQuery(state, "n0nce-1"))
	if a.status != http.StatusFound || a.location == nil {
		t.Fatalf("authorize: %d %s", a.status, a.body)
	}
	if got := a.location.Scheme + "://" + a.location.Host + a.location.Path; got != signInRedirect {
		t.Fatalf("redirected to %s", got)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range a.query {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, []string{"code", "session_state", "state"}) || a.query.Get("state") != state {
		t.Fatalf("redirect query %v", a.query)
	}
	if !strings.HasPrefix(a.location.RawQuery, "code=") {
		t.Errorf("code first, as Entra: %s", a.location.RawQuery)
	}

	clk.Advance(9 * time.Minute)
	r := redeem(t, sim, tenantB, codeForm(a.query.Get("code"), signInRedirect))
	if r.status != 200 {
		t.Fatalf("redeem: %d %v", r.status, r.body)
	}
	if r.body["token_type"] != "Bearer" || r.body["expires_in"] != 3599.0 || r.body["ext_expires_in"] != 3599.0 {
		t.Errorf("token response %v", r.body)
	}
	if sc, _ := r.body["scope"].(string); !strings.Contains(sc, "openid") || !strings.Contains(sc, "https://graph.microsoft.com/User.Read") {
		t.Errorf("scope %q", sc)
	}
	id := verifyWithJWKS(t, sim, tenantB, r.body["id_token"].(string))
	now := clk.Now().Unix()
	for k, want := range map[string]any{
		"iss": sim.URL() + "/" + tenantB + "/v2.0", "aud": clientID, "tid": tenantB, "nonce": "n0nce-1",
		"ver": "2.0", "preferred_username": "admin@contoso.example", "iat": float64(now),
		"nbf": float64(now), "exp": float64(now + 3600),
	} {
		if id[k] != want {
			t.Errorf("id_token %s = %v, want %v", k, id[k], want)
		}
	}
	if id["oid"] == "" || id["sub"] == "" || id["name"] == "" || id["sub"] == id["oid"] {
		t.Errorf("id_token oid/sub/name %v", id)
	}
	if w := wids(id); !slices.Equal(w, []string{m365sim.RoleGlobalAdministrator}) {
		t.Errorf("wids %v", w)
	}
	at := verifyWithJWKS(t, sim, tenantB, r.body["access_token"].(string))
	if at["aud"] != "https://graph.microsoft.com" || at["tid"] != tenantB || at["oid"] != id["oid"] || !strings.Contains(at["scp"].(string), "User.Read") {
		t.Errorf("access token %v", at)
	}
	if _, ok := at["roles"]; ok {
		t.Errorf("delegated token with roles %v", at["roles"])
	}

	// single use
	r = redeem(t, sim, tenantB, codeForm(a.query.Get("code"), signInRedirect))
	if r.status != 400 || r.body["error"] != "invalid_grant" || !strings.HasPrefix(r.body["error_description"].(string), "AADSTS54005:") {
		t.Errorf("reuse: %d %v", r.status, r.body)
	}
}

func TestSignInCodeErrors(t *testing.T) {
	sim, clk := signInSim(t)
	wantGrantErr := func(r codeAnswer, aadsts string) {
		t.Helper()
		if r.status != 400 || r.body["error"] != "invalid_grant" || !strings.HasPrefix(r.body["error_description"].(string), aadsts+":") {
			t.Errorf("want invalid_grant %s, got %d %v", aadsts, r.status, r.body)
		}
	}
	// wrong redirect_uri at exchange
	code := signIn(t, sim, tenantB)
	wantGrantErr(redeem(t, sim, tenantB, codeForm(code, signInRedirect+"/other")), "AADSTS500112")
	// the code survives a failed exchange attempt (not consumed), then expires
	clk.Advance(10 * time.Minute)
	wantGrantErr(redeem(t, sim, tenantB, codeForm(code, signInRedirect)), "AADSTS70008")
	wantGrantErr(redeem(t, sim, tenantB, codeForm("1.Anot-a-code", signInRedirect)), "AADSTS9002313")
	// bad secret is invalid_client, before the code is looked at
	code = signIn(t, sim, tenantB)
	f := codeForm(code, signInRedirect)
	f.Set("client_secret", "wrong")
	if r := redeem(t, sim, tenantB, f); r.status != 401 || r.body["error"] != "invalid_client" {
		t.Errorf("bad secret: %d %v", r.status, r.body)
	}
	if r := redeem(t, sim, tenantB, codeForm(code, signInRedirect)); r.status != 200 {
		t.Errorf("redeem after bad secret: %d %v", r.status, r.body)
	}
}

func TestSignInAuthorizeErrors(t *testing.T) {
	sim, _ := signInSim(t)
	// unregistered redirect: error page, no redirect
	q := authorizeQuery("s", "n")
	q.Set("redirect_uri", signInRedirect+"?x=1")
	wantErrorPage(t, authorize(t, sim, tenantB, q), "AADSTS50011")
	q = authorizeQuery("s", "n")
	q.Set("client_id", "00000000-1111-2222-3333-444444444444")
	wantErrorPage(t, authorize(t, sim, tenantB, q), "AADSTS700016")
	wantErrorPage(t, authorize(t, sim, "no-such-tenant.example", authorizeQuery("s", "n")), "AADSTS90002")

	redirectErr := func(q url.Values, pathTenant, wantErr, aadsts string) {
		t.Helper()
		a := authorize(t, sim, pathTenant, q)
		if a.status != http.StatusFound || a.query.Get("error") != wantErr || !strings.HasPrefix(a.query.Get("error_description"), aadsts+":") || a.query.Get("state") != "s" || a.query.Has("code") {
			t.Errorf("want redirect with %s %s, got %d %v %s", wantErr, aadsts, a.status, a.query, a.body)
		}
	}
	q = authorizeQuery("s", "n")
	q.Set("scope", "profile User.Read")
	redirectErr(q, tenantB, "invalid_scope", "AADSTS70011")
	q = authorizeQuery("s", "n")
	q.Set("response_type", "token")
	redirectErr(q, tenantB, "unsupported_response_type", "AADSTS700054")
	// tenant A in the path, tenant B's admin in the browser
	redirectErr(authorizeQuery("s", "n"), tenantA, "access_denied", "AADSTS50020")
	redirectErr(authorizeQuery("s", "n"), "fabrikam.example", "access_denied", "AADSTS50020")
}

func TestSignInOrganizationsAndUsers(t *testing.T) {
	sim, _ := signInSim(t)
	// an ordinary user of tenant A through /organizations: tid A, no wids
	if err := sim.SetSignedInUser(tenantA, m365sim.SignedInUser{UserPrincipalName: "pat@fabrikam.example", Name: "Pat"}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"organizations", "common", "fabrikam.example"} {
		code := signIn(t, sim, path)
		r := redeem(t, sim, path, codeForm(code, signInRedirect))
		if r.status != 200 {
			t.Fatalf("%s: %d %v", path, r.status, r.body)
		}
		id := verifyWithJWKS(t, sim, "common", r.body["id_token"].(string))
		if id["tid"] != tenantA || id["iss"] != sim.URL()+"/"+tenantA+"/v2.0" || id["preferred_username"] != "pat@fabrikam.example" || id["name"] != "Pat" {
			t.Errorf("%s: id_token %v", path, id)
		}
		if _, ok := id["wids"]; ok {
			t.Errorf("%s: non-admin has wids %v", path, id["wids"])
		}
	}
	// a Cloud Application Administrator
	if err := sim.SetSignedInUser(tenantA, m365sim.SignedInUser{
		ObjectID: "0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b", UserPrincipalName: "cloudadmin@fabrikam.example",
		DirectoryRoles: []string{m365sim.RoleCloudApplicationAdministrator, m365sim.RoleApplicationAdministrator},
	}); err != nil {
		t.Fatal(err)
	}
	r := redeem(t, sim, "organizations", codeForm(signIn(t, sim, "organizations"), signInRedirect))
	id := verifyWithJWKS(t, sim, tenantA, r.body["id_token"].(string))
	if id["oid"] != "0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b" || !slices.Equal(wids(id), []string{m365sim.RoleCloudApplicationAdministrator, m365sim.RoleApplicationAdministrator}) {
		t.Errorf("admin id_token %v", id)
	}
	// without groupMembershipClaims (Entra's default) the ID token has no wids; the Graph
	// access token still does
	if err := sim.SetGroupMembershipClaims(clientID, "None"); err != nil {
		t.Fatal(err)
	}
	r = redeem(t, sim, "organizations", codeForm(signIn(t, sim, "organizations"), signInRedirect))
	if id := claims(t, r.body["id_token"].(string)); id["wids"] != nil {
		t.Errorf("wids without groupMembershipClaims: %v", id["wids"])
	}
	if at := claims(t, r.body["access_token"].(string)); len(wids(at)) != 2 {
		t.Errorf("access token wids %v", at["wids"])
	}
	// SetSignedInTenant signs in the tenant's default Global Administrator again
	if err := sim.SetSignedInTenant(tenantA); err != nil {
		t.Fatal(err)
	}
	sim.SetGroupMembershipClaims(clientID, "All")
	r = redeem(t, sim, "organizations", codeForm(signIn(t, sim, "organizations"), signInRedirect))
	if id := claims(t, r.body["id_token"].(string)); !slices.Equal(wids(id), []string{m365sim.RoleGlobalAdministrator}) || id["tid"] != tenantA {
		t.Errorf("default admin id_token %v", id)
	}
}

func TestSignInAdminAPI(t *testing.T) {
	sim, _ := newSim(t, m365sim.Options{Admin: true})
	sim.RegisterRedirectURI(clientID, signInRedirect)
	do := func(method, path, body string) int {
		t.Helper()
		return admin(t, sim, method, path, body, nil)
	}
	if st := do("POST", "/_sim/tenants/"+tenantB+"/signed-in-user", `{"userPrincipalName":"pra@contoso.example","name":"PRA","directoryRoles":["`+m365sim.RolePrivilegedRoleAdministrator+`"]}`); st != 204 {
		t.Fatalf("signed-in-user: %d", st)
	}
	if st := do("PUT", "/_sim/apps/"+clientID+"/group-membership-claims", `{"value":"DirectoryRole"}`); st != 204 {
		t.Fatalf("group-membership-claims: %d", st)
	}
	if st := do("PUT", "/_sim/apps/"+clientID+"/group-membership-claims", `{"value":"Bogus"}`); st != 400 {
		t.Errorf("bad group-membership-claims: %d", st)
	}
	if st := do("POST", "/_sim/tenants/nowhere/signed-in-user", `{}`); st != 404 {
		t.Errorf("unknown tenant: %d", st)
	}
	r := redeem(t, sim, "organizations", codeForm(signIn(t, sim, "organizations"), signInRedirect))
	id := claims(t, r.body["id_token"].(string))
	if id["tid"] != tenantB || id["preferred_username"] != "pra@contoso.example" || !slices.Equal(wids(id), []string{m365sim.RolePrivilegedRoleAdministrator}) {
		t.Errorf("id_token %v", id)
	}
}
