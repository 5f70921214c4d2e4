package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/leapchange/m365/handler/internal/cards"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/mailsettings"
	"github.com/leapchange/m365/handler/internal/outmail"
	"github.com/leapchange/m365/handler/internal/pacing"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/teamsconn"
)

// publisher is the slice of the queue the pipeline uses.
type publisher interface {
	Publish(ctx context.Context, m queue.Message) error
	PublishBatch(ctx context.Context, msgs []queue.Message) error
	Schedule(ctx context.Context, m queue.Message) (int64, error)
	CancelScheduled(ctx context.Context, q string, seqs []int64) error
}

// directory reads the stakeholders and groups recipients are expanded from.
type directory interface {
	GetMany(ctx context.Context, org tablestore.Org, ids []string) (map[string]stakeholder.Versioned, error)
	List(ctx context.Context, org tablestore.Org, o stakeholder.ListOptions) ([]stakeholder.Stakeholder, string, error)
}

type groups interface {
	Get(ctx context.Context, org tablestore.Org, id string) (stakeholder.Group, tablestore.ETag, error)
	MemberIDs(ctx context.Context, org tablestore.Org, groupID string) ([]stakeholder.Membership, error)
}

type connections interface {
	Get(ctx context.Context, org tablestore.Org) (connection.Record, tablestore.ETag, error)
	NeedsReauthorization(ctx context.Context, org tablestore.Org, reason string, now time.Time) error
}

type mailSettings interface {
	Get(ctx context.Context, org tablestore.Org) (mailsettings.Settings, tablestore.ETag, error)
}

type pacer interface {
	Reserve(ctx context.Context, tenant string, mailboxes []string, recipients []int, notBefore, horizon time.Time) ([]pacing.Slot, error)
	Limits() pacing.Limits
}

// mailer is the Graph client's mail half.
type mailer interface {
	SendMail(ctx context.Context, tenantID string, m outmail.Message) error
	FindSent(ctx context.Context, tenantID, mailbox, internetMessageID string) (bool, error)
}

// Teams delivery's ports.
type (
	teamsConnections interface {
		Get(ctx context.Context, org tablestore.Org) (teamsconn.Record, tablestore.ETag, error)
	}
	conversationStore interface {
		Get(ctx context.Context, org tablestore.Org, aadObjectID string) (conversations.Ref, tablestore.ETag, error)
		Installed(ctx context.Context, org tablestore.Org, aadObjectID, tenantID, installationID, chatID, fallbackServiceURL string, now time.Time) (conversations.Ref, error)
		SetConversation(ctx context.Context, org tablestore.Org, aadObjectID, conversationID string, now time.Time) error
		Gone(ctx context.Context, org tablestore.Org, aadObjectID, state string, now time.Time) error
		Reserve(ctx context.Context, org tablestore.Org, aadObjectID string, now time.Time) (time.Time, error)
	}
	// teamsBot is the Bot Connector, as the pipeline needs it.
	teamsBot interface {
		CreateConversation(ctx context.Context, serviceURL, tenantID, userID string) (string, error)
		SendCard(ctx context.Context, serviceURL, conversationID, summary string, card cards.Card) (string, error)
		Trusted(serviceURL string) bool
		// Ready gets the bot's token ahead of a paced call.
		Ready(ctx context.Context) error
	}
	// teamsInstaller installs our Teams app for a person through Graph.
	teamsInstaller interface {
		InstallApp(ctx context.Context, tenantID, userID, catalogAppID string) (string, error)
		InstallationChat(ctx context.Context, tenantID, userID, installationID string) (string, error)
	}
)

// TeamsConfig wires the Teams channel; without Connections, Teams is not offered.
type TeamsConfig struct {
	Connections   teamsConnections
	Conversations conversationStore
	Bot           teamsBot
	Installer     teamsInstaller
	// Pacer keeps each tenant under Teams' per-app, per-tenant rate (shared by every instance).
	Pacer pacer
	// FallbackServiceURL is the Bot Connector address for people known only through a Graph
	// installation (no activity has told their regional one yet).
	FallbackServiceURL string
	// Gate, when set, spaces this instance's calls to a tenant in real time (see Gate).
	Gate *Gate
}

// Config wires a Pipeline.
type Config struct {
	Store        *tablestore.Store
	Queue        publisher
	Stakeholders directory
	Groups       groups
	Connections  connections
	MailSettings mailSettings
	Pacer        pacer
	Mailer       mailer
	Teams        TeamsConfig
	Logger       *slog.Logger
	Now          func() time.Time
	// Horizon is how far ahead dispatch reserves slots and queues messages (default 10 min):
	// the rest of a large batch waits in the table, cancellable, instead of in Service Bus.
	Horizon time.Duration
	// MaxDeliveries is the queue's max delivery count (Service Bus default 10): the last delivery
	// of a failing message records the failure instead of letting it dead-letter silently.
	MaxDeliveries int
}

