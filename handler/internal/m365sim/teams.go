package m365sim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Teams: the Microsoft Graph routes of Microsoft Teams the integration uses — listing teams and
// channels, the tenant's Teams app catalog, and installing the bot for a user (personal scope)
// with its one-on-one chat. See doc.go, section Teams.

func init() {
	// Application roles of the Teams routes, with Microsoft Graph's app role ids (permissions
	// reference, permissions-ids.md). Registered here so Teams stays in one file.
	Roles["TeamSettings.Read.All"] = "242607bd-1d2c-432c-82eb-bdb27baa23ab"
	Roles["TeamSettings.ReadWrite.All"] = "bdd80a03-d9bc-451d-b7c4-ce7c63fe3c8f"
	Roles["ChannelSettings.Read.All"] = "c97b873f-f59f-49aa-8a0e-52b32d762124"
	Roles["ChannelSettings.ReadWrite.All"] = "243cded2-bd16-4fd6-a953-ff8177894c3d"
	Roles["AppCatalog.Read.All"] = "e12dae10-5a57-4817-b79d-dfbec5348930"
	Roles["AppCatalog.ReadWrite.All"] = "dc149144-f292-421e-b185-5953f2e98d7f"
	Roles["TeamsAppInstallation.ReadWriteForUser.All"] = "74ef0291-ca83-4d02-8c7e-d2391e6a444f"
}

// Permissions (application roles) the Teams routes accept, least privileged first, as the
// Graph API reference lists them (v1.0, application).
var (
	permTeamsRead    = []string{"Team.ReadBasic.All", "TeamSettings.Read.All", "TeamSettings.ReadWrite.All"}
	permChannelsRead = []string{"Channel.ReadBasic.All", "ChannelSettings.Read.All", "ChannelSettings.ReadWrite.All",
		"Directory.Read.All", "Directory.ReadWrite.All", "Group.Read.All", "Group.ReadWrite.All"}
	permAppCatalogRead = []string{"AppCatalog.Read.All", "AppCatalog.ReadWrite.All"}
	permUserAppsRead   = []string{"TeamsAppInstallation.ReadForUser.All", permInstallSelf, permInstallAny}
	permUserAppsWrite  = []string{permInstallSelf, permInstallAny}
)

const (
	// permInstallSelf lets an app install, read and remove only itself: the Teams app whose
	// manifest's webApplicationInfo.id (TeamsApp.AzureADAppID) is the caller's client id.
	permInstallSelf = "TeamsAppInstallation.ReadWriteSelfForUser.All"
	permInstallAny  = "TeamsAppInstallation.ReadWriteForUser.All"
)

// Team is a team of the simulated tenant.
type Team struct {
	ID          string `json:"id"` // generated (a group id) when empty
	DisplayName string `json:"displayName"`
	Description string `json:"description"`
	Visibility  string `json:"visibility"` // "public" (default) or "private"
}

// Channel is a channel of a team.
type Channel struct {
	ID             string `json:"id"` // generated ("19:…@thread.tacv2") when empty
	DisplayName    string `json:"displayName"`
	Description    string `json:"description"`
	MembershipType string `json:"membershipType"` // "standard" (default), "private" or "shared"
}

// TeamsApp is an app of the tenant's Teams app catalog.
type TeamsApp struct {
	ID          string `json:"id"`         // the catalog id; generated when empty (the manifest id for store apps)
	ExternalID  string `json:"externalId"` // the manifest id
	DisplayName string `json:"displayName"`
	// DistributionMethod is "organization" (default: the org catalog) or "store".
	DistributionMethod string `json:"distributionMethod"`
	// AzureADAppID is the Entra app id of the manifest's webApplicationInfo (and bot): with
	// TeamsAppInstallation.ReadWriteSelfForUser.All an app installs, reads and removes only the
	// Teams apps whose AzureADAppID is its own client id. Empty: every caller counts as the app.
	AzureADAppID string `json:"azureADAppId"`
	Version      string `json:"version"` // of its definition; default "1.0.0"
}

// TeamsAppInstallation is an app installed in a user's personal scope.
type TeamsAppInstallation struct {
	ID          string    `json:"id"`
	UserID      string    `json:"userId"` // the user's object id
	AppID       string    `json:"teamsAppId"`
	ChatID      string    `json:"chatId"` // the one-on-one chat of the user and the app's bot (see chatID)
	InstalledAt time.Time `json:"installedAt"`
}

type teamRec struct {
	Team
	created  time.Time
	channels []*channelRec
}

type channelRec struct {
	Channel
	created time.Time
}

// teamsState is the Teams data of every tenant, guarded by Server.mu.
type teamsState struct {
	tenants map[string]*teamsTenant // by tenant id
}

type teamsTenant struct {
	teams    []*teamRec
	teamIdx  map[string]int // lower-cased team id -> index in teams
	apps     []*TeamsApp
	installs map[string]map[string]*TeamsAppInstallation // user object id -> catalog app id -> installation
}

