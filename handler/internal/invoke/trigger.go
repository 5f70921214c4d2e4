package invoke

import (
	"encoding/json"
	"fmt"
	"time"
)

// TimerInfo is a timer trigger's value. ScheduleStatus is nil when the schedule monitor is off.
type TimerInfo struct {
	ScheduleStatus *ScheduleStatus
	IsPastDue      bool
}

// ScheduleStatus is the host's record of the last and next firing.
type ScheduleStatus struct {
	Last, Next, LastUpdated time.Time
}

// Timer decodes the timer binding named binding.
func (r Request) Timer(binding string) (TimerInfo, error) {
	raw, ok := r.Data[binding]
	if !ok {
		return TimerInfo{}, fmt.Errorf("%w: no Data.%s", ErrMalformed, binding)
	}
	b, err := Unwrap(raw)
	if err != nil {
		return TimerInfo{}, fmt.Errorf("Data.%s: %w", binding, err)
	}
	var w struct {
		ScheduleStatus *struct{ Last, Next, LastUpdated string }
		IsPastDue      bool
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return TimerInfo{}, fmt.Errorf("%w: Data.%s is not a TimerInfo: %v", ErrMalformed, binding, err)
	}
	info := TimerInfo{IsPastDue: w.IsPastDue}
	if s := w.ScheduleStatus; s != nil {
		info.ScheduleStatus = &ScheduleStatus{}
		for _, f := range []struct {
			in  string
			out *time.Time
		}{{s.Last, &info.ScheduleStatus.Last}, {s.Next, &info.ScheduleStatus.Next}, {s.LastUpdated, &info.ScheduleStatus.LastUpdated}} {
			if f.in == "" {
				continue
			}
			t, err := ParseTime(f.in)
			if err != nil {
				return TimerInfo{}, fmt.Errorf("Data.%s.ScheduleStatus: %w", binding, err)
			}
			*f.out = t
		}
	}
	return info, nil
}

// Message is a Service Bus trigger's message with the system properties the handler uses.
type Message struct {
	Body                  []byte
	MessageID             string
	ContentType           string
	CorrelationID         string
	Subject               string
	DeliveryCount         int
	SequenceNumber        int64
	EnqueuedTime          time.Time
	ApplicationProperties map[string]any
}

// DataType is how a trigger binding's function.json declares its value ("dataType"), which
// decides how the host encodes the body it sends.
type DataType int

const (
	// StringData is the default (no "dataType"): the body arrives as a JSON string (at most
	// twice encoded) or as the JSON value itself; see Unwrap.
	StringData DataType = iota
	// BinaryData is "dataType": "binary": the body arrives base64-encoded; see UnwrapBinary.
	BinaryData
)

// Message decodes the Service Bus binding named binding, declared with data type dt.
func (r Request) Message(binding string, dt DataType) (Message, error) {
	raw, ok := r.Data[binding]
	if !ok {
		return Message{}, fmt.Errorf("%w: no Data.%s", ErrMalformed, binding)
	}
	unwrap := Unwrap
	if dt == BinaryData {
		unwrap = UnwrapBinary
	}
	body, err := unwrap(raw)
	if err != nil {
		return Message{}, fmt.Errorf("Data.%s: %w", binding, err)
	}
	m := Message{
		Body:          body,
		MessageID:     r.MetaString("MessageId"),
		ContentType:   r.MetaString("ContentType"),
		CorrelationID: r.MetaString("CorrelationId"),
		Subject:       r.MetaString("Subject"),
	}
	if n, ok := r.MetaInt("DeliveryCount"); ok {
		m.DeliveryCount = int(n)
	}
	if n, ok := r.MetaInt("SequenceNumber"); ok {
		m.SequenceNumber = n
	}
	// EnqueuedTime carries an offset; EnqueuedTimeUtc is the zone-less fallback.
	if t, ok := r.MetaTime("EnqueuedTime"); ok {
		m.EnqueuedTime = t
	} else if t, ok := r.MetaTime("EnqueuedTimeUtc"); ok {
		m.EnqueuedTime = t
	}
	if raw, ok := r.Metadata["ApplicationProperties"]; ok {
		_ = json.Unmarshal(raw, &m.ApplicationProperties) // optional; a non-object is ignored
	}
	return m, nil
}
