// Package changes holds the change summaries the Leap Change web app publishes (PUT
// /changes/{changeId}) and the Teams bot answers from: "my changes" (Impacting) and
// "change <id or words>" (Search).
//
// # Storage
//
// Table "changes", one partition per org. A change is one row (key "c-"+id) and its index rows,
// all written in one entity group transaction with it:
//
//   - "s-"+stakeholderID+"|"+id and "g-"+groupID+"|"+id for each impacted stakeholder and group,
//     read by Impacting with one prefix query per stakeholder or group;
//   - "w-"+word+"|"+id for each indexed word (case and accents folded, stop words dropped: the
//     title's words first, then the description's, at most MaxIndexWords), read by Search with one
//     prefix query per query word.
//
// No query reads the org's other changes. Every index row carries the version of the change
// that wrote it; readers fetch the change and use the row only if the versions agree, so a row a
// later write left behind (see Put) is never an answer.
//
// A transaction holds at most 100 operations: the change row plus its index rows must fit, hence
// MaxImpactedGroups + MaxImpactedStakeholders + MaxIndexWords = 99.
package changes

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/fielderr"
)

// Status is where a change stands.
type Status string

// The statuses, in the order the bot ranks them (active ones first).
const (
	InProgress Status = "in_progress"
	Planned    Status = "planned"
	OnHold     Status = "on_hold"
	Completed  Status = "completed"
	Cancelled  Status = "cancelled"
)

// Statuses lists every valid status.
var Statuses = []Status{Planned, InProgress, OnHold, Completed, Cancelled}

// Active reports whether the change still matters to the people it impacts: not completed or
// cancelled.
func (s Status) Active() bool { return s == Planned || s == InProgress || s == OnHold }

// rank orders statuses for the bot: in progress, planned, on hold, completed, cancelled.
func (s Status) rank() int {
	switch s {
	case InProgress:
		return 0
	case Planned:
		return 1
	case OnHold:
		return 2
	case Completed:
		return 3
	}
	return 4
}

// Limits of a change.
const (
	MaxIDLen          = 64
	MaxTitle          = 200  // characters
	MaxDescription    = 4000 // characters
	MaxOwnerName      = 200
	MaxURL            = 2048
	MaxImpactedGroups = 20
	// MaxImpactedStakeholders is the direct impact; impact through groups has no such limit.
	MaxImpactedStakeholders = 50
	// MaxIndexWords is what is left of a transaction's 100 operations for the word index.
	MaxIndexWords = 100 - 1 - MaxImpactedGroups - MaxImpactedStakeholders
)

// Owner is who owns the change in Leap Change.
type Owner struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
}

