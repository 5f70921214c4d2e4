package devhost

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Clock is the time source of timers, scheduled messages, locks and duplicate detection.
// Tests inject a fake one; the zero Config uses the system clock.
type Clock interface {
	Now() time.Time
	// After behaves like time.After; a non-positive d fires at once.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// QueueOptions are the Service Bus entity properties of every in-process queue.
type QueueOptions struct {
	MaxDeliveryCount int           // deliveries before dead-lettering; default 10
	LockDuration     time.Duration // peek-lock length; default 5 min (the host renews locks up to maxAutoLockRenewalDuration)
	DuplicateWindow  time.Duration // message-id duplicate detection window; default 10 min
	TimeToLive       time.Duration // default 14 days; expired messages are dropped (not dead-lettered, the entity default)
}

func (o *QueueOptions) defaults() {
	if o.MaxDeliveryCount <= 0 {
		o.MaxDeliveryCount = 10
	}
	if o.LockDuration <= 0 {
		o.LockDuration = 5 * time.Minute
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 10 * time.Minute
	}
	if o.TimeToLive <= 0 {
		o.TimeToLive = 14 * 24 * time.Hour
	}
}

// Message is one message as it is sent to a queue.
type Message struct {
	MessageID             string
	Body                  []byte
	ContentType           string
	Subject               string
	ApplicationProperties map[string]string
	ScheduledEnqueueTime  time.Time // zero: visible at once
}

// SendResult is the outcome of [Queues.Send]. A duplicate send returns the first send's outcome
// with Duplicate set.
type SendResult struct {
	Queue          string    `json:"queue"`
	MessageID      string    `json:"messageId"`
	SequenceNumber int64     `json:"sequenceNumber"`
	EnqueuedTime   time.Time `json:"enqueuedTime"`
	ScheduledTime  time.Time `json:"scheduledEnqueueTime,omitzero"`
	Duplicate      bool      `json:"duplicate"`
}

// Delivery is a locked message handed to a consumer.
type Delivery struct {
	Message
	Queue          string
	SequenceNumber int64
	EnqueuedTime   time.Time
	ExpiresAt      time.Time
	DeliveryCount  int // 1 on the first delivery
	LockToken      string
	LockedUntil    time.Time
}

// QueueCounts are the figures of GET /_devhost/queues.
type QueueCounts struct {
	Active       int `json:"active"`
	Scheduled    int `json:"scheduled"`
	Locked       int `json:"locked"`
	DeadLettered int `json:"deadLettered"`
	Completed    int `json:"completed"`
	Deliveries   int `json:"deliveries"`
	Failures     int `json:"failures"`
	Expired      int `json:"expired"`
}

// DeadLetter is a dead-lettered message.
type DeadLetter struct {
	MessageID                  string            `json:"messageId"`
	SequenceNumber             int64             `json:"sequenceNumber"`
	Body                       []byte            `json:"body"`
	ContentType                string            `json:"contentType,omitempty"`
	Subject                    string            `json:"subject,omitempty"`
	ApplicationProperties      map[string]string `json:"applicationProperties,omitempty"`
	EnqueuedTime               time.Time         `json:"enqueuedTime"`
	DeliveryCount              int               `json:"deliveryCount"`
	DeadLetterReason           string            `json:"deadLetterReason"`
	DeadLetterErrorDescription string            `json:"deadLetterErrorDescription"`
	LastError                  string            `json:"lastError,omitempty"`
	DeadLetteredAt             time.Time         `json:"deadLetteredAt"`
}

// Errors of [Queues].
var (
	ErrUnknownQueue = errors.New("unknown queue")
	ErrLockLost     = errors.New("message lock lost")
)

// Queues is an in-process message store with the Service Bus queue semantics the app relies on:
// FIFO per queue, message-id duplicate detection within a window, scheduled enqueue, peek-lock with
// a lock duration and a delivery count, complete, abandon (redelivered at once), and
// dead-lettering with reason MaxDeliveryCountExceeded. It is safe for concurrent use.
type Queues struct {
	clock Clock
	opts  QueueOptions

	mu      sync.Mutex
	queues  map[string]*entity
	seq     int64
	changed chan struct{} // closed and replaced on every change
}

type entity struct {
	msgs   []*stored // in sequence order
	dead   []DeadLetter
	dedup  map[string]SendResult
	counts QueueCounts
}

type stored struct {
	Delivery
	visibleAt time.Time
	lastError string
}

// NewQueues creates the named queues.
func NewQueues(clock Clock, opts QueueOptions, names ...string) *Queues {
	if clock == nil {
		clock = systemClock{}
	}
	opts.defaults()
	q := &Queues{clock: clock, opts: opts, queues: map[string]*entity{}, changed: make(chan struct{})}
	for _, n := range names {
		q.queues[n] = &entity{dedup: map[string]SendResult{}}
	}
	return q
}

// Names returns the queue names, sorted.
func (q *Queues) Names() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Sorted(maps.Keys(q.queues))
}

