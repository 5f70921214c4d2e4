package monitoring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/fielderr"
	"github.com/leapchange/m365/handler/internal/insights"
	"github.com/leapchange/m365/handler/internal/keywords"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/teamsconn"
	"github.com/leapchange/m365/handler/internal/teamsmsg"
)

// SubscriptionRequest is a Graph subscription as monitoring asks for it (plain data; the
// Graph client's adapter converts it).
type SubscriptionRequest struct {
	ID, Resource, ChangeType      string
	NotificationURL, LifecycleURL string
	ClientState                   string
	Expires                       time.Time
	IncludeResourceData           bool
	Certificate, CertificateID    string
}

type (
	subscriptionAPI interface {
		CreateSubscription(ctx context.Context, tenantID string, s SubscriptionRequest) (SubscriptionRequest, error)
		RenewSubscription(ctx context.Context, tenantID, id string, exp time.Time) (time.Time, error)
		ReauthorizeSubscription(ctx context.Context, tenantID, id string) error
		DeleteSubscription(ctx context.Context, tenantID, id string) error
	}
	messageAPI interface {
		ChannelMessage(ctx context.Context, tenantID, teamID, channelID, messageID string) (teamsmsg.Message, error)
		ChannelReply(ctx context.Context, tenantID, teamID, channelID, messageID, replyID string) (teamsmsg.Message, error)
		ChannelMessagesSince(ctx context.Context, tenantID, teamID, channelID string, since time.Time) ([]teamsmsg.Message, error)
	}
	channelNames interface {
		ChannelNames(ctx context.Context, tenantID, teamID string) (string, map[string]string, error)
	}
	teamsConnections interface {
		Get(ctx context.Context, org tablestore.Org) (teamsconn.Record, tablestore.ETag, error)
	}
	m365Connections interface {
		Get(ctx context.Context, org tablestore.Org) (connection.Record, tablestore.ETag, error)
	}
	// certificate is our notification encryption certificate (nil: no rich notifications; the
	// worker fetches each message).
	certificate interface {
		ID() string
		Base64DER() string
	}
	decrypter interface {
		Decrypt(encryptedContent json.RawMessage) ([]byte, error)
	}
	insightStore interface {
		Capture(ctx context.Context, org tablestore.Org, in insights.Insight) (bool, error)
		Edited(ctx context.Context, org tablestore.Org, teamID, channelID, messageID string, keywords []string, excerpt string, at time.Time) error
		Deleted(ctx context.Context, org tablestore.Org, teamID, channelID, messageID string, at time.Time) error
		Get(ctx context.Context, org tablestore.Org, teamID, channelID, messageID string) (insights.Insight, bool, error)
	}
	alerter interface {
		Accept(ctx context.Context, org tablestore.Org, r outbound.Request) (outbound.Receipt, error)
	}
)

// Config wires a Monitor.
type Config struct {
	Settings      *Store
	Subscriptions *subscriptions.Store
	States        subscriptions.ClientStates
	Teams         teamsConnections
	Connections   m365Connections
	Graph         subscriptionAPI
	Messages      messageAPI
	Channels      channelNames
	Certificate   certificate
	Decrypter     decrypter
	Insights      insightStore
	Alerts        alerter
	// PublicBaseURL is where Graph reaches our webhooks.
	PublicBaseURL string
	// Forget drops a subscription from the webhook's cache once it changed here.
	Forget func(org tablestore.Org, id string)
	Logger *slog.Logger
	Now    func() time.Time
}

// Monitor reconciles subscriptions and handles channel events.
type Monitor struct {
	cfg Config
	log *slog.Logger
	mu  sync.Mutex
	// matchers caches each org's compiled keywords by settings version.
	matchers map[string]compiled
}

type compiled struct {
	at time.Time
	m  *keywords.Matcher
}

// New returns a Monitor. It does no I/O.
func New(cfg Config) *Monitor {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Forget == nil {
		cfg.Forget = func(tablestore.Org, string) {}
	}
	return &Monitor{cfg: cfg, log: cfg.Logger, matchers: map[string]compiled{}}
}

// Subscription lifetimes: channel messages allow 4 320 minutes; we ask a little less, and renew
// once less than a day is left (the renewer runs every 10 minutes).
const (
	lifetime    = 4230 * time.Minute
	renewBefore = 24 * time.Hour
)

// NotReady says why monitoring cannot be switched on.
type NotReady struct{ Reason string }

func (e *NotReady) Error() string { return "monitoring: " + e.Reason }

