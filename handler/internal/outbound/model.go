// Package outbound is the pipeline every message to stakeholders goes through — notifications,
// survey invitations, campaigns, watcher alerts — whatever the channel: a batch accepted with a
// delivery row for every recipient before anything is queued, dispatched to the channel's queue
// at the pace its senders allow, each delivery's status kept until it is sent, failed, skipped
// or cancelled, and nothing left queued for ever (see the README's "Messages" section).
package outbound

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Channels.
const (
	Mail  = "mail"
	Teams = "teams"
)

// Kinds of message the web app sends.
var Kinds = []string{"notification", "survey_invitation", "campaign", "announcement", "reminder", "watcher_alert", "bot_notification"}

// Status is a delivery's state.
type Status string

const (
	Scheduled Status = "scheduled" // waiting for the batch's scheduleAt, or for its turn at the mailbox pool
	Queued    Status = "queued"    // its message is on the channel's queue, due at DueAt
	Sending   Status = "sending"   // a sender is handing it to Microsoft; the outcome is not recorded yet
	Sent      Status = "sent"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
	Skipped   Status = "skipped" // never sent: inactive, no address, duplicate address, app removed
	// Unreachable: Teams refused the message because the person blocked the bot (or removed the
	// app as it was sent). Final, and told apart from failures: nothing the admin fixes.
	Unreachable Status = "unreachable"
)

// Statuses lists every status, in the order the batch view counts them.
var Statuses = []Status{Scheduled, Queued, Sending, Sent, Failed, Cancelled, Skipped, Unreachable}

// Final reports whether nothing more happens to a delivery in this status.
func (s Status) Final() bool {
	return s == Sent || s == Failed || s == Cancelled || s == Skipped || s == Unreachable
}

// Batch states.
const (
	Accepting   = "accepting"  // rows being written; a retry with the same idempotency key finishes it
	Accepted    = "accepted"   // rows written, dispatch queued (or scheduled at scheduleAt)
	Dispatched  = "dispatched" // every delivery is on its queue
	Settled     = "settled"    // every delivery is final
	CancelState = "cancelled"  // cancelled by an admin; what had gone stays sent
)

