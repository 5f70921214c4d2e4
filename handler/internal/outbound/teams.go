package outbound

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/cards"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/teamsconn"
)

// teamsLane is the pacing row of a tenant's Teams sends: Teams limits the app per tenant, not
// per sender.
var teamsLane = []string{"bot"}

// Teams failure and skip reasons.
const (
	ReasonBotBlocked       = "bot_blocked"
	ReasonAppUninstalled   = "app_uninstalled"
	ReasonAppNotAvailable  = "app_not_available"
	ReasonTeamsPermission  = "teams_permission_missing"
	ReasonConversationGone = "conversation_not_found"
	ReasonUntrustedService = "untrusted_service_url"
	ReasonBotAuth          = "bot_auth_failed"
	ReasonTeamsError       = "teams_error"
	ReasonConversationPace = "conversation_pace"
)

// HandleTeams is the TeamsSender function: one Teams delivery per message, idempotent under
// redelivery (a posted activity is recorded, and a delivery that has one is never posted again).
func (p *Pipeline) HandleTeams(ctx context.Context, body []byte, deliveryCount int) error {
	job, org, err := decodeJob(body)
	if err == nil && job.Key == "" {
		err = fmt.Errorf("outbound: a Teams message names no delivery: %w", errkind.Invalid)
	}
	if err != nil {
		return err // dead-lettered after the redeliveries, kept for inspection
	}
	return p.orRecord(ctx, org, job.Key, deliveryCount, p.deliverTeams(ctx, org, job))
}

// due reads the delivery a job names and says whether it is to be sent now: not final, not
// stale, not early. A stale or early message is put right (queued again) and not sent.
func (p *Pipeline) due(ctx context.Context, org tablestore.Org, job Job) (Delivery, tablestore.ETag, bool, error) {
	d, etag, err := p.store.delivery(ctx, org, job.Key)
	if errors.Is(err, errkind.NotFound) {
		return d, etag, false, nil // erased with its org
	}
	if err != nil {
		return d, etag, false, err
	}
	now := p.now()
	switch {
	case d.Status.Final():
		return d, etag, false, nil // a redelivery or duplicate sends nothing
	case d.Status == Scheduled:
		return d, etag, false, nil // not dispatched: this message is stale; dispatch queues its own
	case d.Status == Queued && (job.Attempt != d.Attempts || job.Due.UnixMilli() != d.DueAt.UnixMilli()):
		// A stale carrier of an older attempt: make sure the current one is on the queue
		// (duplicate detection drops it if it is) and stop.
		return d, etag, false, p.cfg.Queue.Publish(ctx, deliveryMessage(org, d, "q"))
	case d.Status == Queued && d.DueAt.After(now.Add(early)):
		// Early (clocks disagree): queue it again for its slot, under an id of its own.
		return d, etag, false, p.cfg.Queue.Publish(ctx, deliveryMessage(org, d, fmt.Sprintf("e%d", now.UnixMilli())))
	}
	return d, etag, true, nil
}

