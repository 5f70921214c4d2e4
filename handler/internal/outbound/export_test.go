package outbound

import (
	"context"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// SetState puts a batch back in a state, as an accept cut short would have left it.
func (s *Store) SetState(ctx context.Context, org tablestore.Org, id, state string) error {
	b, etag, err := s.Batch(ctx, org, id)
	if err != nil {
		return err
	}
	b.State = state
	_, err = s.putBatch(ctx, org, b, etag)
	return err
}

// SetDelivery overwrites a delivery row, as a worker that stopped half-way would have left it.
func (s *Store) SetDelivery(ctx context.Context, org tablestore.Org, d Delivery) error {
	_, err := s.deliveries.Upsert(ctx, org, d.Key(), d, tablestore.Replace)
	return err
}
