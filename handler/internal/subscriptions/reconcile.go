package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Request is a Graph subscription as we ask for it (plain data; the Graph client's adapter
// converts it).
type Request struct {
	ID, Resource, ChangeType      string
	NotificationURL, LifecycleURL string
	ClientState                   string
	Expires                       time.Time
	IncludeResourceData           bool
	Certificate, CertificateID    string
}

// GraphAPI is the part of Graph a reconcile needs.
type GraphAPI interface {
	CreateSubscription(ctx context.Context, tenantID string, s Request) (Request, error)
	RenewSubscription(ctx context.Context, tenantID, id string, exp time.Time) (time.Time, error)
	ReauthorizeSubscription(ctx context.Context, tenantID, id string) error
	DeleteSubscription(ctx context.Context, tenantID, id string) error
}

// certificate is our notification encryption certificate (nil: no rich notifications).
type certificate interface {
	ID() string
	Base64DER() string
}

// Want is one subscription an owner (channel monitoring, real-time sync) wants an org to have.
type Want struct {
	Purpose    string
	Resource   string
	ChangeType string
	// Lifetime is what we ask Graph for; Graph's maximum differs per resource.
	Lifetime time.Duration
	// RichData asks for encrypted resource data (only when a certificate is configured).
	RichData          bool
	TeamID, ChannelID string
}

// Report says what a reconcile did.
type Report struct {
	Created   int `json:"created"`
	Renewed   int `json:"renewed"`
	Recreated int `json:"recreated"`
	Deleted   int `json:"deleted"`
	Failed    int `json:"failed"`
}

// Add sums two reports.
func (r *Report) Add(o Report) {
	r.Created += o.Created
	r.Renewed += o.Renewed
	r.Recreated += o.Recreated
	r.Deleted += o.Deleted
	r.Failed += o.Failed
}

// Hooks let an owner act on what a reconcile finds.
type Hooks struct {
	// Recreated runs after a subscription Graph had lost was made again; since is from when
	// notifications may have been missed. Its error is logged, not returned: the subscription
	// stands.
	Recreated func(ctx context.Context, w Want, since time.Time) error
	// Failed records a failure where the admin sees it; id is "" when the subscription does not
	// exist yet. The reconciler has recorded it on the subscription already when id is set.
	Failed func(ctx context.Context, id, msg string)
}

// ReconcilerConfig wires a Reconciler.
type ReconcilerConfig struct {
	Store       *Store
	States      ClientStates
	Graph       GraphAPI
	Certificate certificate // optional
	// PublicBaseURL is where Graph reaches our webhooks.
	PublicBaseURL string
	// Forget drops a subscription from the webhook's cache once it changed here.
	Forget func(org tablestore.Org, id string)
	Logger *slog.Logger
	Now    func() time.Time
}

// Reconciler makes an org's subscriptions of some purposes what their owner wants: created,
// renewed before expiry, recreated when Graph lost them, deleted when no longer wanted. Channel
// monitoring and real-time sync share it, and with it the store, the clientState scheme and the
// webhook.
type Reconciler struct {
	cfg ReconcilerConfig
	log *slog.Logger
}

// NewReconciler returns a Reconciler. It does no I/O.
func NewReconciler(cfg ReconcilerConfig) *Reconciler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Forget == nil {
		cfg.Forget = func(tablestore.Org, string) {}
	}
	return &Reconciler{cfg: cfg, log: cfg.Logger}
}

// Store is the subscription store the reconciler writes.
func (r *Reconciler) Store() *Store { return r.cfg.Store }

// Forget drops a subscription from the webhook's cache.
func (r *Reconciler) Forget(org tablestore.Org, id string) { r.cfg.Forget(org, id) }

// renewBefore is how long before expiry a subscription is renewed: a day, or a third of a short
// lifetime (the renewer runs every 10 minutes).
func renewBefore(lifetime time.Duration) time.Duration { return min(24*time.Hour, lifetime/3) }

func wantKey(purpose, resource string) string {
	return purpose + "\x00" + strings.ToLower(strings.TrimPrefix(resource, "/"))
}

