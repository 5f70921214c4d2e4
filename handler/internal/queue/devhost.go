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
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &DevHost{base: u, hc: hc}, nil
}

// Publish posts m to the stand-in. A duplicate ID is accepted and delivered once.
func (d *DevHost) Publish(ctx context.Context, m Message) error {
	if err := m.validate(); err != nil {
		return err
	}
	wire := DevHostMessage{MessageID: m.ID, Body: m.Body, ContentType: m.ContentType, Subject: m.Subject, ApplicationProperties: m.Properties}
	if !m.NotBefore.IsZero() {
		t := m.NotBefore.UTC()
		wire.ScheduledEnqueueTime = &t
	}
	body, err := json.Marshal(wire)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	u := d.base.JoinPath(DevHostPath(m.Queue))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("publish to %s: %w: %w", m.Queue, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		return nil
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("publish to %s: %w: %s", m.Queue, ErrNotFound, detail)
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return fmt.Errorf("publish to %s: %w: %s", m.Queue, ErrInvalid, detail)
	default:
		return fmt.Errorf("publish to %s: %w: status %d", m.Queue, ErrUnavailable, resp.StatusCode)
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
