package api_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/api"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/org"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/teamsconn"
)

// The Teams endpoints over the real Teams connector and stores (Azurite); only Microsoft is
// stood in for, by teamsTenant: the api package must not import the Graph client, and the Graph
// side has its own tests against the simulated tenant.

const (
	teamsTenantID = "7a1c2e3f-4b5d-4e6f-8a9b-0c1d2e3f4a5b"
	teamsAppID    = "3f2e1d0c-9b8a-4765-8432-10fedcba9876" // the Teams app's manifest id
	teamsOrg      = "/api/orgs/org-t"                      // connected to Microsoft 365
	teamsOffline  = "/api/orgs/org-u"                      // never connected to Microsoft 365
	teamsReauth   = "/api/orgs/org-r"                      // its connection needs re-authorization

	notReadyType     = "urn:leapchange:problem:channel-not-ready"
	notConnectedType = "urn:leapchange:problem:not-connected"
	unavailableType  = "urn:leapchange:problem:temporarily-unavailable"
)

// Stand-in ids of the tenant's teams and channels.
const (
	teamOps, teamHR         = "0a5e3c1d-0000-4000-8000-000000000001", "0a5e3c1d-0000-4000-8000-000000000002"
	chanGeneral, chanAlerts = "19:general@thread.tacv2", "19:alerts@thread.tacv2"
)

// teamsTenant is the tenant as the Teams connector (granted roles, app catalog, channel names)
// and GET /teams/channels (teams, channels) see it.
type teamsTenant struct {
	mu sync.Mutex
	tenantState
}

type tenantState struct {
	granted  []string
	catalog  string // the app's catalog id; "" when the app is not in the catalog
	teams    []teamsconn.Team
	channels map[string][]teamsconn.ChannelInfo
	fail     map[string]error            // by method name: the error its calls return
	pages    map[string][]teamsconn.Team // by page token: the pages after the first
	searched []string                    // the search text of each Teams call
}

func defaultTenant() tenantState {
	return tenantState{
		granted: append(slices.Clone(teamsconn.Required), "AppCatalog.Read.All", "User.Read.All"),
		catalog: "c0ffee00-1111-4222-8333-444455556666",
		teams: []teamsconn.Team{
			{ID: teamOps, DisplayName: "Operations", Description: "Ops"},
			{ID: teamHR, DisplayName: "HR"},
		},
		channels: map[string][]teamsconn.ChannelInfo{
			teamOps: {{ID: chanGeneral, DisplayName: "General", MembershipType: "standard"}, {ID: chanAlerts, DisplayName: "Alerts", MembershipType: "private"}},
			teamHR:  {},
		},
		fail: map[string]error{},
	}
}

