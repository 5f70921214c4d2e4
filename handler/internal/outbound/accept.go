package outbound

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/teamsconn"
)

// Request limits.
const (
	MaxRecipients     = 50_000
	MaxGroups         = 100
	MaxIdempotencyKey = 200
	MaxCampaignID     = 100
	MaxAddresses      = 100
	MaxScheduleAhead  = 366 * 24 * time.Hour
)

// Request is a send as the web app asks for it.
type Request struct {
	StakeholderIDs []string
	GroupIDs       []string
	// Addresses are mail recipients who are not stakeholders (watchers named by address):
	// mail only; in Teams they are skipped (no_teams_identity).
	Addresses []string
	Channels  []string
	Content
	Kind           string
	CampaignID     string
	ScheduleAt     time.Time
	IdempotencyKey string
}

// Receipt is the answer to an accepted request.
type Receipt struct {
	Batch   Batch
	Created bool // false: the idempotency key named an existing batch, returned as it is
	// Skipped counts the deliveries skipped at accept time, by reason.
	Skipped map[string]int
}

// validate checks every field of r and names every problem.
func (r *Request) validate(now time.Time) error {
	var bad Invalid
	add := func(f, m string) { bad = append(bad, FieldError{Field: f, Message: m}) }
	if len(r.StakeholderIDs) == 0 && len(r.GroupIDs) == 0 && len(r.Addresses) == 0 {
		add("recipients", "name stakeholderIds, groupIds or both")
	}
	if len(r.Addresses) > MaxAddresses {
		add("addresses", fmt.Sprintf("at most %d", MaxAddresses))
	}
	for i, a := range r.Addresses {
		if m, err := mail.ParseAddress(a); err != nil || m.Address != a {
			add(fmt.Sprintf("addresses[%d]", i), "not a mail address")
			break
		}
	}
	if len(r.StakeholderIDs) > MaxRecipients {
		add("stakeholderIds", fmt.Sprintf("at most %d", MaxRecipients))
	}
	if len(r.GroupIDs) > MaxGroups {
		add("groupIds", fmt.Sprintf("at most %d", MaxGroups))
	}
	for i, id := range r.StakeholderIDs {
		if tablestore.CheckKey(id) != nil || id == "" {
			add(fmt.Sprintf("stakeholderIds[%d]", i), "not a stakeholder id")
			break
		}
	}
	for i, id := range r.GroupIDs {
		if tablestore.CheckKey(id) != nil || id == "" {
			add(fmt.Sprintf("groupIds[%d]", i), "not a group id")
			break
		}
	}
	if len(r.Channels) == 0 {
		add("channels", `name one or both of "mail" and "teams"`)
	}
	seen := map[string]bool{}
	for i, c := range r.Channels {
		if c != Mail && c != Teams {
			add(fmt.Sprintf("channels[%d]", i), `"mail" or "teams"`)
		} else if seen[c] {
			add(fmt.Sprintf("channels[%d]", i), "listed twice")
		}
		seen[c] = true
	}
	if !slices.Contains(Kinds, r.Kind) {
		add("kind", "one of "+strings.Join(Kinds, ", "))
	}
	if len(r.CampaignID) > MaxCampaignID || strings.ContainsAny(r.CampaignID, "\x00\r\n") {
		add("campaignId", fmt.Sprintf("at most %d characters, one line", MaxCampaignID))
	}
	if !r.ScheduleAt.IsZero() {
		switch {
		case r.ScheduleAt.Before(now.Add(-time.Minute)):
			add("scheduleAt", "in the past")
		case r.ScheduleAt.After(now.Add(MaxScheduleAhead)):
			add("scheduleAt", "at most a year ahead")
		}
	}
	if len(r.IdempotencyKey) > MaxIdempotencyKey || strings.ContainsAny(r.IdempotencyKey, "\x00\r\n") {
		add("idempotencyKey", fmt.Sprintf("at most %d characters, one line", MaxIdempotencyKey))
	}
	validateContent(&r.Content, r.Channels, &bad)
	validateSurvey(r.Survey, r.Kind, add)
	if len(bad) > 0 {
		return bad
	}
	return nil
}

