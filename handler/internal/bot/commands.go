package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"regexp"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/cards"
	"github.com/leapchange/m365/handler/internal/changes"
	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// query is a command to answer, and where the answer goes. It is also the body of a queued
// job (Job "answer") when the answer takes longer than the budget or must wait for the
// conversation's pace.
type query struct {
	Job            string `json:"bot"` // "answer"
	Org            string `json:"org"`
	StakeholderID  string `json:"stakeholderId,omitempty"`
	AADObjectID    string `json:"aadObjectId"`
	Text           string `json:"text"`
	ServiceURL     string `json:"serviceUrl"`
	ConversationID string `json:"conversationId"`
	ActivityID     string `json:"activityId"`
	Attempt        int    `json:"attempt,omitempty"`
	// Paced: the job was queued for a slot of the conversation's pace, reserved already.
	Paced bool `json:"paced,omitempty"`
}

const jobAnswer = "answer"

var (
	mention = regexp.MustCompile(`(?is)<at>.*?</at>`)
	tags    = regexp.MustCompile(`(?s)<[^>]*>`)
)

// normalize turns a Teams message's text into a command: mentions of the bot and markup
// removed, entities decoded, spaces collapsed.
func normalize(text string) string {
	text = mention.ReplaceAllString(text, " ")
	text = tags.ReplaceAllString(text, " ")
	text = html.UnescapeString(text)
	return strings.Join(strings.Fields(text), " ")
}

// command answers a typed message: within the budget when it can, otherwise through the queue.
func (t turn) command(ctx context.Context) error {
	org, sid, err := t.orgOfUser(ctx)
	if errors.Is(err, errAmbiguous) {
		return t.reply(ctx, query{Org: t.orgs[0].String(), AADObjectID: t.a.From.AADObjectID, ServiceURL: t.a.ServiceURL, ConversationID: t.a.Conversation.ID},
			"Leap Change", cards.Notice("Your tenant is connected to more than one Leap Change organisation, and I cannot tell which one you belong to. Ask your Leap Change administrator."))
	}
	if err != nil {
		return err
	}
	q := query{Job: jobAnswer, Org: org.String(), StakeholderID: sid, AADObjectID: t.a.From.AADObjectID, Text: normalize(t.a.Text),
		ServiceURL: t.a.ServiceURL, ConversationID: t.a.Conversation.ID, ActivityID: t.a.ID}
	actx, cancel := context.WithTimeout(ctx, t.cfg.Budget)
	summary, card, err := t.answer(actx, org, q)
	cancel()
	if err != nil && (errors.Is(err, context.DeadlineExceeded) || actx.Err() != nil) && ctx.Err() == nil {
		t.log.InfoContext(ctx, "bot: answer over budget, queued", "org", org.String())
		return t.enqueue(ctx, q, time.Time{})
	}
	if err != nil {
		return err
	}
	return t.reply(ctx, q, summary, card)
}

// HandleJob answers a queued query (the TeamsSender function hands bot jobs here).
func (b *Bot) HandleJob(ctx context.Context, body []byte) error {
	var q query
	if err := json.Unmarshal(body, &q); err != nil || q.Job != jobAnswer {
		return fmt.Errorf("bot: not a bot job: %w", errkind.Invalid)
	}
	org, err := tablestore.NewOrg(q.Org)
	if err != nil {
		return fmt.Errorf("bot: job names no org: %w", errkind.Invalid)
	}
	summary, card, err := b.answer(ctx, org, q)
	if err != nil {
		return err
	}
	return b.reply(ctx, q, summary, card)
}

// IsJob reports whether a TeamsSender message is a bot job (not a delivery).
func IsJob(body []byte) bool {
	var probe struct {
		Job string `json:"bot"`
	}
	return json.Unmarshal(body, &probe) == nil && probe.Job != ""
}

func (b *Bot) enqueue(ctx context.Context, q query, at time.Time) error {
	q.Job = jobAnswer
	body, _ := json.Marshal(q)
	return b.cfg.Queue.Publish(ctx, queue.Message{Queue: queue.OutboundTeams, ID: fmt.Sprintf("bot/%s/%s/%d", q.ConversationID, q.ActivityID, q.Attempt),
		Body: body, ContentType: "application/json", Subject: "bot", NotBefore: at})
}

