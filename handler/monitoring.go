package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/monitoring"
	"github.com/leapchange/m365/handler/internal/richnotify"
)

// graphSubscriptions is the Graph client's subscriptions in monitoring's plain types.
type graphSubscriptions struct{ *graph.Client }

func (g graphSubscriptions) CreateSubscription(ctx context.Context, tenantID string, s monitoring.SubscriptionRequest) (monitoring.SubscriptionRequest, error) {
	want := graph.Subscription{
		Resource: s.Resource, ChangeType: s.ChangeType, NotificationURL: s.NotificationURL, LifecycleNotificationURL: s.LifecycleURL,
		ClientState: s.ClientState, ExpirationDateTime: s.Expires, IncludeResourceData: s.IncludeResourceData,
		EncryptionCertificate: s.Certificate, EncryptionCertificateID: s.CertificateID,
	}
	got, err := g.Client.CreateSubscription(ctx, tenantID, want)
	if errkind.Of(err) == errkind.Conflict {
		// Graph allows one subscription per app and channel: one we no longer know (its row
		// lost, or made before a crash) holds it. Its clientState is unknown here, so it is
		// replaced.
		existing, lerr := g.Client.Subscriptions(ctx, tenantID)
		if lerr != nil {
			return monitoring.SubscriptionRequest{}, lerr
		}
		for _, e := range existing {
			if strings.EqualFold(strings.TrimPrefix(e.Resource, "/"), strings.TrimPrefix(s.Resource, "/")) {
				if derr := g.Client.DeleteSubscription(ctx, tenantID, e.ID); derr != nil {
					return monitoring.SubscriptionRequest{}, derr
				}
			}
		}
		got, err = g.Client.CreateSubscription(ctx, tenantID, want)
	}
	if err != nil {
		return monitoring.SubscriptionRequest{}, err
	}
	s.ID, s.Expires = got.ID, got.ExpirationDateTime
	return s, nil
}

func (g graphSubscriptions) RenewSubscription(ctx context.Context, tenantID, id string, exp time.Time) (time.Time, error) {
	return g.Client.RenewSubscription(ctx, tenantID, id, exp)
}

// notifyCertificate is the notification certificate as monitoring names it.
type notifyCertificate struct{ c richnotify.Certificate }

func (n notifyCertificate) ID() string        { return n.c.ID }
func (n notifyCertificate) Base64DER() string { return n.c.Base64DER() }

// keyringDecrypter decrypts a notification's encryptedContent JSON.
type keyringDecrypter struct{ k *richnotify.Keyring }

func (d keyringDecrypter) Decrypt(raw json.RawMessage) ([]byte, error) {
	var ec richnotify.EncryptedContent
	if err := json.Unmarshal(raw, &ec); err != nil {
		return nil, richnotify.ErrMalformed
	}
	return d.k.Decrypt(ec)
}

// notifyKeyring is the notification certificates from the settings, or a generated one.
func notifyKeyring(cfg config) (*richnotify.Keyring, error) {
	var current richnotify.Certificate
	var err error
	if strings.TrimSpace(cfg.NotifyCertPEM) == "" {
		current, err = richnotify.Generate(cfg.NotifyCertID, time.Now())
	} else {
		current, err = richnotify.ParsePEM(cfg.NotifyCertID, []byte(cfg.NotifyCertPEM))
	}
	if err != nil {
		return nil, fmt.Errorf("NOTIFY_CERT_PEM: %w", err)
	}
	var older []richnotify.Certificate
	if strings.TrimSpace(cfg.NotifyCertPreviousPEM) != "" {
		prev, err := richnotify.ParsePEM(cfg.NotifyCertPreviousID, []byte(cfg.NotifyCertPreviousPEM))
		if err != nil {
			return nil, fmt.Errorf("NOTIFY_CERT_PREVIOUS_PEM: %w", err)
		}
		older = append(older, prev)
	}
	return richnotify.NewKeyring(current, older...)
}
