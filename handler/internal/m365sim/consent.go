package m365sim

import (
	"cmp"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// --- admin consent (GET /{tenant}/v2.0/adminconsent) ------------------------------------------

// ConsentDecision scripts what the signed-in admin of a tenant does on the admin-consent page
// (tests have no browser). With no decision set, the admin approves every configured
// permission.
type ConsentDecision struct {
	// Grant approves the request. The callback then carries admin_consent=True, tenant, scope
	// and state, and the tenant's consent is recorded as Consent does.
	Grant bool `json:"grant"`
	// Roles is the subset of the app's configured permissions (SetAppPermissions) actually
	// granted. nil grants all of them; an empty non-nil slice grants none (the service
	// principal exists but tokens carry no roles).
	Roles []string `json:"roles,omitempty"`
	// Error and ErrorDescription are the refusal's callback parameters when !Grant. Defaults:
	// "access_denied" and "AADSTS65004: User declined to consent to access the app." (what
	// Entra sends when the admin cancels). As with Entra, "\r\nTrace ID: …\r\nCorrelation ID:
	// …\r\nTimestamp: …" is appended to the description and error_uri is added.
	Error            string `json:"error,omitempty"`
	ErrorDescription string `json:"errorDescription,omitempty"`
	// WithAdminConsentTrue makes the error callback still carry admin_consent=True, as Entra's
	// does after a cancel.
	WithAdminConsentTrue bool `json:"withAdminConsentTrue,omitempty"`
}

// RegisterRedirectURI adds a redirect URI to the app registration (registering the app if
// needed). The admin-consent endpoint only redirects to a URI that equals a registered one
// exactly.
func (s *Server) RegisterRedirectURI(clientID, uri string) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(clientID)
	if !slices.Contains(a.redirectURIs, uri) {
		a.redirectURIs = append(a.redirectURIs, uri)
	}
}

// SetAppPermissions sets the Graph application permissions configured on the app registration
// (names from Roles), replacing earlier ones: what scope=https://graph.microsoft.com/.default
// asks for on the admin-consent endpoint. It does not change existing consents: as with Entra,
// every tenant must consent again to get an added permission.
func (s *Server) SetAppPermissions(clientID string, roles ...string) error {
	s.init()
	if err := checkRoles(roles); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appLocked(clientID).permissions = slices.Clone(roles)
	return nil
}

// SetConsentDecision scripts the admin's answer on the admin-consent page for a tenant (id or
// verified domain). It stays in force for later requests until replaced.
func (s *Server) SetConsentDecision(tenantID string, d ConsentDecision) error {
	if err := checkRoles(d.Roles); err != nil {
		return err
	}
	t, unlock, err := s.lockResolvedTenant(tenantID)
	if err != nil {
		return err
	}
	defer unlock()
	d.Roles = cloneKeepNil(d.Roles)
	s.decisions[t.id] = d
	return nil
}

// SetSignedInTenant chooses the tenant (id or verified domain) whose admin is signed in to the
// simulated browser: /organizations/v2.0/adminconsent consents for that tenant. A specific
// tenant in the path targets that tenant whatever is signed in. The signed-in user (who
// /authorize signs in) becomes the tenant's default Global Administrator, replacing any user
// set with SetSignedInUser.
func (s *Server) SetSignedInTenant(tenantID string) error {
	t, unlock, err := s.lockResolvedTenant(tenantID)
	if err != nil {
		return err
	}
	defer unlock()
	s.signedIn = t.id
	delete(s.users, t.id)
	return nil
}

func checkRoles(roles []string) error {
	for _, r := range roles {
		if _, ok := Roles[r]; !ok {
			return fmt.Errorf("m365sim: unknown Graph application permission %q (add it to Roles)", r)
		}
	}
	return nil
}

