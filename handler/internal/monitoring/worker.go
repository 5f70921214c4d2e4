package monitoring

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/htmltext"
	"github.com/leapchange/m365/handler/internal/insights"
	"github.com/leapchange/m365/handler/internal/keywords"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/teamsmsg"
	"github.com/leapchange/m365/handler/internal/webhook"
)

// event is the part of a Graph notification (or lifecycle event) the worker reads.
type event struct {
	SubscriptionID   string          `json:"subscriptionId"`
	ChangeType       string          `json:"changeType"`
	LifecycleEvent   string          `json:"lifecycleEvent"`
	TenantID         string          `json:"tenantId"`
	Resource         string          `json:"resource"`
	EncryptedContent json.RawMessage `json:"encryptedContent"`
}

// resourcePattern reads teams('…')/channels('…')/messages('…')[/replies('…')], the resource
// of a channel message notification (with or without a leading slash).
var resourcePattern = regexp.MustCompile(`^/?teams\('([^']+)'\)/channels\('([^']+)'\)/messages\('([^']+)'\)(?:/replies\('([^']+)'\))?$`)

// HandleEvent is the ChannelEventWorker: one notification or lifecycle event. It is idempotent:
// Graph may deliver a notification twice and Service Bus may redeliver the message; the insight
// is captured once and the watchers alerted once per message. An error asks for redelivery.
func (m *Monitor) HandleEvent(ctx context.Context, body []byte) error {
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return fmt.Errorf("monitoring: not a channel event: %w: %w", errkind.Invalid, err)
	}
	org, err := tablestore.NewOrg(ev.Org)
	if err != nil {
		return fmt.Errorf("monitoring: the event names no org: %w", errkind.Invalid)
	}
	var n event
	if err := json.Unmarshal(ev.Notification, &n); err != nil {
		return fmt.Errorf("monitoring: not a notification: %w: %w", errkind.Invalid, err)
	}
	sub, _, err := m.subs.Get(ctx, org, n.SubscriptionID)
	if errors.Is(err, errkind.NotFound) {
		return nil // deleted since (monitoring turned off): nothing to do
	}
	if err != nil {
		return err
	}
	if ev.Lifecycle {
		return m.lifecycle(ctx, org, sub, n.LifecycleEvent)
	}
	parts := resourcePattern.FindStringSubmatch(n.Resource)
	if parts == nil {
		m.log.WarnContext(ctx, "monitoring: a notification for an unexpected resource", "org", org.String(), "subscription", sub.ID)
		return nil
	}
	teamID, channelID, messageID, replyID := parts[1], parts[2], parts[3], parts[4]
	id := messageID
	if replyID != "" {
		id = replyID
	}
	now := m.cfg.Now().UTC()
	m.touch(ctx, org, sub, now)
	if strings.EqualFold(n.ChangeType, "deleted") {
		return m.cfg.Insights.Deleted(ctx, org, teamID, channelID, id, now)
	}
	var msg teamsmsg.Message
	if len(n.EncryptedContent) > 0 && m.cfg.Decrypter != nil {
		plain, err := m.cfg.Decrypter.Decrypt(n.EncryptedContent)
		if err != nil {
			// A bad signature or an unknown certificate will not get better: dropped, logged.
			m.log.WarnContext(ctx, "monitoring: a rich notification could not be decrypted", "org", org.String(), "subscription", sub.ID, "error", err.Error())
			return nil
		}
		if msg, err = teamsmsg.Decode(plain); err != nil {
			m.log.WarnContext(ctx, "monitoring: a decrypted notification is not a message", "org", org.String(), "error", err.Error())
			return nil
		}
	} else {
		if replyID != "" {
			msg, err = m.cfg.Messages.ChannelReply(ctx, sub.Tenant, teamID, channelID, messageID, replyID)
		} else {
			msg, err = m.cfg.Messages.ChannelMessage(ctx, sub.Tenant, teamID, channelID, messageID)
		}
		if errkind.Of(err) == errkind.NotFound {
			return m.cfg.Insights.Deleted(ctx, org, teamID, channelID, id, now) // deleted before we looked
		}
		if err != nil {
			return err
		}
	}
	if msg.TeamID == "" {
		msg.TeamID, msg.ChannelID = teamID, channelID
	}
	if msg.ReplyToID == "" && replyID != "" {
		msg.ReplyToID = messageID
	}
	return m.evaluate(ctx, org, msg, !strings.EqualFold(n.ChangeType, "created"))
}