// Batch is one accepted send: its content and its progress. Deliveries are rows of their own.
type Batch struct {
	ID           string   `json:"id"`
	Kind         string   `json:"kind"`
	CampaignID   string   `json:"campaignId,omitempty"`
	Channels     []string `json:"channels"`
	Subject      string   `json:"subject"`
	Text         string   `json:"text,omitempty"`
	HTML         string   `json:"html,omitempty"`
	Personalised bool     `json:"personalised"`
	// Survey fields make it a survey invitation: a link and, in Teams, a question answered on
	// the card.
	SurveyURL      string    `json:"surveyUrl,omitempty"`
	SurveyQuestion string    `json:"surveyQuestion,omitempty"`
	SurveyChoices  []string  `json:"surveyChoices,omitempty"`
	ScheduleAt     time.Time `json:"scheduleAt,omitzero"`
	IdempotencyKey string    `json:"idempotencyKey"`
	RequestHash    string    `json:"requestHash,omitempty"` // what the key's request asked for
	CreatedAt      time.Time `json:"createdAt"`
	State          string    `json:"state"`
	// Recipients is the number of distinct recipients; Rows the delivery rows (one per recipient
	// and channel), indexed 0..Recipients-1.
	Recipients int `json:"recipients"`
	Rows       int `json:"rows"`
	// Tenant, Senders and ReplyTo are fixed at accept time: a settings change later does not move
	// a batch half-way through to other mailboxes.
	Tenant  string   `json:"tenant,omitempty"`
	Senders []string `json:"senders,omitempty"`
	ReplyTo string   `json:"replyTo,omitempty"`
	// Cursor is the next recipient index dispatch looks at; DispatchSeq the sequence number of
	// the scheduled dispatch message (cancelled with the batch), DispatchAt when it is due.
	Cursor      int       `json:"cursor"`
	DispatchSeq int64     `json:"dispatchSeq,omitempty"`
	DispatchAt  time.Time `json:"dispatchAt,omitzero"`
	CancelledAt time.Time `json:"cancelledAt,omitzero"`
	SettledAt   time.Time `json:"settledAt,omitzero"`
	// FinalCounts are the deliveries per status once settled (JSON), so the batch view of a
	// finished batch of 50 000 does not scan its rows again.
	FinalCounts string    `json:"finalCounts,omitempty"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Delivery is one recipient on one channel.
type Delivery struct {
	Batch         string    `json:"batch"`
	Index         int       `json:"index"`
	Channel       string    `json:"channel"`
	StakeholderID string    `json:"stakeholderId"`
	Address       string    `json:"address,omitempty"`
	FirstName     string    `json:"firstName,omitempty"`
	LastName      string    `json:"lastName,omitempty"`
	Status        Status    `json:"status"`
	Reason        string    `json:"reason,omitempty"` // a stable code: inactive, no_address, throttled, mailbox_not_found, …
	Hint          string    `json:"hint,omitempty"`   // what the admin can do about it
	Detail        string    `json:"detail,omitempty"` // the service's own error text, if any
	Attempts      int       `json:"attempts"`
	Mailbox       string    `json:"mailbox,omitempty"`
	DueAt         time.Time `json:"dueAt,omitzero"`
	Paced         bool      `json:"paced,omitempty"` // DueAt is a slot reserved in the sender pool
	SendingSince  time.Time `json:"sendingSince,omitzero"`
	SentAt        time.Time `json:"sentAt,omitzero"`
	Verified      bool      `json:"verified,omitempty"` // sent, as found in the mailbox's Sent Items after an unknown outcome
	Resent        bool      `json:"resent,omitempty"`   // sent again after an outcome that could not be checked
	Revived       int       `json:"revived,omitempty"`  // times the reconciler re-queued it after its message was lost
	// Teams: the person's Entra object id (how the bot finds them), the conversation and the
	// posted activity (recorded so a redelivery never posts twice, and so the card can be
	// updated), whether the send waited for the conversation's own pace, and what the person
	// answered on the card.
	EntraID        string    `json:"entraId,omitempty"`
	ConversationID string    `json:"conversationId,omitempty"`
	ActivityID     string    `json:"activityId,omitempty"`
	ConvPaced      bool      `json:"convPaced,omitempty"`
	Installed      bool      `json:"installed,omitempty"` // the app was installed for the person to send it
	Response       string    `json:"response,omitempty"`
	RespondedAt    time.Time `json:"respondedAt,omitzero"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// Tables.
const (
	BatchesTable    = "messagebatches"
	DeliveriesTable = "deliveries"
)

// NewBatchID returns a batch id that sorts newest first: "b", the inverted creation time in
// milliseconds (12 hex digits) and 8 random hex digits.
func NewBatchID(now time.Time) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("b%012x%s", uint64(0xffffffffffff)-uint64(now.UnixMilli()), hex.EncodeToString(r[:]))
}

// ValidBatchID reports whether id has the shape NewBatchID gives.
func ValidBatchID(id string) bool {
	if len(id) != 21 || id[0] != 'b' {
		return false
	}
	_, err := hex.DecodeString(id[1:])
	return err == nil && strings.ToLower(id) == id
}

// deliveryKey orders a batch's rows by recipient index, the channels of one recipient together.
func deliveryKey(batch string, index int, channel string) string {
	return batch + "|" + indexKey(index) + "|" + channel[:1]
}

func indexKey(index int) string { return fmt.Sprintf("%07d", index) }

// DeliveryKey is the row key of d.
func (d Delivery) Key() string { return deliveryKey(d.Batch, d.Index, d.Channel) }

// ID is the delivery's id in the API: "<index>-<channel>".
func (d Delivery) ID() string { return strconv.Itoa(d.Index) + "-" + d.Channel }

// InternetMessageID is the Internet message id the mail of d carries: derived from the batch and
// the recipient, so a send whose outcome was lost can be looked up in Sent Items.
func (d Delivery) InternetMessageID() string {
	return "<" + d.Batch + "." + indexKey(d.Index) + "@leapchange.mail>"
}
