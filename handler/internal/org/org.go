// Package org is the registry of customer organisations: an org exists once the web app registers
// it (display name, default time zone), every other route of an unknown org is a 404, and erasing an
// org removes every row it has in every table, releases its Microsoft 365 tenant and removes its
// Graph subscriptions.
package org

import (
	"errors"
	"fmt"
	"github.com/leapchange/m365/handler/internal/fielderr"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Table holds one row per org (key "org") in the org's own partition, like every other table.
const Table = "orgs"

const rowKey = "org"

// State is where an org is in its life.
type State string

const (
	// Active orgs are served.
	Active State = "active"
	// Erasing orgs are being erased: every route but DELETE answers 404, and DELETE continues.
	Erasing State = "erasing"
)

// Org is a registered organisation.
type Org struct {
	ID          string    `json:"id"`
	DisplayName string    `json:"displayName"`
	TimeZone    string    `json:"timeZone"`
	State       State     `json:"state"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	// ErasingSince is when erasure began (State Erasing).
	ErasingSince time.Time `json:"erasingSince,omitzero"`
}

// Registration is what the web app says about an org.
type Registration struct {
	DisplayName string `json:"displayName"`
	TimeZone    string `json:"timeZone"`
}

var (
	// ErrNotFound: no such org (never registered, or erased).
	ErrNotFound = errors.New("org: not registered")
	// ErrErasing: the org is being erased; only DELETE may continue.
	ErrErasing = errors.New("org: being erased")
)

// FieldError names one invalid field.
type FieldError = fielderr.Field

// Invalid is every problem of a request.
type Invalid = fielderr.List

// idRE is the org id: lower-case letters, digits, '-' and '_', starting with a letter or digit.
// It is deliberately narrower than a partition key: nothing a client, proxy or the Functions host
// would normalise (".", "..", percent-encoding, slashes, backslashes, whitespace, case) can appear,
// so the id the web app sent is the id we store, and two spellings never name one org.
var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ParseID validates an org id from a URL.
func ParseID(id string) (tablestore.Org, error) {
	if !idRE.MatchString(id) {
		return tablestore.Org{}, Invalid{{Field: "org", Message: "must be 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit"}}
	}
	return tablestore.NewOrg(id)
}

// MaxDisplayName bounds the display name, in characters.
const MaxDisplayName = 200

// Validate checks r and returns Invalid naming every bad field.
func (r Registration) Validate() error {
	var bad Invalid
	name := strings.TrimSpace(r.DisplayName)
	switch {
	case name == "":
		bad = append(bad, FieldError{Field: "displayName", Message: "required"})
	case utf8.RuneCountInString(r.DisplayName) > MaxDisplayName:
		bad = append(bad, FieldError{Field: "displayName", Message: fmt.Sprintf("at most %d characters", MaxDisplayName)})
	case strings.IndexFunc(r.DisplayName, unicode.IsControl) >= 0:
		bad = append(bad, FieldError{Field: "displayName", Message: "must not contain control characters"})
	}
	// "" and "Local" load (as UTC and the server's zone) but are not IANA names.
	if _, err := time.LoadLocation(r.TimeZone); err != nil || r.TimeZone == "" || r.TimeZone == "Local" {
		bad = append(bad, FieldError{Field: "timeZone", Message: fmt.Sprintf("unknown IANA time zone %q", r.TimeZone)})
	}
	if len(bad) > 0 {
		return bad
	}
	return nil
}
