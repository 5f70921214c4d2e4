package queue

import (
	"context"
	"errors"
	"fmt"
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
