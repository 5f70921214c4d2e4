package m365auth_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// The simulated tenant, our app and its secret are testenv's; otherID is a tenant that did not
// consent.
const (
	tenantID = testenv.Tenant
	otherID  = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
	clientID = testenv.ClientID
	secret   = testenv.Secret
)

func TestTokenThroughAzidentity(t *testing.T) {
	sim := testenv.NewTenant(t, testenv.Options{Domain: "fabrikam.example"})
	sim.AddTenant(otherID, "contoso.example")
	creds := func(secret string) *m365auth.Credentials {
		return m365auth.New(m365auth.Config{ClientID: clientID, ClientSecret: secret, AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()})
	}

	tok, err := creds(secret).Token(t.Context(), tenantID)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tok.Roles)
	if tok.TenantID != tenantID || !slices.Equal(tok.Roles, []string{"GroupMember.Read.All", "User.Read.All"}) || tok.ExpiresOn.IsZero() {
		t.Errorf("token claims = %+v", tok)
	}

	for _, tc := range []struct {
		name, secret, tenant, code string
		kind                       errkind.Kind
	}{
		{"wrong secret", "not-the-secret", tenantID, "AADSTS7000215", errkind.Unauthorized},
		{"not consented", secret, otherID, "AADSTS700016", errkind.Unauthorized},
		{"unknown tenant", secret, "11111111-2222-4333-8444-555555555555", "AADSTS90002", errkind.Unauthorized},
		{"not a tenant", secret, "../evil", "", errkind.Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := creds(tc.secret).Token(t.Context(), tc.tenant)
			var e *errkind.Error
			if !asEntra(err, &e) || e.Kind != tc.kind || e.Code != tc.code {
				t.Fatalf("err = %#v, want kind %v code %q", err, tc.kind, tc.code)
			}
			if strings.Contains(err.Error(), tc.secret) && tc.secret != "" {
				t.Errorf("error text leaks the secret: %v", err)
			}
		})
	}
}

func asEntra(err error, target **errkind.Error) bool {
	e, ok := err.(*errkind.Error)
	if ok {
		*target = e
	}
	return ok
}

// TestClassifyNoAnswerIsNotARefusal: a sign-in that never reached the token endpoint (network, a
// cancelled request) must not be taken for refused consent, which sends the org to re-authorize.
func TestClassifyNoAnswerIsNotARefusal(t *testing.T) {
	creds := m365auth.New(m365auth.Config{ClientID: "6d0a4f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6", ClientSecret: "s", AuthorityHost: "https://127.0.0.1:1/"})
	_, err := creds.Token(t.Context(), "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b")
	if k := errkind.Of(err); k != errkind.Unavailable {
		t.Errorf("unreachable token endpoint: kind %v (%v), want unavailable", k, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := creds.Token(ctx, "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled sign-in: %v, want context.Canceled", err)
	}
}
