package outbound_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/outmail"
	"github.com/leapchange/m365/handler/internal/pacing"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// TestSendsEveryoneOnceAndAccountsForEveryRecipient: a group plus listed stakeholders expand to
// each person once; the inactive, the address-less and a repeated address are skipped with a
// reason; everyone else gets exactly one personalised mail and every row ends final.
func TestSendsEveryoneOnceAndAccountsForEveryRecipient(t *testing.T) {
	r := newRig(t, rigOptions{})
	ids := r.crowd(t, 6)
	inactive := r.person(t, "Ina", "ina@fabrikam.example", false)
	noMail := r.person(t, "Nomi", "", true)
	r.group(t, "project-team", append([]string{ids[0], ids[1], ids[2], inactive}, noMail))

	req := request(append([]string{ids[2], ids[3], ids[4], ids[5], "nobody-here"}, ids[0])...)
	req.GroupIDs = []string{"project-team"}
	rec := r.accept(t, req)
	if !rec.Created || rec.Batch.Recipients != 9 {
		t.Fatalf("accepted %d recipients (created %v), want 9: 6 people, inactive, no address, unknown", rec.Batch.Recipients, rec.Created)
	}
	want := map[string]int{outbound.ReasonInactive: 1, outbound.ReasonNoAddress: 1, outbound.ReasonNotFound: 1}
	for reason, n := range want {
		if rec.Skipped[reason] != n {
			t.Errorf("skipped %s = %d, want %d (all %v)", reason, rec.Skipped[reason], n, rec.Skipped)
		}
	}
	// Every row exists before anything is queued: the only message is the dispatch step.
	if pub := r.env.Queue.Published(); len(pub) != 1 || pub[0].Subject != "dispatch" {
		t.Fatalf("published at accept: %+v, want one dispatch message", pub)
	}
	if got := len(r.rows(t, rec.Batch.ID)); got != 9 {
		t.Fatalf("%d delivery rows after accept, want 9", got)
	}
	r.drain(t)
	sent := r.sentTo()
	for i := range 6 {
		addr := strings.ToLower("p00" + string(rune('0'+i)) + "@fabrikam.example")
		if sent[addr] != 1 {
			t.Errorf("%s got %d mails, want 1", addr, sent[addr])
		}
	}
	if r.mails() != 6 {
		t.Errorf("%d mails sent, want 6", r.mails())
	}
	m := r.env.Sim.SentMail(testenv.Tenant)[0]
	if !strings.HasPrefix(m.Subject, "Change ahead, P0") || strings.Contains(m.Content, "{{") || m.From != sender ||
		len(m.ReplyTo) != 1 || m.InternetMessageID == "" {
		t.Errorf("mail not personalised or not from the pool: %+v", m)
	}
	p := r.progress(t, rec.Batch.ID)
	if p.Counts[outbound.Sent] != 6 || p.Counts[outbound.Skipped] != 3 || !p.ExpectedCompletion.IsZero() {
		t.Errorf("progress %+v, want 6 sent, 3 skipped, nothing left", p)
	}
	b, _, _ := r.p.Store().Batch(t.Context(), r.org, rec.Batch.ID)
	if b.State != outbound.Settled {
		t.Errorf("batch state %s, want settled", b.State)
	}
	if stats := r.env.Sim.MailStats(); stats.Violations() != 0 {
		t.Errorf("the simulated limits were tripped: %+v", stats)
	}
}

// TestRedeliveryAndDuplicatesSendOnce delivers every message three times: the rows say sent
// after the first, and nothing is sent again.
func TestRedeliveryAndDuplicatesSendOnce(t *testing.T) {
	r := newRig(t, rigOptions{})
	ids := r.crowd(t, 3)
	rec := r.accept(t, request(ids...))
	r.drain(t)
	for _, m := range r.env.Queue.Published() {
		for range 2 {
			if m.Queue != queue.OutboundMail {
				continue
			}
			if err := r.p.HandleMail(t.Context(), m.Body, 2); err != nil {
				t.Fatalf("redelivery of %s: %v", m.ID, err)
			}
		}
	}
	r.drain(t)
	r.wantMails(t, 3, "after redeliveries")
	if p := r.progress(t, rec.Batch.ID); p.Counts[outbound.Sent] != 3 {
		t.Fatalf("progress %+v", p.Counts)
	}
}

