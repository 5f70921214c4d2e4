package teamsconn_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/fielderr"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/mailtest"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/teamsconn"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

const appID = "b07a0000-0000-4000-8000-00000000b07a"

var teamsPerms = []string{"User.Read.All", "TeamsAppInstallation.ReadWriteSelfForUser.All", "Team.ReadBasic.All", "Channel.ReadBasic.All"}

type freshRoles struct{ env *testenv.Env }

func (f freshRoles) Roles(ctx context.Context, tenant string) ([]string, error) {
	return f.env.Credentials(testenv.Secret).FreshRoles(ctx, tenant)
}

type setup struct {
	perms     []string
	status    connection.Status // the Microsoft 365 connection's
	publish   bool              // the app is in the tenant's catalog
	noAppID   bool
	teamID    string
	channelID string
}

func connector(t *testing.T, s setup) (*teamsconn.Connector, *teamsconn.Store, tablestore.Org, m365sim.Team, m365sim.Channel, string) {
	t.Helper()
	env := testenv.New(t, testenv.Options{Permissions: s.perms})
	org := tablestoretest.Org(t, "acme")
	conns := connection.NewStore(env.Store)
	if s.status != "" {
		if _, err := conns.Put(t.Context(), org, connection.Record{Status: s.status, TenantID: testenv.Tenant}, ""); err != nil {
			t.Fatal(err)
		}
	}
	team, err := env.Sim.AddTeam(testenv.Tenant, m365sim.Team{DisplayName: "Change champions"}, m365sim.Channel{DisplayName: "Announcements"})
	if err != nil {
		t.Fatal(err)
	}
	chans, err := env.Sim.ChannelsOf(testenv.Tenant, team.ID)
	if err != nil || len(chans) == 0 {
		t.Fatalf("channels %v %v", chans, err)
	}
	catalogID := ""
	if s.publish {
		if catalogID, err = env.Sim.PublishTeamsApp(testenv.Tenant, appID); err != nil {
			t.Fatal(err)
		}
	}
	store := teamsconn.NewStore(env.Store)
	id := appID
	if s.noAppID {
		id = ""
	}
	c := teamsconn.NewConnector(teamsconn.ConnectorConfig{Store: store, Connections: conns, Roles: freshRoles{env},
		Catalog: &mailtest.Client{Base: env.Sim.GraphURL(), HTTP: env.HTTPClient(), Creds: env.Credentials(testenv.Secret)}, AppID: id})
	return c, store, org, team, chans[len(chans)-1], catalogID
}