// teamsLocked returns the Teams data of a known tenant (s.mu held).
func (s *Server) teamsLocked(tenantID string) (*teamsTenant, error) {
	t, err := s.tenantLocked(tenantID)
	if err != nil {
		return nil, err
	}
	if s.teams.tenants == nil {
		s.teams.tenants = map[string]*teamsTenant{}
	}
	tt := s.teams.tenants[t.id]
	if tt == nil {
		tt = &teamsTenant{teamIdx: map[string]int{}, installs: map[string]map[string]*TeamsAppInstallation{}}
		s.teams.tenants[t.id] = tt
	}
	return tt, nil
}

// teamLocked returns a team of a known tenant (s.mu held); ErrNotFound when there is none.
func (s *Server) teamLocked(tenantID, teamID string) (*teamRec, error) {
	tt, err := s.teamsLocked(tenantID)
	if err != nil {
		return nil, err
	}
	t := tt.team(teamID)
	if t == nil {
		return nil, fmt.Errorf("team %q in tenant %q: %w", teamID, tenantID, ErrNotFound)
	}
	return t, nil
}

func (tt *teamsTenant) team(id string) *teamRec {
	if i, ok := tt.teamIdx[strings.ToLower(id)]; ok {
		return tt.teams[i]
	}
	return nil
}

func (tt *teamsTenant) app(id string) *TeamsApp {
	for _, a := range tt.apps {
		if strings.EqualFold(a.ID, id) {
			return a
		}
	}
	return nil
}

// channelID returns a new channel id in Teams' form.
func channelID() string {
	return "19:" + strings.ReplaceAll(uuid.NewString(), "-", "") + "@thread.tacv2"
}

// --- state API -------------------------------------------------------------------------------

// AddTeam adds a team with channels to a tenant and returns it (with its generated id). Every
// team has a standard General channel, as in Teams: one is added first unless channels name one.
func (s *Server) AddTeam(tenantID string, team Team, channels ...Channel) (Team, error) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	tt, err := s.teamsLocked(tenantID)
	if err != nil {
		return Team{}, err
	}
	if team.ID == "" {
		team.ID = uuid.NewString()
	}
	if tt.team(team.ID) != nil {
		return Team{}, fmt.Errorf("m365sim: team %q already exists in tenant %q", team.ID, tenantID)
	}
	if team.Visibility == "" {
		team.Visibility = "public"
	}
	if team.Visibility != "public" && team.Visibility != "private" {
		return Team{}, fmt.Errorf("m365sim: team visibility %q: want public or private", team.Visibility)
	}
	rec := &teamRec{Team: team, created: s.now()}
	if !slices.ContainsFunc(channels, func(c Channel) bool { return strings.EqualFold(c.DisplayName, "General") }) {
		channels = append([]Channel{{DisplayName: "General", Description: team.Description}}, channels...)
	}
	for _, c := range channels {
		if _, err := rec.addChannel(c, rec.created); err != nil {
			return Team{}, err
		}
	}
	tt.teamIdx[strings.ToLower(team.ID)] = len(tt.teams)
	tt.teams = append(tt.teams, rec)
	return team, nil
}

func (t *teamRec) addChannel(c Channel, now time.Time) (Channel, error) {
	if c.ID == "" {
		c.ID = channelID()
	}
	if c.MembershipType == "" {
		c.MembershipType = "standard"
	}
	switch {
	case c.DisplayName == "":
		return Channel{}, fmt.Errorf("m365sim: a channel needs a displayName")
	case !slices.Contains([]string{"standard", "private", "shared"}, c.MembershipType):
		return Channel{}, fmt.Errorf("m365sim: channel membershipType %q: want standard, private or shared", c.MembershipType)
	case slices.ContainsFunc(t.channels, func(o *channelRec) bool { return o.ID == c.ID || strings.EqualFold(o.DisplayName, c.DisplayName) }):
		return Channel{}, fmt.Errorf("m365sim: team %q already has a channel %q", t.ID, c.DisplayName)
	}
	t.channels = append(t.channels, &channelRec{Channel: c, created: now})
	return c, nil
}

// AddChannel adds a channel to a team and returns it (with its generated id).
func (s *Server) AddChannel(tenantID, teamID string, c Channel) (Channel, error) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.teamLocked(tenantID, teamID)
	if err != nil {
		return Channel{}, err
	}
	return t.addChannel(c, s.now())
}

// TeamsOf returns a tenant's teams in creation order (nil for an unknown tenant).
func (s *Server) TeamsOf(tenantID string) []Team {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	tt, err := s.teamsLocked(tenantID)
	if err != nil {
		return nil
	}
	return values(tt.teams, func(t *teamRec) Team { return t.Team })
}

// ChannelsOf returns a team's channels in creation order.
func (s *Server) ChannelsOf(tenantID, teamID string) ([]Channel, error) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.teamLocked(tenantID, teamID)
	if err != nil {
		return nil, err
	}
	return values(t.channels, func(c *channelRec) Channel { return c.Channel }), nil
}

// values copies the public value out of each record, for callers outside the lock.
func values[R, V any](recs []R, value func(R) V) []V {
	out := make([]V, 0, len(recs))
	for _, r := range recs {
		out = append(out, value(r))
	}
	return out
}

