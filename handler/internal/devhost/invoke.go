package devhost

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/leapchange/m365/handler/internal/appfiles"
)

// Time layouts of the host's JSON-mode payloads, as the Functions host writes them.
const (
	layoutUtc    = "2006-01-02T15:04:05"               // DateTime (*Utc keys): no zone, no fraction
	layoutOffset = "2006-01-02T15:04:05-07:00"         // DateTimeOffset
	layoutSys    = "2006-01-02T15:04:05.0000000Z07:00" // sys.UtcNow
	layoutStatus = "2006-01-02T15:04:05.0000000-07:00" // ScheduleStatus.LastUpdated
)

// dq double-encodes a string the way the host does for string values: a JSON string that contains
// a JSON-encoded string.
func dq(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func sysMeta(name string, now time.Time) map[string]any {
	return map[string]any{"MethodName": name, "UtcNow": now.UTC().Format(layoutSys), "RandGuid": uuid.NewString()}
}

// timerData builds the TimerInfo object of a timer invocation. status is nil when the monitor is off.
type scheduleStatus struct {
	Last, Next, LastUpdated time.Time
}

func timerPayload(fn string, b *appfiles.Binding, status *scheduleStatus, pastDue bool, now time.Time) map[string]any {
	var st any // null when useMonitor is off
	if status != nil {
		st = map[string]any{
			"Last":        status.Last.UTC().Format(layoutOffset),
			"Next":        status.Next.UTC().Format(layoutOffset),
			"LastUpdated": status.LastUpdated.UTC().Format(layoutStatus),
		}
	}
	return map[string]any{
		"Data": map[string]any{b.Name: map[string]any{
			"Schedule":       map[string]any{"AdjustForDST": true},
			"ScheduleStatus": st,
			"IsPastDue":      pastDue,
		}},
		"Metadata": map[string]any{"sys": sysMeta(fn, now)},
	}
}

// serviceBusPayload builds the envelope of a Service Bus trigger invocation: the host's
// {"Data","Metadata"} JSON (see the README's "Architecture").
func serviceBusPayload(fn string, b *appfiles.Binding, d *Delivery, namespace string, now time.Time) map[string]any {
	binary := b.DataType == "binary"
	var data any
	if binary {
		data = base64.StdEncoding.EncodeToString(d.Body)
	} else {
		data = dq(string(d.Body))
	}
	props := map[string]any{}
	for k, v := range d.ApplicationProperties {
		props[k] = v
	}
	md := map[string]any{
		"DeliveryCount":         strconv.Itoa(d.DeliveryCount),
		"SequenceNumber":        strconv.FormatInt(d.SequenceNumber, 10),
		"MessageId":             dq(d.MessageID),
		"LockToken":             dq(d.LockToken),
		"EnqueuedTimeUtc":       d.EnqueuedTime.UTC().Format(layoutUtc),
		"EnqueuedTime":          d.EnqueuedTime.UTC().Format(layoutOffset),
		"ExpiresAtUtc":          d.ExpiresAt.UTC().Format(layoutUtc),
		"ExpiresAt":             d.ExpiresAt.UTC().Format(layoutOffset),
		"ApplicationProperties": props,
		"UserProperties":        props,
		"Client": map[string]any{
			"FullyQualifiedNamespace": namespace, "IsClosed": false, "TransportType": 0, "Identifier": namespace + "-devhost",
		},
		"MessageReceiver": map[string]any{}, "MessageSession": map[string]any{}, "MessageActions": map[string]any{},
		"SessionActions": map[string]any{}, "ReceiveActions": map[string]any{},
	}
	if d.ContentType != "" {
		md["ContentType"] = dq(d.ContentType)
	}
	if d.Subject != "" {
		md["Subject"] = dq(d.Subject)
		md["Label"] = dq(d.Subject)
	}
	if !binary {
		// A string body that is a JSON object has its top-level scalar fields promoted into
		// Metadata, overwriting system keys of the same name (the host's binding data contract).
		var obj map[string]any
		dec := json.NewDecoder(bytes.NewReader(d.Body))
		dec.UseNumber()
		if dec.Decode(&obj) == nil {
			for k, v := range obj {
				switch v := v.(type) {
				case string:
					md[k] = dq(v)
				case json.Number:
					md[k] = v.String()
				case bool:
					md[k] = strconv.FormatBool(v)
				}
			}
		}
	}
	md["sys"] = sysMeta(fn, now)
	return map[string]any{"Data": map[string]any{b.Name: data}, "Metadata": md}
}

// result is a decoded JSON-mode answer.
type result struct {
	Outputs     map[string]json.RawMessage `json:"Outputs"`
	Logs        []string                   `json:"Logs"`
	ReturnValue json.RawMessage            `json:"ReturnValue"`
}

// output returns the value for the output binding name ($return reads ReturnValue).
func (r *result) output(name string) json.RawMessage {
	if name == "$return" {
		return r.ReturnValue
	}
	return r.Outputs[name]
}

// errInvocation marks a failed invocation (non-2xx, wrong content type, invalid JSON, transport error).
var errInvocation = errors.New("invocation failed")

// invokeJSON POSTs a JSON-mode envelope to /<fn> on the handler and decodes the answer. The
// invocation succeeds only on a 2xx status with Content-Type application/json and a valid JSON body.
func (h *Host) invokeJSON(ctx context.Context, fn string, payload any) (*result, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	if h.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	if err := h.waitHandler(ctx); err != nil {
		return nil, fmt.Errorf("%w: handler not ready: %v", errInvocation, err)
	}
	id := uuid.NewString()
	log := h.log.With("function", fn, "invocation_id", id)
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.handlerURL()+"/"+fn, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	h.hostHeaders(req.Header, id, "")
	res, err := h.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			log.Error("invocation timed out", "timeout", h.timeout)
			h.onTimeout()
			return nil, fmt.Errorf("%w: timed out after %v", errInvocation, h.timeout)
		}
		log.Error("invocation failed", "err", err)
		return nil, fmt.Errorf("%w: %v", errInvocation, err)
	}
	defer res.Body.Close()
	rb, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer: %v", errInvocation, err)
	}
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	var r result
	switch {
	case res.StatusCode < 200 || res.StatusCode > 299:
		err = fmt.Errorf("%w: status %d: %s", errInvocation, res.StatusCode, snippet(rb))
	case mt != "application/json":
		err = fmt.Errorf("%w: Content-Type %q, want application/json", errInvocation, res.Header.Get("Content-Type"))
	case json.Unmarshal(rb, &r) != nil:
		err = fmt.Errorf("%w: answer is not valid JSON: %s", errInvocation, snippet(rb))
	}
	for _, l := range r.Logs {
		log.Info(l, "source", "Logs")
	}
	if err != nil {
		log.Warn("invocation failed", "err", err, "duration", time.Since(start))
		return nil, err
	}
	log.Debug("invocation succeeded", "duration", time.Since(start))
	return &r, nil
}

