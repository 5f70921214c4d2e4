package consent

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestStateVerify(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s := newStates(testKey)
	good := s.sign(claims{Org: "acme", Nonce: "n1", Expires: now.Add(10 * time.Minute).Unix()})
	if c, err := s.verify(good, now); err != nil || c.Org != "acme" || c.Nonce != "n1" {
		t.Fatalf("verify(good) = %+v, %v", c, err)
	}
	ver, payload, sig := parts(good)
	otherKey := newStates([]byte("another-key-another-key-another-key"))
	forgedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"o":"victim","n":"n1","e":9999999999}`))
	for name, state := range map[string]string{
		"empty":              "",
		"garbage":            "hello",
		"wrong version":      "s0." + payload + "." + sig,
		"other key":          otherKey.sign(claims{Org: "acme", Nonce: "n1", Expires: now.Add(time.Minute).Unix()}),
		"payload swapped":    ver + "." + forgedPayload + "." + sig,
		"signature cut":      ver + "." + payload + "." + sig[:10],
		"extra part":         good + ".x",
		"expired":            s.sign(claims{Org: "acme", Nonce: "n1", Expires: now.Unix()}),
		"no org":             s.sign(claims{Nonce: "n1", Expires: now.Add(time.Minute).Unix()}),
		"no nonce":           s.sign(claims{Org: "acme", Expires: now.Add(time.Minute).Unix()}),
		"oversized":          good + strings.Repeat("A", maxStateLen),
		"signature not b64":  ver + "." + payload + ".!!!",
		"payload not b64":    ver + ".!!!." + base64.RawURLEncoding.EncodeToString(s.mac("!!!")),
		"payload not object": ver + "." + b64("[]") + "." + base64.RawURLEncoding.EncodeToString(s.mac(b64("[]"))),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := s.verify(state, now); !errors.Is(err, ErrBadState) {
				t.Errorf("verify = %v, want ErrBadState", err)
			}
		})
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func parts(state string) (string, string, string) {
	p := strings.Split(state, ".")
	return p[0], p[1], p[2]
}

// FuzzVerify checks that no callback state, however odd, panics the parser or verifies without
// the key.
func FuzzVerify(f *testing.F) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	s := newStates(testKey)
	f.Add(s.sign(claims{Org: "acme", Nonce: "n1", Expires: now.Add(time.Minute).Unix()}))
	f.Add("s1..")
	f.Add("s1.e30.")
	f.Add("")
	f.Fuzz(func(t *testing.T, state string) {
		c, err := s.verify(state, now)
		if err != nil {
			return
		}
		// Whatever verified must be exactly what we would have signed.
		if s.sign(c) != state && !strings.HasPrefix(state, "s1.") {
			t.Errorf("verified a state we did not sign: %q", state)
		}
	})
}