// TestIdempotencyKeyReturnsTheSameBatch: a retried POST with the same key creates nothing new
// and sends nothing twice.
func TestIdempotencyKeyReturnsTheSameBatch(t *testing.T) {
	r := newRig(t, rigOptions{})
	ids := r.crowd(t, 2)
	req := request(ids...)
	req.IdempotencyKey = "web-app-send-42"
	first := r.accept(t, req)
	r.drain(t)
	second := r.accept(t, req)
	if second.Created || second.Batch.ID != first.Batch.ID {
		t.Fatalf("second accept: created %v, batch %s; want the first batch %s", second.Created, second.Batch.ID, first.Batch.ID)
	}
	r.drain(t)
	r.wantMails(t, 2, "in all")
	list, _, err := r.p.Store().Batches(t.Context(), r.org, "", 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("batches %d (%v), want 1", len(list), err)
	}
}

// TestCrashBetweenSendAndRecord: the worker dies after Graph accepted the mail and before the
// row says sent. The redelivery finds the mail in Sent Items and records it, sending nothing;
// without the permission to read Sent Items it sends again and says so.
func TestCrashBetweenSendAndRecord(t *testing.T) {
	for _, tc := range []struct {
		name        string
		permissions []string
		wantMails   int
		wantFlag    func(outbound.Delivery) bool
	}{
		{"Sent Items readable", nil, 1, func(d outbound.Delivery) bool { return d.Verified && !d.Resent }},
		{"Sent Items not readable", []string{"User.Read.All", "GroupMember.Read.All", "Mail.Send"}, 2, func(d outbound.Delivery) bool { return d.Resent }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOptions{permissions: tc.permissions})
			ids := r.crowd(t, 1)
			rec := r.accept(t, request(ids...))
			crashed := false
			r.mailer.after = func(outmail.Message) error {
				if !crashed {
					crashed = true
					return errors.New("worker killed after Graph answered 202") // as a kill -9 there would leave it
				}
				return nil
			}
			r.drain(t)
			if !crashed {
				t.Fatal("the crash was not staged")
			}
			r.wantMails(t, tc.wantMails, "in all")
			rows := r.rows(t, rec.Batch.ID)
			if rows[0].Status != outbound.Sent || !tc.wantFlag(rows[0]) {
				t.Fatalf("row %+v", rows[0])
			}
		})
	}
}

// TestCancelScheduledBatch: a batch scheduled for tomorrow is cancelled — its dispatch message
// by sequence number, every row — and nothing is ever sent.
func TestCancelScheduledBatch(t *testing.T) {
	r := newRig(t, rigOptions{})
	ids := r.crowd(t, 4)
	req := request(ids...)
	req.ScheduleAt = r.clock.Now().Add(24 * time.Hour)
	rec := r.accept(t, req)
	if rec.Batch.DispatchSeq == 0 || len(r.env.Queue.Pending()) != 1 {
		t.Fatalf("scheduled batch: dispatch seq %d, pending %d; want a scheduled dispatch message", rec.Batch.DispatchSeq, len(r.env.Queue.Pending()))
	}
	if p := r.progress(t, rec.Batch.ID); p.Counts[outbound.Scheduled] != 4 || !p.ExpectedCompletion.After(req.ScheduleAt.Add(-time.Second)) {
		t.Fatalf("progress before cancel %+v", p)
	}
	c, err := r.p.Cancel(t.Context(), r.org, rec.Batch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cancelled != 4 || c.Sent != 0 || c.InFlight != 0 {
		t.Fatalf("cancel %+v, want 4 cancelled", c)
	}
	if n := len(r.env.Queue.Pending()); n != 0 {
		t.Fatalf("%d messages still pending after cancel", n)
	}
	again, err := r.p.Cancel(t.Context(), r.org, rec.Batch.ID)
	if err != nil || again.AlreadyCancelled != 4 || again.Cancelled != 0 {
		t.Fatalf("second cancel %+v %v", again, err)
	}
	r.clock.Advance(48 * time.Hour)
	r.drain(t)
	r.wantMails(t, 0, "after cancel")
}

// TestPoolPacingKeepsUnderTheLimits: twenty mails through two mailboxes at the simulated
// Exchange limit of 4 a minute go out spread over both, without one 429.
func TestPoolPacingKeepsUnderTheLimits(t *testing.T) {
	senders := []string{"notify@contoso.example", "notify2@contoso.example"}
	r := newRig(t, rigOptions{limits: pacing.Limits{PerMinute: 4, DailyRecipients: 1000}, simLimits: m365sim.MailLimits{PerMinute: 4, DailyRecipients: 1000}, senders: senders})
	ids := r.crowd(t, 20)
	start := r.clock.Now()
	rec := r.accept(t, request(ids...))
	if p := r.progress(t, rec.Batch.ID); !p.ExpectedCompletion.After(start.Add(2 * time.Minute)) {
		t.Errorf("expected completion %v: 20 mails at 2×4/min take over 2 minutes", p.ExpectedCompletion.Sub(start))
	}
	r.drain(t)
	stats := r.env.Sim.MailStats()
	if stats.Accepted != 20 || stats.Violations() != 0 {
		t.Fatalf("sim stats %+v: want 20 accepted and no limit tripped", stats)
	}
	per := map[string]int{}
	for _, m := range r.env.Sim.SentMail(testenv.Tenant) {
		per[m.From]++
	}
	if per[senders[0]] != 10 || per[senders[1]] != 10 {
		t.Errorf("per mailbox %v, want 10 each", per)
	}
	if took := r.clock.Now().Sub(start); took < 2*time.Minute {
		t.Errorf("took %v of simulated time, under the 2.5 minutes the limits allow", took)
	}
}

// TestThrottledSendWaitsAndGoes: a 429 or 503 with Retry-After re-queues the delivery as a
// scheduled message at a fresh slot (no worker waits); it goes once the wait is over, once.
func TestThrottledSendWaitsAndGoes(t *testing.T) {
	for _, status := range []int{429, 503} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			r := newRig(t, rigOptions{})
			ids := r.crowd(t, 1)
			if err := r.env.Sim.AddFault(m365sim.FaultRule{PathRegexp: "/sendMail$", Times: 2, Status: status, RetryAfter: 1500 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			rec := r.accept(t, request(ids...))
			start := r.clock.Now()
			r.drain(t)
			rows := r.rows(t, rec.Batch.ID)
			if rows[0].Status != outbound.Sent || rows[0].Attempts != 3 || r.mails() != 1 {
				t.Fatalf("row %+v, mails %d: want sent on the third attempt, once", rows[0], r.mails())
			}
			if r.clock.Now().Sub(start) < 3*time.Second {
				t.Errorf("the Retry-After waits were not honoured: %v", r.clock.Now().Sub(start))
			}
		})
	}
}