// GenerateTeams adds n teams with one to four channels each (besides General), deterministic
// for a seed, named like a company's teams ("Finance – London 3").
func (s *Server) GenerateTeams(tenantID string, n int, seed uint64) ([]Team, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	topics := []string{"Announcements", "Projects", "Planning", "Support", "Social", "Training", "Releases", "Questions"}
	id := func() string {
		var b [16]byte
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return formatUUID(b)
	}
	var out []Team
	for i := range n {
		dept := departments[rng.IntN(len(departments))]
		team := Team{ID: id(), DisplayName: fmt.Sprintf("%s – %s %d", dept, offices[rng.IntN(len(offices))], i+1),
			Description: "The " + dept + " team", Visibility: []string{"public", "private"}[rng.IntN(2)]}
		var chans []Channel
		for j, k := range rng.Perm(len(topics))[:1+rng.IntN(4)] {
			c := Channel{ID: fmt.Sprintf("19:%032x@thread.tacv2", rng.Uint64()<<16|uint64(j)), DisplayName: topics[k]}
			if rng.IntN(5) == 0 {
				c.MembershipType = "private"
			}
			chans = append(chans, c)
		}
		created, err := s.AddTeam(tenantID, team, chans...)
		if err != nil {
			return out, err
		}
		out = append(out, created)
	}
	return out, nil
}

// PublishTeamsApp publishes an app with this manifest id to the tenant's org catalog (as an
// admin uploading the app package) and returns its catalog id. Publishing an external id
// that is already in the catalog returns the existing app's id.
func (s *Server) PublishTeamsApp(tenantID, externalID string) (string, error) {
	a, err := s.AddTeamsApp(tenantID, TeamsApp{ExternalID: externalID})
	return a.ID, err
}

// AddTeamsApp adds an app to the tenant's catalog (see TeamsApp for the defaults) and returns
// it; an app with the same external id already there is returned unchanged.
func (s *Server) AddTeamsApp(tenantID string, a TeamsApp) (TeamsApp, error) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	tt, err := s.teamsLocked(tenantID)
	if err != nil {
		return TeamsApp{}, err
	}
	if a.ExternalID == "" {
		return TeamsApp{}, fmt.Errorf("m365sim: a Teams app needs its manifest id (externalId)")
	}
	for _, o := range tt.apps {
		if strings.EqualFold(o.ExternalID, a.ExternalID) {
			return *o, nil
		}
	}
	if a.DistributionMethod == "" {
		a.DistributionMethod = "organization"
	}
	if a.ID == "" {
		a.ID = uuid.NewString()
		if a.DistributionMethod == "store" {
			a.ID = a.ExternalID // Graph: a store app's id is its manifest id
		}
	}
	if tt.app(a.ID) != nil {
		return TeamsApp{}, fmt.Errorf("m365sim: Teams app %q already exists in tenant %q", a.ID, tenantID)
	}
	if a.DisplayName == "" {
		a.DisplayName = "Leap Change"
	}
	if a.Version == "" {
		a.Version = "1.0.0"
	}
	a.AzureADAppID = strings.ToLower(a.AzureADAppID)
	tt.apps = append(tt.apps, &a)
	return a, nil
}

// TeamsApps returns the tenant's catalog.
func (s *Server) TeamsApps(tenantID string) []TeamsApp {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	tt, err := s.teamsLocked(tenantID)
	if err != nil {
		return nil
	}
	return values(tt.apps, func(a *TeamsApp) TeamsApp { return *a })
}

// Installations returns the apps installed in a user's personal scope (the user named by
// object id or UPN), oldest first.
func (s *Server) Installations(tenantID, userObjectID string) []TeamsAppInstallation {
	t, tt, user, err := s.lockInstallsOf(tenantID, userObjectID)
	if err != nil {
		return nil
	}
	out := tt.userInstalls(user)
	apps := make([]TeamsApp, len(out))
	for i, in := range out {
		apps[i] = *tt.app(in.AppID)
	}
	tenant := t.id
	s.mu.Unlock()
	for i := range out {
		out[i].ChatID = s.chatID(tenant, out[i].UserID, apps[i])
	}
	return out
}

// lockInstallsOf locks s.mu and finds a known tenant, its Teams data and the user's key in its
// installations: the object id of the user named by object id or UPN, else the id as given
// (lower-cased). On an error it unlocks.
func (s *Server) lockInstallsOf(tenantID, userObjectID string) (*tenant, *teamsTenant, string, error) {
	s.init()
	s.mu.Lock()
	t, err := s.tenantLocked(tenantID)
	if err != nil {
		s.mu.Unlock()
		return nil, nil, "", err
	}
	tt, _ := s.teamsLocked(tenantID)
	user := strings.ToLower(userObjectID)
	if u := t.lookupUser(userObjectID); u != nil {
		user = strings.ToLower(u.ID)
	}
	return t, tt, user, nil
}

