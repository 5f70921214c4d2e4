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
