package graph

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/microsoftgraph/msgraph-sdk-go/appcatalogs"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/teams"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// Microsoft Teams through Graph: the tenant's teams and channels (the admin picks default
// channels) and installing the bot for a user in the personal scope, so that it can message
// them. Application permissions, least privileged:
//
//	Teams             Team.ReadBasic.All
//	Channels          Channel.ReadBasic.All
//	AppCatalogID      AppCatalog.Read.All
//	InstallApp        TeamsAppInstallation.ReadWriteSelfForUser.All (the app installs only itself)
//	InstalledAppID,
//	InstallationChat  TeamsAppInstallation.ReadWriteSelfForUser.All (or TeamsAppInstallation.ReadForUser.All)
//
// A missing permission is an errkind.Forbidden error.

// Team is a team of the tenant. GET /teams fills only these properties.
type Team struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	Description string `json:"description,omitempty"`
}

// Channel is a channel of a team.
type Channel struct {
	ID             string `json:"id"` // "19:…@thread.tacv2"
	DisplayName    string `json:"displayName"`
	MembershipType string `json:"membershipType"` // standard, private, shared (or unknownFutureValue)
}

// Teams returns one page of the tenant's teams (GET /teams) and the token of the next page ("" on
// the last). search, when not empty, keeps the teams whose display name starts with it (Graph's
// $filter=startswith(displayName,'…'), case-insensitive; /teams has no $search); it is ignored
// with a pageToken, which carries the first call's filter. A pageToken is opaque and only ever
// names a page of /teams on the configured Graph host: a malformed one is an errkind.Invalid.
// TeamsPageSize is the teams a page of Teams holds: each is listed with its channels (a call
// each), so a page stays small.
const TeamsPageSize = 20

func (c *Client) Teams(ctx context.Context, tenantID, search, pageToken string) ([]Team, string, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return nil, "", err
	}
	builder := gc.Teams()
	var cfg *teams.TeamsRequestBuilderGetRequestConfiguration
	if pageToken != "" {
		q, err := decodePageToken(pageToken)
		if err != nil {
			return nil, "", err
		}
		builder = builder.WithUrl(strings.TrimSuffix(c.cfg.BaseURL, "/") + "/teams?" + q)
	} else {
		top := int32(TeamsPageSize)
		q := &teams.TeamsRequestBuilderGetQueryParameters{Select: []string{"id", "displayName", "description"}, Top: &top}
		if s := strings.TrimSpace(search); s != "" {
			f := "startswith(displayName," + odataString(s) + ")"
			q.Filter = &f
		}
		cfg = &teams.TeamsRequestBuilderGetRequestConfiguration{QueryParameters: q}
	}
	resp, err := builder.Get(ctx, cfg)
	if err != nil {
		return nil, "", classify("teams", err)
	}
	out := make([]Team, 0, len(resp.GetValue()))
	for _, t := range resp.GetValue() {
		out = append(out, Team{ID: deref(t.GetId()), DisplayName: deref(t.GetDisplayName()), Description: deref(t.GetDescription())})
	}
	next, err := encodePageToken(deref(resp.GetOdataNextLink()))
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// encodePageToken turns a /teams nextLink into a page token: its query only (the $skiptoken and
// whatever Graph carries along), so that a token can never send our credentials elsewhere.
func encodePageToken(nextLink string) (string, error) {
	if nextLink == "" {
		return "", nil
	}
	u, err := url.Parse(nextLink)
	if err != nil || !strings.HasSuffix(u.Path, "/teams") || u.RawQuery == "" {
		return "", &errkind.Error{Kind: errkind.Other, Message: "teams: unexpected @odata.nextLink"}
	}
	return base64.RawURLEncoding.EncodeToString([]byte(u.RawQuery)), nil
}

func decodePageToken(token string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err == nil {
		if q, perr := url.ParseQuery(string(b)); perr == nil && len(q) > 0 {
			return string(b), nil
		}
	}
	return "", &errkind.Error{Kind: errkind.Invalid, Status: http.StatusBadRequest, Code: "invalid_page_token", Message: "teams: the page token is not one this service issued"}
}