// reset puts the tenant back as defaultTenant has it, then applies change (when not nil), under
// its lock: the server reads it on its own goroutines.
func (s *teamsTenant) reset(change func(*tenantState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tenantState = defaultTenant()
	if change != nil {
		change(&s.tenantState)
	}
}

// set changes the tenant under its lock.
func (s *teamsTenant) set(change func(*tenantState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(&s.tenantState)
}

func (s *teamsTenant) check(op, tenantID string) error {
	if tenantID != teamsTenantID {
		return fmt.Errorf("teams stand-in: %s asked about tenant %q: %w", op, tenantID, errkind.Invalid)
	}
	return s.fail[op]
}

func (s *teamsTenant) Roles(_ context.Context, tenantID string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("Roles", tenantID); err != nil {
		return nil, err
	}
	return slices.Clone(s.granted), nil
}

func (s *teamsTenant) AppCatalogID(_ context.Context, tenantID, externalID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("AppCatalogID", tenantID); err != nil {
		return "", err
	}
	if externalID != teamsAppID || s.catalog == "" {
		return "", &errkind.Error{Kind: errkind.NotFound, Status: http.StatusNotFound, Message: "no such app in the catalog"}
	}
	return s.catalog, nil
}

func (s *teamsTenant) ChannelNames(_ context.Context, tenantID, teamID string) (string, map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("ChannelNames", tenantID); err != nil {
		return "", nil, err
	}
	i := slices.IndexFunc(s.teams, func(t teamsconn.Team) bool { return t.ID == teamID })
	if i < 0 {
		return "", nil, &errkind.Error{Kind: errkind.NotFound, Status: http.StatusNotFound, Message: "no such team"}
	}
	names := map[string]string{}
	for _, c := range s.channels[teamID] {
		names[c.ID] = c.DisplayName
	}
	return s.teams[i].DisplayName, names, nil
}

func (s *teamsTenant) Teams(_ context.Context, tenantID, search, pageToken string) ([]teamsconn.Team, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("Teams", tenantID); err != nil {
		return nil, "", err
	}
	s.searched = append(s.searched, search)
	if pageToken != "" {
		page, ok := s.pages[pageToken]
		if !ok {
			return nil, "", &errkind.Error{Kind: errkind.Invalid, Status: http.StatusBadRequest, Message: "not a page token"}
		}
		return slices.Clone(page), "", nil
	}
	var out []teamsconn.Team
	for _, t := range s.teams {
		if strings.HasPrefix(strings.ToLower(t.DisplayName), strings.ToLower(search)) {
			out = append(out, t)
		}
	}
	next := ""
	if len(s.pages) > 0 {
		next = "p2"
	}
	return out, next, nil
}

func (s *teamsTenant) Channels(_ context.Context, tenantID, teamID string) ([]teamsconn.ChannelInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check("Channels", tenantID); err != nil {
		return nil, err
	}
	chans, ok := s.channels[teamID]
	if !ok {
		return nil, &errkind.Error{Kind: errkind.NotFound, Status: http.StatusNotFound, Message: "no such team"}
	}
	return slices.Clone(chans), nil
}

type teamsFixture struct {
	*fixture
	tenant *teamsTenant
	teams  *teamsconn.Store
}

// setupTeams serves the API with the Teams connector and stores on Azurite, for org-t
// (connected to Microsoft 365), org-u (never connected) and org-r (needs re-authorization).
func setupTeams(t *testing.T) *teamsFixture {
	t.Helper()
	store := tablestoretest.Open(t)
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	orgs := org.New(org.Config{Store: store, Now: clock})
	conns := connection.NewStore(store)
	for id, status := range map[string]connection.Status{"org-t": connection.Connected, "org-u": "", "org-r": connection.NeedsReauthorization} {
		o := tablestoretest.Org(t, id)
		if _, _, err := orgs.Register(t.Context(), o, org.Registration{DisplayName: id, TimeZone: "Europe/London"}); err != nil {
			t.Fatal(err)
		}
		if status == "" {
			continue
		}
		if _, err := conns.Put(t.Context(), o, connection.Record{Status: status, TenantID: teamsTenantID, Granted: []string{"User.Read.All"}}, ""); err != nil {
			t.Fatal(err)
		}
	}
	f := &teamsFixture{fixture: &fixture{store: store, orgs: orgs}, tenant: &teamsTenant{tenantState: defaultTenant()}, teams: teamsconn.NewStore(store)}
	connector := teamsconn.NewConnector(teamsconn.ConnectorConfig{Store: f.teams, Connections: conns, Roles: f.tenant, Catalog: f.tenant,
		AppID: teamsAppID, Now: clock})
	f.srv = httptest.NewServer(api.New(api.Deps{Orgs: orgs, Connections: conns, TeamsConnector: connector, TeamsRecords: f.teams,
		TeamsDirectory: f.tenant, Now: clock}))
	t.Cleanup(f.srv.Close)
	return f
}

// teamsRecord reads GET /teams.
func (f *teamsFixture) teamsRecord(t *testing.T, path string) answer {
	t.Helper()
	a := f.do(t, "GET", path+"/teams", "", "")
	if a.status != http.StatusOK {
		t.Fatalf("GET /teams = %d %s", a.status, a.raw)
	}
	return a
}

// arr is a decoded JSON array, nil when v is not one (null, absent).
func arr(v any) []any {
	a, _ := v.([]any)
	return a
}

// strs returns the strings of a decoded JSON array.
func strs(v any) []string {
	var out []string
	for _, e := range arr(v) {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func TestTeamsConnect(t *testing.T) {
	f := setupTeams(t)
	channel := func(team, ch string) string { return fmt.Sprintf(`{"teamId":%q,"channelId":%q}`, team, ch) }
	var many []string
	for range teamsconn.MaxDefaultChannels + 1 {
		many = append(many, channel(teamOps, chanGeneral))
	}
	unavailable := &errkind.Error{Kind: errkind.Unavailable, Status: http.StatusServiceUnavailable, Message: "Graph is down"}

	// Refusals first: each leaves the org's Teams disconnected, as it was.
	for _, tc := range []struct {
		name, org, body string
		tenant          func(*tenantState)
		status          int
		typ, field      string
		missing         []string
	}{
		{name: "too many channels", body: `{"defaultChannels":[` + strings.Join(many, ",") + `]}`, status: 400, typ: invalidType, field: "defaultChannels"},
		{name: "blank teamId", body: `{"defaultChannels":[` + channel("  ", chanGeneral) + `]}`, status: 400, typ: invalidType, field: "defaultChannels[0].teamId"},
		{name: "blank channelId", body: `{"defaultChannels":[` + channel(teamOps, chanGeneral) + `,` + channel(teamOps, "") + `]}`, status: 400, typ: invalidType, field: "defaultChannels[1].channelId"},
		{name: "catalogAppId too long", body: `{"catalogAppId":"` + strings.Repeat("c", 201) + `"}`, status: 400, typ: invalidType, field: "catalogAppId"},
		{name: "unknown field", body: `{"channels":[]}`, status: 400, typ: invalidType, field: "body"},
		{name: "no such team", body: `{"defaultChannels":[` + channel("0a5e3c1d-0000-4000-8000-00000000ffff", chanGeneral) + `]}`, status: 400, typ: invalidType, field: "defaultChannels[0].teamId"},
		{name: "no such channel", body: `{"defaultChannels":[` + channel(teamHR, chanGeneral) + `]}`, status: 400, typ: invalidType, field: "defaultChannels[0].channelId"},
		{name: "not connected to Microsoft 365", org: teamsOffline, body: `{}`, status: 409, typ: notReadyType},
		{name: "Microsoft 365 needs re-authorization", org: teamsReauth, body: `{}`, status: 409, typ: notReadyType},
		{name: "permissions missing", body: `{}`, tenant: func(s *tenantState) { s.granted = []string{"User.Read.All", "Team.ReadBasic.All"} },
			status: 409, typ: notReadyType, missing: []string{"TeamsAppInstallation.ReadWriteSelfForUser.All", "Channel.ReadBasic.All"}},
		{name: "no permission at all", body: `{}`, tenant: func(s *tenantState) { s.granted = nil }, status: 409, typ: notReadyType, missing: teamsconn.Required},
		{name: "app not in the catalog", body: `{}`, tenant: func(s *tenantState) { s.catalog = "" }, status: 409, typ: notReadyType},
		{name: "Graph unavailable reading the roles", body: `{}`, tenant: func(s *tenantState) { s.fail["Roles"] = unavailable }, status: 502, typ: unavailableType},
		{name: "Graph throttling the catalog", body: `{}`, status: 502, typ: unavailableType,
			tenant: func(s *tenantState) {
				s.fail["AppCatalogID"] = &errkind.Error{Kind: errkind.Throttled, Status: 429, RetryAfter: time.Second}
			}},
		{name: "token refused reading the roles", body: `{}`, tenant: func(s *tenantState) {
			s.fail["Roles"] = &errkind.Error{Kind: errkind.Unauthorized, Status: 401}
		}, status: 409, typ: notConnectedType},
		{name: "channels unreadable", body: `{"defaultChannels":[` + channel(teamOps, chanGeneral) + `]}`, status: 409, typ: notReadyType,
			missing: []string{"Channel.ReadBasic.All"}, tenant: func(s *tenantState) { s.fail["ChannelNames"] = &errkind.Error{Kind: errkind.Forbidden, Status: 403} }},
		{name: "Graph unavailable checking a channel", body: `{"defaultChannels":[` + channel(teamOps, chanGeneral) + `]}`, status: 502, typ: unavailableType,
			tenant: func(s *tenantState) { s.fail["ChannelNames"] = unavailable }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.tenant.reset(tc.tenant)
			o := cmp.Or(tc.org, teamsOrg)
			a := f.do(t, "POST", o+"/teams/connect", "application/json", tc.body)
			wantProblem(t, a, tc.status, tc.typ, tc.field)
			got, _ := a.body["missingPermissions"].([]any)
			if tc.missing != nil && !slices.Equal(strs(got), tc.missing) || tc.missing == nil && got != nil {
				t.Errorf("missingPermissions = %v, want %v", got, tc.missing)
			}
			for _, p := range tc.missing {
				if !strings.Contains(a.body["detail"].(string), p) {
					t.Errorf("detail %q does not name %s", a.body["detail"], p)
				}
			}
			if rec := f.teamsRecord(t, o); rec.body["status"] != teamsconn.Disconnected {
				t.Errorf("a refused connect recorded %s", rec.raw)
			}
		})
	}

	// Connecting: the record answered is the one GET /teams reads.
	for _, tc := range []struct {
		name, body      string
		tenant          func(*tenantState)
		catalog, source string
		channels        []teamsconn.Channel
	}{
		{name: "no body", catalog: "c0ffee00-1111-4222-8333-444455556666", source: "catalog", channels: []teamsconn.Channel{}},
		{name: "default channels, one repeated", body: `{"defaultChannels":[` + channel(" "+teamOps+" ", chanAlerts) + `,` + channel(teamOps, chanGeneral) + `,` + channel(teamOps, chanAlerts) + `]}`,
			catalog: "c0ffee00-1111-4222-8333-444455556666", source: "catalog",
			channels: []teamsconn.Channel{{TeamID: teamOps, ChannelID: chanAlerts, TeamName: "Operations", ChannelName: "Alerts"}, {TeamID: teamOps, ChannelID: chanGeneral, TeamName: "Operations", ChannelName: "General"}}},
		{name: "catalog id given", body: `{"catalogAppId":" given-id "}`, catalog: "given-id", source: "admin", channels: []teamsconn.Channel{}},
		{name: "catalog unreadable", body: `{}`, catalog: teamsAppID, source: "manifest", channels: []teamsconn.Channel{},
			tenant: func(s *tenantState) {
				s.granted = slices.Clone(teamsconn.Required)
				s.fail["AppCatalogID"] = &errkind.Error{Kind: errkind.Forbidden, Status: 403, Message: "Missing role permissions"}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.tenant.reset(tc.tenant)
			ct := ""
			if tc.body != "" {
				ct = "application/json"
			}
			a := f.do(t, "POST", teamsOrg+"/teams/connect", ct, tc.body)
			if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json" {
				t.Fatalf("POST /teams/connect = %d %s", a.status, a.raw)
			}
			rec := f.teamsRecord(t, teamsOrg)
			if a.raw != rec.raw {
				t.Errorf("POST answered %s\nGET reads    %s", a.raw, rec.raw)
			}
			if a.body["status"] != teamsconn.Connected || a.body["tenantId"] != teamsTenantID || a.body["catalogAppId"] != tc.catalog ||
				a.body["catalogSource"] != tc.source || a.body["connectedAt"] != "2026-03-01T09:00:00Z" {
				t.Errorf("record = %s", a.raw)
			}
			var chans []teamsconn.Channel
			if arr(a.body["defaultChannels"]) == nil || arr(a.body["granted"]) == nil {
				t.Errorf("defaultChannels or granted is not an array: %s", a.raw)
			}
			for _, c := range arr(a.body["defaultChannels"]) {
				m := c.(map[string]any)
				chans = append(chans, teamsconn.Channel{TeamID: m["teamId"].(string), ChannelID: m["channelId"].(string),
					TeamName: m["teamName"].(string), ChannelName: m["channelName"].(string)})
			}
			if !slices.Equal(append([]teamsconn.Channel{}, chans...), tc.channels) {
				t.Errorf("defaultChannels = %+v, want %+v", chans, tc.channels)
			}
			if !slices.Equal(strs(a.body["requiredPermissions"]), teamsconn.Required) || !slices.Equal(strs(a.body["optionalPermissions"]), teamsconn.Optional) {
				t.Errorf("required/optional permissions = %v / %v", a.body["requiredPermissions"], a.body["optionalPermissions"])
			}
			if g := strs(a.body["granted"]); slices.Contains(g, "User.Read.All") || !slices.Contains(g, "Channel.ReadBasic.All") {
				t.Errorf("granted = %v: the Teams permissions the tenant granted, and only those", g)
			}
		})
	}
}

func TestTeamsDisconnect(t *testing.T) {
	f := setupTeams(t)

	// Never connected: disconnected, with empty lists and the permissions Teams would need.
	rec := f.teamsRecord(t, teamsOffline)
	if rec.body["status"] != teamsconn.Disconnected || len(arr(rec.body["granted"])) != 0 || len(arr(rec.body["defaultChannels"])) != 0 ||
		!slices.Equal(strs(rec.body["requiredPermissions"]), teamsconn.Required) || rec.body["tenantId"] != nil {
		t.Fatalf("GET /teams of an org that never connected = %s", rec.raw)
	}
	if a := f.do(t, "DELETE", teamsOffline+"/teams", "", ""); a.status != http.StatusNoContent || a.raw != "" {
		t.Fatalf("DELETE /teams of an org that never connected = %d %s", a.status, a.raw)
	}

	body := `{"defaultChannels":[{"teamId":"` + teamOps + `","channelId":"` + chanGeneral + `"}]}`
	if a := f.do(t, "POST", teamsOrg+"/teams/connect", "application/json", body); a.status != http.StatusOK {
		t.Fatalf("POST /teams/connect = %d %s", a.status, a.raw)
	}
	for i := range 2 { // idempotent
		if a := f.do(t, "DELETE", teamsOrg+"/teams", "", ""); a.status != http.StatusNoContent || a.raw != "" {
			t.Fatalf("DELETE /teams #%d = %d %s", i+1, a.status, a.raw)
		}
		rec = f.teamsRecord(t, teamsOrg)
		if rec.body["status"] != teamsconn.Disconnected || rec.body["tenantId"] != teamsTenantID || len(arr(rec.body["defaultChannels"])) != 1 {
			t.Fatalf("GET /teams after DELETE #%d = %s, want disconnected with what was recorded", i+1, rec.raw)
		}
	}
	// Connecting again starts afresh.
	if a := f.do(t, "POST", teamsOrg+"/teams/connect", "", ""); a.status != http.StatusOK || a.body["status"] != teamsconn.Connected || len(arr(a.body["defaultChannels"])) != 0 {
		t.Fatalf("POST /teams/connect again = %d %s", a.status, a.raw)
	}
}

func TestTeamsChannels(t *testing.T) {
	f := setupTeams(t)
	forbidden := &errkind.Error{Kind: errkind.Forbidden, Status: http.StatusForbidden, Code: "Forbidden", Message: "Missing role permissions"}
	unavailable := &errkind.Error{Kind: errkind.Unavailable, Status: http.StatusBadGateway}
	listing := []string{"Team.ReadBasic.All", "Channel.ReadBasic.All"}

	for _, tc := range []struct {
		name, path string
		tenant     func(*tenantState)
		status     int
		typ, field string
		missing    []string
	}{
		{name: "not connected to Microsoft 365", path: teamsOffline + "/teams/channels", status: 409, typ: notConnectedType},
		{name: "Microsoft 365 needs re-authorization", path: teamsReauth + "/teams/channels", status: 409, typ: notConnectedType},
		{name: "search too long", path: "/teams/channels?search=" + url.QueryEscape(strings.Repeat("é", 101)), status: 400, typ: invalidType, field: "search"},
		{name: "search of two lines", path: "/teams/channels?search=ops%0Ahr", status: 400, typ: invalidType, field: "search"},
		{name: "search too long, not connected", path: teamsOffline + "/teams/channels?search=" + strings.Repeat("x", 101), status: 400, typ: invalidType, field: "search"},
		{name: "pageToken too long", path: "/teams/channels?pageToken=" + strings.Repeat("A", 4097), status: 400, typ: invalidType, field: "pageToken"},
		{name: "pageToken refused by Graph", path: "/teams/channels?pageToken=forged", status: 400, typ: invalidType, field: "pageToken"},
		{name: "teams forbidden", path: "/teams/channels", tenant: func(s *tenantState) { s.fail["Teams"] = forbidden }, status: 409, typ: notReadyType, missing: listing},
		{name: "channels forbidden", path: "/teams/channels", tenant: func(s *tenantState) { s.fail["Channels"] = forbidden }, status: 409, typ: notReadyType, missing: listing},
		{name: "token refused", path: "/teams/channels", status: 409, typ: notConnectedType,
			tenant: func(s *tenantState) {
				s.fail["Teams"] = &errkind.Error{Kind: errkind.Unauthorized, Status: http.StatusUnauthorized}
			}},
		{name: "teams unavailable", path: "/teams/channels", tenant: func(s *tenantState) { s.fail["Teams"] = unavailable }, status: 502, typ: unavailableType},
		{name: "teams throttled", path: "/teams/channels", status: 502, typ: unavailableType,
			tenant: func(s *tenantState) {
				s.fail["Teams"] = &errkind.Error{Kind: errkind.Throttled, Status: 429, RetryAfter: 2 * time.Second}
			}},
		{name: "channels unavailable", path: "/teams/channels", tenant: func(s *tenantState) { s.fail["Channels"] = unavailable }, status: 502, typ: unavailableType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.tenant.reset(tc.tenant)
			path := tc.path
			if strings.HasPrefix(path, "/teams/") {
				path = teamsOrg + path
			}
			a := f.do(t, "GET", path, "", "")
			wantProblem(t, a, tc.status, tc.typ, tc.field)
			got, _ := a.body["missingPermissions"].([]any)
			if tc.missing != nil && !slices.Equal(strs(got), tc.missing) || tc.missing == nil && got != nil {
				t.Errorf("missingPermissions = %v, want %v", got, tc.missing)
			}
			if strings.Contains(a.raw, "forged") || strings.Contains(a.raw, "Missing role") {
				t.Errorf("the problem leaks Microsoft's answer or the token: %s", a.raw)
			}
		})
	}

	// Listing needs a Microsoft 365 connection, not a Teams one: org-t never connected Teams.
	type page struct {
		Teams []teamsconn.Team `json:"teams"`
		Next  string           `json:"next"`
	}
	read := func(path string) page {
		t.Helper()
		var p page
		a := f.doJSON(t, "GET", teamsOrg+path, &p)
		if a.status != http.StatusOK || !strings.Contains(a.raw, `"next":`) {
			t.Fatalf("GET %s = %d %s", path, a.status, a.raw)
		}
		return p
	}
	f.tenant.reset(func(s *tenantState) {
		delete(s.channels, teamHR) // deleted between the listing and its channels
		s.pages = map[string][]teamsconn.Team{"p2": {{ID: "0a5e3c1d-0000-4000-8000-000000000003", DisplayName: "Sales"}}}
	})
	p := read("/teams/channels")
	want := []teamsconn.Team{
		{ID: teamOps, DisplayName: "Operations", Description: "Ops", Channels: []teamsconn.ChannelInfo{
			{ID: chanGeneral, DisplayName: "General", MembershipType: "standard"}, {ID: chanAlerts, DisplayName: "Alerts", MembershipType: "private"}}},
		{ID: teamHR, DisplayName: "HR", Channels: []teamsconn.ChannelInfo{}},
	}
	if !equalTeams(p.Teams, want) || p.Next != "p2" {
		t.Fatalf("first page = %+v next %q, want %+v next p2", p.Teams, p.Next, want)
	}
	if p = read("/teams/channels?pageToken=" + url.QueryEscape(p.Next)); len(p.Teams) != 1 || p.Teams[0].DisplayName != "Sales" || p.Next != "" {
		t.Fatalf("second page = %+v next %q", p.Teams, p.Next)
	}
	f.tenant.set(func(s *tenantState) { s.pages, s.searched = nil, nil })
	if p = read("/teams/channels?search=%20oper%20"); len(p.Teams) != 1 || p.Teams[0].ID != teamOps {
		t.Fatalf("search oper = %+v", p.Teams)
	}
	if p = read("/teams/channels?search=nothing"); p.Teams == nil || len(p.Teams) != 0 || p.Next != "" {
		t.Fatalf("search with no match = %+v, want an empty list", p)
	}
	f.tenant.set(func(s *tenantState) {
		if !slices.Equal(s.searched, []string{"oper", "nothing"}) {
			t.Errorf("Graph was asked to search %q, want the trimmed text", s.searched)
		}
	})
}

func equalTeams(a, b []teamsconn.Team) bool {
	return slices.EqualFunc(a, b, func(x, y teamsconn.Team) bool {
		return x.ID == y.ID && x.DisplayName == y.DisplayName && x.Description == y.Description && slices.Equal(x.Channels, y.Channels) &&
			(x.Channels == nil) == (y.Channels == nil)
	})
}

// doJSON is do, decoding the answer into v.
func (f *fixture) doJSON(t *testing.T, method, path string, v any) answer {
	t.Helper()
	a := f.do(t, method, path, "", "")
	if a.status < 300 {
		if err := json.Unmarshal([]byte(a.raw), v); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return a
}

// TestMessagesSurvey: a survey invitation needs a survey; each bad part of one is named; a good
// one is kept on the batch (trimmed) and the batch counts the answers (none yet).
func TestMessagesSurvey(t *testing.T) {
	f := setupMail(t, true)
	send := func(kind, survey string) string {
		s := `{"recipients":{"stakeholderIds":["` + strings.Join(f.people, `","`) + `"]},"channels":["mail"],"kind":"` + kind + `","subject":"Pulse","text":"Tell us"`
		if survey != "" {
			s += `,"survey":` + survey
		}
		return s + `}`
	}
	seven := `["a","b","c","d","e","f","g"]`
	for _, tc := range []struct{ name, body, field string }{
		{"invitation without a survey", send("survey_invitation", ""), "survey"},
		{"invitation with a null survey", send("survey_invitation", "null"), "survey"},
		{"empty survey", send("survey_invitation", `{}`), "survey"},
		{"blank url only", send("survey_invitation", `{"url":"  "}`), "survey"},
		{"http url", send("survey_invitation", `{"url":"http://forms.example/s/1"}`), "survey.url"},
		{"relative url", send("survey_invitation", `{"url":"/s/1"}`), "survey.url"},
		{"javascript url", send("survey_invitation", `{"url":"javascript:alert(1)"}`), "survey.url"},
		{"url too long", send("survey_invitation", `{"url":"https://forms.example/`+strings.Repeat("s", 2000)+`"}`), "survey.url"},
		{"choices without a question", send("survey_invitation", `{"choices":["Yes","No"]}`), "survey.question"},
		{"question too long", send("survey_invitation", `{"url":"https://forms.example/s/1","question":"`+strings.Repeat("q", 501)+`"}`), "survey.question"},
		{"too many choices", send("survey_invitation", `{"question":"Ready?","choices":`+seven+`}`), "survey.choices"},
		{"blank choice", send("survey_invitation", `{"question":"Ready?","choices":["Yes"," "]}`), "survey.choices[1]"},
		{"choice too long", send("survey_invitation", `{"question":"Ready?","choices":["`+strings.Repeat("y", 61)+`"]}`), "survey.choices[0]"},
		{"choice of two lines", send("survey_invitation", `{"question":"Ready?","choices":["Yes\nNo"]}`), "survey.choices[0]"},
		{"the acknowledgement's word as a choice", send("survey_invitation", `{"question":"Ready?","choices":["Yes","Acknowledged"]}`), "survey.choices[1]"},
		{"choice twice", send("survey_invitation", `{"question":"Ready?","choices":["Yes","No","yes "]}`), "survey.choices[2]"},
		{"unknown survey field", send("survey_invitation", `{"url":"https://forms.example/s/1","anonymous":true}`), "body"},
		{"bad survey on another kind", send("notification", `{"url":"ftp://forms.example/s/1"}`), "survey.url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(t, "POST", mailOrg+"/messages", "application/json", tc.body)
			wantProblem(t, a, http.StatusBadRequest, invalidType, tc.field)
		})
	}
	if a := f.do(t, "GET", mailOrg+"/messages", "", ""); !strings.Contains(a.raw, `"batches":[]`) || len(f.env.Queue.Published()) != 0 {
		t.Fatalf("refused surveys wrote something: %s, %d messages", a.raw, len(f.env.Queue.Published()))
	}

	for _, tc := range []struct {
		name, survey string
		want         map[string]any
	}{
		{"link only", `{"url":" https://forms.example/s/1 "}`, map[string]any{"url": "https://forms.example/s/1"}},
		{"question only", `{"question":" Ready? ","choices":[" Yes ","No","Not yet"]}`, map[string]any{"question": "Ready?", "choices": []any{"Yes", "No", "Not yet"}}},
		{"both", `{"url":"https://forms.example/s/2","question":"Ready?","choices":["Yes","No","Maybe","Later","Never","Ask me"]}`,
			map[string]any{"url": "https://forms.example/s/2", "question": "Ready?", "choices": []any{"Yes", "No", "Maybe", "Later", "Never", "Ask me"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(t, "POST", mailOrg+"/messages", "application/json", send("survey_invitation", tc.survey))
			if a.status != http.StatusAccepted || a.body["kind"] != "survey_invitation" {
				t.Fatalf("POST = %d %s", a.status, a.raw)
			}
			if got, _ := json.Marshal(a.body["survey"]); !jsonEqual(t, got, tc.want) {
				t.Errorf("accepted survey = %s, want %v", got, tc.want)
			}
			a = f.do(t, "GET", mailOrg+"/messages/"+a.body["batchId"].(string), "", "")
			if got, _ := json.Marshal(a.body["survey"]); a.status != http.StatusOK || !jsonEqual(t, got, tc.want) {
				t.Errorf("GET batch = %d %s", a.status, a.raw)
			}
			if r, ok := a.body["responses"].(map[string]any); !ok || len(r) != 0 {
				t.Errorf("responses = %v, want {} before anyone answers", a.body["responses"])
			}
		})
	}

	// The idempotency key covers the survey: the same key for another survey is refused.
	first := f.do(t, "POST", mailOrg+"/messages", "application/json", strings.Replace(send("survey_invitation", `{"url":"https://forms.example/s/1"}`), `{"recipients"`, `{"idempotencyKey":"pulse-1","recipients"`, 1))
	again := f.do(t, "POST", mailOrg+"/messages", "application/json", strings.Replace(send("survey_invitation", `{"url":"https://forms.example/s/9"}`), `{"recipients"`, `{"idempotencyKey":"pulse-1","recipients"`, 1))
	if first.status != http.StatusAccepted {
		t.Fatalf("first POST = %d %s", first.status, first.raw)
	}
	wantProblem(t, again, http.StatusConflict, "urn:leapchange:problem:conflict", "")
}

// jsonEqual compares JSON text with a decoded value.
func jsonEqual(t *testing.T, got []byte, want any) bool {
	t.Helper()
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	_ = json.Unmarshal(got, &a)
	_ = json.Unmarshal(w, &b)
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