func (q *Queues) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// Send enqueues m. A message whose MessageID was sent to the same queue within the duplicate
// detection window is dropped, and the first send's result is returned with Duplicate set.
func (q *Queues) Send(name string, m Message) (SendResult, error) {
	if m.MessageID == "" {
		return SendResult{}, errors.New("messageId is required")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.queues[name]
	if qu == nil {
		return SendResult{}, fmt.Errorf("%w %q", ErrUnknownQueue, name)
	}
	r := q.sendLocked(qu, name, m, q.clock.Now().UTC())
	if !r.Duplicate {
		q.notifyLocked()
	}
	return r, nil
}

// SendBatch enqueues msgs in order, atomically: every message is checked first and none is
// enqueued if one is invalid. Each message is treated as by Send (a duplicate, also of an
// earlier message of the batch, is dropped and its result has Duplicate set). The results are in
// the order of msgs.
func (q *Queues) SendBatch(name string, msgs []Message) ([]SendResult, error) {
	for i, m := range msgs {
		if m.MessageID == "" {
			return nil, fmt.Errorf("message %d: messageId is required", i)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.queues[name]
	if qu == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownQueue, name)
	}
	now := q.clock.Now().UTC()
	out := make([]SendResult, len(msgs))
	added := false
	for i, m := range msgs {
		out[i] = q.sendLocked(qu, name, m, now)
		added = added || !out[i].Duplicate
	}
	if added {
		q.notifyLocked()
	}
	return out, nil
}

// Cancel removes the messages of the queue with those sequence numbers that are still scheduled
// (not yet visible), as Service Bus's cancel-scheduled-message does, and returns how many it
// removed. The other numbers (already enqueued, delivered, cancelled, or never sent) are
// ignored. A cancelled message's id stays in the duplicate detection history.
func (q *Queues) Cancel(name string, seqs []int64) (cancelled int, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.queues[name]
	if qu == nil {
		return 0, fmt.Errorf("%w %q", ErrUnknownQueue, name)
	}
	now := q.clock.Now().UTC()
	qu.msgs = slices.DeleteFunc(qu.msgs, func(s *stored) bool {
		if s.LockToken == "" && now.Before(s.visibleAt) && slices.Contains(seqs, s.SequenceNumber) {
			cancelled++
			return true
		}
		return false
	})
	if cancelled > 0 {
		q.notifyLocked()
	}
	return cancelled, nil
}

// sendLocked enqueues m (or drops it as a duplicate) at now; the caller holds q.mu and notifies
// when the result is not a duplicate.
func (q *Queues) sendLocked(qu *entity, name string, m Message, now time.Time) SendResult {
	for id, r := range qu.dedup {
		if now.Sub(r.EnqueuedTime) > q.opts.DuplicateWindow {
			delete(qu.dedup, id)
		}
	}
	if r, ok := qu.dedup[m.MessageID]; ok {
		r.Duplicate = true
		return r
	}
	q.seq++
	m.Body = slices.Clone(m.Body)
	m.ApplicationProperties = maps.Clone(m.ApplicationProperties)
	s := &stored{Delivery: Delivery{Message: m, Queue: name, SequenceNumber: q.seq, EnqueuedTime: now, ExpiresAt: now.Add(q.opts.TimeToLive)}, visibleAt: now}
	r := SendResult{Queue: name, MessageID: m.MessageID, SequenceNumber: q.seq, EnqueuedTime: now}
	if !m.ScheduledEnqueueTime.IsZero() && m.ScheduledEnqueueTime.After(now) {
		s.visibleAt = m.ScheduledEnqueueTime.UTC()
		s.EnqueuedTime = s.visibleAt // Service Bus sets the enqueued time when the message becomes active
		s.ExpiresAt = s.visibleAt.Add(q.opts.TimeToLive)
		r.ScheduledTime = s.visibleAt
	}
	qu.msgs = append(qu.msgs, s)
	qu.dedup[m.MessageID] = r
	return r
}

// tryReceive locks the first available message of the queue. If there is none it returns how long
// until one may become available (0: only a Send can help).
func (q *Queues) tryReceive(name string) (*Delivery, time.Duration, <-chan struct{}, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.queues[name]
	if qu == nil {
		return nil, 0, nil, fmt.Errorf("%w %q", ErrUnknownQueue, name)
	}
	now := q.clock.Now().UTC()
	var wait time.Duration
	soon := func(t time.Time) {
		if d := t.Sub(now); d > 0 && (wait == 0 || d < wait) {
			wait = d
		}
	}
	for i := 0; i < len(qu.msgs); i++ {
		s := qu.msgs[i]
		if s.LockToken != "" {
			if now.Before(s.LockedUntil) {
				soon(s.LockedUntil)
				continue
			}
			// The lock expired without a settlement: it counts as a failed delivery.
			s.LockToken = ""
			s.lastError = "lock expired"
			if s.DeliveryCount >= q.opts.MaxDeliveryCount {
				q.deadLetterLocked(qu, i, now)
				i--
				continue
			}
		}
		if now.Before(s.visibleAt) {
			soon(s.visibleAt)
			continue
		}
		if !now.Before(s.ExpiresAt) {
			qu.msgs = slices.Delete(qu.msgs, i, i+1)
			qu.counts.Expired++
			i--
			continue
		}
		s.DeliveryCount++
		s.LockToken = uuid.NewString()
		s.LockedUntil = now.Add(q.opts.LockDuration)
		qu.counts.Deliveries++
		d := s.Delivery
		d.Body = slices.Clone(d.Body)
		d.ApplicationProperties = maps.Clone(d.ApplicationProperties)
		return &d, 0, nil, nil
	}
	return nil, wait, q.changed, nil
}

// Receive waits for a message of the queue and locks it, until ctx ends.
func (q *Queues) Receive(ctx context.Context, name string) (*Delivery, error) {
	for {
		d, wait, changed, err := q.tryReceive(name)
		if err != nil || d != nil {
			return d, err
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = q.clock.After(wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		case <-timer:
		}
	}
}

func (q *Queues) find(qu *entity, d *Delivery) (int, error) {
	for i, s := range qu.msgs {
		if s.SequenceNumber == d.SequenceNumber {
			if s.LockToken != d.LockToken {
				break
			}
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w: %s seq %d", ErrLockLost, d.Queue, d.SequenceNumber)
}

// settle applies f to the message that d still holds the lock of, at index i of its queue, and
// wakes the receivers; ErrLockLost when d's lock is gone.
func (q *Queues) settle(d *Delivery, f func(qu *entity, i int)) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.queues[d.Queue]
	i, err := q.find(qu, d)
	if err != nil {
		return err
	}
	f(qu, i)
	q.notifyLocked()
	return nil
}

// Complete removes a delivered message.
func (q *Queues) Complete(d *Delivery) error {
	return q.settle(d, func(qu *entity, i int) {
		qu.msgs = slices.Delete(qu.msgs, i, i+1)
		qu.counts.Completed++
	})
}

// Abandon releases a delivered message after a failed invocation: it is available again at once,
// or dead-lettered with reason MaxDeliveryCountExceeded when its delivery count has reached the
// maximum. cause is kept as the last error.
func (q *Queues) Abandon(d *Delivery, cause string) error {
	return q.settle(d, func(qu *entity, i int) {
		qu.counts.Failures++
		s := qu.msgs[i]
		s.LockToken, s.LockedUntil, s.lastError = "", time.Time{}, cause
		if s.DeliveryCount >= q.opts.MaxDeliveryCount {
			q.deadLetterLocked(qu, i, q.clock.Now().UTC())
		}
	})
}

func (q *Queues) deadLetterLocked(qu *entity, i int, now time.Time) {
	s := qu.msgs[i]
	qu.msgs = slices.Delete(qu.msgs, i, i+1)
	qu.dead = append(qu.dead, DeadLetter{
		MessageID: s.MessageID, SequenceNumber: s.SequenceNumber, Body: s.Body, ContentType: s.ContentType,
		Subject: s.Subject, ApplicationProperties: s.ApplicationProperties, EnqueuedTime: s.EnqueuedTime,
		DeliveryCount: s.DeliveryCount, DeadLetterReason: "MaxDeliveryCountExceeded",
		DeadLetterErrorDescription: fmt.Sprintf("Message could not be consumed after %d delivery attempts.", q.opts.MaxDeliveryCount),
		LastError:                  s.lastError, DeadLetteredAt: now,
	})
}

// Counts returns the figures of every queue.
func (q *Queues) Counts() map[string]QueueCounts {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock.Now().UTC()
	out := map[string]QueueCounts{}
	for name, qu := range q.queues {
		c := qu.counts
		c.DeadLettered = len(qu.dead)
		for _, s := range qu.msgs {
			switch {
			case s.LockToken != "" && now.Before(s.LockedUntil):
				c.Locked++
			case now.Before(s.visibleAt):
				c.Scheduled++
			default:
				c.Active++
			}
		}
		out[name] = c
	}
	return out
}

// DeadLetters returns the dead-letter queue of a queue, oldest first.
func (q *Queues) DeadLetters(name string) ([]DeadLetter, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.queues[name]
	if qu == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownQueue, name)
	}
	return slices.Clone(qu.dead), nil
}
