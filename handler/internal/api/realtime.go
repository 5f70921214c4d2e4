package api

import (
	"context"

	"github.com/leapchange/m365/handler/internal/realtime"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// realTimeSync is real-time stakeholder sync as the API drives it (realtime.Sync).
type realTimeSync interface {
	Reconcile(ctx context.Context, org tablestore.Org) (subscriptions.Report, error)
	Status(ctx context.Context, org tablestore.Org) (realtime.Status, error)
}

// reconcileRealTime makes the org's user and group subscriptions follow settings that changed
// what they need (real-time on or off, a group filter added or removed) or a disconnect. The
// settings stand when Graph refuses: the failure is recorded on the real-time status, and the
// renewer tries again within 10 minutes.
func (s *Server) reconcileRealTime(ctx context.Context, org tablestore.Org, before, after syncsettings.Settings, force bool) {
	if s.d.RealTime == nil {
		return
	}
	changed := before.RealTime != after.RealTime || (len(before.GroupFilter) == 0) != (len(after.GroupFilter) == 0)
	if !force && !changed {
		return
	}
	if _, err := s.d.RealTime.Reconcile(ctx, org); err != nil {
		s.log.WarnContext(ctx, "real-time sync subscriptions not reconciled (the renewer retries)", "org", org.String(), "error", err.Error())
	}
}
