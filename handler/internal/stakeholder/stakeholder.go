// Package stakeholder is the Leap Change stakeholder directory in Table Storage: stakeholders,
// manual or synced from Entra ID, with index rows that find one by Entra object id or by email in
// the same org partition, so a stakeholder and its index rows are always written in one atomic
// transaction.
package stakeholder

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Field names of the synced fields, in display order. Leap-only fields are not among them.
const (
	FirstName  = "firstName"
	LastName   = "lastName"
	Email      = "email"
	Phone      = "phone"
	Department = "department"
	Role       = "role"
	Location   = "location"
	Manager    = "manager" // the Entra object id of the manager (organizational hierarchy)
)

// SyncedFields lists every field sync may write.
var SyncedFields = []string{FirstName, LastName, Email, Phone, Department, Role, Location, Manager}

// Sources of a stakeholder.
const (
	Manual = "manual"
	Entra  = "entra"
)

// Values are synced field values by field name.
type Values map[string]string

// Stakeholder is one stakeholder.
type Stakeholder struct {
	ID         string `json:"id"`
	FirstName  string `json:"firstName"`
	LastName   string `json:"lastName"`
	Email      string `json:"email"`
	Phone      string `json:"phone"`
	Department string `json:"department"`
	Role       string `json:"role"`
	Location   string `json:"location"`
	ManagerID  string `json:"managerExternalId"` // the manager's Entra object id

	// Leap-only fields: sync never writes them.
	Influence    string `json:"influence"`
	SupportLevel string `json:"supportLevel"`
	Interest     string `json:"interest"`

	Source            string `json:"source"`               // Manual or Entra
	ExternalID        string `json:"externalId,omitempty"` // Entra object id once linked
	Active            bool   `json:"active"`
	DeactivatedReason string `json:"deactivatedReason,omitempty"` // deleted, disabled, out_of_filter

	// Base holds, per synced field, the last value synced from Entra: the common ancestor of the
	// three-way merge. Empty for manual stakeholders.
	Base Values `json:"base,omitempty"`

	// SeenRun is the last full sync run that found this stakeholder's user in Entra; a full run
	// deactivates synced stakeholders it did not see.
	SeenRun string `json:"seenRun,omitempty"`

	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	SyncedAt  time.Time `json:"syncedAt,omitzero"`
}

// Get returns the value of a synced field.
func (s *Stakeholder) Get(field string) string {
	if p := s.field(field); p != nil {
		return *p
	}
	return ""
}

// Set sets a synced field.
func (s *Stakeholder) Set(field, v string) {
	if p := s.field(field); p != nil {
		*p = v
	}
}

// field returns the struct field holding a synced field, nil for any other name.
func (s *Stakeholder) field(name string) *string {
	switch name {
	case FirstName:
		return &s.FirstName
	case LastName:
		return &s.LastName
	case Email:
		return &s.Email
	case Phone:
		return &s.Phone
	case Department:
		return &s.Department
	case Role:
		return &s.Role
	case Location:
		return &s.Location
	case Manager:
		return &s.ManagerID
	}
	return nil
}

// Values returns the synced fields as Values.
func (s *Stakeholder) Values() Values {
	v := make(Values, len(SyncedFields))
	for _, f := range SyncedFields {
		v[f] = s.Get(f)
	}
	return v
}

// Errors of the directory.
var (
	ErrNotFound     = errors.New("stakeholder: not found")
	ErrEmailInUse   = errors.New("stakeholder: another stakeholder has this email")
	ErrSynced       = errors.New("stakeholder: synced from Entra ID; deactivate it in Entra instead")
	ErrInvalidInput = errors.New("stakeholder: invalid")
)

// NewID returns a new stakeholder id: 16 random base32 characters, lower case.
func NewID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// SyncedID is the id of a stakeholder created from an Entra user: derived from the user's object
// id, so finding it by object id needs no index row (a third of a full sync's writes). "" when
// the object id is not a GUID; such users get a random id and an index row.
func SyncedID(entraID string) string {
	hex := strings.ReplaceAll(strings.ToLower(entraID), "-", "")
	if len(hex) != 32 || strings.Trim(hex, "0123456789abcdef") != "" {
		return ""
	}
	return "e" + hex
}

// derived reports whether st's id is derived from its Entra object id (no index row needed).
func derived(st *Stakeholder) bool {
	return st != nil && st.ExternalID != "" && st.ID == SyncedID(st.ExternalID)
}

// Row keys: the stakeholder itself and its two index rows.
func rowKey(id string) string           { return "s-" + id }
func externalKey(entraID string) string { return "x-" + tablestore.KeyEscape(entraID) }
func emailKey(email string) string      { return "m-" + tablestore.KeyEscape(NormalizeEmail(email)) }

// NormalizeEmail is the matching form of an address: trimmed, lower case.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// pointer is an index row's value. Entra index rows also carry whether the stakeholder is
// active, so scope checks need no stakeholder reads.
type pointer struct {
	ID     string `json:"id"`
	Active bool   `json:"active"`
	Reason string `json:"reason,omitempty"` // DeactivatedReason
}
