package outbound

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Acknowledged is the response an Acknowledge button records.
const Acknowledged = "acknowledged"

// ErrNotYours: a card action came from someone other than the delivery's recipient (a
// forwarded or shared card).
var ErrNotYours = fmt.Errorf("outbound: this card was sent to someone else: %w", errkind.Forbidden)

// Respond records what the recipient of a Teams delivery answered on its card: a survey choice
// (one of the batch's), or an acknowledgement. aadObjectID is who clicked, as the validated
// activity says; it must be the delivery's recipient. Answering again replaces the answer.
func (p *Pipeline) Respond(ctx context.Context, org tablestore.Org, batchID string, index int, aadObjectID, response string) (Batch, Delivery, error) {
	if !ValidBatchID(batchID) || index < 0 {
		return Batch{}, Delivery{}, fmt.Errorf("outbound: no such delivery: %w", errkind.NotFound)
	}
	b, _, err := p.store.Batch(ctx, org, batchID)
	if err != nil {
		return Batch{}, Delivery{}, err
	}
	if response != Acknowledged && !slices.Contains(b.SurveyChoices, response) {
		return b, Delivery{}, fmt.Errorf("outbound: %q is not one of the survey's choices: %w", response, errkind.Invalid)
	}
	for range 5 {
		d, etag, err := p.store.delivery(ctx, org, deliveryKey(batchID, index, Teams))
		if err != nil {
			return b, d, err
		}
		if !strings.EqualFold(d.EntraID, aadObjectID) || aadObjectID == "" {
			return b, d, ErrNotYours
		}
		if d.Response == response {
			return b, d, nil
		}
		d.Response, d.RespondedAt = response, p.now()
		_, err = p.store.updateDelivery(ctx, org, d, etag)
		if err == nil {
			return b, d, nil
		}
		if !errors.Is(err, errkind.Conflict) {
			return b, d, err
		}
	}
	return b, Delivery{}, fmt.Errorf("outbound: the delivery kept changing: %w", errkind.Conflict)
}

// ResponseOf is the batch and delivery a card action names (for the bot to rebuild the card).
func (p *Pipeline) ResponseOf(ctx context.Context, org tablestore.Org, batchID string, index int) (Batch, Delivery, error) {
	if !ValidBatchID(batchID) || index < 0 {
		return Batch{}, Delivery{}, fmt.Errorf("outbound: no such delivery: %w", errkind.NotFound)
	}
	b, _, err := p.store.Batch(ctx, org, batchID)
	if err != nil {
		return Batch{}, Delivery{}, err
	}
	d, _, err := p.store.delivery(ctx, org, deliveryKey(batchID, index, Teams))
	return b, d, err
}