func (p *Pipeline) deliverTeams(ctx context.Context, org tablestore.Org, job Job) error {
	d, etag, ok, err := p.due(ctx, org, job)
	if !ok || err != nil {
		return err
	}
	b, err := p.batchContent(ctx, org, d.Batch)
	if errors.Is(err, errkind.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	tc := teamsconn.Record{}
	if p.cfg.Teams.Connections != nil {
		if tc, _, err = p.cfg.Teams.Connections.Get(ctx, org); err != nil {
			return err
		}
	}
	m365, err := p.connectionOf(ctx, org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return err
	}
	if m365.Status == connection.Disconnected || m365.TenantID != b.Tenant {
		tc.Status = teamsconn.Disconnected // the org left Microsoft 365: Teams goes with it
	}
	if tc.Status != teamsconn.Connected || tc.TenantID != b.Tenant || p.cfg.Teams.Bot == nil {
		if d.Status == Sending && d.ActivityID == "" {
			return p.fail(ctx, org, d, etag, ReasonOutcomeUnknown, "Teams was disconnected while this message was being sent: it may or may not have arrived.", d.Detail)
		}
		return p.fail(ctx, org, d, etag, ReasonTeamsNotConnect, "Teams was disconnected for this org before the message went: connect it (Settings → Integrations → Microsoft Teams) and send again.", "")
	}
	now := p.now()
	if d.Status == Sending {
		// The last attempt's outcome is unknown (the worker stopped, or Teams did not answer).
		// A worker may still be in the call: look again once it would have answered.
		if wait := d.SendingSince.Add(verifyAfter); now.Before(wait) {
			return p.checkLater(ctx, org, d, wait)
		}
		// Teams has no way to look a posted message up, so it goes again, marked resent — the
		// admin sees it may have arrived twice.
		d.Resent = true
		return p.putOff(ctx, org, b, d, etag, now, true, ReasonUnknownOutcome, "The last attempt's outcome is unknown (Teams did not answer): the message is sent again and may arrive twice.", d.Detail)
	}
	if d.EntraID == "" {
		d.Status, d.Reason, d.Hint, d.UpdatedAt = Skipped, ReasonNoTeamsIdentity, skipHints[ReasonNoTeamsIdentity], now
		_, err := p.store.updateDelivery(ctx, org, d, etag)
		return err
	}
	ref, _, err := p.cfg.Teams.Conversations.Get(ctx, org, d.EntraID)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return err
	}
	switch ref.State {
	case conversations.Uninstalled:
		d.Status, d.Reason, d.Hint, d.UpdatedAt = Skipped, ReasonAppUninstalled, "The person removed the Leap Change app from Teams: they get nothing more there until they add it again.", now
		_, err := p.store.updateDelivery(ctx, org, d, etag)
		return err
	case conversations.Blocked:
		return p.unreachable(ctx, org, d, etag, "")
	}
	if ref.ConversationID == "" {
		if ref.UserID != "" && ref.ServiceURL != "" && p.cfg.Teams.Bot.Trusted(ref.ServiceURL) {
			// Known to the bot (from a team), without a 1:1 yet: create it. That call takes this
			// slot of the tenant's pace; the message goes at the next one.
			if _, err := p.cfg.Teams.Gate.Wait(ctx, b.Tenant); err != nil {
				return err
			}
			id, err := p.cfg.Teams.Bot.CreateConversation(ctx, ref.ServiceURL, b.Tenant, ref.UserID)
			if err != nil {
				return p.teamsFailed(ctx, org, b, d, etag, err)
			}
			if err := p.cfg.Teams.Conversations.SetConversation(ctx, org, d.EntraID, id, now); err != nil {
				return err
			}
			return p.putOff(ctx, org, b, d, etag, now, true, "", "", "")
		}
		if ref, err = p.install(ctx, org, b, tc, &d); err != nil {
			return p.installFailed(ctx, org, b, d, etag, err)
		}
	}
	if !p.cfg.Teams.Bot.Trusted(ref.ServiceURL) {
		return p.fail(ctx, org, d, etag, ReasonUntrustedService, "The person's Teams service address is not a Bot Connector address this server trusts: the bot's token is never sent there.", ref.ServiceURL)
	}
	if !d.ConvPaced {
		// The conversation's own pace (Teams limits each conversation): wait for it, then take
		// the tenant's next slot after it.
		at, err := p.cfg.Teams.Conversations.Reserve(ctx, org, d.EntraID, now)
		if err != nil {
			return err
		}
		if at.After(now.Add(early)) {
			d.ConvPaced = true
			return p.putOff(ctx, org, b, d, etag, at, true, ReasonConversationPace, "Several messages went to this person in a short time: Teams' per-conversation limit spaces them out.", "")
		}
	}
	if !d.Paced && p.cfg.Teams.Pacer != nil {
		d.ConvPaced = true // the conversation's slot is taken; keep it while waiting for the tenant's
		return p.putOff(ctx, org, b, d, etag, now, true, d.Reason, d.Hint, d.Detail)
	}
	return p.postTeams(ctx, org, b, d, etag, ref)
}

