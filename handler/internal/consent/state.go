package consent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrBadState covers every way a consent state can be unusable: missing, malformed, forged,
// expired, used already, or bound to another org. Callers learn no more than that.
var ErrBadState = errors.New("consent: invalid state")

// stateVersion prefixes every state so the format can change without ambiguity.
const stateVersion = "s1"

// maxStateLen bounds what the parser looks at; real states are about 200 bytes.
const maxStateLen = 1024

// claims is what a state carries. It is signed, not encrypted: nothing in it is secret, and the
// nonce is only useful once.
type claims struct {
	Org     string `json:"o"`
	Nonce   string `json:"n"` // single-use key of the stored state
	Expires int64  `json:"e"` // Unix seconds
	Issued  int64  `json:"i"` // Unix seconds the flow began (a later disconnect wins)
	// Sign-in leg: the tenant the admin consented in, and the OpenID Connect nonce the ID token
	// must carry.
	Tenant    string `json:"t,omitempty"`
	OIDCNonce string `json:"on,omitempty"`
}

// signInLeg reports whether the state belongs to the sign-in that follows admin consent.
func (c claims) signInLeg() bool { return c.OIDCNonce != "" }

// signer signs and verifies states with STATE_SIGNING_KEY.
type signer struct{ key []byte }

func (s signer) mac(payload string) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte("leapchange consent state\x00")) // domain separation from webhook clientState
	h.Write([]byte(payload))
	return h.Sum(nil)
}

// sign returns "s1.<payload>.<mac>", both base64url without padding.
func (s signer) sign(c claims) string {
	b, _ := json.Marshal(c)
	payload := base64.RawURLEncoding.EncodeToString(b)
	return stateVersion + "." + payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload))
}

// verify checks a state's shape, signature and expiry; single use is the caller's job.
func (s signer) verify(state string, now time.Time) (claims, error) {
	if state == "" || len(state) > maxStateLen {
		return claims{}, fmt.Errorf("%w: missing or oversized", ErrBadState)
	}
	version, rest, ok := strings.Cut(state, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || version != stateVersion || strings.Contains(sig, ".") {
		return claims{}, fmt.Errorf("%w: malformed", ErrBadState)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(payload)) {
		return claims{}, fmt.Errorf("%w: signature does not match", ErrBadState)
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return claims{}, fmt.Errorf("%w: malformed payload", ErrBadState)
	}
	var c claims
	if err := json.Unmarshal(raw, &c); err != nil || c.Org == "" || c.Nonce == "" || c.Expires == 0 {
		return claims{}, fmt.Errorf("%w: incomplete payload", ErrBadState)
	}
	if now.Unix() >= c.Expires {
		return claims{}, fmt.Errorf("%w: expired", ErrBadState)
	}
	return c, nil
}
