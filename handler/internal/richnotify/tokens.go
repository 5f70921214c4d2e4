package richnotify

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/jwks"
)

const (
	// DefaultKeysURL is the Microsoft identity platform's signing keys (public cloud).
	DefaultKeysURL = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
	// GraphNotificationsAppID is the app that issues validationTokens: Microsoft Graph Change
	// Tracking, in the token's azp (v2 tokens) or appid (v1 tokens).
	GraphNotificationsAppID = "0bf30f3b-4a52-48df-9a82-234910c4a086"

	tokenSkew = 5 * time.Minute
)

// TokenConfig configures a TokenValidator.
type TokenConfig struct {
	// KeysURL is the JWKS of the token signing keys; default DefaultKeysURL.
	KeysURL string
	// AppID is our app's (client) id, the tokens' required audience (M365_CLIENT_ID).
	AppID string
	// HTTPClient fetches the keys; default http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock for token lifetimes and key refreshes; default time.Now.
	Now func() time.Time
	// Logger receives key refreshes and failed fetches; default discard.
	Logger *slog.Logger
}

// TokenValidator checks the validationTokens Graph sends with rich notifications. It is safe for
// concurrent use; the keys are fetched on first use and cached (package jwks: refreshed daily,
// refetched at most once a minute for an unknown key id, one fetch for concurrent callers).
type TokenValidator struct {
	cfg  TokenConfig
	keys *jwks.Cache
}

// NewTokenValidator returns a TokenValidator. It does no I/O.
func NewTokenValidator(cfg TokenConfig) *TokenValidator {
	cfg.KeysURL = cmp.Or(cfg.KeysURL, DefaultKeysURL)
	// jwks defaults the clock and the logger, jwks.GetJSON the client.
	v := &TokenValidator{cfg: cfg}
	v.keys = jwks.New(jwks.Config{
		Fetch: func(ctx context.Context) (map[string]jwks.Key, error) {
			return jwks.FetchURL(ctx, cfg.HTTPClient, cfg.KeysURL, cfg.Logger)
		},
		Now: cfg.Now, Logger: cfg.Logger, Name: "richnotify",
	})
	return v
}

func tokenError(msg string, cause error) error {
	return &errkind.Error{Kind: errkind.Unauthorized, Service: "graph", Code: "invalidValidationToken", Message: "validation token: " + msg, Err: cause}
}

// Validate checks one validationTokens JWT for a notification of tenant tenantID: RS256 signed
// by a key of the JWKS named by its kid; within nbf/exp with 5 minutes of skew (exp required);
// aud = our app id; issued by Graph's change-notification app (azp, or appid in v1 tokens, =
// GraphNotificationsAppID); tid = tenantID; iss https://login.microsoftonline.com/{tid}/v2.0 or
// https://sts.windows.net/{tid}/. It returns nil or an error of kind errkind.Unauthorized,
// including when the keys cannot be fetched; the error never contains the token.
func (v *TokenValidator) Validate(ctx context.Context, token, tenantID string) error {
	if v.cfg.AppID == "" { // jwt.WithAudience("") would accept any audience
		return tokenError("no app id configured", nil)
	}
	if tenantID == "" {
		return tokenError("the notification has no tenantId", nil)
	}
	claims := jwt.MapClaims{}
	_, err := v.keys.Parse(ctx, strings.TrimSpace(token), claims,
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithAudience(v.cfg.AppID),
		jwt.WithLeeway(tokenSkew),
	)
	if err != nil {
		return tokenError(jwks.Describe(err), err)
	}
	tid, _ := claims["tid"].(string)
	if tid == "" || !strings.EqualFold(tid, tenantID) {
		return tokenError("tid is not the notification's tenant", nil)
	}
	iss, _ := claims["iss"].(string)
	if !strings.EqualFold(iss, "https://login.microsoftonline.com/"+tid+"/v2.0") && !strings.EqualFold(iss, "https://sts.windows.net/"+tid+"/") {
		return tokenError("wrong issuer", nil)
	}
	// The issuing app: azp in v2 tokens, appid in v1 tokens. A token with azp names its app there.
	party, _ := claims["azp"].(string)
	if _, hasAzp := claims["azp"]; !hasAzp {
		party, _ = claims["appid"].(string)
	}
	if !strings.EqualFold(party, GraphNotificationsAppID) {
		return tokenError("not issued for Microsoft Graph change notifications (azp/appid)", nil)
	}
	return nil
}
