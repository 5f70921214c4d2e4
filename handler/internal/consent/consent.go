// Package consent connects an org to its Microsoft 365 tenant through Entra admin consent: it
// builds the v2 admin-consent URL with a signed, single-use, expiring state bound to the org;
// completes the callback by having the admin sign in, proving consent with an app-only token for
// the tenant and reading the granted application permissions; and hands the web app a one-time
// ticket, which binds the tenant to the org only when the web app confirms it for the org that
// started the flow. The callback's query is untrusted: the org comes from the state, the tenant
// from the tokens.
package consent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Permission is one application permission the integration asks for, and what needs it.
type Permission struct {
	Name, NeededFor string
}

// Required lists the least-privilege application permissions of this integration.
var Required = []Permission{
	{"User.Read.All", "stakeholder sync"},
	{"GroupMember.Read.All", "group filter and group sync"},
	{"Mail.Send", "notifications by mail"},
}

// tokens proves consent: an app-only token for a tenant exists only if an admin consented, and
// the sign-in that follows tells who did.
type tokens interface {
	Token(ctx context.Context, tenantID string) (m365auth.AppToken, error)
	AuthorizeURL(tenant, redirectURI, state, nonce string) (string, error)
	RedeemCode(ctx context.Context, tenant, code, redirectURI string) (m365auth.SignIn, error)
}

// accessChecker confirms granted permissions with cheap Graph calls (graph.Client.CheckAccess).
type accessChecker interface {
	CheckAccess(ctx context.Context, tenantID string) (map[string]bool, error)
}

// connections stores connection records.
type connections interface {
	Get(ctx context.Context, org tablestore.Org) (connection.Record, tablestore.ETag, error)
	Put(ctx context.Context, org tablestore.Org, rec connection.Record, etag tablestore.ETag) (tablestore.ETag, error)
	Disconnect(ctx context.Context, org tablestore.Org, now time.Time) error
}

// Config configures a Flow.
type Config struct {
	Store       *tablestore.Store
	Connections connections
	// Tenants is the org↔tenant mapping; default connection.NewTenants(Store, Now).
	Tenants  tenantMap
	Tokens   tokens
	Access   accessChecker // optional: without it the token's roles are taken as they are
	ClientID string
	// AuthorityHost is AZURE_AUTHORITY_HOST ("" = https://login.microsoftonline.com/).
	AuthorityHost string
	PublicBaseURL string // the callback is PublicBaseURL + CallbackPath
	LeapAppURL    string // where the admin is sent back
	Key           []byte // STATE_SIGNING_KEY: at least 32 bytes (New panics on less; the configuration refuses it at start-up)
	StateTTL      time.Duration
	// TicketTTL is how long the web app has to confirm a proven sign-in (default 10 minutes).
	TicketTTL time.Duration
	Now       func() time.Time
	// Sleep waits between proof attempts (consent takes a moment to propagate); tests inject it.
	Sleep  func(ctx context.Context, d time.Duration) error
	Logger *slog.Logger
}

// CallbackPath is where Entra sends the admin back (the ConsentCallback function).
const CallbackPath = "/api/consent/callback"

// statesTable holds pending states and tickets, in each org's partition.
const statesTable = "consentstates"

// tenantMap is the org↔tenant mapping (connection.Tenants).
type tenantMap interface {
	Shared(ctx context.Context, tenant string) (bool, error)
	Binding(ctx context.Context, tenant string) (*connection.Binding, error)
	Claim(ctx context.Context, tenant string, org tablestore.Org, allowShared bool) (bool, error)
	Complete(ctx context.Context, tenant string, org tablestore.Org, allowShared bool) error
	Release(ctx context.Context, tenant string, org tablestore.Org) error
	Forget(ctx context.Context, org tablestore.Org) (int, error)
}

// Flow runs admin consent.
type Flow struct {
	cfg     Config
	sign    states
	states  *tablestore.Table
	tenants tenantMap
}

