package outbound

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// dispatchChunk bounds the rows one dispatch step moves onto the queues.
const dispatchChunk = 500

// dispatch moves the next scheduled rows of a batch onto their queues: mail rows get a slot of
// the sender pool (within the horizon) and a message scheduled at it; Teams rows go at once.
// Then it queues the next step, or marks the batch dispatched. A step for a cursor the batch
// has moved past is a duplicate and does nothing.
func (p *Pipeline) dispatch(ctx context.Context, org tablestore.Org, batchID string, cursor int) error {
	b, _, err := p.store.Batch(ctx, org, batchID)
	if errors.Is(err, errkind.NotFound) {
		return nil // erased
	}
	if err != nil {
		return err
	}
	switch {
	case b.State == CancelState || b.State == Settled || b.State == Dispatched || b.Cursor > cursor:
		return nil // cancelled, done, or a duplicate of a step already taken
	case b.Cursor < cursor:
		// The step before this one has queued it but not yet recorded its cursor: try again.
		return fmt.Errorf("outbound: dispatch of %s at %d arrived before the batch moved there (at %d): %w", b.ID, cursor, b.Cursor, errkind.Conflict)
	}
	now := p.now()
	type pending struct {
		row  Delivery
		etag tablestore.ETag
	}
	var rows []pending
	var requeue []queue.Message
	end := b.Recipients // the cursor after this step, if every row read goes
	for row, err := range p.store.rows(ctx, org, b.ID, cursor, "") {
		if err != nil {
			return err
		}
		if len(rows) >= dispatchChunk && row.Value.Index != rows[len(rows)-1].row.Index {
			end = row.Value.Index
			break
		}
		switch row.Value.Status {
		case Scheduled:
			rows = append(rows, pending{row.Value, row.ETag})
		case Queued:
			// Queued by an earlier attempt of this step that stopped before publishing: its
			// message goes again (duplicate detection drops it if it went).
			m := deliveryMessage(org, row.Value, "q")
			if !m.NotBefore.After(now) {
				m.NotBefore = time.Time{}
			}
			requeue = append(requeue, m)
		}
	}
	// Each channel's rows take slots of its pace: mail the sender pool's, Teams the tenant's.
	for _, ch := range []struct {
		name  string
		pc    pacer
		lanes []string
	}{{Mail, p.cfg.Pacer, b.Senders}, {Teams, p.cfg.Teams.Pacer, teamsLane}} {
		var idx []int
		for i, r := range rows {
			if r.row.Channel == ch.name && r.row.Index < end {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 || ch.pc == nil {
			continue
		}
		slots, err := ch.pc.Reserve(ctx, b.Tenant, ch.lanes, ones(len(idx)), now, now.Add(p.cfg.Horizon))
		if err != nil {
			return fmt.Errorf("outbound: reserving %s slots for %s: %w", ch.name, b.ID, err)
		}
		for k, i := range idx {
			if k >= len(slots) {
				// Booked to the horizon: this recipient and the rest wait for the next step.
				end = min(end, rows[i].row.Index)
				break
			}
			rows[i].row.DueAt, rows[i].row.Paced = slots[k].At, true
			if ch.name == Mail {
				rows[i].row.Mailbox = slots[k].Mailbox
			}
		}
	}
	var ops []tablestore.Op
	msgs := map[string][]queue.Message{}
	for _, m := range requeue {
		msgs[m.Queue] = append(msgs[m.Queue], m)
	}
	lastDue := now
	for _, r := range rows {
		if r.row.Index >= end {
			break
		}
		d := r.row
		if d.DueAt.IsZero() {
			d.DueAt = now
		}
		d.Status, d.UpdatedAt = Queued, now
		if d.DueAt.After(lastDue) {
			lastDue = d.DueAt
		}
		ops = append(ops, tablestore.UpdateOp(d.Key(), d, r.etag, tablestore.Replace))
		m := deliveryMessage(org, d, "q")
		if !m.NotBefore.After(now) {
			m.NotBefore = time.Time{}
		}
		msgs[m.Queue] = append(msgs[m.Queue], m)
	}
	// Rows first (conditionally: a cancel that got there first wins), then their messages: a
	// message never names a row that does not say queued.
	if err := p.store.applyDeliveries(ctx, org, ops); err != nil {
		return fmt.Errorf("outbound: queueing rows of %s: %w", b.ID, err)
	}
	for _, q := range []string{queue.OutboundMail, queue.OutboundTeams} {
		if err := p.cfg.Queue.PublishBatch(ctx, msgs[q]); err != nil {
			return fmt.Errorf("outbound: publishing deliveries of %s: %w", b.ID, err)
		}
	}
	return p.advance(ctx, org, b.ID, cursor, end, lastDue)
}

// advance moves the batch's cursor to end and then queues the next step: at once when the pool
// had room to spare, else when half the horizon of booked slots has gone. The cursor moves
// first, so the next step never finds the batch behind it; a next step lost between the two is
// restarted by the reconciler (DispatchAt passed).
func (p *Pipeline) advance(ctx context.Context, org tablestore.Org, batchID string, cursor, end int, lastDue time.Time) error {
	now := p.now()
	at := now
	switch {
	case lastDue.Sub(now) > p.cfg.Horizon/2:
		at = lastDue.Add(-p.cfg.Horizon / 2)
	case end == cursor:
		at = now.Add(p.cfg.Horizon / 2) // nothing fitted: the pool is booked (daily cap); look again later
	}
	var b Batch
	for attempt := 0; ; attempt++ {
		cur, etag, err := p.store.Batch(ctx, org, batchID)
		if err != nil {
			return err
		}
		if cur.Cursor != cursor || cur.State == CancelState {
			return nil
		}
		b = cur
		b.Cursor, b.UpdatedAt, b.DispatchSeq, b.DispatchAt = end, now, 0, at
		if end >= b.Recipients {
			b.State, b.DispatchAt = Dispatched, time.Time{}
		}
		if _, err = p.store.putBatch(ctx, org, b, etag); err == nil {
			break
		}
		if !errors.Is(err, errkind.Conflict) || attempt >= 5 {
			return err
		}
	}
	if b.State == Dispatched {
		return nil
	}
	seq, err := p.scheduleDispatch(ctx, org, batchID, end, at, fmt.Sprintf("next%d", at.UnixMilli()))
	if err != nil || seq == 0 {
		return err
	}
	// Keep the sequence number, for cancel; a batch that changed meanwhile keeps its own.
	for range 5 {
		cur, etag, err := p.store.Batch(ctx, org, batchID)
		if err != nil || cur.Cursor != end || cur.State == CancelState {
			if err == nil && cur.State == CancelState {
				return p.cfg.Queue.CancelScheduled(ctx, queue.OutboundMail, []int64{seq})
			}
			return err
		}
		cur.DispatchSeq = seq
		if _, err := p.store.putBatch(ctx, org, cur, etag); !errors.Is(err, errkind.Conflict) {
			return err
		}
	}
	return nil
}

func ones(n int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = 1
	}
	return r
}
