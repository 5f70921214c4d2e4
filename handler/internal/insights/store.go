// Package insights keeps the channel messages that matched an org's monitored keywords: captured
// exactly once per message, re-evaluated when the message is edited, marked when it is deleted,
// and listed newest first with filters for the web app (GET /insights).
//
// # Rows
//
// One table, "insights", partitioned by org (tablestore: nothing crosses orgs, and erasing an
// org's partition erases its insights). A message is named by h, a hash of (team id, channel id,
// message id), so every key is short and safe whatever Graph's ids hold. An insight is three
// rows holding the same record, always written together in one entity group transaction:
//
//   - "m-<h>": the message row, the one keyed by the message alone. Capture inserts it, so a
//     second Capture of the same message (a duplicate notification, a redelivered queue message,
//     two workers at once) fails the whole transaction on this row and writes nothing.
//   - "t-<inv>|<h>": the time row; inv is the message time inverted (MaxInt64 minus Unix
//     nanoseconds, 19 digits), so key order is newest first and a time range is a key range.
//   - "c-<ch>|<inv>|<h>": the channel row; ch hashes (team id, channel id), so one channel's
//     insights, newest first, are a key range too.
//
// Edited and Deleted read the message row and write all three under its ETag (retrying when
// another writer got in between), so the rows never disagree. A Deleted for a message that was
// never captured leaves a tombstone message row (no time or channel row): a Capture arriving
// after it (out-of-order or redelivered notifications) is then a no-op rather than an insight
// for a message that is gone. Get ignores tombstones.
//
// # Listing
//
// List reads the channel rows when the filter names a channel, else the time rows, between the
// keys of the filter's time range. Keyword and text are checked on the rows as they stream; one
// List reads at most MaxScan rows, so it never reads a whole org: a page can then hold fewer
// than Limit insights (even none) with a next cursor to continue from. Callers follow next until
// it is empty.
package insights

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/fold"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Table is the insights table.
const Table = "insights"

// Limits.
const (
	// DefaultLimit and MaxLimit bound the insights one List returns.
	DefaultLimit = 50
	MaxLimit     = 200
	// MaxScan is the most rows one List reads: filters that are not key ranges (keyword,
	// text) are checked on at most this many rows before List answers with a cursor.
	MaxScan = 2000
	// MaxExcerpt is the most characters (runes) of an excerpt kept; longer ones are cut,
	// ending in "…".
	MaxExcerpt = 1000
	// MaxKeywords is the most matched keywords kept per insight (the first ones, in the
	// order given).
	MaxKeywords = 100
	// MaxIDBytes bounds the team, channel, message and reply-to ids.
	MaxIDBytes = 1000
	// maxAttempts bounds the re-reads of Edited and Deleted when another writer got in between.
	maxAttempts = 8
)

// Errors of the store.
var (
	// ErrNotFound: Edited named a message that was never captured (capture it instead).
	ErrNotFound = fmt.Errorf("insights: no such insight: %w", errkind.NotFound)
	// ErrInvalid: an insight or filter the store cannot keep or run (empty ids, no time, a
	// channel filter with only one of team and channel).
	ErrInvalid = fmt.Errorf("insights: invalid: %w", errkind.Invalid)
	// ErrBadCursor: List's After is not a cursor List gave for this kind of filter.
	ErrBadCursor = fmt.Errorf("insights: not a cursor of this listing: %w", errkind.Invalid)
)

// Insight is a captured channel message.
type Insight struct {
	Org                          string // the org (set by the store)
	TeamID, ChannelID, MessageID string
	ReplyToID                    string // for a reply: the id of the message it answers
	DeepLink                     string // the message's webUrl in Teams
	AuthorID, AuthorName         string
	At                           time.Time // when the message was posted (its createdDateTime)
	Excerpt                      string    // plain text, at most MaxExcerpt runes
	Keywords                     []string  // the keywords the message matches now (after its last edit); never nil
	CapturedKeywords             []string  // the keywords it matched when captured; never nil
	Edited                       bool
	EditedAt                     time.Time // the last edit applied
	Deleted                      bool
	DeletedAt                    time.Time
	CapturedAt                   time.Time
}