// New returns a Flow. It does no I/O.
func New(cfg Config) *Flow {
	if cfg.StateTTL <= 0 {
		cfg.StateTTL = 10 * time.Minute
	}
	if cfg.TicketTTL <= 0 {
		cfg.TicketTTL = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = func(ctx context.Context, d time.Duration) error {
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AuthorityHost == "" {
		cfg.AuthorityHost = "https://login.microsoftonline.com/"
	}
	tenants := tenantMap(cfg.Tenants)
	if cfg.Tenants == nil {
		tenants = connection.NewTenants(cfg.Store, cfg.Now)
	}
	return &Flow{cfg: cfg, sign: newStates(cfg.Key), states: cfg.Store.Table(statesTable), tenants: tenants}
}

// pendingState is the server side of a state: it exists until the callback uses it.
type pendingState struct {
	Expires time.Time `json:"expires"`
}

// Begin starts admin consent for org and returns the URL to send the admin to. The org's
// connection shows "pending" unless it is connected already (re-authorizing keeps it working).
func (f *Flow) Begin(ctx context.Context, org tablestore.Org) (consentURL string, expires time.Time, err error) {
	now := f.cfg.Now().UTC()
	state, expires, err := f.issue(ctx, org, claims{Issued: now.Unix()})
	if err != nil {
		return "", time.Time{}, err
	}
	f.dropExpiredStates(ctx, org, now)

	rec, etag, err := f.cfg.Connections.Get(ctx, org)
	if err != nil {
		return "", time.Time{}, err
	}
	if rec.Status != connection.Connected && rec.Status != connection.NeedsReauthorization {
		rec.Status, rec.UpdatedAt = connection.Pending, now
		if _, err := f.cfg.Connections.Put(ctx, org, rec, etag); err != nil {
			return "", time.Time{}, err
		}
	}
	q := url.Values{
		"client_id":    {f.cfg.ClientID},
		"scope":        {m365auth.GraphScope},
		"redirect_uri": {f.redirectURI()},
		"state":        {state},
	}
	// "organizations", never "common": personal accounts cannot grant admin consent.
	return strings.TrimRight(f.cfg.AuthorityHost, "/") + "/organizations/v2.0/adminconsent?" + q.Encode(), expires, nil
}

// issue stores a single-use state for org and returns it signed, with c's other claims.
func (f *Flow) issue(ctx context.Context, org tablestore.Org, c claims) (string, time.Time, error) {
	expires := f.cfg.Now().UTC().Add(f.cfg.StateTTL)
	c.Org, c.Nonce, c.Expires = org.String(), randomToken(), expires.Unix()
	if _, err := f.states.Insert(ctx, org, c.Nonce, pendingState{Expires: expires}); err != nil {
		return "", time.Time{}, fmt.Errorf("consent: save state: %w", err)
	}
	return f.sign.sign(c), expires, nil
}

// dropExpiredStates removes states no callback can use any more, so abandoned attempts do not
// pile up. It is best effort: a failure only leaves rows behind.
func (f *Flow) dropExpiredStates(ctx context.Context, org tablestore.Org, now time.Time) {
	var ops []tablestore.Op
	for row, err := range tablestore.Query[pendingState](ctx, f.states, org, tablestore.QueryOptions{PageSize: 100}) {
		if err != nil || len(ops) == 100 {
			break
		}
		if row.Value.Expires.Before(now) {
			ops = append(ops, tablestore.DeleteOp(row.Key, row.ETag))
		}
	}
	if err := f.states.Batch(ctx, org, ops); err != nil {
		f.cfg.Logger.WarnContext(ctx, "dropping expired consent states", "org", org.String(), "error", err.Error())
	}
}

func (f *Flow) redirectURI() string {
	return strings.TrimRight(f.cfg.PublicBaseURL, "/") + CallbackPath
}

// Outcome is what a completed callback or a confirmation did.
type Outcome struct {
	Org  tablestore.Org
	Next string // where the browser goes next when the flow is not finished (the sign-in)
	// Ticket is the one-time ticket of a proven sign-in, which the web app confirms for Org.
	Ticket    string
	Connected bool
	Reason    string // a stable code when not connected: consent_denied, not_consented, tenant_in_use, …
	Detail    string // what went wrong, as recorded on the connection
	Missing   []string
}

// errorCode accepts the OAuth error codes Entra sends; anything else is reported as "error".
var errorCode = regexp.MustCompile(`^[a-z_]{1,64}$`)

// Complete handles a callback of the connection flow; the query is untrusted. Its first leg is
// Entra's admin-consent redirect: consent granted somewhere in a tenant does not say by whom (an
// app-only token for a tenant exists as soon as anyone ever consented there), so the admin is
// sent on to sign in. The second leg is that sign-in's redirect: the ID token, redeemed with our
// secret, says which tenant the admin belongs to and that they hold a role that can grant admin
// consent; only then is consent proven and permissions read, and the proven sign-in is handed
// to the web app as a one-time ticket (Outcome.Ticket) that Confirm binds.
//
// A bad state is ErrBadState and nothing is written; every failure is recorded on the org's
// connection.
func (f *Flow) Complete(ctx context.Context, q url.Values) (Outcome, error) {
	c, err := f.sign.verify(q.Get("state"), f.cfg.Now())
	if err != nil {
		return Outcome{}, err
	}
	org, err := tablestore.NewOrg(c.Org)
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: org", ErrBadState)
	}
	// Single use: of two callbacks with the same state, one deletes it and the other finds nothing.
	if err := f.states.Delete(ctx, org, c.Nonce, tablestore.ETagAny); err != nil {
		if errors.Is(err, tablestore.ErrNotFound) {
			return Outcome{}, fmt.Errorf("%w: used already", ErrBadState)
		}
		return Outcome{}, err
	}
	// From here on the state is spent: finish and record the outcome even if the admin's
	// browser goes away, or the connection would stay "pending" with nothing to show.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	out, err := f.complete(ctx, org, c, q)
	if err != nil {
		f.cfg.Logger.ErrorContext(ctx, "microsoft 365 connection failed", "org", org.String(), "error", err.Error())
		if rerr := f.record(ctx, org, failure{reason: "the connection could not be completed: " + entra.RedactURLs(err.Error()), hint: hintRetry}); rerr != nil {
			return out, errors.Join(err, rerr)
		}
		out.Reason = "internal"
		return out, nil
	}
	return out, nil
}

func (f *Flow) complete(ctx context.Context, org tablestore.Org, c claims, q url.Values) (Outcome, error) {
	out := Outcome{Org: org}
	// Any error parameter is a failure, even beside admin_consent=True.
	if e := q.Get("error"); e != "" {
		code := e
		if !errorCode.MatchString(code) {
			code = "error"
		}
		out.Reason = "consent_denied"
		what := "Microsoft 365 refused consent"
		if c.signInLeg() {
			out.Reason, what = "signin_failed", "the administrator's sign-in failed"
		}
		detail := what + " (" + code + ")"
		if d := q.Get("error_description"); d != "" {
			detail += ": " + truncate(firstLine(d), 300)
		}
		return out, f.record(ctx, org, failure{reason: detail, hint: hintDenied})
	}
	if !c.signInLeg() {
		return f.consented(ctx, org, c, q.Get("tenant"))
	}
	return f.signedIn(ctx, org, c, q.Get("code"))
}

// consented handles the admin-consent redirect: the tenant it names is only a hint of where to
// send the admin to sign in.
func (f *Flow) consented(ctx context.Context, org tablestore.Org, c claims, tenant string) (Outcome, error) {
	out := Outcome{Org: org}
	// Entra names the tenant by its id; a domain name could not be compared with the ID token's.
	if !m365auth.IsTenantID(tenant) {
		out.Reason = "no_tenant"
		return out, f.record(ctx, org, failure{reason: "the consent callback named no valid tenant", hint: hintDenied})
	}
	next := claims{Issued: c.Issued, Tenant: tenant, OIDCNonce: randomToken()}
	state, _, err := f.issue(ctx, org, next)
	if err != nil {
		return out, err
	}
	// issue filled in the stored nonce; the sign-in needs the OpenID nonce.
	u, err := f.cfg.Tokens.AuthorizeURL(tenant, f.redirectURI(), state, next.OIDCNonce)
	if err != nil {
		return out, err
	}
	out.Next = u
	return out, nil
}

// signedIn handles the sign-in redirect: who signed in, then consent and permissions. It binds
// nothing: the sign-in happened in the admin's browser, which need not belong to anyone in the
// org that started the flow (an org can send its consent link to another tenant's admin). So it
// stores the proven sign-in under a one-time ticket, and the web app, inside the session of a
// signed-in user of that org, confirms it (Confirm).
func (f *Flow) signedIn(ctx context.Context, org tablestore.Org, c claims, code string) (Outcome, error) {
	out := Outcome{Org: org, Reason: "not_consented"}
	if code == "" {
		out.Reason = "signin_failed"
		return out, f.record(ctx, org, failure{reason: "the sign-in answer had no authorization code", hint: hintDenied})
	}
	who, err := f.cfg.Tokens.RedeemCode(ctx, c.Tenant, code, f.redirectURI())
	switch {
	case errkind.Of(err) == errkind.Unavailable:
		out.Reason = "unreachable"
		return out, f.record(ctx, org, failure{reason: "could not reach Microsoft sign-in: " + err.Error(), hint: hintNetwork})
	case err != nil:
		out.Reason = "signin_failed"
		return out, f.record(ctx, org, failure{reason: "the administrator's sign-in could not be verified: " + err.Error(), hint: hintDenied})
	case who.Nonce != c.OIDCNonce:
		out.Reason = "signin_failed"
		return out, f.record(ctx, org, failure{reason: "the sign-in does not belong to this connection attempt", hint: hintDenied})
	case !strings.EqualFold(who.TenantID, c.Tenant):
		// Checked here rather than trusting Entra to refuse another tenant's code at this
		// tenant's endpoint: the tenant that consented is the one whose admin must have signed in.
		out.Reason = "signin_failed"
		return out, f.record(ctx, org, failure{reason: "the administrator signed in to another tenant than the one that consented", hint: hintDenied})
	case !who.IsConsentAdmin():
		out.Reason = "not_admin"
		return out, f.record(ctx, org, failure{reason: "the account that signed in (" + who.Username + ") holds no role that can grant admin consent to Microsoft Graph application permissions", hint: hintDenied})
	}
	tok, err := f.prove(ctx, who.TenantID)
	if err != nil {
		if errkind.Of(err) == errkind.Unavailable {
			out.Reason = "unreachable"
			return out, f.record(ctx, org, failure{reason: "could not reach Microsoft sign-in: " + err.Error(), hint: hintNetwork})
		}
		return out, f.record(ctx, org, failure{reason: "consent could not be proven: " + err.Error(), hint: hintDenied})
	}
	if !strings.EqualFold(tok.TenantID, who.TenantID) {
		return out, f.record(ctx, org, failure{reason: "the app-only token is for another tenant than the administrator's", hint: hintDenied})
	}
	tenant := strings.ToLower(tok.TenantID)
	// Refusals the confirmation would make anyway are told to the admin now, who can act on them;
	// the confirmation decides again, on the state of the moment.
	if fl, reason, err := f.refusal(ctx, org, tenant); err != nil || fl != nil {
		if err != nil {
			return out, err
		}
		out.Reason = reason
		return out, f.record(ctx, org, *fl)
	}
	granted, missing := split(f.confirm(ctx, tenant, tok.Roles))
	ticket := randomTicket()
	p := pendingTicket{
		Expires: f.cfg.Now().UTC().Add(f.cfg.TicketTTL), Issued: c.Issued, Tenant: tenant,
		Granted: granted, Missing: missing, ConnectedBy: who.Username, AdminID: who.ObjectID,
	}
	if _, err := f.states.Insert(ctx, org, ticketKey(ticket), p); err != nil {
		return out, fmt.Errorf("consent: save ticket: %w", err)
	}
	f.cfg.Logger.InfoContext(ctx, "microsoft 365 consent proven; waiting for the web app to confirm", "org", org.String(), "tenant", tenant, "by", who.ObjectID)
	out.Ticket, out.Missing, out.Reason = ticket, missing, ""
	return out, nil
}

// pendingTicket is a proven sign-in waiting for the web app's confirmation. It lives among the
// states (same partition, same expiry sweep) under the hash of its ticket, so the table does
// not hold the ticket itself.
type pendingTicket struct {
	Expires     time.Time `json:"expires"`
	Issued      int64     `json:"issued"` // when the flow began (a later disconnect wins)
	Tenant      string    `json:"tenant"`
	Granted     []string  `json:"granted"`
	Missing     []string  `json:"missing"`
	ConnectedBy string    `json:"connectedBy"`
	AdminID     string    `json:"adminId"`
}

// ErrBadTicket covers every ticket that confirms nothing: malformed, unknown, expired, used
// already, or issued for another org. Callers learn no more than that.
var ErrBadTicket = errors.New("consent: invalid confirmation ticket")

// ticketLen is the length of a ticket: 32 random bytes, base64url without padding.
const ticketLen = 43

func randomTicket() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ticketKey is the row key a ticket is stored under.
func ticketKey(ticket string) string {
	sum := sha256.Sum256([]byte(ticket))
	return "ticket-" + hex.EncodeToString(sum[:])
}

// Confirm completes the flow for org with the ticket the callback handed the web app: it binds
// the tenant of the proven sign-in to org and records the connection. The web app calls it for
// the org of its signed-in user; a ticket issued for another org, expired, used already or
// forged is ErrBadTicket and changes nothing. Refusals decided now (the tenant belongs to
// another org, the org is connected to another tenant, it was disconnected meanwhile) are
// recorded on the connection and returned as an Outcome that is not Connected.
func (f *Flow) Confirm(ctx context.Context, org tablestore.Org, ticket string) (Outcome, error) {
	if len(ticket) != ticketLen {
		return Outcome{}, fmt.Errorf("%w: malformed", ErrBadTicket)
	}
	if _, err := base64.RawURLEncoding.DecodeString(ticket); err != nil {
		return Outcome{}, fmt.Errorf("%w: malformed", ErrBadTicket)
	}
	key := ticketKey(ticket)
	// Looked up in org's own partition: a ticket issued for another org is simply not there.
	p, etag, err := tablestore.Get[pendingTicket](ctx, f.states, org, key)
	if errors.Is(err, tablestore.ErrNotFound) {
		return Outcome{}, fmt.Errorf("%w: unknown, used already or for another org", ErrBadTicket)
	}
	if err != nil {
		return Outcome{}, err
	}
	// Single use: of two confirmations, one deletes the ticket and the other finds it gone.
	if err := f.states.Delete(ctx, org, key, etag); err != nil {
		if errors.Is(err, tablestore.ErrNotFound) || errors.Is(err, tablestore.ErrConflict) {
			return Outcome{}, fmt.Errorf("%w: used already", ErrBadTicket)
		}
		return Outcome{}, err
	}
	if !f.cfg.Now().Before(p.Expires) {
		return Outcome{}, fmt.Errorf("%w: expired", ErrBadTicket)
	}
	// The ticket is spent: finish and record even if the caller goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return f.bind(ctx, org, p)
}

// refusal says why tenant cannot be bound to org right now, or nil.
func (f *Flow) refusal(ctx context.Context, org tablestore.Org, tenant string) (*failure, string, error) {
	cur, _, err := f.cfg.Connections.Get(ctx, org)
	if err != nil {
		return nil, "", err
	}
	if cur.Status != connection.Disconnected && cur.TenantID != "" && !strings.EqualFold(cur.TenantID, tenant) {
		return &failure{reason: "this organization is connected to another Microsoft 365 tenant", hint: hintTenantChanged}, "tenant_changed", nil
	}
	if shared, err := f.tenants.Shared(ctx, tenant); err != nil || shared {
		return nil, "", err
	}
	b, err := f.tenants.Binding(ctx, tenant)
	if err != nil {
		return nil, "", err
	}
	if b != nil && b.Org != org.String() && (b.Connected || f.cfg.Now().UTC().Sub(b.At) <= connection.ClaimGrace) {
		return &failure{reason: "this Microsoft 365 tenant is already connected to another Leap Change organization", hint: hintTenantInUse}, "tenant_in_use", nil
	}
	return nil, "", nil
}

// bind binds the proven sign-in's tenant to org and records the connection.
func (f *Flow) bind(ctx context.Context, org tablestore.Org, p pendingTicket) (Outcome, error) {
	out := Outcome{Org: org}
	tenant := p.Tenant
	fail := func(reason string, fl failure) (Outcome, error) {
		out.Reason, out.Detail = reason, fl.reason
		return out, f.record(ctx, org, fl)
	}
	cur, _, err := f.cfg.Connections.Get(ctx, org)
	if err != nil {
		return out, err
	}
	if cur.Status != connection.Disconnected && cur.TenantID != "" && !strings.EqualFold(cur.TenantID, tenant) {
		return fail("tenant_changed", failure{reason: "this organization is connected to another Microsoft 365 tenant", hint: hintTenantChanged})
	}
	shared, err := f.tenants.Shared(ctx, tenant)
	if err != nil {
		return out, err
	}
	ok, err := f.tenants.Claim(ctx, tenant, org, shared)
	if err != nil {
		return out, err
	}
	if !ok {
		return fail("tenant_in_use", failure{reason: "this Microsoft 365 tenant is already connected to another Leap Change organization", hint: hintTenantInUse})
	}

	now := f.cfg.Now().UTC()
	rec := connection.Record{Status: connection.Connected, TenantID: tenant, Granted: p.Granted, Missing: p.Missing, ConnectedAt: now, UpdatedAt: now, ConnectedBy: p.ConnectedBy}
	if len(p.Missing) > 0 {
		rec.LastError = "permissions not granted: " + strings.Join(p.Missing, ", ")
		rec.ErrorHint = missingHint(p.Missing)
	}
	issued := time.Unix(p.Issued, 0)
	disconnected, changed := false, false
	if err := f.save(ctx, org, func(old connection.Record) connection.Record {
		// Decided on the record as it is written, not as it was read above: a confirmation for
		// another tenant may have completed in between.
		changed = old.Status != connection.Disconnected && old.TenantID != "" && !strings.EqualFold(old.TenantID, tenant)
		// A disconnect after this attempt began wins over it.
		disconnected = old.Status == connection.Disconnected && old.UpdatedAt.After(issued)
		if changed || disconnected {
			return old
		}
		return rec
	}); err != nil {
		return out, err
	}
	switch {
	case changed:
		if err := f.tenants.Release(ctx, tenant, org); err != nil {
			return out, err
		}
		return fail("tenant_changed", failure{reason: "this organization is connected to another Microsoft 365 tenant", hint: hintTenantChanged})
	case disconnected:
		out.Reason, out.Detail = "disconnected", "the organization disconnected Microsoft 365 after this connection attempt began"
		return out, f.tenants.Release(ctx, tenant, org)
	}
	if err := f.tenants.Complete(ctx, tenant, org, shared); errors.Is(err, connection.ErrClaimLost) {
		return out, f.record(ctx, org, failure{reason: "this Microsoft 365 tenant was claimed by another Leap Change organization meanwhile", hint: hintTenantInUse})
	} else if err != nil {
		return out, err
	}
	out.Connected, out.Missing = true, p.Missing
	f.cfg.Logger.InfoContext(ctx, "microsoft 365 connected", "org", org.String(), "tenant", tenant, "by", p.AdminID, "missing", p.Missing)
	return out, nil
}

// prove gets an app-only token for tenant, retrying while a fresh consent propagates.
func (f *Flow) prove(ctx context.Context, tenant string) (m365auth.AppToken, error) {
	var err error
	for attempt, wait := range []time.Duration{0, 2 * time.Second, 4 * time.Second} {
		if attempt > 0 {
			if err := f.cfg.Sleep(ctx, wait); err != nil {
				return m365auth.AppToken{}, err
			}
		}
		var tok m365auth.AppToken
		if tok, err = f.cfg.Tokens.Token(ctx, tenant); err == nil {
			return tok, nil
		}
		var e *errkind.Error
		// Only "app not found in the directory" is what propagation looks like; the rest is final.
		if !errors.As(err, &e) || (e.Code != "AADSTS700016" && e.Kind != errkind.Unavailable) {
			return m365auth.AppToken{}, err
		}
	}
	return m365auth.AppToken{}, err
}

// confirm drops from roles every permission a Graph call refuses; the token claims are a
// diagnostic, the call is the proof. A probe that cannot run leaves the claims as they are.
func (f *Flow) confirm(ctx context.Context, tenant string, roles []string) []string {
	if f.cfg.Access == nil {
		return roles
	}
	access, err := f.cfg.Access.CheckAccess(ctx, tenant)
	if err != nil {
		f.cfg.Logger.WarnContext(ctx, "could not confirm granted permissions; using the token's roles", "tenant", tenant, "error", err.Error())
		return roles
	}
	return slices.DeleteFunc(slices.Clone(roles), func(r string) bool {
		allowed, probed := access[r]
		return probed && !allowed
	})
}

// Disconnect ends org's connection and releases its tenant (connection.Store.Disconnect).
func (f *Flow) Disconnect(ctx context.Context, org tablestore.Org) error {
	return f.cfg.Connections.Disconnect(ctx, org, f.cfg.Now())
}

// Forget drops every tenant binding, claim and link that still names org, wherever a flow left
// one (connection.Tenants.Forget); erasure calls it after Disconnect.
func (f *Flow) Forget(ctx context.Context, org tablestore.Org) (int, error) {
	return f.tenants.Forget(ctx, org)
}

type failure struct{ reason, hint string }

// record stores a failed attempt. A working connection stays connected: a cancelled
// re-authorization must not break it; the error is shown beside it.
func (f *Flow) record(ctx context.Context, org tablestore.Org, fl failure) error {
	f.cfg.Logger.WarnContext(ctx, "microsoft 365 consent failed", "org", org.String(), "reason", fl.reason)
	return f.save(ctx, org, func(old connection.Record) connection.Record {
		if old.Status != connection.Connected && old.Status != connection.NeedsReauthorization {
			old.Status = connection.Failed
		}
		old.LastError, old.ErrorHint, old.UpdatedAt = fl.reason, fl.hint, f.cfg.Now().UTC()
		return old
	})
}

// save applies change to org's record with optimistic concurrency.
func (f *Flow) save(ctx context.Context, org tablestore.Org, change func(connection.Record) connection.Record) error {
	for range 5 {
		old, etag, err := f.cfg.Connections.Get(ctx, org)
		if err != nil {
			return err
		}
		if _, err = f.cfg.Connections.Put(ctx, org, change(old), etag); !errors.Is(err, tablestore.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("consent: connection of %s keeps changing: %w", org, tablestore.ErrConflict)
}

// split sorts granted roles into the required ones granted and the required ones missing;
// roles we do not ask for are ignored.
func split(roles []string) (granted, missing []string) {
	for _, p := range Required {
		if slices.Contains(roles, p.Name) {
			granted = append(granted, p.Name)
		} else {
			missing = append(missing, p.Name)
		}
	}
	return granted, missing
}

// Hints follow the troubleshooting guidance: admin permissions, network access, re-authorize.
const (
	hintDenied        = "Check admin permissions: sign in with a Global Administrator or Privileged Role Administrator account (Application and Cloud Application Administrators cannot grant Microsoft Graph application permissions), approve all requested permissions, then connect again."
	hintNetwork       = "Check network access to login.microsoftonline.com and graph.microsoft.com, then connect again."
	hintTenantInUse   = "Disconnect the tenant from the other Leap Change organization first, or ask Leap Change support to allow sharing it."
	hintTenantChanged = "Disconnect the current Microsoft 365 tenant first, then connect the other one."
	hintRetry         = "Connect again in a minute; if it keeps failing, contact Leap Change support."
)

func missingHint(missing []string) string {
	var needs []string
	for _, p := range Required {
		if slices.Contains(missing, p.Name) {
			needs = append(needs, p.Name+" (for "+p.NeededFor+")")
		}
	}
	return "Check admin permissions: grant " + strings.Join(needs, ", ") + " to the Leap Change app in Entra ID, then re-authorize."
}

func randomToken() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
