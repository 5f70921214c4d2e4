package m365sim

import (
	"cmp"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

type secret struct {
	value   string
	expires time.Time // zero: never
}

type app struct {
	clientID string
	name     string
	secrets  []secret
	certs    []*x509.Certificate
	// redirectURIs are the registered redirect URIs (RegisterRedirectURI); permissions are the
	// configured Graph application permissions that .default asks for (SetAppPermissions).
	redirectURIs []string
	permissions  []string
	// groupMembershipClaims is the manifest property (SetGroupMembershipClaims): with
	// DirectoryRole or All, ID tokens carry wids.
	groupMembershipClaims string
}

// RegisterApp registers a (multi-tenant) Entra application with a client secret that never
// expires. Registering an existing app adds the secret.
func (s *Server) RegisterApp(clientID, secret string) {
	s.AddSecret(clientID, secret, time.Time{})
}

// AddSecret adds a client secret to an app (registering the app if needed). A non-zero expires
// makes the token endpoint answer AADSTS7000222 once the sim clock passes it.
func (s *Server) AddSecret(clientID, value string, expires time.Time) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(clientID)
	a.secrets = append(a.secrets, secret{value: value, expires: expires})
}

// AddCertificate registers a certificate for client_assertion (private_key_jwt) authentication.
func (s *Server) AddCertificate(clientID string, cert *x509.Certificate) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(clientID)
	a.certs = append(a.certs, cert)
}

// RevokeSecret removes a client secret; tokens requested with it fail with AADSTS7000215.
func (s *Server) RevokeSecret(clientID, value string) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.apps[strings.ToLower(clientID)]; ok {
		a.secrets = slices.DeleteFunc(a.secrets, func(x secret) bool { return x.value == value })
	}
}

func (s *Server) appLocked(clientID string) *app {
	id := strings.ToLower(clientID)
	a, ok := s.apps[id]
	if !ok {
		a = &app{clientID: id, name: "Leap Change (" + id[:min(8, len(id))] + ")"}
		s.apps[id] = a
	}
	return a
}

// Consent records admin consent of a tenant to an app: its service principal exists in the
// tenant with app role assignments for the given Graph application permissions (names from
// Roles). Consenting again replaces the granted roles.
func (s *Server) Consent(tenantID, clientID string, roles ...string) error {
	s.init()
	for _, r := range roles {
		if _, ok := Roles[r]; !ok {
			return fmt.Errorf("m365sim: unknown Graph application permission %q (add it to Roles)", r)
		}
	}
	t, unlock, err := s.lockTenant(tenantID)
	if err != nil {
		return err
	}
	defer unlock()
	s.consentLocked(t, clientID, roles)
	return nil
}

// consentLocked records consent of t to the app (Consent and the admin-consent endpoint).
func (s *Server) consentLocked(t *tenant, clientID string, roles []string) {
	s.appLocked(clientID)
	t.consents[strings.ToLower(clientID)] = slices.Clone(roles)
	t.consentAt[strings.ToLower(clientID)] = s.now()
}

// RevokeConsent removes the app's service principal from the tenant: new tokens fail with
// AADSTS700016 (tokens already issued stay valid until they expire, as with Entra).
func (s *Server) RevokeConsent(tenantID, clientID string) error {
	t, unlock, err := s.lockTenant(tenantID)
	if err != nil {
		return err
	}
	defer unlock()
	delete(t.consents, strings.ToLower(clientID))
	return nil
}

func spObjectID(tenantID, clientID string) string { return uuidFrom(tenantID, clientID, "sp") }

// --- signing key (shared by every Server in the process: RSA generation is slow) ----------

type signer struct {
	key  *rsa.PrivateKey
	cert []byte // self-signed certificate for x5c
	kid  string // base64url SHA-1 thumbprint, as Entra's kid/x5t
}

var (
	signerOnce sync.Once
	signerVal  *signer
)

func getSigner() *signer {
	signerOnce.Do(func() { signerVal = newSigner(3, "m365sim token signing") })
	return signerVal
}

// newSigner makes a 2048-bit RSA signing key with a self-signed certificate of this serial
// number and common name; it panics if the system cannot (crypto/rand failing).
func newSigner(serial int64, commonName string) *signer {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	sum := sha1.Sum(der)
	return &signer{key: key, cert: der, kid: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// SigningKey returns the public key the sim signs tokens with (also served as JWKS).
func (s *Server) SigningKey() *rsa.PublicKey { return &getSigner().key.PublicKey }

// --- discovery -----------------------------------------------------------------------------

func isMetaTenant(t string) bool { return t == "common" || t == "organizations" || t == "consumers" }

// tenantInPath is the tenant segment of an Entra endpoint's path (/{tenant}/...), lower-cased:
// an id, a verified domain, or common, organizations or consumers.
func tenantInPath(r *http.Request) string {
	return strings.ToLower(strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")[0])
}

// resolveTenantLocked maps a path tenant (id or verified domain) to the tenant.
func (s *Server) resolveTenantLocked(pathTenant string) *tenant {
	p := strings.ToLower(pathTenant)
	if t, ok := s.tenants[p]; ok {
		return t
	}
	for _, t := range s.tenants {
		if t.domain != "" && t.domain == p {
			return t
		}
	}
	return nil
}

// lockResolvedTenant takes the state lock and resolves tenantID (id or verified domain), as
// lockTenant does for ids alone: on success the caller releases the lock with unlock; on error
// the lock is not held.
func (s *Server) lockResolvedTenant(tenantID string) (t *tenant, unlock func(), err error) {
	s.init()
	s.mu.Lock()
	if t = s.resolveTenantLocked(tenantID); t == nil {
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound)
	}
	return t, s.mu.Unlock, nil
}

// discoveryTenant reads the tenant of a discovery path (openid-configuration, keys): the one
// its URLs name (a meta-tenant such as common as given, else the tenant's id) and the one its
// issuer names ("{tenantid}" for a meta-tenant). On false it has answered 400 invalid_tenant.
func (s *Server) discoveryTenant(w http.ResponseWriter, r *http.Request) (tid, issuerTenant string, ok bool) {
	pathTenant := tenantInPath(r)
	if isMetaTenant(pathTenant) {
		return pathTenant, "{tenantid}", true
	}
	s.mu.Lock()
	t := s.resolveTenantLocked(pathTenant)
	s.mu.Unlock()
	if t == nil {
		s.entraError(w, r, http.StatusBadRequest, "invalid_tenant", 90002, tenantNotFound(pathTenant))
		return "", "", false
	}
	return t.id, t.id, true
}

func (s *Server) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	tid, issuerTenant, ok := s.discoveryTenant(w, r)
	if !ok {
		return
	}
	base := baseURL(r)
	cfg := map[string]any{
		"token_endpoint":                        base + "/" + tid + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/" + tid + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/" + issuerTenant + "/v2.0",
		"request_uri_parameter_supported":       false,
		"userinfo_endpoint":                     base + "/oidc/userinfo",
		"authorization_endpoint":                base + "/" + tid + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/" + tid + "/oauth2/v2.0/devicecode",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"end_session_endpoint":                  base + "/" + tid + "/oauth2/v2.0/logout",
		"claims_supported":                      []string{"sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"},
		"kerberos_endpoint":                     base + "/" + tid + "/kerberos",
		"tenant_region_scope":                   nil,
		"cloud_instance_name":                   "microsoftonline.com",
		"cloud_graph_host_name":                 "graph.windows.net",
		"msgraph_host":                          strings.TrimPrefix(base, "https://"),
		"rbac_url":                              "https://pas.windows.net",
	}
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", cfg)
}

func (s *Server) keys(w http.ResponseWriter, r *http.Request) {
	_, issuerTenant, ok := s.discoveryTenant(w, r)
	if !ok {
		return
	}
	issuer := baseURL(r) + "/" + issuerTenant + "/v2.0"
	sg := getSigner()
	pub := sg.key.PublicKey
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", map[string]any{
		"keys": []map[string]any{{
			"kty":    "RSA",
			"use":    "sig",
			"kid":    sg.kid,
			"x5t":    sg.kid,
			"n":      base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e":      base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
			"x5c":    []string{base64.StdEncoding.EncodeToString(sg.cert)},
			"issuer": issuer,
		}},
	})
}

// --- token endpoint ------------------------------------------------------------------------