// postTeams claims the delivery (queued → sending), posts the card and records the activity.
func (p *Pipeline) postTeams(ctx context.Context, org tablestore.Org, b Batch, d Delivery, etag tablestore.ETag, ref conversations.Ref) error {
	now := p.now()
	if d.Attempts >= maxAttempts {
		return p.fail(ctx, org, d, etag, ReasonGaveUp, fmt.Sprintf("The message could not be sent in %d tries; the last error is shown. Send it again once the cause is fixed.", d.Attempts), d.Detail)
	}
	if err := p.cfg.Teams.Bot.Ready(ctx); err != nil {
		// Nothing was sent: the bot's own token could not be had.
		switch k := errkind.Of(err); {
		case k == errkind.Unauthorized || k == errkind.Invalid || k == errkind.Forbidden:
			return p.putOff(ctx, org, b, d, etag, now.Add(reauthWait), true, ReasonBotAuth, "The bot's token could not be had (BOT_APP_ID / BOT_APP_SECRET / BOT_TENANT_ID): fix the bot registration's secret; the message waits.", err.Error())
		case k.Transient():
			return p.putOff(ctx, org, b, d, etag, now.Add(errkind.Backoff(d.Attempts, 2*time.Second, 5*time.Minute, rand.N[time.Duration])), true, ReasonUnavailable, "The bot's token service did not answer; the message goes again.", err.Error())
		}
		return err
	}
	if ok, err := p.cfg.Teams.Gate.Wait(ctx, b.Tenant); err != nil {
		return err
	} else if !ok {
		d.ConvPaced = true // the conversation's slot is kept; a later tenant slot is taken
		return p.putOff(ctx, org, b, d, etag, now, true, d.Reason, d.Hint, d.Detail)
	}
	now = p.now()
	d.Attempts++
	d.Status, d.SendingSince, d.ConvPaced, d.ConversationID, d.UpdatedAt = Sending, now, false, ref.ConversationID, now
	etag, err := p.store.updateDelivery(ctx, org, d, etag)
	if err != nil {
		return fmt.Errorf("outbound: claiming %s: %w", d.Key(), err)
	}
	msg := cardMessage(b, d)
	id, err := p.cfg.Teams.Bot.SendCard(ctx, ref.ServiceURL, ref.ConversationID, summaryOf(msg), cards.Delivery(msg))
	if err != nil {
		return p.teamsFailed(ctx, org, b, d, etag, err)
	}
	d.Status, d.ActivityID, d.SentAt, d.Reason, d.Hint, d.Detail, d.UpdatedAt = Sent, id, p.now(), "", "", "", p.now()
	for attempt := 0; ; attempt++ {
		_, err = p.store.updateDelivery(ctx, org, d, etag)
		if err == nil || errors.Is(err, errkind.Conflict) || attempt == 3 {
			break
		}
	}
	if err != nil {
		// Posted, not recorded: a redelivery finds it sending and sends it again, marked resent.
		return fmt.Errorf("outbound: recording %s as sent: %w", d.Key(), err)
	}
	return nil
}

// cardMessage is what the card of d shows.
func cardMessage(b Batch, d Delivery) cards.Message {
	m := cards.Message{Batch: b.ID, Index: d.Index, Kind: b.Kind, Subject: b.Subject, Text: b.Text,
		SurveyURL: b.SurveyURL, SurveyQuestion: b.SurveyQuestion, SurveyChoices: b.SurveyChoices}
	if b.Personalised {
		m.Subject, m.Text = fill(m.Subject, d, false), fill(m.Text, d, false)
	}
	m.Subject, m.Text = cards.Escape(m.Subject), cards.Escape(m.Text)
	return m
}

