package monitoring

import (
	"context"
	"errors"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// LifecycleRecord is a lifecycle event Graph sent.
type LifecycleRecord struct {
	Event        string    `json:"event"`
	Subscription string    `json:"subscription"`
	At           time.Time `json:"at"`
}

// Status is what the admin sees of monitoring beside the settings.
type Status struct {
	LastError     string            `json:"lastError,omitempty"`
	LastErrorAt   time.Time         `json:"lastErrorAt,omitzero"`
	Lifecycle     []LifecycleRecord `json:"lifecycle"` // the latest, newest first
	CaughtUp      int               `json:"caughtUpMessages"`
	LastCatchUpAt time.Time         `json:"lastCatchUpAt,omitzero"`
}

const maxLifecycle = 20

func (s *Status) addLifecycle(r LifecycleRecord) {
	s.Lifecycle = append([]LifecycleRecord{r}, s.Lifecycle...)
	if len(s.Lifecycle) > maxLifecycle {
		s.Lifecycle = s.Lifecycle[:maxLifecycle]
	}
}

const statusKey = "status"

// setStatus changes the org's status row.
func (m *Monitor) setStatus(ctx context.Context, org tablestore.Org, change func(*Status)) error {
	t := m.cfg.Settings.t
	for range 5 {
		st, etag, err := tablestore.Get[Status](ctx, t, org, statusKey)
		if err != nil && !errors.Is(err, errkind.NotFound) {
			return err
		}
		change(&st)
		_, err = t.Save(ctx, org, statusKey, st, etag)
		if !errors.Is(err, errkind.Conflict) {
			return err
		}
	}
	return errkind.Conflict
}

// View is GET /teams/monitoring: the settings, the subscriptions' health and the status.
type View struct {
	Settings
	Subscriptions []SubscriptionView `json:"subscriptions"`
	Status        Status             `json:"status"`
}

// SubscriptionView is one subscription's health.
type SubscriptionView struct {
	ID               string    `json:"id"`
	TeamID           string    `json:"teamId"`
	ChannelID        string    `json:"channelId"`
	Expires          time.Time `json:"expires"`
	RichData         bool      `json:"richData"`
	LastNotification time.Time `json:"lastNotification,omitzero"`
	LastLifecycle    string    `json:"lastLifecycle,omitempty"`
	LastLifecycleAt  time.Time `json:"lastLifecycleAt,omitzero"`
	LastError        string    `json:"lastError,omitempty"`
	Healthy          bool      `json:"healthy"`
}

// View returns the org's monitoring as the admin sees it.
func (m *Monitor) View(ctx context.Context, org tablestore.Org) (View, tablestore.ETag, error) {
	s, etag, err := m.cfg.Settings.Get(ctx, org)
	if err != nil {
		return View{}, "", err
	}
	v := View{Settings: s, Subscriptions: []SubscriptionView{}}
	now := m.cfg.Now()
	for sub, err := range m.subs.List(ctx, org) {
		if err != nil {
			return View{}, "", err
		}
		if sub.Purpose != subscriptions.ChannelMessages {
			continue
		}
		v.Subscriptions = append(v.Subscriptions, SubscriptionView{ID: sub.ID, TeamID: sub.TeamID, ChannelID: sub.ChannelID, Expires: sub.Expires,
			RichData: sub.RichData, LastNotification: sub.LastNotification, LastLifecycle: sub.LastLifecycle, LastLifecycleAt: sub.LastLifecycleAt,
			LastError: sub.LastError, Healthy: sub.LastError == "" && sub.Expires.After(now)})
	}
	st, _, err := tablestore.Get[Status](ctx, m.cfg.Settings.t, org, statusKey)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return View{}, "", err
	}
	if st.Lifecycle == nil {
		st.Lifecycle = []LifecycleRecord{}
	}
	v.Status = st
	return v, etag, nil
}
