// Package m365auth gets app-only tokens for customer tenants through azidentity, with our
// multi-tenant app's credentials: one cached credential per tenant, failures classified as
// entra errors (a refused token means the connection needs re-authorization), and the granted
// application permissions read from the token's roles claim.
package m365auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// GraphScope is the only scope an app-only Graph token can ask for.
const GraphScope = "https://graph.microsoft.com/.default"

// Config is our app registration and where to sign in.
type Config struct {
	ClientID     string
	ClientSecret string
	// AuthorityHost is AZURE_AUTHORITY_HOST; empty means Microsoft's public cloud. Any other host
	// turns instance discovery off, which otherwise calls login.microsoftonline.com first.
	AuthorityHost string
	// HTTPClient carries TLS settings (tests trust the simulated tenant's CA through it).
	HTTPClient *http.Client
}

// Credentials hands out one token credential per tenant.
type Credentials struct {
	cfg Config

	mu    sync.Mutex
	creds map[string]azcore.TokenCredential
}

// New returns Credentials for cfg. It does no I/O.
func New(cfg Config) *Credentials {
	return &Credentials{cfg: cfg, creds: map[string]azcore.TokenCredential{}}
}

// tenantPattern accepts a tenant GUID or a verified domain; anything else could alter the
// authority URL it is placed in.
var tenantPattern = regexp.MustCompile(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[a-zA-Z0-9]([a-zA-Z0-9-]{0,62}\.)+[a-zA-Z]{2,63})$`)

// ValidTenant reports whether id can name a tenant.
func ValidTenant(id string) bool { return tenantPattern.MatchString(id) }

// guidPattern is a tenant id (not a domain name): what a token's tid claim holds.
var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsTenantID reports whether id is a tenant id (a GUID), not a domain name.
func IsTenantID(id string) bool { return guidPattern.MatchString(id) }

// ForTenant returns the cached credential for tenantID.
func (c *Credentials) ForTenant(tenantID string) (azcore.TokenCredential, error) {
	if !ValidTenant(tenantID) {
		return nil, &errkind.Error{Kind: errkind.Invalid, Message: fmt.Sprintf("%q is not a tenant id", tenantID)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cred, ok := c.creds[tenantID]; ok {
		return cred, nil
	}
	cred, err := c.newCredential(tenantID)
	if err != nil {
		return nil, err
	}
	c.creds[tenantID] = cred
	return cred, nil
}

// newCredential returns a credential for tenantID with a token cache of its own.
func (c *Credentials) newCredential(tenantID string) (azcore.TokenCredential, error) {
	opts := &azidentity.ClientSecretCredentialOptions{}
	if c.cfg.AuthorityHost != "" {
		opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: c.cfg.AuthorityHost}
		opts.DisableInstanceDiscovery = !isMicrosoftHost(c.cfg.AuthorityHost)
	}
	if c.cfg.HTTPClient != nil {
		opts.Transport = c.cfg.HTTPClient
	}
	cred, err := azidentity.NewClientSecretCredential(tenantID, c.cfg.ClientID, c.cfg.ClientSecret, opts)
	if err != nil {
		return nil, &errkind.Error{Kind: errkind.Invalid, Message: "app credential: " + err.Error(), Err: err}
	}
	return cred, nil
}

// FreshRoles returns the application permissions tenantID has granted, from a token fetched
// now: a cached token keeps the roles of its time, and an admin who has just granted more
// expects them to count.
func (c *Credentials) FreshRoles(ctx context.Context, tenantID string) ([]string, error) {
	if !ValidTenant(tenantID) {
		return nil, &errkind.Error{Kind: errkind.Invalid, Message: fmt.Sprintf("%q is not a tenant id", tenantID)}
	}
	cred, err := c.newCredential(tenantID)
	if err != nil {
		return nil, err
	}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{GraphScope}})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, Classify(err)
	}
	claims, err := readClaims(tok.Token)
	if err != nil {
		return nil, &errkind.Error{Kind: errkind.Other, Message: "token has unreadable claims"}
	}
	return claims.Roles, nil
}

func isMicrosoftHost(authority string) bool {
	return strings.HasPrefix(authority, "https://login.microsoftonline.com") ||
		strings.HasPrefix(authority, "https://login.microsoftonline.us") ||
		strings.HasPrefix(authority, "https://login.chinacloudapi.cn")
}

// AppToken is what an app-only token tells us about a tenant's consent. The token itself is not
// kept: it must never reach a log or a table.
type AppToken struct {
	TenantID  string   // the token's tid: the tenant that really granted consent
	Roles     []string // granted application permissions
	ExpiresOn time.Time
}

// Token gets an app-only Graph token for tenantID, proving our app is consented there, and
// returns its claims.
func (c *Credentials) Token(ctx context.Context, tenantID string) (AppToken, error) {
	cred, err := c.ForTenant(tenantID)
	if err != nil {
		return AppToken{}, err
	}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{GraphScope}})
	if err != nil {
		if ctx.Err() != nil {
			return AppToken{}, ctx.Err() // the caller gave up; azidentity does not always say so
		}
		return AppToken{}, Classify(err)
	}
	claims, err := readClaims(tok.Token)
	if err != nil {
		return AppToken{}, &errkind.Error{Kind: errkind.Other, Message: "token has unreadable claims"}
	}
	return AppToken{TenantID: claims.TID, Roles: claims.Roles, ExpiresOn: tok.ExpiresOn}, nil
}

type claims struct {
	TID   string   `json:"tid"`
	Roles []string `json:"roles"`
}

// readClaims decodes a JWT payload without verifying it: the token came straight from the
// token endpoint over TLS, and only we read it.
func readClaims(jwt string) (claims, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return claims{}, errors.New("not a JWT")
	}
	b, err := decodeSegment(parts[1])
	if err != nil {
		return claims{}, err
	}
	var cl claims
	return cl, json.Unmarshal(b, &cl)
}

// decodeSegment decodes a JWT segment (base64url, padding optional).
func decodeSegment(seg string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
}

// aadstsCode finds the AADSTS error number in an Entra error text.
var aadstsCode = regexp.MustCompile(`AADSTS\d+`)

// Classify maps a token failure to an entra error: a refused sign-in (bad or expired secret, app
// not consented or removed from the tenant, unknown tenant) needs an admin's re-authorization;
// anything without an answer is unavailability. Secrets never appear in the message: Entra's
// answers do not echo them.
func Classify(err error) error {
	var authErr *azidentity.AuthenticationFailedError
	if errors.As(err, &authErr) {
		e := &errkind.Error{Kind: errkind.Unauthorized, Err: err, Message: "sign-in refused"}
		code := aadstsCode.FindString(authErr.Error())
		switch {
		case authErr.RawResponse != nil:
			e.Status = authErr.RawResponse.StatusCode
			if e.Status == http.StatusTooManyRequests || e.Status >= 500 {
				e.Kind = errkind.Unavailable
			}
		case code == "":
			// No answer and no AADSTS code: the token endpoint was not reached (network, a
			// cancelled or timed-out request), which says nothing about the consent; calling it
			// a refusal would send the org to re-authorize for a blip.
			e.Kind, e.Message = errkind.Unavailable, "token endpoint unreachable"
			return e
		}
		if code != "" {
			e.Code = code
			e.Message = describe(code)
		}
		return e
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &errkind.Error{Kind: errkind.Unavailable, Message: "token endpoint unreachable", Err: err}
}

// describe turns the AADSTS codes an admin can act on into advice.
func describe(code string) string {
	switch code {
	case "AADSTS7000215":
		return "the app secret is invalid; re-authorize after the secret is fixed"
	case "AADSTS7000222":
		return "the app secret has expired; re-authorize after it is renewed"
	case "AADSTS700016":
		return "the app is not consented in this tenant or was removed; an admin must re-authorize"
	case "AADSTS90002":
		return "the tenant does not exist"
	case "AADSTS65001":
		return "admin consent has not been granted"
	default:
		return "sign-in refused (" + code + ")"
	}
}
