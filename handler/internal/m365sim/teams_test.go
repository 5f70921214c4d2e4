package m365sim_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

const (
	manifestID = "0f3c5a7e-2b4d-4c6e-8f10-213243546576"
	botClient  = "6d0a4f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6" // the tests' clientID: the bot installs itself
)

// teamsSim is a sim whose tenant A has three teams, a published app linked to clientID and a
// user; consented with roles (the default consent of newSim is replaced).
func teamsSim(t *testing.T, opts m365sim.Options, roles ...string) (*m365sim.Server, string, m365sim.User) {
	t.Helper()
	sim, _ := newSim(t, opts)
	if err := sim.Consent(tenantA, clientID, roles...); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"Finance", "Field Operations", "Facilities"} {
		if _, err := sim.AddTeam(tenantA, m365sim.Team{DisplayName: name, Description: fmt.Sprintf("team %d", i)},
			m365sim.Channel{DisplayName: "Budget"}, m365sim.Channel{DisplayName: "Leads", MembershipType: "private"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sim.AddTeam(tenantA, m365sim.Team{DisplayName: "Sales"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.AddTeamsApp(tenantA, m365sim.TeamsApp{ExternalID: manifestID, DisplayName: "Leap Change", AzureADAppID: botClient}); err != nil {
		t.Fatal(err)
	}
	u, err := sim.AddUser(tenantA, m365sim.User{DisplayName: "Ines Okafor", UserPrincipalName: "ines@fabrikam.example", AccountEnabled: true})
	if err != nil {
		t.Fatal(err)
	}
	return sim, token(t, sim, tenantA), u
}

func values(m map[string]any) []map[string]any {
	var out []map[string]any
	vs, _ := m["value"].([]any)
	for _, v := range vs {
		out = append(out, v.(map[string]any))
	}
	return out
}

func errorCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestTeamsListPagingFilterSelect(t *testing.T) {
	sim, tok, _ := teamsSim(t, m365sim.Options{PageSize: 2}, "Team.ReadBasic.All")
	var names []string
	link := "/v1.0/teams"
	for link != "" {
		st, _, m := get(t, sim, tok, link)
		if st != 200 {
			t.Fatalf("GET %s: %d %v", link, st, m)
		}
		for _, v := range values(m) {
			names = append(names, v["displayName"].(string))
			if v["visibility"] != "public" || v["webUrl"] != nil {
				t.Errorf("team %v: want visibility public and null webUrl", v)
			}
		}
		link, _ = m["@odata.nextLink"].(string)
		if len(names) > 10 {
			t.Fatal("paging never ends")
		}
	}
	if strings.Join(names, ",") != "Finance,Field Operations,Facilities,Sales" {
		t.Errorf("teams = %v", names)
	}

	// The search the client uses: $filter=startswith(displayName,'…') (case-insensitive), with $select.
	st, _, m := get(t, sim, tok, "/v1.0/teams?"+url.Values{"$filter": {"startswith(displayName, 'fi')"}, "$select": {"id,displayName"}, "$count": {"true"}}.Encode())
	got := values(m)
	if st != 200 || len(got) != 2 || got[0]["displayName"] != "Finance" || got[1]["displayName"] != "Field Operations" || m["@odata.count"] != 2.0 {
		t.Fatalf("filtered: %d %v", st, m)
	}
	if _, ok := got[0]["description"]; ok || !strings.HasSuffix(m["@odata.context"].(string), "$metadata#teams(id,displayName)") {
		t.Errorf("$select ignored: %v", m)
	}
	if st, _, m := get(t, sim, tok, "/v1.0/teams?$select=nope"); st != 400 || errorCode(m) != "BadRequest" {
		t.Errorf("unknown $select: %d %v", st, m)
	}
	if st, _, m := get(t, sim, tok, "/v1.0/teams?"+url.Values{"$filter": {"contains(displayName,'x')"}}.Encode()); st != 400 {
		t.Errorf("unsupported filter: %d %v", st, m)
	}
}

func TestTeamsPermissions(t *testing.T) {
	sim, tok, u := teamsSim(t, m365sim.Options{}, "User.Read.All")
	for _, path := range []string{"/v1.0/teams", "/v1.0/appCatalogs/teamsApps", "/v1.0/users/" + u.ID + "/teamwork/installedApps"} {
		st, _, m := get(t, sim, tok, path)
		msg, _ := m["error"].(map[string]any)["message"].(string)
		if st != 403 || errorCode(m) != "Forbidden" || !strings.HasPrefix(msg, "Missing role permissions on the request. API requires one of '") ||
			!strings.Contains(msg, "Roles on the request 'User.Read.All'") {
			t.Errorf("GET %s without permission: %d %v", path, st, m)
		}
	}
	team := sim.TeamsOf(tenantA)[0]
	if st, _, m := get(t, sim, tok, "/v1.0/teams/"+team.ID+"/channels"); st != 403 {
		t.Errorf("channels without permission: %d %v", st, m)
	}
	// A higher privileged permission is accepted.
	if err := sim.Consent(tenantA, clientID, "TeamSettings.Read.All", "Group.Read.All"); err != nil {
		t.Fatal(err)
	}
	tok = token(t, sim, tenantA)
	if st, _, m := get(t, sim, tok, "/v1.0/teams"); st != 200 {
		t.Errorf("teams with TeamSettings.Read.All: %d %v", st, m)
	}
	if st, _, m := get(t, sim, tok, "/v1.0/teams/"+team.ID+"/channels"); st != 200 {
		t.Errorf("channels with Group.Read.All: %d %v", st, m)
	}
}

func TestChannels(t *testing.T) {
	sim, tok, _ := teamsSim(t, m365sim.Options{}, "Channel.ReadBasic.All")
	team := sim.TeamsOf(tenantA)[0]
	st, _, m := get(t, sim, tok, "/v1.0/teams/"+team.ID+"/channels")
	got := values(m)
	if st != 200 || len(got) != 3 || got[0]["displayName"] != "General" || got[2]["membershipType"] != "private" ||
		!strings.HasPrefix(got[1]["id"].(string), "19:") || !strings.HasSuffix(got[1]["id"].(string), "@thread.tacv2") {
		t.Fatalf("channels: %d %v", st, m)
	}
	st, _, m = get(t, sim, tok, "/v1.0/teams/"+team.ID+"/channels?"+url.Values{"$filter": {"membershipType eq 'standard'"}, "$select": {"id,displayName,membershipType"}}.Encode())
	if got := values(m); st != 200 || len(got) != 2 || len(got[0]) != 3 {
		t.Errorf("filtered channels: %d %v", st, m)
	}
	if st, _, m := get(t, sim, tok, "/v1.0/teams/00000000-0000-4000-8000-000000000000/channels"); st != 404 || errorCode(m) != "NotFound" {
		t.Errorf("unknown team: %d %v", st, m)
	}
	if c, err := sim.AddChannel(tenantA, team.ID, m365sim.Channel{DisplayName: "Budget"}); err == nil {
		t.Errorf("a second channel named Budget was added: %+v", c)
	}
}

func TestGenerateTeams(t *testing.T) {
	sim, _ := newSim(t, m365sim.Options{})
	a, err := sim.GenerateTeams(tenantA, 5, 3)
	if err != nil || len(a) != 5 {
		t.Fatalf("GenerateTeams: %v %v", a, err)
	}
	sim2, _ := newSim(t, m365sim.Options{})
	b, _ := sim2.GenerateTeams(tenantA, 5, 3)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("not deterministic: %v vs %v", a, b)
	}
	for _, team := range a {
		if cs, err := sim.ChannelsOf(tenantA, team.ID); err != nil || len(cs) < 2 {
			t.Errorf("team %s: channels %v %v", team.DisplayName, cs, err)
		}
	}
}

func TestAppCatalog(t *testing.T) {
	sim, tok, _ := teamsSim(t, m365sim.Options{}, "AppCatalog.Read.All")
	id, err := sim.PublishTeamsApp(tenantA, manifestID)
	if err != nil || id != sim.TeamsApps(tenantA)[0].ID {
		t.Fatalf("PublishTeamsApp of a published app = %q, %v; want the existing id", id, err)
	}
	st, _, m := get(t, sim, tok, "/v1.0/appCatalogs/teamsApps?"+url.Values{"$filter": {"externalId eq '" + manifestID + "'"}}.Encode())
	got := values(m)
	if st != 200 || len(got) != 1 || got[0]["id"] != id || got[0]["distributionMethod"] != "organization" || got[0]["externalId"] != manifestID {
		t.Errorf("catalog lookup: %d %v", st, m)
	}
	st, _, m = get(t, sim, tok, "/v1.0/appCatalogs/teamsApps?"+url.Values{"$filter": {"externalId eq 'absent'"}}.Encode())
	if st != 200 || len(values(m)) != 0 {
		t.Errorf("absent app: %d %v", st, m)
	}
}

func installBody(appID string) string {
	return `{"teamsApp@odata.bind":"https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/` + appID + `"}`
}

func TestInstallAppForUser(t *testing.T) {
	sim, tok, u := teamsSim(t, m365sim.Options{}, "TeamsAppInstallation.ReadWriteSelfForUser.All")
	app := sim.TeamsApps(tenantA)[0]
	base := "/v1.0/users/" + u.ID + "/teamwork/installedApps"

	st, _, raw, _ := call(t, sim, "POST", tok, base, strings.NewReader(installBody(app.ID)), "Content-Type", "application/json")
	if st != 201 || len(raw) != 0 {
		t.Fatalf("install: %d %s", st, raw)
	}
	if st, _, m := post(t, sim, tok, base, installBody(app.ID)); st != 409 || errorCode(m) != "Conflict" {
		t.Errorf("second install: %d %v, want 409 Conflict", st, m)
	}
	// By UPN too, as Graph accepts.
	st, _, m := get(t, sim, tok, "/v1.0/users/"+u.UserPrincipalName+"/teamwork/installedApps?"+
		url.Values{"$expand": {"teamsApp"}, "$filter": {"teamsApp/id eq '" + app.ID + "'"}}.Encode())
	got := values(m)
	if st != 200 || len(got) != 1 {
		t.Fatalf("installed apps: %d %v", st, m)
	}
	instID := got[0]["id"].(string)
	dec, _ := base64.StdEncoding.DecodeString(instID)
	if string(dec) != u.ID+"##"+app.ID || got[0]["teamsApp"].(map[string]any)["externalId"] != manifestID {
		t.Errorf("installation %v", got[0])
	}
	st, _, m = get(t, sim, tok, base+"/"+url.PathEscape(instID)+"/chat")
	if want := m365sim.PersonalChatID(u.ID, botClient); st != 200 || m["id"] != want || m["chatType"] != "oneOnOne" {
		t.Errorf("chat: %d %v, want id %s", st, m, want)
	}
	if in := sim.Installations(tenantA, u.ID); len(in) != 1 || in[0].ID != instID || in[0].ChatID != m["id"] {
		t.Errorf("Installations = %+v", in)
	}

	for _, tc := range []struct {
		name, path, body string
		status           int
	}{
		{"unknown app", base, installBody("11111111-2222-4333-8444-555555555555"), 404},
		{"unknown user", "/v1.0/users/00000000-0000-4000-8000-000000000000/teamwork/installedApps", installBody(app.ID), 404},
		{"no bind", base, `{}`, 400},
		{"not JSON", base, `{`, 400},
	} {
		if st, _, m := post(t, sim, tok, tc.path, tc.body); st != tc.status {
			t.Errorf("%s: %d %v, want %d", tc.name, st, m, tc.status)
		}
	}

	if st, _, raw, _ := call(t, sim, "DELETE", tok, base+"/"+url.PathEscape(instID), nil); st != 204 || len(raw) != 0 {
		t.Errorf("uninstall: %d %s", st, raw)
	}
	if st, _, m := get(t, sim, tok, base); st != 200 || len(values(m)) != 0 {
		t.Errorf("after uninstall: %d %v", st, m)
	}
	if st, _, m := get(t, sim, tok, base+"/"+url.PathEscape(instID)+"/chat"); st != 404 {
		t.Errorf("chat after uninstall: %d %v", st, m)
	}
}

// An installation id is base64: the SDK sends its '=' (and any '/' or '+') percent-encoded.
func TestInstallationIDEscaped(t *testing.T) {
	sim, tok, u := teamsSim(t, m365sim.Options{}, "TeamsAppInstallation.ReadWriteForUser.All")
	app := sim.TeamsApps(tenantA)[0]
	instID, err := sim.InstallTeamsApp(tenantA, u.ID, app.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := sim.InstallTeamsApp(tenantA, u.ID, app.ID); err != nil || again != instID {
		t.Errorf("second InstallTeamsApp = %q, %v; want %q", again, err, instID)
	}
	escaped := strings.NewReplacer("=", "%3D", "/", "%2F", "+", "%2B").Replace(instID)
	st, _, m := get(t, sim, tok, "/v1.0/users/"+u.ID+"/teamwork/installedApps/"+escaped+"/chat")
	if st != 200 || m["id"] == nil {
		t.Errorf("chat of %s: %d %v", escaped, st, m)
	}
}

// With the Self permission an app installs only itself.
func TestInstallSelfOnly(t *testing.T) {
	sim, tok, u := teamsSim(t, m365sim.Options{}, "TeamsAppInstallation.ReadWriteSelfForUser.All")
	other, err := sim.AddTeamsApp(tenantA, m365sim.TeamsApp{ExternalID: "other-manifest", AzureADAppID: "99999999-8888-4777-8666-555555555555"})
	if err != nil {
		t.Fatal(err)
	}
	base := "/v1.0/users/" + u.ID + "/teamwork/installedApps"
	if st, _, m := post(t, sim, tok, base, installBody(other.ID)); st != 403 || errorCode(m) != "Forbidden" {
		t.Errorf("installing another app: %d %v", st, m)
	}
	// The other app, installed by the user, is invisible to the Self permission.
	if _, err := sim.InstallTeamsApp(tenantA, u.ID, other.ID); err != nil {
		t.Fatal(err)
	}
	if st, _, m := get(t, sim, tok, base); st != 200 || len(values(m)) != 0 {
		t.Errorf("Self sees other apps: %d %v", st, m)
	}
	// A second registered app with ReadForUser.All sees both.
	const reader = "7e1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	sim.RegisterApp(reader, secret)
	if err := sim.Consent(tenantA, reader, "TeamsAppInstallation.ReadForUser.All"); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.InstallTeamsApp(tenantA, u.ID, sim.TeamsApps(tenantA)[0].ID); err != nil {
		t.Fatal(err)
	}
	rt, err := credential(t, sim, tenantA, reader, secret).GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://graph.microsoft.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	if st, _, m := get(t, sim, rt.Token, base); st != 200 || len(values(m)) != 2 {
		t.Errorf("ReadForUser.All: %d %v", st, m)
	}
	if st, _, m := post(t, sim, rt.Token, base, installBody(other.ID)); st != 403 {
		t.Errorf("install with a read permission: %d %v", st, m)
	}
}

func TestUninstallBot(t *testing.T) {
	sim, _, u := teamsSim(t, m365sim.Options{}, "TeamsAppInstallation.ReadWriteSelfForUser.All")
	if _, err := sim.InstallTeamsApp(tenantA, u.UserPrincipalName, sim.TeamsApps(tenantA)[0].ID); err != nil {
		t.Fatal(err)
	}
	if len(sim.Installations(tenantA, u.ID)) != 1 {
		t.Fatal("not installed")
	}
	sim.UninstallBot(tenantA, u.ID)
	if in := sim.Installations(tenantA, u.ID); len(in) != 0 {
		t.Errorf("after UninstallBot: %+v", in)
	}
}

// Installing through Graph tells the bot (conversationUpdate, installationUpdate add), and the
// chat Graph answers is the Bot Connector's 1:1 chat with the registered bot; uninstalling
// tells it too (installationUpdate remove).
func TestInstallReachesTheBot(t *testing.T) {
	sim, tok, u := teamsSim(t, m365sim.Options{}, "TeamsAppInstallation.ReadWriteSelfForUser.All")
	var mu sync.Mutex
	var got []string
	bot := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a struct{ Type, Action string }
		json.NewDecoder(r.Body).Decode(&a)
		mu.Lock()
		got = append(got, strings.TrimSpace(a.Type+" "+a.Action))
		mu.Unlock()
	}))
	t.Cleanup(bot.Close)
	const botApp = "5c4b3a29-1807-4f6e-9d5c-4b3a29180706"
	sim.RegisterBot(botApp, tenantB, "bot-secret", bot.URL+"/api/messages")
	sim.SetBotEndpointClient(bot.Client())
	catalogID, err := sim.PublishTeamsApp(tenantA, "bot-manifest") // no AzureADAppID: the registered bot
	if err != nil {
		t.Fatal(err)
	}
	base := "/v1.0/users/" + u.ID + "/teamwork/installedApps"
	if st, _, m := post(t, sim, tok, base, installBody(catalogID)); st != 201 {
		t.Fatalf("install: %d %v", st, m)
	}
	sim.BotWait()
	in := sim.Installations(tenantA, u.ID)
	if len(in) != 1 || in[0].ChatID != sim.BotChatID(tenantA, u.ID) {
		t.Fatalf("installations %+v, want the chat %s", in, sim.BotChatID(tenantA, u.ID))
	}
	if st, _, m := get(t, sim, tok, base+"/"+url.PathEscape(in[0].ID)+"/chat"); st != 200 || m["id"] != sim.BotChatID(tenantA, u.ID) {
		t.Errorf("chat: %d %v", st, m)
	}
	if st, _, raw, _ := call(t, sim, "DELETE", tok, base+"/"+url.PathEscape(in[0].ID), nil); st != 204 {
		t.Fatalf("uninstall: %d %s", st, raw)
	}
	sim.BotWait()
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "conversationUpdate,installationUpdate add,installationUpdate remove" {
		t.Errorf("the bot received %v", got)
	}
}

