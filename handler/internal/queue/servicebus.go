package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// ServiceBus publishes with azservicebus, one cached sender per queue.
type ServiceBus struct {
	client *azservicebus.Client

	mu      sync.Mutex
	senders map[string]*azservicebus.Sender
}

func newServiceBusFromConnectionString(cs string) (*ServiceBus, error) {
	c, err := azservicebus.NewClientFromConnectionString(cs, nil)
	if err != nil {
		// The SDK's parse error never echoes the key, but say only what is wrong to be sure.
		return nil, errors.New("queue: ServiceBusConnection is not a valid Service Bus connection string")
	}
	return &ServiceBus{client: c, senders: map[string]*azservicebus.Sender{}}, nil
}

func newServiceBus(namespace string, cred azcore.TokenCredential) (*ServiceBus, error) {
	c, err := azservicebus.NewClient(namespace, cred, nil)
	if err != nil {
		return nil, fmt.Errorf("queue: Service Bus client for %s: %w", namespace, err)
	}
	return &ServiceBus{client: c, senders: map[string]*azservicebus.Sender{}}, nil
}

// Publish sends m. A scheduled message (NotBefore set) is enqueued by Service Bus at that time.
func (s *ServiceBus) Publish(ctx context.Context, m Message) error {
	if err := m.validate(); err != nil {
		return err
	}
	snd, err := s.sender(m.Queue)
	if err != nil {
		return translate("publish to "+m.Queue, err)
	}
	if err := snd.SendMessage(ctx, toServiceBus(m), nil); err != nil {
		return translate("publish to "+m.Queue, err)
	}
	return nil
}

// PublishBatch sends msgs in azservicebus message batches, as many messages to a batch as the
// link's batch size allows (a new batch whenever one is full). Every message keeps its own ID
// and NotBefore (ScheduledEnqueueTime). All batches are packed before the first is sent, so an
// invalid or oversized message means nothing is sent.
func (s *ServiceBus) PublishBatch(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := validateBatch(msgs); err != nil {
		return err
	}
	q := msgs[0].Queue
	snd, err := s.sender(q)
	if err != nil {
		return translate("publish batch to "+q, err)
	}
	// A batch travels in one AMQP envelope that carries the first message's annotations, the
	// scheduled enqueue time among them; whether Service Bus then honours each message's own
	// time is not documented. Scheduled messages are sent one by one (a few at a time), so each
	// keeps its own time for sure; the others go in batches.
	var sbMsgs, scheduled []*azservicebus.Message
	for _, m := range msgs {
		if m.NotBefore.IsZero() {
			sbMsgs = append(sbMsgs, toServiceBus(m))
		} else {
			scheduled = append(scheduled, toServiceBus(m))
		}
	}
	if err := sendEach(ctx, snd, scheduled); err != nil {
		return translate("publish scheduled messages to "+q, err)
	}
	if len(sbMsgs) == 0 {
		return nil
	}
	batches, err := packBatches(sbMsgs,
		func() (*azservicebus.MessageBatch, error) { return snd.NewMessageBatch(ctx, nil) },
		addToBatch)
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return fmt.Errorf("publish batch to %s: %w", q, err)
		}
		return translate("publish batch to "+q, err)
	}
	for i, b := range batches {
		if err := snd.SendMessageBatch(ctx, b, nil); err != nil {
			return translate(fmt.Sprintf("publish batch to %s (part %d of %d)", q, i+1, len(batches)), err)
		}
	}
	return nil
}

// sendEach sends msgs one by one, eight at a time; the first error wins.
func sendEach(ctx context.Context, snd *azservicebus.Sender, msgs []*azservicebus.Message) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, 8)
	)
	for _, m := range msgs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := snd.SendMessage(ctx, m, nil); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// addToBatch adds m to b, reporting false when it does not fit.
func addToBatch(b *azservicebus.MessageBatch, m *azservicebus.Message) (bool, error) {
	switch err := b.AddMessage(m, nil); {
	case err == nil:
		return true, nil
	case errors.Is(err, azservicebus.ErrMessageTooLarge):
		return false, nil
	default:
		return false, fmt.Errorf("%w: message %q: %v", ErrInvalid, *m.MessageID, err)
	}
}

// Schedule schedules m for m.NotBefore through the management link (Sender.ScheduleMessages),
// which answers the sequence number CancelScheduled needs.
func (s *ServiceBus) Schedule(ctx context.Context, m Message) (int64, error) {
	if err := validateScheduled(m); err != nil {
		return 0, err
	}
	snd, err := s.sender(m.Queue)
	if err != nil {
		return 0, translate("schedule on "+m.Queue, err)
	}
	seqs, err := snd.ScheduleMessages(ctx, []*azservicebus.Message{toServiceBus(m)}, m.NotBefore.UTC(), nil)
	if err != nil {
		return 0, translate("schedule on "+m.Queue, err)
	}
	if len(seqs) != 1 {
		return 0, fmt.Errorf("schedule on %s: Service Bus answered %d sequence numbers for one message", m.Queue, len(seqs))
	}
	return seqs[0], nil
}