// Reconcile makes the org's subscriptions of purposes match want, all in tenant. A subscription
// that fails is recorded on it (and through h.Failed) and counted; the others go on; the error
// then says how many failed.
func (r *Reconciler) Reconcile(ctx context.Context, org tablestore.Org, tenant string, purposes []string, want []Want, h Hooks) (Report, error) {
	var rep Report
	owned := map[string]bool{}
	for _, p := range purposes {
		owned[p] = true
	}
	wanted := map[string]Want{}
	for _, w := range want {
		wanted[wantKey(w.Purpose, w.Resource)] = w
	}
	now := r.cfg.Now().UTC()
	have := map[string]bool{}
	for sub, err := range r.cfg.Store.List(ctx, org) {
		if err != nil {
			return rep, err
		}
		if !owned[sub.Purpose] {
			continue
		}
		k := wantKey(sub.Purpose, sub.Resource)
		w, ok := wanted[k]
		if !ok || sub.Tenant != tenant || have[k] {
			if err := r.remove(ctx, org, sub); err != nil {
				r.failed(ctx, org, sub.ID, "deleting", err, &rep, h)
				continue
			}
			rep.Deleted++
			continue
		}
		have[k] = true
		if sub.Expires.Sub(now) > renewBefore(w.Lifetime) {
			continue
		}
		exp, err := r.cfg.Graph.RenewSubscription(ctx, sub.Tenant, sub.ID, now.Add(w.Lifetime))
		switch {
		case err == nil:
			rep.Renewed++
			if err := r.cfg.Store.Update(ctx, org, sub.ID, func(s *Sub) { s.Expires, s.RenewedAt, s.LastError = exp, now, "" }); err != nil {
				return rep, err
			}
			r.cfg.Forget(org, sub.ID)
		case errkind.Of(err) == errkind.NotFound:
			// Gone at Graph (expired, or removed): make it again, and let the owner catch up.
			if err := r.cfg.Store.Delete(ctx, org, sub.ID); err != nil {
				return rep, err
			}
			r.cfg.Forget(org, sub.ID)
			if _, err := r.Create(ctx, org, tenant, w); err != nil {
				r.failed(ctx, org, "", "recreating", err, &rep, h)
				continue
			}
			rep.Recreated++
			if h.Recreated != nil {
				if err := h.Recreated(ctx, w, later(sub.LastNotification, sub.CreatedAt)); err != nil {
					r.log.WarnContext(ctx, "subscriptions: catching up after a recreate", "org", org.String(), "purpose", w.Purpose, "error", err.Error())
				}
			}
		default:
			r.failed(ctx, org, sub.ID, "renewing", err, &rep, h)
		}
	}
	for k, w := range wanted {
		if have[k] {
			continue
		}
		if _, err := r.Create(ctx, org, tenant, w); err != nil {
			r.failed(ctx, org, "", "creating", err, &rep, h)
			continue
		}
		rep.Created++
	}
	if rep.Failed > 0 {
		return rep, fmt.Errorf("subscriptions: %d subscription(s) of %s failed (recorded on the status)", rep.Failed, org)
	}
	return rep, nil
}

// remove deletes a subscription at Graph (already gone is fine) and here.
func (r *Reconciler) remove(ctx context.Context, org tablestore.Org, sub Sub) error {
	switch err := r.cfg.Graph.DeleteSubscription(ctx, sub.Tenant, sub.ID); errkind.Of(err) {
	case errkind.Other:
		if err != nil {
			return err
		}
	case errkind.NotFound:
	case errkind.Unauthorized, errkind.Forbidden:
		// The tenant no longer lets us in (disconnected, consent revoked): the subscription
		// cannot be removed, it expires at Graph, and its notifications find no row here.
		r.log.WarnContext(ctx, "subscriptions: forgetting a subscription the tenant no longer lets us delete", "org", org.String(), "subscription", sub.ID)
	default:
		return err
	}
	if err := r.cfg.Store.Delete(ctx, org, sub.ID); err != nil {
		return err
	}
	r.cfg.Forget(org, sub.ID)
	return nil
}

// Forsake forgets a subscription Graph says it removed (lifecycle subscriptionRemoved); the
// owner's next reconcile makes a new one.
func (r *Reconciler) Forsake(ctx context.Context, org tablestore.Org, id string) error {
	if err := r.cfg.Store.Delete(ctx, org, id); err != nil {
		return err
	}
	r.cfg.Forget(org, id)
	return nil
}

// Reauthorize answers a reauthorizationRequired lifecycle event. A subscription Graph no longer
// has is errkind.NotFound: the owner reconciles.
func (r *Reconciler) Reauthorize(ctx context.Context, sub Sub) error {
	return r.cfg.Graph.ReauthorizeSubscription(ctx, sub.Tenant, sub.ID)
}

