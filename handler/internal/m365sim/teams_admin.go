package m365sim

import (
	"fmt"
	"net/http"
)

// adminTeams serves /_sim/teams/{tenant}/… (Options.Admin), the Teams state of a running sim:
//
//	POST   /_sim/teams/{t}/teams                        Team JSON plus "channels":[Channel…] -> the team with its channels
//	GET    /_sim/teams/{t}/teams                        every team with its channels
//	POST   /_sim/teams/{t}/teams/{team}/channels        Channel JSON -> the channel
//	POST   /_sim/teams/{t}/generate                     {"teams":n,"seed":s} -> GenerateTeams
//	POST   /_sim/teams/{t}/apps                         TeamsApp JSON ({"externalId","displayName","azureADAppId",…}) -> the catalog app (AddTeamsApp)
//	GET    /_sim/teams/{t}/apps                         the tenant's catalog
//	GET    /_sim/teams/{t}/users/{u}/installations      the user's installations (with chatId)
//	POST   /_sim/teams/{t}/users/{u}/installations      {"teamsAppId":"…"}: the user installs the app in Teams -> {"id"}
//	DELETE /_sim/teams/{t}/users/{u}/installations      UninstallBot: the user removes the app
func (s *Server) adminTeams(r *http.Request, p []string, reply func(any, error), decode func(any) bool) {
	type teamJSON struct {
		Team
		Channels []Channel `json:"channels"`
	}
	m, n, tenant := r.Method, len(p), p[0]
	at := func(i int, v string) bool { return i < n && p[i] == v }
	switch {
	case m == http.MethodPost && n == 2 && at(1, "teams"):
		var body teamJSON
		if !decode(&body) {
			return
		}
		team, err := s.AddTeam(tenant, body.Team, body.Channels...)
		if err != nil {
			reply(nil, err)
			return
		}
		chans, err := s.ChannelsOf(tenant, team.ID)
		reply(teamJSON{team, chans}, err)
	case m == http.MethodGet && n == 2 && at(1, "teams"):
		_, unlock, err := s.lockTenant(tenant)
		if err != nil {
			reply(nil, err)
			return
		}
		unlock()
		out := []teamJSON{}
		for _, team := range s.TeamsOf(tenant) {
			chans, _ := s.ChannelsOf(tenant, team.ID)
			out = append(out, teamJSON{team, chans})
		}
		reply(out, nil)
	case m == http.MethodPost && n == 4 && at(1, "teams") && at(3, "channels"):
		var c Channel
		if !decode(&c) {
			return
		}
		reply(s.AddChannel(tenant, p[2], c))
	case m == http.MethodPost && n == 2 && at(1, "generate"):
		var body struct {
			Teams int    `json:"teams"`
			Seed  uint64 `json:"seed"`
		}
		if !decode(&body) {
			return
		}
		if body.Teams < 0 || body.Teams > 10000 {
			reply(nil, fmt.Errorf("teams must be between 0 and 10000, got %d", body.Teams))
			return
		}
		reply(s.GenerateTeams(tenant, body.Teams, body.Seed))
	case m == http.MethodPost && n == 2 && at(1, "apps"):
		var a TeamsApp
		if !decode(&a) {
			return
		}
		reply(s.AddTeamsApp(tenant, a))
	case m == http.MethodGet && n == 2 && at(1, "apps"):
		apps := s.TeamsApps(tenant)
		if apps == nil {
			_, unlock, err := s.lockTenant(tenant)
			if err != nil {
				reply(nil, err)
				return
			}
			unlock()
			apps = []TeamsApp{}
		}
		reply(apps, nil)
	case n == 4 && at(1, "users") && at(3, "installations"):
		s.adminInstallations(r, tenant, p[2], reply, decode)
	default:
		reply(nil, unknownAdmin(r))
	}
}

func (s *Server) adminInstallations(r *http.Request, tenant, user string, reply func(any, error), decode func(any) bool) {
	switch r.Method {
	case http.MethodGet:
		l := s.Installations(tenant, user)
		if l == nil {
			l = []TeamsAppInstallation{}
		}
		reply(l, nil)
	case http.MethodPost:
		var body struct {
			TeamsAppID string `json:"teamsAppId"`
		}
		if !decode(&body) {
			return
		}
		id, err := s.InstallTeamsApp(tenant, user, body.TeamsAppID)
		reply(map[string]string{"id": id}, err)
	case http.MethodDelete:
		s.UninstallBot(tenant, user)
		reply(nil, nil)
	default:
		reply(nil, unknownAdmin(r))
	}
}