// TestServerFailureIsCheckedBeforeResending: a 500 after the request left may have sent the
// mail; the delivery is checked in Sent Items before it is sent again, and sent once.
func TestServerFailureIsCheckedBeforeResending(t *testing.T) {
	r := newRig(t, rigOptions{})
	ids := r.crowd(t, 1)
	if err := r.env.Sim.AddFault(m365sim.FaultRule{PathRegexp: "/sendMail$", Times: 1, Status: 500}); err != nil {
		t.Fatal(err)
	}
	rec := r.accept(t, request(ids...))
	r.drain(t)
	d := r.rows(t, rec.Batch.ID)[0]
	if d.Status != outbound.Sent || d.Attempts != 2 || r.mails() != 1 || r.env.Sim.Stats().Routes["sentItems"] == 0 {
		t.Fatalf("row %+v, mails %d, Sent Items lookups %d: want one lookup, then sent once", d, r.mails(), r.env.Sim.Stats().Routes["sentItems"])
	}
}

// TestPermanentFailuresAreRecordedWithAHint: an unknown sender mailbox, an access-policy denial
// and a refused recipient end failed with a reason and an admin hint, not retried for ever.
func TestPermanentFailuresAreRecordedWithAHint(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		stage        func(*rig)
		address      string
	}{
		{"mailbox gone", outbound.ReasonMailboxNotFound, func(r *rig) {
			users := r.env.Sim.Users(testenv.Tenant)
			for _, u := range users {
				if u.Mail == sender {
					r.env.Sim.HardDeleteUser(testenv.Tenant, u.ID)
				}
			}
		}, "a@fabrikam.example"},
		{"access policy", outbound.ReasonAccessDenied, func(r *rig) {
			r.env.Sim.SetMailAccessPolicy(testenv.Tenant, testenv.ClientID, "someone-else@contoso.example")
		}, "a@fabrikam.example"},
		{"recipient refused", outbound.ReasonInvalidRecipient, func(*rig) {}, "a@bounce.invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOptions{})
			id := r.person(t, "A", tc.address, true)
			tc.stage(r)
			rec := r.accept(t, request(id))
			r.drain(t)
			d := r.rows(t, rec.Batch.ID)[0]
			if d.Status != outbound.Failed || d.Reason != tc.reason || d.Hint == "" || d.Detail == "" {
				t.Fatalf("row %+v, want failed %s with a hint and detail", d, tc.reason)
			}
		})
	}
}

