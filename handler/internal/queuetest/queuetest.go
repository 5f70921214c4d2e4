// Package queuetest is an in-memory queue with the Service Bus semantics the workers rely on, for
// tests and benchmarks that drive a worker directly (without the host stand-in): duplicate
// detection by message id, scheduled enqueue (NotBefore) with cancellation by sequence number,
// batches, delivery counts with redelivery of a failed message, and dead-lettering after
// MaxDeliveries.
package queuetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/queue"
)

// MaxDeliveries is Service Bus's default max delivery count.
const MaxDeliveries = 10

// Delivery is a message as a worker receives it.
type Delivery struct {
	queue.Message
	Count          int   // 1 on the first delivery
	SequenceNumber int64 // given when the message was accepted: 1, 2, … in the order of acceptance
}

// Queue is safe for concurrent use. The zero value is ready.
type Queue struct {
	// Now is the queue's clock for CancelScheduled (is a message still scheduled?); nil means
	// time.Now. A test that drives Drain with a fake DrainOptions.Now gives the same function
	// here.
	Now func() time.Time

	mu         sync.Mutex
	pending    []Delivery
	published  []queue.Message  // every accepted message, in order
	seen       map[string]int64 // duplicate detection (the whole life of the queue: tests are short): id → sequence number
	seq        int64            // the last sequence number given
	deadLetter []Delivery
}

// A *Queue publishes as a queue.Publisher does (it has no Ping nor Close).
var _ interface {
	Publish(context.Context, queue.Message) error
	PublishBatch(context.Context, []queue.Message) error
	Schedule(context.Context, queue.Message) (int64, error)
	CancelScheduled(context.Context, string, []int64) error
} = (*Queue)(nil)

// Publish enqueues m unless a message with its id was published before (then it is dropped,
// as Service Bus's duplicate detection does, and Publish still succeeds).
func (q *Queue) Publish(_ context.Context, m queue.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.acceptLocked(m)
	return nil
}

