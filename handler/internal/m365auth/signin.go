package m365auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// SignIn is who signed in through the OpenID Connect authorization-code flow.
type SignIn struct {
	TenantID string   // tid: the signed-in user's home tenant
	ObjectID string   // oid
	Username string   // preferred_username
	Nonce    string   // echoed from the authorize request
	Roles    []string // wids: the user's directory role template ids
}

// ConsentAdminRoles are the built-in directory roles that can grant tenant-wide admin consent to
// Microsoft Graph application permissions, which is all this app asks for. Microsoft documents
// ("Grant tenant-wide admin consent to an application", prerequisites) that Cloud Application
// Administrator and Application Administrator can consent to any API's permissions except
// Microsoft Graph app roles, so they are not here: an admin holding only one of them cannot have
// granted what we need. A custom role with the consent permission cannot be recognised from its
// id; such an admin is refused and the hint names the built-in roles.
var ConsentAdminRoles = []string{
	"62e90394-69f5-4237-9190-012177145e10", // Global Administrator
	"e8611ab8-c189-46e8-94e1-60213ab1f814", // Privileged Role Administrator
}

// IsConsentAdmin reports whether the signed-in user holds a role that can grant admin consent.
func (s SignIn) IsConsentAdmin() bool {
	for _, r := range s.Roles {
		for _, a := range ConsentAdminRoles {
			if strings.EqualFold(r, a) {
				return true
			}
		}
	}
	return false
}

// AuthorizeURL is the OpenID Connect sign-in a browser is sent to, for tenant. (MSAL's
// AuthCodeURL cannot add a state or a nonce; see RedeemCode.)
func (c *Credentials) AuthorizeURL(tenant, redirectURI, state, nonce string) (string, error) {
	if !ValidTenant(tenant) {
		return "", &errkind.Error{Kind: errkind.Invalid, Message: fmt.Sprintf("%q is not a tenant id", tenant)}
	}
	q := url.Values{
		"client_id":     {c.cfg.ClientID},
		"response_type": {"code"},
		"redirect_uri":  {redirectURI},
		"response_mode": {"query"},
		"scope":         {"openid profile"},
		"state":         {state},
		"nonce":         {nonce},
	}
	return c.authority() + tenant + "/oauth2/v2.0/authorize?" + q.Encode(), nil
}

func (c *Credentials) authority() string {
	a := c.cfg.AuthorityHost
	if a == "" {
		a = "https://login.microsoftonline.com/"
	}
	return strings.TrimRight(a, "/") + "/"
}

// RedeemCode exchanges an authorization code for the sign-in's ID token, with our app's secret,
// and returns its claims. The token comes straight from the token endpoint over TLS, which
// authenticates it (OpenID Connect Core §3.1.3.7), so its signature is not checked again.
//
// This is not MSAL Go's AcquireTokenByAuthCode on purpose: MSAL (v1.10.1) checks nothing in the
// ID token (not aud, iss or nonce) and exposes neither nonce nor wids, so we would decode and
// check the token here anyway. The README's "Connecting Microsoft 365" section says why in full.
func (c *Credentials) RedeemCode(ctx context.Context, tenant, code, redirectURI string) (SignIn, error) {
	if !ValidTenant(tenant) {
		return SignIn{}, &errkind.Error{Kind: errkind.Invalid, Message: fmt.Sprintf("%q is not a tenant id", tenant)}
	}
	form := url.Values{
		"client_id":     {c.cfg.ClientID},
		"client_secret": {c.cfg.ClientSecret},
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"scope":         {"openid profile"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.authority()+tenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	if err != nil {
		return SignIn{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hc := c.cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return SignIn{}, &errkind.Error{Kind: errkind.Unavailable, Message: "token endpoint unreachable", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return SignIn{}, &errkind.Error{Kind: errkind.Unavailable, Message: "reading the token answer", Err: err}
	}
	var answer struct {
		IDToken     string `json:"id_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &answer)
	if resp.StatusCode != http.StatusOK || answer.IDToken == "" {
		e := &errkind.Error{Kind: errkind.Unauthorized, Status: resp.StatusCode, Message: "sign-in refused"}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			e.Kind = errkind.Unavailable
		}
		if code := aadstsCode.FindString(answer.Description); code != "" {
			e.Code, e.Message = code, "sign-in refused ("+code+")"
		} else if answer.Error != "" {
			e.Code = answer.Error
		}
		return SignIn{}, e
	}
	parts := strings.Split(answer.IDToken, ".")
	if len(parts) != 3 {
		return SignIn{}, &errkind.Error{Kind: errkind.Other, Message: "the ID token is not a JWT"}
	}
	raw, err := decodeSegment(parts[1])
	if err != nil {
		return SignIn{}, &errkind.Error{Kind: errkind.Other, Message: "the ID token has unreadable claims"}
	}
	var cl struct {
		TID      string   `json:"tid"`
		OID      string   `json:"oid"`
		Username string   `json:"preferred_username"`
		Nonce    string   `json:"nonce"`
		Aud      string   `json:"aud"`
		Wids     []string `json:"wids"`
	}
	if err := json.Unmarshal(raw, &cl); err != nil {
		return SignIn{}, &errkind.Error{Kind: errkind.Other, Message: "the ID token has unreadable claims"}
	}
	if cl.Aud != c.cfg.ClientID {
		return SignIn{}, &errkind.Error{Kind: errkind.Unauthorized, Message: "the ID token is for another app"}
	}
	// Entra refuses a code from another tenant at this tenant's endpoint, but the caller binds a
	// tenant on the strength of this answer, so the token must say so itself. (A domain name
	// cannot be compared with tid here; the consent flow compares the tenant id it knows.)
	if guidPattern.MatchString(tenant) && !strings.EqualFold(cl.TID, tenant) {
		return SignIn{}, &errkind.Error{Kind: errkind.Unauthorized, Message: "the ID token is for another tenant"}
	}
	return SignIn{TenantID: cl.TID, ObjectID: cl.OID, Username: cl.Username, Nonce: cl.Nonce, Roles: cl.Wids}, nil
}
