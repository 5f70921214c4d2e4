package m365sim

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Subscriptions: Microsoft Graph change notifications (POST/GET/PATCH/DELETE /subscriptions and
// /subscriptions/{id}/reauthorize) for the messages of a team's channel and for /users and
// /groups (subscriptions_directory.go), with the validation handshake, lifetimes, permissions
// and lifecycle events Graph documents. Deliveries are in subscriptions_delivery.go. See
// doc.go, section Change notifications.

const (
	// MaxChannelMessageSubscription is the longest lifetime of a channel-message subscription
	// (4 320 minutes, the subscription resource's table).
	MaxChannelMessageSubscription = 4320 * time.Minute
	// lifecycleRequiredAfter: an expirationDateTime further out needs a lifecycleNotificationUrl.
	lifecycleRequiredAfter = time.Hour
	maxClientState         = 128
	maxCertificateID       = 128
)

// Subscription is a change-notification subscription as the sim holds it.
type Subscription struct {
	ID                       string    `json:"id"`
	TenantID                 string    `json:"tenantId"`
	AppID                    string    `json:"applicationId"`
	Resource                 string    `json:"resource"`   // as sent, e.g. /teams/{t}/channels/{c}/messages or /users
	TeamID                   string    `json:"teamId"`     // channel-message subscriptions only
	ChannelID                string    `json:"channelId"`  // channel-message subscriptions only
	ChangeType               string    `json:"changeType"` // e.g. "created,updated,deleted"
	NotificationURL          string    `json:"notificationUrl"`
	LifecycleNotificationURL string    `json:"lifecycleNotificationUrl,omitempty"`
	ClientState              string    `json:"clientState,omitempty"`
	ExpirationDateTime       time.Time `json:"expirationDateTime"`
	IncludeResourceData      bool      `json:"includeResourceData"`
	EncryptionCertificate    string    `json:"encryptionCertificate,omitempty"` // base64 DER
	EncryptionCertificateID  string    `json:"encryptionCertificateId,omitempty"`
	Created                  time.Time `json:"created"`
	// ReauthorizationRequired is set by a reauthorizationRequired lifecycle event and cleared
	// by POST …/reauthorize or a PATCH of expirationDateTime.
	ReauthorizationRequired bool      `json:"reauthorizationRequired"`
	Reauthorized            time.Time `json:"reauthorized,omitzero"`
}

type subRec struct {
	Subscription
	kind          subKind
	tenant, appID string
	key           *rsa.PublicKey // of the encryption certificate
	certDER       []byte
}

func (s *subRec) wants(changeType string) bool {
	return slices.Contains(strings.Split(s.ChangeType, ","), changeType)
}

// Subscriptions returns a tenant's live subscriptions (every app's), oldest first.
func (s *Server) Subscriptions(tenantID string) []Subscription {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	var out []Subscription
	for _, sub := range s.notify().subs {
		if strings.EqualFold(sub.tenant, tenantID) {
			out = append(out, sub.Subscription)
		}
	}
	slices.SortFunc(out, func(a, b Subscription) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// expireLocked drops the subscriptions whose expirationDateTime has passed (s.mu held), as
// Graph deletes expired subscriptions.
func (s *Server) expireLocked() {
	now := s.now()
	for id, sub := range s.notify().subs {
		if !now.Before(sub.ExpirationDateTime) {
			delete(s.notify().subs, id)
		}
	}
}

// SetNotificationDuplicates makes every later notification be delivered 1+n times (n extra,
// identical POSTs), as Graph may deliver a notification more than once; 0 stops it.
func (s *Server) SetNotificationDuplicates(n int) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notify().dups = max(n, 0)
}

// LifecycleEvents are the lifecycleEvent values FireLifecycle sends.
var LifecycleEvents = []string{"reauthorizationRequired", "subscriptionRemoved", "missed"}

// FireLifecycle sends a lifecycle notification for a subscription to its
// lifecycleNotificationUrl, asynchronously (WaitDeliveries waits for it):
// subscriptionRemoved also removes the subscription; reauthorizationRequired marks it until
// the app reauthorizes it or PATCHes its expiration; missed only notifies.
func (s *Server) FireLifecycle(subscriptionID, event string) error {
	if !slices.Contains(LifecycleEvents, event) {
		return fmt.Errorf("m365sim: lifecycle event %q: want one of %v", event, LifecycleEvents)
	}
	sub, err := s.lockLiveSub(subscriptionID)
	if err != nil {
		return err
	}
	if sub.LifecycleNotificationURL == "" {
		s.mu.Unlock()
		return fmt.Errorf("m365sim: subscription %q has no lifecycleNotificationUrl", subscriptionID)
	}
	switch event {
	case "subscriptionRemoved":
		delete(s.notify().subs, subscriptionID)
	case "reauthorizationRequired":
		sub.ReauthorizationRequired = true
	}
	cp := *sub
	s.mu.Unlock()
	s.postLifecycle(&cp, event)
	return nil
}

// RemoveSubscription drops a subscription as Graph does when it removes one on its side (for
// example after the app lost a permission): it is gone at once, and when it has a
// lifecycleNotificationUrl a subscriptionRemoved notification is sent there (asynchronously).
// Unlike FireLifecycle it works for subscriptions without a lifecycle URL.
func (s *Server) RemoveSubscription(subscriptionID string) error {
	sub, err := s.lockLiveSub(subscriptionID)
	if err != nil {
		return err
	}
	delete(s.notify().subs, subscriptionID)
	s.mu.Unlock()
	s.postLifecycle(sub, "subscriptionRemoved")
	return nil
}

// lockLiveSub locks s.mu and finds a live subscription by id; when there is none it unlocks
// and returns ErrNotFound.
func (s *Server) lockLiveSub(id string) (*subRec, error) {
	s.init()
	s.mu.Lock()
	s.expireLocked()
	sub := s.notify().subs[id]
	if sub == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("subscription %q: %w", id, ErrNotFound)
	}
	return sub, nil
}

// --- Graph routes ------------------------------------------------------------------------------

// subscriptionsRoute routes /subscriptions[…]; ok is false for other paths.
func (s *Server) subscriptionsRoute(r *http.Request, segs []string) (route, bool) {
	if segs[0] != "subscriptions" {
		return route{}, false
	}
	n, m := len(segs), r.Method
	switch {
	case n == 1 && m == http.MethodPost:
		return route{"createSubscription", s.createSubscription}, true
	case n == 1 && m == http.MethodGet:
		return route{"subscriptions", s.subsGraph(s.listSubscriptions)}, true
	case n == 2 && m == http.MethodGet:
		return route{"subscription", s.subsGraph(s.getSubscription)}, true
	case n == 2 && m == http.MethodPatch:
		return route{"renewSubscription", s.subsGraph(s.patchSubscription)}, true
	case n == 2 && m == http.MethodDelete:
		return route{"deleteSubscription", s.subsGraph(s.deleteSubscription)}, true
	case n == 3 && segs[2] == "reauthorize" && m == http.MethodPost:
		return route{"reauthorizeSubscription", s.subsGraph(s.reauthorizeSubscription)}, true
	}
	return route{}, true
}

// subsGraph authenticates a /subscriptions call (any application role; each handler checks
// the resource's permission) and runs h under the state lock.
func (s *Server) subsGraph(h graphHandler) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		s.writeGraph(w, r, s.runGraphDenied(r, allRoles(), subsForbidden(), h))
	}
}