// Accept validates r, expands its recipients, writes a batch and a delivery row for every
// recipient and channel, and only then queues its dispatch (at ScheduleAt when set). The same
// idempotency key returns the same batch — finishing its accept if an earlier attempt was cut
// short — and never sends twice.
func (p *Pipeline) Accept(ctx context.Context, org tablestore.Org, r Request) (Receipt, error) {
	now := p.now()
	if err := r.validate(now); err != nil {
		return Receipt{}, err
	}
	b := Batch{
		ID: NewBatchID(now), Kind: r.Kind, CampaignID: r.CampaignID, Channels: r.Channels, Subject: r.Subject, Text: r.Text, HTML: r.HTML,
		Personalised: personalised(r.Subject, r.Text, r.HTML), IdempotencyKey: r.IdempotencyKey, CreatedAt: now, UpdatedAt: now, State: Accepting,
	}
	if b.IdempotencyKey == "" {
		b.IdempotencyKey = uuid.NewString()
	}
	if !r.ScheduleAt.IsZero() && r.ScheduleAt.After(now) {
		b.ScheduleAt = r.ScheduleAt.UTC()
	}
	if r.Survey != nil {
		b.SurveyURL, b.SurveyQuestion, b.SurveyChoices = r.Survey.URL, r.Survey.Question, r.Survey.Choices
	}
	if slices.Contains(r.Channels, Mail) {
		if err := p.mailReady(ctx, org, &b); err != nil {
			return Receipt{}, err
		}
	}
	if slices.Contains(r.Channels, Teams) {
		if err := p.teamsReady(ctx, org, &b); err != nil {
			return Receipt{}, err
		}
	}
	rows, skipped, err := p.expand(ctx, org, r, b)
	if err != nil {
		return Receipt{}, err
	}
	b.Recipients, b.Rows = recipientsOf(rows), len(rows)
	b.RequestHash = r.hash()
	// Indexed as open before it exists: an accept that dies half-way is found by the reconciler
	// (a batch never created leaves an index row the reconciler drops).
	if err := p.store.markOpen(ctx, org, b.ID); err != nil {
		return Receipt{}, err
	}
	got, created, err := p.store.create(ctx, org, b)
	if err != nil {
		return Receipt{}, err
	}
	if !created {
		if got.RequestHash != "" && got.RequestHash != b.RequestHash {
			return Receipt{}, ErrKeyReused
		}
		if got.State == Accepting {
			// An earlier attempt with this key stopped half-way: finish it with its own rows.
			rows, skipped, err = p.expand(ctx, org, r, got)
			if err != nil {
				return Receipt{}, err
			}
			got, err = p.finishAccept(ctx, org, got, rows)
		}
		return Receipt{Batch: got, Created: false, Skipped: skipped}, err
	}
	b, err = p.finishAccept(ctx, org, b, rows)
	return Receipt{Batch: b, Created: true, Skipped: skipped}, err
}

// ErrKeyReused: an idempotency key already named a different message.
var ErrKeyReused = fmt.Errorf("outbound: this idempotency key was used for a different message: %w", errkind.Conflict)

// finishAccept writes the rows that are missing (a retry never resets a row an earlier attempt
// wrote, which may have gone since), marks the batch accepted, and queues its first dispatch.
// A batch cancelled meanwhile has its rows cancelled instead; a dispatch lost between the state
// and the message is restarted by the reconciler (DispatchAt passed).
func (p *Pipeline) finishAccept(ctx context.Context, org tablestore.Org, b Batch, rows []Delivery) (Batch, error) {
	if err := p.store.insertDeliveries(ctx, org, rows); err != nil {
		return b, fmt.Errorf("outbound: writing the delivery rows of %s: %w", b.ID, err)
	}
	at := b.ScheduleAt
	if at.IsZero() {
		at = p.now()
	}
	var cur Batch
	for attempt := 0; ; attempt++ {
		got, etag, err := p.store.Batch(ctx, org, b.ID)
		if err != nil {
			return b, err
		}
		cur = got
		if cur.State == CancelState {
			_, err := p.Cancel(ctx, org, b.ID) // rows written after the cancel: cancel them too
			return cur, err
		}
		if cur.State != Accepting {
			return cur, nil
		}
		cur.State, cur.DispatchAt, cur.UpdatedAt = Accepted, at, p.now()
		if cur.Cursor > 0 {
			// An earlier attempt's dispatch is under way (it queued before this retry): it goes on.
			if cur.Cursor >= cur.Recipients {
				cur.State = Dispatched
			}
			_, err = p.store.putBatch(ctx, org, cur, etag)
			if errors.Is(err, errkind.Conflict) && attempt < 5 {
				continue
			}
			return cur, err
		}
		if _, err = p.store.putBatch(ctx, org, cur, etag); err == nil {
			break
		}
		if !errors.Is(err, errkind.Conflict) || attempt >= 5 {
			return b, err
		}
	}
	seq, err := p.scheduleDispatch(ctx, org, b.ID, 0, at, "accept")
	if err != nil {
		return cur, fmt.Errorf("outbound: queueing the dispatch of %s: %w", b.ID, err)
	}
	if seq == 0 {
		return cur, nil
	}
	for range 5 {
		got, etag, err := p.store.Batch(ctx, org, b.ID)
		if err != nil {
			return cur, err
		}
		if got.State == CancelState {
			return got, p.cfg.Queue.CancelScheduled(ctx, queue.OutboundMail, []int64{seq})
		}
		if got.Cursor != 0 || got.DispatchSeq != 0 {
			return got, nil
		}
		got.DispatchSeq = seq
		if _, err := p.store.putBatch(ctx, org, got, etag); !errors.Is(err, errkind.Conflict) {
			return got, err
		}
	}
	return cur, nil
}