// PublishBatch enqueues msgs in order, each as Publish does (a duplicate, also of an earlier
// message of the batch, is dropped). Like the real publishers it checks first that every message
// has an id and that all go to the same queue, and accepts none if one does not (ErrInvalid).
func (q *Queue) PublishBatch(_ context.Context, msgs []queue.Message) error {
	for i, m := range msgs {
		if m.ID == "" {
			return fmt.Errorf("queuetest: message %d: %w: message id is empty", i, queue.ErrInvalid)
		}
		if m.Queue != msgs[0].Queue {
			return fmt.Errorf("queuetest: message %d: %w: queue %q, but the batch is for %q", i, queue.ErrInvalid, m.Queue, msgs[0].Queue)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range msgs {
		q.acceptLocked(m)
	}
	return nil
}

// Schedule enqueues m for m.NotBefore (which must be set) as Publish does and returns its
// sequence number, for CancelScheduled. For a duplicate id it is the first message's.
func (q *Queue) Schedule(_ context.Context, m queue.Message) (int64, error) {
	if m.NotBefore.IsZero() {
		return 0, fmt.Errorf("queuetest: %w: a scheduled message needs NotBefore", queue.ErrInvalid)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acceptLocked(m), nil
}

// CancelScheduled removes the pending messages of queue qname with those sequence numbers that
// are still scheduled: NotBefore after the queue's clock (Now). The others (due, delivered,
// dead-lettered, cancelled or unknown) are ignored, as Service Bus's cancel is best effort for
// the caller. Cancelled messages stay in Published.
func (q *Queue) CancelScheduled(_ context.Context, qname string, seqs []int64) error {
	now := time.Now
	if q.Now != nil {
		now = q.Now
	}
	t := now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending = slices.DeleteFunc(q.pending, func(d Delivery) bool {
		return d.Queue == qname && d.NotBefore.After(t) && slices.Contains(seqs, d.SequenceNumber)
	})
	return nil
}

// acceptLocked enqueues m unless its id was seen, and returns its sequence number (the first
// message's for a duplicate).
func (q *Queue) acceptLocked(m queue.Message) int64 {
	if q.seen == nil {
		q.seen = map[string]int64{}
	}
	if seq, ok := q.seen[m.ID]; ok {
		return seq
	}
	q.seq++
	q.seen[m.ID] = q.seq
	q.published = append(q.published, m)
	q.pending = append(q.pending, Delivery{Message: m, Count: 1, SequenceNumber: q.seq})
	return q.seq
}

// Published returns every accepted message, in order.
func (q *Queue) Published() []queue.Message { return snapshot(q, &q.published) }

// Pending returns the messages not yet delivered (or waiting for redelivery).
func (q *Queue) Pending() []Delivery { return snapshot(q, &q.pending) }

// DeadLettered returns the messages that failed MaxDeliveries times.
func (q *Queue) DeadLettered() []Delivery { return snapshot(q, &q.deadLetter) }

// snapshot copies one of q's lists under its lock.
func snapshot[T any](q *Queue, list *[]T) []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(*list)
}

// Lose drops every pending message, as a lost local host would: nothing is delivered of them.
func (q *Queue) Lose() []Delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	lost := q.pending
	q.pending = nil
	return lost
}

// Next takes the first message due at now (NotBefore not after it), if any.
func (q *Queue) Next(now time.Time) (Delivery, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, d := range q.pending {
		if !d.NotBefore.After(now) {
			q.pending = slices.Delete(q.pending, i, i+1)
			return d, true
		}
	}
	return Delivery{}, false
}

// Abandon returns a failed delivery to the queue with its count raised, or dead-letters it after
// MaxDeliveries. It reports whether the message was dead-lettered.
func (q *Queue) Abandon(d Delivery) (deadLettered bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d.Count >= MaxDeliveries {
		q.deadLetter = append(q.deadLetter, d)
		return true
	}
	d.Count++
	q.pending = append(q.pending, d)
	return false
}

// Drain delivers messages to handle until none is pending, in order, redelivering failures and
// dead-lettering after MaxDeliveries. When only scheduled messages are left it waits for the
// first with opts.Wait (see DrainOptions). It returns the number of deliveries.
func (q *Queue) Drain(ctx context.Context, handle func(context.Context, Delivery) error, opts DrainOptions) (int, error) {
	now := opts.Now
	switch {
	case opts.IgnoreSchedule:
		now = func() time.Time { return time.Unix(1<<40, 0) } // every message is due
	case now == nil && q.Now != nil:
		now = q.Now
	case now == nil:
		now = time.Now
	}
	n := 0
	for {
		d, ok := q.Next(now())
		if !ok {
			pending := q.Pending()
			if len(pending) == 0 {
				return n, nil
			}
			next := pending[0].NotBefore
			for _, p := range pending[1:] {
				if p.NotBefore.Before(next) {
					next = p.NotBefore
				}
			}
			if opts.Wait == nil {
				return n, fmt.Errorf("queuetest: %d messages are scheduled for later (first at %s) and Drain was given no way to wait", len(pending), next.Format(time.RFC3339))
			}
			if err := opts.Wait(ctx, next); err != nil {
				return n, err
			}
			continue
		}
		n++
		if opts.MaxDeliveries > 0 && n > opts.MaxDeliveries {
			return n, fmt.Errorf("queuetest: more than %d deliveries: a message keeps publishing its own continuation", opts.MaxDeliveries)
		}
		if err := handle(ctx, d); err != nil {
			if ctx.Err() != nil {
				return n, err
			}
			if q.Abandon(d) && opts.FailOnDeadLetter {
				return n, fmt.Errorf("queuetest: message %s dead-lettered after %d deliveries: %w", d.ID, d.Count, err)
			}
		}
	}
}

// DrainOptions tune Drain.
type DrainOptions struct {
	Now func() time.Time // default the queue's Now, else time.Now
	// Wait waits until the given time (a scheduled message is due); nil makes a scheduled
	// message an error. WaitRealTime sleeps.
	Wait func(ctx context.Context, until time.Time) error
	// MaxDeliveries bounds the deliveries of one Drain (0 = no bound).
	MaxDeliveries int
	// FailOnDeadLetter ends Drain with an error when a message is dead-lettered.
	FailOnDeadLetter bool
	// IgnoreSchedule delivers scheduled messages at once, for tests whose clock is not the queue's.
	IgnoreSchedule bool
}

// WaitRealTime sleeps until until (or ctx ends).
func WaitRealTime(ctx context.Context, until time.Time) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(until)):
		return nil
	}
}
