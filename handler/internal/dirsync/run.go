// Package dirsync syncs Entra users into Leap Change stakeholders. A run is a chain of bounded
// steps carried by sync-jobs messages: each step fetches users/delta pages for a time budget,
// writes them, and checkpoints the run after every page, so a killed step resumes where it
// stopped and a huge tenant never needs one long invocation.
//
// This is the foundation's path (full and delta rounds, mapping, checkpoints, history); the
// three-way merge, group filter and deletion guard build on it.
package dirsync

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// State is a run's lifecycle state.
type State string

const (
	Running   State = "running"
	Succeeded State = "succeeded"
	Failed    State = "failed"
)

// Run is one sync run: its checkpoint and its counts. Stored in table "syncruns", keyed by ID,
// which sorts newest first.
type Run struct {
	ID         string    `json:"id"`
	State      State     `json:"state"`
	Kind       string    `json:"kind"`    // "full" or "delta"
	Trigger    string    `json:"trigger"` // "manual", "schedule"
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`

	// Checkpoint: the next step to run and the link it starts from.
	Step     int    `json:"step"`
	NextLink string `json:"nextLink,omitempty"` // opaque Graph state; the API never shows it

	Pages       int `json:"pages"`
	Processed   int `json:"processed"`
	Written     int `json:"written"`     // stakeholders created or refreshed
	Deactivated int `json:"deactivated"` // deleted or disabled in Entra
	Invalid     int `json:"invalid"`
	Throttled   int `json:"throttled"`

	Errors    []RunError `json:"errors"`
	LastError string     `json:"lastError,omitempty"`
}

// RunError is one error recorded on a run, with what an admin can do about it.
type RunError struct {
	Code   string `json:"code"`   // user_not_found, permission_denied, rate_limited, invalid_data, …
	Object string `json:"object"` // the Entra object id, or "" for the run
	Detail string `json:"detail"`
	Hint   string `json:"hint"`
}

// maxErrors bounds the errors kept on a run record (an entity is at most 1 MiB); the count of
// all of them is in Invalid and the log.
const maxErrors = 200

func (r *Run) addError(e RunError) {
	if len(r.Errors) < maxErrors {
		r.Errors = append(r.Errors, e)
	}
}

// newRunID returns an id that sorts newest first: the inverted start time, then a tie-breaker.
func newRunID(now time.Time, tie uint32) string {
	inv := uint64(math.MaxInt64 - now.UnixNano())
	return fmt.Sprintf("%013s-%04x", strconv.FormatUint(inv, 36), tie&0xffff)
}

// validRunID reports whether id could have come from newRunID.
func validRunID(id string) bool {
	head, tail, ok := strings.Cut(id, "-")
	if !ok || len(head) != 13 || len(tail) != 4 {
		return false
	}
	for _, c := range head + tail {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