// hash identifies what a request asks for, so an idempotency key reused for another message is
// refused rather than answered with the first.
func (r Request) hash() string {
	b, _ := json.Marshal(struct {
		S, G, C []string
		Content
		K, Camp string
		At      time.Time
		A       []string
	}{r.StakeholderIDs, r.GroupIDs, r.Channels, r.Content, r.Kind, r.CampaignID, r.ScheduleAt.UTC(), r.Addresses})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// mailReady checks the org can send mail: connected with Mail.Send, and a sender mailbox set.
// The connection may need re-authorization: sends then wait for it, they are not refused.
func (p *Pipeline) mailReady(ctx context.Context, org tablestore.Org, b *Batch) error {
	rec, _, err := p.cfg.Connections.Get(ctx, org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return err
	}
	if rec.TenantID == "" || (rec.Status != connection.Connected && rec.Status != connection.NeedsReauthorization) {
		return errNotReady{"mail needs a Microsoft 365 connection: connect the org first"}
	}
	if !slices.Contains(rec.Granted, "Mail.Send") {
		return errNotReady{"mail needs the Mail.Send permission: re-authorize the connection so an administrator can grant it"}
	}
	ms, _, err := p.cfg.MailSettings.Get(ctx, org)
	if err != nil || len(ms.Senders) == 0 {
		if err == nil || errors.Is(err, errkind.NotFound) {
			return errNotReady{"mail needs a sender mailbox: set one with PUT /m365/settings/mail"}
		}
		return err
	}
	b.Tenant, b.Senders, b.ReplyTo = rec.TenantID, ms.Senders, ms.ReplyTo
	return nil
}

// teamsReady checks the org can send in Teams: its Teams connection is on, for the tenant of
// its Microsoft 365 connection.
func (p *Pipeline) teamsReady(ctx context.Context, org tablestore.Org, b *Batch) error {
	if p.cfg.Teams.Connections == nil {
		return errNotReady{"Teams messages are not set up on this server (no bot registration)"}
	}
	rec, _, err := p.cfg.Connections.Get(ctx, org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return err
	}
	if rec.TenantID == "" || (rec.Status != connection.Connected && rec.Status != connection.NeedsReauthorization) {
		return errNotReady{"Teams messages need a Microsoft 365 connection: connect the org first"}
	}
	tc, _, err := p.cfg.Teams.Connections.Get(ctx, org)
	if err != nil {
		return err
	}
	if tc.Status != teamsconn.Connected || tc.TenantID != rec.TenantID {
		return errNotReady{"Teams is not connected for this org: connect it with POST /teams/connect"}
	}
	if b.Tenant == "" {
		b.Tenant = rec.TenantID
	}
	return nil
}

// Skip reasons at accept time.
const (
	ReasonNoTeamsIdentity  = "no_teams_identity"
	ReasonNotFound         = "stakeholder_not_found"
	ReasonInactive         = "inactive"
	ReasonNoAddress        = "no_address"
	ReasonDuplicateAddress = "duplicate_address"
)

var skipHints = map[string]string{
	ReasonNotFound:         "The stakeholder was deleted before the message was sent.",
	ReasonInactive:         "The stakeholder is deactivated (deleted, disabled or out of the sync's group filter in Entra ID).",
	ReasonNoAddress:        "The stakeholder has no email address: add one, or sync it from Entra ID.",
	ReasonDuplicateAddress: "Another recipient of this message has the same email address; it is sent once.",
	ReasonNoTeamsIdentity:  "The stakeholder is not linked to an Entra ID user (a manual stakeholder): Teams can only reach people synced from Entra ID.",
}

// expand resolves the recipients to delivery rows: group members and listed stakeholders, each
// once, in a stable order; inactive ones, ones without an address and repeated addresses are
// rows of their own, skipped with a reason, so every recipient named is accounted for.
func (p *Pipeline) expand(ctx context.Context, org tablestore.Org, r Request, b Batch) ([]Delivery, map[string]int, error) {
	var ids []string
	seen := map[string]bool{}
	addID := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for i, g := range r.GroupIDs {
		if _, _, err := p.cfg.Groups.Get(ctx, org, g); err != nil {
			if errors.Is(err, errkind.NotFound) || errors.Is(err, stakeholder.ErrNotFound) {
				return nil, nil, Invalid{{Field: fmt.Sprintf("groupIds[%d]", i), Message: "no such stakeholder group"}}
			}
			return nil, nil, err
		}
		members, err := p.cfg.Groups.MemberIDs(ctx, org, g)
		if err != nil {
			return nil, nil, err
		}
		for _, m := range members {
			addID(m.StakeholderID)
		}
	}
	for _, id := range r.StakeholderIDs {
		addID(id)
	}
	if len(ids)+len(r.Addresses) > MaxRecipients {
		return nil, nil, Invalid{{Field: "recipients", Message: fmt.Sprintf("%d recipients after expanding the groups, over the limit of %d", len(ids), MaxRecipients)}}
	}
	found, err := p.lookup(ctx, org, ids)
	if err != nil {
		return nil, nil, err
	}
	skipped := map[string]int{}
	addresses := map[string]bool{}
	now := p.now()
	var rows []Delivery
	for i, id := range ids {
		st, ok := found[id]
		reason := ""
		switch {
		case !ok:
			reason = ReasonNotFound
		case !st.Active:
			reason = ReasonInactive
		}
		for _, ch := range b.Channels {
			d := Delivery{Batch: b.ID, Index: i, Channel: ch, StakeholderID: id, Status: Scheduled, UpdatedAt: now}
			if ok {
				d.Address, d.FirstName, d.LastName = st.Email, st.FirstName, st.LastName
				if ch == Teams {
					d.EntraID = st.ExternalID
				}
			}
			why := reason
			if why == "" && ch == Teams && d.EntraID == "" {
				why = ReasonNoTeamsIdentity
			}
			if why == "" && ch == Mail {
				addr := stakeholder.NormalizeEmail(st.Email)
				switch {
				case addr == "":
					why = ReasonNoAddress
				case addresses[addr]:
					why = ReasonDuplicateAddress
				}
				addresses[addr] = true
			}
			if why != "" {
				d.Status, d.Reason, d.Hint = Skipped, why, skipHints[why]
				skipped[why]++
			}
			rows = append(rows, d)
		}
	}
	// Addresses follow the stakeholders, one recipient each.
	for k, a := range r.Addresses {
		i := len(ids) + k
		for _, ch := range b.Channels {
			d := Delivery{Batch: b.ID, Index: i, Channel: ch, Address: a, Status: Scheduled, UpdatedAt: now}
			why := ""
			addr := stakeholder.NormalizeEmail(a)
			switch {
			case ch == Teams:
				why = ReasonNoTeamsIdentity
			case addresses[addr]:
				why = ReasonDuplicateAddress
			}
			if ch == Mail {
				addresses[addr] = true
			}
			if why != "" {
				d.Status, d.Reason, d.Hint = Skipped, why, skipHints[why]
				skipped[why]++
			}
			rows = append(rows, d)
		}
	}
	return rows, skipped, nil
}

// pointReadLimit: up to this many recipients are read one by one; more, and the org's
// directory is streamed once instead (a page of 1 000 costs what ~10 point reads cost).
const pointReadLimit = 500

func (p *Pipeline) lookup(ctx context.Context, org tablestore.Org, ids []string) (map[string]stakeholder.Stakeholder, error) {
	out := make(map[string]stakeholder.Stakeholder, len(ids))
	if len(ids) <= pointReadLimit {
		got, err := p.cfg.Stakeholders.GetMany(ctx, org, ids)
		if err != nil {
			return nil, err
		}
		for id, v := range got {
			out[id] = v.Stakeholder
		}
		return out, nil
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	after := ""
	for {
		page, next, err := p.cfg.Stakeholders.List(ctx, org, stakeholder.ListOptions{After: after, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, st := range page {
			if want[st.ID] {
				out[st.ID] = st
			}
		}
		if next == "" {
			return out, nil
		}
		after = next
	}
}

func recipientsOf(rows []Delivery) int {
	if len(rows) == 0 {
		return 0
	}
	return rows[len(rows)-1].Index + 1
}
