package m365auth_test

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestSignInThroughTheCodeFlow(t *testing.T) {
	sim := testenv.NewTenant(t, testenv.Options{Domain: "fabrikam.example", NoConsent: true})
	const redirect = "https://leap.example.net/api/consent/callback"
	sim.RegisterRedirectURI(clientID, redirect)
	if err := sim.SetGroupMembershipClaims(clientID, "DirectoryRole"); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetSignedInTenant(tenantID); err != nil {
		t.Fatal(err)
	}
	creds := m365auth.New(m365auth.Config{ClientID: clientID, ClientSecret: secret, AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()})

	u, err := creds.AuthorizeURL(tenantID, redirect, "state-1", "nonce-1")
	if err != nil {
		t.Fatal(err)
	}
	hc := sim.HTTPClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, _ := url.Parse(resp.Header.Get("Location"))
	code := back.Query().Get("code")
	if !strings.HasPrefix(back.String(), redirect) || code == "" || back.Query().Get("state") != "state-1" {
		t.Fatalf("authorize answered %d %s", resp.StatusCode, back)
	}
	who, err := creds.RedeemCode(t.Context(), tenantID, code, redirect)
	if err != nil {
		t.Fatal(err)
	}
	if who.TenantID != tenantID || who.Nonce != "nonce-1" || !who.IsConsentAdmin() || who.Username == "" {
		t.Errorf("sign-in = %+v, want an admin of %s with nonce-1", who, tenantID)
	}
	// A code is single use; a wrong secret is refused.
	if _, err := creds.RedeemCode(t.Context(), tenantID, code, redirect); errkind.Of(err) != errkind.Unauthorized {
		t.Errorf("reused code: %v, want unauthorized", err)
	}
	bad := m365auth.New(m365auth.Config{ClientID: clientID, ClientSecret: "wrong", AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()})
	if _, err := bad.RedeemCode(t.Context(), tenantID, "x", redirect); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong secret: %v", err)
	}
	if _, err := creds.AuthorizeURL("../evil", redirect, "s", "n"); errkind.Of(err) != errkind.Invalid {
		t.Errorf("bad tenant: %v", err)
	}
	// Only roles that can grant Microsoft Graph application permissions count: Microsoft
	// documents that Cloud Application and Application Administrators cannot.
	for _, tc := range []struct {
		name string
		role string
		want bool
	}{
		{"Global Administrator", m365sim.RoleGlobalAdministrator, true},
		{"Privileged Role Administrator", m365sim.RolePrivilegedRoleAdministrator, true},
		{"Privileged Role Administrator, upper case", strings.ToUpper(m365sim.RolePrivilegedRoleAdministrator), true},
		{"Cloud Application Administrator", m365sim.RoleCloudApplicationAdministrator, false},
		{"Application Administrator", m365sim.RoleApplicationAdministrator, false},
		{"Directory Readers", "88d8e3e3-8f55-4a1e-953a-9b9898b8876b", false},
	} {
		if got := (m365auth.SignIn{Roles: []string{tc.role}}).IsConsentAdmin(); got != tc.want {
			t.Errorf("%s: IsConsentAdmin = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRedeemCodeChecks pins what RedeemCode checks itself (the README says why this is not
// MSAL's job): the ID token's audience, and how token-endpoint answers map to entra kinds.
func TestRedeemCodeChecks(t *testing.T) {
	idToken := func(claims string) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc([]byte(claims)) + ".c2ln"
	}
	for _, tc := range []struct {
		name   string
		status int
		body   string
		kind   errkind.Kind
		code   string
	}{
		{"another app's ID token", 200, `{"id_token":"` + idToken(`{"aud":"11111111-2222-4333-8444-555555555555","tid":"`+tenantID+`","nonce":"n"}`) + `"}`, errkind.Unauthorized, ""},
		{"another tenant's ID token", 200, `{"id_token":"` + idToken(`{"aud":"`+clientID+`","tid":"9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a","nonce":"n"}`) + `"}`, errkind.Unauthorized, ""},
		{"ID token without tid", 200, `{"id_token":"` + idToken(`{"aud":"`+clientID+`","nonce":"n"}`) + `"}`, errkind.Unauthorized, ""},
		{"no audience", 200, `{"id_token":"` + idToken(`{"tid":"`+tenantID+`","nonce":"n"}`) + `"}`, errkind.Unauthorized, ""},
		{"not a JWT", 200, `{"id_token":"opaque"}`, errkind.Other, ""},
		{"no ID token", 200, `{"access_token":"a"}`, errkind.Unauthorized, ""},
		{"code already redeemed", 400, `{"error":"invalid_grant","error_description":"AADSTS54005: OAuth2 Authorization code was already redeemed."}`, errkind.Unauthorized, "AADSTS54005"},
		{"refused without AADSTS", 401, `{"error":"invalid_client"}`, errkind.Unauthorized, "invalid_client"},
		{"throttled", 429, `{"error":"temporarily_unavailable"}`, errkind.Unavailable, "temporarily_unavailable"},
		{"Entra down", 503, `<html>Service Unavailable</html>`, errkind.Unavailable, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/"+tenantID+"/oauth2/v2.0/token" {
					t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			t.Cleanup(srv.Close)
			creds := m365auth.New(m365auth.Config{ClientID: clientID, ClientSecret: secret, AuthorityHost: srv.URL, HTTPClient: srv.Client()})
			_, err := creds.RedeemCode(t.Context(), tenantID, "code", "https://leap.example.net/api/consent/callback")
			var e *errkind.Error
			if !asEntra(err, &e) || e.Kind != tc.kind || e.Code != tc.code {
				t.Fatalf("err = %#v, want kind %v code %q", err, tc.kind, tc.code)
			}
		})
	}
	// Our own audience passes, with the claims the consent flow checks.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"id_token":"`+idToken(`{"aud":"`+clientID+`","tid":"`+tenantID+`","oid":"o","preferred_username":"a@fabrikam.example","nonce":"n","wids":["`+m365auth.ConsentAdminRoles[0]+`"]}`)+`"}`)
	}))
	t.Cleanup(srv.Close)
	creds := m365auth.New(m365auth.Config{ClientID: clientID, ClientSecret: secret, AuthorityHost: srv.URL, HTTPClient: srv.Client()})
	who, err := creds.RedeemCode(t.Context(), tenantID, "code", "https://leap.example.net/api/consent/callback")
	if err != nil || who.TenantID != tenantID || who.ObjectID != "o" || who.Nonce != "n" || !who.IsConsentAdmin() {
		t.Errorf("RedeemCode = %+v, %v", who, err)
	}
}
