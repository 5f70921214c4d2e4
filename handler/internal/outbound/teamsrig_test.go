package outbound_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/leapchange/m365/handler/internal/botframework"
	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/mailtest"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/pacing"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/teamsconn"
	"github.com/leapchange/m365/handler/internal/testenv"
)

const (
	botAppID  = "b07a0000-0000-4000-8000-00000000b07a"
	botTenant = "b07a0000-0000-4000-8000-0000000071d0"
)

// teamsRig is the Teams side of the rig.
type teamsRig struct {
	convs     *conversations.Store
	teams     *teamsconn.Store
	inbound   atomic.Int64 // activities the simulated Teams sent to the bot's endpoint
	catalogID string
	// before runs before each TeamsSender delivery; an error stops it (a crashed worker).
	before func(d queuetest.Delivery) error
}

func (r *rig) wireTeams(t *testing.T, rate int) outbound.TeamsConfig {
	t.Helper()
	if rate == 0 {
		rate = 30
	}
	sim := r.env.Sim
	tr := &teamsRig{convs: conversations.NewStore(r.env.Store), teams: teamsconn.NewStore(r.env.Store)}
	r.teams = tr
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { tr.inbound.Add(1) }))
	t.Cleanup(endpoint.Close)
	sim.RegisterBot(botAppID, botTenant, "bot-secret", endpoint.URL)
	sim.SetBotTenantRate(rate)
	id, err := sim.PublishTeamsApp(testenv.Tenant, botAppID)
	if err != nil {
		t.Fatal(err)
	}
	tr.catalogID = id
	if _, err := tr.teams.Put(t.Context(), r.org, teamsconn.Record{Status: teamsconn.Connected, TenantID: testenv.Tenant, CatalogAppID: id}, ""); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(sim.URL())
	client, err := botframework.NewClient(botframework.ClientConfig{AppID: botAppID, Secret: "bot-secret", TenantID: botTenant,
		AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient(), TrustedHosts: []string{u.Host}})
	if err != nil {
		t.Fatal(err)
	}
	pacer, err := pacing.New(r.env.Store, outbound.TeamsLimits(rate))
	if err != nil {
		t.Fatal(err)
	}
	installer := &mailtest.Client{Base: sim.GraphURL(), HTTP: r.env.HTTPClient(), Creds: r.env.Credentials(testenv.Secret)}
	return outbound.TeamsConfig{Connections: tr.teams, Conversations: tr.convs, Bot: client, Installer: installer,
		Pacer: pacer, FallbackServiceURL: sim.BotServiceURL()}
}

// member adds a user to the tenant and the stakeholder synced from them; with reachable, the
// bot already has their conversation reference (they opened the app).
func (r *rig) member(t *testing.T, first string, reachable bool) (stakeholderID, entraID string) {
	t.Helper()
	u, err := r.env.Sim.AddUser(testenv.Tenant, m365sim.User{DisplayName: first + " Doe", GivenName: first, Surname: "Doe",
		Mail: first + "@contoso.example", UserPrincipalName: first + "@contoso.example", AccountEnabled: true})
	if err != nil {
		t.Fatal(err)
	}
	st := stakeholder.Stakeholder{ID: stakeholder.SyncedID(u.ID), FirstName: first, LastName: "Doe", Email: u.Mail, Source: stakeholder.Entra,
		ExternalID: u.ID, Active: true, CreatedAt: r.clock.Now(), UpdatedAt: r.clock.Now()}
	if _, err := r.people.Save(t.Context(), r.org, st, nil, ""); err != nil {
		t.Fatal(err)
	}
	if reachable {
		sim := r.env.Sim
		if _, err := sim.InstallTeamsApp(testenv.Tenant, u.ID, r.teams.catalogID); err != nil {
			t.Fatal(err)
		}
		ref := conversations.Ref{AADObjectID: u.ID, UserID: sim.BotUserID(testenv.Tenant, u.ID), TenantID: testenv.Tenant,
			ServiceURL: sim.BotServiceURL(), ConversationID: sim.BotConversation(testenv.Tenant, u.ID)}
		if _, err := r.teams.convs.Seen(t.Context(), r.org, ref, true, r.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return st.ID, u.ID
}

func teamsRequest(ids ...string) outbound.Request {
	req := request(ids...)
	req.Channels = []string{outbound.Teams}
	return req
}
