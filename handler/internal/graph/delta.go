package graph

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/groups"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
)

// UserFields are the user properties stakeholder sync selects. With $select on delta, changes to
// other properties do not surface a user, which keeps delta rounds small.
var UserFields = []string{
	"id", "displayName", "givenName", "surname", "mail", "userPrincipalName", "mobilePhone",
	"businessPhones", "department", "jobTitle", "officeLocation", "accountEnabled", "manager",
}

// GroupFields are the group properties group sync selects (members yields members@delta).
var GroupFields = []string{"displayName", "description", "members"}

// UsersDelta fetches one page of users/delta. An empty link starts a full round; otherwise link is
// a nextLink or deltaLink from an earlier page, used unchanged.
func (c *Client) UsersDelta(ctx context.Context, tenantID, link string) (entra.UserPage, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return entra.UserPage{}, err
	}
	headers := backgroundHeaders()
	var resp users.DeltaGetResponseable
	if link == "" {
		resp, err = gc.Users().Delta().GetAsDeltaGetResponse(ctx, &users.DeltaRequestBuilderGetRequestConfiguration{
			Headers:         headers,
			QueryParameters: &users.DeltaRequestBuilderGetQueryParameters{Select: UserFields},
		})
	} else {
		resp, err = gc.Users().Delta().WithUrl(link).GetAsDeltaGetResponse(ctx, &users.DeltaRequestBuilderGetRequestConfiguration{Headers: headers})
	}
	if err != nil {
		return entra.UserPage{}, classify("users/delta", err)
	}
	page := entra.UserPage{NextLink: deref(resp.GetOdataNextLink()), DeltaLink: deref(resp.GetOdataDeltaLink())}
	page.Users = make([]entra.User, 0, len(resp.GetValue()))
	for _, u := range resp.GetValue() {
		page.Users = append(page.Users, toUser(u))
	}
	return page, nil
}

// GroupsDelta fetches one page of groups/delta, optionally limited to ids (at most 50, Graph's
// limit for $filter on delta).
func (c *Client) GroupsDelta(ctx context.Context, tenantID, link string, ids []string) (entra.GroupPage, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return entra.GroupPage{}, err
	}
	headers := backgroundHeaders()
	var resp groups.DeltaGetResponseable
	if link == "" {
		q := &groups.DeltaRequestBuilderGetQueryParameters{Select: GroupFields}
		if len(ids) > 0 {
			clauses := make([]string, len(ids))
			for i, id := range ids {
				clauses[i] = "id eq '" + strings.ReplaceAll(id, "'", "''") + "'"
			}
			f := strings.Join(clauses, " or ")
			q.Filter = &f
		}
		resp, err = gc.Groups().Delta().GetAsDeltaGetResponse(ctx, &groups.DeltaRequestBuilderGetRequestConfiguration{Headers: headers, QueryParameters: q})
	} else {
		resp, err = gc.Groups().Delta().WithUrl(link).GetAsDeltaGetResponse(ctx, &groups.DeltaRequestBuilderGetRequestConfiguration{Headers: headers})
	}
	if err != nil {
		return entra.GroupPage{}, classify("groups/delta", err)
	}
	page := entra.GroupPage{NextLink: deref(resp.GetOdataNextLink()), DeltaLink: deref(resp.GetOdataDeltaLink())}
	for _, g := range resp.GetValue() {
		page.Groups = append(page.Groups, toGroup(g))
	}
	return page, nil
}

