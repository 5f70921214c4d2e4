// Package bot is the Teams bot's messaging endpoint (the BotMessages function): every inbound
// activity authenticated (its Bot Framework JWT, then its tenant bound to an org with Teams
// connected) before anything is read or written; conversation references captured from
// installs and messages; card actions (survey answers, acknowledgements) recorded on their
// deliveries; and the bot's commands — help, my changes, change, who is — answered from the
// org's own data only.
//
// The endpoint answers Bot Service at once: replies go out as separate Bot Connector calls,
// under the conversation's pace; a query that cannot be answered within the answer budget is
// queued and answered proactively.
package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/botframework"
	"github.com/leapchange/m365/handler/internal/cards"
	"github.com/leapchange/m365/handler/internal/changes"
	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/teamsconn"
)

type (
	validator interface {
		Validate(ctx context.Context, authorization string, a botframework.Activity) error
	}
	tenantOrgs interface {
		Orgs(ctx context.Context, tenant string) ([]tablestore.Org, error)
	}
	teamsConnections interface {
		Get(ctx context.Context, org tablestore.Org) (teamsconn.Record, tablestore.ETag, error)
	}
	conversationStore interface {
		Seen(ctx context.Context, org tablestore.Org, seen conversations.Ref, personal bool, now time.Time) (conversations.Ref, error)
		Gone(ctx context.Context, org tablestore.Org, aadObjectID, state string, now time.Time) error
		Reserve(ctx context.Context, org tablestore.Org, aadObjectID string, now time.Time) (time.Time, error)
	}
	// replier is the Bot Connector as the bot answers through it.
	replier interface {
		SendCard(ctx context.Context, serviceURL, conversationID, summary string, card cards.Card) (string, error)
		UpdateCard(ctx context.Context, serviceURL, conversationID, activityID, summary string, card cards.Card) error
		Trusted(serviceURL string) bool
	}
	directory interface {
		Lookup(ctx context.Context, org tablestore.Org, entraID, email string) (string, error)
		Get(ctx context.Context, org tablestore.Org, id string) (stakeholder.Stakeholder, tablestore.ETag, error)
		SearchNames(ctx context.Context, org tablestore.Org, query string, limit int) ([]stakeholder.Stakeholder, error)
	}
	memberships interface {
		IsMember(ctx context.Context, org tablestore.Org, groupID, stakeholderID string) (bool, error)
	}
	changeQueries interface {
		Get(ctx context.Context, org tablestore.Org, id string) (changes.Change, string, error)
		Impacting(ctx context.Context, org tablestore.Org, stakeholderID string, groupIDs []string) ([]changes.Change, error)
		ImpactedGroups(ctx context.Context, org tablestore.Org) ([]string, error)
		Search(ctx context.Context, org tablestore.Org, query string, limit int) ([]changes.Change, error)
	}
	responder interface {
		Respond(ctx context.Context, org tablestore.Org, batchID string, index int, aadObjectID, response string) (outbound.Batch, outbound.Delivery, error)
	}
	publisher interface {
		Publish(ctx context.Context, m queue.Message) error
	}
)