// TestConnect: what connecting checks, and what it records.
func TestConnect(t *testing.T) {
	withCatalog := append(slices.Clone(teamsPerms), "AppCatalog.Read.All")
	cases := []struct {
		name        string
		setup       setup
		req         func(team m365sim.Team, ch m365sim.Channel) teamsconn.Request
		wantReason  string   // a NotReady mentioning this
		wantMissing []string // …naming these permissions
		wantField   string   // an Invalid naming this field
		wantSource  string   // connected, the catalog id from here
	}{
		{name: "no bot registration", setup: setup{perms: teamsPerms, status: connection.Connected, noAppID: true}, wantReason: "BOT_APP_ID"},
		{name: "no Microsoft 365 connection", setup: setup{perms: teamsPerms}, wantReason: "connect the org first"},
		{name: "Microsoft 365 needs re-authorization", setup: setup{perms: teamsPerms, status: connection.NeedsReauthorization}, wantReason: "re-authorization"},
		{name: "Teams permissions missing", setup: setup{perms: []string{"User.Read.All", "Team.ReadBasic.All"}, status: connection.Connected},
			wantReason: "not granted", wantMissing: []string{"TeamsAppInstallation.ReadWriteSelfForUser.All", "Channel.ReadBasic.All"}},
		{name: "app not in the catalog", setup: setup{perms: withCatalog, status: connection.Connected}, wantReason: "app catalog"},
		{name: "catalog looked up", setup: setup{perms: withCatalog, status: connection.Connected, publish: true}, wantSource: "catalog"},
		{name: "catalog unreadable: the manifest id", setup: setup{perms: teamsPerms, status: connection.Connected}, wantSource: "manifest"},
		{name: "catalog id given", setup: setup{perms: teamsPerms, status: connection.Connected},
			req: func(m365sim.Team, m365sim.Channel) teamsconn.Request {
				return teamsconn.Request{CatalogAppID: "given-id"}
			}, wantSource: "admin"},
		{name: "a default channel", setup: setup{perms: teamsPerms, status: connection.Connected},
			req: func(tm m365sim.Team, ch m365sim.Channel) teamsconn.Request {
				return teamsconn.Request{DefaultChannels: []teamsconn.Channel{{TeamID: tm.ID, ChannelID: ch.ID}}}
			}, wantSource: "manifest"},
		{name: "an unknown channel", setup: setup{perms: teamsPerms, status: connection.Connected},
			req: func(tm m365sim.Team, _ m365sim.Channel) teamsconn.Request {
				return teamsconn.Request{DefaultChannels: []teamsconn.Channel{{TeamID: tm.ID, ChannelID: "19:nope@thread.tacv2"}}}
			}, wantField: "defaultChannels[0].channelId"},
		{name: "an unknown team", setup: setup{perms: teamsPerms, status: connection.Connected},
			req: func(m365sim.Team, m365sim.Channel) teamsconn.Request {
				return teamsconn.Request{DefaultChannels: []teamsconn.Channel{{TeamID: "00000000-0000-0000-0000-00000000dead", ChannelID: "x"}}}
			}, wantField: "defaultChannels[0].teamId"},
		{name: "a blank channel", setup: setup{perms: teamsPerms, status: connection.Connected},
			req: func(tm m365sim.Team, _ m365sim.Channel) teamsconn.Request {
				return teamsconn.Request{DefaultChannels: []teamsconn.Channel{{TeamID: tm.ID}}}
			}, wantField: "defaultChannels[0].channelId"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, store, org, team, ch, catalogID := connector(t, tc.setup)
			var req teamsconn.Request
			if tc.req != nil {
				req = tc.req(team, ch)
			}
			rec, err := c.Connect(t.Context(), org, req)
			missing, reason, notReady := teamsconn.MissingOf(err)
			var bad fielderr.List
			switch {
			case tc.wantReason != "":
				if !notReady || !strings.Contains(reason, tc.wantReason) || !slices.Equal(missing, tc.wantMissing) {
					t.Fatalf("Connect = %+v, %v; want not ready (%q, missing %v)", rec, err, tc.wantReason, tc.wantMissing)
				}
			case tc.wantField != "":
				if !errors.As(err, &bad) || len(bad) == 0 || bad[0].Field != tc.wantField {
					t.Fatalf("Connect = %v, want a bad %s", err, tc.wantField)
				}
			default:
				if err != nil || rec.Status != teamsconn.Connected || rec.TenantID != testenv.Tenant || rec.CatalogSource != tc.wantSource {
					t.Fatalf("Connect = %+v, %v; want connected with the catalog id from %s", rec, err, tc.wantSource)
				}
				if tc.wantSource == "catalog" && rec.CatalogAppID != catalogID {
					t.Errorf("catalog id %q, want %q", rec.CatalogAppID, catalogID)
				}
				if len(req.DefaultChannels) > 0 && (len(rec.DefaultChannels) != 1 || rec.DefaultChannels[0].ChannelName != ch.DisplayName) {
					t.Errorf("default channels %+v", rec.DefaultChannels)
				}
			}
			stored, _, gerr := store.Get(t.Context(), org)
			if gerr != nil {
				t.Fatal(gerr)
			}
			if wantStored := err == nil; (stored.Status == teamsconn.Connected) != wantStored {
				t.Errorf("stored %+v after Connect error %v", stored, err)
			}
			if err == nil {
				if err := store.Disconnect(t.Context(), org, rec.ConnectedAt); err != nil {
					t.Fatal(err)
				}
				if got, _, _ := store.Get(t.Context(), org); got.Status != teamsconn.Disconnected || got.CatalogAppID != rec.CatalogAppID {
					t.Errorf("after Disconnect: %+v", got)
				}
			}
		})
	}
}
