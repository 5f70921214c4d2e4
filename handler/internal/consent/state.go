package consent

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/signer"
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

// states signs and verifies consent states with STATE_SIGNING_KEY, through the project's signer.
type states struct{ s signer.Signer }

// statePurpose binds the MAC to consent states: no other signed token verifies as one.
const statePurpose = "leapchange consent state"

func newStates(key []byte) states {
	s, err := signer.New(key)
	if err != nil {
		// The configuration refuses short keys at start-up; a Flow without one cannot sign.
		panic("consent: " + err.Error())
	}
	return states{s}
}

func (st states) mac(payload string) []byte { return st.s.MAC(statePurpose, []byte(payload)) }

// sign returns "s1.<payload>.<mac>", both base64url without padding.
func (st states) sign(c claims) string {
	b, _ := json.Marshal(c)
	return stateVersion + "." + st.s.Sign(statePurpose, b)
}

// verify checks a state's shape, signature and expiry; single use is the caller's job.
func (st states) verify(state string, now time.Time) (claims, error) {
	version, token, ok := strings.Cut(state, ".")
	if !ok || version != stateVersion {
		return claims{}, fmt.Errorf("%w: malformed", ErrBadState)
	}
	raw, err := st.s.Verify(statePurpose, token, maxStateLen)
	if err != nil {
		return claims{}, fmt.Errorf("%w: %w", ErrBadState, err)
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