// touch records the subscription's last notification (at most once a minute per subscription:
// a busy channel must not turn every notification into a table write).
func (m *Monitor) touch(ctx context.Context, org tablestore.Org, sub subscriptions.Sub, now time.Time) {
	if now.Sub(sub.LastNotification) < time.Minute {
		return
	}
	if err := m.subs.Update(ctx, org, sub.ID, func(s *subscriptions.Sub) { s.LastNotification = now }); err == nil {
		m.cfg.Subscriptions.Forget(org, sub.ID)
	}
}

// matcher returns the org's compiled keywords, cached while the settings do not change.
func (m *Monitor) matcher(ctx context.Context, org tablestore.Org) (*keywords.Matcher, Settings, error) {
	s, _, err := m.cfg.Settings.Get(ctx, org)
	if err != nil {
		return nil, s, err
	}
	m.mu.Lock()
	c, ok := m.matchers[org.String()]
	m.mu.Unlock()
	if ok && c.at.Equal(s.UpdatedAt) {
		return c.m, s, nil
	}
	km, err := keywords.Compile(s.Keywords)
	if err != nil {
		return nil, s, err
	}
	m.mu.Lock()
	m.matchers[org.String()] = compiled{at: s.UpdatedAt, m: km}
	m.mu.Unlock()
	return km, s, nil
}

// MaxExcerpt bounds an insight's excerpt.
const MaxExcerpt = 280

// evaluate matches a message's text and captures or updates its insight; a new match alerts
// the watchers (once per message: the alert's idempotency key is the message's).
func (m *Monitor) evaluate(ctx context.Context, org tablestore.Org, msg teamsmsg.Message, edited bool) error {
	if msg.MessageType != "" && msg.MessageType != "message" {
		return nil // system events
	}
	km, s, err := m.matcher(ctx, org)
	if err != nil {
		return err
	}
	if !s.Enabled || len(s.Keywords) == 0 {
		return nil
	}
	text := msg.Content
	if !strings.EqualFold(msg.ContentType, "text") {
		text = htmltext.Text(msg.Content)
	}
	matched := km.Match(text)
	excerpt := keywords.Excerpt(text, matched, MaxExcerpt)
	now := m.cfg.Now().UTC()
	if !msg.Deleted.IsZero() {
		return m.cfg.Insights.Deleted(ctx, org, msg.TeamID, msg.ChannelID, msg.ID, msg.Deleted)
	}
	existing, found, err := m.cfg.Insights.Get(ctx, org, msg.TeamID, msg.ChannelID, msg.ID)
	if err != nil {
		return err
	}
	if found {
		if !edited || (slices.Equal(existing.Keywords, matched) && existing.Excerpt == excerpt) {
			return m.alert(ctx, org, s, existing) // a redelivery: make sure the alert went
		}
		return m.cfg.Insights.Edited(ctx, org, msg.TeamID, msg.ChannelID, msg.ID, matched, excerpt, later(msg.LastEdited, now))
	}
	if len(matched) == 0 {
		return nil
	}
	in := insights.Insight{Org: org.String(), TeamID: msg.TeamID, ChannelID: msg.ChannelID, MessageID: msg.ID, ReplyToID: msg.ReplyToID,
		DeepLink: msg.WebURL, AuthorID: msg.AuthorID, AuthorName: msg.AuthorName, At: later(msg.Created, time.Time{}), Excerpt: excerpt,
		Keywords: matched, CapturedAt: now}
	if in.At.IsZero() {
		in.At = now
	}
	if _, err := m.cfg.Insights.Capture(ctx, org, in); err != nil {
		return err
	}
	return m.alert(ctx, org, s, in)
}