// TestFailuresThatNeverEndAreRecorded: a send that keeps meeting an answer no policy knows is
// tried a bounded number of times; a message whose every delivery fails (here: the connection
// record cannot be read) is recorded failed on the queue's last delivery, instead of sitting in
// a dead-letter queue nobody reads. Both rows say why.
func TestFailuresThatNeverEndAreRecorded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stage  func(*rig)
		detail string
	}{
		{"unknown Graph answer", func(r *rig) {
			r.mailer.before = func(outmail.Message) error {
				return &errkind.Error{Kind: errkind.Other, Status: 418, Code: "Teapot", Message: "unexpected answer"}
			}
		}, "unexpected answer"},
		{"every delivery fails", func(r *rig) {
			r.conns.fail = errors.New("connection record unreadable")
		}, "connection record unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOptions{})
			ids := r.crowd(t, 1)
			rec := r.accept(t, request(ids...))
			tc.stage(r)
			r.drain(t)
			d := r.rows(t, rec.Batch.ID)[0]
			if d.Status != outbound.Failed || d.Reason != outbound.ReasonGaveUp || !strings.Contains(d.Detail, tc.detail) || d.Hint == "" {
				t.Fatalf("row %+v", d)
			}
			if n := len(r.env.Queue.DeadLettered()); n != 0 {
				t.Fatalf("%d dead-lettered: the last delivery should have recorded and completed", n)
			}
			r.wantMails(t, 0, "after giving up")
		})
	}
}

// TestReconcilerRevivesLostMessages: the queue loses every message (a local host restart); the
// reconciler queues the deliveries again and they go.
func TestReconcilerRevivesLostMessages(t *testing.T) {
	r := newRig(t, rigOptions{})
	ids := r.crowd(t, 3)
	rec := r.accept(t, request(ids...))
	// Dispatch runs, then the delivery messages are lost.
	if _, err := r.env.Queue.Drain(t.Context(), r.handle, queuetestOnce()); err == nil {
		t.Log("drained")
	}
	r.env.Queue.Lose()
	r.clock.Advance(time.Hour)
	rep, err := r.p.Reconcile(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Revived+rep.Dispatches == 0 {
		t.Fatalf("reconcile %+v revived nothing", rep)
	}
	r.drain(t)
	r.wantMails(t, 3, "after reconcile")
	rep, err = r.p.Reconcile(t.Context())
	if err != nil || rep.Settled+rep.Batches == 0 {
		t.Fatalf("second reconcile %+v %v", rep, err)
	}
	if p := r.progress(t, rec.Batch.ID); p.Counts[outbound.Sent] != 3 {
		t.Fatalf("progress %+v", p.Counts)
	}
}

// TestTeamsNeedsTeamsConnected: a message with the Teams channel is refused before anything is
// written while the org's Teams is not connected, and says why.
func TestTeamsNeedsTeamsConnected(t *testing.T) {
	r := newRig(t, rigOptions{})
	ids := r.crowd(t, 2)
	req := request(ids...)
	req.Channels = []string{outbound.Mail, outbound.Teams}
	_, err := r.p.Accept(t.Context(), r.org, req)
	if msg, ok := outbound.NotReady(err); !ok || !strings.Contains(msg, "Teams") {
		t.Fatalf("Accept = %v, want a Teams not-ready refusal", err)
	}
	if n := len(r.env.Queue.Pending()); n != 0 {
		t.Errorf("%d messages queued by a refused request", n)
	}
}

// TestAcceptRefusesBadInputWritingNothing: every bad request is an Invalid naming its fields,
// and no batch is written.
func TestAcceptRefusesBadInputWritingNothing(t *testing.T) {
	r := newRig(t, rigOptions{})
	id := r.person(t, "A", "a@fabrikam.example", true)
	tests := []struct {
		name   string
		mutate func(*outbound.Request)
		field  string
	}{
		{"no recipients", func(q *outbound.Request) { q.StakeholderIDs = nil }, "recipients"},
		{"no channel", func(q *outbound.Request) { q.Channels = nil }, "channels"},
		{"unknown channel", func(q *outbound.Request) { q.Channels = []string{"fax"} }, "channels[0]"},
		{"unknown kind", func(q *outbound.Request) { q.Kind = "spam" }, "kind"},
		{"no subject for mail", func(q *outbound.Request) { q.Subject = " " }, "subject"},
		{"no body", func(q *outbound.Request) { q.Text, q.HTML = "", "" }, "text"},
		{"unknown placeholder", func(q *outbound.Request) { q.Text = "Hi {{nickname}}" }, "text"},
		{"past schedule", func(q *outbound.Request) { q.ScheduleAt = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC) }, "scheduleAt"},
		{"unknown group", func(q *outbound.Request) { q.GroupIDs = []string{"no-such-group"} }, "groupIds[0]"},
		{"long subject", func(q *outbound.Request) { q.Subject = strings.Repeat("x", 300) }, "subject"},
		{"two-line subject", func(q *outbound.Request) { q.Subject = "a\nBcc: x@y" }, "subject"},
		{"html that sanitises to nothing", func(q *outbound.Request) { q.Text, q.HTML = "", "<script>alert(1)</script><img src=x>" }, "html"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := request(id)
			tc.mutate(&req)
			_, err := r.p.Accept(t.Context(), r.org, req)
			var bad outbound.Invalid
			if !errors.As(err, &bad) {
				t.Fatalf("got %v, want Invalid", err)
			}
			found := false
			for _, f := range bad {
				found = found || f.Field == tc.field
			}
			if !found {
				t.Fatalf("problems %v do not name %s", bad, tc.field)
			}
		})
	}
	list, _, err := r.p.Store().Batches(t.Context(), r.org, "", 10)
	if err != nil || len(list) != 0 || len(r.env.Queue.Published()) != 0 {
		t.Fatalf("bad requests wrote %d batches and %d messages (%v)", len(list), len(r.env.Queue.Published()), err)
	}
}