// MatchesNow reports whether the message, as last edited, still matches a keyword. An edit that
// removes every keyword keeps the insight (it did match, and may have been acted on) with no
// Keywords; CapturedKeywords still says what it matched.
func (i Insight) MatchesNow() bool { return len(i.Keywords) > 0 }

// Filter selects the insights List returns. Zero fields do not filter.
type Filter struct {
	// TeamID and ChannelID: only this channel's insights (set both or neither).
	TeamID, ChannelID string
	// Keyword: only insights that matched this keyword, now or when captured (compared whole,
	// ignoring case and accents).
	Keyword string
	// From and To: only messages posted at or after From and before To.
	From, To time.Time
	// Text: only insights whose excerpt contains it, ignoring case and accents.
	Text string
	// After is the next cursor of the previous page.
	After string
	// Limit: 1 to MaxLimit insights; 0 means DefaultLimit; more is MaxLimit.
	Limit int
}

// record is the stored form of an insight (all three rows).
type record struct {
	TeamID           string    `json:"teamId"`
	ChannelID        string    `json:"channelId"`
	MessageID        string    `json:"messageId"`
	ReplyToID        string    `json:"replyToId,omitempty"`
	DeepLink         string    `json:"deepLink,omitempty"`
	AuthorID         string    `json:"authorId,omitempty"`
	AuthorName       string    `json:"authorName,omitempty"`
	At               time.Time `json:"at"`
	Excerpt          string    `json:"excerpt"`
	Keywords         []string  `json:"keywords"`
	CapturedKeywords []string  `json:"capturedKeywords"`
	Edited           bool      `json:"edited"`
	EditedAt         time.Time `json:"editedAt"`
	Deleted          bool      `json:"deleted"`
	DeletedAt        time.Time `json:"deletedAt"`
	CapturedAt       time.Time `json:"capturedAt"`
	// Tombstone: a deletion seen before any capture; no other rows.
	Tombstone bool `json:"tombstone,omitempty"`
}

