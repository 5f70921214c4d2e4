package m365sim_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

const (
	tenantA  = "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b"
	tenantB  = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	clientID = "6d0a4f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
	secret   = "s3cret-value"
)

// clock is an injectable, manually advanced clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newSim(t *testing.T, opts m365sim.Options) (*m365sim.Server, *clock) {
	t.Helper()
	sim, clk := newSimRaw(t, opts)
	t.Cleanup(func() {
		if n := sim.Unhandled(); n != 0 {
			t.Errorf("sim saw %d unhandled requests", n)
		}
	})
	return sim, clk
}

// newSimRaw is newSim without the Unhandled() == 0 check.
func newSimRaw(t *testing.T, opts m365sim.Options) (*m365sim.Server, *clock) {
	t.Helper()
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	if opts.Clock == nil {
		opts.Clock = clk.Now
	}
	sim := m365sim.New(opts)
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	sim.AddTenant(tenantA, "fabrikam.example")
	sim.AddTenant(tenantB, "contoso.example")
	sim.RegisterApp(clientID, secret)
	if err := sim.Consent(tenantA, clientID, "User.Read.All", "GroupMember.Read.All"); err != nil {
		t.Fatal(err)
	}
	return sim, clk
}

func credential(t *testing.T, sim *m365sim.Server, tenant, id, sec string) *azidentity.ClientSecretCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(tenant, id, sec, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: sim.URL() + "/"},
			Transport: sim.HTTPClient(),
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func token(t *testing.T, sim *m365sim.Server, tenant string) string {
	t.Helper()
	tok, err := credential(t, sim, tenant, clientID, secret).GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://graph.microsoft.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	b, err := jsonB64(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAzidentityToken(t *testing.T) {
	sim, _ := newSim(t, m365sim.Options{})
	tok := token(t, sim, tenantA)
	c := claims(t, tok)
	for k, want := range map[string]any{
		"aud": "https://graph.microsoft.com", "iss": sim.URL() + "/" + tenantA + "/v2.0", "tid": tenantA,
		"appid": clientID, "azp": clientID, "idtyp": "app",
	} {
		if c[k] != want {
			t.Errorf("claim %s = %v, want %v", k, c[k], want)
		}
	}
	if fmt.Sprint(c["roles"]) != "[User.Read.All GroupMember.Read.All]" {
		t.Errorf("roles = %v", c["roles"])
	}
	// by verified domain too
	token(t, sim, "fabrikam.example")
}

func TestAzidentityFailures(t *testing.T) {
	sim, clk := newSim(t, m365sim.Options{})
	sim.AddSecret(clientID, "old-secret", clk.Now().Add(time.Hour))
	clk.Advance(2 * time.Hour)
	for _, tc := range []struct {
		name, tenant, id, secret string
		status                   int
		code                     string
	}{
		{"bad secret", tenantA, clientID, "wrong", 401, "AADSTS7000215"},
		{"expired secret", tenantA, clientID, "old-secret", 401, "AADSTS7000222"},
		{"not consented", tenantB, clientID, secret, 400, "AADSTS700016"},
		{"unknown app", tenantA, "11111111-2222-3333-4444-555555555555", secret, 400, "AADSTS700016"},
		{"unknown tenant", "00000000-1111-2222-3333-444444444444", clientID, secret, 400, "AADSTS90002"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := credential(t, sim, tc.tenant, tc.id, tc.secret).GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://graph.microsoft.com/.default"}})
			var afe *azidentity.AuthenticationFailedError
			if !errors.As(err, &afe) {
				t.Fatalf("err = %v (%T), want *azidentity.AuthenticationFailedError", err, err)
			}
			if afe.RawResponse == nil || afe.RawResponse.StatusCode != tc.status || !strings.Contains(err.Error(), tc.code) {
				t.Errorf("err = %v, want status %d and %s", err, tc.status, tc.code)
			}
		})
	}
}