// alert sends the watchers one message naming every matched keyword, by mail and/or in Teams;
// the idempotency key is the message's, so a second call never sends again.
func (m *Monitor) alert(ctx context.Context, org tablestore.Org, s Settings, in insights.Insight) error {
	if m.cfg.Alerts == nil || len(s.Watchers) == 0 || len(in.Keywords) == 0 {
		return nil
	}
	where := in.ChannelID
	for _, c := range s.Channels {
		if c.TeamID == in.TeamID && c.ChannelID == in.ChannelID {
			where = strings.Trim(c.TeamName+" › "+c.ChannelName, " ›")
		}
	}
	quoted := make([]string, len(in.Keywords))
	for i, k := range in.Keywords {
		quoted[i] = "“" + k + "”"
	}
	subject := fmt.Sprintf("%s mentioned in %s", strings.Join(quoted, ", "), where)
	if len([]rune(subject)) > outbound.MaxSubject {
		subject = string([]rune(subject)[:outbound.MaxSubject-1]) + "…"
	}
	text := fmt.Sprintf("%s wrote in %s:\n\n%s", nonEmpty(in.AuthorName, "Someone"), where, in.Excerpt)
	if in.DeepLink != "" {
		text += "\n\nOpen in Teams: " + in.DeepLink
	}
	sum := sha256.Sum256([]byte(in.TeamID + "\x00" + in.ChannelID + "\x00" + in.MessageID))
	for _, ch := range []string{outbound.Mail, outbound.Teams} {
		req := outbound.Request{Channels: []string{ch}, Kind: "watcher_alert", Content: outbound.Content{Subject: subject, Text: text},
			IdempotencyKey: "watch-" + hex.EncodeToString(sum[:12]) + "-" + ch}
		for _, w := range s.Watchers {
			switch {
			case w.Channel != ch:
			case w.StakeholderID != "":
				req.StakeholderIDs = append(req.StakeholderIDs, w.StakeholderID)
			case w.Email != "":
				req.Addresses = append(req.Addresses, w.Email)
			}
		}
		if len(req.StakeholderIDs)+len(req.Addresses) == 0 {
			continue
		}
		_, err := m.cfg.Alerts.Accept(ctx, org, req)
		if msg, ok := outbound.NotReady(err); ok {
			// Mail or Teams is not set up: the insight stands; the status says why no alert went.
			_ = m.setStatus(ctx, org, func(st *Status) { st.LastError, st.LastErrorAt = "watcher alert not sent: "+msg, m.cfg.Now().UTC() })
			continue
		}
		if err != nil {
			return fmt.Errorf("monitoring: alerting the watchers: %w", err)
		}
	}
	return nil
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// lifecycle acts on a lifecycle event and records it on the subscription.
func (m *Monitor) lifecycle(ctx context.Context, org tablestore.Org, sub subscriptions.Sub, what string) error {
	now := m.cfg.Now().UTC()
	record := func() error {
		err := m.subs.Update(ctx, org, sub.ID, func(s *subscriptions.Sub) { s.LastLifecycle, s.LastLifecycleAt = what, now })
		if errors.Is(err, errkind.NotFound) {
			err = nil
		}
		_ = m.setStatus(ctx, org, func(st *Status) { st.addLifecycle(LifecycleRecord{Event: what, Subscription: sub.ID, At: now}) })
		return err
	}
	switch what {
	case "reauthorizationRequired":
		err := m.cfg.Subscriptions.Reauthorize(ctx, sub)
		if errkind.Of(err) == errkind.NotFound {
			if _, rerr := m.Reconcile(ctx, org); rerr != nil {
				m.log.WarnContext(ctx, "monitoring: reconciling after a lost subscription", "error", rerr.Error())
			}
		} else if err != nil {
			return err
		}
	case "subscriptionRemoved":
		if err := m.cfg.Subscriptions.Forsake(ctx, org, sub.ID); err != nil {
			return err
		}
		if _, err := m.Reconcile(ctx, org); err != nil {
			m.log.WarnContext(ctx, "monitoring: recreating a removed subscription", "error", err.Error())
		}
		if err := m.catchUp(ctx, org, sub.Tenant, sub.TeamID, sub.ChannelID, later(sub.LastNotification, sub.CreatedAt)); err != nil {
			return err
		}
		_ = m.setStatus(ctx, org, func(st *Status) { st.addLifecycle(LifecycleRecord{Event: what, Subscription: sub.ID, At: now}) })
		return nil
	case "missed":
		if err := m.catchUp(ctx, org, sub.Tenant, sub.TeamID, sub.ChannelID, later(sub.LastNotification, sub.CreatedAt).Add(-time.Hour)); err != nil {
			return err
		}
	default:
		m.log.InfoContext(ctx, "monitoring: an unknown lifecycle event", "event", what)
	}
	return record()
}

// catchUp reads the channel's messages since a time and evaluates each (insights and alerts are
// idempotent, so overlapping what was already seen is harmless).
func (m *Monitor) catchUp(ctx context.Context, org tablestore.Org, tenant, teamID, channelID string, since time.Time) error {
	// A margin before the last notification seen: clocks differ, and what is read twice is
	// captured once.
	msgs, err := m.cfg.Messages.ChannelMessagesSince(ctx, tenant, teamID, channelID, since.Add(-5*time.Minute))
	if err != nil {
		return fmt.Errorf("monitoring: catching up on %s: %w", channelID, err)
	}
	for _, msg := range msgs {
		if msg.TeamID == "" {
			msg.TeamID, msg.ChannelID = teamID, channelID
		}
		if err := m.evaluate(ctx, org, msg, !msg.LastEdited.IsZero()); err != nil {
			return err
		}
	}
	_ = m.setStatus(ctx, org, func(st *Status) { st.CaughtUp += len(msgs); st.LastCatchUpAt = m.cfg.Now().UTC() })
	return nil
}
