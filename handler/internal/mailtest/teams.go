package mailtest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// InstallApp installs a catalog app for a user (Graph's installedApps, as the pipeline's Teams
// channel uses it), idempotently: an app already installed answers its installation.
func (c *Client) InstallApp(ctx context.Context, tenantID, userID, catalogAppID string) (string, error) {
	base := "/users/" + url.PathEscape(userID) + "/teamwork/installedApps"
	body, _ := json.Marshal(map[string]string{"teamsApp@odata.bind": c.Base + "/appCatalogs/teamsApps/" + url.PathEscape(catalogAppID)})
	err := c.do(ctx, tenantID, http.MethodPost, base, body, nil)
	if err != nil && !errors.Is(err, errkind.Conflict) {
		return "", err
	}
	var list struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	q := "?$expand=teamsApp&$filter=" + url.QueryEscape("teamsApp/id eq '"+catalogAppID+"'")
	if err := c.do(ctx, tenantID, http.MethodGet, base+q, nil, &list); err != nil {
		return "", err
	}
	if len(list.Value) == 0 {
		return "", &errkind.Error{Kind: errkind.NotFound, Message: "installed, then not found"}
	}
	return list.Value[0].ID, nil
}

// InstallationChat returns the chat of a user's installation of our app.
func (c *Client) InstallationChat(ctx context.Context, tenantID, userID, installationID string) (string, error) {
	var chat struct {
		ID string `json:"id"`
	}
	err := c.do(ctx, tenantID, http.MethodGet, "/users/"+url.PathEscape(userID)+"/teamwork/installedApps/"+url.PathEscape(installationID)+"/chat", nil, &chat)
	return chat.ID, err
}

// AppCatalogID finds an app of the tenant's catalog by its manifest id.
func (c *Client) AppCatalogID(ctx context.Context, tenantID, externalID string) (string, error) {
	var list struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	q := "/appCatalogs/teamsApps?$filter=" + url.QueryEscape("externalId eq '"+externalID+"'")
	if err := c.do(ctx, tenantID, http.MethodGet, q, nil, &list); err != nil {
		return "", err
	}
	if len(list.Value) == 0 {
		return "", &errkind.Error{Kind: errkind.NotFound, Message: "no app with this manifest id in the catalog"}
	}
	return list.Value[0].ID, nil
}

// ChannelNames lists a team's channels by id.
func (c *Client) ChannelNames(ctx context.Context, tenantID, teamID string) (string, map[string]string, error) {
	var list struct {
		Value []struct {
			ID          string `json:"id"`
			DisplayName string `json:"displayName"`
		} `json:"value"`
	}
	if err := c.do(ctx, tenantID, http.MethodGet, "/teams/"+url.PathEscape(teamID)+"/channels", nil, &list); err != nil {
		return "", nil, err
	}
	names := map[string]string{}
	for _, ch := range list.Value {
		names[ch.ID] = ch.DisplayName
	}
	return "", names, nil
}
