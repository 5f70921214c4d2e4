// Package dirsync syncs Entra ID users into Leap Change stakeholders (README, Stakeholder sync).
// A run is a chain of bounded steps carried by sync-jobs messages; every step checkpoints the run,
// so a killed step resumes where it stopped and a huge tenant never needs one long invocation.
//
// A run goes through phases: "users" reads users/delta pages and merges each user into its
// stakeholder (three-way, per field); "scope" applies the group filter; "unseen" (full rounds
// only) finds synced stakeholders whose user is gone; "guard" holds the run for approval when
// it would deactivate more than the org's threshold; "deprovision" deactivates; "groups"
// mirrors the filter groups as stakeholder groups; then the delta link is kept for the next run.
package dirsync

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/entra"
)

// State is a run's lifecycle state.
type State string

const (
	Running   State = "running"
	Held      State = "held" // waiting for an admin to approve its deactivations
	Succeeded State = "succeeded"
	Failed    State = "failed"
	// Cancelled: an admin stopped the run (see Engine.Cancel). Nothing it had not applied is
	// applied, and the next run reads from the delta link the run started from.
	Cancelled State = "cancelled"
)

// Final reports whether a run in state s is over: no step of it runs again.
func (s State) Final() bool { return s == Succeeded || s == Failed || s == Cancelled }

// Triggers: what started a run (StartOptions.Trigger, Run.Trigger).
const (
	TriggerManual       = "manual"       // an admin's POST /m365/sync
	TriggerSchedule     = "schedule"     // the SyncScheduler, at a slot of the org's frequency
	TriggerNotification = "notification" // real-time sync: Graph change notifications
	TriggerResync       = "resync"       // real-time sync: Graph asked for a resync (missed notifications)
)

// validTrigger reports whether t is one of the triggers above.
func validTrigger(t string) bool {
	switch t {
	case TriggerManual, TriggerSchedule, TriggerNotification, TriggerResync:
		return true
	}
	return false
}

// Phases of a run, in order.
const (
	PhaseMembership  = "membership" // the group filter's stored closure follows groups/delta (membership.go)
	PhaseUsers       = "users"
	PhaseScope       = "scope"
	PhaseUnseen      = "unseen"
	PhaseGuard       = "guard"
	PhaseDeprovision = "deprovision"
	PhaseGroups      = "groups"
	PhaseScopeMarks  = "scopemarks" // the closure's marks are acted on: cleared (scope.go)
)