// extensionError is the error envelope Graph's subscription service answers with.
func extensionError(status int, reason, msg string) gresp {
	op := "Create"
	return errResp(status, "ExtensionError", fmt.Sprintf("Operation: %s; Exception: [Status Code: %s; Reason: %s]", op, reason, msg))
}

// subsForbidden is the 403 of a caller without the permission a subscription needs.
func subsForbidden() gresp {
	return extensionError(http.StatusForbidden, "Forbidden", "Missing role permissions on the request.")
}

func subNotFound(id string) gresp {
	return errResp(http.StatusNotFound, "ResourceNotFound", "The object was not found: subscription "+id+".")
}

func invalidSub(msg string) gresp { return errResp(http.StatusBadRequest, "InvalidRequest", msg) }

// subscriptionJSON is the subscription resource as Graph answers it.
type subscriptionJSON struct {
	ODataContext              string  `json:"@odata.context,omitempty"`
	ID                        string  `json:"id"`
	Resource                  string  `json:"resource"`
	ApplicationID             string  `json:"applicationId"`
	ChangeType                string  `json:"changeType"`
	ClientState               *string `json:"clientState"`
	NotificationURL           string  `json:"notificationUrl"`
	NotificationQueryOptions  *string `json:"notificationQueryOptions"`
	LifecycleNotificationURL  *string `json:"lifecycleNotificationUrl"`
	ExpirationDateTime        string  `json:"expirationDateTime"`
	CreatorID                 string  `json:"creatorId"`
	IncludeResourceData       bool    `json:"includeResourceData"`
	LatestSupportedTLSVersion string  `json:"latestSupportedTlsVersion"`
	EncryptionCertificate     *string `json:"encryptionCertificate"`
	EncryptionCertificateID   *string `json:"encryptionCertificateId"`
	NotificationURLAppID      *string `json:"notificationUrlAppId"`
}