func cloneKeepNil(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

// clientRedirectError is the Entra error page (AADSTS code and message) of a browser request
// whose client or redirect URI cannot be trusted with a redirect; code 0 when they can. known
// reports whether the client is a registered app, dir names the directory it was looked up in.
func clientRedirectError(clientID string, known bool, dir, redirectURI string, redirects []string) (code int, msg string) {
	switch {
	case clientID == "":
		return 900144, missingParam("client_id")
	case !known:
		return 700016, appNotFound(clientID, dir)
	case redirectURI == "":
		return 900144, missingParam("redirect_uri")
	case !slices.Contains(redirects, redirectURI):
		return 50011, fmt.Sprintf("The redirect URI '%s' specified in the request does not match the redirect URIs configured for the application '%s'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.", redirectURI, clientID)
	}
	return 0, ""
}

// adminConsent serves the v2 admin-consent endpoint. Requests that cannot be trusted to
// redirect (unknown tenant or app, unregistered redirect URI, missing parameters) get Entra's
// error page (400, HTML) and never a redirect; everything after that is answered by a 302 to
// the redirect URI.
func (s *Server) adminConsent(w http.ResponseWriter, r *http.Request) {
	pathTenant := tenantInPath(r)
	q := r.URL.Query()
	clientID := strings.ToLower(q.Get("client_id"))
	redirectURI := q.Get("redirect_uri")
	scope, hasScope := q.Get("scope"), q.Has("scope")
	state, hasState := q.Get("state"), q.Has("state")

	s.mu.Lock()
	var t *tenant
	switch pathTenant {
	case "organizations":
		t = s.tenants[s.signedIn]
	case "common", "consumers":
	default:
		t = s.resolveTenantLocked(pathTenant)
	}
	a := s.apps[clientID]
	var redirects, perms []string
	if a != nil {
		redirects, perms = slices.Clone(a.redirectURIs), slices.Clone(a.permissions)
	}
	d := ConsentDecision{Grant: true}
	if t != nil {
		if dd, ok := s.decisions[t.id]; ok {
			d = dd
		}
	}
	s.mu.Unlock()

	dir := ""
	if t != nil {
		dir = t.domain
	}
	clientErr, clientMsg := clientRedirectError(clientID, a != nil, dir, redirectURI, redirects)
	switch {
	case pathTenant == "common" || pathTenant == "consumers":
		s.entraErrorPage(w, r, 90130, fmt.Sprintf("m365sim: the admin-consent endpoint needs 'organizations' or a tenant id or domain in the path, not '%s' (personal accounts cannot grant admin consent).", pathTenant))
	case pathTenant == "organizations" && t == nil:
		s.entraErrorPage(w, r, 50058, "m365sim: no admin is signed in to the simulated browser; call SetSignedInTenant (or POST /_sim/tenants/{t}/sign-in) first, or put a tenant id in the path.")
	case t == nil:
		s.entraErrorPage(w, r, 90002, tenantNotFound(pathTenant))
	case clientErr != 0:
		s.entraErrorPage(w, r, clientErr, clientMsg)
	case !hasScope || strings.TrimSpace(scope) == "":
		s.entraErrorPage(w, r, 900144, missingParam("scope"))
	case !graphDefaultScope(scope):
		// The sim models application permissions only: .default of Microsoft Graph.
		s.consentRedirect(w, r, redirectURI, []kv{
			{"error", "invalid_scope"},
			{"error_description", s.describe(r, fmt.Sprintf("AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope %s is not valid. (m365sim supports https://graph.microsoft.com/.default only.)", scope))},
			{"error_uri", baseURL(r) + "/error?code=70011"},
		}, state, hasState)
	case d.Grant:
		roles := perms
		if d.Roles != nil {
			roles = d.Roles
			for _, g := range roles {
				if !slices.Contains(perms, g) {
					http.Error(w, fmt.Sprintf("m365sim: the scripted consent decision for tenant %s grants %s, which app %s does not request (SetAppPermissions)", t.id, g, clientID), http.StatusInternalServerError)
					return
				}
			}
		}
		s.mu.Lock()
		s.consentLocked(t, clientID, roles)
		s.mu.Unlock()
		s.consentRedirect(w, r, redirectURI, []kv{{"admin_consent", "True"}, {"tenant", t.id}, {"scope", scope}}, state, hasState)
	default:
		desc := cmp.Or(d.ErrorDescription, "AADSTS65004: User declined to consent to access the app.")
		params := []kv{
			{"error", cmp.Or(d.Error, "access_denied")},
			{"error_description", s.describe(r, desc)},
		}
		if m := aadstsCode.FindStringSubmatch(desc); m != nil {
			params = append(params, kv{"error_uri", baseURL(r) + "/error?code=" + m[1]})
		}
		if d.WithAdminConsentTrue {
			params = append(params, kv{"admin_consent", "True"})
		}
		s.consentRedirect(w, r, redirectURI, params, state, hasState)
	}
}

var aadstsCode = regexp.MustCompile(`^AADSTS(\d+)`)

func graphDefaultScope(scope string) bool {
	switch strings.ToLower(strings.TrimSpace(scope)) {
	case GraphResource + "/.default", GraphAppID + "/.default":
		return true
	}
	return false
}

type kv struct{ k, v string }

// consentRedirect answers 302 Found to redirectURI with params (in order) and state, appended
// to any query the registered URI already has.
func (s *Server) consentRedirect(w http.ResponseWriter, r *http.Request, redirectURI string, params []kv, state string, hasState bool) {
	if hasState {
		params = append(params, kv{"state", state})
	}
	s.authResponse(w, redirectURI, "query", params)
}

// describe appends Entra's trace lines to an error description.
func (s *Server) describe(r *http.Request, desc string) string {
	s.mu.Lock()
	now := s.now().UTC()
	s.mu.Unlock()
	return fmt.Sprintf("%s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s", desc, uuid.NewString(), cmp.Or(r.Header.Get("client-request-id"), uuid.NewString()), now.Format("2006-01-02 15:04:05Z"))
}

// entraErrorPage answers as Entra's sign-in error page: 400, HTML, no redirect. The text
// carries "AADSTS<code>: <desc>" so tests and people can tell the cases apart.
func (s *Server) entraErrorPage(w http.ResponseWriter, r *http.Request, aadsts int, desc string) {
	msg := s.describe(r, "AADSTS"+strconv.Itoa(aadsts)+": "+desc)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("x-ms-request-id", uuid.NewString())
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>Sign in to your account</title></head><body>\n<h1>Sorry, but we’re having trouble signing you in.</h1>\n<pre id=\"error\">%s</pre>\n</body></html>\n", html.EscapeString(msg))
}