// Run is one sync run: its checkpoint and its counts. Stored in table "syncruns", keyed by ID,
// which sorts newest first.
type Run struct {
	ID         string    `json:"id"`
	State      State     `json:"state"`
	Kind       string    `json:"kind"`    // "full" or "delta"
	Trigger    string    `json:"trigger"` // one of the Trigger constants
	DryRun     bool      `json:"dryRun"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// CancelledBy is who cancelled the run, as the canceller gave it (at most MaxCancelledBy
	// characters); empty unless cancelled, and then only when given.
	CancelledBy string `json:"cancelledBy,omitempty"`

	// Checkpoint: the phase and step to run next, and the Graph link the users phase resumes from.
	Phase     string `json:"phase"`
	Step      int    `json:"step"`
	NextLink  string `json:"nextLink,omitempty"`  // opaque Graph state; the API never shows it
	DeltaLink string `json:"deltaLink,omitempty"` // kept until the run finishes; never shown
	Cursor    string `json:"cursor,omitempty"`    // resume point inside a phase

	// HadSynced says whether the org had synced stakeholders when the users round began; a full
	// round into an empty directory has nothing to look for in the unseen phase.
	HadSynced bool `json:"hadSynced"`
	// HadEmails says whether any stakeholder had an address when a full round began. Without
	// synced stakeholders (HadSynced) or addresses, a full round's pages look nothing up: see
	// stakeholder.Existing.
	HadEmails bool `json:"hadEmails"`
	// Counted is how many synced stakeholders were active when the unseen phase streamed them
	// (its unseen ones included), and CountedAll says that phase has run: the guard and the
	// final count take it from there instead of reading the directory again.
	Counted    int  `json:"counted,omitempty"`
	CountedAll bool `json:"countedAll,omitempty"`

	Total     int `json:"total"` // users expected (0 when unknown, e.g. delta rounds)
	Pages     int `json:"pages"`
	Processed int `json:"processed"`

	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
	Conflicts int `json:"conflicts"`
	// Skipped are records left untouched: conflicts under skip conflicts, and stakeholders that
	// kept changing in Leap Change while the sync wrote them (an error on the run says which).
	Skipped     int `json:"skipped"`
	Deactivated int `json:"deactivated"`
	Reactivated int `json:"reactivated"`
	Linked      int `json:"linked"` // existing stakeholders linked to their Entra user for the first time
	Invalid     int `json:"invalid"`
	// Excluded are processed users that were not merged into a stakeholder, so that every
	// processed user is in exactly one of created, updated, unchanged, reactivated, skipped,
	// invalid and excluded (see Unaccounted).
	Excluded Excluded `json:"excluded"`
	// Throttled is how many Graph requests were answered "slow down" (429, or 503/504 with
	// Retry-After), including those the Graph transport waited out in-process; Retried is how
	// many requests were sent again after a transient failure; WaitedSeconds is the time spent
	// waiting for either, in-process and in rescheduled steps.
	Throttled     int     `json:"throttled"`
	Retried       int     `json:"retried"`
	WaitedSeconds float64 `json:"waitedSeconds"`
	// Rescheduled counts steps put off with a delay after a transient failure that outlasted the
	// in-process retries.
	Rescheduled int `json:"rescheduled"`
	ErrorCount  int `json:"errorCount"`

	// Heartbeat is when a step of this run last made progress or put itself off; NotBefore is when
	// a rescheduled step is due. A running run with neither moving for longer than a step can take
	// lost its step message and is recovered (see Engine.Recover).
	Heartbeat time.Time `json:"heartbeat,omitzero"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	// Recoveries counts republications of a lost step; Stalled counts those since the run last
	// progressed, and fails the run at MaxRecoveries. Deliveries is the highest delivery count a
	// step message of this run was seen with (a crash-looping step shows here).
	Recoveries int `json:"recoveries"`
	Stalled    int `json:"stalled"`
	Deliveries int `json:"deliveries,omitempty"`

	PendingDeactivations int `json:"pendingDeactivations"`
	Synced               int `json:"synced"` // active synced stakeholders when the run ended
	GroupsSynced         int `json:"groupsSynced"`
	MembersAdded         int `json:"membersAdded"`
	MembersRemoved       int `json:"membersRemoved"`
	// GroupMembers is the groups phase's member count so far per filter group it mirrors (see
	// groups.go): kept with the counts above, so a redone chunk takes it back from its marker.
	GroupMembers map[string]int `json:"groupMembers,omitempty"`
	// GroupsUpTo is the last membership row (stakeholder id) the groups phase's last page of
	// deletes covered, "" after a group's last page: a redo deletes no further, as its fresh read
	// of the page reaches past the rows the first attempt deleted.
	GroupsUpTo string `json:"groupsUpTo,omitempty"`

	Hold      *Hold      `json:"hold,omitempty"`
	Errors    []RunError `json:"errors"`
	LastError string     `json:"lastError,omitempty"`
	Changes   int        `json:"changes"` // per-record change log entries written
}

// Excluded counts the users a run processed but did not merge, by reason.
type Excluded struct {
	Deleted     int `json:"deleted"`     // deleted in Entra ID (their stakeholder, if any, is deactivated)
	OutOfFilter int `json:"outOfFilter"` // outside the group filter (likewise)
	Disabled    int `json:"disabled"`    // disabled in Entra ID and never a stakeholder
}

// Total is the number of excluded users.
func (x Excluded) Total() int { return x.Deleted + x.OutOfFilter + x.Disabled }

// Unaccounted is the number of processed users in no outcome column; 0 unless a full round
// restarted (progress restarts with it, outcomes so far stay counted).
func (r *Run) Unaccounted() int {
	return r.Processed - (r.Created + r.Updated + r.Unchanged + r.Reactivated + r.Skipped + r.Invalid + r.Excluded.Total())
}

// Hold says why a run waits for approval.
type Hold struct {
	Deactivations int    `json:"deactivations"`
	ActiveSynced  int    `json:"activeSynced"`
	Threshold     string `json:"threshold"`
	ApprovedBy    string `json:"approvedBy,omitempty"`
}

// RunError is one error recorded on a run, with what an admin can do about it.
type RunError struct {
	Code   string `json:"code"`   // user_not_found, permission_denied, rate_limited, invalid_data, …
	Object string `json:"object"` // the Entra object id, or "" for the run
	Detail string `json:"detail"`
	Hint   string `json:"hint"`
}

// maxErrors and maxErrorText bound the errors kept on a run record: the run, and the marker
// that embeds it, are stored with their errors in one property of at most 64 KiB. ErrorCount
// has all of them, and the change log has each record's.
const (
	maxErrors    = 50
	maxErrorText = 240
)

func (r *Run) addError(e RunError) {
	r.ErrorCount++
	if len(r.Errors) < maxErrors {
		e.Detail = entra.RedactURLs(e.Detail) // a storage or network error may name a URL with its query
		e.Detail, e.Hint, e.Object = clip(e.Detail, maxErrorText), clip(e.Hint, maxErrorText), clip(e.Object, 100)
		r.Errors = append(r.Errors, e)
	}
}

// clip shortens s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// StartOptions say how a run starts.
type StartOptions struct {
	Trigger string // one of the Trigger constants; "" is TriggerManual
	DryRun  bool   // compute and report every change, write none
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