// RecordLifecycle notes a lifecycle event on the subscription (gone already is fine).
func (r *Reconciler) RecordLifecycle(ctx context.Context, org tablestore.Org, id, what string) error {
	now := r.cfg.Now().UTC()
	err := r.cfg.Store.Update(ctx, org, id, func(s *Sub) { s.LastLifecycle, s.LastLifecycleAt = what, now })
	if errors.Is(err, errkind.NotFound) {
		return nil
	}
	return err
}

func (r *Reconciler) failed(ctx context.Context, org tablestore.Org, id, doing string, err error, rep *Report, h Hooks) {
	rep.Failed++
	msg := doing + ": " + err.Error()
	r.log.WarnContext(ctx, "subscriptions: a subscription failed", "org", org.String(), "subscription", id, "error", msg)
	if id != "" {
		_ = r.cfg.Store.Update(ctx, org, id, func(s *Sub) { s.LastError, s.LastErrorAt = msg, r.cfg.Now().UTC() })
	}
	if h.Failed != nil {
		h.Failed(ctx, id, msg)
	}
}

// Create subscribes at Graph and records the subscription.
func (r *Reconciler) Create(ctx context.Context, org tablestore.Org, tenant string, w Want) (Sub, error) {
	now := r.cfg.Now().UTC()
	nonce := NewNonce()
	q := "?org=" + url.QueryEscape(org.String())
	base := strings.TrimRight(r.cfg.PublicBaseURL, "/")
	req := Request{
		Resource: w.Resource, ChangeType: w.ChangeType,
		NotificationURL: base + "/api/graph/notifications" + q, LifecycleURL: base + "/api/graph/lifecycle" + q,
		ClientState: r.cfg.States.For(org, nonce), Expires: now.Add(w.Lifetime),
	}
	if w.RichData && r.cfg.Certificate != nil {
		req.IncludeResourceData, req.Certificate, req.CertificateID = true, r.cfg.Certificate.Base64DER(), r.cfg.Certificate.ID()
	}
	// The row exists right after Graph's answer (only the answer tells the id the webhook looks
	// up); the webhook's negative cache is short, so a first notification racing it is retried.
	got, err := r.cfg.Graph.CreateSubscription(ctx, tenant, req)
	if err != nil {
		return Sub{}, err
	}
	sub := Sub{ID: got.ID, Tenant: tenant, Purpose: w.Purpose, TeamID: w.TeamID, ChannelID: w.ChannelID,
		Resource: req.Resource, ChangeType: req.ChangeType, Nonce: nonce, Expires: got.Expires, RichData: req.IncludeResourceData,
		CertificateID: req.CertificateID, CreatedAt: now}
	if err := r.cfg.Store.Put(ctx, org, sub); err != nil {
		// Not recorded: its notifications would be dropped. Remove it at Graph.
		_ = r.cfg.Graph.DeleteSubscription(ctx, tenant, got.ID)
		return Sub{}, err
	}
	r.cfg.Forget(org, sub.ID)
	return sub, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Owner is one user of subscriptions the renewer looks after.
type Owner interface {
	// Orgs lists the orgs the owner may want subscriptions for.
	Orgs(ctx context.Context) ([]tablestore.Org, error)
	// Reconcile makes one org's subscriptions of the owner's purposes right.
	Reconcile(ctx context.Context, org tablestore.Org) (Report, error)
}

// RenewAll is the SubscriptionRenewer: every owner reconciles every org that has its settings or
// any subscription. One org's failure is logged (the owner records it for the admin) and does
// not stop the others; the error is for listing the orgs.
func RenewAll(ctx context.Context, store *Store, log *slog.Logger, owners ...Owner) (Report, error) {
	var total Report
	seen := map[string]bool{}
	var orgs []tablestore.Org
	lists := []func(context.Context) ([]tablestore.Org, error){store.Orgs}
	for _, o := range owners {
		lists = append(lists, o.Orgs)
	}
	for _, list := range lists {
		got, err := list(ctx)
		if err != nil {
			return total, err
		}
		for _, o := range got {
			if !seen[o.String()] {
				seen[o.String()] = true
				orgs = append(orgs, o)
			}
		}
	}
	for _, org := range orgs {
		for _, o := range owners {
			rep, err := o.Reconcile(ctx, org)
			total.Add(rep)
			if err != nil && log != nil {
				log.WarnContext(ctx, "subscriptions: reconciling an org", "org", org.String(), "owner", fmt.Sprintf("%T", o), "error", err.Error())
			}
		}
	}
	return total, nil
}
