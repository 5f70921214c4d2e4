package richnotify_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/richnotify"
)

var testNow = time.Date(2026, 3, 4, 9, 30, 0, 0, time.UTC)

// Certificates are generated once per test binary (RSA generation is slow).
var certs = sync.OnceValues(func() (map[string]richnotify.Certificate, error) {
	out := map[string]richnotify.Certificate{}
	for _, id := range []string{"leap-notify-2026-03", "leap-notify-2025-09", "other"} {
		c, err := richnotify.Generate(id, testNow)
		if err != nil {
			return nil, err
		}
		out[id] = c
	}
	return out, nil
})

func cert(t testing.TB, id string) richnotify.Certificate {
	t.Helper()
	cs, err := certs()
	if err != nil {
		t.Fatal(err)
	}
	c, ok := cs[id]
	if !ok {
		t.Fatalf("no test certificate %q", id)
	}
	return c
}

// vector is what Graph computes for one notification, written here independently of Decrypt:
// a random 32-byte key wrapped with RSA-OAEP SHA-1 under the certificate's public key,
// AES-256-CBC with IV = key[:16] over the PKCS#7-padded JSON, and HMAC-SHA256(key, ciphertext).
type vector struct {
	key    []byte
	padded []byte // the plaintext with its padding (tests replace it to break the padding)
}

func encryptAsGraph(t testing.TB, c richnotify.Certificate, plaintext []byte, mutate func(v *vector)) richnotify.EncryptedContent {
	t.Helper()
	v := &vector{key: make([]byte, 32)}
	if _, err := rand.Read(v.key); err != nil {
		t.Fatal(err)
	}
	n := aes.BlockSize - len(plaintext)%aes.BlockSize
	v.padded = append(bytes.Clone(plaintext), bytes.Repeat([]byte{byte(n)}, n)...)
	if mutate != nil {
		mutate(v)
	}
	aesKey := v.key
	if len(aesKey) != 32 {
		aesKey = bytes.Repeat([]byte{7}, 32) // the wrapped key is wrong; encrypt with something
	}
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		t.Fatal(err)
	}
	ct := make([]byte, len(v.padded))
	if len(ct)%aes.BlockSize == 0 {
		cipher.NewCBCEncrypter(block, aesKey[:16]).CryptBlocks(ct, v.padded)
	} else {
		copy(ct, v.padded) // not encryptable as CBC: the "ciphertext" is simply the wrong length
	}
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, &c.Key.PublicKey, v.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, v.key)
	mac.Write(ct)
	return richnotify.EncryptedContent{
		Data:                            base64.StdEncoding.EncodeToString(ct),
		DataSignature:                   base64.StdEncoding.EncodeToString(mac.Sum(nil)),
		DataKey:                         base64.StdEncoding.EncodeToString(wrapped),
		EncryptionCertificateID:         c.ID,
		EncryptionCertificateThumbprint: c.Thumbprint(),
	}
}