func TestTeamsAdminAPI(t *testing.T) {
	sim, _, u := teamsSim(t, m365sim.Options{Admin: true}, "Team.ReadBasic.All")
	var team struct {
		m365sim.Team
		Channels []m365sim.Channel `json:"channels"`
	}
	if st := admin(t, sim, "POST", "/_sim/teams/"+tenantA+"/teams", `{"displayName":"Demo","channels":[{"displayName":"Pilots"}]}`, &team); st != 200 ||
		team.ID == "" || len(team.Channels) != 2 || team.Channels[1].DisplayName != "Pilots" {
		t.Fatalf("add team: %d %+v", st, team)
	}
	var ch m365sim.Channel
	if st := admin(t, sim, "POST", "/_sim/teams/"+tenantA+"/teams/"+team.ID+"/channels", `{"displayName":"Go-live","membershipType":"private"}`, &ch); st != 200 || ch.ID == "" {
		t.Errorf("add channel: %d %+v", st, ch)
	}
	var teams []json.RawMessage
	if st := admin(t, sim, "GET", "/_sim/teams/"+tenantA+"/teams", "", &teams); st != 200 || len(teams) != 5 {
		t.Errorf("list teams: %d %d", st, len(teams))
	}
	var gen []m365sim.Team
	if st := admin(t, sim, "POST", "/_sim/teams/"+tenantA+"/generate", `{"teams":3,"seed":1}`, &gen); st != 200 || len(gen) != 3 {
		t.Errorf("generate: %d %v", st, gen)
	}
	var app m365sim.TeamsApp
	if st := admin(t, sim, "POST", "/_sim/teams/"+tenantA+"/apps", `{"externalId":"demo-manifest","displayName":"Demo"}`, &app); st != 200 || app.ID == "" || app.DistributionMethod != "organization" {
		t.Fatalf("publish: %d %+v", st, app)
	}
	var inst map[string]string
	if st := admin(t, sim, "POST", "/_sim/teams/"+tenantA+"/users/"+u.UserPrincipalName+"/installations", `{"teamsAppId":"`+app.ID+`"}`, &inst); st != 200 || inst["id"] == "" {
		t.Fatalf("install: %d %v", st, inst)
	}
	var list []m365sim.TeamsAppInstallation
	if st := admin(t, sim, "GET", "/_sim/teams/"+tenantA+"/users/"+u.ID+"/installations", "", &list); st != 200 || len(list) != 1 || list[0].ChatID == "" {
		t.Errorf("installations: %d %+v", st, list)
	}
	if st := admin(t, sim, "DELETE", "/_sim/teams/"+tenantA+"/users/"+u.ID+"/installations", "", nil); st != 204 || len(sim.Installations(tenantA, u.ID)) != 0 {
		t.Errorf("uninstall: %d", st)
	}
	if st := admin(t, sim, "GET", "/_sim/teams/unknown-tenant/apps", "", nil); st != 404 {
		t.Errorf("unknown tenant: %d", st)
	}
	if st := admin(t, sim, "POST", "/_sim/teams/"+tenantA+"/teams/nope/channels", `{"displayName":"x"}`, nil); st != 404 {
		t.Errorf("unknown team: %d", st)
	}
}
