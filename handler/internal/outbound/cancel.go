package outbound

import (
	"context"
	"errors"
	"fmt"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Cancellation is what a cancel did.
type Cancellation struct {
	Batch     Batch `json:"-"`
	Cancelled int   `json:"cancelled"` // deliveries that will not go
	Sent      int   `json:"sent"`      // had gone already
	InFlight  int   `json:"inFlight"`  // being handed to Microsoft at that moment: they may still go
	Failed    int   `json:"failed"`
	Skipped   int   `json:"skipped"`
	// AlreadyCancelled counts deliveries an earlier cancel had stopped.
	AlreadyCancelled int `json:"alreadyCancelled"`
}

// Cancel stops what has not gone: the batch is marked cancelled first (so no dispatch step
// queues more and no sender starts one of its deliveries), its scheduled dispatch message is
// cancelled by sequence number, and every scheduled or queued delivery is marked cancelled.
// Cancelling again is harmless and reports the same totals.
func (p *Pipeline) Cancel(ctx context.Context, org tablestore.Org, id string) (Cancellation, error) {
	var b Batch
	for attempt := 0; ; attempt++ {
		cur, etag, err := p.store.Batch(ctx, org, id)
		if err != nil {
			return Cancellation{}, err
		}
		b = cur
		if b.State == CancelState || b.State == Settled {
			break // cancelled already, or everything went: nothing to relabel
		}
		b.State, b.CancelledAt, b.UpdatedAt = CancelState, p.now(), p.now()
		if _, err = p.store.putBatch(ctx, org, b, etag); err == nil {
			break
		}
		if !errors.Is(err, errkind.Conflict) || attempt >= 5 {
			return Cancellation{}, err
		}
	}
	if b.DispatchSeq != 0 {
		if err := p.cfg.Queue.CancelScheduled(ctx, queue.OutboundMail, []int64{b.DispatchSeq}); err != nil {
			// Not fatal: the dispatch step finds the batch cancelled and does nothing.
			p.log.WarnContext(ctx, "cancelling a scheduled dispatch message", "org", org.String(), "batch", id, "error", err.Error())
		}
	}
	out := Cancellation{Batch: b}
	var ops []tablestore.Op
	now := p.now()
	for row, err := range p.store.rows(ctx, org, id, 0, "") {
		if err != nil {
			return out, err
		}
		d := row.Value
		switch d.Status {
		case Scheduled, Queued:
			d.Status, d.UpdatedAt = Cancelled, now
			ops = append(ops, tablestore.UpdateOp(d.Key(), d, row.ETag, tablestore.Replace))
		case Sending:
			out.InFlight++
		case Sent:
			out.Sent++
		case Failed:
			out.Failed++
		case Skipped:
			out.Skipped++
		case Cancelled:
			out.AlreadyCancelled++
		}
	}
	n, inFlight, err := p.cancelRows(ctx, org, ops)
	out.Cancelled, out.InFlight = n, out.InFlight+inFlight
	if err != nil {
		return out, err
	}
	if out.InFlight == 0 {
		if err := p.settle(ctx, org, id, nil); err != nil {
			return out, err
		}
	}
	return out, nil
}

// cancelRows applies the conditional cancels in transactions; a transaction that meets a row
// a sender has just claimed is redone row by row, the claimed one counted in flight.
func (p *Pipeline) cancelRows(ctx context.Context, org tablestore.Org, ops []tablestore.Op) (cancelled, inFlight int, err error) {
	for start := 0; start < len(ops); start += 100 {
		part := ops[start:min(start+100, len(ops))]
		err := p.store.deliveries.Batch(ctx, org, part)
		if err == nil {
			cancelled += len(part)
			continue
		}
		if !errors.Is(err, errkind.Conflict) {
			return cancelled, inFlight, err
		}
		for _, op := range part {
			ok, err := p.cancelOne(ctx, org, op.Key)
			if err != nil {
				return cancelled, inFlight, err
			}
			if ok {
				cancelled++
			} else {
				inFlight++
			}
		}
	}
	return cancelled, inFlight, nil
}

// cancelOne cancels one row that changed since it was read: queued meanwhile by a dispatch step
// that started before the cancel, it is cancelled still; claimed by a sender, it is in flight.
func (p *Pipeline) cancelOne(ctx context.Context, org tablestore.Org, key string) (bool, error) {
	for range 5 {
		d, etag, err := p.store.delivery(ctx, org, key)
		if err != nil {
			return false, fmt.Errorf("outbound: cancelling %s: %w", key, err)
		}
		if d.Status != Scheduled && d.Status != Queued {
			return false, nil
		}
		d.Status, d.UpdatedAt = Cancelled, p.now()
		if _, err := p.store.updateDelivery(ctx, org, d, etag); err == nil {
			return true, nil
		} else if !errors.Is(err, errkind.Conflict) {
			return false, fmt.Errorf("outbound: cancelling %s: %w", key, err)
		}
	}
	return false, nil
}
