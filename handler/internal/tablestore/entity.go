package tablestore

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

// Limits of Table Storage that encode checks before sending.
const (
	MaxProperties    = 252      // user properties per entity (255 minus PartitionKey, RowKey, Timestamp)
	MaxStringBytes   = 64 << 10 // per string or binary property; strings count UTF-16 bytes (32 Ki chars)
	MaxEntityBytes   = 1 << 20  // per entity, as Table Storage computes it
	maxPropertyName  = 255
	dateTimeFormat   = "2006-01-02T15:04:05.0000000Z"
	annotationSuffix = "@odata.type"
)

// edm is how a JSON property is stored.
type edm int

const (
	edmUnknown edm = iota // decided from the JSON value
	edmString
	edmBool
	edmInt32
	edmInt64
	edmDouble
	edmDateTime
	edmBinary
	edmJSON // an object or array, stored as a string holding its JSON
)

// schema maps JSON property names of a Go type to the Edm type their values are stored as.
type schema map[string]edm

var schemas sync.Map // reflect.Type -> schema

var (
	timeType      = reflect.TypeFor[time.Time]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

func schemaOf(t reflect.Type) schema {
	if t == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := schemas.Load(t); ok {
		return s.(schema)
	}
	s := schema{}
	if t.Kind() == reflect.Struct {
		addFields(s, t, 0)
	}
	schemas.Store(t, s)
	return s
}

// addFields follows encoding/json's naming rules closely enough for flat entity structs: exported
// fields, `json:"name"` tags, "-" skipped, untagged embedded structs flattened (shallower names win).
func addFields(s schema, t reflect.Type, depth int) {
	if depth > 4 {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			sub := schema{}
			addFields(sub, ft, depth+1)
			for k, v := range sub {
				if _, ok := s[k]; !ok {
					s[k] = v
				}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.Contains(","+opts+",", ",string,") {
			s[name] = edmString
			continue
		}
		s[name] = edmOf(ft)
	}
}

func edmOf(t reflect.Type) edm {
	if t == timeType {
		return edmDateTime
	}
	if t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType) ||
		t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler) {
		return edmUnknown // its JSON decides
	}
	switch t.Kind() {
	case reflect.String:
		return edmString
	case reflect.Bool:
		return edmBool
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint8, reflect.Uint16:
		return edmInt32
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return edmInt64
	case reflect.Float32, reflect.Float64:
		return edmDouble
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return edmBinary
		}
		return edmJSON
	case reflect.Array, reflect.Map, reflect.Struct:
		return edmJSON
	}
	return edmUnknown
}

// encoded is an entity ready to send.
type encoded struct {
	body []byte
	size int // as Table Storage counts it
}

// encode marshals v with encoding/json and turns it into a Table entity in org's partition under key:
//
//   - string, bool: as is
//   - int8/16/32, uint8/16: Edm.Int32
//   - int, int64, uint, uint32, uint64: Edm.Int64 (annotated; values above MaxInt64 are ErrInvalid)
//   - float32/64: Edm.Double (annotated, so 1.0 stays a double)
//   - time.Time: Edm.DateTime in UTC, 100 ns precision; the zero time is omitted (it is out of range)
//   - []byte: Edm.Binary
//   - structs, maps, other slices and arrays: a string holding their JSON
//   - null (nil pointers, maps, slices): omitted, so reading gives the zero value
//
// Property names must be identifiers (letters, digits, '_', not starting with a digit), not
// PartitionKey, RowKey, Timestamp or ETag; sizes are checked against the service's limits.
func encode(org Org, key string, v any) (encoded, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return encoded{}, fmt.Errorf("tablestore: marshal %T: %v: %w", v, err, ErrInvalid)
	}
	var props map[string]json.RawMessage
	if err := json.Unmarshal(raw, &props); err != nil || props == nil {
		return encoded{}, fmt.Errorf("tablestore: %T does not marshal to a JSON object: %w", v, ErrInvalid)
	}
	sch := schemaOf(reflect.TypeOf(v))
	out := make(map[string]any, len(props)+4)
	out["PartitionKey"] = org.id
	out["RowKey"] = key
	size := 4 + utf16Len(org.id)*2 + utf16Len(key)*2
	n := 0
	for name, r := range props {
		if err := checkPropertyName(name); err != nil {
			return encoded{}, err
		}
		if string(r) == "null" {
			continue
		}
		kind := sch[name]
		if kind == edmUnknown {
			kind = infer(r)
		}
		var val any
		var vsize int
		switch kind {
		case edmString:
			var s string
			if err := json.Unmarshal(r, &s); err != nil {
				return encoded{}, fmt.Errorf("tablestore: property %s: %v: %w", name, err, ErrInvalid)
			}
			val, vsize = s, 4+utf16Len(s)*2
		case edmBool:
			val, vsize = r, 1
		case edmInt32:
			val, vsize = r, 4
		case edmInt64:
			i, err := strconv.ParseInt(string(r), 10, 64)
			if err != nil {
				return encoded{}, fmt.Errorf("tablestore: property %s = %s is not an int64: %w", name, r, ErrInvalid)
			}
			val, vsize = strconv.FormatInt(i, 10), 8
			out[name+annotationSuffix] = "Edm.Int64"
		case edmDouble:
			val, vsize = r, 8
			out[name+annotationSuffix] = "Edm.Double"
		case edmDateTime:
			var t time.Time
			if err := json.Unmarshal(r, &t); err != nil {
				return encoded{}, fmt.Errorf("tablestore: property %s: %v: %w", name, err, ErrInvalid)
			}
			if t.IsZero() {
				continue
			}
			t = t.UTC()
			if t.Year() < 1601 || t.Year() > 9999 {
				return encoded{}, fmt.Errorf("tablestore: property %s = %v is outside 1601..9999: %w", name, t, ErrInvalid)
			}
			val, vsize = t.Format(dateTimeFormat), 8
			out[name+annotationSuffix] = "Edm.DateTime"
		case edmBinary:
			var b []byte
			if err := json.Unmarshal(r, &b); err != nil {
				return encoded{}, fmt.Errorf("tablestore: property %s: %v: %w", name, err, ErrInvalid)
			}
			if len(b) > MaxStringBytes {
				return encoded{}, fmt.Errorf("tablestore: property %s is %d bytes of binary, more than %d: %w", name, len(b), MaxStringBytes, ErrInvalid)
			}
			val, vsize = base64.StdEncoding.EncodeToString(b), 4+len(b)
			out[name+annotationSuffix] = "Edm.Binary"
		case edmJSON:
			var c bytes.Buffer
			if err := json.Compact(&c, r); err != nil {
				return encoded{}, fmt.Errorf("tablestore: property %s: %v: %w", name, err, ErrInvalid)
			}
			s := c.String()
			val, vsize = s, 4+utf16Len(s)*2
		}
		if kind == edmString || kind == edmJSON {
			if vsize-4 > MaxStringBytes {
				return encoded{}, fmt.Errorf("tablestore: property %s is %d bytes as UTF-16, more than Table Storage's %d per string: %w", name, vsize-4, MaxStringBytes, ErrInvalid)
			}
		}
		out[name] = val
		size += 8 + utf16Len(name)*2 + vsize
		n++
	}
	if n > MaxProperties {
		return encoded{}, fmt.Errorf("tablestore: %T has %d properties, more than %d: %w", v, n, MaxProperties, ErrInvalid)
	}
	if size > MaxEntityBytes {
		return encoded{}, fmt.Errorf("tablestore: entity %q is about %d bytes, more than %d: %w", key, size, MaxEntityBytes, ErrInvalid)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return encoded{}, fmt.Errorf("tablestore: marshal entity: %v: %w", err, ErrInvalid)
	}
	return encoded{body: body, size: size}, nil
}

