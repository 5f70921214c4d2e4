package outbound

import (
	"context"
	"errors"
	"fmt"
	"html"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/outmail"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Delivery timing.
const (
	// verifyAfter is how long after an unknown outcome (a crash, a timeout, a 5xx after the
	// request left) a send is checked in the mailbox's Sent Items: Exchange files the copy a
	// little after sendMail answers.
	verifyAfter = 2 * time.Minute
	// reauthWait is how long a send waits before looking again at a connection that needs an
	// administrator to re-authorize it.
	reauthWait = 15 * time.Minute
	// maxAttempts bounds the throttled, unavailable and unknown-outcome retries of one delivery.
	maxAttempts = 12
	// early tolerates a scheduled message arriving a moment before its slot.
	early = time.Second
)

// Failure reasons a delivery can end with, and their hints for the admin.
const (
	ReasonMailboxNotFound  = "mailbox_not_found"
	ReasonAccessDenied     = "access_denied"
	ReasonInvalidRecipient = "invalid_recipient"
	ReasonNotConnected     = "not_connected"
	ReasonGaveUp           = "gave_up"
	ReasonLost             = "lost"
	ReasonTeamsNotConnect  = "teams_not_connected"
	ReasonThrottled        = "throttled"
	ReasonUnavailable      = "unavailable"
	ReasonWaitingReauth    = "waiting_for_reauthorization"
	ReasonUnknownOutcome   = "checking_outcome"
	ReasonGraphError       = "graph_error"
	ReasonRejected         = "rejected"
	ReasonOutcomeUnknown   = "outcome_unknown"
)

// HandleMail is the MailSender function: one dispatch step or one mail delivery per message,
// idempotent under redelivery. An error asks the queue to redeliver; every failure the admin
// must see is recorded on the delivery row first.
func (p *Pipeline) HandleMail(ctx context.Context, body []byte, deliveryCount int) error {
	job, org, err := decodeJob(body)
	if err != nil {
		return err // no redelivery fixes it: it ends in the dead-letter queue, kept for inspection
	}
	if job.Dispatch != nil {
		return p.dispatch(ctx, org, job.Batch, *job.Dispatch)
	}
	return p.orRecord(ctx, org, job.Key, deliveryCount, p.deliverMail(ctx, org, job))
}

// orRecord returns a delivery's failure for the queue to redeliver — unless this was the
// message's last delivery: Service Bus would dead-letter it where no admin looks, so the
// failure is recorded on the row instead.
func (p *Pipeline) orRecord(ctx context.Context, org tablestore.Org, key string, deliveryCount int, err error) error {
	if err == nil || deliveryCount < p.cfg.MaxDeliveries {
		return err
	}
	if ferr := p.failLast(ctx, org, key, err); ferr != nil {
		return errors.Join(err, ferr)
	}
	return nil
}

// deliverMail sends one delivery's mail, if it is still to go.
func (p *Pipeline) deliverMail(ctx context.Context, org tablestore.Org, job Job) error {
	d, etag, ok, err := p.due(ctx, org, job)
	if !ok || err != nil {
		return err
	}
	now := p.now()
	// The batch's content; a cancel is seen on the row itself (Cancel marks every row).
	b, err := p.batchContent(ctx, org, d.Batch)
	if errors.Is(err, errkind.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	rec, err := p.connectionOf(ctx, org)
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return err
	}
	connected := rec.Status == connection.Connected && rec.TenantID == b.Tenant
	waiting := rec.Status == connection.NeedsReauthorization && rec.TenantID == b.Tenant
	if d.Status == Sending {
		// An unknown outcome is settled before anything else: never sent again unchecked.
		switch {
		case connected:
			return p.settleUnknown(ctx, org, b, d, etag)
		case waiting:
			return p.checkLater(ctx, org, d, now.Add(reauthWait))
		}
		return p.fail(ctx, org, d, etag, ReasonOutcomeUnknown, "The org was disconnected while this mail was being sent: it may or may not have gone; check with the recipient before sending again.", d.Detail)
	}
	switch {
	case waiting:
		return p.putOff(ctx, org, b, d, etag, now.Add(reauthWait), false, ReasonWaitingReauth, "The Microsoft 365 connection needs re-authorization: the mail goes once an administrator connects again.", rec.LastError)
	case !connected:
		return p.fail(ctx, org, d, etag, ReasonNotConnected, "The org was disconnected from Microsoft 365 (or connected to another tenant) before this mail went: connect it and send again.", "")
	}
	// A mail goes in a slot reserved for it: one that waited without a slot (for a
	// re-authorization, a lost message) takes a fresh one first. A late one keeps its slot:
	// re-pacing every late delivery under a backlog made every worker fight over the pool's rows
	// (the benchmark collapsed at 20 000 of 50 000); a burst it causes is answered 429 and
	// re-paced then.
	if !d.Paced {
		return p.putOff(ctx, org, b, d, etag, now, true, d.Reason, d.Hint, d.Detail)
	}
	return p.send(ctx, org, b, d, etag)
}

// checkLater queues another look at an unknown outcome at at, leaving the row as it is.
func (p *Pipeline) checkLater(ctx context.Context, org tablestore.Org, d Delivery, at time.Time) error {
	m := deliveryMessage(org, d, fmt.Sprintf("v%d", at.UnixMilli()))
	m.NotBefore = at
	return p.cfg.Queue.Publish(ctx, m)
}

// settleUnknown decides a delivery whose last send has no recorded outcome: found in Sent
// Items, it went; not found after verifyAfter, it did not, and is sent again; when Sent Items
// cannot be read (Mail.ReadBasic.All not granted) it is sent again and marked resent.
func (p *Pipeline) settleUnknown(ctx context.Context, org tablestore.Org, b Batch, d Delivery, etag tablestore.ETag) error {
	now := p.now()
	if wait := d.SendingSince.Add(verifyAfter); now.Before(wait) {
		return p.checkLater(ctx, org, d, wait)
	}
	found, err := p.cfg.Mailer.FindSent(ctx, b.Tenant, d.Mailbox, d.InternetMessageID())
	switch {
	case err == nil && found:
		d.Status, d.SentAt, d.Verified, d.Reason, d.Hint, d.Detail, d.UpdatedAt = Sent, d.SendingSince, true, "", "", "", now
		_, err := p.store.updateDelivery(ctx, org, d, etag)
		return err
	case err == nil:
		// Not sent: it goes again, at a fresh slot of the pool.
		return p.putOff(ctx, org, b, d, etag, now, true, "", "", "")
	case errkind.Of(err) == errkind.Forbidden:
		d.Resent = true
		return p.putOff(ctx, org, b, d, etag, now, true, ReasonUnknownOutcome, "Sent Items could not be read (grant Mail.ReadBasic.All to check): the mail is sent again and may arrive twice.", d.Detail)
	case errkind.Of(err) == errkind.Unauthorized:
		if rerr := p.cfg.Connections.NeedsReauthorization(ctx, org, "Microsoft refused the app's token while checking a sent mail: "+err.Error(), now); rerr != nil {
			return rerr
		}
		p.forgetConnection(org)
		return p.checkLater(ctx, org, d, now.Add(reauthWait))
	case errkind.Of(err).Transient():
		return p.checkLater(ctx, org, d, now.Add(max(errkind.RetryAfterOf(err), verifyAfter/4)))
	}
	return err
}

// send claims the delivery (queued → sending, conditionally: one sender at a time), sends the
// mail and records the outcome.
func (p *Pipeline) send(ctx context.Context, org tablestore.Org, b Batch, d Delivery, etag tablestore.ETag) error {
	now := p.now()
	if d.Attempts >= maxAttempts {
		return p.fail(ctx, org, d, etag, ReasonGaveUp, fmt.Sprintf("The mail could not be sent in %d tries; the last error is shown. Send it again once the cause is fixed.", d.Attempts), d.Detail)
	}
	d.Attempts++
	d.Status, d.SendingSince, d.UpdatedAt = Sending, now, now
	etag, err := p.store.updateDelivery(ctx, org, d, etag)
	if err != nil {
		return fmt.Errorf("outbound: claiming %s: %w", d.Key(), err) // changed under us: redelivery reads it again
	}
	err = p.cfg.Mailer.SendMail(ctx, b.Tenant, mailOf(b, d))
	if err == nil {
		d.Status, d.SentAt, d.Reason, d.Hint, d.Detail, d.UpdatedAt = Sent, p.now(), "", "", "", p.now()
		if _, err := p.store.updateDelivery(ctx, org, d, etag); err != nil {
			// The mail went; the record did not. Redelivery finds it sending and checks Sent Items.
			return fmt.Errorf("outbound: recording %s as sent: %w", d.Key(), err)
		}
		return nil
	}
	return p.sendFailed(ctx, org, b, d, etag, err)
}

// sendFailed records what a failed send calls for (errkind.Policy, with mail's own twist: a
// server failure after the request left may have sent the mail).
func (p *Pipeline) sendFailed(ctx context.Context, org tablestore.Org, b Batch, d Delivery, etag tablestore.ETag, err error) error {
	now := p.now()
	detail := err.Error()
	var ke *errkind.Error
	status := 0
	if errors.As(err, &ke) {
		status, detail = ke.Status, ke.Code+": "+ke.Message
	}
	kind := errkind.Of(err)
	if ctx.Err() != nil {
		return err // shutting down: the outcome is unknown; redelivery checks Sent Items
	}
	switch errkind.Policy(err, 1, 1) {
	case errkind.RetryLater:
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			// Throttled (429) or "unavailable, repeat after a delay" (503): refused, not
			// processed, so not sent — take the pool's next free slot after Retry-After.
			wait := errkind.RetryAfterOf(err)
			if wait <= 0 {
				wait = errkind.Backoff(d.Attempts, 2*time.Second, 5*time.Minute, rand.N[time.Duration])
			}
			return p.putOff(ctx, org, b, d, etag, now.Add(wait), true, ReasonThrottled, "Exchange Online is limiting this mailbox; the mail goes at the next free slot.", detail)
		}
		// Another server failure or a timeout: the request may have gone through. Check Sent
		// Items before sending again.
		d.Reason, d.Hint, d.Detail, d.UpdatedAt = ReasonUnknownOutcome, "Microsoft Graph failed while sending; the mailbox's Sent Items are checked before it is sent again.", detail, now
		if _, err := p.store.updateDelivery(ctx, org, d, etag); err != nil {
			return err
		}
		m := deliveryMessage(org, d, fmt.Sprintf("v%d", now.Unix()))
		m.NotBefore = now.Add(verifyAfter)
		return p.cfg.Queue.Publish(ctx, m)
	case errkind.Reauthorize:
		if rerr := p.cfg.Connections.NeedsReauthorization(ctx, org, "Microsoft refused the app's token while sending mail: "+detail, now); rerr != nil {
			return rerr
		}
		p.forgetConnection(org)
		return p.putOff(ctx, org, b, d, etag, now.Add(reauthWait), false, ReasonWaitingReauth, "The Microsoft 365 connection needs re-authorization: the mail goes once an administrator connects again.", detail)
	}
	switch kind {
	case errkind.NotFound:
		return p.fail(ctx, org, d, etag, ReasonMailboxNotFound, fmt.Sprintf("The sender mailbox %s does not exist in the tenant (or has no mailbox): change the sender mailboxes in the mail settings.", d.Mailbox), detail)
	case errkind.Forbidden:
		return p.fail(ctx, org, d, etag, ReasonAccessDenied, fmt.Sprintf("The app may not send as %s: check that Mail.Send is granted and that the Exchange application access policy (or RBAC for Applications) includes this mailbox.", d.Mailbox), detail)
	case errkind.Invalid:
		if ke != nil && ke.Code == "ErrorInvalidRecipients" {
			return p.fail(ctx, org, d, etag, ReasonInvalidRecipient, "Exchange refused the recipient's address: correct the stakeholder's email.", detail)
		}
		return p.fail(ctx, org, d, etag, ReasonRejected, "Microsoft Graph refused the message itself (see the detail); it is not retried.", detail)
	}
	if status != 0 {
		// Graph answered something no policy knows: not sent. Try again later, a bounded number of times.
		wait := errkind.Backoff(d.Attempts, 10*time.Second, 10*time.Minute, rand.N[time.Duration])
		return p.putOff(ctx, org, b, d, etag, now.Add(wait), false, ReasonGraphError, "Microsoft Graph answered unexpectedly; the mail is tried again.", detail)
	}
	// No answer (the worker's own failure): the outcome is unknown and the row stays sending;
	// the redelivery checks Sent Items first.
	return fmt.Errorf("outbound: sending %s: %w", d.Key(), err)
}