func keyring(t testing.TB) *richnotify.Keyring {
	t.Helper()
	k, err := richnotify.NewKeyring(cert(t, "leap-notify-2026-03"), cert(t, "leap-notify-2025-09"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const message = `{"id":"1741080012345","messageType":"message","body":{"contentType":"html","content":"<p>Le d\u00e9ploiement est bloqu\u00e9</p>"}}`

func TestDecryptRoundTrip(t *testing.T) {
	k := keyring(t)
	c := cert(t, "leap-notify-2026-03")
	for _, size := range []int{0, 1, 15, 16, 17, 31, 32, 33, 1000} {
		plain := []byte(strings.Repeat("x", size))
		if size == 1000 {
			plain = []byte(message + strings.Repeat(" ", 1000-len(message)))
		}
		got, err := k.Decrypt(encryptAsGraph(t, c, plain, nil))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("size %d: got %q, want %q", size, got, plain)
		}
	}
	// The thumbprint is optional and compared case-insensitively.
	for _, tp := range []string{"", strings.ToLower(c.Thumbprint())} {
		ec := encryptAsGraph(t, c, []byte(message), nil)
		ec.EncryptionCertificateThumbprint = tp
		if got, err := k.Decrypt(ec); err != nil || string(got) != message {
			t.Errorf("thumbprint %q: got %q, %v", tp, got, err)
		}
	}
}

func TestDecryptRotatedKeyring(t *testing.T) {
	oldCert, newCert := cert(t, "leap-notify-2025-09"), cert(t, "leap-notify-2026-03")
	k := keyring(t)
	if k.Current().ID != newCert.ID {
		t.Fatalf("Current() = %q, want %q", k.Current().ID, newCert.ID)
	}
	for _, c := range []richnotify.Certificate{oldCert, newCert} {
		if got, err := k.Decrypt(encryptAsGraph(t, c, []byte(message), nil)); err != nil || string(got) != message {
			t.Errorf("certificate %s: got %q, %v", c.ID, got, err)
		}
	}
	// Once the old certificate is dropped, its notifications are refused by id.
	only, err := richnotify.NewKeyring(newCert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := only.Decrypt(encryptAsGraph(t, oldCert, []byte(message), nil)); !errors.Is(err, richnotify.ErrUnknownCertificate) {
		t.Errorf("old certificate after rotation: err %v, want ErrUnknownCertificate", err)
	}
}

func TestNewKeyringRefuses(t *testing.T) {
	c := cert(t, "leap-notify-2026-03")
	same := cert(t, "other")
	same.ID = c.ID
	for name, older := range map[string][]richnotify.Certificate{
		"duplicate id":   {same},
		"empty id":       {{Cert: c.Cert, Key: c.Key}},
		"no key":         {{ID: "x", Cert: c.Cert}},
		"no certificate": {{ID: "x", Key: c.Key}},
		"id too long":    {{ID: strings.Repeat("a", 129), Cert: c.Cert, Key: c.Key}},
	} {
		if _, err := richnotify.NewKeyring(c, older...); !errors.Is(err, errkind.Invalid) {
			t.Errorf("%s: err %v, want Invalid", name, err)
		}
	}
}

func TestDecryptRefuses(t *testing.T) {
	k := keyring(t)
	c := cert(t, "leap-notify-2026-03")
	other := cert(t, "other")
	flip := func(s string, i int) string {
		b, _ := base64.StdEncoding.DecodeString(s)
		b[i%len(b)] ^= 0x01
		return base64.StdEncoding.EncodeToString(b)
	}
	good := func() richnotify.EncryptedContent { return encryptAsGraph(t, c, []byte(message), nil) }
	for _, tc := range []struct {
		name string
		ec   func() richnotify.EncryptedContent
		want error
	}{
		{"tampered dataSignature", func() richnotify.EncryptedContent {
			ec := good()
			ec.DataSignature = flip(ec.DataSignature, 5)
			return ec
		}, richnotify.ErrBadSignature},
		{"tampered data", func() richnotify.EncryptedContent {
			ec := good()
			ec.Data = flip(ec.Data, 20)
			return ec
		}, richnotify.ErrBadSignature},
		{"data swapped from another notification", func() richnotify.EncryptedContent {
			ec := good()
			ec.Data = good().Data
			return ec
		}, richnotify.ErrBadSignature},
		{"missing dataSignature", func() richnotify.EncryptedContent {
			ec := good()
			ec.DataSignature = ""
			return ec
		}, richnotify.ErrBadSignature},
		{"truncated dataSignature", func() richnotify.EncryptedContent {
			ec := good()
			sig, _ := base64.StdEncoding.DecodeString(ec.DataSignature)
			ec.DataSignature = base64.StdEncoding.EncodeToString(sig[:16])
			return ec
		}, richnotify.ErrBadSignature},
		{"dataSignature not base64", func() richnotify.EncryptedContent {
			ec := good()
			ec.DataSignature = "%%%"
			return ec
		}, richnotify.ErrBadSignature},
		{"unknown certificate id", func() richnotify.EncryptedContent {
			ec := good()
			ec.EncryptionCertificateID = "leap-notify-1999-01"
			return ec
		}, richnotify.ErrUnknownCertificate},
		{"no certificate id", func() richnotify.EncryptedContent {
			ec := good()
			ec.EncryptionCertificateID = ""
			return ec
		}, richnotify.ErrUnknownCertificate},
		{"wrong thumbprint", func() richnotify.EncryptedContent {
			ec := good()
			ec.EncryptionCertificateThumbprint = other.Thumbprint()
			return ec
		}, richnotify.ErrUnknownCertificate},
		{"key wrapped for another certificate under our id", func() richnotify.EncryptedContent {
			ec := encryptAsGraph(t, other, []byte(message), nil)
			ec.EncryptionCertificateID, ec.EncryptionCertificateThumbprint = c.ID, ""
			return ec
		}, richnotify.ErrMalformed},
		{"truncated dataKey", func() richnotify.EncryptedContent {
			ec := good()
			wk, _ := base64.StdEncoding.DecodeString(ec.DataKey)
			ec.DataKey = base64.StdEncoding.EncodeToString(wk[:len(wk)-1])
			return ec
		}, richnotify.ErrMalformed},
		{"16-byte key", func() richnotify.EncryptedContent {
			return encryptAsGraph(t, c, []byte(message), func(v *vector) { v.key = v.key[:16] })
		}, richnotify.ErrMalformed},
		{"bad padding byte", func() richnotify.EncryptedContent {
			return encryptAsGraph(t, c, []byte(message), func(v *vector) { v.padded[len(v.padded)-2] ^= 0xff })
		}, richnotify.ErrMalformed},
		{"padding count zero", func() richnotify.EncryptedContent {
			return encryptAsGraph(t, c, []byte(strings.Repeat("a", 16)), func(v *vector) { v.padded = v.padded[:16]; v.padded[15] = 0 })
		}, richnotify.ErrMalformed},
		{"padding count over a block", func() richnotify.EncryptedContent {
			return encryptAsGraph(t, c, nil, func(v *vector) { v.padded = bytes.Repeat([]byte{17}, 32) })
		}, richnotify.ErrMalformed},
		{"no padding", func() richnotify.EncryptedContent {
			return encryptAsGraph(t, c, []byte(strings.Repeat("a", 16)), func(v *vector) { v.padded = v.padded[:16] })
		}, richnotify.ErrMalformed},
		{"data not whole blocks", func() richnotify.EncryptedContent {
			return encryptAsGraph(t, c, []byte(message), func(v *vector) { v.padded = v.padded[:len(v.padded)-1] })
		}, richnotify.ErrMalformed},
		{"empty data", func() richnotify.EncryptedContent {
			return encryptAsGraph(t, c, nil, func(v *vector) { v.padded = nil })
		}, richnotify.ErrMalformed},
		{"garbage base64 data", func() richnotify.EncryptedContent {
			ec := good()
			ec.Data = "not base64!"
			return ec
		}, richnotify.ErrMalformed},
		{"garbage base64 dataKey", func() richnotify.EncryptedContent {
			ec := good()
			ec.DataKey = "@@@@"
			return ec
		}, richnotify.ErrMalformed},
		{"empty dataKey", func() richnotify.EncryptedContent {
			ec := good()
			ec.DataKey = ""
			return ec
		}, richnotify.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ec := tc.ec()
			got, err := k.Decrypt(ec)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %q, err %v; want %v", got, err, tc.want)
			}
			if errkind.Of(err) != errkind.Invalid {
				t.Errorf("kind %v, want invalid", errkind.Of(err))
			}
			msg := err.Error()
			for _, secret := range []string{"déploiement", "ploiement", ec.DataKey, ec.Data} {
				if secret != "" && len(secret) > 3 && strings.Contains(msg, secret) {
					t.Errorf("error %q contains content", msg)
				}
			}
		})
	}
}

// Errors are sentinels: distinct, and all of kind Invalid.
func TestErrorsAreInvalid(t *testing.T) {
	for _, e := range []error{richnotify.ErrUnknownCertificate, richnotify.ErrBadSignature, richnotify.ErrMalformed} {
		if errkind.Of(e) != errkind.Invalid {
			t.Errorf("%v: kind %v", e, errkind.Of(e))
		}
		if errors.Is(fmt.Errorf("x: %w", e), richnotify.ErrMalformed) != (e == richnotify.ErrMalformed) {
			t.Errorf("%v is confused with ErrMalformed", e)
		}
	}
}
