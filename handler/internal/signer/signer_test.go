package signer

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func TestSignVerify(t *testing.T) {
	s, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	good := s.Sign("consent state", []byte(`{"o":"acme"}`))
	if p, err := s.Verify("consent state", good, 1024); err != nil || string(p) != `{"o":"acme"}` {
		t.Fatalf("Verify(good) = %q, %v", p, err)
	}
	other, _ := New([]byte("another-key-another-key-another-key"))
	payload, sig, _ := strings.Cut(good, ".")
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"o":"victim"}`))
	for name, tc := range map[string]struct{ purpose, token string }{
		"empty":                   {"consent state", ""},
		"no dot":                  {"consent state", "abc"},
		"other key":               {"consent state", other.Sign("consent state", []byte(`{"o":"acme"}`))},
		"other purpose":           {"webhook clientState", good},
		"purpose shifted":         {"consent stat", s.Sign("consent state", []byte("e"))},
		"payload swapped":         {"consent state", forged + "." + sig},
		"signature cut":           {"consent state", payload + "." + sig[:10]},
		"extra part":              {"consent state", good + ".x"},
		"line break in signature": {"consent state", payload + "." + sig[:5] + "\r\n" + sig[5:]},
		"line break in payload":   {"consent state", payload[:3] + "\n" + payload[3:] + "." + sig},
		"oversized":               {"consent state", good + strings.Repeat("A", 1024)},
		"sig not b64":             {"consent state", payload + ".!!!"},
		"payload not b64":         {"consent state", "!!!." + base64.RawURLEncoding.EncodeToString(s.MAC("consent state", []byte("!!!")))},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Verify(tc.purpose, tc.token, 1024); !errors.Is(err, ErrInvalid) {
				t.Errorf("Verify = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestNewRefusesShortKeys(t *testing.T) {
	if _, err := New(key[:31]); err == nil {
		t.Error("a 31-byte key was accepted")
	}
}

func TestEqual(t *testing.T) {
	if !Equal("abc", "abc") || Equal("abc", "abd") || Equal("abc", "ab") {
		t.Error("Equal is wrong")
	}
}

func FuzzVerify(f *testing.F) {
	s, _ := New(key)
	f.Add(s.Sign("p", []byte("x")))
	f.Add(".")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		payload, err := s.Verify("p", token, 4096)
		if err == nil && s.Sign("p", payload) != token {
			t.Errorf("verified a token we did not sign: %q", token)
		}
	})
}