// reply posts an answer to the asking person's conversation, at the conversation's pace: an
// answer that would go over it is queued for its slot.
func (b *Bot) reply(ctx context.Context, q query, summary string, card cards.Card) error {
	if !b.cfg.Replier.Trusted(q.ServiceURL) {
		b.log.WarnContext(ctx, "bot: not replying to an untrusted service URL")
		return nil
	}
	org, err := tablestore.NewOrg(q.Org)
	if err != nil {
		return err
	}
	now := b.cfg.Now().UTC()
	if q.AADObjectID != "" && !q.Paced {
		at, err := b.cfg.Conversations.Reserve(ctx, org, q.AADObjectID, now)
		if err != nil {
			return err
		}
		if at.After(now.Add(200 * time.Millisecond)) {
			q.Attempt++
			q.Paced = true
			return b.enqueue(ctx, q, at)
		}
	}
	q.Paced = false
	_, err = b.cfg.Replier.SendCard(ctx, q.ServiceURL, q.ConversationID, summary, card)
	var ke *errkind.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ke) && ke.Code == "MessageWritesBlocked":
		return b.cfg.Conversations.Gone(ctx, org, q.AADObjectID, conversations.Blocked, now)
	case errkind.Of(err).Transient() && q.Attempt < 5:
		q.Attempt++
		return b.enqueue(ctx, q, now.Add(max(errkind.RetryAfterOf(err), time.Duration(q.Attempt)*2*time.Second)))
	}
	b.log.ErrorContext(ctx, "bot: reply failed", "error", err.Error())
	return nil // a reply is not worth a retried activity (Bot Service would resend the message)
}

// The answers.

const helpText = "I can tell you about the changes that affect you and the people involved. Try:\n\n" +
	"- **my changes**: the changes that impact you\n" +
	"- **change** *id or words*: one change, by its id or by words of its title\n" +
	"- **who is** *name or email*: a stakeholder's role, department and contacts\n" +
	"- **help**: this message"

func helpCard() cards.Card {
	return cards.New([]cards.Element{cards.Title("Leap Change"), cards.Text(helpText)})
}

// answer computes the reply to q's text, from org's data only.
func (b *Bot) answer(ctx context.Context, org tablestore.Org, q query) (string, cards.Card, error) {
	text := q.Text
	lower := strings.ToLower(text)
	switch {
	case lower == "my changes" || lower == "my change":
		return b.myChanges(ctx, org, q)
	case lower == "change" || lower == "changes":
		return "Leap Change", cards.Notice("Which change? Send **change** followed by its id or words of its title, e.g. *change office move*."), nil
	case strings.HasPrefix(lower, "change "):
		return b.findChange(ctx, org, strings.TrimSpace(text[len("change "):]))
	case lower == "who is" || lower == "whois":
		return "Leap Change", cards.Notice("Who? Send **who is** followed by a name or an email address."), nil
	case strings.HasPrefix(lower, "who is "):
		return b.whoIs(ctx, org, strings.TrimSpace(text[len("who is "):]))
	case strings.HasPrefix(lower, "whois "):
		return b.whoIs(ctx, org, strings.TrimSpace(text[len("whois "):]))
	}
	return "Leap Change help", helpCard(), nil
}

// myGroups is the groups the stakeholder belongs to among those some change impacts: the only
// ones that matter, found without reading the org's memberships.
func (b *Bot) myGroups(ctx context.Context, org tablestore.Org, sid string) ([]string, error) {
	impacted, err := b.cfg.Changes.ImpactedGroups(ctx, org)
	if err != nil {
		return nil, err
	}
	var mine []string
	for _, g := range impacted {
		ok, err := b.cfg.Memberships.IsMember(ctx, org, g, sid)
		if err != nil {
			return nil, err
		}
		if ok {
			mine = append(mine, g)
		}
	}
	return mine, nil
}

func (b *Bot) myChanges(ctx context.Context, org tablestore.Org, q query) (string, cards.Card, error) {
	if q.StakeholderID == "" {
		return "Leap Change", cards.Notice("You are not a stakeholder in Leap Change yet, so no change lists you. Ask your change manager."), nil
	}
	groups, err := b.myGroups(ctx, org, q.StakeholderID)
	if err != nil {
		return "", nil, err
	}
	list, err := b.cfg.Changes.Impacting(ctx, org, q.StakeholderID, groups)
	if err != nil {
		return "", nil, err
	}
	if len(list) == 0 {
		return "Your changes", cards.Notice("No change impacts you at the moment."), nil
	}
	return "Your changes", changeList(fmt.Sprintf("Changes that impact you (%d)", len(list)), list), nil
}

func (b *Bot) findChange(ctx context.Context, org tablestore.Org, words string) (string, cards.Card, error) {
	if changes.ValidID(words) {
		c, _, err := b.cfg.Changes.Get(ctx, org, words)
		if err == nil {
			return c.Title, changeCard(c), nil
		}
		if !errors.Is(err, errkind.NotFound) && !errors.Is(err, changes.ErrNotFound) {
			return "", nil, err
		}
	}
	list, err := b.cfg.Changes.Search(ctx, org, words, 5)
	if err != nil {
		return "", nil, err
	}
	switch len(list) {
	case 0:
		return "No change found", cards.Notice(fmt.Sprintf("No change matches “%s”.", cards.Escape(words))), nil
	case 1:
		return list[0].Title, changeCard(list[0]), nil
	}
	return "Changes", changeList(fmt.Sprintf("Changes matching “%s”", cards.Escape(words)), list), nil
}

