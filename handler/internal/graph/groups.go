package graph

import (
	"context"
	"strings"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/groups"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
)

// eventual is the header advanced queries ($search, $count, type casts) need; it is not carried
// into nextLinks, so it is sent on every page.
func eventual() *abstractions.RequestHeaders {
	h := abstractions.NewRequestHeaders()
	h.Add("ConsistencyLevel", "eventual")
	return h
}

// SearchGroups returns up to limit groups whose display name matches query (all groups, first
// page, when query is empty), for the admin's "Configure Groups" picker.
func (c *Client) SearchGroups(ctx context.Context, tenantID, query string, limit int) ([]entra.Group, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return nil, err
	}
	top := int32(min(max(limit, 1), 999))
	q := &groups.GroupsRequestBuilderGetQueryParameters{Top: &top, Select: []string{"id", "displayName", "description"}}
	if query = strings.TrimSpace(query); query != "" {
		// $search takes "property:words"; quotes inside would end the phrase.
		s := `"displayName:` + strings.ReplaceAll(query, `"`, "") + `"`
		q.Search = &s
	}
	resp, err := gc.Groups().Get(ctx, &groups.GroupsRequestBuilderGetRequestConfiguration{Headers: eventual(), QueryParameters: q})
	if err != nil {
		return nil, classify("groups", err)
	}
	out := make([]entra.Group, 0, len(resp.GetValue()))
	for _, g := range resp.GetValue() {
		out = append(out, toGroup(g))
	}
	return out, nil
}

// Group returns one group; a missing one is an entra error of KindNotFound.
func (c *Client) Group(ctx context.Context, tenantID, id string) (entra.Group, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return entra.Group{}, err
	}
	g, err := gc.Groups().ByGroupId(id).Get(ctx, &groups.GroupItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &groups.GroupItemRequestBuilderGetQueryParameters{Select: []string{"id", "displayName", "description"}}})
	if err != nil {
		return entra.Group{}, classify("groups/"+id, err)
	}
	return toGroup(g), nil
}

// TransitiveUserIDs returns the ids of every user in a group, nested groups expanded.
func (c *Client) TransitiveUserIDs(ctx context.Context, tenantID, groupID string) ([]string, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return nil, err
	}
	count, top := true, int32(999)
	builder := gc.Groups().ByGroupId(groupID).TransitiveMembers().GraphUser()
	cfg := &groups.ItemTransitiveMembersGraphUserRequestBuilderGetRequestConfiguration{
		Headers:         eventual(),
		QueryParameters: &groups.ItemTransitiveMembersGraphUserRequestBuilderGetQueryParameters{Select: []string{"id"}, Count: &count, Top: &top},
	}
	var ids []string
	for {
		resp, err := builder.Get(ctx, cfg)
		if err != nil {
			return nil, classify("groups/"+groupID+"/transitiveMembers", err)
		}
		for _, u := range resp.GetValue() {
			ids = append(ids, deref(u.GetId()))
		}
		next := deref(resp.GetOdataNextLink())
		if next == "" {
			return ids, nil
		}
		builder = builder.WithUrl(next)
		cfg = &groups.ItemTransitiveMembersGraphUserRequestBuilderGetRequestConfiguration{Headers: eventual()}
	}
}

// User returns one user with the fields stakeholder sync selects, and its manager.
func (c *Client) User(ctx context.Context, tenantID, id string) (entra.User, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return entra.User{}, err
	}
	item := gc.Users().ByUserId(id)
	u, err := item.Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: withoutManager(UserFields)}})
	if err != nil {
		return entra.User{}, classify("users/"+id, err)
	}
	out := toUser(u)
	m, err := item.Manager().Get(ctx, nil)
	switch {
	case err == nil:
		out.ManagerID = deref(m.GetId())
	case errkind.Of(classify("manager", err)) != errkind.NotFound: // no manager is a 404
		return entra.User{}, classify("users/"+id+"/manager", err)
	}
	return out, nil
}

// withoutManager drops "manager" from a $select: outside delta it is a navigation property.
func withoutManager(fields []string) []string {
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		if f != "manager" {
			out = append(out, f)
		}
	}
	return out
}

// CountUsers returns how many users the tenant has, for a full sync's progress bar.
func (c *Client) CountUsers(ctx context.Context, tenantID string) (int, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return 0, err
	}
	count, top := true, int32(1)
	resp, err := gc.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{Headers: eventual(),
		QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Count: &count, Top: &top, Select: []string{"id"}}})
	if err != nil {
		return 0, classify("users/$count", err)
	}
	if n := resp.GetOdataCount(); n != nil {
		return int(*n), nil
	}
	return 0, &errkind.Error{Kind: errkind.Other, Message: "users: no @odata.count in the answer"}
}
