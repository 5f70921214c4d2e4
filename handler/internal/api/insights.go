package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/insights"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// insightStore lists captured channel insights (insights.Store).
type insightStore interface {
	List(ctx context.Context, org tablestore.Org, f insights.Filter) ([]insights.Insight, string, error)
}

// Query limits of GET /insights.
const (
	maxInsightKeyword = 100 // runes, as keywords.Compile allows
	maxInsightText    = 200 // runes
	maxChannelParam   = 2 * insights.MaxIDBytes
)

// insightView is an insight as the API shows it.
type insightView struct {
	Org              string    `json:"org"`
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
	MatchesNow       bool      `json:"matchesNow"`
	Edited           bool      `json:"edited"`
	EditedAt         time.Time `json:"editedAt,omitzero"`
	Deleted          bool      `json:"deleted"`
	DeletedAt        time.Time `json:"deletedAt,omitzero"`
	CapturedAt       time.Time `json:"capturedAt"`
}

func insightViewOf(i insights.Insight) insightView {
	return insightView{Org: i.Org, TeamID: i.TeamID, ChannelID: i.ChannelID, MessageID: i.MessageID, ReplyToID: i.ReplyToID,
		DeepLink: i.DeepLink, AuthorID: i.AuthorID, AuthorName: i.AuthorName, At: i.At, Excerpt: i.Excerpt,
		Keywords: i.Keywords, CapturedKeywords: i.CapturedKeywords, MatchesNow: i.MatchesNow(), Edited: i.Edited, EditedAt: i.EditedAt,
		Deleted: i.Deleted, DeletedAt: i.DeletedAt, CapturedAt: i.CapturedAt}
}

// listInsights is GET /insights: newest first, filtered by channel ("<teamId>|<channelId>"),
// keyword, time range (from inclusive, to exclusive, RFC 3339) and text; paged by after/limit.
func (s *Server) listInsights(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	q := r.URL.Query()
	var bad []fieldProblem
	limit, err := intParam(r, "limit", insights.DefaultLimit, 1, insights.MaxLimit)
	if err != nil {
		bad = append(bad, fieldProblem{"limit", "must be an integer from 1 to 200"})
	}
	f := insights.Filter{Limit: limit, After: q.Get("after")}
	if c := q.Get("channel"); c != "" {
		team, channel, ok := strings.Cut(c, "|")
		if !ok || team == "" || channel == "" || strings.Contains(channel, "|") || len(c) > maxChannelParam || !utf8.ValidString(c) {
			bad = append(bad, fieldProblem{"channel", "must be <teamId>|<channelId>, the ids of GET /teams/channels"})
		}
		f.TeamID, f.ChannelID = team, channel
	}
	if k := q.Get("keyword"); k != "" {
		if strings.TrimSpace(k) == "" || utf8.RuneCountInString(k) > maxInsightKeyword || !utf8.ValidString(k) {
			bad = append(bad, fieldProblem{"keyword", "must be a keyword of 1 to 100 characters"})
		}
		f.Keyword = strings.TrimSpace(k)
	}
	if t := q.Get("text"); t != "" {
		if utf8.RuneCountInString(t) > maxInsightText || !utf8.ValidString(t) {
			bad = append(bad, fieldProblem{"text", "must be at most 200 characters"})
		}
		f.Text = strings.TrimSpace(t)
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			bad = append(bad, fieldProblem{p.name, "must be an RFC 3339 date-time, e.g. 2026-03-01T09:00:00Z"})
			continue
		}
		*p.to = t
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		bad = append(bad, fieldProblem{"to", "must be after from"})
	}
	if err := fieldsError(bad); err != nil {
		return err
	}
	list, next, err := s.d.Insights.List(r.Context(), org, f)
	if errors.Is(err, insights.ErrBadCursor) {
		return invalid("after", "not a cursor of this listing: pass the next of the previous page, with the same channel")
	}
	if err != nil {
		return err
	}
	out := make([]insightView, len(list))
	for i, in := range list {
		out[i] = insightViewOf(in)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"insights": out, "next": next})
}
