package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/problem"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/teamsconn"
)

// Teams' ports.
type (
	teamsConnector interface {
		Connect(ctx context.Context, org tablestore.Org, r teamsconn.Request) (teamsconn.Record, error)
	}
	teamsRecords interface {
		Get(ctx context.Context, org tablestore.Org) (teamsconn.Record, tablestore.ETag, error)
		Disconnect(ctx context.Context, org tablestore.Org, now time.Time) error
	}
	// teamsDirectory lists the tenant's teams and channels (Graph).
	teamsDirectory interface {
		Teams(ctx context.Context, tenantID, search, pageToken string) ([]teamsconn.Team, string, error)
		Channels(ctx context.Context, tenantID, teamID string) ([]teamsconn.ChannelInfo, error)
	}
)

// teamsView is GET /teams.
type teamsView struct {
	teamsconn.Record
	Required []string `json:"requiredPermissions"`
	Optional []string `json:"optionalPermissions"`
}

func viewOfTeams(rec teamsconn.Record) teamsView {
	rec.DefaultChannels = append([]teamsconn.Channel{}, rec.DefaultChannels...) // [] rather than null: Connect's record has none when none were asked for
	return teamsView{Record: rec, Required: teamsconn.Required, Optional: teamsconn.Optional}
}

type teamsConnectInput struct {
	DefaultChannels []struct {
		TeamID    string `json:"teamId"`
		ChannelID string `json:"channelId"`
	} `json:"defaultChannels"`
	CatalogAppID string `json:"catalogAppId"`
}

func (s *Server) connectTeams(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	var in teamsConnectInput
	if r.ContentLength != 0 {
		if err := decode(r, &in); err != nil {
			return err
		}
	}
	req := teamsconn.Request{CatalogAppID: strings.TrimSpace(in.CatalogAppID)}
	for _, c := range in.DefaultChannels {
		req.DefaultChannels = append(req.DefaultChannels, teamsconn.Channel{TeamID: strings.TrimSpace(c.TeamID), ChannelID: strings.TrimSpace(c.ChannelID)})
	}
	rec, err := s.d.TeamsConnector.Connect(r.Context(), org, req)
	if err != nil {
		return teamsProblem(err)
	}
	return writeJSON(w, http.StatusOK, viewOfTeams(rec))
}

// teamsProblem names why Teams cannot connect: the missing permissions, the missing app.
func teamsProblem(err error) error {
	if missing, reason, ok := teamsconn.MissingOf(err); ok {
		p := problem.New(http.StatusConflict, problem.NotReady, reason)
		p.MissingPermissions = missing
		return problemError{p}
	}
	return channelsProblem(err, "the default channels")
}

// channelsProblem explains a Graph failure while checking channels (for the default channels
// or the monitored ones).
func channelsProblem(err error, what string) error {
	switch errkind.Of(err) {
	case errkind.Throttled, errkind.Unavailable:
		return entraUnavailable
	case errkind.Unauthorized:
		return problemError{problem.New(http.StatusConflict, problem.NotConnected, "Microsoft refused the app's token: the Microsoft 365 connection needs re-authorization")}
	case errkind.Forbidden:
		p := problem.New(http.StatusConflict, problem.NotReady, "the tenant has not granted the permission to read "+what+": Channel.ReadBasic.All")
		p.MissingPermissions = []string{"Channel.ReadBasic.All"}
		return problemError{p}
	}
	return err
}

func (s *Server) getTeams(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	rec, _, err := s.d.TeamsRecords.Get(r.Context(), org)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewOfTeams(rec))
}

func (s *Server) disconnectTeams(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	if err := s.d.TeamsRecords.Disconnect(r.Context(), org, s.d.Now().UTC()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listTeamChannels is GET /teams/channels?search=&pageToken=: the tenant's teams (a page) with
// their channels, for picking default or monitored channels.
func (s *Server) listTeamChannels(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	q := r.URL.Query()
	search := strings.TrimSpace(q.Get("search"))
	if utf8.RuneCountInString(search) > 100 || strings.ContainsAny(search, "\x00\r\n") {
		return invalid("search", "at most 100 characters, one line")
	}
	token := q.Get("pageToken")
	if len(token) > 4096 {
		return invalid("pageToken", "not a page token from an earlier answer")
	}
	rec, _, err := s.d.Connections.Get(r.Context(), org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return err
	}
	if rec.Status != connection.Connected || rec.TenantID == "" {
		return connection.ErrNotConnected
	}
	teams, next, err := s.d.TeamsDirectory.Teams(r.Context(), rec.TenantID, search, token)
	if err != nil {
		return teamsGraphProblem(err, "pageToken")
	}
	for i := range teams {
		chans, err := s.d.TeamsDirectory.Channels(r.Context(), rec.TenantID, teams[i].ID)
		if errkind.Of(err) == errkind.NotFound {
			chans = nil // deleted since it was listed
		} else if err != nil {
			return teamsGraphProblem(err, "")
		}
		teams[i].Channels = append([]teamsconn.ChannelInfo{}, chans...)
	}
	if teams == nil {
		teams = []teamsconn.Team{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"teams": teams, "next": next})
}

// teamsGraphProblem explains a Graph failure listing teams.
func teamsGraphProblem(err error, field string) error {
	switch errkind.Of(err) {
	case errkind.Forbidden:
		p := problem.New(http.StatusConflict, problem.NotReady, "the tenant has not granted the permissions to list teams and channels: Team.ReadBasic.All and Channel.ReadBasic.All")
		p.MissingPermissions = []string{"Team.ReadBasic.All", "Channel.ReadBasic.All"}
		return problemError{p}
	case errkind.Invalid:
		if field != "" {
			return invalid(field, "Microsoft Graph refused it (an expired or foreign page token?)")
		}
	case errkind.Throttled, errkind.Unavailable:
		return entraUnavailable
	case errkind.Unauthorized:
		return problemError{problem.New(http.StatusConflict, problem.NotConnected, "Microsoft refused the app's token: the Microsoft 365 connection needs re-authorization")}
	}
	return err
}

// problemError carries a ready problem to problemFor.
type problemError struct{ p problem.Problem }

func (e problemError) Error() string { return e.p.Detail }
