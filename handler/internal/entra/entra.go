// Package entra holds the directory objects the integration reads from Microsoft Graph (users,
// groups, membership changes) as plain data, and the kinds of Graph failure callers act on. It
// exists so that sync, API and tests never import the compile-heavy Graph SDK: the graph package
// fills these types, everyone else consumes them.
package entra

import (
	"errors"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// Removal says why a delta entry carries @removed.
type Removal string

const (
	NotRemoved  Removal = ""
	SoftDeleted Removal = "changed" // restorable; a restore reappears as a normal object
	HardDeleted Removal = "deleted"
)

// User is an Entra user as selected for stakeholder sync.
type User struct {
	ID                string
	DisplayName       string
	GivenName         string
	Surname           string
	Mail              string
	UserPrincipalName string
	MobilePhone       string
	BusinessPhones    []string
	Department        string
	JobTitle          string
	OfficeLocation    string
	ManagerID         string
	AccountEnabled    bool
	Removed           Removal
}

// UserPage is one page of users/delta. Exactly one of NextLink and DeltaLink is set.
type UserPage struct {
	Users     []User
	NextLink  string
	DeltaLink string
}

// MemberChange is one entry of a group's members@delta.
type MemberChange struct {
	ID      string
	IsGroup bool // a nested group; otherwise a user (devices and contacts are dropped)
	Removed bool
}

// Group is an Entra group with the membership changes of one delta page.
type Group struct {
	ID          string
	DisplayName string
	Description string
	Members     []MemberChange
	Removed     Removal
}

// GroupPage is one page of groups/delta.
type GroupPage struct {
	Groups    []Group
	NextLink  string
	DeltaLink string
}

// Kind is the project's failure kind (errkind); the names below keep the directory code short.
type Kind = errkind.Kind

const (
	KindOther        = errkind.Other
	KindNotFound     = errkind.NotFound     // 404: the object is gone → run error user_not_found
	KindForbidden    = errkind.Forbidden    // 403: a permission is missing → permission_denied
	KindThrottled    = errkind.Throttled    // 429/503/504 after our retries → rate_limited
	KindInvalid      = errkind.Invalid      // 400: a request we built is wrong → invalid_data
	KindResync       = errkind.Resync       // 410 Gone, syncStateNotFound, resyncRequired → restart delta from scratch
	KindUnauthorized = errkind.Unauthorized // token refused or not obtainable → connection needs re-authorization
	KindUnavailable  = errkind.Unavailable  // network, timeout or 5xx after retries
)

// Error is a classified failure of a Graph call or token request (errkind.Error).
type Error = errkind.Error

// KindOf returns the kind of err, KindOther when it is not a classified failure.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}
