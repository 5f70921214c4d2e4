package richnotify_test

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/richnotify"
)

// FuzzDecrypt: any encryptedContent is refused with one of the three errors or decrypted, never a
// panic. With resign, the fields keep a dataKey that unwraps and a dataSignature recomputed over
// the fuzzed data, so that the AES and padding checks see arbitrary ciphertexts too.
func FuzzDecrypt(f *testing.F) {
	k := keyring(f)
	c := cert(f, "leap-notify-2026-03")
	good := encryptAsGraph(f, c, []byte(message), nil)
	f.Add(good.Data, good.DataSignature, good.DataKey, good.EncryptionCertificateID, good.EncryptionCertificateThumbprint, false)
	f.Add(good.Data, good.DataSignature, good.DataKey, good.EncryptionCertificateID, "", true)
	f.Add("AAAAAAAAAAAAAAAAAAAAAA==", "", good.DataKey, good.EncryptionCertificateID, "", true)
	f.Add("", "", "", "", "", false)
	f.Add("!!", "??", "==", "leap-notify-2025-09", "zz", false)
	f.Add(good.Data[:len(good.Data)-4], good.DataSignature, good.DataKey[:8], c.ID, c.Thumbprint(), true)

	// The key inside good.DataKey, for re-signing (unwrapped here with the test's own call).
	wrapped, _ := base64.StdEncoding.DecodeString(good.DataKey)
	key, err := rsa.DecryptOAEP(sha1.New(), nil, c.Key, wrapped, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data, sig, dataKey, id, thumb string, resign bool) {
		ec := richnotify.EncryptedContent{Data: data, DataSignature: sig, DataKey: dataKey, EncryptionCertificateID: id, EncryptionCertificateThumbprint: thumb}
		if resign {
			ec.DataKey, ec.EncryptionCertificateID = good.DataKey, c.ID
			if raw, err := base64.StdEncoding.DecodeString(data); err == nil {
				mac := hmac.New(sha256.New, key)
				mac.Write(raw)
				ec.DataSignature = base64.StdEncoding.EncodeToString(mac.Sum(nil))
			}
		}
		out, err := k.Decrypt(ec)
		if err != nil {
			if !errors.Is(err, richnotify.ErrUnknownCertificate) && !errors.Is(err, richnotify.ErrBadSignature) && !errors.Is(err, richnotify.ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			if errkind.Of(err) != errkind.Invalid || out != nil {
				t.Fatalf("kind %v, output %d bytes", errkind.Of(err), len(out))
			}
			return
		}
		raw, _ := base64.StdEncoding.DecodeString(ec.Data)
		if len(out) >= len(raw) || len(raw)-len(out) > 16 {
			t.Fatalf("%d bytes of plaintext from %d bytes of ciphertext", len(out), len(raw))
		}
	})
}

// FuzzParsePEM: any input is parsed or refused as Invalid, never a panic; a parsed certificate's
// key matches it and has an accepted size. Inputs holding a valid key cost milliseconds (key
// checks), so minimizing a new one takes long: run it with e.g. -fuzzminimizetime 3s.
func FuzzParsePEM(f *testing.F) {
	c := cert(f, "leap-notify-2026-03")
	other := cert(f, "other")
	good, err := c.MarshalPEM()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Cert.Raw}), good...))
	f.Add(good[:len(good)/2])
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := richnotify.ParsePEM("fuzz", data)
		if err != nil {
			if !errors.Is(err, errkind.Invalid) {
				t.Fatalf("err %v is not Invalid", err)
			}
			return
		}
		pub, ok := got.Cert.PublicKey.(*rsa.PublicKey)
		if !ok || !got.Key.PublicKey.Equal(pub) {
			t.Fatal("parsed a key that does not match the certificate")
		}
		if bits := got.Key.N.BitLen(); bits < richnotify.MinKeyBits || bits > richnotify.MaxKeyBits {
			t.Fatalf("parsed a %d-bit key", bits)
		}
	})
}
