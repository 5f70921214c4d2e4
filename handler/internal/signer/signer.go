// Package signer makes and checks tokens signed with HMAC-SHA256 under STATE_SIGNING_KEY:
// consent states today, webhook clientState and other signed tokens as they come. Every token
// names its purpose, which is mixed into the MAC, so a token made for one purpose never verifies
// for another.
package signer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid covers every way a token can fail: malformed, oversized, or signed with another key
// or for another purpose. Callers learn no more than that.
var ErrInvalid = errors.New("signer: invalid token")

// MinKeyBytes is the shortest key New accepts (the size of the MAC).
const MinKeyBytes = 32

// Signer signs and verifies tokens. The zero value is unusable; use New.
type Signer struct{ key []byte }

// New returns a Signer for key, which must have at least MinKeyBytes bytes.
func New(key []byte) (Signer, error) {
	if len(key) < MinKeyBytes {
		return Signer{}, fmt.Errorf("signer: the key must be at least %d bytes", MinKeyBytes)
	}
	return Signer{key: append([]byte(nil), key...)}, nil
}

// MAC is the purpose-bound HMAC-SHA256 of data.
func (s Signer) MAC(purpose string, data []byte) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(purpose))
	h.Write([]byte{0}) // the purpose ends here: "ab"+"c" and "a"+"bc" differ
	h.Write(data)
	return h.Sum(nil)
}

// Sign returns "<payload>.<mac>", both base64url without padding; the MAC covers the encoded
// payload.
func (s Signer) Sign(purpose string, payload []byte) string {
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + base64.RawURLEncoding.EncodeToString(s.MAC(purpose, []byte(p)))
}

// Verify checks a token made by Sign for purpose and returns its payload. Tokens longer than
// maxLen bytes are refused before any work.
func (s Signer) Verify(purpose, token string, maxLen int) ([]byte, error) {
	if token == "" || len(token) > maxLen {
		return nil, fmt.Errorf("%w: missing or oversized", ErrInvalid)
	}
	p, sig, ok := strings.Cut(token, ".")
	if !ok || !base64URL(p) || !base64URL(sig) {
		return nil, fmt.Errorf("%w: malformed", ErrInvalid)
	}
	// Strict: a signature whose last character differs only in unused bits decodes to the same
	// MAC, and would let two strings stand for one token (found by FuzzVerify).
	got, err := strictBase64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.MAC(purpose, []byte(p))) {
		return nil, fmt.Errorf("%w: signature does not match", ErrInvalid)
	}
	payload, err := strictBase64.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed payload", ErrInvalid)
	}
	return payload, nil
}

// base64URL reports whether s holds only the base64url alphabet. Checked before decoding because
// Go's decoder skips '\r' and '\n', which would let a token with a line break inserted into its
// signature verify as the token without (found by FuzzVerify).
func base64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// strictBase64 is base64url without padding that refuses non-zero unused bits.
var strictBase64 = base64.RawURLEncoding.Strict()

// Equal compares a received MAC-derived secret with the expected one in constant time.
func Equal(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }
