package m365sim

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// --- OpenID Connect sign-in (GET /{tenant}/oauth2/v2.0/authorize + authorization_code) -------

// Directory role template ids (the values of the wids claim) of Entra built-in roles that can
// grant tenant-wide admin consent: Global and Privileged Role Administrators to any permission,
// Cloud Application and Application Administrators to any except Microsoft Graph application
// permissions (app roles).
const (
	RoleGlobalAdministrator           = "62e90394-69f5-4237-9190-012177145e10"
	RolePrivilegedRoleAdministrator   = "e8611ab8-c189-46e8-94e1-60213ab1f814"
	RoleCloudApplicationAdministrator = "158c047a-c907-4556-b7ef-446551a6b5f7"
	RoleApplicationAdministrator      = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
)

// AuthCodeLifetime is how long an authorization code can be redeemed (sim clock), as Entra.
const AuthCodeLifetime = 10 * time.Minute

// SignedInUser is the user signed in to the simulated browser: who /authorize signs in.
type SignedInUser struct {
	ObjectID          string `json:"objectId"`          // default: derived from tenant and UPN
	UserPrincipalName string `json:"userPrincipalName"` // default: admin@<tenant domain>
	Name              string `json:"name"`
	// DirectoryRoles are the user's directory role template ids (RoleGlobalAdministrator, …):
	// the wids claim. Empty: an ordinary user.
	DirectoryRoles []string `json:"directoryRoles,omitempty"`
}