// Pipeline accepts, dispatches, sends, cancels and reconciles batches.
type Pipeline struct {
	cfg   Config
	store *Store
	log   *slog.Logger
	now   func() time.Time
	cache cache
}

// New returns a Pipeline. It does no I/O.
func New(cfg Config) *Pipeline {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Horizon <= 0 {
		cfg.Horizon = 10 * time.Minute
	}
	if cfg.MaxDeliveries <= 0 {
		cfg.MaxDeliveries = 10
	}
	return &Pipeline{cfg: cfg, store: NewStore(cfg.Store), log: cfg.Logger, now: func() time.Time { return cfg.Now().UTC() }}
}

// Store returns the pipeline's store (the batch view reads it).
func (p *Pipeline) Store() *Store { return p.store }

// Job is the body of a message on outbound-mail or outbound-teams: a delivery to send, or a
// batch to dispatch further.
type Job struct {
	Org   string `json:"org"`
	Batch string `json:"batch"`
	// Key and Attempt name a delivery row and the attempt the message carries.
	Key     string    `json:"key,omitempty"`
	Attempt int       `json:"attempt,omitempty"`
	Due     time.Time `json:"due,omitzero"`
	// Dispatch is set on a dispatch job: the recipient index to continue from.
	Dispatch *int `json:"dispatch,omitempty"`
}

func (j Job) encode() []byte {
	b, _ := json.Marshal(j)
	return b
}

// decodeJob parses a queue message body; a body that is not a job is Invalid.
func decodeJob(body []byte) (Job, tablestore.Org, error) {
	var j Job
	if err := json.Unmarshal(body, &j); err != nil {
		return Job{}, tablestore.Org{}, fmt.Errorf("outbound: message body is not a job: %w: %w", errkind.Invalid, err)
	}
	org, err := tablestore.NewOrg(j.Org)
	if err != nil || !ValidBatchID(j.Batch) || (j.Key == "" && j.Dispatch == nil) {
		return Job{}, tablestore.Org{}, fmt.Errorf("outbound: job names no valid org, batch and delivery: %w", errkind.Invalid)
	}
	return j, org, nil
}

// queueOf is the queue a channel's deliveries go to.
func queueOf(channel string) string {
	if channel == Teams {
		return queue.OutboundTeams
	}
	return queue.OutboundMail
}

// deliveryMessage is the message carrying attempt of d, due at d.DueAt (to the millisecond: the
// table keeps 100 ns); purpose tells apart the messages of one attempt and due time (queued,
// verify, revive…) for duplicate detection.
func deliveryMessage(org tablestore.Org, d Delivery, purpose string) queue.Message {
	j := Job{Org: org.String(), Batch: d.Batch, Key: d.Key(), Attempt: d.Attempts, Due: d.DueAt}
	if d.Paced {
		purpose += "p" // a wait and the slot it then takes may fall in the same millisecond
	}
	return queue.Message{Queue: queueOf(d.Channel), ID: fmt.Sprintf("%s/%d/%d/%s", d.Key(), d.Attempts, d.DueAt.UnixMilli(), purpose), Body: j.encode(),
		ContentType: "application/json", Subject: "delivery", NotBefore: d.DueAt}
}

func dispatchMessage(org tablestore.Org, batch string, cursor int, at time.Time, purpose string) queue.Message {
	j := Job{Org: org.String(), Batch: batch, Dispatch: &cursor}
	return queue.Message{Queue: queue.OutboundMail, ID: fmt.Sprintf("%s/d/%d/%s", batch, cursor, purpose), Body: j.encode(),
		ContentType: "application/json", Subject: "dispatch", NotBefore: at}
}

// scheduleDispatch queues the dispatch of batch from cursor at at: a scheduled message whose
// sequence number is returned (for cancelling), or an immediate one (0) when at is now.
func (p *Pipeline) scheduleDispatch(ctx context.Context, org tablestore.Org, batch string, cursor int, at time.Time, purpose string) (int64, error) {
	m := dispatchMessage(org, batch, cursor, at, purpose)
	if !at.After(p.now().Add(time.Second)) {
		m.NotBefore = time.Time{}
		return 0, p.cfg.Queue.Publish(ctx, m)
	}
	return p.cfg.Queue.Schedule(ctx, m)
}

// errNotReady says the org cannot send on a channel yet; the API names why.
type errNotReady struct{ msg string }

func (e errNotReady) Error() string { return e.msg }

// NotReady reports whether err says a channel is not set up, and why.
func NotReady(err error) (string, bool) {
	var nr errNotReady
	if errors.As(err, &nr) {
		return nr.msg, true
	}
	return "", false
}
