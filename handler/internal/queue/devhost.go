package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// DevHost publishes to the local host stand-in's in-process queue (handler/internal/devhost),
// which then delivers the message to the worker function with Service Bus semantics.
type DevHost struct {
	base *url.URL
	hc   *http.Client
}

// Options tune Open.
type Options struct {
	HTTPClient *http.Client // for DevHost; default has a 30 s timeout
}

// NewDevHost returns a publisher for the stand-in at base (e.g. http://127.0.0.1:7071).
func NewDevHost(base string, hc *http.Client) (*DevHost, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("queue: devhost address %q is not an http(s) URL", base)
	}
	if hc == nil {
		// Connections kept open: the handler publishes from many invocations at once.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 256, 256
		hc = &http.Client{Timeout: 30 * time.Second, Transport: t}
	}
	return &DevHost{base: u, hc: hc}, nil
}

// Publish posts m to the stand-in. A duplicate ID is accepted and delivered once.
func (d *DevHost) Publish(ctx context.Context, m Message) error {
	if err := m.validate(); err != nil {
		return err
	}
	return d.post(ctx, "publish to "+m.Queue, DevHostPath(m.Queue), toDevHost(m), nil)
}

// PublishBatch posts msgs to the stand-in's batch endpoint, in as few requests as its body limit
// (DevHostMaxBatchBytes) allows. A duplicate ID is accepted and delivered once.
func (d *DevHost) PublishBatch(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := validateBatch(msgs); err != nil {
		return err
	}
	q := msgs[0].Queue
	batches, err := packBatches(msgs, func() (*jsonBatch, error) { return newJSONBatch(DevHostMaxBatchBytes), nil }, (*jsonBatch).add)
	if err != nil {
		return fmt.Errorf("publish batch to %s: %w", q, err)
	}
	for i, b := range batches {
		var res []DevHostSendResult
		if err := d.post(ctx, fmt.Sprintf("publish batch to %s (part %d of %d)", q, i+1, len(batches)), DevHostBatchPath(q), json.RawMessage(b.bytes()), &res); err != nil {
			return err
		}
		if len(res) != b.n {
			return fmt.Errorf("publish batch to %s: the stand-in answered %d results for %d messages", q, len(res), b.n)
		}
	}
	return nil
}

// Schedule posts m, scheduled for m.NotBefore, and returns the sequence number the stand-in gave
// it. For a duplicate ID it is the first message's.
func (d *DevHost) Schedule(ctx context.Context, m Message) (int64, error) {
	if err := validateScheduled(m); err != nil {
		return 0, err
	}
	var res DevHostSendResult
	if err := d.post(ctx, "schedule on "+m.Queue, DevHostPath(m.Queue), toDevHost(m), &res); err != nil {
		return 0, err
	}
	return res.SequenceNumber, nil
}

// CancelScheduled asks the stand-in to remove the messages of q with those sequence numbers that
// are still scheduled; the others are ignored.
func (d *DevHost) CancelScheduled(ctx context.Context, q string, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	if q == "" {
		return fmt.Errorf("%w: queue is empty", ErrInvalid)
	}
	var res DevHostCancelResult
	return d.post(ctx, "cancel scheduled on "+q, DevHostCancelPath(q), DevHostCancelRequest{SequenceNumbers: seqs}, &res)
}

func toDevHost(m Message) DevHostMessage {
	wire := DevHostMessage{MessageID: m.ID, Body: m.Body, ContentType: m.ContentType, Subject: m.Subject, ApplicationProperties: m.Properties}
	if !m.NotBefore.IsZero() {
		t := m.NotBefore.UTC()
		wire.ScheduledEnqueueTime = &t
	}
	return wire
}

// jsonBatch is a JSON array of DevHostMessage being filled up to a byte budget.
type jsonBatch struct {
	buf    bytes.Buffer
	n      int
	budget int
}

func newJSONBatch(budget int) *jsonBatch {
	b := &jsonBatch{budget: budget}
	b.buf.WriteByte('[')
	return b
}

// add appends m if the array, closed, stays within the budget.
func (b *jsonBatch) add(m Message) (bool, error) {
	enc, err := json.Marshal(toDevHost(m))
	if err != nil {
		return false, fmt.Errorf("%w: message %q: %v", ErrInvalid, m.ID, err)
	}
	sep := 0
	if b.n > 0 {
		sep = 1
	}
	if b.buf.Len()+sep+len(enc)+1 > b.budget {
		return false, nil
	}
	if sep > 0 {
		b.buf.WriteByte(',')
	}
	b.buf.Write(enc)
	b.n++
	return true, nil
}

func (b *jsonBatch) bytes() []byte { return append(bytes.Clone(b.buf.Bytes()), ']') }

// post posts in as JSON to path and decodes a 200/201 answer into out (when not nil).
func (d *DevHost) post(ctx context.Context, op, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", op, ErrInvalid, err)
	}
	u := d.base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w: %v", op, ErrInvalid, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		if out == nil {
			return nil
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("%s: the stand-in's answer is not understood: %w", op, err)
		}
		return nil
	}
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %w: %s", op, ErrNotFound, detail)
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return fmt.Errorf("%s: %w: %s", op, ErrInvalid, detail)
	default:
		return fmt.Errorf("%s: %w: status %d", op, ErrUnavailable, resp.StatusCode)
	}
}

// Ping asks the stand-in for its queue counts.
func (d *DevHost) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base.JoinPath("/_devhost/queues").String(), nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("ping: %w: %w", ErrUnavailable, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %w: status %d", ErrUnavailable, resp.StatusCode)
	}
	return nil
}

// Close releases nothing; the HTTP client is shared.
func (d *DevHost) Close(context.Context) error { return nil }