func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (sub *subRec) json(base string) subscriptionJSON {
	return subscriptionJSON{ODataContext: base + "/v1.0/$metadata#subscriptions/$entity", ID: sub.ID, Resource: sub.Resource,
		ApplicationID: sub.appID, ChangeType: sub.ChangeType, ClientState: orNull(sub.ClientState), NotificationURL: sub.NotificationURL,
		LifecycleNotificationURL: orNull(sub.LifecycleNotificationURL), ExpirationDateTime: graphTime(sub.ExpirationDateTime),
		CreatorID: spObjectID(sub.tenant, sub.appID), IncludeResourceData: sub.IncludeResourceData, LatestSupportedTLSVersion: "v1_2",
		EncryptionCertificate: orNull(sub.EncryptionCertificate), EncryptionCertificateID: orNull(sub.EncryptionCertificateID)}
}

// subscriptionBody is what POST and PATCH take.
type subscriptionBody struct {
	ChangeType                *string `json:"changeType"`
	NotificationURL           *string `json:"notificationUrl"`
	LifecycleNotificationURL  *string `json:"lifecycleNotificationUrl"`
	Resource                  *string `json:"resource"`
	ExpirationDateTime        *string `json:"expirationDateTime"`
	ClientState               *string `json:"clientState"`
	IncludeResourceData       *bool   `json:"includeResourceData"`
	EncryptionCertificate     *string `json:"encryptionCertificate"`
	EncryptionCertificateID   *string `json:"encryptionCertificateId"`
	LatestSupportedTLSVersion *string `json:"latestSupportedTlsVersion"`
}