// odataString quotes s as an OData string literal (a quote inside is doubled).
func odataString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Channels returns every channel of a team (GET /teams/{id}/channels) that the app can see; an
// unknown team is an errkind.NotFound.
func (c *Client) Channels(ctx context.Context, tenantID, teamID string) ([]Channel, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return nil, err
	}
	builder := gc.Teams().ByTeamId(teamID).Channels()
	cfg := &teams.ItemChannelsRequestBuilderGetRequestConfiguration{
		QueryParameters: &teams.ItemChannelsRequestBuilderGetQueryParameters{Select: []string{"id", "displayName", "membershipType"}}}
	var out []Channel
	for range 1000 { // Graph answers channels in one page; follow a nextLink should it send one
		resp, err := builder.Get(ctx, cfg)
		if err != nil {
			return nil, classify("teams/"+teamID+"/channels", err)
		}
		for _, ch := range resp.GetValue() {
			m := ""
			if t := ch.GetMembershipType(); t != nil {
				m = t.String()
			}
			out = append(out, Channel{ID: deref(ch.GetId()), DisplayName: deref(ch.GetDisplayName()), MembershipType: m})
		}
		next := deref(resp.GetOdataNextLink())
		if next == "" {
			return out, nil
		}
		builder, cfg = builder.WithUrl(next), nil
	}
	return nil, &errkind.Error{Kind: errkind.Other, Message: "teams/" + teamID + "/channels: paging never ended"}
}

// AppCatalogID returns the catalog id of the Teams app whose manifest id is externalID
// (GET /appCatalogs/teamsApps?$filter=externalId eq '…'), preferring the org catalog's copy;
// errkind.NotFound when the tenant's catalog does not have it.
func (c *Client) AppCatalogID(ctx context.Context, tenantID, externalID string) (string, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return "", err
	}
	f := "externalId eq " + odataString(externalID)
	resp, err := gc.AppCatalogs().TeamsApps().Get(ctx, &appcatalogs.TeamsAppsRequestBuilderGetRequestConfiguration{
		QueryParameters: &appcatalogs.TeamsAppsRequestBuilderGetQueryParameters{Filter: &f, Select: []string{"id", "externalId", "distributionMethod"}}})
	if err != nil {
		return "", classify("appCatalogs/teamsApps", err)
	}
	id := ""
	for _, a := range resp.GetValue() {
		if !strings.EqualFold(deref(a.GetExternalId()), externalID) {
			continue
		}
		if id == "" {
			id = deref(a.GetId())
		}
		if m := a.GetDistributionMethod(); m != nil && *m == models.ORGANIZATION_TEAMSAPPDISTRIBUTIONMETHOD {
			return deref(a.GetId()), nil
		}
	}
	if id == "" {
		return "", &errkind.Error{Kind: errkind.NotFound, Status: http.StatusNotFound, Code: "teams_app_not_in_catalog",
			Message: "appCatalogs/teamsApps: no app with manifest id " + externalID + " in the tenant's Teams app catalog"}
	}
	return id, nil
}

// InstallApp installs the catalog app catalogAppID in the user's personal scope
// (POST /users/{id}/teamwork/installedApps) and returns the installation id. It is idempotent:
// an app already installed for the user (409 Conflict) returns the existing installation.
// Errors: NotFound (user, or app not in the catalog), Forbidden (permission missing, or the
// Self permission and an app that is not this one), Throttled/Unavailable (try again: a retry
// is safe).
func (c *Client) InstallApp(ctx context.Context, tenantID, userID, catalogAppID string) (string, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return "", err
	}
	body := models.NewUserScopeTeamsAppInstallation()
	body.SetAdditionalData(map[string]any{
		"teamsApp@odata.bind": strings.TrimSuffix(c.cfg.BaseURL, "/") + "/appCatalogs/teamsApps/" + url.PathEscape(catalogAppID),
	})
	op := "users/" + userID + "/teamwork/installedApps"
	if _, err := gc.Users().ByUserId(userID).Teamwork().InstalledApps().Post(ctx, body, nil); err != nil {
		cerr := classify(op, err)
		var e *errkind.Error
		if !errors.As(cerr, &e) || e.Status != http.StatusConflict {
			return "", cerr
		}
		// 409: installed already; look the installation up below.
	}
	id, err := c.InstalledAppID(ctx, tenantID, userID, catalogAppID)
	if errkind.Of(err) == errkind.NotFound {
		// Created (201) or conflicting, yet not listed (yet): transient, a retry is idempotent.
		return "", &errkind.Error{Kind: errkind.Unavailable, Message: op + ": the installation is not listed yet", Err: err}
	}
	return id, err
}