// putOff sends the delivery again later: at a fresh slot of the pool not before at (repace) or
// simply at at, with a new attempt and message.
func (p *Pipeline) putOff(ctx context.Context, org tablestore.Org, b Batch, d Delivery, etag tablestore.ETag, at time.Time, repace bool, reason, hint, detail string) error {
	if d.Attempts >= maxAttempts {
		return p.fail(ctx, org, d, etag, ReasonGaveUp, fmt.Sprintf("It could not be sent in %d tries: %s", d.Attempts, hint), detail)
	}
	d.Paced = false
	pc, lanes := p.cfg.Pacer, b.Senders
	if d.Channel == Teams {
		pc, lanes = p.cfg.Teams.Pacer, teamsLane
	}
	if repace && pc != nil {
		slots, err := pc.Reserve(ctx, b.Tenant, lanes, []int{1}, at, at.Add(30*24*time.Hour))
		if err != nil {
			return err
		}
		if len(slots) == 1 {
			at, d.Paced = slots[0].At, true
			if d.Channel == Mail {
				d.Mailbox = slots[0].Mailbox
			}
		}
	}
	d.Status, d.DueAt, d.Reason, d.Hint, d.Detail, d.UpdatedAt = Queued, at, reason, hint, detail, p.now()
	if _, err := p.store.updateDelivery(ctx, org, d, etag); err != nil {
		return err
	}
	return p.cfg.Queue.Publish(ctx, deliveryMessage(org, d, "q"))
}

