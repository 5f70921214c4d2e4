// Package m365sim is a simulated Microsoft 365 tenant host for tests and local runs: the Entra
// (Microsoft identity platform) discovery and token endpoints and the Microsoft Graph routes the
// integration uses, over HTTPS, with real wire formats, so that azidentity and msgraph-sdk-go
// work against it exactly as against Microsoft. Modelled on tailscale's testcontrol.
//
// # Use
//
//	sim := m365sim.New(m365sim.Options{Clock: clock.Now})
//	sim.Start()                 // TLS on 127.0.0.1:random with its own CA
//	defer sim.Close()
//	sim.AddTenant(tid, "contoso.example")
//	sim.RegisterApp(clientID, secret)
//	sim.Consent(tid, clientID, "User.Read.All", "GroupMember.Read.All")
//	sim.Generate(tid, m365sim.GenSpec{Users: 1000, Groups: 20, Depth: 2, Seed: 1})
//
// Point azidentity at it with ClientOptions.Cloud.ActiveDirectoryAuthorityHost = sim.URL()+"/",
// ClientOptions.Transport = sim.HTTPClient() and DisableInstanceDiscovery; point Graph at
// sim.GraphURL(). Certificates are trusted through HTTPClient/Transport or CACertPEM (for
// SSL_CERT_FILE); nothing needs InsecureSkipVerify.
//
// # Identity
//
// GET /{tenant}/v2.0/.well-known/openid-configuration, GET /{tenant}/discovery/v2.0/keys
// (also /common), POST /{tenant}/oauth2/v2.0/token (client_credentials with client_secret,
// client_secret_basic or a client_assertion signed by a certificate added with AddCertificate;
// authorization_code, see Sign-in).
// Tokens are RS256 JWTs with aud, iss (sim URL + /{tid}/v2.0), tid, appid, azp, oid, idtyp=app,
// roles (the consented Graph application permissions) and exp (TokenLifetime of sim time).
// Errors are Entra's JSON (error, error_description "AADSTS<code>: ...", error_codes,
// timestamp, trace_id, correlation_id): bad secret 401 invalid_client AADSTS7000215, expired
// secret AADSTS7000222, app not consented in the tenant 400 unauthorized_client AADSTS700016,
// unknown tenant 400 invalid_request AADSTS90002.
//
// # Admin consent
//
// GET /{tenant}/v2.0/adminconsent?client_id&scope&redirect_uri&state is the page an org admin's
// browser is sent to. Tests have no browser, so the admin is scripted: SetSignedInTenant picks
// the tenant /organizations resolves to (a tenant id or domain in the path targets that tenant),
// and SetConsentDecision the answer per tenant (default: approve every permission the app asks
// for). The app's side is RegisterRedirectURI and SetAppPermissions (what
// scope=https://graph.microsoft.com/.default asks for).
//
//	sim.RegisterRedirectURI(clientID, "https://app.example/api/consent/callback")
//	sim.SetAppPermissions(clientID, "User.Read.All", "GroupMember.Read.All")
//	sim.SetSignedInTenant(tid)
//	sim.SetConsentDecision(tid, m365sim.ConsentDecision{Grant: true, Roles: []string{"User.Read.All"}})
//
// Approval records consent as Consent does and answers 302 to redirect_uri with
// admin_consent=True, tenant, scope (as sent) and state (as sent, when sent). Refusal answers
// 302 with error, error_description ("AADSTS…" plus Entra's Trace ID/Correlation ID/Timestamp
// lines), error_uri, state and, with WithAdminConsentTrue, admin_consent=True. Requests that
// must not redirect get a 400 HTML error page instead: unknown tenant AADSTS90002, common or
// consumers AADSTS90130, unknown client_id AADSTS700016, redirect_uri not exactly a registered
// one AADSTS50011, missing client_id, redirect_uri or scope AADSTS900144, /organizations with
// nobody signed in AADSTS50058. A scope other than Graph's .default redirects with
// invalid_scope (AADSTS70011). The legacy /{tenant}/adminconsent is not implemented (501).
//
// # Sign-in (OpenID Connect authorization code)
//
// GET /{tenant}/oauth2/v2.0/authorize (response_type=code; response_mode query (default),
// fragment or form_post) signs in the simulated browser's user so the app can prove who
// consented: the tenant (tid) and directory roles (wids) of the signed-in admin. The user is
// scripted: SetSignedInTenant signs in that tenant's default Global Administrator,
// SetSignedInUser any SignedInUser (object id, UPN, name, DirectoryRoles as role template ids:
// RoleGlobalAdministrator, RolePrivilegedRoleAdministrator, RoleCloudApplicationAdministrator,
// RoleApplicationAdministrator). {tenant} may be organizations or common (the signed-in
// user's tenant), or a tenant id or domain, which must be the signed-in user's tenant (else
// 302 with error=access_denied, AADSTS50020). Unknown client_id (AADSTS700016), a
// redirect_uri that is not exactly a registered one (AADSTS50011) or an unknown tenant
// (AADSTS90002) get the 400 error page and no redirect; a scope without openid or for another
// resource redirects with invalid_scope (AADSTS70011), response_type other than code with
// unsupported_response_type, nobody signed in with prompt=none with login_required. Success
// answers 302 redirect_uri?code=…&state=…&session_state=… (state byte for byte when sent).
// login_hint is accepted and ignored (the browser's user is scripted).
//
//	sim.RegisterRedirectURI(clientID, "https://app.example/api/signin/callback")
//	sim.SetGroupMembershipClaims(clientID, "DirectoryRole") // wids in ID tokens
//	sim.SetSignedInUser(tid, m365sim.SignedInUser{UserPrincipalName: "pat@contoso.example",
//		DirectoryRoles: []string{m365sim.RoleCloudApplicationAdministrator}})
//
// Codes are opaque, single use, live AuthCodeLifetime (10 minutes of sim time) and are bound
// to the client, redirect_uri, nonce, scopes and user. POST /{tenant}/oauth2/v2.0/token with
// grant_type=authorization_code, code, redirect_uri and the client's secret or
// client_assertion (as for client credentials; the tenant need not have consented) answers
// token_type, scope, expires_in/ext_expires_in (TokenLifetime - 1s: 3599), access_token (a
// delegated Microsoft Graph token: scp, oid, tid, upn, name, wids; no roles, so the app-only
// Graph routes answer 403 to it) and id_token (aud = client id, iss = sim URL + /{tid}/v2.0,
// tid, sub (pairwise per app), nonce when sent, iat, nbf, exp (1 h), ver 2.0; with the
// profile scope also oid, name and preferred_username). No refresh_token is issued.
// Redemption errors are 400 invalid_grant: unknown code AADSTS9002313, already redeemed
// AADSTS54005, expired AADSTS70008, redirect_uri differing from the authorize request's
// AADSTS500112, code of another client or tenant AADSTS70000. A failed redemption does not
// consume the code.
//
// wids: Entra documents wids (access-token claims reference) as configured per application
// by the groupMembershipClaims manifest property, set to DirectoryRole or All; it is not a
// default ID token claim. So the ID token carries wids only after
// SetGroupMembershipClaims(clientID, "DirectoryRole" or "All"); a user without roles gets
// none. The Graph access token always carries them (its claims follow Graph's manifest, and
// Graph tokens from Entra carry wids), but the app must not read a token meant for Graph.
//
// # Graph
//
// Every /v1.0 call needs a token from this sim; the token's tid selects the tenant's data and
// its roles are checked per route (401 InvalidAuthenticationToken, 403
// Authorization_RequestDenied). Implemented: /users (+$select, $top 1..999, $filter minimal,
// $count), /users/{id|upn}, /users/{id}/manager, /users/delta, /groups (+$search with
// ConsistencyLevel, $filter), /groups/{id}, /groups/delta, /groups/{id}/members and
// /transitiveMembers (with the microsoft.graph.user / .group casts as advanced queries),
// /servicePrincipals?$filter=appId eq '...', /servicePrincipals/{id}/appRoleAssignments.
// Responses use Graph's content type, @odata.context, camelCase and nulls for empty selected
// properties; errors use Graph's envelope with innerError date/request-id/client-request-id.
//
// Anything else answers 501 NotImplemented and increments Unhandled: tests should assert
// Unhandled() == 0 so the sim never drifts silently from what the app calls.
//
// # Delta
//
// Delta tokens are positions in a per-tenant ordered change log that every mutation appends
// to (AddUser, UpdateUser, SoftDeleteUser, RestoreUser, HardDeleteUser, SetAccountEnabled,
// AddMember, RemoveMember, RenameGroup, DeleteGroup, MutateRandom). Tokens are opaque and carry
// $select and $filter, so later calls use the links unchanged. Prefer: return=minimal returns
// only changed selected properties; removed objects carry @removed (changed = soft delete,
// deleted = permanent); manager changes appear as manager@delta (an array of
// {"@odata.type":"#microsoft.graph.user","id"}, with @removed when the manager was cleared);
// groups carry members@delta slices of at most MemberLinksPerPage links, a large group repeated
// on following pages. $deltatoken=latest, expired tokens (DeltaTokenTTL: 400 syncStateNotFound)
// and ResetDelta (410 Gone with a Location that restarts the sync) are simulated.
//
// # Faults and stats
//
// The Fault hook and AddFault rules inject 429 (with fractional Retry-After and the Graph
// TooManyRequests body), 5xx, 403, 404 and delays per path. Stats counts requests per route
// kind for benchmarks. With Options.Admin the /_sim/ JSON API (see serveAdmin) drives a sim
// running in another process (cmd/m365sim), including the admin-consent and sign-in script
// (sign-in, signed-in-user, consent-decision, redirect URIs, app permissions,
// group-membership-claims).
package m365sim
