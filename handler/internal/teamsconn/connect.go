package teamsconn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/fielderr"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

type (
	m365Connections interface {
		Get(ctx context.Context, org tablestore.Org) (connection.Record, tablestore.ETag, error)
	}
	// roles reads the application permissions a tenant granted us (the roles of a fresh
	// app-only token).
	roles interface {
		Roles(ctx context.Context, tenantID string) ([]string, error)
	}
	// catalog is Graph's Teams side, as connecting needs it.
	catalog interface {
		AppCatalogID(ctx context.Context, tenantID, externalID string) (string, error)
		ChannelNames(ctx context.Context, tenantID, teamID string) (team string, channels map[string]string, err error)
	}
)

// ConnectorConfig wires a Connector.
type ConnectorConfig struct {
	Store       *Store
	Connections m365Connections
	Roles       roles
	Catalog     catalog
	// AppID is the Teams app's manifest id (TEAMS_APP_ID, default the bot's app id); the
	// tenant's app catalog knows the app by it. Empty: Teams is not offered (no bot).
	AppID string
	Now   func() time.Time
}

// Connector connects and disconnects orgs' Teams.
type Connector struct{ cfg ConnectorConfig }

// NewConnector returns a Connector.
func NewConnector(cfg ConnectorConfig) *Connector {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Connector{cfg: cfg}
}

// Request is what the admin sends to connect.
type Request struct {
	DefaultChannels []Channel
	// CatalogAppID is the app's id in the tenant's app catalog, when the admin knows it and the
	// app may not read the catalog (AppCatalog.Read.All not granted).
	CatalogAppID string
}

// NotReady says why Teams cannot connect yet; Missing names missing permissions.
type NotReady struct {
	Reason  string
	Missing []string
}

func (e *NotReady) Error() string { return "teams: " + e.Reason }

// MaxDefaultChannels bounds the default channels.
const MaxDefaultChannels = 20

// Connect checks the org can use Teams — a working Microsoft 365 connection, the Graph
// permissions Teams needs (read from a fresh token, named when missing), the Leap Change app in
// the tenant's app catalog — validates the default channels against Graph, and records the
// connection. Connecting again replaces the record (new channels, new catalog id).
func (c *Connector) Connect(ctx context.Context, org tablestore.Org, r Request) (Record, error) {
	if c.cfg.AppID == "" {
		return Record{}, &NotReady{Reason: "this server has no Teams bot registration (BOT_APP_ID is not set)"}
	}
	var bad fielderr.List
	if len(r.DefaultChannels) > MaxDefaultChannels {
		bad.Add("defaultChannels", fmt.Sprintf("at most %d", MaxDefaultChannels))
	}
	for i, ch := range r.DefaultChannels {
		if strings.TrimSpace(ch.TeamID) == "" || len(ch.TeamID) > 200 {
			bad.Add(fmt.Sprintf("defaultChannels[%d].teamId", i), "a team id")
		}
		if strings.TrimSpace(ch.ChannelID) == "" || len(ch.ChannelID) > 200 {
			bad.Add(fmt.Sprintf("defaultChannels[%d].channelId", i), "a channel id")
		}
	}
	if len(r.CatalogAppID) > 200 {
		bad.Add("catalogAppId", "at most 200 characters")
	}
	if len(bad) > 0 {
		return Record{}, bad
	}
	m, _, err := c.cfg.Connections.Get(ctx, org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return Record{}, err
	}
	if m.Status != connection.Connected || m.TenantID == "" {
		reason := "Teams needs a working Microsoft 365 connection: connect the org first (POST /m365/connect)"
		if m.Status == connection.NeedsReauthorization {
			reason = "the Microsoft 365 connection needs re-authorization: an administrator must connect it again first"
		}
		return Record{}, &NotReady{Reason: reason}
	}
	granted, err := c.cfg.Roles.Roles(ctx, m.TenantID)
	if err != nil {
		return Record{}, fmt.Errorf("teams: reading the tenant's granted permissions: %w", err)
	}
	if missing := Missing(granted); len(missing) > 0 {
		return Record{}, &NotReady{Missing: missing, Reason: "the tenant has not granted the Graph permissions Teams needs: " + strings.Join(missing, ", ") +
			" (add them to the app's requested permissions and re-authorize the Microsoft 365 connection)"}
	}
	rec := Record{Status: Connected, TenantID: m.TenantID, Granted: grantedOf(granted), DefaultChannels: []Channel{},
		ConnectedAt: c.cfg.Now().UTC(), UpdatedAt: c.cfg.Now().UTC()}
	switch {
	case r.CatalogAppID != "":
		rec.CatalogAppID, rec.CatalogSource = r.CatalogAppID, "admin"
	default:
		id, err := c.cfg.Catalog.AppCatalogID(ctx, m.TenantID, c.cfg.AppID)
		switch {
		case err == nil:
			rec.CatalogAppID, rec.CatalogSource = id, "catalog"
		case errkind.Of(err) == errkind.NotFound:
			return Record{}, &NotReady{Reason: "the Leap Change app is not in the tenant's Teams app catalog: a Teams administrator uploads it (scripts/teams-app.sh builds the package) or allows it, then connect again"}
		case errkind.Of(err) == errkind.Forbidden:
			// Without AppCatalog.Read.All: a Store app's catalog id is its manifest id.
			rec.CatalogAppID, rec.CatalogSource = c.cfg.AppID, "manifest"
		default:
			return Record{}, fmt.Errorf("teams: looking the app up in the tenant's catalog: %w", err)
		}
	}
	for i, ch := range r.DefaultChannels {
		team, names, err := c.cfg.Catalog.ChannelNames(ctx, m.TenantID, ch.TeamID)
		if errkind.Of(err) == errkind.NotFound {
			bad.Add(fmt.Sprintf("defaultChannels[%d].teamId", i), "no such team in the tenant")
			continue
		}
		if err != nil {
			return Record{}, fmt.Errorf("teams: checking default channel %d: %w", i, err)
		}
		name, ok := names[ch.ChannelID]
		if !ok {
			bad.Add(fmt.Sprintf("defaultChannels[%d].channelId", i), "no such channel in the team")
			continue
		}
		ch.TeamName, ch.ChannelName = team, name
		if !slices.ContainsFunc(rec.DefaultChannels, func(c Channel) bool { return c.TeamID == ch.TeamID && c.ChannelID == ch.ChannelID }) {
			rec.DefaultChannels = append(rec.DefaultChannels, ch)
		}
	}
	if len(bad) > 0 {
		return Record{}, bad
	}
	if _, err := c.cfg.Store.Put(ctx, org, rec, ""); err != nil {
		return Record{}, err
	}
	return rec, nil
}

// grantedOf lists the Teams-related permissions among granted, for the record.
func grantedOf(granted []string) []string {
	out := []string{}
	for _, p := range append(slices.Clone(Required), Optional...) {
		if slices.Contains(granted, p) {
			out = append(out, p)
		}
	}
	return out
}

// MissingOf tells a NotReady apart: its reason and the permissions it names.
func MissingOf(err error) ([]string, string, bool) {
	var nr *NotReady
	if errors.As(err, &nr) {
		return nr.Missing, nr.Reason, true
	}
	return nil, "", false
}
