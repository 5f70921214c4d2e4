package tablestore

import (
	"context"
	"encoding/json"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// Partitions lists the orgs that have rows in t. It is the one read that spans orgs, for work
// that must visit every org (the sync scheduler); it returns org ids only, never their rows, and
// is meant for small per-org tables such as settings.
func (t *Table) Partitions(ctx context.Context) ([]Org, error) {
	if err := t.ensure(ctx); err != nil {
		return nil, err
	}
	sel := "PartitionKey"
	pager := t.client.NewListEntitiesPager(&aztables.ListEntitiesOptions{Select: &sel, Format: noMetadata()})
	var out []Org
	seen := map[string]bool{}
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			err, _ = translate("list partitions of "+t.full, err)
			return nil, err
		}
		for _, body := range page.Entities {
			var e struct{ PartitionKey string }
			if err := json.Unmarshal(body, &e); err != nil {
				return nil, err
			}
			if !seen[e.PartitionKey] {
				seen[e.PartitionKey] = true
				out = append(out, Org{id: e.PartitionKey})
			}
		}
	}
	return out, nil
}