func (p *Pipeline) fail(ctx context.Context, org tablestore.Org, d Delivery, etag tablestore.ETag, reason, hint, detail string) error {
	d.Status, d.Reason, d.Hint, d.Detail, d.UpdatedAt = Failed, reason, hint, detail, p.now()
	_, err := p.store.updateDelivery(ctx, org, d, etag)
	return err
}

// failLast records a delivery whose message is on its last delivery, unless it is final.
func (p *Pipeline) failLast(ctx context.Context, org tablestore.Org, key string, cause error) error {
	d, etag, err := p.store.delivery(ctx, org, key)
	if errors.Is(err, errkind.NotFound) || (err == nil && d.Status.Final()) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.Status == Sending {
		return p.fail(ctx, org, d, etag, ReasonOutcomeUnknown, fmt.Sprintf("The message failed %d deliveries in a row while its outcome was unknown: the mail may or may not have gone; the last error is shown.", p.cfg.MaxDeliveries), cause.Error())
	}
	return p.fail(ctx, org, d, etag, ReasonGaveUp, fmt.Sprintf("The message failed %d deliveries in a row; the last error is shown. Send it again once the cause is fixed.", p.cfg.MaxDeliveries), cause.Error())
}

// mailOf builds the mail of delivery d.
func mailOf(b Batch, d Delivery) outmail.Message {
	m := outmail.Message{
		From: d.Mailbox, To: []outmail.Address{{Address: d.Address, Name: displayName(d)}},
		Subject: b.Subject, InternetMessageID: d.InternetMessageID(),
		Headers: map[string]string{"X-LeapChange-Batch": b.ID, "X-LeapChange-Kind": b.Kind},
	}
	if b.ReplyTo != "" {
		m.ReplyTo = []outmail.Address{{Address: b.ReplyTo}}
	}
	if b.HTML != "" {
		m.HTML, m.Body = true, b.HTML
	} else {
		m.Body = b.Text
	}
	if b.Personalised {
		m.Subject = fill(b.Subject, d, false)
		m.Body = fill(m.Body, d, m.HTML)
	}
	if b.SurveyURL != "" && !strings.Contains(m.Body, b.SurveyURL) {
		// A survey invitation by mail carries its link (a Teams card has a button for it).
		if m.HTML {
			m.Body += `<p><a href="` + html.EscapeString(b.SurveyURL) + `">Take the survey</a></p>`
		} else {
			m.Body += "\n\nTake the survey: " + b.SurveyURL
		}
	}
	return m
}

func displayName(d Delivery) string {
	if d.FirstName == "" {
		return d.LastName
	}
	if d.LastName == "" {
		return d.FirstName
	}
	return d.FirstName + " " + d.LastName
}