// missingParam is Entra's AADSTS900144 text for a request without a required parameter.
func missingParam(name string) string {
	return "The request body must contain the following parameter: '" + name + "'."
}

// appNotFound is Entra's AADSTS700016 text for a client id that no app of the directory has.
func appNotFound(clientID, dir string) string {
	return fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, dir)
}

func tenantNotFound(t string) string {
	return fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", t)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	pathTenant := tenantInPath(r)
	if err := r.ParseForm(); err != nil {
		s.entraError(w, r, http.StatusBadRequest, "invalid_request", 900144, missingParam("grant_type"))
		return
	}
	f := r.PostForm
	clientID := strings.ToLower(f.Get("client_id"))
	if u, p, ok := r.BasicAuth(); ok && clientID == "" { // client_secret_basic
		clientID = strings.ToLower(u)
		f.Set("client_secret", p)
	}
	if f.Get("grant_type") == "authorization_code" {
		s.tokenAuthCode(w, r, pathTenant, f, clientID)
		return
	}

	s.mu.Lock()
	now := s.now()
	t := s.resolveTenantLocked(pathTenant)
	var a *app
	var roles []string
	consented := false
	if t != nil {
		a = s.apps[clientID]
		roles, consented = t.consents[clientID]
		roles = slices.Clone(roles)
	}
	var secrets []secret
	var certs []*x509.Certificate
	if a != nil {
		secrets = slices.Clone(a.secrets)
		certs = slices.Clone(a.certs)
	}
	s.mu.Unlock()

	switch {
	case f.Get("grant_type") == "":
		s.entraError(w, r, http.StatusBadRequest, "invalid_request", 900144, missingParam("grant_type"))
		return
	case f.Get("grant_type") != "client_credentials":
		s.entraError(w, r, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+f.Get("grant_type")+"'. (m365sim supports client_credentials and authorization_code only.)")
		return
	case clientID == "":
		s.entraError(w, r, http.StatusBadRequest, "invalid_request", 900144, missingParam("client_id"))
		return
	case t == nil:
		s.entraError(w, r, http.StatusBadRequest, "invalid_request", 90002, tenantNotFound(pathTenant))
		return
	case a == nil || !consented:
		s.entraError(w, r, http.StatusBadRequest, "unauthorized_client", 700016, appNotFound(clientID, t.domain))
		return
	}

	if _, ok := s.authenticateClient(w, r, f, clientID, secrets, certs, now); !ok {
		return
	}

	// MSAL appends the OIDC scopes; Entra ignores them for client credentials.
	var scopes []string
	for sc := range strings.FieldsSeq(f.Get("scope")) {
		switch sc {
		case "openid", "offline_access", "profile", "email":
		default:
			scopes = append(scopes, sc)
		}
	}
	scope := strings.Join(scopes, " ")
	if scope == "" {
		s.entraError(w, r, http.StatusBadRequest, "invalid_request", 90014, "The required field 'scope' is missing from the credential. Ensure that you have all the necessary parameters for the login request.")
		return
	}
	if strings.Contains(scope, " ") || !strings.HasSuffix(scope, "/.default") {
		s.entraError(w, r, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope))
		return
	}
	resource := strings.TrimSuffix(scope, "/.default")
	var aud string
	switch strings.ToLower(resource) {
	case GraphResource, GraphAppID, "https://graph.microsoft.com/":
		aud = GraphResource
	case "https://api.botframework.com":
		// A single-tenant bot gets its Bot Connector token in its home tenant only.
		if home, isBot := s.botHome(clientID); isBot && home != t.id {
			s.entraError(w, r, http.StatusBadRequest, "unauthorized_client", 700016, appNotFound(clientID, t.domain))
			return
		}
		aud, roles = "https://api.botframework.com", nil
	default:
		s.entraError(w, r, http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", resource, t.domain))
		return
	}

	life := s.opts.TokenLifetime
	iss := baseURL(r) + "/" + t.id + "/v2.0"
	oid := spObjectID(t.id, clientID)
	c := tokenClaims{
		Aud: aud, Iss: iss, Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(life).Unix(),
		AppDisplayName: a.name, AppID: clientID, AppIDAcr: "1", Azp: clientID, Azpacr: "1",
		Idp: iss, Idtyp: "app", Oid: oid, Roles: roles, Sub: oid, Tid: t.id,
		Uti: base64.RawURLEncoding.EncodeToString([]byte(uuid.NewString())[:16]), Ver: "2.0",
	}
	writeTokens(w, life, "", c, nil)
}

