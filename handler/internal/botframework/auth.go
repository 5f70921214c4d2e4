package botframework

import (
	"cmp"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// Bot Framework's token issuer and OpenID metadata (public cloud).
const (
	Issuer             = "https://api.botframework.com"
	DefaultMetadataURL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
)

const (
	clockSkew       = 5 * time.Minute
	keysMaxAge      = 24 * time.Hour // refresh the JWKS at least daily
	unknownKidPause = time.Minute    // at most one refetch a minute for unknown key ids
	maxDocBytes     = 1 << 20
)

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
	cfg ValidatorConfig

	fetchMu sync.Mutex // one fetch at a time

	mu          sync.Mutex
	keys        map[string]signingKey // by kid
	fetched     time.Time             // last successful fetch
	lastAttempt time.Time             // last fetch attempt (refetch pacing)
}

type signingKey struct {
	pub          *rsa.PublicKey
	endorsements []string
}

// NewValidator returns a Validator. It does no I/O.
func NewValidator(cfg ValidatorConfig) *Validator {
	cfg.MetadataURL = cmp.Or(cfg.MetadataURL, DefaultMetadataURL)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Validator{cfg: cfg, keys: map[string]signingKey{}}
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
	var key signingKey
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		k, err := v.key(ctx, kid)
		if err != nil {
			return nil, err
		}
		key = k
		return k.pub, nil
	},
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512"}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(v.cfg.AppID),
		jwt.WithLeeway(clockSkew),
		jwt.WithTimeFunc(v.cfg.Now),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		return unauthorized(describeJWTError(err), err)
	}
	if v.cfg.AppID == "" { // jwt.WithAudience("") would accept any audience
		return unauthorized("no bot app id configured", nil)
	}
	if a.ChannelID == "" || !slices.Contains(key.endorsements, a.ChannelID) {
		return authError(errkind.Forbidden, "the signing key does not endorse the activity's channel", nil)
	}
	su, _ := claims["serviceurl"].(string)
	if su == "" || a.ServiceURL == "" || !strings.EqualFold(strings.TrimRight(su, "/"), strings.TrimRight(a.ServiceURL, "/")) {
		return unauthorized("the token's serviceurl claim does not match the activity's serviceUrl", nil)
	}
	return nil
}

// describeJWTError names the failed check without quoting the token.
func describeJWTError(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token cannot be verified (unknown or unavailable signing key)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "invalid token signature or algorithm"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong token issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong token audience"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token lacks a required claim"
	}
	return "invalid token"
}

// key returns the signing key kid: from the cache while it is younger than a day, else after a
// refetch; an unknown kid triggers a refetch at most once a minute (a rotation). A failed
// daily refresh keeps serving the cached keys.
func (v *Validator) key(ctx context.Context, kid string) (signingKey, error) {
	k, ok, need := v.lookup(kid)
	if ok && !need {
		return k, nil
	}
	// Unknown here: wait for a fetch another caller may have in flight (several activities
	// arrive at once after a start or a rotation), then look again.
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	// Another caller may have fetched while this one waited.
	if k, ok, need = v.lookup(kid); !need {
		if ok {
			return k, nil
		}
		return signingKey{}, fmt.Errorf("unknown signing key")
	}
	v.mu.Lock()
	v.lastAttempt = v.cfg.Now()
	v.mu.Unlock()
	keys, err := v.fetchKeys(ctx)
	if err != nil {
		v.cfg.Logger.WarnContext(ctx, "botframework: fetching signing keys failed", "err", err)
		if ok {
			return k, nil // stale but known
		}
		return signingKey{}, fmt.Errorf("signing keys unavailable: %w", err)
	}
	v.mu.Lock()
	v.keys, v.fetched = keys, v.cfg.Now()
	v.mu.Unlock()
	v.cfg.Logger.InfoContext(ctx, "botframework: signing keys refreshed", "keys", len(keys))
	k, ok = keys[kid]
	if !ok {
		return signingKey{}, fmt.Errorf("unknown signing key")
	}
	return k, nil
}

// lookup reports the cached key and whether to fetch now: the keys were never fetched, are a
// day old or lack kid, and the last attempt (successful or not) is at least a minute old.
func (v *Validator) lookup(kid string) (k signingKey, ok, need bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.cfg.Now()
	k, ok = v.keys[kid]
	due := v.fetched.IsZero() || now.Sub(v.fetched) >= keysMaxAge || !ok
	need = due && (v.lastAttempt.IsZero() || now.Sub(v.lastAttempt) >= unknownKidPause)
	return k, ok, need
}

type jwksDoc struct {
	Keys []struct {
		Kty          string   `json:"kty"`
		Use          string   `json:"use"`
		Kid          string   `json:"kid"`
		N            string   `json:"n"`
		E            string   `json:"e"`
		Endorsements []string `json:"endorsements"`
	} `json:"keys"`
}

// fetchKeys reads the metadata's jwks_uri and the RSA signing keys there.
func (v *Validator) fetchKeys(ctx context.Context) (map[string]signingKey, error) {
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := v.getJSON(ctx, v.cfg.MetadataURL, &meta); err != nil {
		return nil, fmt.Errorf("OpenID metadata: %w", err)
	}
	u, err := url.Parse(meta.JWKSURI)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("OpenID metadata: jwks_uri %q is not an https URL", meta.JWKSURI)
	}
	var doc jwksDoc
	if err := v.getJSON(ctx, meta.JWKSURI, &doc); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	keys := map[string]signingKey{}
	for _, k := range doc.Keys {
		if k.Kty != "RSA" || k.Kid == "" || k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := rsaKey(k.N, k.E)
		if err != nil {
			v.cfg.Logger.WarnContext(ctx, "botframework: skipping an unreadable JWKS key", "kid", k.Kid, "err", err)
			continue
		}
		keys[k.Kid] = signingKey{pub: pub, endorsements: slices.Clone(k.Endorsements)}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no RSA signing keys")
	}
	return keys, nil
}

func rsaKey(n, e string) (*rsa.PublicKey, error) {
	nb, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(n, "="))
	if err != nil {
		return nil, fmt.Errorf("modulus: %w", err)
	}
	eb, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(e, "="))
	if err != nil || len(eb) == 0 || len(eb) > 4 {
		return nil, errors.New("bad exponent")
	}
	exp := int(new(big.Int).SetBytes(eb).Int64())
	mod := new(big.Int).SetBytes(nb)
	if mod.BitLen() < 2048 || exp < 3 {
		return nil, errors.New("key too weak")
	}
	return &rsa.PublicKey{N: mod, E: exp}, nil
}

func (v *Validator) getJSON(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocBytes))
		return fmt.Errorf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocBytes)).Decode(out); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