// SetSignedInUser signs u in to the simulated browser as a user of tenantID (id or verified
// domain), which also becomes the signed-in tenant (as SetSignedInTenant): /organizations and
// /common resolve to it, and /authorize for another tenant is refused with AADSTS50020.
func (s *Server) SetSignedInUser(tenantID string, u SignedInUser) error {
	t, unlock, err := s.lockResolvedTenant(tenantID)
	if err != nil {
		return err
	}
	defer unlock()
	if u.UserPrincipalName == "" {
		u.UserPrincipalName = "admin@" + cmp.Or(t.domain, t.id)
	}
	if u.ObjectID == "" {
		u.ObjectID = uuidFrom(t.id, strings.ToLower(u.UserPrincipalName), "user")
	}
	u.ObjectID = strings.ToLower(u.ObjectID)
	u.Name = cmp.Or(u.Name, u.UserPrincipalName)
	roles := make([]string, 0, len(u.DirectoryRoles))
	for _, r := range u.DirectoryRoles {
		if r = strings.ToLower(strings.TrimSpace(r)); r != "" && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	u.DirectoryRoles = roles
	s.users[t.id] = u
	s.signedIn = t.id
	return nil
}

// defaultAdmin is the user SetSignedInTenant signs in: a Global Administrator of t.
func defaultAdmin(t *tenant) SignedInUser {
	upn := "admin@" + cmp.Or(t.domain, t.id)
	return SignedInUser{
		ObjectID:          uuidFrom(t.id, upn, "user"),
		UserPrincipalName: upn,
		Name:              "Tenant Administrator",
		DirectoryRoles:    []string{RoleGlobalAdministrator},
	}
}

// signedInUserLocked is the browser's user and tenant (nil when nobody is signed in).
func (s *Server) signedInUserLocked() (*tenant, SignedInUser) {
	t := s.tenants[s.signedIn]
	if t == nil {
		return nil, SignedInUser{}
	}
	if u, ok := s.users[t.id]; ok {
		return t, u
	}
	return t, defaultAdmin(t)
}

// SetGroupMembershipClaims sets the app registration's groupMembershipClaims manifest property:
// "None" (or "", a new registration's null), "SecurityGroup", "DirectoryRole",
// "ApplicationGroup" or "All". As documented for Entra, only "DirectoryRole" and "All" put the
// wids claim (the user's directory role template ids) in the app's ID tokens.
func (s *Server) SetGroupMembershipClaims(clientID, value string) error {
	s.init()
	switch value {
	case "", "None", "SecurityGroup", "DirectoryRole", "ApplicationGroup", "All":
	default:
		return fmt.Errorf("m365sim: groupMembershipClaims %q is not one of None, SecurityGroup, DirectoryRole, ApplicationGroup, All", value)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appLocked(clientID).groupMembershipClaims = value
	return nil
}

func widsInIDToken(groupMembershipClaims string) bool {
	return groupMembershipClaims == "DirectoryRole" || groupMembershipClaims == "All"
}

// authCode is an issued authorization code: single use, bound to what it was issued for.
type authCode struct {
	clientID, redirectURI, nonce string
	scopes                       []string // as requested (OIDC scopes and Graph scopes)
	tenantID                     string
	user                         SignedInUser
	expires                      time.Time
	redeemed                     bool
}

var oidcScopes = []string{"openid", "profile", "email", "offline_access"}

// graphScope maps a requested resource scope to Graph's short permission name ("User.Read").
func graphScope(sc string) (string, bool) {
	l := strings.ToLower(sc)
	for _, p := range []string{GraphResource + "/", GraphAppID + "/"} {
		if strings.HasPrefix(l, p) {
			return sc[len(p):], sc[len(p):] != ""
		}
	}
	if strings.Contains(sc, "/") || strings.Contains(sc, ":") {
		return "", false // another resource
	}
	return sc, true // a bare scope is Graph's
}

// authorize serves the v2 authorization endpoint for response_type=code. Like adminConsent,
// requests that cannot be trusted to redirect get the 400 HTML error page; everything else is
// answered at redirect_uri (302 for query and fragment, an auto-posting form for form_post).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	pathTenant := tenantInPath(r)
	q := r.URL.Query()
	clientID := strings.ToLower(q.Get("client_id"))
	redirectURI := q.Get("redirect_uri")
	state, hasState := q.Get("state"), q.Has("state")
	mode := cmp.Or(q.Get("response_mode"), "query")

	s.mu.Lock()
	var target *tenant
	if !isMetaTenant(pathTenant) {
		target = s.resolveTenantLocked(pathTenant)
	}
	a := s.apps[strings.ToLower(clientID)]
	var redirects []string
	if a != nil {
		redirects = slices.Clone(a.redirectURIs)
	}
	userTenant, user := s.signedInUserLocked()
	s.mu.Unlock()

	dir := pathTenant
	if target != nil {
		dir = cmp.Or(target.domain, target.id)
	}
	clientErr, clientMsg := clientRedirectError(clientID, a != nil, dir, redirectURI, redirects)
	switch {
	case pathTenant == "consumers":
		s.entraErrorPage(w, r, 90130, "m365sim: the simulated tenants have work accounts only; use organizations, common or a tenant id or domain.")
		return
	case !isMetaTenant(pathTenant) && target == nil:
		s.entraErrorPage(w, r, 90002, tenantNotFound(pathTenant))
		return
	case clientErr != 0:
		s.entraErrorPage(w, r, clientErr, clientMsg)
		return
	case mode != "query" && mode != "fragment" && mode != "form_post":
		s.entraErrorPage(w, r, 900144, fmt.Sprintf("m365sim: response_mode '%s' is not supported (query, fragment or form_post).", mode))
		return
	}

	fail := func(code string, aadsts int, desc string) {
		params := []kv{
			{"error", code},
			{"error_description", s.describe(r, fmt.Sprintf("AADSTS%d: %s", aadsts, desc))},
			{"error_uri", fmt.Sprintf("%s/error?code=%d", baseURL(r), aadsts)},
		}
		if hasState {
			params = append(params, kv{"state", state})
		}
		s.authResponse(w, redirectURI, mode, params)
	}
	responseType := q.Get("response_type")
	scope := q.Get("scope")
	scopes := strings.Fields(scope)
	var foreign []string
	for _, sc := range scopes {
		if slices.Contains(oidcScopes, strings.ToLower(sc)) {
			continue
		}
		if _, ok := graphScope(sc); !ok {
			foreign = append(foreign, sc)
		}
	}
	switch {
	case responseType == "":
		fail("invalid_request", 900144, missingParam("response_type"))
		return
	case responseType != "code":
		fail("unsupported_response_type", 700054, fmt.Sprintf("response_type '%s' is not enabled for the application. (m365sim supports response_type=code only.)", responseType))
		return
	case !slices.Contains(scopes, "openid"):
		fail("invalid_scope", 70011, fmt.Sprintf("The provided value for the input parameter 'scope' is not valid. The scope '%s' does not include openid. (m365sim's authorize endpoint is for OpenID Connect sign-in.)", scope))
		return
	case len(foreign) > 0:
		fail("invalid_scope", 70011, fmt.Sprintf("The provided value for the input parameter 'scope' is not valid. The scope %s is not valid. (m365sim issues delegated tokens for Microsoft Graph only.)", strings.Join(foreign, " ")))
		return
	case userTenant == nil && q.Get("prompt") == "none":
		fail("login_required", 50058, "A silent sign-in request was sent but no user is signed in.")
		return
	case userTenant == nil:
		s.entraErrorPage(w, r, 50058, "m365sim: nobody is signed in to the simulated browser; call SetSignedInUser or SetSignedInTenant (or POST /_sim/tenants/{t}/signed-in-user) first.")
		return
	case target != nil && target.id != userTenant.id:
		fail("access_denied", 50020, fmt.Sprintf("User account '%s' from identity provider '%s/%s/' does not exist in tenant '%s' and cannot access the application '%s' in that tenant. The account needs to be added as an external user in the tenant first. Sign out and sign in again with a different Microsoft Entra user account.", user.UserPrincipalName, baseURL(r), userTenant.id, dir, clientID))
		return
	}

	code := "1.A" + randB64(96)
	s.mu.Lock()
	now := s.now()
	for k, c := range s.codes { // sweep: expired codes answer "unknown" instead of 70008 after an hour
		if now.Sub(c.expires) > time.Hour {
			delete(s.codes, k)
		}
	}
	s.codes[code] = &authCode{
		clientID: clientID, redirectURI: redirectURI, nonce: q.Get("nonce"), scopes: scopes,
		tenantID: userTenant.id, user: user, expires: now.Add(AuthCodeLifetime),
	}
	s.mu.Unlock()
	params := []kv{{"code", code}}
	if hasState {
		params = append(params, kv{"state", state})
	}
	params = append(params, kv{"session_state", uuidFrom(userTenant.id, user.ObjectID, "session")})
	s.authResponse(w, redirectURI, mode, params)
}

// authResponse delivers authorization-endpoint parameters to the client per response_mode.
func (s *Server) authResponse(w http.ResponseWriter, redirectURI, mode string, params []kv) {
	w.Header().Set("Cache-Control", "no-store, no-cache")
	if mode == "form_post" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "<html><head><title>Working...</title></head><body><form method=\"POST\" name=\"hiddenform\" action=\"%s\">", html.EscapeString(redirectURI))
		for _, p := range params {
			fmt.Fprintf(w, "<input type=\"hidden\" name=\"%s\" value=\"%s\" />", html.EscapeString(p.k), html.EscapeString(p.v))
		}
		fmt.Fprint(w, "<noscript><p>Script is disabled. Click Submit to continue.</p><input type=\"submit\" value=\"Submit\" /></noscript></form><script language=\"javascript\">document.forms[0].submit();</script></body></html>")
		return
	}
	var b strings.Builder
	b.WriteString(redirectURI)
	sep := "?"
	if mode == "fragment" {
		sep = "#"
	} else if strings.Contains(redirectURI, "?") {
		sep = "&"
	}
	for _, p := range params {
		b.WriteString(sep)
		b.WriteString(url.QueryEscape(p.k))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p.v))
		sep = "&"
	}
	w.Header().Set("Location", b.String())
	w.WriteHeader(http.StatusFound)
}