// writeTokens answers a token request with Entra's JSON: a Bearer access token signed from the
// access claims and valid for life, with scope when it is not empty and an ID token when id is
// not nil. Signing failures answer 500.
func writeTokens(w http.ResponseWriter, life time.Duration, scope string, access, id any) {
	secs := int(life / time.Second)
	body := map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs}
	if scope != "" {
		body["scope"] = scope
	}
	sign := func(name string, claims any) bool {
		tok, err := signJWT(claims)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return false
		}
		body[name] = tok
		return true
	}
	if !sign("access_token", access) || id != nil && !sign("id_token", id) {
		return
	}
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", body)
}

// authenticateClient checks the client secret (post or basic) or client_assertion of a token
// request, answering the error itself when it fails. acr is the azpacr value ("1" secret,
// "2" certificate).
func (s *Server) authenticateClient(w http.ResponseWriter, r *http.Request, f url.Values, clientID string, secrets []secret, certs []*x509.Certificate, now time.Time) (acr string, ok bool) {
	switch {
	case f.Get("client_secret") != "":
		var match *secret
		for i := range secrets {
			if secrets[i].value == f.Get("client_secret") {
				match = &secrets[i]
			}
		}
		if match == nil {
			s.entraError(w, r, http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID))
			return "", false
		}
		if !match.expires.IsZero() && !now.Before(match.expires) {
			s.entraError(w, r, http.StatusUnauthorized, "invalid_client", 7000222, fmt.Sprintf("The provided client secret keys for app '%s' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.", clientID))
			return "", false
		}
	case f.Get("client_assertion") != "":
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			s.entraError(w, r, http.StatusBadRequest, "invalid_request", 50027, "Invalid client_assertion_type; expected urn:ietf:params:oauth:client-assertion-type:jwt-bearer.")
			return "", false
		}
		if err := verifyAssertion(f.Get("client_assertion"), clientID, certs); err != nil {
			s.entraError(w, r, http.StatusUnauthorized, "invalid_client", 700027, "Client assertion failed signature validation. ("+err.Error()+")")
			return "", false
		}
	default:
		s.entraError(w, r, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return "", false
	}
	if f.Get("client_assertion") != "" && f.Get("client_secret") == "" {
		return "2", true
	}
	return "1", true
}

// entraError writes an error exactly as the Microsoft identity platform does.
func (s *Server) entraError(w http.ResponseWriter, r *http.Request, status int, code string, aadsts int, desc string) {
	s.mu.Lock()
	now := s.now().UTC()
	s.mu.Unlock()
	trace, corr := uuid.NewString(), cmp.Or(r.Header.Get("client-request-id"), uuid.NewString())
	ts := now.Format("2006-01-02 15:04:05Z")
	w.Header().Set("x-ms-request-id", trace)
	writeJSON(w, status, "application/json; charset=utf-8", map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s", aadsts, desc, trace, corr, ts),
		"error_codes":       []int{aadsts},
		"timestamp":         ts,
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         baseURL(r) + "/error?code=" + strconv.Itoa(aadsts),
	})
}

func writeJSON(w http.ResponseWriter, status int, ctype string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	w.Write(b)
}

// --- JWT -----------------------------------------------------------------------------------

type tokenClaims struct {
	Aud            string   `json:"aud"`
	Iss            string   `json:"iss"`
	Iat            int64    `json:"iat"`
	Nbf            int64    `json:"nbf"`
	Exp            int64    `json:"exp"`
	AppDisplayName string   `json:"app_displayname,omitempty"`
	AppID          string   `json:"appid"`
	AppIDAcr       string   `json:"appidacr"`
	Azp            string   `json:"azp"`
	Azpacr         string   `json:"azpacr"`
	Idp            string   `json:"idp"`
	Idtyp          string   `json:"idtyp,omitempty"` // app-only tokens only, as Entra by default
	Name           string   `json:"name,omitempty"`
	Oid            string   `json:"oid"`
	Roles          []string `json:"roles,omitempty"`
	Scp            string   `json:"scp,omitempty"` // delegated (user) tokens only
	Sub            string   `json:"sub"`
	Tid            string   `json:"tid"`
	UniqueName     string   `json:"unique_name,omitempty"`
	Upn            string   `json:"upn,omitempty"`
	Uti            string   `json:"uti"`
	Ver            string   `json:"ver"`
	Wids           []string `json:"wids,omitempty"`
}