// TestHTMLIsSanitised: scripts, handlers and javascript: links are gone; formatting stays.
func TestHTMLIsSanitised(t *testing.T) {
	got := outbound.Sanitize(`<p onclick="x()">Hi <b>all</b><script>alert(1)</script> <a href="javascript:alert(1)">x</a> <a href="https://leap.example/c/1">details</a><img src="https://t.example/p.gif"></p>`)
	for _, bad := range []string{"script", "onclick", "javascript:", "<img"} {
		if strings.Contains(got, bad) {
			t.Errorf("sanitised HTML keeps %q: %s", bad, got)
		}
	}
	for _, good := range []string{"<b>all</b>", `href="https://leap.example/c/1"`, "<p>"} {
		if !strings.Contains(got, good) {
			t.Errorf("sanitised HTML lost %q: %s", good, got)
		}
	}
}

// TestDispatchChainUnderConcurrentWorkers: with workers taking messages at once, the next
// dispatch step can arrive before the step that queued it has recorded the batch's cursor; it
// fails (and is redelivered) instead of being dropped as a duplicate — a dropped step stalled a
// batch of 50 000 in the benchmark — and every recipient gets the mail.
func TestDispatchChainUnderConcurrentWorkers(t *testing.T) {
	r := newRig(t, rigOptions{limits: pacing.Limits{PerMinute: 600_000, DailyRecipients: 1 << 30},
		simLimits: m365sim.MailLimits{PerMinute: -1, DailyRecipients: -1, RequestsPer10Min: -1, Concurrency: -1}})
	ids := r.crowd(t, 700) // two dispatch steps
	r.group(t, "all", ids)
	req := request()
	req.GroupIDs = []string{"all"}
	rec := r.accept(t, req)
	early := fmt.Sprintf(`{"org":"acme","batch":%q,"dispatch":500}`, rec.Batch.ID)
	if err := r.p.HandleMail(t.Context(), []byte(early), 1); errkind.Of(err) != errkind.Conflict {
		t.Fatalf("a dispatch step ahead of the batch's cursor: %v, want a Conflict to be redelivered", err)
	}
	r.drainConcurrently(t, 8)
	if p := r.progress(t, rec.Batch.ID); p.Counts[outbound.Sent] != 700 {
		t.Fatalf("progress %+v, want 700 sent", p.Counts)
	}
	r.wantMails(t, 700, "in all")
}

