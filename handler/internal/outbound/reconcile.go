package outbound

import (
	"context"

	"errors"
	"fmt"
	"github.com/leapchange/m365/handler/internal/connection"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Reconciler thresholds.
const (
	// staleAfter is how long past its due time a queued delivery (or a dispatch step) may go
	// unprocessed before its message is taken for lost and queued again.
	staleAfter = 15 * time.Minute
	// maxRevivals is how many times a delivery is queued again before it is failed as lost.
	maxRevivals = 3
	// acceptTimeout is how long a batch may stay accepting (its client retrying with the same
	// idempotency key finishes it) before it is cancelled: nothing of it was queued.
	acceptTimeout = time.Hour
)

// ReconcileReport says what one pass did.
type ReconcileReport struct {
	Batches    int `json:"batches"`    // open batches looked at
	Revived    int `json:"revived"`    // deliveries queued again
	Lost       int `json:"lost"`       // deliveries failed as lost
	Dispatches int `json:"dispatches"` // dispatch steps queued again
	Settled    int `json:"settled"`
	Abandoned  int `json:"abandoned"` // accepts never finished, cancelled
}

// Reconcile finds, in every open batch, deliveries whose message is gone (queued or sending
// well past their time: a message lost with a local host, dead-lettered, or a crash between a
// row and its message) and queues them again, failing them as lost after a few tries; restarts
// dispatch that stopped; settles batches that are done. One batch's failure does not stop the
// others. It runs on the SyncScheduler's timer.
func (p *Pipeline) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	var errs []error
	for row, err := range p.store.openBatches(ctx) {
		if err != nil {
			return rep, err
		}
		rep.Batches++
		org, err := tablestore.NewOrg(row.Org)
		if err != nil {
			continue
		}
		if err := p.reconcileBatch(ctx, org, row.Batch, &rep); err != nil {
			p.log.WarnContext(ctx, "reconciling a message batch", "org", row.Org, "batch", row.Batch, "error", err.Error())
			errs = append(errs, fmt.Errorf("%s/%s: %w", row.Org, row.Batch, err))
		}
	}
	return rep, errors.Join(errs...)
}

func (p *Pipeline) reconcileBatch(ctx context.Context, org tablestore.Org, id string, rep *ReconcileReport) error {
	now := p.now()
	b, _, err := p.store.Batch(ctx, org, id)
	if errors.Is(err, errkind.NotFound) {
		return p.store.markClosed(ctx, org, id) // erased with its org
	}
	if err != nil {
		return err
	}
	if b.State == Accepting {
		if now.Sub(b.CreatedAt) < acceptTimeout {
			return nil
		}
		rep.Abandoned++
		_, err := p.Cancel(ctx, org, id)
		return err
	}
	if b.State != CancelState && b.Cursor < b.Recipients && now.Sub(b.DispatchAt) > staleAfter {
		if err := p.restartDispatch(ctx, org, id, b.Cursor, now); err != nil {
			return err
		}
		rep.Dispatches++
	}
	// While the connection waits for an administrator, deliveries cycle on their own messages
	// (every 15 minutes): they are neither lost nor to be revived.
	if rec, _, err := p.cfg.Connections.Get(ctx, org); err == nil && rec.Status == connection.NeedsReauthorization {
		return nil
	}
	open := 0
	filter := "status eq 'queued' or status eq 'sending' or status eq 'scheduled'"
	for row, err := range p.store.rows(ctx, org, id, 0, filter) {
		if err != nil {
			return err
		}
		open++
		d := row.Value
		due := d.DueAt
		if d.Status == Sending {
			due = d.SendingSince.Add(verifyAfter)
		}
		if d.Status == Scheduled || now.Sub(due) < staleAfter {
			continue
		}
		if d.Revived >= maxRevivals {
			if err := p.fail(ctx, org, d, row.ETag, ReasonLost, "The message carrying this delivery was lost several times; send it again.", ""); err != nil {
				return err
			}
			rep.Lost++
			continue
		}
		d.Revived++
		d.UpdatedAt = now
		if _, err := p.store.updateDelivery(ctx, org, d, row.ETag); err != nil {
			if errors.Is(err, errkind.Conflict) {
				continue // a sender got to it meanwhile
			}
			return err
		}
		m := deliveryMessage(org, d, fmt.Sprintf("r%d", d.Revived))
		m.NotBefore = time.Time{}
		if err := p.cfg.Queue.Publish(ctx, m); err != nil {
			return err
		}
		rep.Revived++
	}
	if open == 0 && (b.State == Dispatched || b.State == CancelState) {
		rep.Settled++
		return p.settle(ctx, org, id, nil)
	}
	return nil
}

// restartDispatch queues the dispatch step at cursor again and records when, so the next pass
// does not queue it again before it had its chance.
func (p *Pipeline) restartDispatch(ctx context.Context, org tablestore.Org, id string, cursor int, now time.Time) error {
	b, etag, err := p.store.Batch(ctx, org, id)
	if err != nil || b.Cursor != cursor {
		return err
	}
	b.DispatchAt, b.UpdatedAt = now, now
	if _, err := p.store.putBatch(ctx, org, b, etag); err != nil {
		if errors.Is(err, errkind.Conflict) {
			return nil // it moved: it is alive
		}
		return err
	}
	_, err = p.scheduleDispatch(ctx, org, id, cursor, now, fmt.Sprintf("r%d", now.UnixMilli()))
	return err
}