func (r record) insight(org tablestore.Org) Insight {
	return Insight{Org: org.String(), TeamID: r.TeamID, ChannelID: r.ChannelID, MessageID: r.MessageID, ReplyToID: r.ReplyToID,
		DeepLink: r.DeepLink, AuthorID: r.AuthorID, AuthorName: r.AuthorName, At: r.At, Excerpt: r.Excerpt,
		Keywords: orEmpty(r.Keywords), CapturedKeywords: orEmpty(r.CapturedKeywords), Edited: r.Edited, EditedAt: r.EditedAt,
		Deleted: r.Deleted, DeletedAt: r.DeletedAt, CapturedAt: r.CapturedAt}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// Store keeps insights. It is safe for concurrent use.
type Store struct {
	t       *tablestore.Table
	now     func() time.Time
	maxScan int // MaxScan; tests lower it
}

// NewStore returns the store over s.
func NewStore(s *tablestore.Store) *Store {
	return &Store{t: s.Table(Table), now: time.Now, maxScan: MaxScan}
}

// WithClock returns a copy of the store that stamps CapturedAt from now (tests).
func (s *Store) WithClock(now func() time.Time) *Store {
	return &Store{t: s.t, now: now, maxScan: s.maxScan}
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func hash(n int, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(strconv.Itoa(len(p))))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	return strings.ToLower(b32.EncodeToString(h.Sum(nil)[:n]))
}

// msgHash names a message (160 bits); chanHash a channel (120 bits).
func msgHash(team, channel, message string) string { return hash(20, team, channel, message) }
func chanHash(team, channel string) string         { return hash(15, team, channel) }

// inv is t as a 19-digit key part that sorts newest first.
func inv(t time.Time) string { return fmt.Sprintf("%019d", math.MaxInt64-t.UnixNano()) }

func messageKey(h string) string            { return "m-" + h }
func timeKey(at time.Time, h string) string { return "t-" + inv(at) + "|" + h }
func channelPrefix(ch string) string        { return "c-" + ch + "|" }
func channelKey(ch string, at time.Time, h string) string {
	return channelPrefix(ch) + inv(at) + "|" + h
}

// keys are the time and channel rows of a record.
func (r record) keys() (timeRow, channelRow string) {
	h := msgHash(r.TeamID, r.ChannelID, r.MessageID)
	return timeKey(r.At, h), channelKey(chanHash(r.TeamID, r.ChannelID), r.At, h)
}

// stamp is t as stored: UTC, whole microseconds (Table Storage keeps 100 ns; keys are derived
// from the stored time, so it must survive the round trip).
func stamp(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

var (
	minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

func checkIDs(team, channel, message string) error {
	for _, f := range []struct{ name, v string }{{"team id", team}, {"channel id", channel}, {"message id", message}} {
		if f.v == "" || len(f.v) > MaxIDBytes || !utf8.ValidString(f.v) {
			return fmt.Errorf("%w: %s must be 1 to %d bytes of UTF-8", ErrInvalid, f.name, MaxIDBytes)
		}
	}
	return nil
}

// excerpt cuts text to MaxExcerpt runes.
func excerpt(text string) string {
	text = strings.ToValidUTF8(text, "\uFFFD")
	if utf8.RuneCountInString(text) <= MaxExcerpt {
		return text
	}
	return string([]rune(text)[:MaxExcerpt-1]) + "…"
}

func keywords(ks []string) []string {
	out := make([]string, 0, min(len(ks), MaxKeywords))
	for _, k := range ks {
		if len(out) == MaxKeywords {
			break
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// Capture stores in as org's insight for its message, once: it reports created=false, and
// writes nothing, when the message was captured already (or deleted before it was captured,
// see the package doc), however many times and however concurrently it is called. in.Org is
// ignored; CapturedAt is set by the store; Edited and Deleted are taken as given (a message
// first seen edited). TeamID, ChannelID, MessageID and At are required (ErrInvalid).
func (s *Store) Capture(ctx context.Context, org tablestore.Org, in Insight) (created bool, err error) {
	if err := checkIDs(in.TeamID, in.ChannelID, in.MessageID); err != nil {
		return false, err
	}
	if len(in.ReplyToID) > MaxIDBytes {
		return false, fmt.Errorf("%w: reply-to id over %d bytes", ErrInvalid, MaxIDBytes)
	}
	at := stamp(in.At)
	if at.Before(minTime) || !at.Before(maxTime) {
		return false, fmt.Errorf("%w: message time %v is not between %d and %d", ErrInvalid, in.At, minTime.Year(), maxTime.Year())
	}
	kws := keywords(in.Keywords)
	r := record{TeamID: in.TeamID, ChannelID: in.ChannelID, MessageID: in.MessageID, ReplyToID: in.ReplyToID,
		DeepLink: in.DeepLink, AuthorID: in.AuthorID, AuthorName: in.AuthorName, At: at, Excerpt: excerpt(in.Excerpt),
		Keywords: kws, CapturedKeywords: slices.Clone(kws), Edited: in.Edited, EditedAt: stamp(in.EditedAt),
		Deleted: in.Deleted, DeletedAt: stamp(in.DeletedAt), CapturedAt: stamp(s.now())}
	tk, ck := r.keys()
	err = s.t.Batch(ctx, org, []tablestore.Op{
		tablestore.InsertOp(messageKey(msgHash(r.TeamID, r.ChannelID, r.MessageID)), r),
		// Only the message row can conflict: the others are written over (an erasure cut
		// short may have left one behind).
		tablestore.UpsertOp(tk, r, tablestore.Replace),
		tablestore.UpsertOp(ck, r, tablestore.Replace),
	})
	if errors.Is(err, tablestore.ErrConflict) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// Get returns org's insight for the message, and false when there is none.
func (s *Store) Get(ctx context.Context, org tablestore.Org, teamID, channelID, messageID string) (Insight, bool, error) {
	if checkIDs(teamID, channelID, messageID) != nil {
		return Insight{}, false, nil
	}
	r, _, err := tablestore.Get[record](ctx, s.t, org, messageKey(msgHash(teamID, channelID, messageID)))
	if errors.Is(err, tablestore.ErrNotFound) || err == nil && r.Tombstone {
		return Insight{}, false, nil
	}
	if err != nil {
		return Insight{}, false, err
	}
	return r.insight(org), true, nil
}

// Edited applies an edit of the message made at `at`: the keywords it matches now (possibly
// none: the insight is kept, see MatchesNow) and its new excerpt; Edited becomes true and
// EditedAt at. An edit not later than the one applied already is ignored (a redelivery or an
// older edit arriving late), so applying edits in any order, any number of times, leaves the
// latest. An edit later than a deletion restores the message (Teams lets its author undo a
// delete). A message never captured is ErrNotFound: capture it instead (a message deleted
// before it was captured is ErrNotFound too, and so is its Capture: nothing is kept of it).
func (s *Store) Edited(ctx context.Context, org tablestore.Org, teamID, channelID, messageID string, kws []string, text string, at time.Time) error {
	at = stamp(at)
	tomb := false
	err := s.modify(ctx, org, teamID, channelID, messageID, func(r *record) bool {
		if r.Tombstone {
			tomb = true
			return false
		}
		if r.Edited && !at.After(r.EditedAt) {
			return false
		}
		if r.Deleted && !at.After(r.DeletedAt) {
			return false // the deletion came after this edit
		}
		r.Keywords, r.Excerpt, r.Edited, r.EditedAt = keywords(kws), excerpt(text), true, at
		r.Deleted, r.DeletedAt = false, time.Time{}
		return true
	})
	if err == nil && tomb {
		return ErrNotFound
	}
	return err
}

// Deleted marks the message deleted at `at` (Deleted, DeletedAt); its excerpt and keywords are
// kept. Marking it again keeps the first deletion time. A message never captured gets a
// tombstone (see the package doc), so a Capture that arrives after its deletion stores nothing.
func (s *Store) Deleted(ctx context.Context, org tablestore.Org, teamID, channelID, messageID string, at time.Time) error {
	at = stamp(at)
	mark := func(r *record) bool {
		if r.Deleted || r.Tombstone {
			return false
		}
		if r.Edited && at.Before(r.EditedAt) {
			return false // restored (undeleted and edited) after this deletion
		}
		r.Deleted, r.DeletedAt = true, at
		return true
	}
	err := s.modify(ctx, org, teamID, channelID, messageID, mark)
	for attempt := 1; errors.Is(err, ErrNotFound) && attempt < maxAttempts; attempt++ {
		tomb := record{TeamID: teamID, ChannelID: channelID, MessageID: messageID, Deleted: true, DeletedAt: at, Tombstone: true}
		if _, err = s.t.Insert(ctx, org, messageKey(msgHash(teamID, channelID, messageID)), tomb); !errors.Is(err, tablestore.ErrConflict) {
			return err
		}
		// Captured (or tombstoned) meanwhile: mark that.
		err = s.modify(ctx, org, teamID, channelID, messageID, mark)
	}
	return err
}

// modify reads the message's record, lets change edit it (false: nothing to write), and writes
// its three rows under the message row's ETag, reading again when another writer got in between.
func (s *Store) modify(ctx context.Context, org tablestore.Org, teamID, channelID, messageID string, change func(*record) bool) error {
	if err := checkIDs(teamID, channelID, messageID); err != nil {
		return err
	}
	mk := messageKey(msgHash(teamID, channelID, messageID))
	for attempt := 1; ; attempt++ {
		r, tag, err := tablestore.Get[record](ctx, s.t, org, mk)
		if errors.Is(err, tablestore.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if !change(&r) {
			return nil
		}
		ops := []tablestore.Op{tablestore.UpdateOp(mk, r, tag, tablestore.Replace)}
		if !r.Tombstone {
			tk, ck := r.keys()
			ops = append(ops, tablestore.UpsertOp(tk, r, tablestore.Replace), tablestore.UpsertOp(ck, r, tablestore.Replace))
		}
		err = s.t.Batch(ctx, org, ops)
		if (errors.Is(err, tablestore.ErrConflict) || errors.Is(err, tablestore.ErrNotFound)) && attempt < maxAttempts {
			continue // changed or erased since read: read again
		}
		return err
	}
}

// List returns a page of org's insights matching f, newest first (by message time, then by an
// arbitrary but fixed order), and the cursor of the next page ("" at the end). See the package
// doc for what one call reads: a page may be short, or empty, while next is not "".
// A bad f.After is ErrBadCursor; a channel filter with only one id is ErrInvalid.
func (s *Store) List(ctx context.Context, org tablestore.Org, f Filter) ([]Insight, string, error) {
	if (f.TeamID == "") != (f.ChannelID == "") {
		return nil, "", fmt.Errorf("%w: filter by team and channel together", ErrInvalid)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	prefix := "t-"
	if f.TeamID != "" {
		prefix = channelPrefix(chanHash(f.TeamID, f.ChannelID))
	}
	q := tablestore.QueryOptions{KeyPrefix: prefix}
	// Newest first: a later bound in time is an earlier key.
	if !f.To.IsZero() {
		q.From = prefix + invBound(f.To) // time < To
	}
	if !f.From.IsZero() {
		q.To = prefix + invBound(f.From) // time >= From
	}
	if f.After != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.After)
		after := string(raw)
		if err != nil || !strings.HasPrefix(after, prefix) || tablestore.CheckKey(after) != nil {
			return nil, "", ErrBadCursor
		}
		// Keys of one index all have the same length: every key after this one is above it
		// plus anything.
		if next := after + " "; next > q.From {
			q.From = next
		}
	}
	if q.To != "" && q.From >= q.To {
		return []Insight{}, "", nil
	}

	keyword := ""
	if f.Keyword != "" {
		keyword = fold.String(f.Keyword)
	}
	text := ""
	if f.Text != "" {
		text = fold.String(f.Text)
	}
	filtered := keyword != "" || text != ""
	q.PageSize = limit + 1
	if filtered {
		q.PageSize = min(s.maxScan, tablestore.MaxPageSize)
	}

	out := []Insight{}
	var last, next string
	scanned := 0
	for row, err := range tablestore.Query[record](ctx, s.t, org, q) {
		if err != nil {
			return nil, "", err
		}
		if len(out) == limit {
			// A further row: the next page starts after the last one returned.
			next = last
			break
		}
		scanned++
		if (keyword == "" || hasKeyword(row.Value, keyword)) && (text == "" || strings.Contains(fold.String(row.Value.Excerpt), text)) {
			out = append(out, row.Value.insight(org))
			last = row.Key
		}
		if scanned == s.maxScan {
			// Read enough for one request: the next page starts after this row.
			next = row.Key
			break
		}
	}
	if next != "" {
		next = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	return out, next, nil
}

// invBound is inv(t)+1: a key part k sorts below it exactly when its time is at or after t.
func invBound(t time.Time) string {
	switch {
	case t.Before(minTime):
		t = minTime
	case t.After(maxTime):
		t = maxTime
	}
	return fmt.Sprintf("%019d", math.MaxInt64-t.UnixNano()+1)
}

func hasKeyword(r record, folded string) bool {
	for _, ks := range [][]string{r.Keywords, r.CapturedKeywords} {
		for _, k := range ks {
			if fold.String(k) == folded {
				return true
			}
		}
	}
	return false
}
