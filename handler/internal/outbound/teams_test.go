package outbound_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// posted returns the cards the bot posted to a user's 1:1 conversation.
func (r *rig) posted(t *testing.T, entraID string) []m365sim.PostedActivity {
	t.Helper()
	var out []m365sim.PostedActivity
	for _, p := range r.env.Sim.BotPosted(r.env.Sim.BotConversation(testenv.Tenant, entraID)) {
		if p.Op == "send" {
			out = append(out, p)
		}
	}
	return out
}

// TestTeamsDeliveryPostsOnce: a Teams message reaches each person as one card — whether the bot
// already had their conversation or had to install the app for them through Graph — and a
// redelivered message posts nothing more.
func TestTeamsDeliveryPostsOnce(t *testing.T) {
	r := newRig(t, rigOptions{teams: true})
	known, knownOID := r.member(t, "Ada", true)
	fresh, freshOID := r.member(t, "Ben", false)
	rec := r.accept(t, teamsRequest(known, fresh))
	r.drain(t)
	p := r.progress(t, rec.Batch.ID)
	if p.Counts[outbound.Sent] != 2 {
		t.Fatalf("counts %+v, want 2 sent", p.Counts)
	}
	for _, oid := range []string{knownOID, freshOID} {
		got := r.posted(t, oid)
		if len(got) != 1 || !strings.Contains(string(got[0].Activity), "Change ahead") || !strings.Contains(string(got[0].Activity), "adaptive") {
			t.Fatalf("posted to %s: %+v, want one card", oid, got)
		}
	}
	rows := r.rows(t, rec.Batch.ID)
	for _, d := range rows {
		if d.ActivityID == "" || d.ConversationID == "" {
			t.Errorf("row %s recorded no activity: %+v", d.ID(), d)
		}
	}
	ref, _, err := r.teams.convs.Get(t.Context(), r.org, freshOID)
	if err != nil || ref.InstallationID == "" || ref.ConversationID == "" || !rows[1].Installed {
		t.Errorf("Ben's reference after the Graph install: %+v %v (row %+v)", ref, err, rows[1])
	}
	// Service Bus may deliver a message again: every Teams message goes once more.
	for _, m := range r.env.Queue.Published() {
		if m.Queue == queue.OutboundTeams {
			if err := r.p.HandleTeams(t.Context(), m.Body, 2); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := r.env.Sim.BotStats(); st.Sent != 2 || st.Violations != 0 {
		t.Errorf("Bot Connector stats %+v, want 2 posts and no violation", st)
	}
}

// TestTeamsUnreachablePeople: a person who blocked the bot is unreachable (final, no retry);
// one who removed the app is skipped with the reason; a manual stakeholder has no Teams
// identity.
func TestTeamsUnreachablePeople(t *testing.T) {
	r := newRig(t, rigOptions{teams: true})
	blocked, blockedOID := r.member(t, "Cal", true)
	gone, goneOID := r.member(t, "Dee", true)
	manual := r.person(t, "Eve", "eve@fabrikam.example", true)
	r.env.Sim.BlockBot(testenv.Tenant, blockedOID)
	if err := r.teams.convs.Gone(t.Context(), r.org, goneOID, conversations.Uninstalled, r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	rec := r.accept(t, teamsRequest(blocked, gone, manual))
	r.drain(t)
	want := map[string]struct {
		status outbound.Status
		reason string
	}{
		blocked: {outbound.Unreachable, outbound.ReasonBotBlocked},
		gone:    {outbound.Skipped, outbound.ReasonAppUninstalled},
		manual:  {outbound.Skipped, outbound.ReasonNoTeamsIdentity},
	}
	for _, d := range r.rows(t, rec.Batch.ID) {
		if w := want[d.StakeholderID]; d.Status != w.status || d.Reason != w.reason || d.Hint == "" {
			t.Errorf("%s: %s/%s (%q), want %s/%s with a hint", d.FirstName, d.Status, d.Reason, d.Hint, w.status, w.reason)
		}
	}
	if ref, _, _ := r.teams.convs.Get(t.Context(), r.org, blockedOID); ref.State != conversations.Blocked {
		t.Errorf("the blocked person's reference: %+v", ref)
	}
	// A second message to the blocked person does not even try.
	before := r.env.Sim.BotStats().Blocked
	rec = r.accept(t, teamsRequest(blocked))
	r.drain(t)
	if rows := r.rows(t, rec.Batch.ID); rows[0].Status != outbound.Unreachable || r.env.Sim.BotStats().Blocked != before {
		t.Errorf("second message: %+v, blocked answers %d → %d", rows[0], before, r.env.Sim.BotStats().Blocked)
	}
}

// TestTeamsThrottlingAndFailures: a 429 waits and goes at a fresh slot; a 502 (which may have
// posted) goes again, marked resent; neither is lost.
func TestTeamsThrottlingAndFailures(t *testing.T) {
	r := newRig(t, rigOptions{teams: true})
	a, aOID := r.member(t, "Fay", true)
	b, bOID := r.member(t, "Gus", true)
	path := func(oid string) string {
		u, _ := url.Parse(r.env.Sim.BotServiceURL())
		return u.Path + "v3/conversations/" + url.PathEscape(r.env.Sim.BotConversation(testenv.Tenant, oid)) + "/activities"
	}
	r.env.Sim.AddFault(m365sim.FaultRule{PathPrefix: path(aOID), Times: 1, Status: 429, RetryAfter: 3 * time.Second})
	r.env.Sim.AddFault(m365sim.FaultRule{PathPrefix: path(bOID), Times: 1, Status: 502})
	rec := r.accept(t, teamsRequest(a, b))
	r.drain(t)
	rows := r.rows(t, rec.Batch.ID)
	if rows[0].Status != outbound.Sent || rows[0].Attempts != 2 || rows[0].Resent || len(r.posted(t, aOID)) != 1 {
		t.Errorf("after a 429: %+v, posted %d", rows[0], len(r.posted(t, aOID)))
	}
	if rows[1].Status != outbound.Sent || rows[1].Attempts != 2 || !rows[1].Resent || len(r.posted(t, bOID)) != 1 {
		t.Errorf("after a 502: %+v, posted %d", rows[1], len(r.posted(t, bOID)))
	}
	if st := r.env.Sim.BotStats(); st.Violations != 0 || st.Faults != 2 {
		t.Errorf("Bot Connector stats %+v", st)
	}
}

// TestTeamsScheduledSendAndCancel: a scheduled Teams message goes at its time; cancelled
// before, it never goes.
func TestTeamsScheduledSendAndCancel(t *testing.T) {
	r := newRig(t, rigOptions{teams: true})
	id, oid := r.member(t, "Hal", true)
	later := teamsRequest(id)
	later.ScheduleAt = r.clock.Now().Add(2 * time.Hour)
	keep := r.accept(t, later)
	later.IdempotencyKey, later.Subject = "second", "Cancelled notice"
	drop := r.accept(t, later)
	if _, err := r.p.Cancel(t.Context(), r.org, drop.Batch.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.env.Queue.Drain(t.Context(), r.handle, queuetestOnce()); err != nil && !errors.Is(err, errStop) {
		t.Fatal(err)
	}
	if got := r.posted(t, oid); len(got) != 0 {
		t.Fatalf("posted before the scheduled time: %d", len(got))
	}
	r.drain(t)
	got := r.posted(t, oid)
	if len(got) != 1 || strings.Contains(string(got[0].Activity), "Cancelled notice") {
		t.Fatalf("posted %d (%v), want only the kept one", len(got), got)
	}
	if got[0].At.Before(later.ScheduleAt) {
		t.Errorf("posted at %v, before its time %v", got[0].At, later.ScheduleAt)
	}
	if p := r.progress(t, keep.Batch.ID); p.Counts[outbound.Sent] != 1 {
		t.Errorf("kept batch %+v", p.Counts)
	}
	if p := r.progress(t, drop.Batch.ID); p.Counts[outbound.Cancelled] != 1 {
		t.Errorf("cancelled batch %+v", p.Counts)
	}
}

// TestTeamsKeepsTheTenantRate: 120 people at a tenant limit of 10 requests a second: every card
// goes, paced, and the simulated Bot Connector counts no violation.
func TestTeamsKeepsTheTenantRate(t *testing.T) {
	r := newRig(t, rigOptions{teams: true, teamsRate: 10})
	var ids []string
	for i := range 120 {
		id, _ := r.member(t, "P"+string(rune('a'+i%26))+strings.Repeat("x", i/26), true)
		ids = append(ids, id)
	}
	start := r.clock.Now()
	rec := r.accept(t, teamsRequest(ids...))
	r.drain(t)
	if p := r.progress(t, rec.Batch.ID); p.Counts[outbound.Sent] != 120 {
		t.Fatalf("counts %+v", p.Counts)
	}
	st := r.env.Sim.BotStats()
	if st.Violations != 0 || st.Sent != 120 {
		t.Errorf("Bot Connector stats %+v, want 120 posts and no violation", st)
	}
	if took := st.Last.Sub(start); took < 11*time.Second {
		t.Errorf("120 posts in %v of simulated time: faster than 10 a second", took)
	}
}

// TestSurveyResponsesAreRecorded: the recipient's answer is recorded on their delivery and
// tallied; someone else cannot answer for them; a choice that is not the survey's is refused.
func TestSurveyResponsesAreRecorded(t *testing.T) {
	r := newRig(t, rigOptions{teams: true})
	id, oid := r.member(t, "Ivy", true)
	_, otherOID := r.member(t, "Jon", true)
	req := teamsRequest(id)
	req.Kind = "survey_invitation"
	req.Survey = &outbound.Survey{URL: "https://survey.leapchange.example/s/1", Question: "Ready?", Choices: []string{"Yes", "Not yet"}}
	rec := r.accept(t, req)
	r.drain(t)
	card := string(r.posted(t, oid)[0].Activity)
	for _, w := range []string{"Action.Execute", "Action.Submit", "Not yet", "survey.leapchange.example"} {
		if !strings.Contains(card, w) {
			t.Errorf("the survey card lacks %q: %s", w, card)
		}
	}
	if _, _, err := r.p.Respond(t.Context(), r.org, rec.Batch.ID, 0, otherOID, "Yes"); !errors.Is(err, outbound.ErrNotYours) {
		t.Errorf("someone else answering: %v", err)
	}
	if _, _, err := r.p.Respond(t.Context(), r.org, rec.Batch.ID, 0, oid, "Maybe"); err == nil {
		t.Error("an answer that is not a choice was recorded")
	}
	if _, d, err := r.p.Respond(t.Context(), r.org, rec.Batch.ID, 0, oid, "Not yet"); err != nil || d.Response != "Not yet" {
		t.Fatalf("Respond = %+v, %v", d, err)
	}
	got, err := r.p.Responses(t.Context(), r.org, rec.Batch.ID)
	if err != nil || len(got) != 1 || got["Not yet"] != 1 {
		t.Errorf("responses %v %v", got, err)
	}
	var buf strings.Builder
	json.NewEncoder(&buf).Encode(r.rows(t, rec.Batch.ID))
	if !strings.Contains(buf.String(), `"response":"Not yet"`) {
		t.Errorf("rows %s", buf.String())
	}
}

var _ = queuetest.MaxDeliveries

// TestTeamsWorkerStoppedMidSend: a message redelivered while its delivery is still "sending"
// waits for the call it may be racing, then goes again, marked resent (Teams cannot be asked
// whether it arrived).
func TestTeamsWorkerStoppedMidSend(t *testing.T) {
	r := newRig(t, rigOptions{teams: true})
	id, oid := r.member(t, "Kim", true)
	stopped := false
	r.teams.before = func(d queuetest.Delivery) error {
		if stopped {
			return nil
		}
		var j outbound.Job
		if err := json.Unmarshal(d.Body, &j); err != nil || j.Key == "" {
			return nil
		}
		// The worker claimed the row and stopped before recording the outcome.
		stopped = true
		rows := r.rows(t, j.Batch)
		row := rows[0]
		row.Status, row.SendingSince, row.Attempts = outbound.Sending, r.clock.Now(), row.Attempts+1
		if err := r.p.Store().SetDelivery(t.Context(), r.org, row); err != nil {
			t.Fatal(err)
		}
		return errors.New("worker stopped")
	}
	rec := r.accept(t, teamsRequest(id))
	r.drain(t)
	rows := r.rows(t, rec.Batch.ID)
	if rows[0].Status != outbound.Sent || !rows[0].Resent || len(r.posted(t, oid)) != 1 {
		t.Fatalf("after a stopped worker: %+v, posted %d", rows[0], len(r.posted(t, oid)))
	}
}

// TestGateSpacesCalls: a tenant's calls through the gate wait their turn (a backlog past the
// bound is refused, not slept on; a wait ends with its context), and another tenant's are not
// held up. (Behaviour only: how long a wait took is not asserted.)
func TestGateSpacesCalls(t *testing.T) {
	if ok, err := outbound.NewGate(1000).Wait(t.Context(), "a"); !ok || err != nil {
		t.Fatalf("a first call: %v %v", ok, err)
	}
	slow := outbound.NewGate(1) // ~1.05 s apart: the fourth call would wait over 3 s
	for i, want := range []bool{true, true, true, false} {
		if i == 0 {
			if ok, _ := slow.Wait(t.Context(), "b"); !ok {
				t.Fatal("the first call was refused")
			}
			continue
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // a call that would wait returns at once with the context's error
		ok, err := slow.Wait(ctx, "b")
		if want && (ok || err == nil) {
			t.Errorf("call %d: %v %v, want a wait cut short by the context", i, ok, err)
		}
		if !want && (ok || err != nil) {
			t.Errorf("call %d: %v %v, want refused without waiting", i, ok, err)
		}
	}
	if ok, err := slow.Wait(t.Context(), "c"); !ok || err != nil {
		t.Errorf("another tenant: %v %v", ok, err)
	}
}
