package realtime

import (
	"context"
	"errors"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Status is real-time sync as GET /m365/status shows it.
type Status struct {
	Enabled bool `json:"enabled"`
	// Healthy: every subscription real-time sync needs exists, is unexpired and has no error.
	Healthy          bool                 `json:"healthy"`
	Subscriptions    []SubscriptionHealth `json:"subscriptions"`
	LastNotification *time.Time           `json:"lastNotification,omitempty"`
	// Pending: notifications wait for a round (since PendingSince; Waiting says why, if known).
	Pending      bool       `json:"pending"`
	PendingSince *time.Time `json:"pendingSince,omitempty"`
	NextRoundAt  *time.Time `json:"nextRoundAt,omitempty"`
	Waiting      string     `json:"waiting,omitempty"`
	LastRunID    string     `json:"lastRunId,omitempty"`
	LastError    string     `json:"lastError,omitempty"`
}

// SubscriptionHealth is one user or group subscription.
type SubscriptionHealth struct {
	Resource        string     `json:"resource"`
	Expires         time.Time  `json:"expires"`
	LastLifecycle   string     `json:"lastLifecycle,omitempty"`
	LastLifecycleAt *time.Time `json:"lastLifecycleAt,omitempty"`
	LastError       string     `json:"lastError,omitempty"`
	Healthy         bool       `json:"healthy"`
}

// Status reads the org's real-time status.
func (s *Sync) Status(ctx context.Context, org tablestore.Org) (Status, error) {
	set, _, err := s.cfg.Settings.Get(ctx, org)
	if err != nil {
		return Status{}, err
	}
	out := Status{Enabled: set.RealTime, Subscriptions: []SubscriptionHealth{}}
	now := s.cfg.Now().UTC()
	have := map[string]bool{}
	for sub, err := range s.cfg.Subscriptions.Store().List(ctx, org) {
		if err != nil {
			return Status{}, err
		}
		if !subscriptions.Directory(sub.Purpose) {
			continue
		}
		h := SubscriptionHealth{Resource: sub.Resource, Expires: sub.Expires, LastLifecycle: sub.LastLifecycle, LastError: sub.LastError,
			Healthy: sub.LastError == "" && sub.Expires.After(now)}
		if !sub.LastLifecycleAt.IsZero() {
			t := sub.LastLifecycleAt
			h.LastLifecycleAt = &t
		}
		have[sub.Purpose] = h.Healthy
		out.Subscriptions = append(out.Subscriptions, h)
	}
	st, _, err := tablestore.Get[state](ctx, s.state, org, stateKey)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return Status{}, err
	}
	out.Healthy = set.RealTime && have[subscriptions.Users] && (len(set.GroupFilter) == 0 || have[subscriptions.Groups]) && st.LastError == ""
	out.LastError, out.LastRunID, out.Pending, out.Waiting = st.LastError, st.LastRunID, st.Dirty, st.Waiting
	if !st.LastNotification.IsZero() {
		t := st.LastNotification
		out.LastNotification = &t
	}
	if st.Dirty {
		t := st.DirtySince
		out.PendingSince = &t
		if !st.TriggerAt.IsZero() {
			n := st.TriggerAt
			out.NextRoundAt = &n
		}
	}
	return out, nil
}
