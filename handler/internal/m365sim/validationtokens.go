package m365sim

import (
	"cmp"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// GraphChangeTrackingAppID is the app that issues the validationTokens of rich notifications
// (Microsoft Graph Change Tracking): azp in v2 tokens, appid in v1 tokens.
const GraphChangeTrackingAppID = "0bf30f3b-4a52-48df-9a82-234910c4a086"

// validationTokenLifetime follows the token in Microsoft's documentation (iat to exp: 8 h 5 min).
const validationTokenLifetime = 8*time.Hour + 5*time.Minute

// ValidationTokenOptions say how ValidationTokenWith signs a token. The zero value makes the
// token Graph sends: a v2.0 token signed RS256 by the sim's identity key (served at
// /{tenant}/discovery/v2.0/keys and /common/discovery/v2.0/keys), iss
// https://login.microsoftonline.com/{tid}/v2.0, aud the app id, azp Graph Change Tracking, tid
// the tenant, valid from now (sim time) for 8 h 5 min.
type ValidationTokenOptions struct {
	V1          bool          // a v1.0 token: iss https://sts.windows.net/{tid}/, appid instead of azp
	Issuer      string        // iss instead of the documented one
	Audience    string        // aud instead of the app id
	Publisher   string        // azp (or appid with V1) instead of GraphChangeTrackingAppID
	TenantClaim string        // tid claim instead of the tenant's id (iss still uses the tenant's id)
	Expired     bool          // exp 10 minutes ago (beyond a 5-minute skew)
	NotBefore   time.Duration // nbf = now + NotBefore (skew tests)
	WrongKey    bool          // signed by a key outside the JWKS under the published kid: bad signature
	UnknownKid  bool          // signed by a key outside the JWKS under its own kid
}

// ValidationToken returns a validationTokens JWT as Microsoft Graph sends with rich notifications
// for app appID in tenant tenantID (a tenant id or verified domain added with AddTenant).
func (s *Server) ValidationToken(tenantID, appID string) (string, error) {
	return s.ValidationTokenWith(tenantID, appID, ValidationTokenOptions{})
}

// ValidationTokenWith is ValidationToken signed as o says (for tests of each failure).
func (s *Server) ValidationTokenWith(tenantID, appID string, o ValidationTokenOptions) (string, error) {
	t, unlock, err := s.lockResolvedTenant(tenantID)
	if err != nil {
		return "", err
	}
	tid, now := t.id, s.now()
	unlock()

	nbf, exp := now, now.Add(validationTokenLifetime)
	if o.NotBefore != 0 {
		nbf = now.Add(o.NotBefore)
		exp = nbf.Add(validationTokenLifetime)
	}
	if o.Expired {
		exp = now.Add(-10 * time.Minute)
		nbf = exp.Add(-validationTokenLifetime)
	}
	publisher := cmp.Or(o.Publisher, GraphChangeTrackingAppID)
	oid := uuidFrom(tid, GraphChangeTrackingAppID, "sp")
	c := map[string]any{
		"aud": cmp.Or(o.Audience, appID),
		"iat": now.Unix(),
		"nbf": nbf.Unix(),
		"exp": exp.Unix(),
		"aio": base64.StdEncoding.EncodeToString([]byte(uuid.NewString())[:24]),
		"oid": oid,
		"sub": oid,
		"tid": cmp.Or(o.TenantClaim, tid),
		"uti": base64.RawURLEncoding.EncodeToString([]byte(uuid.NewString())[:16]),
		"rh":  "0.AAAA" + base64.RawURLEncoding.EncodeToString([]byte(tid))[:16] + ".",
	}
	if o.V1 {
		c["iss"] = cmp.Or(o.Issuer, "https://sts.windows.net/"+tid+"/")
		c["idp"] = "https://sts.windows.net/" + tid + "/"
		c["appid"], c["appidacr"], c["ver"] = publisher, "2", "1.0"
	} else {
		c["iss"] = cmp.Or(o.Issuer, "https://login.microsoftonline.com/"+tid+"/v2.0")
		c["azp"], c["azpacr"], c["ver"] = publisher, "2", "2.0"
	}

	sg := getSigner()
	key, kid := sg.key, sg.kid
	switch {
	case o.WrongKey:
		key = botKeyNamed("graph-validation-rogue").key
	case o.UnknownKid:
		rogue := botKeyNamed("graph-validation-rogue")
		key, kid = rogue.key, rogue.kid
	}
	return signRS256(key, kid, c)
}

func signRS256(key *rsa.PrivateKey, kid string, claims any) (string, error) {
	hdr, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "RS256", "x5t": kid, "kid": kid})
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := b64(hdr) + "." + b64(body)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + b64(sig), nil
}