func TestTokenErrorShape(t *testing.T) {
	sim, _ := newSim(t, m365sim.Options{})
	resp, err := sim.HTTPClient().PostForm(sim.URL()+"/"+tenantA+"/oauth2/v2.0/token", map[string][]string{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {"nope"}, "scope": {"https://graph.microsoft.com/.default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 401 || body["error"] != "invalid_client" || !strings.HasPrefix(body["error_description"].(string), "AADSTS7000215: ") ||
		fmt.Sprint(body["error_codes"]) != "[7.000215e+06]" || body["trace_id"] == nil || body["correlation_id"] == nil || body["timestamp"] == nil {
		t.Errorf("status %d body %v", resp.StatusCode, body)
	}
}

// get calls the sim's Graph with a bearer token and decodes the JSON answer.
func get(t *testing.T, sim *m365sim.Server, tok, url string, hdr ...string) (int, http.Header, map[string]any) {
	t.Helper()
	st, h, _, m := call(t, sim, "GET", tok, url, nil, hdr...)
	return st, h, m
}

// call sends method to url (a path is on the sim) with a bearer token (when not empty), body and
// the header pairs hdr, and answers the status, header, raw body and the body decoded as JSON.
func call(t *testing.T, sim *m365sim.Server, method, tok, url string, body io.Reader, hdr ...string) (int, http.Header, []byte, map[string]any) {
	t.Helper()
	if strings.HasPrefix(url, "/") {
		url = sim.URL() + url
	}
	req, _ := http.NewRequestWithContext(t.Context(), method, url, body)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := sim.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
	return resp.StatusCode, resp.Header, b, m
}

// admin calls the sim's admin API (/_sim/...) with body and decodes its JSON answer into v when
// v is not nil.
func admin(t *testing.T, sim *m365sim.Server, method, path, body string, v any) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, sim.URL()+path, strings.NewReader(body))
	resp, err := sim.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestGraphAuthAndIsolation(t *testing.T) {
	sim, _ := newSim(t, m365sim.Options{})
	sim.Consent(tenantB, clientID, "User.Read.All")
	sim.AddUser(tenantA, m365sim.User{DisplayName: "Ines Okafor", UserPrincipalName: "ines@fabrikam.example", AccountEnabled: true})
	sim.AddUser(tenantB, m365sim.User{DisplayName: "Tom Weber", UserPrincipalName: "tom@contoso.example", AccountEnabled: true})
	sim.AddGroup(tenantB, m365sim.Group{DisplayName: "B group"})
	tokA, tokB := token(t, sim, tenantA), token(t, sim, tenantB)

	for _, tc := range []struct {
		name, tok, path string
		status          int
		code            string
	}{
		{"no token", "", "/v1.0/users", 401, "InvalidAuthenticationToken"},
		{"garbage token", "abc.def.ghi", "/v1.0/users", 401, "InvalidAuthenticationToken"},
		{"missing role", tokB, "/v1.0/groups", 403, "Authorization_RequestDenied"},
		{"ok A", tokA, "/v1.0/users", 200, ""},
		{"not found", tokA, "/v1.0/users/tom@contoso.example", 404, "Request_ResourceNotFound"},
		{"top too large", tokA, "/v1.0/users?$top=1000", 400, "Request_UnsupportedQuery"},
		{"search needs eventual", tokA, "/v1.0/groups?$search=%22displayName:x%22", 400, "Request_UnsupportedQuery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, h, body := get(t, sim, tc.tok, tc.path)
			if st != tc.status || errCode(body) != tc.code {
				t.Fatalf("status %d code %q, want %d %q (%v)", st, errCode(body), tc.status, tc.code, body)
			}
			if h.Get("request-id") == "" || !strings.HasPrefix(h.Get("Content-Type"), "application/json;odata.metadata=minimal") {
				t.Errorf("headers %v", h)
			}
			if tc.code != "" {
				inner := body["error"].(map[string]any)["innerError"].(map[string]any)
				if inner["date"] == nil || inner["request-id"] == nil || inner["client-request-id"] == nil {
					t.Errorf("innerError %v", inner)
				}
			}
		})
	}
	_, _, a := get(t, sim, tokA, "/v1.0/users")
	_, _, b := get(t, sim, tokB, "/v1.0/users")
	va, vb := a["value"].([]any), b["value"].([]any)
	if len(va) != 1 || len(vb) != 1 || va[0].(map[string]any)["displayName"] != "Ines Okafor" || vb[0].(map[string]any)["displayName"] != "Tom Weber" {
		t.Errorf("isolation broken: A=%v B=%v", va, vb)
	}
	// Graph's default user shape: businessPhones array, nulls for empty properties.
	u := va[0].(map[string]any)
	if bp, ok := u["businessPhones"].([]any); !ok || len(bp) != 0 {
		t.Errorf("businessPhones = %#v", u["businessPhones"])
	}
	if v, ok := u["mail"]; !ok || v != nil {
		t.Errorf("mail = %#v, want null", v)
	}
	if a["@odata.context"] != sim.URL()+"/v1.0/$metadata#users" {
		t.Errorf("context %v", a["@odata.context"])
	}
}

func TestStrictness(t *testing.T) {
	sim, _ := newSimRaw(t, m365sim.Options{})
	tok := token(t, sim, tenantA)
	st, _, body := get(t, sim, tok, "/v1.0/me/drive")
	if st != 501 || errCode(body) != "NotImplemented" {
		t.Fatalf("status %d %v", st, body)
	}
	st, _, _ = get(t, sim, tok, "/v1.0/users?$expand=manager")
	if st != 501 {
		t.Fatalf("$expand: status %d", st)
	}
	if n := sim.Unhandled(); n != 2 {
		t.Errorf("Unhandled = %d, want 2", n)
	}
	if sim.Stats().Routes["unhandled"] != 1 {
		t.Errorf("stats %+v", sim.Stats())
	}
}
