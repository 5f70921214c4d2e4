package bot_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/bot"
	"github.com/leapchange/m365/handler/internal/botframework"
	"github.com/leapchange/m365/handler/internal/changes"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/teamsconn"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

const (
	botAppID  = "b07a0000-0000-4000-8000-00000000b07a"
	botTenant = "b07a0000-0000-4000-8000-0000000071d0"
	botSecret = "bot-secret"
	// otherTenant is a second customer, with an org of its own.
	otherTenant = "22222222-3333-4444-5555-666666666666"
)

// rig is the bot's endpoint against the simulated tenant (identity, Bot Framework, Graph) and
// Azurite, with two orgs on two tenants.
type rig struct {
	clock   *testenv.Clock
	env     *testenv.Env
	sim     *m365sim.Server
	bot     *bot.Bot
	srv     *httptest.Server
	conns   *connection.Store
	teams   *teamsconn.Store
	convs   *conversations.Store
	people  *stakeholder.Store
	groups  *stakeholder.Groups
	changes *changes.Store
	p       *outbound.Pipeline
	client  *botframework.Client
	acme    tablestore.Org // on testenv.Tenant
	globex  tablestore.Org // on otherTenant
}

func newRig(t *testing.T) *rig {
	t.Helper()
	c := testenv.NewClock(time.Now().UTC().Truncate(time.Second))
	env := testenv.New(t, testenv.Options{Sim: m365sim.Options{Clock: c.Now}, Permissions: []string{"User.Read.All", "GroupMember.Read.All"}})
	env.Queue.Now = c.Now
	sim := env.Sim
	sim.AddTenant(otherTenant, "globex.example")
	r := &rig{env: env, sim: sim, clock: c, conns: connection.NewStore(env.Store), teams: teamsconn.NewStore(env.Store),
		convs: conversations.NewStore(env.Store), people: stakeholder.NewStore(env.Store), groups: stakeholder.NewGroups(env.Store),
		changes: changes.NewStore(env.Store), acme: tablestoretest.Org(t, "acme"), globex: tablestoretest.Org(t, "globex")}
	host := mustURL(t, sim.URL()).Host
	client, err := botframework.NewClient(botframework.ClientConfig{AppID: botAppID, Secret: botSecret, TenantID: botTenant,
		AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient(), TrustedHosts: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	r.client = client
	r.p = outbound.New(outbound.Config{Now: c.Now, Store: env.Store, Queue: env.Queue, Stakeholders: r.people, Groups: r.groups, Connections: r.conns,
		Teams: outbound.TeamsConfig{Connections: r.teams, Conversations: r.convs, Bot: client}})
	r.bot = bot.New(r.botConfig(0))
	r.srv = httptest.NewServer(r.bot)
	t.Cleanup(r.srv.Close)
	sim.RegisterBot(botAppID, botTenant, botSecret, r.srv.URL+"/api/messages")
	for _, o := range []struct {
		org    tablestore.Org
		tenant string
	}{{r.acme, testenv.Tenant}, {r.globex, otherTenant}} {
		r.connect(t, o.org, o.tenant)
	}
	return r
}

// connect makes org connected to tenant, for Microsoft 365 and Teams.
func (r *rig) connect(t *testing.T, org tablestore.Org, tenant string) {
	t.Helper()
	ctx := t.Context()
	if _, err := r.conns.Put(ctx, org, connection.Record{Status: connection.Connected, TenantID: tenant}, ""); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.conns.Tenants().Claim(ctx, tenant, org, false); !ok || err != nil {
		t.Fatalf("claim %s: %v %v", tenant, ok, err)
	}
	if err := r.conns.Tenants().Complete(ctx, tenant, org, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.teams.Put(ctx, org, teamsconn.Record{Status: teamsconn.Connected, TenantID: tenant}, ""); err != nil {
		t.Fatal(err)
	}
}

// person adds a user to tenant and, when org is set, the stakeholder synced from them.
func (r *rig) person(t *testing.T, tenant string, org *tablestore.Org, first, last, mail, role string) string {
	t.Helper()
	u, err := r.sim.AddUser(tenant, m365sim.User{DisplayName: first + " " + last, GivenName: first, Surname: last, Mail: mail,
		UserPrincipalName: mail, AccountEnabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if org != nil {
		st := stakeholder.Stakeholder{ID: stakeholder.SyncedID(u.ID), FirstName: first, LastName: last, Email: mail, Role: role,
			Department: "Finance", Source: stakeholder.Entra, ExternalID: u.ID, Active: true, CreatedAt: time.Now(), UpdatedAt: time.Now()}
		if _, err := r.people.Save(t.Context(), *org, st, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	return u.ID
}

// drainJobs runs the bot's queued jobs, each when it is due (the clock moves on to it).
func (r *rig) drainJobs(t *testing.T, b *bot.Bot) int {
	t.Helper()
	n := 0
	for {
		pending := r.env.Queue.Pending()
		if len(pending) == 0 {
			return n
		}
		first := pending[0].NotBefore
		for _, d := range pending {
			if d.NotBefore.Before(first) {
				first = d.NotBefore
			}
		}
		if first.After(r.clock.Now()) {
			r.clock.Advance(first.Sub(r.clock.Now()))
		}
		d, ok := r.env.Queue.Next(r.clock.Now())
		if !ok {
			t.Fatal("no message due after moving the clock to the first")
		}
		if !bot.IsJob(d.Body) {
			t.Fatalf("a message that is not a bot job: %s", d.Body)
		}
		if err := b.HandleJob(t.Context(), d.Body); err != nil {
			t.Fatal(err)
		}
		n++
	}
}

// say sends a message from the user to the bot, signed as opts say, and returns the status.
func (r *rig) say(t *testing.T, tenant, user string, a map[string]any, opts m365sim.BotSign) (int, []byte) {
	t.Helper()
	resp, err := r.sim.SendBotActivity(t.Context(), tenant, user, a, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// replies are the cards the bot posted to the user's conversation, as JSON text.
func (r *rig) replies(t *testing.T, tenant, user string) []string {
	t.Helper()
	var out []string
	for _, p := range r.sim.BotPosted(r.sim.BotConversation(tenant, user)) {
		out = append(out, string(p.Activity))
	}
	return out
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func decodeInvoke(t *testing.T, body []byte) botframework.InvokeResponse {
	t.Helper()
	var ir botframework.InvokeResponse
	if err := json.Unmarshal(body, &ir); err != nil {
		t.Fatalf("invoke response %s: %v", body, err)
	}
	return ir
}

var _ = http.StatusOK

func stakeholderID(entraID string) string { return stakeholder.SyncedID(entraID) }

// groupWith makes a manual stakeholder group with these members.
func groupWith(t *testing.T, r *rig, id string, members ...string) error {
	if err := r.groups.Put(t.Context(), r.acme, stakeholder.Group{ID: id, Name: id, Type: "functional", Source: stakeholder.Manual, Active: true}); err != nil {
		return err
	}
	_, _, err := r.groups.SetMembers(t.Context(), r.acme, id, members, stakeholder.Manual, time.Now())
	return err
}

// botConfig is the rig's bot configuration with another answer budget.
func (r *rig) botConfig(budget time.Duration) bot.Config {
	return bot.Config{
		Validator: botframework.NewValidator(botframework.ValidatorConfig{MetadataURL: r.sim.BotOpenIDMetadataURL(), AppID: botAppID,
			HTTPClient: r.sim.HTTPClient(), Now: r.clock.Now}),
		Now:           r.clock.Now,
		Orgs:          r.conns.Tenants(),
		Teams:         r.teams,
		Conversations: r.convs,
		Replier:       r.client,
		Directory:     r.people,
		Memberships:   r.groups,
		Changes:       r.changes,
		Responses:     r.p,
		Queue:         r.env.Queue,
		Budget:        budget,
	}
}
