package m365auth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
)

func TestSignInThroughTheCodeFlow(t *testing.T) {
	sim := m365sim.New(m365sim.Options{})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	const redirect = "https://leap.example.net/api/consent/callback"
	sim.RegisterApp(clientID, secret)
	sim.RegisterRedirectURI(clientID, redirect)
	sim.AddTenant(tenantID, "fabrikam.example")
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
	if _, err := creds.RedeemCode(t.Context(), tenantID, code, redirect); entra.KindOf(err) != entra.KindUnauthorized {
		t.Errorf("reused code: %v, want unauthorized", err)
	}
	bad := m365auth.New(m365auth.Config{ClientID: clientID, ClientSecret: "wrong", AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()})
	if _, err := bad.RedeemCode(t.Context(), tenantID, "x", redirect); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong secret: %v", err)
	}
	if _, err := creds.AuthorizeURL("../evil", redirect, "s", "n"); entra.KindOf(err) != entra.KindInvalid {
		t.Errorf("bad tenant: %v", err)
	}
	if (m365auth.SignIn{Roles: []string{"88d8e3e3-8f55-4a1e-953a-9b9898b8876b"}}).IsConsentAdmin() {
		t.Error("a Directory Reader counted as a consent admin")
	}
}
