// Package conversations keeps the bot's conversation references: for each person of an org (by
// Entra object id), where our bot can reach them in Teams — their id for our bot ("29:…"), the
// 1:1 conversation, the regional service URL — and whether they still have the app. A reference
// comes from a validated activity (install, any message) or from installing the app through
// Graph; it is stored per org, so one org never reaches another's people.
//
// Each reference also paces sends to its conversation under Teams' per-conversation limits (7 a
// second, 8 in 2 s, 60 in 30 s, 1 800 an hour), across every worker instance.
package conversations

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// States of a reference.
const (
	Active      = "active"
	Uninstalled = "uninstalled" // the person removed the app: nothing more is sent to them
	Blocked     = "blocked"     // Teams answered MessageWritesBlocked: the person blocked the bot
)

// Ref is one person's reference.
type Ref struct {
	AADObjectID    string `json:"aadObjectId"`
	UserID         string `json:"userId,omitempty"` // "29:…", specific to our bot
	Name           string `json:"name,omitempty"`
	TenantID       string `json:"tenantId"`
	ServiceURL     string `json:"serviceUrl,omitempty"`
	ConversationID string `json:"conversationId,omitempty"`
	InstallationID string `json:"installationId,omitempty"` // when we installed the app through Graph
	State          string `json:"state"`
	Source         string `json:"source"` // activity or install
	// FromActivity says ServiceURL came in a validated activity (not the documented fallback).
	FromActivity bool      `json:"fromActivity,omitempty"`
	NextSend     time.Time `json:"nextSend,omitzero"` // the pacing cell's theoretical arrival time
	UpdatedAt    time.Time `json:"updatedAt"`
}

// Table holds the references, partitioned by org.
const Table = "conversations"

func key(aadObjectID string) string { return "u-" + tablestore.KeyEscape(strings.ToLower(aadObjectID)) }

// Store reads and writes references.
type Store struct {
	t *tablestore.Table
}

// NewStore returns the store over s.
func NewStore(s *tablestore.Store) *Store { return &Store{t: s.Table(Table)} }

// Get returns the person's reference (errkind.NotFound when there is none).
func (s *Store) Get(ctx context.Context, org tablestore.Org, aadObjectID string) (Ref, tablestore.ETag, error) {
	if aadObjectID == "" {
		return Ref{}, "", fmt.Errorf("conversations: no Entra object id: %w", errkind.NotFound)
	}
	return tablestore.Get[Ref](ctx, s.t, org, key(aadObjectID))
}

// update applies change to the person's reference (a new one when absent) under its ETag,
// retrying conflicts.
func (s *Store) update(ctx context.Context, org tablestore.Org, aadObjectID string, change func(r *Ref, exists bool) bool) (Ref, error) {
	for range 8 {
		r, etag, err := s.Get(ctx, org, aadObjectID)
		exists := err == nil
		if err != nil && !errors.Is(err, errkind.NotFound) {
			return Ref{}, err
		}
		if !exists {
			r = Ref{AADObjectID: aadObjectID}
		}
		if !change(&r, exists) {
			return r, nil
		}
		if exists {
			_, err = s.t.Update(ctx, org, key(aadObjectID), r, etag, tablestore.Replace)
		} else {
			_, err = s.t.Insert(ctx, org, key(aadObjectID), r)
		}
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, errkind.Conflict) {
			return Ref{}, err
		}
	}
	return Ref{}, fmt.Errorf("conversations: %s kept changing: %w", aadObjectID, errkind.Conflict)
}

// Seen records what a validated activity from the person says: their bot id, conversation and
// service URL; an activity means the app is installed, so the reference is active again.
// A group or channel conversation is not a 1:1 and only refreshes the person's ids.
func (s *Store) Seen(ctx context.Context, org tablestore.Org, seen Ref, personal bool, now time.Time) (Ref, error) {
	return s.update(ctx, org, seen.AADObjectID, func(r *Ref, exists bool) bool {
		r.UserID, r.TenantID = seen.UserID, seen.TenantID
		if seen.Name != "" {
			r.Name = seen.Name
		}
		if personal {
			r.ConversationID, r.ServiceURL, r.FromActivity = seen.ConversationID, seen.ServiceURL, true
			r.State = Active
		} else if !exists {
			r.ServiceURL, r.FromActivity, r.State = seen.ServiceURL, true, Active
		}
		if r.Source == "" {
			r.Source = "activity"
		}
		r.UpdatedAt = now
		return true
	})
}

// Installed records an installation made through Graph and its chat (usable as the 1:1
// conversation id). fallbackServiceURL stands in until an activity brings the regional one.
func (s *Store) Installed(ctx context.Context, org tablestore.Org, aadObjectID, tenantID, installationID, chatID, fallbackServiceURL string, now time.Time) (Ref, error) {
	return s.update(ctx, org, aadObjectID, func(r *Ref, exists bool) bool {
		r.TenantID, r.InstallationID, r.State = tenantID, installationID, Active
		if r.ConversationID == "" || !r.FromActivity {
			r.ConversationID = chatID
		}
		if r.ServiceURL == "" {
			r.ServiceURL = fallbackServiceURL
		}
		if r.Source == "" {
			r.Source = "install"
		}
		r.UpdatedAt = now
		return true
	})
}

// SetConversation records a conversation created through the Bot Connector.
func (s *Store) SetConversation(ctx context.Context, org tablestore.Org, aadObjectID, conversationID string, now time.Time) error {
	_, err := s.update(ctx, org, aadObjectID, func(r *Ref, exists bool) bool {
		if !exists || r.ConversationID == conversationID {
			return false
		}
		r.ConversationID, r.UpdatedAt = conversationID, now
		return true
	})
	return err
}

// Gone marks the person unreachable (Uninstalled or Blocked); sends to them are then skipped.
func (s *Store) Gone(ctx context.Context, org tablestore.Org, aadObjectID, state string, now time.Time) error {
	_, err := s.update(ctx, org, aadObjectID, func(r *Ref, exists bool) bool {
		if !exists || r.State == state {
			return false
		}
		r.State, r.UpdatedAt = state, now
		return true
	})
	return err
}

// Per-conversation pacing: one send every interval, with bursts of up to burst. A cell of
// 2.1 s and a burst of 7 stays within every Teams window: 7 in 1 s, 7 in 2 s, 7+14 in 30 s,
// 7+1 714 in an hour.
const (
	interval = 2100 * time.Millisecond
	burst    = 7
)

// Reserve takes a send slot for the person's conversation at now or later, and returns it: the
// caller sends at once when it is now, and otherwise puts the send off until then.
func (s *Store) Reserve(ctx context.Context, org tablestore.Org, aadObjectID string, now time.Time) (time.Time, error) {
	var at time.Time
	_, err := s.update(ctx, org, aadObjectID, func(r *Ref, exists bool) bool {
		if !exists {
			at = now
			return false
		}
		tat := r.NextSend
		if tat.Before(now) {
			tat = now
		}
		// A send may go when its theoretical arrival time is within the burst tolerance.
		at = tat.Add(-(burst - 1) * interval)
		if at.Before(now) {
			at = now
		}
		r.NextSend = tat.Add(interval)
		return true
	})
	return at, err
}
