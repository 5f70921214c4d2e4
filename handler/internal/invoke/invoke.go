// Package invoke owns the Azure Functions custom-handler wire format: the JSON envelope the host
// POSTs to /<FunctionName> for non-HTTP triggers, the answer it expects, and the invocation id the
// host sends with every call. It decodes defensively: the host double-encodes strings, writes
// metadata numbers as strings, and base64-encodes binary Service Bus bodies (the README's
// "Architecture" says how the handler meets the host).
package invoke

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrMalformed marks a payload the host could not have meant: the invocation fails with the reason
// logged, and never panics.
var ErrMalformed = errors.New("malformed invocation payload")

// Request is the body of a JSON-mode invocation.
type Request struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

// Response is the answer to a JSON-mode invocation. Outputs keys are output binding names.
type Response struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// Sys is the host's Metadata.sys object.
type Sys struct {
	MethodName string
	UtcNow     time.Time
	RandGuid   string
}

// ParseRequest decodes the envelope. Data must be present; Metadata may be empty.
func ParseRequest(body []byte) (Request, error) {
	var r Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&r); err != nil {
		return Request{}, fmt.Errorf("%w: body is not a JSON object: %v", ErrMalformed, err)
	}
	if r.Data == nil {
		return Request{}, fmt.Errorf("%w: no Data object", ErrMalformed)
	}
	return r, nil
}

// Sys decodes Metadata.sys; a missing or odd one is not fatal (older hosts), so it yields the zero Sys.
func (r Request) Sys() Sys {
	var raw struct {
		MethodName string
		UtcNow     string
		RandGuid   string
	}
	if err := json.Unmarshal(r.Metadata["sys"], &raw); err != nil {
		return Sys{}
	}
	t, _ := ParseTime(raw.UtcNow)
	return Sys{MethodName: raw.MethodName, UtcNow: t, RandGuid: raw.RandGuid}
}

// MetaString reads a Metadata value the host may have sent as a plain or double-encoded string.
func (r Request) MetaString(key string) string {
	raw, ok := r.Metadata[key]
	if !ok {
		return ""
	}
	s, err := Unwrap(raw)
	if err != nil {
		return ""
	}
	return string(s)
}

// MetaInt reads a Metadata number the host may have sent as a number or as a (double-encoded) string.
func (r Request) MetaInt(key string) (int64, bool) {
	s := strings.TrimSpace(r.MetaString(key))
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// MetaTime reads a Metadata timestamp in any of the host's layouts.
func (r Request) MetaTime(key string) (time.Time, bool) {
	t, err := ParseTime(r.MetaString(key))
	return t, err == nil
}

// Unwrap turns a host value into its bytes: a JSON string is unquoted at most twice (the host
// double-encodes strings, its docs show them single-encoded); an object, array, number or bool is
// returned as its JSON text.
func Unwrap(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, fmt.Errorf("%w: value is missing or null", ErrMalformed)
	}
	if raw[0] != '"' {
		return raw, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%w: bad JSON string: %v", ErrMalformed, err)
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		var inner string
		if json.Unmarshal([]byte(s), &inner) == nil {
			return []byte(inner), nil
		}
	}
	return []byte(s), nil
}

// UnwrapBinary decodes a value bound with "dataType": "binary": one base64 layer inside a JSON
// string (tolerating an extra string layer). A JSON object or array is taken as the body itself,
// which is what a host without the binary setting sends for JSON bodies in some versions.
func UnwrapBinary(raw json.RawMessage) ([]byte, error) {
	b, err := Unwrap(raw)
	if err != nil {
		return nil, err
	}
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] != '"' {
		return b, nil
	}
	out, err := base64.StdEncoding.DecodeString(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w: binary value is not base64: %v", ErrMalformed, err)
	}
	return out, nil
}

// timeLayouts are the shapes the host writes: DateTime (no zone, no fraction), DateTimeOffset,
// and RFC 3339 with up to 7 fraction digits.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.9999999",
	"2006-01-02T15:04:05",
	"2006-01-02T15:04:05.9999999Z07:00",
	"01/02/2006 15:04:05",
}

// ParseTime parses a host timestamp; values without a zone are UTC.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: unrecognised time %q", ErrMalformed, s)
}