// signJWT signs claims (tokenClaims or idTokenClaims) with the sim's key.
func signJWT(c any) (string, error) {
	sg := getSigner()
	hdr, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "RS256", "x5t": sg.kid, "kid": sg.kid})
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signing := b64(hdr) + "." + b64(body)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, sg.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + b64(sig), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// parseJWT verifies an RS256 signature made by the sim's key and decodes the claims.
func parseJWT(tok string) (tokenClaims, error) {
	var c tokenClaims
	var hdr struct {
		Alg string `json:"alg"`
	}
	j, err := splitJWS(tok, "JWT ", &hdr, func() bool { return hdr.Alg == "RS256" })
	if err != nil {
		return c, err
	}
	if err := rsa.VerifyPKCS1v15(&getSigner().key.PublicKey, crypto.SHA256, j.digest[:], j.sig); err != nil {
		return c, fmt.Errorf("signature validation failed")
	}
	err = j.claims(&c)
	return c, err
}

// jws is a compact JWS (header.payload.signature) split, with its signature decoded. noun
// names the token in the error texts, which the sim's error answers carry.
type jws struct {
	noun    string
	payload string   // base64url, as sent
	sig     []byte   // decoded
	digest  [32]byte // SHA-256 of the signing input
}

// splitJWS splits a compact JWS and decodes its header into hdr (headerOK, when not nil,
// vets it) and its signature.
func splitJWS(tok, noun string, hdr any, headerOK func() bool) (jws, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return jws{}, fmt.Errorf("not a JWT")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, hdr) != nil || headerOK != nil && !headerOK() {
		return jws{}, fmt.Errorf("bad %sheader", noun)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return jws{}, fmt.Errorf("bad %ssignature encoding", noun)
	}
	return jws{noun: noun, payload: parts[1], sig: sig, digest: sha256.Sum256([]byte(parts[0] + "." + parts[1]))}, nil
}

// claims decodes the payload into v.
func (j jws) claims(v any) error {
	pb, err := base64.RawURLEncoding.DecodeString(j.payload)
	if err != nil || json.Unmarshal(pb, v) != nil {
		return fmt.Errorf("bad %spayload", j.noun)
	}
	return nil
}

// verifyAssertion checks a client_assertion JWT (RS256 or PS256) against the app's certificates.
func verifyAssertion(tok, clientID string, certs []*x509.Certificate) error {
	var hdr struct {
		Alg     string `json:"alg"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
	}
	j, err := splitJWS(tok, "", &hdr, nil)
	if err != nil {
		return err
	}
	var cert *x509.Certificate
	for _, c := range certs {
		s1, s2 := sha1.Sum(c.Raw), sha256.Sum256(c.Raw)
		if hdr.X5t == b64(s1[:]) || hdr.X5tS256 == b64(s2[:]) {
			cert = c
		}
	}
	if cert == nil {
		return fmt.Errorf("no registered certificate matches x5t")
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("certificate key is not RSA")
	}
	switch hdr.Alg {
	case "RS256":
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, j.digest[:], j.sig)
	case "PS256":
		err = rsa.VerifyPSS(pub, crypto.SHA256, j.digest[:], j.sig, nil)
	default:
		err = fmt.Errorf("unsupported alg %q", hdr.Alg)
	}
	if err != nil {
		return err
	}
	var c struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	if err := j.claims(&c); err != nil {
		return err
	}
	if !strings.EqualFold(c.Iss, clientID) || !strings.EqualFold(c.Sub, clientID) {
		return fmt.Errorf("iss/sub must be the client id")
	}
	if c.Exp < time.Now().Unix() { // the client's clock, not the sim's
		return fmt.Errorf("assertion expired")
	}
	return nil
}
