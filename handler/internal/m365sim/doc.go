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
// /servicePrincipals?$filter=appId eq '...', /servicePrincipals/{id}/appRoleAssignments,
// POST /users/{…}/sendMail and the Sent Items lookup (see Mail).
// Responses use Graph's content type, @odata.context, camelCase and nulls for empty selected
// properties; errors use Graph's envelope with innerError date/request-id/client-request-id.
//
// Anything else answers 501 NotImplemented and increments Unhandled: tests should assert
// Unhandled() == 0 so the sim never drifts silently from what the app calls.
//
// # Mail
//
// POST /v1.0/users/{id | userPrincipalName | mail}/sendMail (application role Mail.Send) takes
// Graph's JSON body ({"message":{subject, body{contentType,content}, toRecipients, ccRecipients,
// bccRecipients, replyTo, internetMessageId, internetMessageHeaders}, "saveToSentItems"}, the
// latter also as the string "true"/"false") and answers 202 Accepted with an empty body. The
// mailbox is a tenant user found by object id, UPN or mail (any case). Errors, in Graph's
// envelope: no Mail.Send 403 ErrorAccessDenied "Access is denied. Check credentials and try
// again." (the Outlook workload's answer, not Authorization_RequestDenied); unknown user 404
// ErrorInvalidUser "The requested user '<x>' is invalid."; a user without mail, or
// soft-deleted, 404 MailboxNotEnabledForRESTAPI; malformed JSON 400 BadRequest "Unable to read
// JSON request payload…"; no recipients, more than 500 (Exchange's per-message limit), an
// address that is not local@domain, or (sim convention, for demos of one failing recipient) an
// address whose domain ends in .invalid: 400 ErrorInvalidRecipients "At least one recipient is
// not valid., …"; an internetMessageHeaders name without x-/X- 400 InvalidInternetMessageHeader,
// an empty list or more than 5 400 InvalidInternetMessageHeaderCollection; an
// internetMessageId not of the form <local@domain> 400 InvalidInternetMessageId (kept as sent
// when valid, generated when absent). SentMail(tenant) returns every accepted mail (From = the
// mailbox's mail address, To/Cc/Bcc/ReplyTo addresses, Subject, ContentType "text"/"html",
// Content, InternetMessageID, Headers, SavedToSentItems, SentAt in sim time, ClientID).
//
// GET /v1.0/users/{…}/mailFolders/SentItems/messages (also mailFolders('SentItems') and the
// name in any case; roles Mail.ReadBasic.All, Mail.ReadBasic, Mail.Read or Mail.ReadWrite)
// with $filter=internetMessageId eq '<id>' (quotes doubled inside the literal) lists the
// mails that mailbox sent with saveToSentItems true: id, internetMessageId, subject,
// sentDateTime, from, to/cc/bccRecipients, or the $select-ed subset (an unknown property 400
// RequestBroker--ParseUri). Other filters, other folders and no filter answer 501.
//
// SetMailAccessPolicy(tenant, clientID, allowed...) is an Exchange application access policy:
// both routes then answer 403 ErrorAccessDenied "Access to OData is disabled: [RAOP] : Blocked
// by tenant configured AppOnly AccessPolicy settings." for any other mailbox;
// ClearMailAccessPolicy removes it.
//
// Limits (Options.Mail, SetMailLimits; zero fields take the real values, negative ones turn a
// limit off), in rolling windows of sim time; a refused request is not sent and does not
// count anywhere:
//
//	PerMinute         30 messages per mailbox per 60 s   429 ApplicationThrottled
//	DailyRecipients   10 000 to+cc+bcc per mailbox / 24 h 429 ErrorSubmissionQuotaExceeded
//	RequestsPer10Min  10 000 Outlook requests per app per mailbox (sendMail and lookups)
//	                                                      429 ApplicationThrottled "…MailboxRequests limit."
//	Concurrency       4 sendMail per app per mailbox in flight
//	                                                      429 ApplicationThrottled "Application is over its MailboxConcurrency limit."
//
// Retry-After is fractional seconds until the window admits the request (for concurrency:
// Latency, at least 1 s). Latency delays each accepted 202 (wall time); the mail is captured
// when admitted, so a client that gives up during Latency still sent it. Real Exchange differs
// for its two sending limits: it accepts (202) and delays sends over 30 per minute, and
// answers the recipient rate limit with a non-delivery report (5.2.0
// SubmissionQuotaExceededException) rather than a 429; more than 500 recipients is likewise an
// NDR (5.5.3 RESOLVER.ADR.RecipLimit) after a 202 — the sim refuses up front so clients see
// it. MailStats counts accepted mails and recipients, refusals per limit (Violations sums
// them), 400s, 403/404s, the peak and current requests in flight.
//
// # Teams
//
// The Graph routes of Microsoft Teams (teams.go), with the roles Graph documents (application,
// least privileged first); a missing role answers the Teams workload's 403 Forbidden "Missing
// role permissions on the request. API requires one of '…'. Roles on the request '…'.":
//
//	GET    /teams                         Team.ReadBasic.All, TeamSettings.Read.All, TeamSettings.ReadWrite.All
//	GET    /teams/{id}/channels           Channel.ReadBasic.All, ChannelSettings.Read(Write).All, Group.Read(Write).All, Directory.Read(Write).All
//	GET    /appCatalogs/teamsApps         AppCatalog.Read.All, AppCatalog.ReadWrite.All
//	GET    /users/{id|upn}/teamwork/installedApps[/{id}[/chat]]
//	                                      TeamsAppInstallation.ReadForUser.All, …ReadWriteSelfForUser.All, …ReadWriteForUser.All
//	POST   /users/{id|upn}/teamwork/installedApps, DELETE …/installedApps/{id}
//	                                      TeamsAppInstallation.ReadWriteSelfForUser.All, …ReadWriteForUser.All
//
// /teams takes $filter (eq and startswith on id, displayName, description, visibility, joined
// by and; case-insensitive), $select, $top, $count and pages with @odata.nextLink ($skiptoken,
// PageSize); list items populate only id, displayName, description and visibility, the other
// properties are null, as the API reference notes. Channels (General first, as every team has
// one) and the catalog come in one page, with $filter and $select ($expand on the catalog is not
// implemented). A user's installedApps take $expand=teamsApp,teamsAppDefinition and $filter on
// teamsApp/id, teamsApp/externalId. POST takes {"teamsApp@odata.bind":
// ".../appCatalogs/teamsApps/{id}"} and answers 201 with no body; the app installed already
// 409 Conflict, an app not in the catalog or an unknown user 404 NotFound, no bind 400. An
// installation id is Graph's base64 of "{userId}##{teamsAppId}". ReadWriteSelfForUser.All
// installs, reads and removes only the app itself: the catalog app whose AzureADAppID (the
// manifest's webApplicationInfo.id) is the caller's client id (403 otherwise; an app without
// one counts as every caller's); ReadForUser.All reads every installation. …/chat answers the
// one-on-one chat {"id":"19:{user}_{bot}@unq.gbl.spaces","chatType":"oneOnOne",…}: for an app
// without AzureADAppID the bot is the one RegisterBot registered, so the id is BotChatID.
// A Graph install calls the Bot Framework side (the bot receives conversationUpdate and
// installationUpdate add), and so does InstallTeamsApp (the user adding the app in Teams);
// DELETE and UninstallBot (the user removing it) send installationUpdate remove and block
// later sends to the user.
//
// State: AddTeam (a team and its channels), AddChannel, GenerateTeams (deterministic per
// seed), TeamsOf, ChannelsOf, PublishTeamsApp (the app of a manifest id, idempotent; returns
// the catalog id), AddTeamsApp (with display name, AzureADAppID, "store" distribution),
// TeamsApps, InstallTeamsApp, Installations, UninstallBot; the admin API /_sim/teams/{tenant}/…
// (see adminTeams) does the same for another process. Stats names the routes teams, channels,
// teamsApps, installedApps, installedApp, installApp, uninstallApp and installationChat. The
// Teams service's own Graph rate limits are not simulated (faults inject 429s).
//
// # Change notifications
//
// Channel messages and Graph change-notification subscriptions to them (channelmessages.go,
// subscriptions*.go), for channel monitoring, and subscriptions to /users and /groups (see
// Directory subscriptions below), for real-time directory sync.
//
//	GET    /teams/{t}/channels/{c}/messages[?$top=1..50&$expand=replies]   root messages, newest first (a sim choice), $skiptoken pages (default 20)
//	GET    /teams/{t}/channels/{c}/messages/delta[?$filter=lastModifiedDateTime gt <time>&$top&$expand=replies]
//	                                      the reply chains changed after the time, oldest change first, then an @odata.deltaLink
//	GET    /teams/{t}/channels/{c}/messages/{id}, …/{id}/replies[/{id}]
//	POST   /subscriptions, GET /subscriptions[/{id}], PATCH /subscriptions/{id} (expirationDateTime only),
//	DELETE /subscriptions/{id} (204), POST /subscriptions/{id}/reauthorize (204)
//
// Reading messages and subscribing to /teams/{t}/channels/{c}/messages (also the teams('…')
// form; other resources, $search and $filter on the resource answer 501) need the application
// role ChannelMessage.Read.All or resource-specific consent: GrantRSC(tenant, team, appID)
// records the Teams app installed in the team with ChannelMessage.Read.Group, RevokeRSC
// uninstalls it (the app's subscriptions there that no role covers are removed, with a
// subscriptionRemoved lifecycle notification). A token must carry some application role to
// pass the shared check (a sim limitation for RSC-only apps). A missing permission answers 403
// (Teams' "Missing role permissions…" on reads; ExtensionError "Operation: Create; Exception:
// [Status Code: Forbidden; …]" on /subscriptions). Each app sees only its own subscriptions.
// RequireProtectedAPIApproval(appIDs...) simulates apps Microsoft has not approved for the
// protected Teams APIs: their message reads on the application role alone answer 403 "Invoked
// API requires Protected API access in application-only context when not using Resource
// Specific Consent…" (RSC passes; subscriptions are not gated).
//
// POST /subscriptions checks, in Graph's words where they are known: resource, changeType
// (created, updated, deleted, comma-separated), notificationUrl and expirationDateTime
// required (400 InvalidRequest); expirationDateTime in the future and at most 4 320 minutes out
// (MaxChannelMessageSubscription); more than an hour out needs lifecycleNotificationUrl
// ("lifecycleNotificationUrl is a required property…"); includeResourceData needs
// encryptionCertificate (base64 DER X.509, RSA 2 048–4 096 bits) and encryptionCertificateId
// (≤ 128 characters); clientState ≤ 128 characters; one subscription per app per channel (409
// ExtensionError, Conflict). URLs may be http (Graph requires https; the sim accepts loopback
// development endpoints). Then the validation handshake, without the state lock: a POST to
// notificationUrl and then lifecycleNotificationUrl (two even when they are equal) with
// ?validationToken=<token> added to its query, Content-Type text/plain and no body; the answer
// must be 200 with exactly the decoded token, within 10 s (WebhookOptions.HandshakeTimeout):
// otherwise 400 ValidationError "Subscription validation request failed. Notification endpoint
// must respond with 200 OK to validation request." / "… Response must exactly match
// validationToken query parameter.", or 400 InvalidRequest "Subscription validation request
// timed out.". 201 answers the subscription resource. Subscriptions expire by sim time
// (AdvanceClock): an expired one is gone (404 ResourceNotFound). PATCH applies the same
// lifetime rules, cannot add a lifecycleNotificationUrl (400) and, like reauthorize, rechecks
// the permission (403) and clears ReauthorizationRequired. Very short expirations are not
// rounded up.
//
// State: PostChannelMessage(tenant, team, channel, ChannelMessageInput) and PostChannelReply
// return the new id (Unix milliseconds of sim time, unique per channel), EditChannelMessage
// replaces the content (lastEditedDateTime), DeleteChannelMessage soft-deletes
// (deletedDateTime, content emptied), ChannelMessages lists them. Each change notifies every
// live subscription of the channel whose changeType has it (created, updated, deleted), one
// notification per POST, asynchronously: {"value":[{"subscriptionId",
// "subscriptionExpirationDateTime","changeType","clientState","tenantId","resource":
// "teams('t')/channels('c')/messages('id')" (…/messages('root')/replies('id') for a reply),
// "resourceData":{"id","@odata.type":"#Microsoft.Graph.chatMessage","@odata.id"}}]}. With
// includeResourceData the notification also carries encryptedContent {data, dataSignature,
// dataKey, encryptionCertificateId, encryptionCertificateThumbprint} — the chatMessage JSON as
// GET answers it, encrypted by EncryptResourceData: a random 32-byte key, AES-256-CBC with IV =
// key[:16] and PKCS#7, HMAC-SHA256(key, ciphertext) as dataSignature, the key wrapped with
// RSA-OAEP (SHA-1) for the subscription's certificate, the thumbprint the certificate's SHA-1
// in hex — and the collection a top-level validationTokens entry (ValidationToken: the app and
// tenant, signed by the sim's identity key).
//
// Directory subscriptions (subscriptions_directory.go): resource /users or /groups (leading
// slash optional, any case) tenant-wide. changeType updated and/or deleted — created answers
// 400 InvalidRequest (updated covers created, updated and soft-deleted objects; deleted is a
// permanent delete); includeResourceData true answers 400 (not on v1.0); expirationDateTime at
// most 41 760 minutes out (MaxDirectorySubscription), no lifecycle URL required; the
// application role User.Read.All (users) or GroupMember.Read.All / Group.Read.All (groups), or
// a higher one, else 403 ExtensionError "Missing role permissions on the request. API requires
// one of '…'"; an app may hold several such subscriptions (no 409). PATCH and reauthorize
// recheck that role. Every directory mutation — AddUser, UpdateUser, SetAccountEnabled,
// SoftDeleteUser, RestoreUser, HardDeleteUser, AddGroup, RenameGroup, DeleteGroup, AddMember,
// RemoveMember, MutateRandom and the admin API over them — notifies, when it releases the state
// lock, each live subscription of the tenant whose resource and changeType match, one
// notification per change-log entry: {"subscriptionId","subscriptionExpirationDateTime",
// "clientState","changeType","resource":"Users/<id>","resourceData":{"@odata.type":
// "#Microsoft.Graph.User","@odata.id":"Users/<id>","id","organizationId":"<tenant>"},
// "tenantId"}; groups "Groups/<id>" and "#Microsoft.Graph.Group", a membership change with
// "members@delta":[{"id":"<member>"}] ({"id","@removed":{}} for a removal; a permanently
// deleted user leaves each of its groups that way). changeType is deleted for a permanent
// delete of the user or group, updated otherwise.
//
// Lifecycle: FireLifecycle(subscriptionID, event) POSTs {"value":[{"subscriptionId",
// "subscriptionExpirationDateTime","lifecycleEvent","clientState","tenantId"}]} (with
// validationTokens for rich subscriptions) to lifecycleNotificationUrl: reauthorizationRequired
// marks the subscription until POST …/reauthorize or a PATCH (deliveries go on meanwhile),
// subscriptionRemoved removes it first, missed only notifies. RemoveSubscription(id) drops a
// subscription as Graph does on its side (subscriptionRemoved when it has a lifecycle URL; it
// works without one too).
//
// Delivery (WebhookOptions, SetWebhookOptions; the admin API for other processes): at most
// Concurrency POSTs in flight (256); a POST not answered 2xx within Timeout (10 s) is retried
// Retries times (3) after RetryBackoff doubling from 1 s — Graph retries for up to 4 hours —
// then given up. SetNotificationDuplicates(n) posts each later notification 1+n times. By
// default every notification is its own POST; Batch > 1 coalesces the plain notifications
// queued for one URL into POSTs of up to Batch entries in value (Graph sends up to about 100),
// each posted when full or BatchWindow (5 ms) after its first entry.
// WebhookStats: Delivered and Lifecycle (acknowledged 2xx), Failed (given up), Retried, Slow
// (POSTs acknowledged after SlowAfter, 3 s by default: real time, not sim time), Pending, and
// the ack latency AckP50/AckP99/AckMax of the 2xx answers; ResetWebhookStats zeroes them;
// WaitDeliveries waits for every pending delivery. Stats names the routes channelMessages,
// channelMessages/delta, channelMessage, messageReplies, messageReply, createSubscription,
// subscriptions, subscription, renewSubscription, deleteSubscription and
// reauthorizeSubscription. Admin API: see adminChannelMessages and adminSubscriptions
// (/_sim/teams/{t}/channels/{team}/{channel}/messages…, /_sim/subscriptions…, /_sim/webhook/…,
// /_sim/rsc/…).
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
// # Bot Framework
//
// The Teams bot's side of the tenant. RegisterBot(appID, homeTenant, secret, endpoint)
// registers the bot's Entra app in its home tenant (the only tenant that issues it a token for
// https://api.botframework.com/.default; elsewhere AADSTS700016) and its messaging endpoint.
//
// Inbound: GET /botframework/v1/.well-known/openidconfiguration (BotOpenIDMetadataURL; issuer
// https://api.botframework.com, jwks_uri) and GET /botframework/v1/.well-known/keys: RSA keys
// with kid, x5t, x5c and endorsements — the current and (after RotateBotKeys) the previous
// signing key endorsed ["msteams"], and one endorsed ["webchat"] only. SendBotActivity(ctx,
// tenant, user, activity, BotSign{}) POSTs an activity from the user to the endpoint with
// Authorization: Bearer <JWT> as Bot Service does (RS256, kid/x5t, iss
// https://api.botframework.com, aud = the bot's app id, serviceurl, nbf/exp: an hour of sim
// time) and fills what the activity lacks: type message, id, timestamp, serviceUrl
// (BotServiceURL, sim URL + /bot/emea/), channelId msteams, from (BotUserID "29:…", name,
// aadObjectId), recipient ("28:<app id>"), conversation (personal, tenantId, BotConversation
// "a:…") and channelData.tenant.id. BotSign spoils one thing at a time: WrongKey (bad
// signature), UnknownKid, NoEndorsement, Issuer, Audience, ServiceURL (the claim), Expired,
// NotYetValid, NotBefore, Alg (RS384/RS512), AlgNone, NoAuthorization, Authorization
// (verbatim header). BotToken signs a token alone.
//
// Installation: the Graph installedApps routes (Teams) call botInstalled, which installs the
// bot for the user and sends, asynchronously, a conversationUpdate (membersAdded: the bot; from:
// the user) and an installationUpdate (action add); DELETE (UninstallBot) calls
// botUninstalled: installationUpdate (action remove), and writes to the user's conversation
// answer 403 MessageWritesBlocked until the next install. BotInstall does the Bot Framework half
// alone; BotWait waits for the asynchronous activities. BlockBot makes a user block the bot.
// A user who sends an activity (SendBotActivity) counts as having the app.
//
// Outbound, the Bot Connector at BotServiceURL, each call with the bot's token (401 {"message":
// "Authorization has been denied for this request."} for none, another audience, an expired
// one, or another app or tenant):
//
//	POST {serviceUrl}v3/conversations                     {"bot","members":[{"id":"29:…" or the object id}],
//	                                                      "channelData":{"tenant":{"id"}},"tenantId","isGroup":false}
//	                                                      201 {"id":"a:…"} (the same id every time);
//	                                                      403 ForbiddenOperationException if never installed;
//	                                                      400 BadArgument without a tenant or for an unknown member
//	POST {serviceUrl}v3/conversations/{id}/activities     201 {"id":"<activity id>"}
//	PUT  {serviceUrl}v3/conversations/{id}/activities/{a} 200 {"id":"<a>"}
//
// {id} is the conversation id or the Graph chat id (BotChatID, "19:<user>_<app>@unq.gbl.spaces"),
// escaped or not. Errors use the Bot Connector envelope {"error":{"code","message"}}: unknown
// conversation 404 ConversationNotFound, unknown activity 404 ActivityNotFound, no type 400
// BadArgument, bad JSON 400 BadSyntax, a body over 28 KB 413 MessageSizeTooBig; a blocked or
// uninstalled user 403 with Teams' nested body {"errorCode":209,"message":"{\r\n  \"subCode\":
// \"MessageWritesBlocked\", …}"}. BotPosted(conversation) lists what was sent and updated
// (PostedActivity: op send/update, activity id, type, text, the JSON as posted, sim time).
//
// Limits (Teams' bot limits, rolling windows of sim time): per conversation 7 per 1 s, 8 per
// 2 s, 60 per 30 s and 1 800 per hour for creates and sends; per app per tenant 30 requests per
// second for every call (SetBotTenantRate; 0 the default, negative off). A request over a limit
// is not performed and answers 429 TooManyRequests with Retry-After in fractional seconds (the
// wait until the window admits it); BotStats counts it in Violations (ConversationViolations,
// TenantViolations) and Throttled. BotStats also counts Created, Sent, Updated, Blocked,
// NotInstalled, Unauthorized, NotFound, BadRequests, Faults (injected, answered in the Bot
// Connector's format; Code MessageWritesBlocked gives the blocked body), Inbound and
// InboundFailed (activities posted to the endpoint, and those not answered 2xx), and the sim
// times of the First and Last accepted call. Route kinds in Stats start with "bot-" and do not
// count as Graph.
//
// Admin API (Options.Admin), for a sim in another process:
//
//	POST   /_sim/bot/register                       {"appId","homeTenant","secret","endpoint"}: RegisterBot
//	POST   /_sim/bot/activities                     {"tenant","user","activity":{…},"sign":{"expired":true,…,
//	                                                "notBefore":"4m"}}: SendBotActivity; answers {"status":n,"body":…},
//	                                                the bot's answer (an invoke response, say)
//	GET    /_sim/bot/conversations?tenant=&user=    {"conversationId","chatId","userId","serviceUrl"}
//	GET    /_sim/bot/conversations/{id}/activities  BotPosted (JSON array)
//	GET    /_sim/bot/stats                          BotStats; DELETE resets them
//	POST   /_sim/bot/block                          {"tenant","user"}: BlockBot
//	PUT    /_sim/bot/tenant-rate                    {"perSecond":n}: SetBotTenantRate
//	POST   /_sim/bot/rotate-keys                    RotateBotKeys
//
// # Faults and stats
//
// The Fault hook and AddFault rules inject 429 (with fractional Retry-After and the Graph
// TooManyRequests body), 5xx, 403, 404 and delays per path. Stats counts requests per route
// kind for benchmarks, and Graph requests per tenant (Stats.GraphByTenant, GraphRequests) for
// "requests per change". With Options.Admin the /_sim/ JSON API (see serveAdmin) drives a sim
// running in another process (cmd/m365sim), including the admin-consent and sign-in script
// (sign-in, signed-in-user, consent-decision, redirect URIs, app permissions,
// group-membership-claims) and mail (sent mail, stats, limits, access policies). The fault
// rules apply to the mail routes as to every Graph route.
package m365sim