// Save checks the settings (channels against Graph), stores them and reconciles the org's
// subscriptions. The settings stand even when a subscription cannot be made now: the status
// says why, and the renewer tries again.
func (m *Monitor) Save(ctx context.Context, org tablestore.Org, s Settings, etag tablestore.ETag) (Settings, Report, error) {
	if err := s.Normalize(); err != nil {
		return s, Report{}, err
	}
	tc, _, err := m.cfg.Teams.Get(ctx, org)
	if err != nil {
		return s, Report{}, err
	}
	m365, _, err := m.cfg.Connections.Get(ctx, org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return s, Report{}, err
	}
	if s.Enabled {
		switch {
		case m365.Status != connection.Connected || m365.TenantID == "":
			return s, Report{}, &NotReady{"monitoring needs a working Microsoft 365 connection (POST /m365/connect)"}
		case tc.Status != teamsconn.Connected || tc.TenantID != m365.TenantID:
			return s, Report{}, &NotReady{"monitoring needs Teams connected for the org (POST /teams/connect)"}
		}
	}
	var bad fielderr.List
	for i := range s.Channels {
		if tc.Status != teamsconn.Connected {
			break // switched off without Teams: the channels are kept as given
		}
		c := &s.Channels[i]
		team, names, err := m.cfg.Channels.ChannelNames(ctx, tc.TenantID, c.TeamID)
		if errkind.Of(err) == errkind.NotFound {
			bad.Add(fmt.Sprintf("channels[%d].teamId", i), "no such team in the tenant")
			continue
		}
		if err != nil {
			return s, Report{}, fmt.Errorf("monitoring: checking channel %d: %w", i, err)
		}
		name, ok := names[c.ChannelID]
		if !ok {
			bad.Add(fmt.Sprintf("channels[%d].channelId", i), "no such channel in the team")
			continue
		}
		c.ChannelName = name
		if team != "" {
			c.TeamName = team
		}
	}
	if len(bad) > 0 {
		return s, Report{}, bad
	}
	s.UpdatedAt = m.cfg.Now().UTC()
	if _, err := m.cfg.Settings.Put(ctx, org, s, etag); err != nil {
		return s, Report{}, err
	}
	rep, err := m.Reconcile(ctx, org)
	return s, rep, err
}

// Report says what a reconcile did.
type Report struct {
	Created   int `json:"created"`
	Renewed   int `json:"renewed"`
	Recreated int `json:"recreated"`
	Deleted   int `json:"deleted"`
	Failed    int `json:"failed"`
}

