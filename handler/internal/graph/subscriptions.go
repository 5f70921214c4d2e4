package graph

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/models"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// Change-notification subscriptions (POST/PATCH/DELETE /subscriptions, POST
// /subscriptions/{id}/reauthorize) for the messages of a Teams channel. Permissions
// (application): ChannelMessage.Read.All, or the resource-specific consent permission
// ChannelMessage.Read.Group granted in the team when the Teams app is installed there; a
// missing one is an errkind.Forbidden error.
//
// Graph validates notificationUrl and lifecycleNotificationUrl while it creates a subscription
// (a POST ?validationToken=… each must answer within 10 s with the decoded token as text/plain):
// an endpoint that does not is an errkind.Invalid error naming the validation failure.

// MaxChannelMessageLifetime is the longest a channel-message subscription may live (4 320
// minutes); beyond LifecycleRequiredAfter, a LifecycleNotificationURL is required.
const (
	MaxChannelMessageLifetime = 4320 * time.Minute
	LifecycleRequiredAfter    = time.Hour
)

// Subscription is a change-notification subscription.
type Subscription struct {
	ID                       string    // set by Graph
	Resource                 string    // e.g. /teams/{id}/channels/{id}/messages
	ChangeType               string    // e.g. "created,updated,deleted"
	NotificationURL          string    // its query parameters come back on every delivery
	LifecycleNotificationURL string    // required when ExpirationDateTime is more than an hour out
	ClientState              string    // a secret of at most 128 characters, sent back with each notification
	ExpirationDateTime       time.Time // at most MaxChannelMessageLifetime from now
	IncludeResourceData      bool      // rich notifications: needs both encryption fields
	EncryptionCertificate    string    // base64 DER of our public certificate
	EncryptionCertificateID  string    // names the certificate (rotation), at most 128 characters
}

// ChannelMessagesResource is the subscription resource of a channel's messages and replies.
func ChannelMessagesResource(teamID, channelID string) string {
	return "/teams/" + teamID + "/channels/" + channelID + "/messages"
}

// CreateSubscription creates a subscription and returns it as Graph stored it (its ID and
// expiration set). It is not retried after a server failure (Graph may have created it): a
// second subscription to the same resource by the same app is an errkind.Conflict error,
// which a caller recreating one can resolve by listing or deleting the old one.
func (c *Client) CreateSubscription(ctx context.Context, tenantID string, s Subscription) (Subscription, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return Subscription{}, err
	}
	body := models.NewSubscription()
	body.SetResource(&s.Resource)
	body.SetChangeType(&s.ChangeType)
	body.SetNotificationUrl(&s.NotificationURL)
	if s.LifecycleNotificationURL != "" {
		body.SetLifecycleNotificationUrl(&s.LifecycleNotificationURL)
	}
	if s.ClientState != "" {
		body.SetClientState(&s.ClientState)
	}
	exp := s.ExpirationDateTime.UTC()
	body.SetExpirationDateTime(&exp)
	if s.IncludeResourceData {
		body.SetIncludeResourceData(&s.IncludeResourceData)
		body.SetEncryptionCertificate(&s.EncryptionCertificate)
		body.SetEncryptionCertificateId(&s.EncryptionCertificateID)
	}
	got, err := gc.Subscriptions().Post(ctx, body, nil)
	if err != nil {
		return Subscription{}, subscriptionError("subscriptions", err)
	}
	out := s
	out.ID = deref(got.GetId())
	if e := got.GetExpirationDateTime(); e != nil {
		out.ExpirationDateTime = e.UTC()
	}
	if out.ID == "" {
		return Subscription{}, &errkind.Error{Kind: errkind.Other, Message: "subscriptions: no id in the answer"}
	}
	return out, nil
}

// RenewSubscription moves a subscription's expiration to exp (PATCH expirationDateTime, which
// also reauthorizes it) and returns the expiration Graph set. A subscription that is gone
// (expired, removed) is an errkind.NotFound error: create it again.
func (c *Client) RenewSubscription(ctx context.Context, tenantID, id string, exp time.Time) (time.Time, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return time.Time{}, err
	}
	body := models.NewSubscription()
	exp = exp.UTC()
	body.SetExpirationDateTime(&exp)
	got, err := gc.Subscriptions().BySubscriptionId(id).Patch(ctx, body, nil)
	if err != nil {
		return time.Time{}, subscriptionError("subscriptions/"+id, err)
	}
	if e := got.GetExpirationDateTime(); e != nil {
		return e.UTC(), nil
	}
	return exp, nil
}

// ReauthorizeSubscription answers a reauthorizationRequired lifecycle event
// (POST /subscriptions/{id}/reauthorize). A subscription that is gone is errkind.NotFound; a
// permission withdrawn is errkind.Forbidden.
func (c *Client) ReauthorizeSubscription(ctx context.Context, tenantID, id string) error {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return err
	}
	if err := gc.Subscriptions().BySubscriptionId(id).Reauthorize().Post(ctx, nil); err != nil {
		return subscriptionError("subscriptions/"+id+"/reauthorize", err)
	}
	return nil
}

// DeleteSubscription deletes a subscription; one that is already gone is not an error.
func (c *Client) DeleteSubscription(ctx context.Context, tenantID, id string) error {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return err
	}
	err = gc.Subscriptions().BySubscriptionId(id).Delete(ctx, nil)
	if err == nil {
		return nil
	}
	err = subscriptionError("subscriptions/"+id, err)
	if errkind.Of(err) == errkind.NotFound {
		return nil
	}
	return err
}

// Subscriptions lists the app's subscriptions in the tenant (GET /subscriptions, every page),
// e.g. to find the one a Conflict names or to clean up ones no longer wanted. Graph may leave
// ClientState empty in list answers.
func (c *Client) Subscriptions(ctx context.Context, tenantID string) ([]Subscription, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return nil, err
	}
	builder := gc.Subscriptions()
	var out []Subscription
	for range 10000 {
		page, err := builder.Get(ctx, nil)
		if err != nil {
			return nil, subscriptionError("subscriptions", err)
		}
		for _, s := range page.GetValue() {
			sub := Subscription{ID: deref(s.GetId()), Resource: deref(s.GetResource()), ChangeType: deref(s.GetChangeType()),
				NotificationURL: deref(s.GetNotificationUrl()), LifecycleNotificationURL: deref(s.GetLifecycleNotificationUrl()),
				ClientState: deref(s.GetClientState()), IncludeResourceData: s.GetIncludeResourceData() != nil && *s.GetIncludeResourceData(),
				EncryptionCertificate: deref(s.GetEncryptionCertificate()), EncryptionCertificateID: deref(s.GetEncryptionCertificateId())}
			if e := s.GetExpirationDateTime(); e != nil {
				sub.ExpirationDateTime = e.UTC()
			}
			out = append(out, sub)
		}
		next := deref(page.GetOdataNextLink())
		if next == "" {
			return out, nil
		}
		builder = builder.WithUrl(next)
	}
	return nil, &errkind.Error{Kind: errkind.Other, Message: "subscriptions: paging never ended"}
}

// subscriptionError classifies a /subscriptions failure; a 409 (the app has a subscription to
// the resource already) is a Conflict.
func subscriptionError(op string, err error) error {
	cerr := classify(op, err)
	var e *errkind.Error
	if errors.As(cerr, &e) && e.Status == http.StatusConflict && e.Kind == errkind.Other {
		c := *e
		c.Kind = errkind.Conflict
		return &c
	}
	return cerr
}
