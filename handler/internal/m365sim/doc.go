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
// client_secret_basic or a client_assertion signed by a certificate added with AddCertificate).
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
// running in another process (cmd/m365sim), including the admin-consent script (sign-in,
// consent-decision, redirect URIs, app permissions).
package m365sim