func (tt *teamsTenant) userInstalls(userID string) []TeamsAppInstallation {
	var out []TeamsAppInstallation
	for _, in := range tt.installs[userID] {
		out = append(out, *in)
	}
	slices.SortFunc(out, func(a, b TeamsAppInstallation) int {
		if c := a.InstalledAt.Compare(b.InstalledAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// InstallTeamsApp installs a catalog app for a user as the user would from the Teams client
// (the bot then hears of it, as with the Graph install) and returns the installation id; an
// app already installed for the user returns the existing installation's id.
func (s *Server) InstallTeamsApp(tenantID, userObjectID, catalogAppID string) (string, error) {
	s.init()
	s.mu.Lock()
	t, err := s.tenantLocked(tenantID)
	if err != nil {
		s.mu.Unlock()
		return "", err
	}
	u := t.lookupUser(userObjectID)
	tt, _ := s.teamsLocked(tenantID)
	a := tt.app(catalogAppID)
	switch {
	case u == nil:
		s.mu.Unlock()
		return "", fmt.Errorf("user %q in tenant %q: %w", userObjectID, tenantID, ErrNotFound)
	case a == nil:
		s.mu.Unlock()
		return "", fmt.Errorf("Teams app %q in tenant %q: %w", catalogAppID, tenantID, ErrNotFound)
	}
	in, added := tt.install(u.ID, a, s.now())
	s.mu.Unlock()
	if added {
		s.botInstalled(t.id, in.UserID)
	}
	return in.ID, nil
}

// install records an installation of a for the user; added is false when it existed already.
func (tt *teamsTenant) install(userID string, a *TeamsApp, now time.Time) (in *TeamsAppInstallation, added bool) {
	userID = strings.ToLower(userID)
	if old := tt.installs[userID][a.ID]; old != nil {
		return old, false
	}
	in = &TeamsAppInstallation{ID: installationID(userID, a.ID), UserID: userID, AppID: a.ID, InstalledAt: now}
	if tt.installs[userID] == nil {
		tt.installs[userID] = map[string]*TeamsAppInstallation{}
	}
	tt.installs[userID][a.ID] = in
	return in, true
}

// chatID is the one-on-one chat of a user and the bot of app a. An app published without an
// AzureADAppID has the bot registered on the Bot Framework side (RegisterBot), so that the chat
// Graph answers is the one the Bot Connector knows (BotChatID).
func (s *Server) chatID(tenant, userObjectID string, a TeamsApp) string {
	bot := a.AzureADAppID
	if bot == "" {
		b := s.lockBot()
		bot = b.appID
		b.mu.Unlock()
	}
	if bot == "" { // no bot registered: a stable stand-in
		bot = uuidFrom("teams-app-bot", a.ID)
	}
	return PersonalChatID(userObjectID, bot)
}

// installationID is Graph's form of a user-scope installation id: base64 of
// "{userId}##{teamsAppId}".
func installationID(userID, appID string) string {
	return base64.StdEncoding.EncodeToString([]byte(userID + "##" + appID))
}

// PersonalChatID is the id of the one-on-one chat of a user and a bot, in Teams' form
// ("19:{user object id}_{bot app id}@unq.gbl.spaces"): what GET …/installedApps/{id}/chat
// answers and what the Bot Connector accepts as the conversation id.
func PersonalChatID(userObjectID, botAppID string) string {
	return "19:" + strings.ToLower(userObjectID) + "_" + strings.ToLower(botAppID) + "@unq.gbl.spaces"
}

// UninstallBot simulates the user removing the app from Teams: every app of the tenant's
// catalog installed for the user is uninstalled, and the bot hears of it (later sends to the
// user are refused).
func (s *Server) UninstallBot(tenantID, userObjectID string) {
	t, tt, user, err := s.lockInstallsOf(tenantID, userObjectID)
	if err != nil {
		return
	}
	delete(tt.installs, user)
	s.mu.Unlock()
	s.botUninstalled(t.id, user)
}

// --- Graph routes ------------------------------------------------------------------------------

// teamsHandler is a Teams route. after, when not nil, runs once the state lock is released and
// before the answer is written (the Bot Framework hooks); a non-nil answer of it replaces resp.
type teamsHandler func(r *http.Request, g *gctx) (resp gresp, after func() *gresp)

// teamsRoute routes the Teams requests; ok is false for any other path.
func (s *Server) teamsRoute(r *http.Request, segs []string) (route, bool) {
	n := len(segs)
	m := r.Method
	switch {
	case n == 1 && segs[0] == "teams":
		return s.teamsGet(m, "teams", permTeamsRead, s.listTeams), true
	case n == 3 && segs[0] == "teams" && segs[1] != "" && segs[2] == "channels":
		return s.teamsGet(m, "channels", permChannelsRead, s.listChannels), true
	case n == 2 && segs[0] == "appCatalogs" && segs[1] == "teamsApps":
		return s.teamsGet(m, "teamsApps", permAppCatalogRead, s.listTeamsApps), true
	case n >= 4 && segs[0] == "users" && segs[2] == "teamwork" && segs[3] == "installedApps":
	default:
		return route{}, false
	}
	// users/{id}/teamwork/installedApps[/{installation id}[/chat]]: ids are split from the
	// escaped path, as an installation id is base64 and may hold a '/' (sent as %2F).
	es := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/v1.0/"), "/")
	switch n := len(es); {
	case n == 4 && m == http.MethodGet:
		return route{"installedApps", s.teamsGraph(permUserAppsRead, s.listInstalledApps)}, true
	case n == 4 && m == http.MethodPost:
		return route{"installApp", s.teamsGraph(permUserAppsWrite, s.installApp)}, true
	case n == 5 && m == http.MethodGet:
		return route{"installedApp", s.teamsGraph(permUserAppsRead, s.getInstalledApp)}, true
	case n == 5 && m == http.MethodDelete:
		return route{"uninstallApp", s.teamsGraph(permUserAppsWrite, s.uninstallApp)}, true
	case n == 6 && es[5] == "chat" && m == http.MethodGet:
		return route{"installationChat", s.teamsGraph(permUserAppsRead, s.installationChat)}, true
	}
	return route{}, true // other methods and sub-paths are not implemented (501)
}

func (s *Server) teamsGet(method, kind string, perms []string, h func(*http.Request, *gctx) gresp) route {
	if method != http.MethodGet {
		return route{}
	}
	return route{kind, s.teamsGraph(perms, func(r *http.Request, g *gctx) (gresp, func() *gresp) { return h(r, g), nil })}
}

// teamsGraph authenticates a Teams route and checks its permission, answering a missing one as
// the Teams workload does (403 Forbidden "Missing role permissions on the request…").
func (s *Server) teamsGraph(perms []string, h teamsHandler) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		var after func() *gresp
		// Any application role passes the shared check; the Teams check below names the roles.
		resp := s.runGraphDenied(r, allRoles(), missingRoles(perms, nil), func(r *http.Request, g *gctx) gresp {
			if !slices.ContainsFunc(perms, func(p string) bool { return slices.Contains(g.roles, p) }) {
				return missingRoles(perms, g.roles)
			}
			var resp gresp
			resp, after = h(r, g)
			return resp
		})
		if after != nil {
			if r := after(); r != nil {
				resp = *r
			}
		}
		s.writeGraph(w, r, resp)
	}
}

func allRoles() []string {
	out := make([]string, 0, len(Roles))
	for r := range Roles {
		out = append(out, r)
	}
	return out
}

func missingRoles(perms, have []string) gresp {
	return errResp(http.StatusForbidden, "Forbidden", fmt.Sprintf("Missing role permissions on the request. API requires one of '%s'. Roles on the request '%s'.",
		strings.Join(perms, ", "), strings.Join(have, ", ")))
}

func teamsNotFound(msg string) gresp { return errResp(http.StatusNotFound, "NotFound", msg) }

func teamsBadRequest(msg string) gresp { return errResp(http.StatusBadRequest, "BadRequest", msg) }

// selectAndFilter reads the query of a one-page Teams list: $select over names (see
// teamsSelect) and $filter over the properties filterable names.
func selectAndFilter(q url.Values, names []string, typ string, filterable []string) (uint64, []strFilter, *gresp) {
	if e := checkQuery(q, "filter", "select"); e != nil {
		return 0, nil, e
	}
	mask, e := teamsSelect(q, names, typ)
	if e != nil {
		return 0, nil, e
	}
	filters, e := parseFilter(qget(q, "filter"), filterable)
	if e != nil {
		return 0, nil, e
	}
	return mask, filters, nil
}

// withSelect adds the $select list to a collection's context URL when the query has one.
func withSelect(ctx string, q url.Values, mask uint64, names []string) string {
	if qget(q, "select") != "" {
		ctx += "(" + selectList(mask, names) + ")"
	}
	return ctx
}

// teamsSelect parses $select over names (id always included; all by default).
func teamsSelect(q url.Values, names []string, typ string) (uint64, *gresp) {
	all := uint64(1)<<len(names) - 1
	mask, bad := parseSelect(qget(q, "select"), names, all)
	if bad != "" {
		return 0, new(teamsBadRequest(fmt.Sprintf("Could not find a property named '%s' on type 'microsoft.graph.%s'.", bad, typ)))
	}
	return mask, nil
}

// writeMasked writes the properties of names selected by mask; value writes one by name.
func writeMasked(e *enc, names []string, mask uint64, value func(e *enc, name string)) {
	for i, n := range names {
		if mask&(1<<i) != 0 {
			value(e, n)
		}
	}
}

func graphTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// --- teams ---------------------------------------------------------------------------------------

var teamPropNames = []string{"id", "createdDateTime", "displayName", "description", "internalId", "classification",
	"specialization", "visibility", "webUrl", "isArchived", "isMembershipLimitedToOwners", "tenantId"}

// teamFilterProps are the team properties $filter takes, in teamField's order.
var teamFilterProps = []string{"id", "displayName", "description", "visibility"}

func teamField(t *teamRec) func(string) (string, bool, bool) {
	return stringField(teamFilterProps, t.ID, t.DisplayName, t.Description, t.Visibility)
}

// listTeams is GET /teams: $filter (eq, startswith on id, displayName, description,
// visibility), $select, $top, $count and $skiptoken paging. As the API reference notes, list
// answers populate only id, displayName, description and visibility; the rest are null.
func (s *Server) listTeams(r *http.Request, g *gctx) gresp {
	q := r.URL.Query()
	var st pageState
	if tok := qget(q, "skiptoken"); tok != "" {
		p, e := decodeState(tok, "teams", g)
		if e != nil {
			return *e
		}
		st = p
	} else {
		if e := checkQuery(q, "filter", "select", "top", "count"); e != nil {
			return *e
		}
		mask, e := teamsSelect(q, teamPropNames, "team")
		if e != nil {
			return *e
		}
		top, e := parseTop(q)
		if e != nil {
			return *e
		}
		st = pageState{K: "teams", T: g.t.id, S: mask, N: top, F: qget(q, "filter"), X: qget(q, "count") == "true"}
	}
	filters, e := parseFilter(st.F, teamFilterProps)
	if e != nil {
		return *e
	}
	tt := s.teams.tenants[g.t.id]
	var items []*teamRec
	if tt != nil {
		items = tt.teams
	}
	match := func(t *teamRec) bool { return matchesAll(filters, t, teamField) }
	all := uint64(1)<<len(teamPropNames) - 1
	return listAnswer(g, st, "teams", items, s.listPageSize(r, st.N), match, all, teamPropNames, func(e *enc, t *teamRec, mask uint64) {
		writeMasked(e, teamPropNames, mask, func(e *enc, name string) {
			switch name {
			case "id":
				e.str(name, t.ID)
			case "displayName":
				e.str(name, t.DisplayName)
			case "description":
				e.strOrNull(name, t.Description)
			case "visibility":
				e.str(name, t.Visibility)
			default:
				e.null(name)
			}
		})
	})
}

// --- channels ------------------------------------------------------------------------------------

var channelPropNames = []string{"id", "createdDateTime", "displayName", "description", "isFavoriteByDefault", "email",
	"tenantId", "webUrl", "membershipType", "isArchived"}

// channelFilterProps are the channel properties $filter takes, in channelField's order.
var channelFilterProps = []string{"id", "displayName", "description", "membershipType"}

func channelField(c *channelRec) func(string) (string, bool, bool) {
	return stringField(channelFilterProps, c.ID, c.DisplayName, c.Description, c.MembershipType)
}

// listChannels is GET /teams/{id}/channels: $filter (eq, startswith on id, displayName,
// description, membershipType) and $select; one page, as Graph answers it.
func (s *Server) listChannels(r *http.Request, g *gctx) gresp {
	q := r.URL.Query()
	mask, filters, e := selectAndFilter(q, channelPropNames, "channel", channelFilterProps)
	if e != nil {
		return *e
	}
	teamID := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1.0/teams/"), "/")[0]
	var team *teamRec
	if tt := s.teams.tenants[g.t.id]; tt != nil {
		team = tt.team(teamID)
	}
	if team == nil {
		return teamsNotFound("No team found with Group Id " + teamID)
	}
	ctx := withSelect(g.base+"/v1.0/$metadata#teams('"+team.ID+"')/channels", q, mask, channelPropNames)
	channels := slices.DeleteFunc(slices.Clone(team.channels), func(c *channelRec) bool {
		return !matchesAll(filters, c, channelField)
	})
	return gresp{body: objectList(ctx, -1, channels, func(e *enc, c *channelRec) {
		writeMasked(e, channelPropNames, mask, func(e *enc, name string) {
			switch name {
			case "id":
				e.str(name, c.ID)
			case "createdDateTime":
				e.str(name, graphTime(c.created))
			case "displayName":
				e.str(name, c.DisplayName)
			case "description":
				e.strOrNull(name, c.Description)
			case "isFavoriteByDefault":
				e.null(name)
			case "email":
				e.str(name, "")
			case "tenantId":
				e.str(name, g.t.id)
			case "webUrl":
				e.str(name, "https://teams.microsoft.com/l/channel/"+url.PathEscape(c.ID)+"/"+url.PathEscape(c.DisplayName)+
					"?groupId="+team.ID+"&tenantId="+g.t.id)
			case "membershipType":
				e.str(name, c.MembershipType)
			case "isArchived":
				e.boolean(name, false)
			}
		})
	}, "")}
}

// --- app catalog -------------------------------------------------------------------------------

var teamsAppPropNames = []string{"id", "externalId", "displayName", "distributionMethod"}

// appField answers filters on the app's properties, also named through an installation's
// teamsApp navigation property (teamsApp/id).
func appField(a *TeamsApp) func(string) (string, bool, bool) {
	field := stringField(teamsAppPropNames, a.ID, a.ExternalID, a.DisplayName, a.DistributionMethod)
	return func(p string) (string, bool, bool) { return field(strings.TrimPrefix(p, "teamsapp/")) }
}

func writeTeamsApp(e *enc, a *TeamsApp, mask uint64) {
	writeMasked(e, teamsAppPropNames, mask, func(e *enc, name string) {
		switch name {
		case "id":
			e.str(name, a.ID)
		case "externalId":
			e.str(name, a.ExternalID)
		case "displayName":
			e.str(name, a.DisplayName)
		case "distributionMethod":
			e.str(name, a.DistributionMethod)
		}
	})
}

// listTeamsApps is GET /appCatalogs/teamsApps with $filter (eq on id, externalId, displayName,
// distributionMethod, joined by and) and $select; $expand (appDefinitions) is not implemented.
func (s *Server) listTeamsApps(r *http.Request, g *gctx) gresp {
	q := r.URL.Query()
	mask, filters, e := selectAndFilter(q, teamsAppPropNames, "teamsApp", teamsAppPropNames)
	if e != nil {
		return *e
	}
	var apps []*TeamsApp
	if tt := s.teams.tenants[g.t.id]; tt != nil {
		for _, a := range tt.apps {
			if matchesAll(filters, a, appField) {
				apps = append(apps, a)
			}
		}
	}
	ctx := withSelect(g.base+"/v1.0/$metadata#appCatalogs/teamsApps", q, mask, teamsAppPropNames)
	return gresp{body: objectList(ctx, -1, apps, func(e *enc, a *TeamsApp) { writeTeamsApp(e, a, mask) }, "")}
}

// --- installed apps ------------------------------------------------------------------------------

// installRequest reads users/{id}/teamwork/installedApps[/{installation id}]: the user (404
// when unknown), the tenant's Teams data and the installation id (unescaped) when present.
func (s *Server) installRequest(r *http.Request, g *gctx) (userID string, tt *teamsTenant, instID string, bad *gresp) {
	es := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/v1.0/"), "/")
	u := g.t.lookupUser(es[1])
	if u == nil {
		return "", nil, "", new(teamsNotFound("User not found: " + es[1]))
	}
	tt, _ = s.teamsLocked(g.t.id)
	if len(es) > 4 {
		if instID, _ = url.PathUnescape(es[4]); instID == "" {
			return "", nil, "", new(teamsBadRequest("Invalid installation id."))
		}
	}
	return strings.ToLower(u.ID), tt, instID, nil
}

// mayManage reports whether the caller may install or remove a: any app with
// ReadWriteForUser.All, else only the app itself (ReadWriteSelfForUser.All). mayRead adds
// ReadForUser.All, which reads every installation.
func (g *gctx) mayManage(a *TeamsApp) bool {
	if slices.Contains(g.roles, permInstallAny) || a.AzureADAppID == "" {
		return true
	}
	return strings.EqualFold(a.AzureADAppID, g.appID)
}

func (g *gctx) mayRead(a *TeamsApp) bool {
	return slices.Contains(g.roles, "TeamsAppInstallation.ReadForUser.All") || g.mayManage(a)
}

// parseExpand reads $expand over the installation's navigation properties.
func parseExpand(q url.Values) (app, def bool, bad *gresp) {
	v := qget(q, "expand")
	if v == "" {
		return false, false, nil
	}
	for p := range strings.SplitSeq(v, ",") {
		switch strings.TrimSpace(p) {
		case "teamsApp":
			app = true
		case "teamsAppDefinition":
			def = true
		default:
			return false, false, new(unhandledQuery(fmt.Sprintf("$expand=%s is not implemented on installedApps", p)))
		}
	}
	return app, def, nil
}

func writeInstallation(e *enc, in *TeamsAppInstallation, a *TeamsApp, expandApp, expandDef bool) {
	e.str("id", in.ID)
	if expandApp {
		e.key("teamsApp")
		e.open()
		writeTeamsApp(e, a, uint64(1)<<len(teamsAppPropNames)-1)
		e.close()
	}
	if expandDef {
		e.key("teamsAppDefinition")
		e.open()
		e.str("id", base64.StdEncoding.EncodeToString([]byte(a.ID+"##"+a.Version)))
		e.str("teamsAppId", a.ID)
		e.strOrNull("azureADAppId", a.AzureADAppID)
		e.str("displayName", a.DisplayName)
		e.str("version", a.Version)
		e.str("publishingState", "published")
		e.close()
	}
}

// listInstalledApps is GET /users/{id}/teamwork/installedApps with $expand (teamsApp,
// teamsAppDefinition) and $filter (eq on teamsApp/id, teamsApp/externalId,
// teamsApp/displayName). With only the Self permission an app sees only itself.
func (s *Server) listInstalledApps(r *http.Request, g *gctx) (gresp, func() *gresp) {
	q := r.URL.Query()
	if e := checkQuery(q, "expand", "filter"); e != nil {
		return *e, nil
	}
	expandApp, expandDef, e := parseExpand(q)
	if e != nil {
		return *e, nil
	}
	filters, e := parseFilter(qget(q, "filter"), []string{"teamsApp/id", "teamsApp/externalId", "teamsApp/displayName", "teamsApp/distributionMethod"})
	if e != nil {
		return *e, nil
	}
	user, tt, _, e := s.installRequest(r, g)
	if e != nil {
		return *e, nil
	}
	type item struct {
		in TeamsAppInstallation
		a  *TeamsApp
	}
	var items []item
	for _, in := range tt.userInstalls(user) {
		a := tt.app(in.AppID)
		if a == nil || !g.mayRead(a) || !matchesAll(filters, a, appField) {
			continue
		}
		items = append(items, item{in, a})
	}
	ctx := g.base + "/v1.0/$metadata#users('" + user + "')/teamwork/installedApps"
	return gresp{body: objectList(ctx, -1, items, func(e *enc, it item) { writeInstallation(e, &it.in, it.a, expandApp, expandDef) }, "")}, nil
}

// findInstall finds the user's installation with this id.
func (tt *teamsTenant) findInstall(user, id string) (*TeamsAppInstallation, *TeamsApp) {
	for _, in := range tt.installs[user] {
		if in.ID == id {
			return in, tt.app(in.AppID)
		}
	}
	return nil, nil
}

// readableInstall reads users/{id}/teamwork/installedApps/{id}[/…]: the installation and its
// app, 404 unless the caller may read it.
func (s *Server) readableInstall(r *http.Request, g *gctx) (user string, tt *teamsTenant, in *TeamsAppInstallation, a *TeamsApp, bad *gresp) {
	user, tt, id, bad := s.installRequest(r, g)
	if bad != nil {
		return "", nil, nil, nil, bad
	}
	in, a = tt.findInstall(user, id)
	if in == nil || a == nil || !g.mayRead(a) {
		return "", nil, nil, nil, new(teamsNotFound("The app installation was not found."))
	}
	return user, tt, in, a, nil
}

func (s *Server) getInstalledApp(r *http.Request, g *gctx) (gresp, func() *gresp) {
	q := r.URL.Query()
	if e := checkQuery(q, "expand"); e != nil {
		return *e, nil
	}
	expandApp, expandDef, e := parseExpand(q)
	if e != nil {
		return *e, nil
	}
	user, _, in, a, e := s.readableInstall(r, g)
	if e != nil {
		return *e, nil
	}
	var enc enc
	enc.open()
	enc.str("@odata.context", g.base+"/v1.0/$metadata#users('"+user+"')/teamwork/installedApps/$entity")
	writeInstallation(&enc, in, a, expandApp, expandDef)
	enc.close()
	return gresp{body: enc.b}, nil
}

// installApp is POST /users/{id}/teamwork/installedApps with {"teamsApp@odata.bind":
// ".../appCatalogs/teamsApps/{id}"}: 201 Created with no body; 409 Conflict when the app is
// installed already; 404 when the app is not in the catalog; 403 when the Self permission
// names another app. The bot hears of the installation (conversationUpdate).
func (s *Server) installApp(r *http.Request, g *gctx) (gresp, func() *gresp) {
	if e := checkQuery(r.URL.Query()); e != nil {
		return *e, nil
	}
	var body map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil {
		return teamsBadRequest("Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."), nil
	}
	var bind string
	if raw, ok := body["teamsApp@odata.bind"]; !ok || json.Unmarshal(raw, &bind) != nil || bind == "" {
		return teamsBadRequest("The teamsApp@odata.bind property is required: the catalog app to install."), nil
	}
	_, appID, ok := strings.Cut(bind, "/appCatalogs/teamsApps/")
	if !ok {
		_, appID, ok = strings.Cut(bind, "/appCatalogs/teamsApps('")
		appID = strings.TrimSuffix(appID, "')")
	}
	if !ok || appID == "" || strings.Contains(appID, "/") {
		return teamsBadRequest("Invalid teamsApp@odata.bind value: " + bind), nil
	}
	user, tt, _, e := s.installRequest(r, g)
	if e != nil {
		return *e, nil
	}
	a := tt.app(appID)
	switch {
	case a == nil:
		return teamsNotFound("The app " + appID + " was not found in the app catalog."), nil
	case !g.mayManage(a):
		return errResp(http.StatusForbidden, "Forbidden", "The app can install only itself with TeamsAppInstallation.ReadWriteSelfForUser.All."), nil
	}
	in, added := tt.install(user, a, g.now)
	if !added {
		return errResp(http.StatusConflict, "Conflict", "App is already installed for the user."), nil
	}
	tenant := g.t.id
	return gresp{status: http.StatusCreated}, func() *gresp { s.botInstalled(tenant, in.UserID); return nil }
}

// uninstallApp is DELETE /users/{id}/teamwork/installedApps/{id}: 204; the bot hears of it.
func (s *Server) uninstallApp(r *http.Request, g *gctx) (gresp, func() *gresp) {
	if e := checkQuery(r.URL.Query()); e != nil {
		return *e, nil
	}
	user, tt, in, a, e := s.readableInstall(r, g)
	if e != nil {
		return *e, nil
	}
	if !g.mayManage(a) {
		return errResp(http.StatusForbidden, "Forbidden", "The app can uninstall only itself with TeamsAppInstallation.ReadWriteSelfForUser.All."), nil
	}
	delete(tt.installs[user], in.AppID)
	tenant := g.t.id
	return gresp{status: http.StatusNoContent}, func() *gresp { s.botUninstalled(tenant, user); return nil }
}

// installationChat is GET /users/{id}/teamwork/installedApps/{id}/chat: the one-on-one chat of
// the user and the app's bot.
func (s *Server) installationChat(r *http.Request, g *gctx) (gresp, func() *gresp) {
	if e := checkQuery(r.URL.Query(), "select"); e != nil {
		return *e, nil
	}
	user, _, in, a, e := s.readableInstall(r, g)
	if e != nil {
		return *e, nil
	}
	tenant, base, app, inst := g.t.id, g.base, *a, *in
	return gresp{}, func() *gresp {
		id := s.chatID(tenant, user, app)
		var e enc
		e.open()
		e.str("@odata.context", base+"/v1.0/$metadata#chats/$entity")
		e.str("id", id)
		e.null("topic")
		e.str("createdDateTime", graphTime(inst.InstalledAt))
		e.str("lastUpdatedDateTime", graphTime(inst.InstalledAt))
		e.str("chatType", "oneOnOne")
		e.str("webUrl", "https://teams.microsoft.com/l/chat/"+url.PathEscape(id)+"/0?tenantId="+tenant)
		e.str("tenantId", tenant)
		e.null("onlineMeetingInfo")
		e.close()
		return &gresp{body: e.b}
	}
}
