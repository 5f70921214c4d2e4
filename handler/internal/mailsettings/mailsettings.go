// Package mailsettings holds each org's mail settings: the mailboxes notifications are sent from
// (a pool, since one Exchange Online mailbox sends at most 10 000 recipients a day) and the
// default reply-to address.
package mailsettings

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/fielderr"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// MaxSenders bounds the pool.
const MaxSenders = 20

// Settings are an org's mail settings.
type Settings struct {
	// Senders are the mailboxes mail is sent as, by address (their user principal names).
	Senders   []string  `json:"senders"`
	ReplyTo   string    `json:"replyTo,omitempty"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

// FieldError names one bad field.
type FieldError = fielderr.Field

// Invalid is every problem of a settings document.
type Invalid = fielderr.List

// address checks one address and returns it trimmed.
func address(s string) (string, bool) {
	s = strings.TrimSpace(s)
	a, err := mail.ParseAddress(s)
	return s, err == nil && a.Address == s && len(s) <= 254
}

// Normalize trims the addresses and checks their form (not whether they exist: the API asks
// the tenant). Senders must be distinct, case-insensitively.
func (s *Settings) Normalize() error {
	var bad Invalid
	if len(s.Senders) == 0 {
		bad = append(bad, FieldError{Field: "senders", Message: "name at least one mailbox to send from"})
	}
	if len(s.Senders) > MaxSenders {
		bad = append(bad, FieldError{Field: "senders", Message: fmt.Sprintf("at most %d mailboxes", MaxSenders)})
	}
	seen := map[string]bool{}
	for i, m := range s.Senders {
		a, ok := address(m)
		field := fmt.Sprintf("senders[%d]", i)
		switch {
		case !ok:
			bad = append(bad, FieldError{Field: field, Message: "not a mail address"})
		case seen[strings.ToLower(a)]:
			bad = append(bad, FieldError{Field: field, Message: "listed twice"})
		}
		seen[strings.ToLower(a)] = true
		s.Senders[i] = a
	}
	if s.ReplyTo != "" {
		a, ok := address(s.ReplyTo)
		if !ok {
			bad = append(bad, FieldError{Field: "replyTo", Message: "not a mail address"})
		}
		s.ReplyTo = a
	}
	if len(bad) > 0 {
		return bad
	}
	return nil
}

// Table holds one row per org.
const Table = "mailsettings"

const rowKey = "mail"

// ErrNotSet: the org has no mail settings yet.
var ErrNotSet = fmt.Errorf("mail settings: no sender mailbox is set: %w", errkind.NotFound)

// Store reads and writes mail settings.
type Store struct{ t *tablestore.Table }

// NewStore returns the store over s.
func NewStore(s *tablestore.Store) *Store { return &Store{t: s.Table(Table)} }

// Get returns the org's settings, or ErrNotSet.
func (s *Store) Get(ctx context.Context, org tablestore.Org) (Settings, tablestore.ETag, error) {
	v, etag, err := tablestore.Get[Settings](ctx, s.t, org, rowKey)
	if errors.Is(err, errkind.NotFound) {
		return Settings{Senders: []string{}}, "", ErrNotSet
	}
	return v, etag, err
}

// Put stores v (already normalised and checked); etag "" creates, otherwise it must match.
func (s *Store) Put(ctx context.Context, org tablestore.Org, v Settings, etag tablestore.ETag) (tablestore.ETag, error) {
	if err := v.Normalize(); err != nil {
		return "", err
	}
	return s.t.Save(ctx, org, rowKey, v, etag)
}
