// Package subscriptions keeps our Microsoft Graph change-notification subscriptions, per org:
// what each watches, when it expires, its health, and what is needed to check the clientState
// of a notification — a nonce, not the secret: the clientState is an HMAC of the org and the
// nonce under STATE_SIGNING_KEY, so a leaked table reveals nothing that forges a notification.
// Channel monitoring and the real-time user and group sync use it.
package subscriptions

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/signer"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Purposes.
const (
	ChannelMessages = "channel_messages"
	Users           = "users"  // real-time stakeholder sync
	Groups          = "groups" // real-time sync of a group filter's membership
)

// Directory reports whether a purpose is the real-time sync's (its notifications mark the org
// for a delta round; nothing is fetched per notification).
func Directory(purpose string) bool { return purpose == Users || purpose == Groups }

// Sub is one subscription.
type Sub struct {
	ID         string    `json:"id"`
	Tenant     string    `json:"tenant"`
	Purpose    string    `json:"purpose"`
	TeamID     string    `json:"teamId,omitempty"`
	ChannelID  string    `json:"channelId,omitempty"`
	Resource   string    `json:"resource"`
	ChangeType string    `json:"changeType"`
	Nonce      string    `json:"nonce"` // the clientState is derived from it
	Expires    time.Time `json:"expires"`
	// RichData: notifications carry the resource, encrypted with the certificate CertificateID.
	RichData      bool      `json:"richData,omitempty"`
	CertificateID string    `json:"certificateId,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
	RenewedAt     time.Time `json:"renewedAt,omitzero"`
	// Health, as the admin sees it.
	LastNotification time.Time `json:"lastNotification,omitzero"`
	LastLifecycle    string    `json:"lastLifecycle,omitempty"`
	LastLifecycleAt  time.Time `json:"lastLifecycleAt,omitzero"`
	LastError        string    `json:"lastError,omitempty"`
	LastErrorAt      time.Time `json:"lastErrorAt,omitzero"`
}

// Table holds the subscriptions, partitioned by org.
const Table = "subscriptions"

func key(id string) string { return "s-" + tablestore.KeyEscape(id) }

// Store reads and writes subscriptions.
type Store struct{ t *tablestore.Table }

// NewStore returns the store over s.
func NewStore(s *tablestore.Store) *Store { return &Store{t: s.Table(Table)} }

// Get returns a subscription of the org (errkind.NotFound when the org has none by that id).
func (s *Store) Get(ctx context.Context, org tablestore.Org, id string) (Sub, tablestore.ETag, error) {
	if id == "" || len(id) > 200 {
		return Sub{}, "", fmt.Errorf("subscriptions: no such subscription: %w", errkind.NotFound)
	}
	return tablestore.Get[Sub](ctx, s.t, org, key(id))
}

// Put writes a subscription (create or replace).
func (s *Store) Put(ctx context.Context, org tablestore.Org, sub Sub) error {
	_, err := s.t.Upsert(ctx, org, key(sub.ID), sub, tablestore.Replace)
	return err
}

// Update applies change to the subscription under its ETag, retrying conflicts; a missing one
// is errkind.NotFound.
func (s *Store) Update(ctx context.Context, org tablestore.Org, id string, change func(*Sub)) error {
	for range 5 {
		sub, etag, err := s.Get(ctx, org, id)
		if err != nil {
			return err
		}
		change(&sub)
		_, err = s.t.Update(ctx, org, key(id), sub, etag, tablestore.Replace)
		if !errors.Is(err, errkind.Conflict) {
			return err
		}
	}
	return fmt.Errorf("subscriptions: %s kept changing: %w", id, errkind.Conflict)
}

// Delete forgets a subscription (idempotent).
func (s *Store) Delete(ctx context.Context, org tablestore.Org, id string) error {
	err := s.t.Delete(ctx, org, key(id), tablestore.ETagAny)
	if errors.Is(err, errkind.NotFound) {
		return nil
	}
	return err
}

// List streams the org's subscriptions.
func (s *Store) List(ctx context.Context, org tablestore.Org) iter.Seq2[Sub, error] {
	return func(yield func(Sub, error) bool) {
		for row, err := range tablestore.Query[Sub](ctx, s.t, org, tablestore.QueryOptions{KeyPrefix: "s-"}) {
			if !yield(row.Value, err) || err != nil {
				return
			}
		}
	}
}

// Orgs lists the orgs that have subscriptions.
func (s *Store) Orgs(ctx context.Context) ([]tablestore.Org, error) { return s.t.Partitions(ctx) }

// ClientStates derives and checks clientState secrets.
type ClientStates struct{ s signer.Signer }

// NewClientStates returns the deriver over the state signing key.
func NewClientStates(key []byte) (ClientStates, error) {
	s, err := signer.New(key)
	return ClientStates{s}, err
}

// NewNonce returns a fresh nonce for a subscription.
func NewNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// For is the clientState of a subscription of org with nonce (at most 128 characters, as Graph
// requires: 43).
func (c ClientStates) For(org tablestore.Org, nonce string) string {
	return base64.RawURLEncoding.EncodeToString(c.s.MAC("graph-client-state", []byte(org.String()+"\x00"+nonce)))
}

// Valid reports, in constant time, whether got is the clientState of the subscription.
func (c ClientStates) Valid(org tablestore.Org, sub Sub, got string) bool {
	return got != "" && signer.Equal(c.For(org, sub.Nonce), got)
}