// GroupsDeltaLatest starts a groups/delta round over ids (at most 50) at the present
// ($deltatoken=latest): a deltaLink without reading the groups' current members. Sync uses it to
// merge several rounds into one once their groups are known.
func (c *Client) GroupsDeltaLatest(ctx context.Context, tenantID string, ids []string) (string, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return "", err
	}
	clauses := make([]string, len(ids))
	for i, id := range ids {
		clauses[i] = "id eq '" + strings.ReplaceAll(id, "'", "''") + "'"
	}
	q := url.Values{"$select": {strings.Join(GroupFields, ",")}, "$deltatoken": {"latest"}}
	if len(clauses) > 0 {
		q.Set("$filter", strings.Join(clauses, " or "))
	}
	u := strings.TrimRight(c.base.String(), "/") + "/groups/delta?" + strings.ReplaceAll(q.Encode(), "+", "%20")
	resp, err := gc.Groups().Delta().WithUrl(u).GetAsDeltaGetResponse(ctx, &groups.DeltaRequestBuilderGetRequestConfiguration{Headers: backgroundHeaders()})
	if err != nil {
		return "", classify("groups/delta", err)
	}
	link := deref(resp.GetOdataDeltaLink())
	if link == "" {
		return "", fmt.Errorf("graph: groups/delta $deltatoken=latest answered no deltaLink: %w", errkind.Unavailable)
	}
	return link, nil
}

// backgroundHeaders marks sync traffic as low priority, so Graph throttles it before the
// tenant's interactive traffic.
func backgroundHeaders() *abstractions.RequestHeaders {
	h := abstractions.NewRequestHeaders()
	h.Add("x-ms-throttle-priority", "low")
	return h
}

func toUser(u models.Userable) entra.User {
	out := entra.User{
		ID:                deref(u.GetId()),
		DisplayName:       deref(u.GetDisplayName()),
		GivenName:         deref(u.GetGivenName()),
		Surname:           deref(u.GetSurname()),
		Mail:              deref(u.GetMail()),
		UserPrincipalName: deref(u.GetUserPrincipalName()),
		MobilePhone:       deref(u.GetMobilePhone()),
		BusinessPhones:    u.GetBusinessPhones(),
		Department:        deref(u.GetDepartment()),
		JobTitle:          deref(u.GetJobTitle()),
		OfficeLocation:    deref(u.GetOfficeLocation()),
		AccountEnabled:    u.GetAccountEnabled() == nil || *u.GetAccountEnabled(),
	}
	extra := u.GetAdditionalData()
	out.Removed = removal(extra["@removed"])
	if m := u.GetManager(); m != nil {
		out.ManagerID = deref(m.GetId())
	} else if refs, ok := extra["manager@delta"].([]any); ok {
		for _, r := range refs {
			if id := str(field(r, "id")); id != "" && removal(field(r, "@removed")) == entra.NotRemoved {
				out.ManagerID = id
			}
		}
	}
	return out
}

func toGroup(g models.Groupable) entra.Group {
	out := entra.Group{
		ID:          deref(g.GetId()),
		DisplayName: deref(g.GetDisplayName()),
		Description: deref(g.GetDescription()),
	}
	extra := g.GetAdditionalData()
	out.Removed = removal(extra["@removed"])
	refs, _ := extra["members@delta"].([]any)
	for _, r := range refs {
		typ := strings.ToLower(str(field(r, "@odata.type")))
		isGroup := strings.HasSuffix(typ, ".group")
		if !isGroup && !strings.HasSuffix(typ, ".user") {
			continue // devices, contacts, service principals are not stakeholders
		}
		out.Members = append(out.Members, entra.MemberChange{
			ID: str(field(r, "id")), IsGroup: isGroup, Removed: field(r, "@removed") != nil,
		})
	}
	return out
}

// removal reads an @removed annotation as the SDK leaves it in additional data.
func removal(v any) entra.Removal {
	if v == nil {
		return entra.NotRemoved
	}
	if reason := str(field(v, "reason")); reason == string(entra.SoftDeleted) {
		return entra.SoftDeleted
	}
	return entra.HardDeleted
}

func field(v any, key string) any {
	if m, ok := v.(map[string]any); ok {
		return m[key]
	}
	return nil
}

func str(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case *string:
		return deref(s)
	}
	return ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
