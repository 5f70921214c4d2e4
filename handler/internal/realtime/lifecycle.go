package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/webhook"
)

// HandleEvent is the ChannelEventWorker's share of user and group subscriptions: their
// lifecycle events (their change notifications never reach the queue: the webhook marks the org
// at once). reauthorizationRequired reauthorizes the subscription; subscriptionRemoved forgets it,
// makes a new one and marks the org for a resync round; missed marks the org for a resync round
// (the delta round reads whatever the lost notifications were about).
func (s *Sync) HandleEvent(ctx context.Context, body []byte) error {
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return fmt.Errorf("realtime: not an event: %w: %w", errkind.Invalid, err)
	}
	org, err := tablestore.NewOrg(ev.Org)
	if err != nil {
		return fmt.Errorf("realtime: the event names no org: %w", errkind.Invalid)
	}
	var n struct {
		SubscriptionID string `json:"subscriptionId"`
		LifecycleEvent string `json:"lifecycleEvent"`
	}
	if err := json.Unmarshal(ev.Notification, &n); err != nil {
		return fmt.Errorf("realtime: not a notification: %w: %w", errkind.Invalid, err)
	}
	if !ev.Lifecycle {
		return s.Notified(ctx, org) // a change notification that came through the queue after all
	}
	subs := s.cfg.Subscriptions.Store()
	sub, _, err := subs.Get(ctx, org, n.SubscriptionID)
	if errors.Is(err, errkind.NotFound) {
		return nil // deleted since (real-time sync turned off)
	}
	if err != nil {
		return err
	}
	switch n.LifecycleEvent {
	case "reauthorizationRequired":
		err := s.cfg.Subscriptions.Reauthorize(ctx, sub)
		switch errkind.Of(err) {
		case errkind.Other:
			if err != nil {
				return err
			}
		case errkind.NotFound:
			if _, err := s.Reconcile(ctx, org); err != nil {
				s.log.WarnContext(ctx, "realtime: reconciling after a lost subscription", "org", org.String(), "error", err.Error())
			}
		case errkind.Unauthorized, errkind.Forbidden:
			// The tenant refuses us: the connection's status says so; notifications wait.
			s.log.WarnContext(ctx, "realtime: reauthorizing a subscription was refused", "org", org.String(), "error", err.Error())
		default:
			return err
		}
	case "subscriptionRemoved":
		if err := s.cfg.Subscriptions.Forsake(ctx, org, sub.ID); err != nil {
			return err
		}
		if _, err := s.Reconcile(ctx, org); err != nil {
			s.log.WarnContext(ctx, "realtime: recreating a removed subscription", "org", org.String(), "error", err.Error())
		}
		_, err := s.mark(ctx, org, true)
		return err
	case "missed":
		if _, err := s.mark(ctx, org, true); err != nil {
			return err
		}
	default:
		s.log.InfoContext(ctx, "realtime: an unknown lifecycle event", "org", org.String(), "event", n.LifecycleEvent)
	}
	return s.cfg.Subscriptions.RecordLifecycle(ctx, org, sub.ID, n.LifecycleEvent)
}
