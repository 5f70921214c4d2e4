// Package monitoring is channel monitoring: each org's monitored Teams channels, keywords and
// watchers; the Graph subscriptions that follow those channels (created, renewed, recreated and
// deleted by Reconcile, on save and on every SubscriptionRenewer tick); and the
// ChannelEventWorker, which turns a notification into an insight — captured once per message,
// re-evaluated on edit, marked on deletion — and alerts the watchers once per message.
package monitoring

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/fielderr"
	"github.com/leapchange/m365/handler/internal/keywords"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Limits of the settings. Graph allows one subscription per channel and app; 50 channels keep
// an org's renewals to a handful of calls a tick.
const (
	MaxChannels = 50
	MaxWatchers = 50
)

// Channel is a monitored channel.
type Channel struct {
	TeamID      string `json:"teamId"`
	ChannelID   string `json:"channelId"`
	TeamName    string `json:"teamName,omitempty"`
	ChannelName string `json:"channelName,omitempty"`
}

// Watcher is who is alerted of a match: a stakeholder (by mail or in Teams) or a mail address.
type Watcher struct {
	StakeholderID string `json:"stakeholderId,omitempty"`
	Email         string `json:"email,omitempty"`
	Channel       string `json:"channel"` // mail or teams
}

// Settings are an org's monitoring settings.
type Settings struct {
	Enabled   bool      `json:"enabled"`
	Channels  []Channel `json:"channels"`
	Keywords  []string  `json:"keywords"`
	Watchers  []Watcher `json:"watchers"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

// Normalize trims and checks the settings (not whether the channels exist: Save asks Graph),
// naming every bad field.
func (s *Settings) Normalize() error {
	var bad fielderr.List
	if s.Channels == nil {
		s.Channels = []Channel{}
	}
	if s.Keywords == nil {
		s.Keywords = []string{}
	}
	if s.Watchers == nil {
		s.Watchers = []Watcher{}
	}
	if len(s.Channels) > MaxChannels {
		bad.Add("channels", fmt.Sprintf("at most %d", MaxChannels))
	}
	seen := map[string]bool{}
	var channels []Channel
	for i, c := range s.Channels {
		c.TeamID, c.ChannelID = strings.TrimSpace(c.TeamID), strings.TrimSpace(c.ChannelID)
		switch {
		case c.TeamID == "" || len(c.TeamID) > 200:
			bad.Add(fmt.Sprintf("channels[%d].teamId", i), "a team id")
		case c.ChannelID == "" || len(c.ChannelID) > 200:
			bad.Add(fmt.Sprintf("channels[%d].channelId", i), "a channel id")
		case !seen[c.TeamID+"|"+c.ChannelID]:
			seen[c.TeamID+"|"+c.ChannelID] = true
			channels = append(channels, c)
		}
	}
	if channels != nil {
		s.Channels = channels
	}
	if len(s.Keywords) > 0 || s.Enabled {
		if _, err := keywords.Compile(s.Keywords); err != nil {
			var kb fielderr.List
			if errors.As(err, &kb) {
				bad = append(bad, kb...)
			} else {
				bad.Add("keywords", err.Error())
			}
		}
	}
	if s.Enabled && len(s.Channels) == 0 {
		bad.Add("channels", "monitoring needs at least one channel")
	}
	if len(s.Watchers) > MaxWatchers {
		bad.Add("watchers", fmt.Sprintf("at most %d", MaxWatchers))
	}
	for i, w := range s.Watchers {
		f := fmt.Sprintf("watchers[%d]", i)
		w.StakeholderID, w.Email = strings.TrimSpace(w.StakeholderID), strings.TrimSpace(w.Email)
		switch {
		case (w.StakeholderID == "") == (w.Email == ""):
			bad.Add(f, "name a stakeholderId or an email, one of them")
		case w.StakeholderID != "" && tablestore.CheckKey(w.StakeholderID) != nil:
			bad.Add(f+".stakeholderId", "not a stakeholder id")
		case w.Email != "" && !validEmail(w.Email):
			bad.Add(f+".email", "not a mail address")
		case w.Channel != "mail" && w.Channel != "teams":
			bad.Add(f+".channel", `"mail" or "teams"`)
		case w.Email != "" && w.Channel == "teams":
			bad.Add(f+".channel", "Teams reaches stakeholders only: a watcher by address is alerted by mail")
		}
		s.Watchers[i] = w
	}
	if len(bad) > 0 {
		return bad
	}
	return nil
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && len(s) <= 254
}

// Table holds each org's settings (row "settings") and status rows.
const Table = "monitoring"

const settingsKey = "settings"

// Store reads and writes the settings.
type Store struct{ t *tablestore.Table }

// NewStore returns the store over s.
func NewStore(s *tablestore.Store) *Store { return &Store{t: s.Table(Table)} }

// Get returns the org's settings; an org that never saved any has monitoring off.
func (s *Store) Get(ctx context.Context, org tablestore.Org) (Settings, tablestore.ETag, error) {
	v, etag, err := tablestore.Get[Settings](ctx, s.t, org, settingsKey)
	if errors.Is(err, errkind.NotFound) {
		return Settings{Channels: []Channel{}, Keywords: []string{}, Watchers: []Watcher{}}, "", nil
	}
	return v, etag, err
}

// Put stores settings already normalised: etag "" writes whatever is there, otherwise it must
// match.
func (s *Store) Put(ctx context.Context, org tablestore.Org, v Settings, etag tablestore.ETag) (tablestore.ETag, error) {
	if etag == "" {
		return s.t.Upsert(ctx, org, settingsKey, v, tablestore.Replace)
	}
	return s.t.Update(ctx, org, settingsKey, v, etag, tablestore.Replace)
}

// Orgs lists the orgs that have monitoring settings.
func (s *Store) Orgs(ctx context.Context) ([]tablestore.Org, error) { return s.t.Partitions(ctx) }
