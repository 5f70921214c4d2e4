package tablestore

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Org identifies one customer organisation. Every entity the store reads or writes lives in the org's
// partition (its PartitionKey is the org id), and no method takes a raw PartitionKey, so code holding an
// Org cannot reach another org's data by mistake.
//
// The zero Org is invalid: every operation given it fails with ErrInvalid.
type Org struct{ id string }

// NewOrg validates id as a partition key: not empty, at most 255 bytes of UTF-8, and free of
// '/', '\\', '#', '?' and control characters (which Table Storage forbids in keys) and of '\”
// (which aztables v1.4.0 does not escape in transactions). Violations are ErrInvalid.
func NewOrg(id string) (Org, error) {
	if err := checkKey("org id", id, maxOrgBytes); err != nil {
		return Org{}, err
	}
	return Org{id: id}, nil
}

// String returns the org id.
func (o Org) String() string { return o.id }

// Partition is the partition an operation reads and writes: an Org for everything that belongs
// to an org, or a Shared partition for rows keyed by something else. Every method of the store
// takes one, and nothing else, as its PartitionKey.
type Partition interface {
	partition() Org // the key, checked like an org id
}

func (o Org) partition() Org { return o }

// Shared is a partition that belongs to no org: rows keyed by a tenant (its binding to an org), a
// subscription id, a global counter. Its keyspace names what the id is, so a tenant id can never
// be handed to code that expects an org; the PartitionKey is the id itself.
type Shared struct {
	keyspace string
	key      Org
}

// NewShared validates id as a partition key (as NewOrg does) in keyspace, e.g. "tenant".
func NewShared(keyspace, id string) (Shared, error) {
	if err := checkKey(keyspace+" id", id, maxOrgBytes); err != nil {
		return Shared{}, err
	}
	return Shared{keyspace: keyspace, key: Org{id: id}}, nil
}

func (s Shared) partition() Org { return s.key }

// String returns "keyspace:id", for logs.
func (s Shared) String() string { return s.keyspace + ":" + s.key.id }

func (o Org) check() error {
	if o.id == "" {
		return fmt.Errorf("tablestore: zero Org (use NewOrg): %w", ErrInvalid)
	}
	return nil
}

const (
	maxOrgBytes = 255
	maxKeyBytes = 1024 // Table Storage: keys up to 1 KiB
)

// CheckKey reports whether key is usable as a RowKey: not empty, at most 1 KiB of UTF-8, and free of
// '/', '\\', '#', '?', '\” and control characters (see NewOrg). Violations are ErrInvalid. Every operation checks its keys
// this way before sending anything; use KeyEscape to turn an arbitrary id into a valid key.
func CheckKey(key string) error { return checkKey("row key", key, maxKeyBytes) }

func checkKey(what, key string, max int) error {
	switch {
	case key == "":
		return fmt.Errorf("tablestore: empty %s: %w", what, ErrInvalid)
	case len(key) > max:
		return fmt.Errorf("tablestore: %s is %d bytes, more than %d: %w", what, len(key), max, ErrInvalid)
	case !utf8.ValidString(key):
		return fmt.Errorf("tablestore: %s %q is not UTF-8: %w", what, key, ErrInvalid)
	}
	for _, r := range key {
		if r == '/' || r == '\\' || r == '#' || r == '?' || r == '\'' || r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return fmt.Errorf("tablestore: %s %q contains %q, not allowed in Table keys: %w", what, key, r, ErrInvalid)
		}
	}
	return nil
}

// KeyEscape turns an arbitrary id (an email address, a Graph id, a user-typed name) into a valid RowKey
// (or part of one). ASCII letters, digits, '-', '_', '.' and '@' are kept; every other byte, including
// '~' itself, becomes '~' and two upper-case hex digits. The result is never longer than 3×len(id).
//
// The mapping is injective and works piece by piece — KeyEscape(a+b) == KeyEscape(a)+KeyEscape(b) — so
// keys can be built by joining escaped parts with a separator KeyEscape never emits unescaped (such as
// '|' or ':') and queried by the escaped prefix. It does not fold case: lower-case emails first if
// lookups must be case-insensitive. KeyUnescape reverses it. An empty id gives an empty string, which
// is not a valid key on its own.
func KeyEscape(id string) string {
	var b strings.Builder
	b.Grow(len(id))
	for i := 0; i < len(id); i++ {
		c := id[i]
		if keySafe(c) {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// KeyUnescape reverses KeyEscape. It fails with ErrInvalid on text KeyEscape cannot have produced.
func KeyUnescape(key string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c != '~' {
			if !keySafe(c) {
				return "", fmt.Errorf("tablestore: %q is not an escaped key (byte %q at %d): %w", key, c, i, ErrInvalid)
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(key) {
			return "", fmt.Errorf("tablestore: %q ends in a partial escape: %w", key, ErrInvalid)
		}
		hi, ok1 := unhex(key[i+1])
		lo, ok2 := unhex(key[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("tablestore: %q has a bad escape at %d: %w", key, i, ErrInvalid)
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

func keySafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '@'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// quote returns s as an OData string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Quote returns s as an OData string literal ('…' with quotes doubled), for building
// QueryOptions.Filter from values.
func Quote(s string) string { return quote(s) }