// InstalledAppID returns the id of the installation of catalogAppID in the user's personal
// scope (GET …/installedApps?$expand=teamsApp&$filter=teamsApp/id eq '…'); errkind.NotFound
// when the app is not installed for the user.
func (c *Client) InstalledAppID(ctx context.Context, tenantID, userID, catalogAppID string) (string, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return "", err
	}
	f := "teamsApp/id eq " + odataString(catalogAppID)
	op := "users/" + userID + "/teamwork/installedApps"
	resp, err := gc.Users().ByUserId(userID).Teamwork().InstalledApps().Get(ctx, &users.ItemTeamworkInstalledAppsRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.ItemTeamworkInstalledAppsRequestBuilderGetQueryParameters{Expand: []string{"teamsApp"}, Filter: &f}})
	if err != nil {
		return "", classify(op, err)
	}
	for _, in := range resp.GetValue() {
		if a := in.GetTeamsApp(); a != nil && strings.EqualFold(deref(a.GetId()), catalogAppID) {
			return deref(in.GetId()), nil
		}
	}
	return "", &errkind.Error{Kind: errkind.NotFound, Status: http.StatusNotFound, Code: "teams_app_not_installed",
		Message: op + ": the app " + catalogAppID + " is not installed for the user"}
}

// InstallationChat returns the id of the one-on-one chat of the user and the app's bot
// (GET …/installedApps/{id}/chat): "19:…@unq.gbl.spaces", usable as the Bot Connector
// conversation id. An unknown installation is an errkind.NotFound.
func (c *Client) InstallationChat(ctx context.Context, tenantID, userID, installationID string) (string, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return "", err
	}
	chat, err := gc.Users().ByUserId(userID).Teamwork().InstalledApps().ByUserScopeTeamsAppInstallationId(installationID).Chat().Get(ctx, nil)
	if err != nil {
		return "", classify("users/"+userID+"/teamwork/installedApps/{id}/chat", err)
	}
	if chat == nil || deref(chat.GetId()) == "" {
		return "", &errkind.Error{Kind: errkind.Other, Message: "users/" + userID + "/teamwork/installedApps/{id}/chat: no chat id in the answer"}
	}
	return deref(chat.GetId()), nil
}

// TeamsPermissions are the application permissions the Teams features need, least privileged.
var TeamsPermissions = []string{"Team.ReadBasic.All", "Channel.ReadBasic.All", "AppCatalog.Read.All", "TeamsAppInstallation.ReadWriteSelfForUser.All"}

// CheckTeamsAccess confirms the Teams permissions with harmless reads, as CheckAccess does for
// the directory: per permission of TeamsPermissions it could probe, whether Graph allowed the
// call (a 403 is false). Channel.ReadBasic.All is probed on the first team, so it is missing
// from the result when the tenant has no team (or Team.ReadBasic.All is refused); the
// installation permission is probed with a read of a user that does not exist (404 when
// allowed), which TeamsAppInstallation.ReadForUser.All would pass as well. A probe that
// failed otherwise (throttled, unavailable) is left out.
func (c *Client) CheckTeamsAccess(ctx context.Context, tenantID string) (map[string]bool, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	record := func(perm string, err error) {
		if err == nil {
			out[perm] = true
			return
		}
		switch errkind.Of(classify(perm, err)) {
		case errkind.Forbidden:
			out[perm] = false
		case errkind.NotFound: // the probe's object does not exist: the call itself was allowed
			out[perm] = true
		}
	}
	top := int32(1)
	page, err := gc.Teams().Get(ctx, &teams.TeamsRequestBuilderGetRequestConfiguration{
		QueryParameters: &teams.TeamsRequestBuilderGetQueryParameters{Top: &top, Select: []string{"id"}}})
	record("Team.ReadBasic.All", err)
	if err == nil && len(page.GetValue()) > 0 {
		_, err := gc.Teams().ByTeamId(deref(page.GetValue()[0].GetId())).Channels().Get(ctx, &teams.ItemChannelsRequestBuilderGetRequestConfiguration{
			QueryParameters: &teams.ItemChannelsRequestBuilderGetQueryParameters{Select: []string{"id"}}})
		record("Channel.ReadBasic.All", err)
	}
	none := "externalId eq '00000000-0000-0000-0000-000000000000'"
	_, err = gc.AppCatalogs().TeamsApps().Get(ctx, &appcatalogs.TeamsAppsRequestBuilderGetRequestConfiguration{
		QueryParameters: &appcatalogs.TeamsAppsRequestBuilderGetQueryParameters{Filter: &none, Select: []string{"id"}}})
	record("AppCatalog.Read.All", err)
	_, err = gc.Users().ByUserId("00000000-0000-0000-0000-000000000000").Teamwork().InstalledApps().Get(ctx, nil)
	record("TeamsAppInstallation.ReadWriteSelfForUser.All", err)
	return out, nil
}
