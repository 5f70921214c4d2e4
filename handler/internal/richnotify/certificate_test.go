package richnotify_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/richnotify"
)

func TestGenerate(t *testing.T) {
	c := cert(t, "leap-notify-2026-03")
	if c.ID != "leap-notify-2026-03" || c.Cert.Subject.CommonName != "Leap Change notifications" {
		t.Errorf("id %q subject %q", c.ID, c.Cert.Subject)
	}
	if !c.Cert.NotBefore.Equal(testNow.Add(-time.Hour)) || !c.Cert.NotAfter.Equal(testNow.AddDate(2, 0, 0)) {
		t.Errorf("validity %v to %v", c.Cert.NotBefore, c.Cert.NotAfter)
	}
	if c.Key.N.BitLen() != 2048 {
		t.Errorf("%d-bit key", c.Key.N.BitLen())
	}
	if err := c.Cert.CheckSignature(c.Cert.SignatureAlgorithm, c.Cert.RawTBSCertificate, c.Cert.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	der, err := base64.StdEncoding.DecodeString(c.Base64DER())
	if err != nil || !bytes.Equal(der, c.Cert.Raw) {
		t.Errorf("Base64DER does not decode to the certificate (%v)", err)
	}
	sum := sha1.Sum(c.Cert.Raw)
	if tp := c.Thumbprint(); tp != strings.ToUpper(hex.EncodeToString(sum[:])) || len(tp) != 40 {
		t.Errorf("Thumbprint %q", tp)
	}
	if _, err := richnotify.Generate("", testNow); !errors.Is(err, errkind.Invalid) {
		t.Errorf("Generate with no id: %v", err)
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func selfSigned(t *testing.T, pub, priv any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "test"}, NotBefore: testNow, NotAfter: testNow.AddDate(1, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParsePEM(t *testing.T) {
	c := cert(t, "leap-notify-2026-03")
	other := cert(t, "other")
	pkcs8, err := c.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pemBlock("CERTIFICATE", c.Cert.Raw)
	pkcs1 := pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(c.Key))
	p8der, _ := x509.MarshalPKCS8PrivateKey(c.Key)
	pkcs8Key := pemBlock("PRIVATE KEY", p8der)
	otherCert := pemBlock("CERTIFICATE", other.Cert.Raw)
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	for name, data := range map[string][]byte{
		"MarshalPEM":                     pkcs8,
		"PKCS#1":                         join(certPEM, pkcs1),
		"key first (Key Vault's export)": join(pkcs8Key, certPEM),
		"chain, leaf not first":          join(otherCert, pkcs1, certPEM),
		"text around the blocks":         join([]byte("Bag Attributes\n  friendlyName: leap\n"), certPEM, []byte("subject=CN=x\n"), pkcs8Key),
		"CRLF line ends":                 bytes.ReplaceAll(pkcs8, []byte("\n"), []byte("\r\n")),
		"another block type is ignored":  join(pemBlock("X509 CRL", []byte{1}), pkcs8),
	} {
		got, err := richnotify.ParsePEM("leap-notify-2026-03", data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got.ID != "leap-notify-2026-03" || !got.Cert.Equal(c.Cert) || !got.Key.Equal(c.Key) {
			t.Errorf("%s: wrong certificate or key", name)
		}
	}

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	ec8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecCert := pemBlock("CERTIFICATE", selfSigned(t, &ecKey.PublicKey, ecKey))
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallCert := pemBlock("CERTIFICATE", selfSigned(t, &small.PublicKey, small))
	encrypted := &pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: x509.MarshalPKCS1PrivateKey(c.Key)}
	for name, tc := range map[string]struct {
		id   string
		data []byte
		want string
	}{
		"empty":                  {data: nil, want: "no PEM data"},
		"not PEM":                {data: []byte("hello"), want: "no PEM data"},
		"certificate only":       {data: certPEM, want: "no private key"},
		"key only":               {data: pkcs1, want: "no CERTIFICATE"},
		"key of another cert":    {data: join(otherCert, pkcs1), want: "does not match"},
		"two keys":               {data: join(certPEM, pkcs1, pkcs8Key), want: "2 private keys"},
		"EC key (SEC 1)":         {data: join(ecCert, pemBlock("EC PRIVATE KEY", ecDER)), want: "not an RSA key"},
		"EC key (PKCS#8)":        {data: join(ecCert, pemBlock("PRIVATE KEY", ec8)), want: "not an RSA key"},
		"1024-bit key":           {data: join(smallCert, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small))), want: "1024 bits"},
		"encrypted PKCS#8":       {data: join(certPEM, pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2})), want: "encrypted"},
		"encrypted legacy PEM":   {data: join(certPEM, pem.EncodeToMemory(encrypted)), want: "encrypted"},
		"garbage key":            {data: join(certPEM, pemBlock("RSA PRIVATE KEY", []byte("junk"))), want: "not a PKCS#1"},
		"garbage certificate":    {data: join(pemBlock("CERTIFICATE", []byte("junk")), pkcs1), want: "cannot be parsed"},
		"PKCS#1 under PKCS#8":    {data: join(certPEM, pemBlock("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(c.Key))), want: "not a PKCS#8"},
		"empty id":               {id: " ", data: pkcs8, want: "id is empty"},
		"id over 128 characters": {id: strings.Repeat("i", 129), data: pkcs8, want: "at most 128"},
	} {
		id := tc.id
		if id == "" {
			id = "leap-notify-2026-03"
		}
		_, err := richnotify.ParsePEM(id, tc.data)
		if !errors.Is(err, errkind.Invalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want Invalid mentioning %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "MII") {
			t.Errorf("%s: error quotes PEM data: %v", name, err)
		}
	}
}

// A key over 4096 bits is refused (generating one is slow: not in -short runs).
func TestParsePEMRefusesHugeKey(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a 4160-bit RSA key")
	}
	big, err := rsa.GenerateKey(rand.Reader, 4160)
	if err != nil {
		t.Fatal(err)
	}
	data := append(pemBlock("CERTIFICATE", selfSigned(t, &big.PublicKey, big)), pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(big))...)
	if _, err := richnotify.ParsePEM("x", data); !errors.Is(err, errkind.Invalid) || !strings.Contains(err.Error(), "4160 bits") {
		t.Errorf("err %v, want Invalid for 4160 bits", err)
	}
}
