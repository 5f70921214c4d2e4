package changes

import (
	"context"
	"strings"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// ImpactedGroups lists the groups that changes impact, from the group index rows only
// (one row per change and group). The bot checks the asking person's membership of just these
// groups, instead of reading their every membership.
func (s *Store) ImpactedGroups(ctx context.Context, org tablestore.Org) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for row, err := range tablestore.Query[entry](ctx, s.t, org, tablestore.QueryOptions{KeyPrefix: "g-", Select: []string{"id"}}) {
		if err != nil {
			return nil, err
		}
		gid, _, _ := strings.Cut(strings.TrimPrefix(row.Key, "g-"), "|")
		if !seen[gid] {
			seen[gid] = true
			out = append(out, gid)
		}
	}
	return out, nil
}