// CardMessage is the card content of a delivery (the bot rebuilds it to answer a card action).
func CardMessage(b Batch, d Delivery) cards.Message { return cardMessage(b, d) }

// summaryOf is the activity's text: what a notification, or a client that cannot show the
// card, shows.
func summaryOf(m cards.Message) string {
	if m.Subject != "" {
		return m.Subject
	}
	s, _, _ := strings.Cut(m.Text, "\n")
	return s
}

// install installs our app for the person through Graph (idempotent) and records its chat as
// their conversation.
func (p *Pipeline) install(ctx context.Context, org tablestore.Org, b Batch, tc teamsconn.Record, d *Delivery) (conversations.Ref, error) {
	inst, err := p.cfg.Teams.Installer.InstallApp(ctx, b.Tenant, d.EntraID, tc.CatalogAppID)
	if err != nil {
		return conversations.Ref{}, err
	}
	chat, err := p.cfg.Teams.Installer.InstallationChat(ctx, b.Tenant, d.EntraID, inst)
	if err != nil {
		return conversations.Ref{}, err
	}
	d.Installed = true
	return p.cfg.Teams.Conversations.Installed(ctx, org, d.EntraID, b.Tenant, inst, chat, p.cfg.Teams.FallbackServiceURL, p.now())
}

// installFailed records what a failed Graph installation calls for.
func (p *Pipeline) installFailed(ctx context.Context, org tablestore.Org, b Batch, d Delivery, etag tablestore.ETag, err error) error {
	now := p.now()
	detail := err.Error()
	switch errkind.Policy(err, 1, 1) {
	case errkind.RetryLater:
		wait := max(errkind.RetryAfterOf(err), errkind.Backoff(d.Attempts, 2*time.Second, 5*time.Minute, rand.N[time.Duration]))
		d.Attempts++
		return p.putOff(ctx, org, b, d, etag, now.Add(wait), true, ReasonThrottled, "Microsoft Graph is limiting the app's installations; the message goes at the next free slot.", detail)
	case errkind.Reauthorize:
		if rerr := p.cfg.Connections.NeedsReauthorization(ctx, org, "Microsoft refused the app's token while installing the Teams app: "+detail, now); rerr != nil {
			return rerr
		}
		p.forgetConnection(org)
		return p.putOff(ctx, org, b, d, etag, now.Add(reauthWait), false, ReasonWaitingReauth, "The Microsoft 365 connection needs re-authorization: the message goes once an administrator connects again.", detail)
	}
	switch errkind.Of(err) {
	case errkind.NotFound:
		return p.fail(ctx, org, d, etag, ReasonAppNotAvailable, "The Leap Change app could not be installed for this person: it is not in the tenant's Teams app catalog (or not allowed for them), or they have no Teams licence.", detail)
	case errkind.Forbidden:
		return p.fail(ctx, org, d, etag, ReasonTeamsPermission, "The app may not install itself for people: grant TeamsAppInstallation.ReadWriteSelfForUser.All (re-authorize the Microsoft 365 connection).", detail)
	case errkind.Invalid:
		return p.fail(ctx, org, d, etag, ReasonRejected, "Microsoft Graph refused to install the app for this person (see the detail).", detail)
	}
	return err // the worker's own failure: redelivered
}