// Change is a change summary.
type Change struct {
	// ID is the web app's id: 1 to 64 ASCII letters, digits, '.', '_' and '-', with at least
	// one letter or digit. It is case-sensitive.
	ID     string `json:"id"`
	Title  string `json:"title"`
	Status Status `json:"status"`
	// Description is plain text (never interpreted as HTML or Markdown), at most 4000 characters.
	Description            string   `json:"description"`
	ImpactedGroupIDs       []string `json:"impactedGroupIds"`
	ImpactedStakeholderIDs []string `json:"impactedStakeholderIds"`
	Owner                  Owner    `json:"owner,omitzero"`
	// StartDate and EndDate are calendar dates, YYYY-MM-DD; EndDate is not before StartDate.
	StartDate string `json:"startDate,omitempty"`
	EndDate   string `json:"endDate,omitempty"`
	// URL is the change's page in the web app: an absolute https URL.
	URL string `json:"url,omitempty"`
	// UpdatedAt is set by Put.
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidID reports whether id has the shape of a change, stakeholder or group id: 1 to 64 ASCII
// letters, digits, '.', '_' and '-', not only dots.
func ValidID(id string) bool {
	return idRE.MatchString(id) && strings.Trim(id, ".") != ""
}

// Normalize trims the text fields, drops repeated ids (keeping the first), turns CRLF into LF
// and checks every field, returning a fielderr.List naming all problems. UpdatedAt is left as is.
func (c *Change) Normalize() error {
	var bad fielderr.List
	if !ValidID(c.ID) {
		bad.Add("id", fmt.Sprintf("1 to %d letters, digits, '.', '_' or '-'", MaxIDLen))
	}
	c.Title = strings.TrimSpace(c.Title)
	switch n := utf8.RuneCountInString(c.Title); {
	case c.Title == "":
		bad.Add("title", "required")
	case n > MaxTitle:
		bad.Add("title", fmt.Sprintf("at most %d characters, got %d", MaxTitle, n))
	case hasControl(c.Title, false):
		bad.Add("title", "one line of text without control characters")
	}
	if !slices.Contains(Statuses, c.Status) {
		bad.Add("status", "one of planned, in_progress, on_hold, completed, cancelled")
	}
	c.Description = strings.TrimSpace(strings.ReplaceAll(c.Description, "\r\n", "\n"))
	switch n := utf8.RuneCountInString(c.Description); {
	case n > MaxDescription:
		bad.Add("description", fmt.Sprintf("at most %d characters, got %d", MaxDescription, n))
	case hasControl(c.Description, true):
		bad.Add("description", "plain text: no control characters but line breaks and tabs")
	}
	c.ImpactedGroupIDs = ids(&bad, "impactedGroupIds", c.ImpactedGroupIDs, MaxImpactedGroups, "group")
	c.ImpactedStakeholderIDs = ids(&bad, "impactedStakeholderIds", c.ImpactedStakeholderIDs, MaxImpactedStakeholders, "stakeholder")
	c.Owner.Name, c.Owner.Email = strings.TrimSpace(c.Owner.Name), strings.TrimSpace(c.Owner.Email)
	switch n := utf8.RuneCountInString(c.Owner.Name); {
	case n > MaxOwnerName:
		bad.Add("owner.name", fmt.Sprintf("at most %d characters", MaxOwnerName))
	case hasControl(c.Owner.Name, false):
		bad.Add("owner.name", "one line of text without control characters")
	}
	if e := c.Owner.Email; e != "" {
		if a, err := mail.ParseAddress(e); err != nil || a.Address != e || len(e) > 254 {
			bad.Add("owner.email", "not an email address")
		}
	}
	start, okStart := date(&bad, "startDate", c.StartDate)
	end, okEnd := date(&bad, "endDate", c.EndDate)
	if okStart && okEnd && c.StartDate != "" && c.EndDate != "" && end.Before(start) {
		bad.Add("endDate", "before startDate")
	}
	c.URL = strings.TrimSpace(c.URL)
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || len(c.URL) > MaxURL || hasControl(c.URL, false) {
			bad.Add("url", fmt.Sprintf("an absolute https URL of at most %d bytes, without user info", MaxURL))
		}
	}
	return bad.Err()
}

// ids checks a list of ids, dropping repeats; nil becomes empty.
func ids(bad *fielderr.List, field string, in []string, max int, what string) []string {
	out := make([]string, 0, len(in))
	for i, id := range in {
		if !ValidID(id) {
			bad.Add(fmt.Sprintf("%s[%d]", field, i), "not a "+what+" id")
			continue
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	if len(out) > max {
		bad.Add(field, fmt.Sprintf("at most %d distinct ids, got %d", max, len(out)))
	}
	return out
}

// date checks an optional YYYY-MM-DD date.
func date(bad *fielderr.List, field, s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		bad.Add(field, "a date written YYYY-MM-DD")
		return t, false
	}
	return t, true
}

// hasControl reports control characters (and, unless multiline, line breaks and tabs).
func hasControl(s string, multiline bool) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		if multiline && (r == '\n' || r == '\t') {
			return false
		}
		return unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
	})
}
