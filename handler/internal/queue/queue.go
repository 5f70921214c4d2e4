// Package queue publishes messages to the Service Bus queues that feed the workers (sync-jobs,
// channel-events, outbound-mail, outbound-teams). Production publishes with azservicebus; local
// runs and tests publish to the host stand-in's in-process queue over HTTP. Consumers depend on a
// one-method interface of their own, never on either implementation.
package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// The work queues (README, Architecture); their names are contract.
const (
	SyncJobs      = "sync-jobs"
	ChannelEvents = "channel-events"
	OutboundMail  = "outbound-mail"
	OutboundTeams = "outbound-teams"
)

// Error kinds, from the project's one vocabulary (errkind). Publishers wrap one of these with
// %w; callers branch with errors.Is or errkind.Of.
var (
	ErrInvalid     error = errkind.Invalid     // a message we built is wrong
	ErrNotFound    error = errkind.NotFound    // no such queue
	ErrAuth        error = errkind.Forbidden   // the namespace refused our identity: a role is missing
	ErrUnavailable error = errkind.Unavailable // retry later
)

// maxBody is the Service Bus Standard tier message size limit.
const maxBody = 256 << 10

// Message is one message to publish.
type Message struct {
	Queue       string
	ID          string // duplicate-detection key: publishing the same ID twice delivers once
	Body        []byte
	ContentType string
	Subject     string
	Properties  map[string]string
	NotBefore   time.Time // scheduled enqueue; zero = now
}

func (m Message) validate() error {
	var errs []string
	if m.Queue == "" {
		errs = append(errs, "queue is empty")
	}
	if m.ID == "" {
		errs = append(errs, "message id is empty (duplicate detection needs one)")
	} else if len(m.ID) > 128 {
		errs = append(errs, "message id is longer than 128 characters")
	}
	if len(m.Body) > maxBody {
		errs = append(errs, fmt.Sprintf("body is %d bytes, over the %d-byte limit", len(m.Body), maxBody))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

// validateBatch validates every message of a batch, and that they all go to the same queue.
func validateBatch(msgs []Message) error {
	var errs []error
	for i, m := range msgs {
		if err := m.validate(); err != nil {
			errs = append(errs, fmt.Errorf("message %d (%q): %w", i, m.ID, err))
		} else if m.Queue != msgs[0].Queue {
			errs = append(errs, fmt.Errorf("message %d (%q): %w: queue %q, but the batch is for %q", i, m.ID, ErrInvalid, m.Queue, msgs[0].Queue))
		}
	}
	return errors.Join(errs...)
}

// validateScheduled validates a message for Schedule: NotBefore must be set.
func validateScheduled(m Message) error {
	if err := m.validate(); err != nil {
		return err
	}
	if m.NotBefore.IsZero() {
		return fmt.Errorf("%w: a scheduled message needs NotBefore", ErrInvalid)
	}
	return nil
}

// packBatches splits items, in order, into as few batches as possible: each item goes into the
// last batch if add says it fits, else into a new one from newBatch. An item that does not fit
// an empty batch is ErrInvalid. add reports whether the item fit (false leaves the batch as it
// was) or an error that ends the packing. Nothing is sent here: callers pack every batch before
// sending the first, so that an oversized message means nothing is sent.
func packBatches[M, B any](items []M, newBatch func() (B, error), add func(B, M) (bool, error)) ([]B, error) {
	var batches []B
	for i, it := range items {
		if len(batches) > 0 {
			ok, err := add(batches[len(batches)-1], it)
			if err != nil {
				return nil, err
			}
			if ok {
				continue
			}
		}
		b, err := newBatch()
		if err != nil {
			return nil, err
		}
		ok, err := add(b, it)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: message %d is too large for an empty batch", ErrInvalid, i)
		}
		batches = append(batches, b)
	}
	return batches, nil
}

// Publisher is what Open returns: a closable publisher of either kind.
type Publisher interface {
	Publish(ctx context.Context, m Message) error
	// PublishBatch publishes msgs (all to the same queue, msgs[i].Queue) in as few round trips
	// as the service allows, each message keeping its own ID (duplicate detection) and NotBefore
	// (Service Bus: scheduled messages are sent one by one, the others in batches).
	// Every message is validated first: nothing is sent if one is invalid (ErrInvalid), nor if
	// one is too large for a batch on its own. If a later round trip fails, the earlier ones
	// stay sent; publishing the same batch again is safe (duplicate detection). Empty msgs is a
	// no-op.
	PublishBatch(ctx context.Context, msgs []Message) error
	// Schedule enqueues m at m.NotBefore (which must be set) and returns its sequence number,
	// for CancelScheduled.
	Schedule(ctx context.Context, m Message) (int64, error)
	// CancelScheduled cancels scheduled messages of queue q by sequence number. A sequence
	// number that is no longer scheduled (already enqueued, delivered or cancelled) is not an
	// error: cancelling is best effort, and consumers check state when a message arrives.
	CancelScheduled(ctx context.Context, q string, seqs []int64) error
	// Ping proves the queue service answers and accepts our credentials, without changing a
	// queue (the health check).
	Ping(ctx context.Context) error
	Close(ctx context.Context) error
}

// Connection is the ServiceBusConnection setting, already split by the caller: a connection
// string (a Service Bus one, or "devhost=<url>" naming the local host stand-in), or a fully
// qualified namespace used with a token credential (managed identity).
type Connection struct {
	ConnectionString string
	Namespace        string
	Credential       azcore.TokenCredential
}

// devHostPrefix marks a ServiceBusConnection value that names the local host stand-in.
const devHostPrefix = "devhost="

// IsDevHost reports whether a ServiceBusConnection value names the local host stand-in.
func IsDevHost(conn string) bool { return strings.HasPrefix(conn, devHostPrefix) }

// Open returns the publisher for c. It does no network I/O.
func Open(c Connection, opts Options) (Publisher, error) {
	switch {
	case IsDevHost(c.ConnectionString):
		return NewDevHost(strings.TrimPrefix(c.ConnectionString, devHostPrefix), opts.HTTPClient)
	case c.ConnectionString != "":
		return newServiceBusFromConnectionString(c.ConnectionString)
	case c.Namespace != "" && c.Credential != nil:
		return newServiceBus(c.Namespace, c.Credential)
	default:
		return nil, errors.New("queue: no Service Bus connection string or namespace with credential")
	}
}
