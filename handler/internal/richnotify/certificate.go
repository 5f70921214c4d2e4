// Package richnotify handles Microsoft Graph change notifications that include resource data
// ("rich" notifications): the encryption certificate a subscription names, decryption of each
// notification's encryptedContent, and validation of the validationTokens JWTs that come with
// them.
//
// # Decryption (graph.md §6.5)
//
// Keyring.Decrypt picks the private key by encryptionCertificateId (and, when sent, checks the
// certificate thumbprint), unwraps the 32-byte symmetric key from dataKey with RSA-OAEP (SHA-1,
// MGF1-SHA-1), checks dataSignature = HMAC-SHA256(key, data) in constant time before any
// decryption, then decrypts data with AES-256-CBC, IV = the key's first 16 bytes, and strict
// PKCS#7 padding. Only the standard library's crypto is used. Errors wrap errkind.Invalid and
// never contain key material or plaintext.
//
// # Certificates
//
// Graph wants an RSA certificate of 2048 to 4096 bits (self-signed is fine) as base64 DER and an
// id of at most 128 characters, which it sends back with every notification. In Azure the
// certificate and its key come from Key Vault as PEM (ParsePEM); local runs use Generate.
// Rotation: subscriptions keep the certificate they were created with, so the keyring holds the
// current certificate plus the older ones still named by live subscriptions, each under its own id.
package richnotify

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// Key sizes Graph accepts for encryptionCertificate.
const (
	MinKeyBits = 2048
	MaxKeyBits = 4096
	// MaxIDLength is the longest encryptionCertificateId Graph accepts.
	MaxIDLength = 128
	// GeneratedSubject is the common name of Generate's certificates.
	GeneratedSubject = "Leap Change notifications"
)

// Certificate is an encryption certificate with its private key, under the id subscriptions
// send as encryptionCertificateId.
type Certificate struct {
	ID   string
	Cert *x509.Certificate
	Key  *rsa.PrivateKey
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("richnotify: "+format+": %w", append(args, errkind.Invalid)...)
}

func checkID(id string) error {
	switch {
	case strings.TrimSpace(id) == "":
		return invalid("the certificate id is empty")
	case len(id) > MaxIDLength:
		return invalid("the certificate id is %d characters long, Graph accepts at most %d", len(id), MaxIDLength)
	}
	return nil
}

// ParsePEM reads a certificate and its RSA private key from PEM blocks in any order: one or more
// CERTIFICATE blocks (a chain: the one whose public key matches the private key is used) and one
// private key, "RSA PRIVATE KEY" (PKCS#1) or "PRIVATE KEY" (PKCS#8), as Key Vault exports a
// certificate whose content type is application/x-pem-file. Other block types are ignored. It
// refuses encrypted keys, keys that are not RSA, keys under 2048 or over 4096 bits, and a key
// that no certificate matches. Errors are errkind.Invalid and never contain key material.
func ParsePEM(id string, pemData []byte) (Certificate, error) {
	if err := checkID(id); err != nil {
		return Certificate{}, err
	}
	var (
		certs  []*x509.Certificate
		key    *rsa.PrivateKey
		nKeys  int
		blocks int
	)
	rest := pemData
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks++
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return Certificate{}, invalid("certificate %d cannot be parsed", len(certs)+1)
			}
			certs = append(certs, c)
		case "RSA PRIVATE KEY", "PRIVATE KEY":
			nKeys++
			if _, encrypted := b.Headers["Proc-Type"]; encrypted {
				return Certificate{}, invalid("the private key is encrypted; give it unencrypted (Key Vault protects it)")
			}
			k, err := parseKey(b)
			if err != nil {
				return Certificate{}, err
			}
			key = k
		case "ENCRYPTED PRIVATE KEY":
			return Certificate{}, invalid("the private key is encrypted; give it unencrypted (Key Vault protects it)")
		case "EC PRIVATE KEY", "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY":
			return Certificate{}, invalid("the private key is not an RSA key (%s); Graph needs RSA", b.Type)
		}
	}
	switch {
	case blocks == 0:
		return Certificate{}, invalid("no PEM data")
	case nKeys == 0:
		return Certificate{}, invalid("no private key (want an RSA PRIVATE KEY or PRIVATE KEY block)")
	case nKeys > 1:
		return Certificate{}, invalid("%d private keys, want one", nKeys)
	case len(certs) == 0:
		return Certificate{}, invalid("no CERTIFICATE block")
	}
	if bits := key.N.BitLen(); bits < MinKeyBits || bits > MaxKeyBits {
		return Certificate{}, invalid("the RSA key has %d bits, Graph accepts %d to %d", bits, MinKeyBits, MaxKeyBits)
	}
	for _, c := range certs {
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && key.PublicKey.Equal(pub) {
			return Certificate{ID: id, Cert: c, Key: key}, nil
		}
	}
	return Certificate{}, invalid("the private key does not match the certificate")
}

func parseKey(b *pem.Block) (*rsa.PrivateKey, error) {
	if b.Type == "RSA PRIVATE KEY" {
		k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
		if err != nil {
			return nil, invalid("the RSA PRIVATE KEY block is not a PKCS#1 RSA key")
		}
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, invalid("the PRIVATE KEY block is not a PKCS#8 key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, invalid("the private key is a %T, not an RSA key; Graph needs RSA", k)
	}
	return rk, nil
}

// Generate makes a self-signed certificate with a new RSA 2048 key for local runs: subject
// CN=Leap Change notifications, valid from an hour before now for two years.
func Generate(id string, now time.Time) (Certificate, error) {
	if err := checkID(id); err != nil {
		return Certificate{}, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return Certificate{}, fmt.Errorf("richnotify: generating a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return Certificate{}, fmt.Errorf("richnotify: serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: GeneratedSubject},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Certificate{}, fmt.Errorf("richnotify: creating the certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Certificate{}, fmt.Errorf("richnotify: reading the certificate: %w", err)
	}
	return Certificate{ID: id, Cert: cert, Key: key}, nil
}

// Base64DER is the certificate as a subscription's encryptionCertificate: base64 of its DER.
func (c Certificate) Base64DER() string { return base64.StdEncoding.EncodeToString(c.Cert.Raw) }

// Thumbprint is the certificate's SHA-1 thumbprint in upper-case hex, as Graph sends
// encryptionCertificateThumbprint.
func (c Certificate) Thumbprint() string {
	sum := sha1.Sum(c.Cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// MarshalPEM is the certificate and its key (PKCS#8) as PEM, the form ParsePEM reads: what to
// store in Key Vault, or keep for a local run.
func (c Certificate) MarshalPEM() ([]byte, error) {
	if c.Cert == nil || c.Key == nil {
		return nil, errors.New("richnotify: MarshalPEM of an incomplete certificate")
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("richnotify: encoding the key: %w", err)
	}
	var buf bytes.Buffer
	pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
	pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return buf.Bytes(), nil
}