// TestUnknownOutcomeIsCheckedEvenAfterAReauthorization: a worker dies after Graph took the mail;
// before the check, the connection needs re-authorization. The delivery waits without changing,
// and once connected again it is found in Sent Items: one mail, not two.
func TestUnknownOutcomeIsCheckedEvenAfterAReauthorization(t *testing.T) {
	r := newRig(t, rigOptions{})
	ids := r.crowd(t, 1)
	rec := r.accept(t, request(ids...))
	crashed := false
	r.mailer.after = func(outmail.Message) error {
		if crashed {
			return nil
		}
		crashed = true
		if err := r.conns.Store.NeedsReauthorization(t.Context(), r.org, "token refused", r.clock.Now()); err != nil {
			t.Error(err)
		}
		return errors.New("worker killed after Graph answered 202")
	}
	reconnectAt := r.clock.Now().Add(40 * time.Minute)
	_, err := r.env.Queue.Drain(t.Context(), r.handle, queuetest.DrainOptions{MaxDeliveries: 1000,
		Wait: func(_ context.Context, until time.Time) error {
			r.clock.Set(until)
			if rec, _, _ := r.conns.Store.Get(t.Context(), r.org); !r.clock.Now().Before(reconnectAt) && rec.Status != connection.Connected {
				rec.Status = connection.Connected
				if _, err := r.conns.Store.Put(t.Context(), r.org, rec, "*"); err != nil {
					return err
				}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	d := r.rows(t, rec.Batch.ID)[0]
	if n := r.mails(); n != 1 || d.Status != outbound.Sent || !d.Verified {
		t.Fatalf("%d mails, row %+v: want one mail, verified in Sent Items", n, d)
	}
}

// TestRetriedAcceptNeverResetsRows: a retry with the same key finds the batch still accepting
// (the first request's answer was lost after its dispatch began); it writes only missing rows,
// so what went stays sent and nothing goes twice. The same key for another message is refused.
func TestRetriedAcceptNeverResetsRows(t *testing.T) {
	r := newRig(t, rigOptions{})
	ids := r.crowd(t, 3)
	req := request(ids...)
	req.IdempotencyKey = "send-7"
	first := r.accept(t, req)
	r.drain(t)
	if err := r.p.Store().SetState(t.Context(), r.org, first.Batch.ID, outbound.Accepting); err != nil {
		t.Fatal(err)
	}
	again, err := r.p.Accept(t.Context(), r.org, req)
	if err != nil || again.Batch.ID != first.Batch.ID {
		t.Fatalf("retry: %v, batch %s", err, again.Batch.ID)
	}
	r.drain(t)
	if p := r.progress(t, first.Batch.ID); p.Counts[outbound.Sent] != 3 || r.mails() != 3 {
		t.Fatalf("progress %+v, %d mails: want 3 sent once", p.Counts, r.mails())
	}
	other := req
	other.Subject = "Something else"
	if _, err := r.p.Accept(t.Context(), r.org, other); !errors.Is(err, outbound.ErrKeyReused) {
		t.Fatalf("the key for another message: %v, want ErrKeyReused", err)
	}
}

// TestCancelAfterEverythingWentChangesNothing: a settled batch stays settled.
func TestCancelAfterEverythingWentChangesNothing(t *testing.T) {
	r := newRig(t, rigOptions{})
	rec := r.accept(t, request(r.crowd(t, 2)...))
	r.drain(t)
	r.progress(t, rec.Batch.ID) // settles it
	c, err := r.p.Cancel(t.Context(), r.org, rec.Batch.ID)
	if err != nil || c.Sent != 2 || c.Cancelled != 0 || c.Batch.State != outbound.Settled {
		t.Fatalf("cancel of a settled batch: %+v %v", c, err)
	}
}

// TestAddressesAreRecipients: watchers named by address get the mail like stakeholders; an
// address a stakeholder of the message already has is sent once; bad addresses are refused.
func TestAddressesAreRecipients(t *testing.T) {
	r := newRig(t, rigOptions{})
	ids := r.crowd(t, 1)
	req := request(ids...)
	req.Addresses = []string{"watcher@fabrikam.example", "P000@fabrikam.example"}
	rec := r.accept(t, req)
	r.drain(t)
	if p := r.progress(t, rec.Batch.ID); p.Counts[outbound.Sent] != 2 || p.Counts[outbound.Skipped] != 1 {
		t.Fatalf("counts %+v, want 2 sent and the repeated address skipped", p.Counts)
	}
	if got := r.sentTo(); got["watcher@fabrikam.example"] != 1 || got["p000@fabrikam.example"]+got["P000@fabrikam.example"] != 1 {
		t.Errorf("mailed %v", got)
	}
	bad := request(ids...)
	bad.Addresses = []string{"not an address"}
	var inv outbound.Invalid
	if _, err := r.p.Accept(t.Context(), r.org, bad); !errors.As(err, &inv) || inv[0].Field != "addresses[0]" {
		t.Errorf("a bad address: %v", err)
	}
}
