package stakeholder

import (
	"context"
	"strings"

	"github.com/leapchange/m365/handler/internal/fold"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// SearchNames finds active stakeholders whose name contains every word of query (case and
// accents ignored), at most limit, exact full-name matches first. It streams the directory's
// name columns once: the bot uses it with a deadline, and answers later through its queue when
// an org is too large to search within it.
func (s *Store) SearchNames(ctx context.Context, org tablestore.Org, query string, limit int) ([]Stakeholder, error) {
	words := strings.Fields(fold.String(query))
	if len(words) == 0 || limit <= 0 {
		return nil, nil
	}
	q := tablestore.QueryOptions{KeyPrefix: "s-", PageSize: tablestore.MaxPageSize, Filter: "active eq true",
		Select: []string{"id", "firstName", "lastName", "email", "role", "department", "location"}}
	var exact, partial []Stakeholder
	whole := strings.Join(words, " ")
	for row, err := range tablestore.Query[Stakeholder](ctx, s.t, org, q) {
		if err != nil {
			return nil, err
		}
		st := row.Value
		name := fold.String(st.FirstName + " " + st.LastName)
		match := true
		for _, w := range words {
			if !strings.Contains(name, w) {
				match = false
				break
			}
		}
		switch {
		case !match:
		case name == whole:
			exact = append(exact, st)
		case len(partial) < limit:
			partial = append(partial, st)
		}
		if len(exact) >= limit {
			break
		}
	}
	out := append(exact, partial...)
	return out[:min(len(out), limit)], nil
}