func snippet(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// hostHeaders adds the headers the host sends on every call to the handler.
func (h *Host) hostHeaders(hd http.Header, invocationID, callerAgent string) {
	hd.Set("X-Azure-Functions-InvocationId", invocationID)
	hd.Set("X-Azure-Functions-HostVersion", h.hostVersion)
	ua := "Azure-Functions-Host/" + h.hostVersion
	if callerAgent != "" {
		ua = callerAgent + " " + ua
	}
	hd.Set("User-Agent", ua)
}

// outputMessages turns one output binding value into messages, the host's way: null or absent sends
// nothing; an array sends one message per element; an object (or number, bool) is serialized as
// JSON; a string is tried as base64 and sent decoded if that works, as its UTF-8 bytes otherwise.
// The last rule is the host's base64 trap: the host applies it to outputs
// without dataType "binary", and "binary" outputs are base64 by definition, so it applies to every
// string here. "test" is valid base64 and is sent as the three bytes b5 eb 2d.
func outputMessages(v json.RawMessage) ([]Message, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return nil, nil
	}
	if v[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return nil, err
		}
		var out []Message
		for _, it := range items {
			ms, err := outputMessages(it)
			if err != nil {
				return nil, err
			}
			out = append(out, ms...)
		}
		return out, nil
	}
	m := Message{MessageID: newMessageID()}
	if v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, err
		}
		if b, err := base64.StdEncoding.DecodeString(s); err == nil {
			m.Body = b
		} else {
			m.Body = []byte(s)
		}
		return []Message{m}, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return nil, err
	}
	m.Body, m.ContentType = buf.Bytes(), "application/json"
	return []Message{m}, nil
}

// applyOutputs sends the Service Bus outputs of a successful invocation.
func (h *Host) applyOutputs(f *appfiles.Function, r *result) {
	for _, b := range f.Outputs() {
		if !b.Is(appfiles.TypeServiceBus, appfiles.DirOut) {
			continue
		}
		msgs, err := outputMessages(r.output(b.Name))
		if err != nil {
			h.log.Error("bad output value", "function", f.Name, "binding", b.Name, "err", err)
			continue
		}
		for _, m := range msgs {
			if _, err := h.queues.Send(b.QueueName, m); err != nil {
				h.log.Error("sending output", "function", f.Name, "binding", b.Name, "queue", b.QueueName, "err", err)
			}
		}
	}
}