func randB64(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// idTokenClaims are the claims of a v2.0 ID token.
type idTokenClaims struct {
	Aud               string   `json:"aud"`
	Iss               string   `json:"iss"`
	Iat               int64    `json:"iat"`
	Nbf               int64    `json:"nbf"`
	Exp               int64    `json:"exp"`
	Name              string   `json:"name,omitempty"`
	Nonce             string   `json:"nonce,omitempty"`
	Oid               string   `json:"oid,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Sub               string   `json:"sub"`
	Tid               string   `json:"tid"`
	Uti               string   `json:"uti"`
	Ver               string   `json:"ver"`
	Wids              []string `json:"wids,omitempty"`
}

// tokenAuthCode redeems an authorization code (grant_type=authorization_code).
func (s *Server) tokenAuthCode(w http.ResponseWriter, r *http.Request, pathTenant string, f url.Values, clientID string) {
	s.mu.Lock()
	now := s.now()
	var target *tenant
	if !isMetaTenant(pathTenant) {
		target = s.resolveTenantLocked(pathTenant)
	}
	a := s.apps[clientID]
	var secrets []secret
	var certs []*x509.Certificate
	gmc := ""
	name := ""
	if a != nil {
		secrets, certs, gmc, name = slices.Clone(a.secrets), slices.Clone(a.certs), a.groupMembershipClaims, a.name
	}
	s.mu.Unlock()

	switch {
	case clientID == "":
		s.entraError(w, r, http.StatusBadRequest, "invalid_request", 900144, missingParam("client_id"))
		return
	case pathTenant == "consumers" || (!isMetaTenant(pathTenant) && target == nil):
		s.entraError(w, r, http.StatusBadRequest, "invalid_request", 90002, tenantNotFound(pathTenant))
		return
	case a == nil:
		s.entraError(w, r, http.StatusBadRequest, "unauthorized_client", 700016, appNotFound(clientID, pathTenant))
		return
	}
	acr, ok := s.authenticateClient(w, r, f, clientID, secrets, certs, now)
	if !ok {
		return
	}
	if f.Get("code") == "" {
		s.entraError(w, r, http.StatusBadRequest, "invalid_request", 900144, missingParam("code"))
		return
	}
	if f.Get("redirect_uri") == "" {
		s.entraError(w, r, http.StatusBadRequest, "invalid_request", 900144, missingParam("redirect_uri"))
		return
	}

	s.mu.Lock()
	c := s.codes[f.Get("code")]
	var errCode int
	var errDesc string
	switch {
	case c == nil:
		errCode, errDesc = 9002313, "Invalid request. Request is malformed or invalid."
	case c.redeemed:
		errCode, errDesc = 54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token."
	case !now.Before(c.expires):
		errCode, errDesc = 70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource."
	case c.clientID != clientID:
		errCode, errDesc = 70000, fmt.Sprintf("Provided grant is invalid or malformed. (The authorization code was issued to application '%s'.)", c.clientID)
	case target != nil && target.id != c.tenantID:
		errCode, errDesc = 70000, fmt.Sprintf("Provided grant is invalid or malformed. (The authorization code was issued by tenant '%s'.)", c.tenantID)
	case c.redirectURI != f.Get("redirect_uri"):
		errCode, errDesc = 500112, fmt.Sprintf("The reply address '%s' does not match the reply address '%s' provided when requesting Authorization code.", f.Get("redirect_uri"), c.redirectURI)
	default:
		c.redeemed = true
	}
	var cc authCode
	if c != nil {
		cc = *c
	}
	s.mu.Unlock()
	if errCode != 0 {
		s.entraError(w, r, http.StatusBadRequest, "invalid_grant", errCode, errDesc)
		return
	}

	// Scopes: the OIDC ones as asked, the Graph ones as full URIs; with none for Graph, Entra
	// issues a Graph token for User.Read.
	var respScopes, scp []string
	profile := false
	for _, sc := range cc.scopes {
		switch l := strings.ToLower(sc); {
		case l == "offline_access":
		case slices.Contains(oidcScopes, l):
			profile = profile || l == "profile"
			respScopes = append(respScopes, l)
			scp = append(scp, l)
		default:
			g, _ := graphScope(sc)
			if g == ".default" {
				continue
			}
			respScopes = append(respScopes, GraphResource+"/"+g)
			scp = append(scp, g)
		}
	}
	if !slices.ContainsFunc(respScopes, func(x string) bool { return strings.HasPrefix(x, GraphResource+"/") }) {
		respScopes = append(respScopes, GraphResource+"/User.Read")
		scp = append(scp, "User.Read")
	}
	slices.Sort(scp)
	scp = slices.Compact(scp)

	u := cc.user
	iss := baseURL(r) + "/" + cc.tenantID + "/v2.0"
	life := s.opts.TokenLifetime - time.Second
	at := tokenClaims{
		Aud: GraphResource, Iss: iss, Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(life).Unix(),
		AppDisplayName: name, AppID: clientID, AppIDAcr: acr, Azp: clientID, Azpacr: acr,
		Idp: iss, Name: u.Name, Oid: u.ObjectID, Scp: strings.Join(scp, " "),
		Sub: pairwiseSub(cc.tenantID, GraphAppID, u.ObjectID), Tid: cc.tenantID,
		UniqueName: u.UserPrincipalName, Upn: u.UserPrincipalName,
		Uti: randB64(16), Ver: "1.0", Wids: slices.Clone(u.DirectoryRoles),
	}
	id := idTokenClaims{
		Aud: clientID, Iss: iss, Iat: now.Unix(), Nbf: now.Unix(), Exp: now.Add(time.Hour).Unix(),
		Nonce: cc.nonce, Sub: pairwiseSub(cc.tenantID, clientID, u.ObjectID), Tid: cc.tenantID,
		Uti: randB64(16), Ver: "2.0",
	}
	if profile { // name, preferred_username and oid need the profile scope
		id.Name, id.PreferredUsername, id.Oid = u.Name, u.UserPrincipalName, u.ObjectID
	}
	if widsInIDToken(gmc) {
		id.Wids = slices.Clone(u.DirectoryRoles)
	}
	writeTokens(w, life, strings.Join(respScopes, " "), at, id)
}

// pairwiseSub is the sub claim: unique per user and application, in Entra's 43-character form.
func pairwiseSub(tenantID, appID, oid string) string {
	h := sha256.Sum256([]byte(tenantID + "\x00" + strings.ToLower(appID) + "\x00" + oid))
	return base64.RawURLEncoding.EncodeToString(h[:])
}
