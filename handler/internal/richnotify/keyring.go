package richnotify

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// Decryption failures. Each wraps errkind.Invalid: the notification is dropped, not retried.
var (
	// ErrUnknownCertificate: the encryptionCertificateId names no certificate of the keyring, or
	// the thumbprint sent does not match the certificate of that id.
	ErrUnknownCertificate = fmt.Errorf("richnotify: unknown encryption certificate: %w", errkind.Invalid)
	// ErrBadSignature: dataSignature is missing, unreadable or not the HMAC of data.
	ErrBadSignature = fmt.Errorf("richnotify: data signature does not verify: %w", errkind.Invalid)
	// ErrMalformed: a field is not base64, the key does not unwrap to 32 bytes, or the
	// ciphertext or its padding is wrong.
	ErrMalformed = fmt.Errorf("richnotify: malformed encrypted content: %w", errkind.Invalid)
)

// symmetricKeyLen is the length of the AES-256 key Graph wraps in dataKey.
const symmetricKeyLen = 32

// EncryptedContent is a notification's encryptedContent, as Graph sends it.
type EncryptedContent struct {
	Data                            string `json:"data"`
	DataSignature                   string `json:"dataSignature"`
	DataKey                         string `json:"dataKey"`
	EncryptionCertificateID         string `json:"encryptionCertificateId"`
	EncryptionCertificateThumbprint string `json:"encryptionCertificateThumbprint"`
}

// Keyring holds the current encryption certificate (the one new subscriptions get) and older
// ones still named by live subscriptions, by id. It is immutable and safe for concurrent use.
type Keyring struct {
	current Certificate
	byID    map[string]Certificate
}

// NewKeyring returns a keyring of current and the older certificates. Every certificate needs an
// id, a certificate and its key; ids and certificates must be distinct. Errors are errkind.Invalid.
func NewKeyring(current Certificate, older ...Certificate) (*Keyring, error) {
	k := &Keyring{current: current, byID: map[string]Certificate{}}
	for _, c := range append([]Certificate{current}, older...) {
		if err := checkID(c.ID); err != nil {
			return nil, err
		}
		if c.Cert == nil || c.Key == nil {
			return nil, invalid("certificate %q lacks its certificate or key", c.ID)
		}
		if _, dup := k.byID[c.ID]; dup {
			return nil, invalid("two certificates have the id %q; give each certificate its own id", c.ID)
		}
		for id, o := range k.byID {
			if o.Cert.Equal(c.Cert) {
				return nil, invalid("certificates %q and %q are the same certificate (is the previous one the current version?)", id, c.ID)
			}
		}
		k.byID[c.ID] = c
	}
	return k, nil
}

// Current is the certificate new subscriptions are created with.
func (k *Keyring) Current() Certificate { return k.current }

// IDs lists the ids of the keyring, the current one first.
func (k *Keyring) IDs() []string {
	ids := []string{k.current.ID}
	for id := range k.byID {
		if id != k.current.ID {
			ids = append(ids, id)
		}
	}
	return ids
}

// Decrypt returns the resource JSON of a rich notification (graph.md §6.5): key picked by id
// (and thumbprint, when sent), dataKey unwrapped with RSA-OAEP SHA-1, dataSignature checked as
// HMAC-SHA256 over the data bytes before anything is decrypted, data decrypted with AES-256-CBC
// (IV = key[:16]) and strict PKCS#7 unpadding. Errors are ErrUnknownCertificate, ErrBadSignature
// or ErrMalformed (all errkind.Invalid).
func (k *Keyring) Decrypt(ec EncryptedContent) ([]byte, error) {
	c, ok := k.byID[ec.EncryptionCertificateID]
	if !ok {
		return nil, ErrUnknownCertificate
	}
	if tp := normalizeThumbprint(ec.EncryptionCertificateThumbprint); tp != "" && tp != c.Thumbprint() {
		return nil, fmt.Errorf("%w (the thumbprint does not match certificate %q)", ErrUnknownCertificate, c.ID)
	}
	wrapped, err := base64.StdEncoding.DecodeString(ec.DataKey)
	if err != nil || len(wrapped) == 0 {
		return nil, fmt.Errorf("%w: dataKey is not base64", ErrMalformed)
	}
	key, err := rsa.DecryptOAEP(sha1.New(), nil, c.Key, wrapped, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: dataKey does not unwrap with certificate %q", ErrMalformed, c.ID)
	}
	defer clear(key)
	if len(key) != symmetricKeyLen {
		return nil, fmt.Errorf("%w: dataKey unwraps to %d bytes, want %d", ErrMalformed, len(key), symmetricKeyLen)
	}
	data, err := base64.StdEncoding.DecodeString(ec.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: data is not base64", ErrMalformed)
	}
	if ec.DataSignature == "" {
		return nil, fmt.Errorf("%w: dataSignature is missing", ErrBadSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(ec.DataSignature)
	if err != nil {
		return nil, fmt.Errorf("%w: dataSignature is not base64", ErrBadSignature)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(data)
	if !hmac.Equal(mac.Sum(nil), sig) {
		return nil, ErrBadSignature
	}
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: data is %d bytes, not a whole number of AES blocks", ErrMalformed, len(data))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, key[:aes.BlockSize]).CryptBlocks(plain, data)
	out, err := unpad(plain)
	if err != nil {
		clear(plain)
		return nil, err
	}
	return out, nil
}

// unpad removes strict PKCS#7 padding: 1 to 16 bytes, each equal to the count. The signature
// was checked before decryption, so the checks need not be constant-time (no padding oracle).
func unpad(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty plaintext", ErrMalformed)
	}
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize || n > len(b) {
		return nil, errBadPadding
	}
	for _, p := range b[len(b)-n:] {
		if int(p) != n {
			return nil, errBadPadding
		}
	}
	return b[:len(b)-n], nil
}

var errBadPadding = fmt.Errorf("%w: bad PKCS#7 padding", ErrMalformed)

// normalizeThumbprint upper-cases a hex thumbprint and drops the separators some tools show
// (spaces, colons).
func normalizeThumbprint(s string) string {
	return strings.ToUpper(strings.NewReplacer(" ", "", ":", "", "-", "").Replace(strings.TrimSpace(s)))
}