// CancelScheduled cancels scheduled messages by sequence number (Sender.CancelScheduledMessages).
//
// Service Bus answers the cancel-scheduled-message request for a sequence number that is not
// (or no longer) scheduled with status 404 and condition com.microsoft:message-not-found
// ("Messages not found. Missing sequence numbers: …"; .NET's MessageNotFoundException,
// ServiceBusFailureReason.MessageNotFound). azservicebus turns any 404 answer of a management
// request into an *azservicebus.Error with CodeNotFound; a missing queue fails earlier, when the
// link attaches, with amqp:not-found instead. So CodeNotFound here means "not scheduled any
// more", which is not an error. Because the service does not say whether it cancelled the other
// numbers of a request that named a missing one, a failed request of several numbers is retried
// one number at a time.
func (s *ServiceBus) CancelScheduled(ctx context.Context, q string, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	if q == "" {
		return fmt.Errorf("%w: queue is empty", ErrInvalid)
	}
	snd, err := s.sender(q)
	if err != nil {
		return translate("cancel scheduled on "+q, err)
	}
	err = snd.CancelScheduledMessages(ctx, seqs, nil)
	if err == nil || (notScheduled(err) && len(seqs) == 1) {
		return nil
	}
	if !notScheduled(err) {
		return translate("cancel scheduled on "+q, err)
	}
	for _, seq := range seqs {
		if err := snd.CancelScheduledMessages(ctx, []int64{seq}, nil); err != nil && !notScheduled(err) {
			return translate(fmt.Sprintf("cancel scheduled %d on %s", seq, q), err)
		}
	}
	return nil
}

// notScheduled reports whether err is Service Bus's answer to cancelling a sequence number that
// is not scheduled: a 404 of the management request (see CancelScheduled), or the 400 "is
// already being cancelled" of a concurrent cancel.
func notScheduled(err error) bool {
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeNotFound {
		return true
	}
	return strings.Contains(err.Error(), "already being cancelled")
}

func (s *ServiceBus) sender(q string) (*azservicebus.Sender, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if snd, ok := s.senders[q]; ok {
		return snd, nil
	}
	snd, err := s.client.NewSender(q, nil)
	if err != nil {
		return nil, err
	}
	s.senders[q] = snd
	return snd, nil
}

// Ping peeks at the sync-jobs queue: it needs only the receive right the workers have anyway,
// and neither locks nor removes a message.
func (s *ServiceBus) Ping(ctx context.Context) error {
	r, err := s.client.NewReceiverForQueue(SyncJobs, nil)
	if err != nil {
		return translate("ping", err)
	}
	defer r.Close(context.WithoutCancel(ctx))
	if _, err := r.PeekMessages(ctx, 1, nil); err != nil {
		return translate("ping", err)
	}
	return nil
}

// Close closes every sender and the client.
func (s *ServiceBus) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for q, snd := range s.senders {
		errs = append(errs, snd.Close(ctx))
		delete(s.senders, q)
	}
	errs = append(errs, s.client.Close(ctx))
	return errors.Join(errs...)
}

func toServiceBus(m Message) *azservicebus.Message {
	out := &azservicebus.Message{Body: m.Body, MessageID: &m.ID}
	if m.ContentType != "" {
		out.ContentType = &m.ContentType
	}
	if m.Subject != "" {
		out.Subject = &m.Subject
	}
	if len(m.Properties) > 0 {
		out.ApplicationProperties = make(map[string]any, len(m.Properties))
		for k, v := range m.Properties {
			out.ApplicationProperties[k] = v
		}
	}
	if !m.NotBefore.IsZero() {
		t := m.NotBefore.UTC()
		out.ScheduledEnqueueTime = &t
	}
	return out
}

// translate is the one place azservicebus errors become this package's kinds.
func translate(op string, err error) error {
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) {
		switch sbErr.Code {
		case azservicebus.CodeNotFound:
			return fmt.Errorf("%s: %w: %w", op, ErrNotFound, err)
		case azservicebus.CodeUnauthorizedAccess:
			return fmt.Errorf("%s: %w: %w", op, ErrAuth, err)
		case azservicebus.CodeConnectionLost, azservicebus.CodeTimeout, azservicebus.CodeClosed:
			return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
