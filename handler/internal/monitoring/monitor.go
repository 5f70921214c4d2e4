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

// SubscriptionRequest is a Graph subscription as we ask for it.
type SubscriptionRequest = subscriptions.Request

// Report says what a reconcile did.
type Report = subscriptions.Report

type (
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
	Settings *Store
	// Subscriptions makes and keeps the channels' subscriptions (shared with real-time sync).
	Subscriptions *subscriptions.Reconciler
	Teams         teamsConnections
	Connections   m365Connections
	Messages      messageAPI
	Channels      channelNames
	Decrypter     decrypter
	Insights      insightStore
	Alerts        alerter
	Logger        *slog.Logger
	Now           func() time.Time
}

// Monitor reconciles subscriptions and handles channel events.
type Monitor struct {
	cfg  Config
	subs *subscriptions.Store
	log  *slog.Logger
	mu   sync.Mutex
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
	return &Monitor{cfg: cfg, subs: cfg.Subscriptions.Store(), log: cfg.Logger, matchers: map[string]compiled{}}
}

// lifetime is what channel-message subscriptions ask for: Graph allows 4 320 minutes; a little
// less, renewed once less than a day is left.
const lifetime = 4230 * time.Minute

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

// Reconcile makes the org's subscriptions match its settings: one per monitored channel while
// monitoring is on and Teams connected, renewed before expiry, recreated (with a catch-up) when
// Graph lost it, deleted when no longer wanted.
func (m *Monitor) Reconcile(ctx context.Context, org tablestore.Org) (Report, error) {
	s, _, err := m.cfg.Settings.Get(ctx, org)
	if err != nil {
		return Report{}, err
	}
	tc, _, err := m.cfg.Teams.Get(ctx, org)
	if err != nil {
		return Report{}, err
	}
	m365, _, err := m.cfg.Connections.Get(ctx, org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return Report{}, err
	}
	active := s.Enabled && tc.Status == teamsconn.Connected && m365.Status != connection.Disconnected && m365.TenantID == tc.TenantID
	var want []subscriptions.Want
	if active {
		for _, c := range s.Channels {
			want = append(want, subscriptions.Want{Purpose: subscriptions.ChannelMessages, Resource: resourceOf(c.TeamID, c.ChannelID),
				ChangeType: "created,updated,deleted", Lifetime: lifetime, RichData: true, TeamID: c.TeamID, ChannelID: c.ChannelID})
		}
	}
	rep, err := m.cfg.Subscriptions.Reconcile(ctx, org, tc.TenantID, []string{subscriptions.ChannelMessages}, want, subscriptions.Hooks{
		Recreated: func(ctx context.Context, w subscriptions.Want, since time.Time) error {
			return m.catchUp(ctx, org, tc.TenantID, w.TeamID, w.ChannelID, since)
		},
		Failed: func(ctx context.Context, id, msg string) {
			if id == "" {
				_ = m.setStatus(ctx, org, func(st *Status) { st.LastError, st.LastErrorAt = subscriptionErrorPrefix+msg, m.cfg.Now().UTC() })
			}
		},
	})
	if err != nil {
		return rep, fmt.Errorf("monitoring: %w", err)
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

// subscriptionErrorPrefix marks the status's error as a subscription's: a later reconcile that
// succeeds clears it.
const subscriptionErrorPrefix = "subscription "

func resourceOf(teamID, channelID string) string {
	return "/teams/" + url.PathEscape(teamID) + "/channels/" + url.PathEscape(channelID) + "/messages"
}

// Orgs lists the orgs with monitoring settings (the renewer adds those with subscriptions).
func (m *Monitor) Orgs(ctx context.Context) ([]tablestore.Org, error) {
	return m.cfg.Settings.Orgs(ctx)
}