// Reconcile makes the org's subscriptions match its settings: one per monitored channel while
// monitoring is on and Teams connected, renewed before expiry, recreated when Graph lost it,
// deleted when no longer wanted. A subscription that fails is recorded on it and counted; the
// others go on.
func (m *Monitor) Reconcile(ctx context.Context, org tablestore.Org) (Report, error) {
	var rep Report
	s, _, err := m.cfg.Settings.Get(ctx, org)
	if err != nil {
		return rep, err
	}
	tc, _, err := m.cfg.Teams.Get(ctx, org)
	if err != nil {
		return rep, err
	}
	m365, _, err := m.cfg.Connections.Get(ctx, org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return rep, err
	}
	active := s.Enabled && tc.Status == teamsconn.Connected && m365.Status != connection.Disconnected && m365.TenantID == tc.TenantID
	want := map[string]Channel{}
	if active {
		for _, c := range s.Channels {
			want[resourceOf(c.TeamID, c.ChannelID)] = c
		}
	}
	now := m.cfg.Now().UTC()
	have := map[string]bool{}
	for sub, err := range m.cfg.Subscriptions.List(ctx, org) {
		if err != nil {
			return rep, err
		}
		if sub.Purpose != subscriptions.ChannelMessages {
			continue
		}
		c, wanted := want[sub.Resource]
		if !wanted || sub.Tenant != tc.TenantID || have[sub.Resource] {
			if err := m.cfg.Graph.DeleteSubscription(ctx, sub.Tenant, sub.ID); err != nil && errkind.Of(err) != errkind.NotFound {
				m.failed(ctx, org, sub.ID, "deleting", err, &rep)
				continue
			}
			if err := m.cfg.Subscriptions.Delete(ctx, org, sub.ID); err != nil {
				return rep, err
			}
			m.cfg.Forget(org, sub.ID)
			rep.Deleted++
			continue
		}
		have[sub.Resource] = true
		if sub.Expires.Sub(now) > renewBefore {
			continue
		}
		exp, err := m.cfg.Graph.RenewSubscription(ctx, sub.Tenant, sub.ID, now.Add(lifetime))
		switch {
		case err == nil:
			rep.Renewed++
			if err := m.cfg.Subscriptions.Update(ctx, org, sub.ID, func(s *subscriptions.Sub) {
				s.Expires, s.RenewedAt, s.LastError = exp, now, ""
			}); err != nil {
				return rep, err
			}
		case errkind.Of(err) == errkind.NotFound:
			// Gone at Graph (expired, or removed): make it again, and catch up on what it missed.
			if err := m.cfg.Subscriptions.Delete(ctx, org, sub.ID); err != nil {
				return rep, err
			}
			m.cfg.Forget(org, sub.ID)
			if _, err := m.create(ctx, org, tc.TenantID, c); err != nil {
				m.failed(ctx, org, "", "recreating", err, &rep)
				continue
			}
			rep.Recreated++
			if err := m.catchUp(ctx, org, tc.TenantID, c.TeamID, c.ChannelID, later(sub.LastNotification, sub.CreatedAt)); err != nil {
				m.log.WarnContext(ctx, "monitoring: catching up after a recreate", "org", org.String(), "error", err.Error())
			}
		default:
			m.failed(ctx, org, sub.ID, "renewing", err, &rep)
		}
	}
	for res, c := range want {
		if have[res] {
			continue
		}
		if _, err := m.create(ctx, org, tc.TenantID, c); err != nil {
			m.failed(ctx, org, "", "creating", err, &rep)
			continue
		}
		rep.Created++
	}
	if rep.Failed > 0 {
		return rep, fmt.Errorf("monitoring: %d subscription(s) of %s failed (recorded on the status)", rep.Failed, org)
	}
	if rep.Created+rep.Recreated+rep.Renewed > 0 {
		_ = m.setStatus(ctx, org, func(st *Status) {
			if strings.HasPrefix(st.LastError, subscriptionErrorPrefix) {
				st.LastError, st.LastErrorAt = "", time.Time{}
			}
		})
	}
	return rep, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// failed records a subscription's failure where the admin sees it.
func (m *Monitor) failed(ctx context.Context, org tablestore.Org, id, doing string, err error, rep *Report) {
	rep.Failed++
	msg := doing + ": " + err.Error()
	m.log.WarnContext(ctx, "monitoring: subscription failed", "org", org.String(), "subscription", id, "error", msg)
	if id != "" {
		_ = m.cfg.Subscriptions.Update(ctx, org, id, func(s *subscriptions.Sub) { s.LastError, s.LastErrorAt = msg, m.cfg.Now().UTC() })
		return
	}
	_ = m.setStatus(ctx, org, func(st *Status) { st.LastError, st.LastErrorAt = subscriptionErrorPrefix+msg, m.cfg.Now().UTC() })
}

// subscriptionErrorPrefix marks the status's error as a subscription's: a later reconcile that
// succeeds clears it.
const subscriptionErrorPrefix = "subscription "

func resourceOf(teamID, channelID string) string {
	return "/teams/" + url.PathEscape(teamID) + "/channels/" + url.PathEscape(channelID) + "/messages"
}

// create subscribes to a channel's messages and records the subscription.
func (m *Monitor) create(ctx context.Context, org tablestore.Org, tenant string, c Channel) (subscriptions.Sub, error) {
	now := m.cfg.Now().UTC()
	nonce := subscriptions.NewNonce()
	q := "?org=" + url.QueryEscape(org.String())
	req := SubscriptionRequest{
		Resource: resourceOf(c.TeamID, c.ChannelID), ChangeType: "created,updated,deleted",
		NotificationURL: strings.TrimRight(m.cfg.PublicBaseURL, "/") + "/api/graph/notifications" + q,
		LifecycleURL:    strings.TrimRight(m.cfg.PublicBaseURL, "/") + "/api/graph/lifecycle" + q,
		ClientState:     m.cfg.States.For(org, nonce), Expires: now.Add(lifetime),
	}
	if m.cfg.Certificate != nil {
		req.IncludeResourceData, req.Certificate, req.CertificateID = true, m.cfg.Certificate.Base64DER(), m.cfg.Certificate.ID()
	}
	// The row exists before Graph's first notification can arrive (the webhook looks it up by
	// id, which only Graph's answer tells): written right after, and the webhook's negative
	// cache is short.
	got, err := m.cfg.Graph.CreateSubscription(ctx, tenant, req)
	if err != nil {
		return subscriptions.Sub{}, err
	}
	sub := subscriptions.Sub{ID: got.ID, Tenant: tenant, Purpose: subscriptions.ChannelMessages, TeamID: c.TeamID, ChannelID: c.ChannelID,
		Resource: req.Resource, ChangeType: req.ChangeType, Nonce: nonce, Expires: got.Expires, RichData: req.IncludeResourceData,
		CertificateID: req.CertificateID, CreatedAt: now}
	if err := m.cfg.Subscriptions.Put(ctx, org, sub); err != nil {
		// Not recorded: notifications for it would be dropped. Remove it at Graph.
		_ = m.cfg.Graph.DeleteSubscription(ctx, tenant, got.ID)
		return subscriptions.Sub{}, err
	}
	m.cfg.Forget(org, sub.ID)
	return sub, nil
}

// RenewAll reconciles every org that has monitoring settings or subscriptions (the
// SubscriptionRenewer). One org's failure is logged and recorded on its status, and does not
// stop the others; the error is for the listing of the orgs itself.
func (m *Monitor) RenewAll(ctx context.Context) (Report, error) {
	var total Report
	seen := map[string]bool{}
	var orgs []tablestore.Org
	for _, list := range []func(context.Context) ([]tablestore.Org, error){m.cfg.Settings.Orgs, m.cfg.Subscriptions.Orgs} {
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
		rep, err := m.Reconcile(ctx, org)
		total.Created += rep.Created
		total.Renewed += rep.Renewed
		total.Recreated += rep.Recreated
		total.Deleted += rep.Deleted
		total.Failed += rep.Failed
		if err != nil {
			m.log.WarnContext(ctx, "monitoring: reconciling an org's subscriptions", "org", org.String(), "error", err.Error())
		}
	}
	return total, nil
}
