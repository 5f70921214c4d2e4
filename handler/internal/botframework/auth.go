package botframework

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/jwks"
)

// Bot Framework's token issuer and OpenID metadata (public cloud).
const (
	Issuer             = "https://api.botframework.com"
	DefaultMetadataURL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
)

// clockSkew is the tolerance on nbf and exp. Keys are refreshed daily, and refetched for an
// unknown key id at most once a minute (package jwks).
const clockSkew = 5 * time.Minute

// ValidatorConfig configures a Validator.
type ValidatorConfig struct {
	// MetadataURL is the OpenID metadata document (BOT_OPENID_METADATA_URL); default
	// DefaultMetadataURL. Its jwks_uri names the signing keys.
	MetadataURL string
	// AppID is the bot's Microsoft App ID (BOT_APP_ID): the tokens' required audience.
	AppID string
	// HTTPClient fetches the metadata and keys; default http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock for token lifetimes and key refreshes; default time.Now.
	Now func() time.Time
	// Logger receives key refreshes and failed fetches; default discard.
	Logger *slog.Logger
}

// Validator checks the JWTs Bot Service sends with inbound activities. It is safe for
// concurrent use; keys are fetched on first use and cached.
type Validator struct {
	cfg  ValidatorConfig
	keys *jwks.Cache // Bot Framework's JWKS, by kid
}

// NewValidator returns a Validator. It does no I/O.
func NewValidator(cfg ValidatorConfig) *Validator {
	cfg.MetadataURL = cmp.Or(cfg.MetadataURL, DefaultMetadataURL)
	// jwks defaults the clock and the logger, jwks.GetJSON the client.
	v := &Validator{cfg: cfg}
	v.keys = jwks.New(jwks.Config{Fetch: v.fetchKeys, Now: cfg.Now, Logger: cfg.Logger, Name: "botframework"})
	return v
}

// authError is a refusal of an inbound request: 401, or 403 when forbidden.
func authError(kind errkind.Kind, msg string, cause error) error {
	status := http.StatusUnauthorized
	if kind == errkind.Forbidden {
		status = http.StatusForbidden
	}
	return &errkind.Error{Kind: kind, Service: "botframework", Status: status, Message: msg, Err: cause}
}

func unauthorized(msg string, cause error) error { return authError(errkind.Unauthorized, msg, cause) }

// Validate checks the Authorization header of an inbound activity a: a Bearer JWT signed with
// RS256 (or RS384/RS512) by a key of the Bot Framework JWKS named by its kid, issued by
// https://api.botframework.com for the bot's app id, within its nbf/exp with 5 minutes of
// skew, whose signing key endorses a.ChannelID and whose serviceurl claim equals
// a.ServiceURL (a trailing '/' aside). It returns nil, an error of kind errkind.Forbidden
// (answer 403) when the key does not endorse the channel, or one of kind
// errkind.Unauthorized (answer 401) for any other failure, including keys that cannot be
// fetched. The error never contains the token.
func (v *Validator) Validate(ctx context.Context, authorization string, a Activity) error {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return unauthorized("missing or malformed Authorization header", nil)
	}
	tok = strings.TrimSpace(tok)
	claims := jwt.MapClaims{}
	key, err := v.keys.Parse(ctx, tok, claims,
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512"}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(v.cfg.AppID),
		jwt.WithLeeway(clockSkew),
	)
	if err != nil {
		return unauthorized(jwks.Describe(err), err)
	}
	if v.cfg.AppID == "" { // jwt.WithAudience("") would accept any audience
		return unauthorized("no bot app id configured", nil)
	}
	if a.ChannelID == "" || !slices.Contains(key.Endorsements, a.ChannelID) {
		return authError(errkind.Forbidden, "the signing key does not endorse the activity's channel", nil)
	}
	su, _ := claims["serviceurl"].(string)
	if su == "" || a.ServiceURL == "" || !strings.EqualFold(strings.TrimRight(su, "/"), strings.TrimRight(a.ServiceURL, "/")) {
		return unauthorized("the token's serviceurl claim does not match the activity's serviceUrl", nil)
	}
	return nil
}

// fetchKeys reads the metadata's jwks_uri and the RSA signing keys there.
func (v *Validator) fetchKeys(ctx context.Context) (map[string]jwks.Key, error) {
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := jwks.GetJSON(ctx, v.cfg.HTTPClient, v.cfg.MetadataURL, &meta); err != nil {
		return nil, fmt.Errorf("OpenID metadata: %w", err)
	}
	u, err := url.Parse(meta.JWKSURI)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("OpenID metadata: jwks_uri %q is not an https URL", meta.JWKSURI)
	}
	return jwks.FetchURL(ctx, v.cfg.HTTPClient, meta.JWKSURI, v.cfg.Logger)
}