// infer picks a type for a value whose Go type did not say (interfaces, custom marshalers, maps).
func infer(r json.RawMessage) edm {
	switch r[0] {
	case '"':
		return edmString
	case 't', 'f':
		return edmBool
	case '{', '[':
		return edmJSON
	}
	if !strings.ContainsAny(string(r), ".eE") {
		return edmInt64 // encode rejects integers beyond int64
	}
	return edmDouble
}

func checkPropertyName(name string) error {
	switch name {
	case "PartitionKey", "RowKey", "Timestamp", "ETag":
		return fmt.Errorf("tablestore: property name %q is reserved: %w", name, ErrInvalid)
	}
	ok := name != "" && len(name) <= maxPropertyName && !('0' <= name[0] && name[0] <= '9')
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
	}
	if !ok {
		return fmt.Errorf("tablestore: property name %q must be letters, digits and '_', not starting with a digit: %w", name, ErrInvalid)
	}
	return nil
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// meta is what the service adds to an entity.
type meta struct {
	partition, key string
	etag           ETag
	timestamp      time.Time
}

// decode turns an entity as the service returns it (JSON, minimal metadata) into a T.
func decode[T any](body []byte) (T, meta, error) {
	var zero T
	var props map[string]json.RawMessage
	if err := json.Unmarshal(body, &props); err != nil {
		return zero, meta{}, fmt.Errorf("tablestore: decode entity: %w", err)
	}
	var m meta
	_ = json.Unmarshal(props["PartitionKey"], &m.partition)
	_ = json.Unmarshal(props["RowKey"], &m.key)
	var etag string
	_ = json.Unmarshal(props["odata.etag"], &etag)
	m.etag = ETag(etag)
	if ts, ok := props["Timestamp"]; ok {
		_ = json.Unmarshal(ts, &m.timestamp)
	}
	sch := schemaOf(reflect.TypeFor[T]())
	out := make(map[string]json.RawMessage, len(props))
	for name, r := range props {
		switch {
		case name == "PartitionKey", name == "RowKey", name == "Timestamp",
			strings.HasPrefix(name, "odata."), strings.HasSuffix(name, annotationSuffix):
			continue
		}
		switch typ := annotation(props, name); {
		case typ == "Edm.Int64":
			var s string
			if json.Unmarshal(r, &s) == nil {
				r = json.RawMessage(s)
			}
		case sch[name] == edmJSON:
			var s string
			if json.Unmarshal(r, &s) == nil && json.Valid([]byte(s)) {
				r = json.RawMessage(s)
			}
		}
		out[name] = r
	}
	b, err := json.Marshal(out)
	if err != nil {
		return zero, m, fmt.Errorf("tablestore: decode entity %q: %w", m.key, err)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return zero, m, fmt.Errorf("tablestore: decode entity %q into %T: %w", m.key, v, err)
	}
	return v, m, nil
}

func annotation(props map[string]json.RawMessage, name string) string {
	var s string
	if r, ok := props[name+annotationSuffix]; ok {
		_ = json.Unmarshal(r, &s)
	}
	return s
}
