package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

// topLevelGroups are the tenant's groups that no other group contains (at most the 50 a group
// filter takes).
func topLevelGroups(sim *m365sim.Server) []string {
	nested := map[string]bool{}
	groups := sim.Groups(tenantID)
	for _, g := range groups {
		members, _ := sim.Members(tenantID, g.ID)
		for _, m := range members {
			if m.IsGroup {
				nested[m.ID] = true
			}
		}
	}
	var out []string
	for _, g := range groups {
		if !nested[g.ID] && len(out) < 50 {
			out = append(out, g.ID)
		}
	}
	return out
}

type groupView struct {
	ID, Name, Source string
	Members          int
}

// smallestSyncedGroup is the synced stakeholder group with the fewest members, at least min.
func smallestSyncedGroup(ctx context.Context, api *client, min int) (groupView, error) {
	var groups struct {
		Groups []groupView `json:"groups"`
	}
	if err := api.do(ctx, "GET", "/groups", nil, &groups); err != nil {
		return groupView{}, err
	}
	pick := -1
	for i, g := range groups.Groups {
		if g.Source == "entra" && g.Members >= min && (pick < 0 || g.Members < groups.Groups[pick].Members) {
			pick = i
		}
	}
	if pick < 0 {
		return groupView{}, fmt.Errorf("no synced stakeholder group with %d members or more", min)
	}
	return groups.Groups[pick], nil
}

type batchView struct {
	ID                 string         `json:"batchId"`
	State              string         `json:"state"`
	Recipients         int            `json:"recipients"`
	Counts             map[string]int `json:"counts"`
	Skipped            map[string]int `json:"skipped"`
	ExpectedCompletion time.Time      `json:"expectedCompletion"`
	Rows               []struct {
		ID, Address, Status, Reason, Hint, Detail, Mailbox string
	} `json:"deliveryRows"`
}

// notify sets the sender mailboxes, sends a personalised notification to the smallest synced
// stakeholder group of at least 20 members plus a stakeholder whose address Exchange refuses,
// and prints the batch's progress until every delivery is final. It reports whether the
// outcome is the expected one: every member sent exactly once, the bad address failed with a
// reason, no simulated limit tripped.
func notify(ctx context.Context, api *client, sim *m365sim.Server, out io.Writer) (bool, error) {
	var ms map[string]any
	if err := api.do(ctx, "PUT", "/m365/settings/mail", map[string]any{"senders": senders, "replyTo": "change-team@fabrikam.example"}, &ms); err != nil {
		return false, err
	}
	fmt.Fprintf(out, "sender mailboxes %v (checked in the tenant), %d mails a minute each in this demo (Exchange Online: 30)\n", ms["senders"], demoMailPerMinute)
	g, err := smallestSyncedGroup(ctx, api, 20)
	if err != nil {
		return false, err
	}
	var bounce map[string]any
	if err := api.do(ctx, "POST", "/stakeholders", map[string]any{"firstName": "Pat", "lastName": "Typo", "email": "pat.typo@fabrikam.invalid"}, &bounce); err != nil {
		return false, err
	}
	var accepted batchView
	if err := api.do(ctx, "POST", "/messages", map[string]any{
		"recipients": map[string]any{"groupIds": []string{g.ID}, "stakeholderIds": []string{bounce["id"].(string)}},
		"channels":   []string{"mail"}, "kind": "notification",
		"subject":        "{{firstName}}, the new expense tool goes live on Monday",
		"html":           "<p>Hello {{firstName}},</p><p>The <b>new expense tool</b> replaces the old forms on Monday. <a href=\"https://leap.example/changes/42\">What changes for you</a>.</p><script>alert(1)</script>",
		"idempotencyKey": "demo-notification-1",
	}, &accepted); err != nil {
		return false, err
	}
	fmt.Fprintf(out, "batch %s to group %q (%d members) and Pat Typo <pat.typo@fabrikam.invalid>: %d recipients, expected done by %s\n",
		accepted.ID, g.Name, g.Members, accepted.Recipients, accepted.ExpectedCompletion.Format("15:04:05"))
	var last string
	var b batchView
	for {
		if err := api.do(ctx, "GET", "/messages/"+accepted.ID+"?status=failed", nil, &b); err != nil {
			return false, err
		}
		line := fmt.Sprintf("  %s  sent %d, queued %d, sending %d, scheduled %d, failed %d, skipped %d",
			b.State, b.Counts["sent"], b.Counts["queued"], b.Counts["sending"], b.Counts["scheduled"], b.Counts["failed"], b.Counts["skipped"])
		if line != last {
			fmt.Fprintf(out, "%s %s\n", time.Now().Format("15:04:05.0"), line)
			last = line
		}
		if b.Counts["queued"]+b.Counts["sending"]+b.Counts["scheduled"] == 0 {
			break
		}
		if err := pause(ctx, 500*time.Millisecond); err != nil {
			return false, err
		}
	}
	for _, r := range b.Rows {
		fmt.Fprintf(out, "failed: %s <%s>: %s — %s (%s)\n", r.ID, r.Address, r.Reason, r.Hint, r.Detail)
	}
	mails := sim.SentMail(tenantID)
	per := map[string]int{}
	twice, script := 0, false
	for _, m := range mails {
		for _, to := range m.To {
			per[strings.ToLower(to)]++
			if per[strings.ToLower(to)] == 2 {
				twice++
			}
		}
		script = script || strings.Contains(m.Content, "<script")
		per["from:"+m.From]++
	}
	stats := sim.MailStats()
	fmt.Fprintf(out, "the simulated tenant accepted %d mails (%d from %s, %d from %s); limits tripped: %d; addresses mailed twice: %d\n",
		len(mails), per["from:"+senders[0]], senders[0], per["from:"+senders[1]], senders[1], stats.Violations(), twice)
	if len(mails) > 0 {
		fmt.Fprintf(out, "first mail: %q to %v, sanitised body %q\n", mails[0].Subject, mails[0].To, mails[0].Content)
	}
	ok := b.Counts["failed"] == 1 && len(b.Rows) == 1 && b.Rows[0].Reason == "invalid_recipient" &&
		b.Counts["sent"] == len(mails) && b.Counts["sent"] >= 20 && twice == 0 && stats.Violations() == 0 && !script &&
		slices.Contains([]string{"settled", "dispatched"}, b.State)
	return ok, nil
}