// teamsFailed records what a failed Bot Connector call calls for.
func (p *Pipeline) teamsFailed(ctx context.Context, org tablestore.Org, b Batch, d Delivery, etag tablestore.ETag, err error) error {
	now := p.now()
	if ctx.Err() != nil {
		return err // shutting down mid-call: the outcome is unknown; the redelivery resends, marked
	}
	detail := err.Error()
	var ke *errkind.Error
	status := 0
	if errors.As(err, &ke) {
		status = ke.Status
		detail = strings.TrimSpace(ke.Code + ": " + ke.Message)
	}
	wait := func(min time.Duration) time.Duration {
		return max(errkind.RetryAfterOf(err), errkind.Backoff(d.Attempts, min, 10*time.Minute, rand.N[time.Duration]))
	}
	switch {
	case ke != nil && ke.Code == "MessageWritesBlocked":
		if gerr := p.cfg.Teams.Conversations.Gone(ctx, org, d.EntraID, conversations.Blocked, now); gerr != nil {
			return gerr
		}
		return p.unreachable(ctx, org, d, etag, detail)
	case status == http.StatusForbidden && !d.Installed:
		// Not installed for the person (any more): install it through Graph and send again.
		tc, _, terr := p.cfg.Teams.Connections.Get(ctx, org)
		if terr != nil {
			return terr
		}
		if _, ierr := p.install(ctx, org, b, tc, &d); ierr != nil {
			return p.installFailed(ctx, org, b, d, etag, ierr)
		}
		return p.putOff(ctx, org, b, d, etag, now, true, ReasonTeamsError, "Teams refused the message (app not installed for the person): it was installed and the message goes again.", detail)
	case status == http.StatusForbidden:
		return p.fail(ctx, org, d, etag, ReasonAccessDenied, "Teams refused the message even after installing the app for the person (see the detail).", detail)
	case status == http.StatusNotFound && !d.Installed:
		// The conversation is gone: find it again (through the installation) once.
		if serr := p.cfg.Teams.Conversations.SetConversation(ctx, org, d.EntraID, "", now); serr != nil {
			return serr
		}
		return p.putOff(ctx, org, b, d, etag, now, true, ReasonTeamsError, "Teams did not find the conversation: it is looked up again.", detail)
	case status == http.StatusNotFound:
		return p.fail(ctx, org, d, etag, ReasonConversationGone, "Teams does not know the person's conversation with the bot, even after installing the app again.", detail)
	case status == http.StatusTooManyRequests || status == http.StatusPreconditionFailed || status == http.StatusServiceUnavailable:
		// Refused before it was processed: not posted. The next free slot after the wait.
		return p.putOff(ctx, org, b, d, etag, now.Add(wait(time.Second)), true, ReasonThrottled, "Teams is limiting the bot; the message goes at the next free slot.", detail)
	case status == http.StatusUnauthorized:
		return p.putOff(ctx, org, b, d, etag, now.Add(reauthWait), true, ReasonBotAuth, "The Bot Framework refused the bot's own credentials (BOT_APP_ID / BOT_APP_SECRET / BOT_TENANT_ID): fix the bot registration's secret; the message waits.", detail)
	case status == http.StatusBadRequest:
		return p.fail(ctx, org, d, etag, ReasonRejected, "Teams refused the message itself (see the detail); it is not retried.", detail)
	case status >= 500 || (status == 0 && errkind.Of(err).Transient()):
		// 502/504 and their kin: Microsoft asks to retry, but the message may have been posted.
		d.Resent = true
		return p.putOff(ctx, org, b, d, etag, now.Add(wait(2*time.Second)), true, ReasonUnknownOutcome, "Teams failed while posting; the message is sent again and may arrive twice.", detail)
	case status != 0:
		return p.putOff(ctx, org, b, d, etag, now.Add(wait(10*time.Second)), true, ReasonTeamsError, "Teams answered unexpectedly; the message is tried again.", detail)
	}
	return fmt.Errorf("outbound: posting %s: %w", d.Key(), err) // our own failure: redelivered, found sending
}

// unreachable records that the person blocked the bot.
func (p *Pipeline) unreachable(ctx context.Context, org tablestore.Org, d Delivery, etag tablestore.ETag, detail string) error {
	d.Status, d.Reason, d.Detail, d.UpdatedAt = Unreachable, ReasonBotBlocked, detail, p.now()
	d.Hint = "The person blocked the Leap Change bot in Teams (or removed the app): Teams does not let the bot write to them. Reach them by mail."
	_, err := p.store.updateDelivery(ctx, org, d, etag)
	return err
}
