// Package connection keeps each org's Microsoft 365 connection record: which tenant it is bound
// to, its status, the permissions that tenant granted, and the last error an admin must see.
package connection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Status is the connection state the web app shows.
type Status string

const (
	Pending              Status = "pending"               // consent started, not finished
	Connected            Status = "connected"             // consent proven with an app-only token
	NeedsReauthorization Status = "needs_reauthorization" // tokens refused since: an admin must consent again
	Failed               Status = "error"                 // the last consent attempt failed
	Disconnected         Status = "disconnected"          // never connected, or disconnected by an admin
)

// Record is one org's connection.
type Record struct {
	Status      Status    `json:"status"`
	TenantID    string    `json:"tenantId"`
	Granted     []string  `json:"granted"`
	Missing     []string  `json:"missing"`
	ConnectedAt time.Time `json:"connectedAt"`
	ConnectedBy string    `json:"connectedBy,omitempty"` // the administrator who signed in
	UpdatedAt   time.Time `json:"updatedAt"`
	LastError   string    `json:"lastError"`
	ErrorHint   string    `json:"errorHint"`
}

// Table is the table connection records live in.
const Table = "connections"

// rowKey is the record's key in the org's partition: one Microsoft 365 connection per org.
const rowKey = "m365"

// ErrNotConnected says an org has no usable connection.
var ErrNotConnected = errors.New("connection: org is not connected to Microsoft 365")

// Store reads and writes connection records, and keeps the org↔tenant mapping with them.
type Store struct {
	t       *tablestore.Table
	tenants *Tenants
}

// NewStore returns a Store over s.
func NewStore(s *tablestore.Store) *Store {
	return &Store{t: s.Table(Table), tenants: NewTenants(s, nil)}
}

// Tenants returns the org↔tenant mapping.
func (s *Store) Tenants() *Tenants { return s.tenants }

// Disconnect ends org's connection: it keeps stakeholders and history, stops what needs the
// connection (schedules and syncs check it), forgets the tenant and releases it for other orgs.
//
// The tenant is released before the record forgets it, so a Disconnect that fails half-way (a
// storage blip, an erasure's time budget) is finished by the next one instead of leaving the
// tenant bound to this org for ever.
func (s *Store) Disconnect(ctx context.Context, org tablestore.Org, now time.Time) error {
	for range 5 {
		old, etag, err := s.Get(ctx, org)
		if err != nil {
			return err
		}
		if old.TenantID != "" {
			if err := s.tenants.Release(ctx, old.TenantID, org); err != nil {
				return err
			}
		}
		_, err = s.Put(ctx, org, Record{Status: Disconnected, UpdatedAt: now.UTC()}, etag)
		if !errors.Is(err, tablestore.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("connection of %s keeps changing: %w", org, tablestore.ErrConflict)
}

// Get returns org's record and its ETag; a missing record is a Disconnected one with an empty ETag.
func (s *Store) Get(ctx context.Context, org tablestore.Org) (Record, tablestore.ETag, error) {
	rec, etag, err := tablestore.Get[Record](ctx, s.t, org, rowKey)
	if errors.Is(err, tablestore.ErrNotFound) {
		return Record{Status: Disconnected}, "", nil
	}
	if err != nil {
		return Record{}, "", fmt.Errorf("connection of %s: %w", org, err)
	}
	return rec, etag, nil
}

// Put stores rec; etag "" creates it (failing if one appeared meanwhile), otherwise it must match.
func (s *Store) Put(ctx context.Context, org tablestore.Org, rec Record, etag tablestore.ETag) (tablestore.ETag, error) {
	etag, err := s.t.Save(ctx, org, rowKey, rec, etag)
	if err != nil {
		return "", fmt.Errorf("save connection of %s: %w", org, err)
	}
	return etag, nil
}

// Tenant returns the tenant a connected org is bound to, or ErrNotConnected.
func (s *Store) Tenant(ctx context.Context, org tablestore.Org) (string, error) {
	rec, _, err := s.Get(ctx, org)
	if err != nil {
		return "", err
	}
	if rec.Status != Connected || rec.TenantID == "" {
		return "", fmt.Errorf("%w (status %s)", ErrNotConnected, rec.Status)
	}
	return rec.TenantID, nil
}

// hintReauthorize is shown when tokens are refused after a connection was made.
const hintReauthorize = "Re-authorize: an administrator must connect Microsoft 365 again (Settings → Integrations). Check admin permissions if it keeps failing."

// NeedsReauthorization moves a connected org to needs_reauthorization with reason, when a token
// for its tenant is refused (secret expired, consent revoked, app removed). A later successful
// consent restores it. Orgs that are not connected are left as they are.
func (s *Store) NeedsReauthorization(ctx context.Context, org tablestore.Org, reason string, now time.Time) error {
	for range 5 {
		rec, etag, err := s.Get(ctx, org)
		if err != nil || rec.Status != Connected {
			return err
		}
		rec.Status, rec.LastError, rec.ErrorHint, rec.UpdatedAt = NeedsReauthorization, reason, hintReauthorize, now.UTC()
		if _, err = s.Put(ctx, org, rec, etag); !errors.Is(err, tablestore.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("connection of %s keeps changing: %w", org, tablestore.ErrConflict)
}
