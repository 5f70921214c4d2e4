// Package teamsconn holds each org's Microsoft Teams connection: whether the Leap Change bot may
// message the org's people, the Teams app's id in the tenant's app catalog (what Graph installs
// for a person who never opened the app), the Graph permissions Teams needs, and the default
// channels an admin picked.
package teamsconn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Statuses.
const (
	Connected    = "connected"
	Disconnected = "disconnected"
)

// Required are the Graph application permissions Teams messaging needs, least privilege:
// installing our own app for a person (proactive messages to people who never opened it) and
// listing teams and channels for the admin to pick from.
var Required = []string{"TeamsAppInstallation.ReadWriteSelfForUser.All", "Team.ReadBasic.All", "Channel.ReadBasic.All"}

// Optional permissions: AppCatalog.Read.All finds the app's catalog id by its manifest id; without
// it the admin passes the id (or, for a Store app, the manifest id is the catalog id).
var Optional = []string{"AppCatalog.Read.All"}

// Missing returns the required permissions not in granted.
func Missing(granted []string) []string {
	var out []string
	for _, p := range Required {
		if !slices.Contains(granted, p) {
			out = append(out, p)
		}
	}
	return out
}

// Channel is a default channel.
type Channel struct {
	TeamID      string `json:"teamId"`
	ChannelID   string `json:"channelId"`
	TeamName    string `json:"teamName,omitempty"`
	ChannelName string `json:"channelName,omitempty"`
}

// Record is an org's Teams connection.
type Record struct {
	Status          string    `json:"status"`
	TenantID        string    `json:"tenantId,omitempty"`
	CatalogAppID    string    `json:"catalogAppId,omitempty"`
	CatalogSource   string    `json:"catalogSource,omitempty"` // catalog (looked up), admin (given), manifest (Store app id)
	Granted         []string  `json:"granted"`
	DefaultChannels []Channel `json:"defaultChannels"`
	ConnectedAt     time.Time `json:"connectedAt,omitzero"`
	UpdatedAt       time.Time `json:"updatedAt,omitzero"`
}

// Table holds one row per org.
const Table = "teamsconnections"

const rowKey = "teams"

// Store reads and writes Teams connections.
type Store struct{ t *tablestore.Table }

// NewStore returns the store over s.
func NewStore(s *tablestore.Store) *Store { return &Store{t: s.Table(Table)} }

// Get returns the org's record; an org that never connected Teams is Disconnected (not an error).
func (s *Store) Get(ctx context.Context, org tablestore.Org) (Record, tablestore.ETag, error) {
	v, etag, err := tablestore.Get[Record](ctx, s.t, org, rowKey)
	if errors.Is(err, errkind.NotFound) {
		return Record{Status: Disconnected, Granted: []string{}, DefaultChannels: []Channel{}}, "", nil
	}
	if err != nil {
		return Record{}, "", fmt.Errorf("teams connection: %w", err)
	}
	return v, etag, nil
}

// Put stores rec: etag "" creates or replaces whatever is there (connect is a fresh start),
// otherwise it must match.
func (s *Store) Put(ctx context.Context, org tablestore.Org, rec Record, etag tablestore.ETag) (tablestore.ETag, error) {
	if rec.Granted == nil {
		rec.Granted = []string{}
	}
	if rec.DefaultChannels == nil {
		rec.DefaultChannels = []Channel{}
	}
	if etag == "" {
		return s.t.Upsert(ctx, org, rowKey, rec, tablestore.Replace)
	}
	return s.t.Update(ctx, org, rowKey, rec, etag, tablestore.Replace)
}

// Disconnect marks the org's Teams connection disconnected (idempotent); what was recorded stays
// for a later reconnect to show.
func (s *Store) Disconnect(ctx context.Context, org tablestore.Org, now time.Time) error {
	for range 5 {
		rec, etag, err := s.Get(ctx, org)
		if err != nil || etag == "" || rec.Status == Disconnected {
			return err
		}
		rec.Status, rec.UpdatedAt = Disconnected, now
		if _, err := s.Put(ctx, org, rec, etag); !errors.Is(err, errkind.Conflict) {
			return err
		}
	}
	return fmt.Errorf("teams connection: disconnect kept conflicting: %w", errkind.Conflict)
}

// Team is a team of the tenant, as the admin picks default or monitored channels from.
type Team struct {
	ID          string        `json:"id"`
	DisplayName string        `json:"displayName"`
	Description string        `json:"description,omitempty"`
	Channels    []ChannelInfo `json:"channels"`
}

// ChannelInfo is a channel of a team.
type ChannelInfo struct {
	ID             string `json:"id"`
	DisplayName    string `json:"displayName"`
	MembershipType string `json:"membershipType,omitempty"` // standard, private, shared
}
