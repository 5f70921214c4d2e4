package graph

import (
	"context"

	"github.com/microsoftgraph/msgraph-sdk-go/groups"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// CheckAccess confirms application permissions with the cheapest call each one allows, as
// Microsoft asks clients not to rely on token contents alone. It reports, per permission it can
// probe, whether the call was allowed; a permission missing from the result could not be probed
// (no harmless call exists, e.g. Mail.Send) or the probe failed for another reason.
func (c *Client) CheckAccess(ctx context.Context, tenantID string) (map[string]bool, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return nil, err
	}
	top := int32(1)
	probes := map[string]func() error{
		"User.Read.All": func() error {
			_, err := gc.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
				QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Top: &top, Select: []string{"id"}}})
			return err
		},
		"GroupMember.Read.All": func() error {
			_, err := gc.Groups().Get(ctx, &groups.GroupsRequestBuilderGetRequestConfiguration{
				QueryParameters: &groups.GroupsRequestBuilderGetQueryParameters{Top: &top, Select: []string{"id"}}})
			return err
		},
	}
	out := map[string]bool{}
	for perm, probe := range probes {
		err := probe()
		if err == nil {
			out[perm] = true
		} else if errkind.Of(classify(perm, err)) == errkind.Forbidden {
			out[perm] = false
		}
	}
	return out, nil
}
