// Package entra holds the directory objects the integration reads from Microsoft Graph (users,
// groups, membership changes) as plain data, and the kinds of Graph failure callers act on. It
// exists so that sync, API and tests never import the compile-heavy Graph SDK: the graph package
// fills these types, everyone else consumes them.
package entra

import (
	"errors"
	"fmt"
	"time"
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

// Kind classifies a Graph or sign-in failure by what the caller should do about it.
type Kind int

const (
	KindOther        Kind = iota
	KindNotFound          // 404: the object is gone → run error user_not_found
	KindForbidden         // 403: a permission is missing → permission_denied
	KindThrottled         // 429/503/504 after our retries → rate_limited
	KindInvalid           // 400: a request we built is wrong → invalid_data
	KindResync            // 410 Gone, syncStateNotFound, resyncRequired → restart delta from scratch
	KindUnauthorized      // token refused or not obtainable → connection needs re-authorization
	KindUnavailable       // network, timeout or 5xx after retries
)

var kindNames = map[Kind]string{
	KindOther: "other", KindNotFound: "not_found", KindForbidden: "forbidden", KindThrottled: "throttled",
	KindInvalid: "invalid", KindResync: "resync", KindUnauthorized: "unauthorized", KindUnavailable: "unavailable",
}

func (k Kind) String() string { return kindNames[k] }

// Error is a classified failure of a Graph call or token request. Message never contains a secret
// or token: it is the service's own error text.
type Error struct {
	Kind       Kind
	Status     int    // HTTP status, 0 when the request never got an answer
	Code       string // Graph error code or AADSTS error
	Message    string
	RequestID  string
	RetryAfter time.Duration
	Err        error // the underlying cause, when there is one
}

func (e *Error) Error() string {
	s := fmt.Sprintf("graph: %s", e.Kind)
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Transient reports whether the kind is a passing failure worth trying again later (throttling,
// 5xx, network); every other kind is permanent for the request that met it.
func (k Kind) Transient() bool { return k == KindThrottled || k == KindUnavailable }

// KindOf returns the kind of err, KindOther when it is not a classified failure.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}