func readSubscriptionBody(r *http.Request) (subscriptionBody, *gresp) {
	var b subscriptionBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&b); err != nil {
		return b, new(errResp(http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."))
	}
	return b, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// parseResource reads a channel-messages resource: [/]teams/{t}/channels/{c}/messages, the ids
// also in the teams('…') form. Other resources are not implemented (ok false).
func parseResource(res string) (team, channel string, ok bool) {
	p := strings.TrimPrefix(res, "/")
	if strings.ContainsAny(p, "?$") {
		return "", "", false // $search / $filter on the resource are not implemented
	}
	p = strings.NewReplacer("('", "/", "')", "").Replace(p)
	segs := strings.Split(p, "/")
	if len(segs) != 5 || segs[0] != "teams" || segs[2] != "channels" || segs[4] != "messages" || segs[1] == "" || segs[3] == "" {
		return "", "", false
	}
	ch, err := url.PathUnescape(segs[3])
	if err != nil {
		return "", "", false
	}
	return segs[1], ch, true
}

// checkExpiration applies the lifetime rules of the subscription kind to exp.
func checkExpiration(kind subKind, exp, now time.Time, lifecycleURL string) *gresp {
	after := kind.lifecycleRequiredAfter()
	switch {
	case !exp.After(now):
		return new(invalidSub("Subscription expiration date time must be in the future."))
	case exp.Sub(now) > kind.maxLifetime():
		return new(invalidSub(fmt.Sprintf("Subscription expiration can only be %d minutes in the future.", int(kind.maxLifetime()/time.Minute))))
	case after > 0 && exp.Sub(now) > after && lifecycleURL == "":
		return new(invalidSub("lifecycleNotificationUrl is a required property for subscription creation on this resource when the expirationDateTime value is set to greater than 1 hour."))
	}
	return nil
}

func parseGraphTime(v string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

func validWebhookURL(v string) bool {
	u, err := url.Parse(v)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// createSubscription is POST /subscriptions: the request is checked under the lock, the
// validation handshake runs without it, and the subscription is stored if the endpoints
// answered.
func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request) {
	var pending *subRec
	resp := s.runGraphDenied(r, allRoles(), subsForbidden(), func(r *http.Request, g *gctx) gresp {
		p, e := s.newSubscription(r, g)
		if e != nil {
			return *e
		}
		pending = p
		return gresp{}
	})
	if pending == nil {
		s.writeGraph(w, r, resp)
		return
	}
	for _, u := range []string{pending.NotificationURL, pending.LifecycleNotificationURL} {
		if u == "" {
			continue
		}
		if e := s.handshake(r.Context(), u); e != nil {
			s.writeGraph(w, r, *e)
			return
		}
	}
	s.mu.Lock()
	s.expireLocked()
	if t, err := s.tenantLocked(pending.tenant); err == nil {
		s.dirChangedLocked(t) // earlier changes are not the new subscription's
	}
	n := s.notify()
	for _, o := range n.subs {
		// One subscription per app per channel; Graph allows several to /users or /groups.
		if pending.kind == subChannel && o.kind == subChannel && o.tenant == pending.tenant && o.appID == pending.appID &&
			strings.EqualFold(o.TeamID, pending.TeamID) && o.ChannelID == pending.ChannelID {
			s.mu.Unlock()
			s.writeGraph(w, r, extensionError(http.StatusConflict, "Conflict", "A subscription for this resource already exists for the application: "+o.ID+"."))
			return
		}
	}
	pending.Created = s.now()
	n.subs[pending.ID] = pending
	body := pending.json(baseURL(r))
	s.mu.Unlock()
	resp = jsonResp(body)
	resp.status = http.StatusCreated
	s.writeGraph(w, r, resp)
}

// newSubscription checks a POST /subscriptions body (s.mu held).
func (s *Server) newSubscription(r *http.Request, g *gctx) (*subRec, *gresp) {
	if e := checkQuery(r.URL.Query()); e != nil {
		return nil, e
	}
	b, e := readSubscriptionBody(r)
	if e != nil {
		return nil, e
	}
	sub := &subRec{tenant: g.t.id, appID: strings.ToLower(g.appID)}
	sub.ID, sub.TenantID, sub.AppID = uuid.NewString(), g.t.id, sub.appID
	sub.Resource, sub.ChangeType = deref(b.Resource), strings.ReplaceAll(deref(b.ChangeType), " ", "")
	sub.NotificationURL, sub.LifecycleNotificationURL = deref(b.NotificationURL), deref(b.LifecycleNotificationURL)
	sub.ClientState, sub.IncludeResourceData = deref(b.ClientState), deref(b.IncludeResourceData)
	sub.EncryptionCertificate, sub.EncryptionCertificateID = deref(b.EncryptionCertificate), deref(b.EncryptionCertificateID)
	exp, okExp := parseGraphTime(deref(b.ExpirationDateTime))
	changes := strings.Split(sub.ChangeType, ",")
	switch {
	case sub.Resource == "" || sub.NotificationURL == "" || sub.ChangeType == "" || b.ExpirationDateTime == nil:
		return nil, new(invalidSub("resource, changeType, notificationUrl and expirationDateTime are required."))
	case !okExp:
		return nil, new(invalidSub("expirationDateTime is not a valid date time: " + deref(b.ExpirationDateTime)))
	case slices.ContainsFunc(changes, func(c string) bool { return c != "created" && c != "updated" && c != "deleted" }),
		len(slices.Compact(slices.Sorted(slices.Values(changes)))) != len(changes):
		return nil, new(invalidSub("changeType must be a comma-separated list of created, updated and deleted: " + sub.ChangeType))
	case !validWebhookURL(sub.NotificationURL):
		return nil, new(invalidSub("notificationUrl must be an absolute http(s) URL."))
	case sub.LifecycleNotificationURL != "" && !validWebhookURL(sub.LifecycleNotificationURL):
		return nil, new(invalidSub("lifecycleNotificationUrl must be an absolute http(s) URL."))
	case len(sub.ClientState) > maxClientState:
		return nil, new(invalidSub(fmt.Sprintf("clientState must be at most %d characters.", maxClientState)))
	}
	sub.ExpirationDateTime = exp.UTC()
	if kind, ok := directoryResource(sub.Resource); ok {
		sub.kind = kind
		if e := checkDirSubscription(sub, g, exp); e != nil {
			return nil, e
		}
		return sub, nil
	}
	if e := checkExpiration(subChannel, exp, g.now, sub.LifecycleNotificationURL); e != nil {
		return nil, e
	}
	if sub.IncludeResourceData {
		if sub.EncryptionCertificate == "" || sub.EncryptionCertificateID == "" {
			return nil, new(invalidSub("encryptionCertificate and encryptionCertificateId are required when includeResourceData is true."))
		}
		if len(sub.EncryptionCertificateID) > maxCertificateID {
			return nil, new(invalidSub(fmt.Sprintf("encryptionCertificateId must be at most %d characters.", maxCertificateID)))
		}
		der, err := base64.StdEncoding.DecodeString(sub.EncryptionCertificate)
		var cert *x509.Certificate
		if err == nil {
			cert, err = x509.ParseCertificate(der)
		}
		if err != nil {
			return nil, new(invalidSub("encryptionCertificate is not a base64-encoded X.509 certificate."))
		}
		key, ok := cert.PublicKey.(*rsa.PublicKey)
		if !ok || key.N.BitLen() < 2048 || key.N.BitLen() > 4096 {
			return nil, new(invalidSub("encryptionCertificate must hold an RSA key of 2048 to 4096 bits."))
		}
		sub.key, sub.certDER = key, der
	}
	teamID, channelID, ok := parseResource(sub.Resource)
	if !ok {
		return nil, new(unhandledQuery("subscriptions to resource " + sub.Resource + " are not implemented (only /teams/{id}/channels/{id}/messages, /users and /groups)"))
	}
	tt, _ := s.teamsLocked(g.t.id)
	team := tt.team(teamID)
	if team == nil {
		return nil, new(extensionError(http.StatusNotFound, "NotFound", "No team found with Group Id "+teamID+"."))
	}
	if !s.mayReadMessages(g, team.ID) {
		return nil, new(extensionError(http.StatusForbidden, "Forbidden", fmt.Sprintf("Missing role permissions on the request. API requires one of '%s, %s'. Roles on the request '%s'.",
			permChannelMessagesAll, RSCChannelMessageRead, strings.Join(g.roles, ", "))))
	}
	_, ch, _, err := s.channelLocked(g.t.id, team.ID, channelID)
	if err != nil {
		return nil, new(extensionError(http.StatusNotFound, "NotFound", "Channel not found: "+channelID+"."))
	}
	sub.TeamID, sub.ChannelID = team.ID, ch.ID
	return sub, nil
}

// ownSub reads a /subscriptions/{id}[/…] request, which takes no query options: the caller's
// live subscription named in the path (s.mu held).
func (s *Server) ownSub(r *http.Request, g *gctx) (*subRec, *gresp) {
	if e := checkQuery(r.URL.Query()); e != nil {
		return nil, e
	}
	s.expireLocked()
	id := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1.0/subscriptions/"), "/")[0]
	sub := s.notify().subs[id]
	if sub == nil || sub.tenant != g.t.id || !strings.EqualFold(sub.appID, g.appID) {
		return nil, new(subNotFound(id))
	}
	return sub, nil
}

func (s *Server) listSubscriptions(r *http.Request, g *gctx) gresp {
	if e := checkQuery(r.URL.Query()); e != nil {
		return *e
	}
	s.expireLocked()
	var subs []*subRec
	for _, sub := range s.notify().subs {
		if sub.tenant == g.t.id && strings.EqualFold(sub.appID, g.appID) {
			subs = append(subs, sub)
		}
	}
	slices.SortFunc(subs, func(a, b *subRec) int { return a.Created.Compare(b.Created) })
	out := struct {
		ODataContext string             `json:"@odata.context"`
		Value        []subscriptionJSON `json:"value"`
	}{g.base + "/v1.0/$metadata#subscriptions", []subscriptionJSON{}}
	for _, sub := range subs {
		j := sub.json(g.base)
		j.ODataContext = ""
		out.Value = append(out.Value, j)
	}
	return jsonResp(out)
}

func (s *Server) getSubscription(r *http.Request, g *gctx) gresp {
	sub, e := s.ownSub(r, g)
	if e != nil {
		return *e
	}
	return jsonResp(sub.json(g.base))
}

// patchSubscription is PATCH /subscriptions/{id} {"expirationDateTime"}: renews (and
// reauthorizes) the subscription; 200 with it. Other properties are not implemented.
func (s *Server) patchSubscription(r *http.Request, g *gctx) gresp {
	sub, e := s.ownSub(r, g)
	if e != nil {
		return *e
	}
	b, e := readSubscriptionBody(r)
	if e != nil {
		return *e
	}
	if b.LifecycleNotificationURL != nil {
		return invalidSub("lifecycleNotificationUrl cannot be changed: delete the subscription and create it again.")
	}
	if b.ExpirationDateTime == nil || b.ChangeType != nil || b.NotificationURL != nil || b.Resource != nil || b.IncludeResourceData != nil ||
		b.ClientState != nil || b.EncryptionCertificate != nil || b.EncryptionCertificateID != nil {
		return unhandledQuery("PATCH /subscriptions/{id} is implemented for expirationDateTime only")
	}
	exp, ok := parseGraphTime(*b.ExpirationDateTime)
	if !ok {
		return invalidSub("expirationDateTime is not a valid date time: " + *b.ExpirationDateTime)
	}
	if e := checkExpiration(sub.kind, exp, g.now, sub.LifecycleNotificationURL); e != nil {
		return *e
	}
	if !s.mayKeep(g, sub) {
		return subsForbidden()
	}
	sub.ExpirationDateTime, sub.ReauthorizationRequired, sub.Reauthorized = exp.UTC(), false, g.now
	return jsonResp(sub.json(g.base))
}

func (s *Server) deleteSubscription(r *http.Request, g *gctx) gresp {
	sub, e := s.ownSub(r, g)
	if e != nil {
		return *e
	}
	delete(s.notify().subs, sub.ID)
	return gresp{status: http.StatusNoContent}
}

// reauthorizeSubscription is POST /subscriptions/{id}/reauthorize: 204 when the app still has
// the permission, 403 otherwise.
func (s *Server) reauthorizeSubscription(r *http.Request, g *gctx) gresp {
	sub, e := s.ownSub(r, g)
	if e != nil {
		return *e
	}
	if !s.mayKeep(g, sub) {
		return subsForbidden()
	}
	sub.ReauthorizationRequired, sub.Reauthorized = false, g.now
	return gresp{status: http.StatusNoContent}
}

// --- validation handshake ----------------------------------------------------------------------

// handshakeTimeout is how long an endpoint has to answer the validation request.
const handshakeTimeout = 10 * time.Second

// handshake validates a notification or lifecycle URL as Graph does: POST
// {url}?validationToken=<token> (text/plain); the answer must be 200 with the decoded token as
// its body, within 10 s.
func (s *Server) handshake(ctx context.Context, endpoint string) *gresp {
	token := "Validation: Testing client application reachability for subscription Request-Id: " + uuid.NewString()
	u, _ := url.Parse(endpoint)
	q := u.Query()
	q.Set("validationToken", token)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, s.webhookOptions().HandshakeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), http.NoBody)
	if err != nil {
		return new(invalidSub("Invalid notification URL: " + err.Error()))
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := s.webhookClient().Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return new(invalidSub("Subscription validation request timed out."))
		}
		return new(errResp(http.StatusBadRequest, "ValidationError", "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case err != nil && ctx.Err() != nil:
		return new(invalidSub("Subscription validation request timed out."))
	case resp.StatusCode != http.StatusOK:
		return new(errResp(http.StatusBadRequest, "ValidationError", "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."))
	case string(body) != token:
		return new(errResp(http.StatusBadRequest, "ValidationError", "Subscription validation request failed. Response must exactly match validationToken query parameter."))
	}
	return nil
}
