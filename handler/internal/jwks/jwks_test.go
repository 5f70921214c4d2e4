package jwks_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/jwks"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func jwk(kid string, pub *rsa.PublicKey, use string) string {
	n := base64.RawURLEncoding.EncodeToString(pub.N.Bytes())
	return fmt.Sprintf(`{"kty":"RSA","use":%q,"kid":%q,"n":%q,"e":"AQAB","endorsements":["msteams"]}`, use, kid, n)
}

func TestFetchURL(t *testing.T) {
	big, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	doc := `{"keys":[` + jwk("good", &big.PublicKey, "sig") + `,` + jwk("weak", &small.PublicKey, "sig") + `,` +
		jwk("enc", &big.PublicKey, "enc") + `,{"kty":"EC","kid":"ec"},{"kty":"RSA","kid":"bad","n":"!!","e":"AQAB"},` +
		`{"kty":"RSA","kid":"","n":"AA","e":"AQAB"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/empty" {
			io.WriteString(w, `{"keys":[]}`)
			return
		}
		io.WriteString(w, doc)
	}))
	t.Cleanup(srv.Close)
	keys, err := jwks.FetchURL(t.Context(), srv.Client(), srv.URL+"/keys", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !keys["good"].Public.Equal(&big.PublicKey) || len(keys["good"].Endorsements) != 1 {
		t.Errorf("keys %v, want only the good signing key with its endorsement", keys)
	}
	for _, p := range []string{"/down", "/empty"} {
		if _, err := jwks.FetchURL(t.Context(), srv.Client(), srv.URL+p, nil); err == nil {
			t.Errorf("%s: no error", p)
		}
	}
}

func TestCachePacing(t *testing.T) {
	clk := testenv.NewClock(time.Date(2026, 3, 4, 9, 30, 0, 0, time.UTC))
	var fetches atomic.Int64
	var fail atomic.Bool
	set := map[string]jwks.Key{"a": {}}
	c := jwks.New(jwks.Config{Now: clk.Now, Fetch: func(context.Context) (map[string]jwks.Key, error) {
		fetches.Add(1)
		if fail.Load() {
			return nil, errors.New("down")
		}
		return set, nil
	}})
	ctx := t.Context()
	step := func(kid string, wantErr bool, wantFetches int64) {
		t.Helper()
		_, err := c.Key(ctx, kid)
		if (err != nil) != wantErr || fetches.Load() != wantFetches {
			t.Fatalf("Key(%q): err %v, %d fetches; want error %v, %d fetches", kid, err, fetches.Load(), wantErr, wantFetches)
		}
	}
	step("a", false, 1)
	step("a", false, 1) // cached
	step("b", true, 1)  // unknown within a minute: no fetch
	if _, err := c.Key(ctx, "b"); !errors.Is(err, jwks.ErrUnknownKey) {
		t.Fatalf("err %v, want ErrUnknownKey", err)
	}
	clk.Advance(jwks.RefetchPause)
	set = map[string]jwks.Key{"a": {}, "b": {}}
	step("b", false, 2) // rotation picked up
	clk.Advance(jwks.MaxAge)
	fail.Store(true)
	step("a", false, 3) // a failed daily refresh keeps serving the cached keys
	step("c", true, 3)  // …but pacing holds for unknown kids
}