// Config wires a Bot.
type Config struct {
	Validator     validator
	Orgs          tenantOrgs
	Teams         teamsConnections
	Conversations conversationStore
	Replier       replier
	Directory     directory
	Memberships   memberships
	Changes       changeQueries
	Responses     responder
	Queue         publisher
	// Budget is how long a command may take before its answer goes through the queue instead
	// (default 1.5 s: Teams users expect an answer within 2).
	Budget time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Bot serves BotMessages and the bot's queued jobs.
type Bot struct {
	cfg Config
	log *slog.Logger
}

// New returns a Bot. It does no I/O.
func New(cfg Config) *Bot {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Budget <= 0 {
		cfg.Budget = 1500 * time.Millisecond
	}
	return &Bot{cfg: cfg, log: cfg.Logger}
}

// maxActivity bounds an inbound activity's body (Teams' own messages are far smaller).
const maxActivity = 256 << 10

// ServeHTTP is the BotMessages function.
func (b *Bot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	auth := r.Header.Get("Authorization")
	if strings.TrimSpace(auth) == "" {
		refuse(w, http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxActivity))
	var a botframework.Activity
	if err == nil {
		err = json.Unmarshal(body, &a)
	}
	if err != nil {
		// Not authenticated yet: nothing about the request is echoed.
		refuse(w, http.StatusBadRequest)
		return
	}
	if err := b.cfg.Validator.Validate(ctx, auth, a); err != nil {
		status := http.StatusUnauthorized
		if errkind.Of(err) == errkind.Forbidden {
			status = http.StatusForbidden
		}
		b.log.WarnContext(ctx, "bot activity refused", "status", status, "reason", err.Error(), "type", a.Type)
		refuse(w, status)
		return
	}
	orgs, err := b.orgsOf(ctx, a.TenantID())
	if err != nil {
		b.log.ErrorContext(ctx, "bot: resolving the tenant", "error", err.Error())
		refuse(w, http.StatusServiceUnavailable)
		return
	}
	if len(orgs) == 0 {
		// A tenant that installed the app without connecting Teams in Leap Change: no data,
		// no reply, nothing stored.
		b.log.WarnContext(ctx, "bot activity from a tenant with no Teams connection", "type", a.Type)
		refuse(w, http.StatusForbidden)
		return
	}
	t := turn{Bot: b, a: a, orgs: orgs}
	resp, err := t.handle(ctx)
	if err != nil {
		b.log.ErrorContext(ctx, "bot: handling an activity", "type", a.Type, "error", err.Error())
		if a.Type == botframework.TypeInvoke {
			writeInvoke(w, botframework.InvokeResponse{StatusCode: http.StatusInternalServerError, Type: "application/vnd.microsoft.error",
				Value: map[string]string{"code": "InternalError", "message": "Leap Change could not record that; try again."}})
			return
		}
		// 500 makes Bot Service retry the activity; every handler is idempotent.
		refuse(w, http.StatusInternalServerError)
		return
	}
	if resp != nil {
		writeInvoke(w, *resp)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// refuse answers with a status and no detail: an unauthenticated caller learns nothing.
func refuse(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, http.StatusText(status)+"\n")
}

// writeInvoke answers an invoke: the HTTP status is the response's statusCode, as Teams expects.
func writeInvoke(w http.ResponseWriter, r botframework.InvokeResponse) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(r.StatusCode)
	json.NewEncoder(w).Encode(r)
}

// orgsOf returns the orgs bound to the tenant that have Teams connected for it.
func (b *Bot) orgsOf(ctx context.Context, tenant string) ([]tablestore.Org, error) {
	if tenant == "" {
		return nil, nil
	}
	bound, err := b.cfg.Orgs.Orgs(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var out []tablestore.Org
	for _, org := range bound {
		rec, _, err := b.cfg.Teams.Get(ctx, org)
		if err != nil {
			return nil, err
		}
		if rec.Status == teamsconn.Connected && strings.EqualFold(rec.TenantID, tenant) {
			out = append(out, org)
		}
	}
	return out, nil
}

// turn is one inbound activity being handled.
type turn struct {
	*Bot
	a    botframework.Activity
	orgs []tablestore.Org
}

func (t turn) handle(ctx context.Context) (*botframework.InvokeResponse, error) {
	a := t.a
	switch a.Type {
	case botframework.TypeConversationUpdate:
		for _, m := range a.MembersAdded {
			if m.ID == a.Recipient.ID {
				return nil, t.capture(ctx)
			}
		}
		for _, m := range a.MembersRemoved {
			if m.ID == a.Recipient.ID && t.personal() {
				return nil, t.gone(ctx)
			}
		}
		return nil, nil
	case botframework.TypeInstallationUpdate:
		if strings.HasPrefix(a.Action, "remove") {
			if t.personal() {
				return nil, t.gone(ctx)
			}
			return nil, nil
		}
		return nil, t.capture(ctx)
	case botframework.TypeMessage:
		if err := t.capture(ctx); err != nil {
			return nil, err
		}
		if len(a.Value) > 0 && strings.TrimSpace(a.Text) == "" {
			return nil, t.submit(ctx) // an Action.Submit from a card
		}
		return nil, t.command(ctx)
	case botframework.TypeInvoke:
		if a.Name == "adaptiveCard/action" {
			r := t.execute(ctx)
			return &r, nil
		}
		return &botframework.InvokeResponse{StatusCode: http.StatusOK, Type: "application/vnd.microsoft.activity.message", Value: ""}, nil
	}
	return nil, nil // new activity types appear over time: acknowledged, ignored
}

func (t turn) personal() bool {
	return t.a.Conversation.ConversationType == "personal" || (t.a.Conversation.ConversationType == "" && !t.a.Conversation.IsGroup)
}

// capture stores the sender's conversation reference in every org of the tenant.
func (t turn) capture(ctx context.Context) error {
	if t.a.From.AADObjectID == "" {
		return nil
	}
	seen := conversations.Ref{AADObjectID: t.a.From.AADObjectID, UserID: t.a.From.ID, Name: t.a.From.Name, TenantID: t.a.TenantID(),
		ServiceURL: t.a.ServiceURL, ConversationID: t.a.Conversation.ID}
	for _, org := range t.orgs {
		if _, err := t.cfg.Conversations.Seen(ctx, org, seen, t.personal(), t.cfg.Now().UTC()); err != nil {
			return fmt.Errorf("bot: storing the conversation reference: %w", err)
		}
	}
	return nil
}

// gone marks the sender's reference: they removed the app.
func (t turn) gone(ctx context.Context) error {
	if t.a.From.AADObjectID == "" {
		return nil
	}
	for _, org := range t.orgs {
		if err := t.cfg.Conversations.Gone(ctx, org, t.a.From.AADObjectID, conversations.Uninstalled, t.cfg.Now().UTC()); err != nil {
			return err
		}
	}
	return nil
}

// orgOfUser picks the org a command is answered in: among the tenant's orgs with Teams, the
// one where the asking person is a stakeholder (the usual case is a single org). It returns
// the person's stakeholder id there ("" when they are not one).
func (t turn) orgOfUser(ctx context.Context) (tablestore.Org, string, error) {
	var found []tablestore.Org
	var ids []string
	for _, org := range t.orgs {
		id, err := t.cfg.Directory.Lookup(ctx, org, t.a.From.AADObjectID, "")
		if err != nil && !errors.Is(err, errkind.NotFound) && !errors.Is(err, stakeholder.ErrNotFound) {
			return tablestore.Org{}, "", err
		}
		if id != "" {
			found, ids = append(found, org), append(ids, id)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], ids[0], nil
	case len(found) == 0 && len(t.orgs) == 1:
		return t.orgs[0], "", nil
	}
	return tablestore.Org{}, "", errAmbiguous
}

var errAmbiguous = errors.New("bot: the person is a stakeholder of several orgs on this tenant, or of none of several")
