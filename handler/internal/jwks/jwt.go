package jwks

import (
	"context"
	"errors"

	"github.com/golang-jwt/jwt/v5"
)

// Describe names the check a JWT failed (golang-jwt's errors), without quoting the token:
// what the refusal's log line says.
func Describe(err error) string {
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

// Parse verifies the JWT tok with the key of this set its header's kid names, under the parser
// options opts plus the ones every caller needs (the cache's clock, exp required), and fills
// claims. It returns the key that verified the token (its endorsements are Bot Framework's).
func (c *Cache) Parse(ctx context.Context, tok string, claims jwt.Claims, opts ...jwt.ParserOption) (Key, error) {
	var used Key
	opts = append(opts, jwt.WithTimeFunc(c.cfg.Now), jwt.WithExpirationRequired())
	_, err := jwt.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		k, err := c.Key(ctx, kid)
		if err != nil {
			return nil, err
		}
		used = k
		return k.Public, nil
	}, opts...)
	return used, err
}