func statusName(s changes.Status) string {
	return strings.ReplaceAll(string(s), "_", " ")
}

func dates(c changes.Change) string {
	switch {
	case c.StartDate != "" && c.EndDate != "":
		return c.StartDate + " → " + c.EndDate
	case c.StartDate != "":
		return "from " + c.StartDate
	case c.EndDate != "":
		return "until " + c.EndDate
	}
	return ""
}

func changeCard(c changes.Change) cards.Card {
	body := []cards.Element{cards.Title(cards.Escape(c.Title)),
		cards.Facts("Status", statusName(c.Status), "Dates", dates(c), "Owner", cards.Escape(strings.TrimSpace(c.Owner.Name+" "+c.Owner.Email)), "Id", cards.Escape(c.ID))}
	if c.Description != "" {
		body = append(body, cards.Text(cards.Escape(c.Description)))
	}
	var actions []cards.Element
	if c.URL != "" {
		actions = append(actions, cards.OpenURL("Open in Leap Change", c.URL))
	}
	return cards.New(body, actions...)
}

func changeList(title string, list []changes.Change) cards.Card {
	body := []cards.Element{cards.Title(title)}
	for _, c := range list[:min(len(list), 10)] {
		line := "**" + cards.Escape(c.Title) + "**"
		if c.URL != "" {
			line = "**[" + cards.Escape(c.Title) + "](" + c.URL + ")**"
		}
		body = append(body, cards.Text(line), cards.Subtle(strings.Join(nonEmpty(statusName(c.Status), dates(c), "id "+cards.Escape(c.ID)), " · ")))
	}
	if len(list) > 10 {
		body = append(body, cards.Subtle(fmt.Sprintf("…and %d more in Leap Change.", len(list)-10)))
	}
	return cards.New(body)
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// whoIs looks a stakeholder up in org, and only there.
func (b *Bot) whoIs(ctx context.Context, org tablestore.Org, who string) (string, cards.Card, error) {
	var found []stakeholder.Stakeholder
	if strings.Contains(who, "@") {
		id, err := b.cfg.Directory.Lookup(ctx, org, "", who)
		if err != nil && !errors.Is(err, errkind.NotFound) && !errors.Is(err, stakeholder.ErrNotFound) {
			return "", nil, err
		}
		if id != "" {
			st, _, err := b.cfg.Directory.Get(ctx, org, id)
			if err == nil {
				found = append(found, st)
			} else if !errors.Is(err, errkind.NotFound) && !errors.Is(err, stakeholder.ErrNotFound) {
				return "", nil, err
			}
		}
	} else {
		var err error
		if found, err = b.cfg.Directory.SearchNames(ctx, org, who, 5); err != nil {
			return "", nil, err
		}
	}
	switch len(found) {
	case 0:
		return "Not found", cards.Notice(fmt.Sprintf("No stakeholder matches “%s”.", cards.Escape(who))), nil
	case 1:
		st, _, err := b.cfg.Directory.Get(ctx, org, found[0].ID)
		if err != nil {
			st = found[0]
		}
		return displayName(st), b.personCard(ctx, org, st), nil
	}
	body := []cards.Element{cards.Title(fmt.Sprintf("Stakeholders matching “%s”", cards.Escape(who)))}
	for _, st := range found {
		body = append(body, cards.Text("**"+cards.Escape(displayName(st))+"**"),
			cards.Subtle(cards.Escape(strings.Join(nonEmpty(st.Role, st.Department, st.Location, st.Email), " · "))))
	}
	return "Stakeholders", cards.New(body), nil
}

func displayName(st stakeholder.Stakeholder) string {
	return strings.TrimSpace(st.FirstName + " " + st.LastName)
}

func (b *Bot) personCard(ctx context.Context, org tablestore.Org, st stakeholder.Stakeholder) cards.Card {
	manager := ""
	if st.ManagerID != "" {
		if id, err := b.cfg.Directory.Lookup(ctx, org, st.ManagerID, ""); err == nil && id != "" {
			if m, _, err := b.cfg.Directory.Get(ctx, org, id); err == nil {
				manager = displayName(m)
			}
		}
	}
	body := []cards.Element{cards.Title(cards.Escape(displayName(st))),
		cards.Facts("Role", cards.Escape(st.Role), "Department", cards.Escape(st.Department), "Location", cards.Escape(st.Location),
			"Email", cards.Escape(st.Email), "Phone", cards.Escape(st.Phone), "Manager", cards.Escape(manager))}
	if !st.Active {
		body = append(body, cards.Subtle("No longer active in the directory."))
	}
	return cards.New(body)
}
