package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

// monitorChannel turns monitoring on for the default channel with a few keywords and two
// watchers (a stakeholder in Teams, an address by mail), posts messages in the simulated
// channel (one matching in another case, one with accents, one in Japanese, one not matching;
// then an edit and a deletion), and prints the insights and the alerts. It reports whether
// everything ended as expected.
func monitorChannel(ctx context.Context, api *client, sim *m365sim.Server, watcherID, watcherOID string, out io.Writer) (bool, error) {
	var conn struct {
		DefaultChannels []struct{ TeamID, ChannelID, TeamName, ChannelName string }
	}
	if err := api.do(ctx, "GET", "/teams", nil, &conn); err != nil {
		return false, err
	}
	if len(conn.DefaultChannels) == 0 {
		return false, fmt.Errorf("Teams has no default channel")
	}
	ch := conn.DefaultChannels[0]
	var view struct {
		Enabled       bool
		Keywords      []string
		Subscriptions []struct {
			ID       string
			Expires  time.Time
			RichData bool
			Healthy  bool
		}
	}
	settings := map[string]any{
		"enabled":  true,
		"channels": []map[string]string{{"teamId": ch.TeamID, "channelId": ch.ChannelID}},
		"keywords": []string{"expense tool", "go-live", "Büro", "出張"},
		"watchers": []map[string]string{{"stakeholderId": watcherID, "channel": "teams"}, {"email": "change-office@fabrikam.example", "channel": "mail"}},
	}
	if err := api.do(ctx, "PUT", "/teams/monitoring", settings, &view); err != nil {
		return false, err
	}
	fmt.Fprintf(out, "monitoring %q › %q for %v; %d subscription(s)", ch.TeamName, ch.ChannelName, view.Keywords, len(view.Subscriptions))
	for _, s := range view.Subscriptions {
		fmt.Fprintf(out, " (resource data encrypted: %v, expires %s, healthy %v)", s.RichData, s.Expires.Format(time.RFC3339), s.Healthy)
	}
	fmt.Fprintln(out)

	users := sim.Users(tenantID)
	author := users[5]
	post := func(html string) (string, error) {
		return sim.PostChannelMessage(tenantID, ch.TeamID, ch.ChannelID, m365sim.ChannelMessageInput{AuthorID: author.ID, AuthorName: author.DisplayName, Content: html})
	}
	messages := []string{
		"<p>Heads-up: the <b>EXPENSE TOOL</b> replaces the paper forms next week.</p>",
		"<p>Das neue buro in Hamburg öffnet am Montag &ndash; and the Go Live date is fixed.</p>",
		"<p>来週の出張申請は新しいツールで。</p>",
		"<p>Lunch at noon, anyone?</p>",
		"<p>Is the expenses toolkit ready?</p>", // "expense tool" is not a word of it
	}
	var ids []string
	for _, m := range messages {
		id, err := post(m)
		if err != nil {
			return false, err
		}
		ids = append(ids, id)
	}
	type insight struct {
		MessageID, AuthorName, Excerpt, DeepLink string
		Keywords                                 []string
		Edited, Deleted                          bool
	}
	var list struct{ Insights []insight }
	// wait polls the insights until done says so (a minute at most: the demo must end).
	wait := func(done func() bool) error {
		deadline := time.Now().Add(time.Minute)
		for {
			if err := sim.WaitDeliveries(ctx); err != nil {
				return err
			}
			if err := api.do(ctx, "GET", "/insights", nil, &list); err != nil {
				return err
			}
			if done() || time.Now().After(deadline) {
				return nil
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	if err := wait(func() bool { return len(list.Insights) >= 3 }); err != nil {
		return false, err
	}
	fmt.Fprintf(out, "%s posted %d messages in the channel: %d insights\n", author.DisplayName, len(messages), len(list.Insights))
	if err := sim.EditChannelMessage(tenantID, ch.TeamID, ch.ChannelID, ids[0], "<p>Update: the <b>expense tool</b> go-live moves to Tuesday.</p>"); err != nil {
		return false, err
	}
	if err := sim.EditChannelMessage(tenantID, ch.TeamID, ch.ChannelID, ids[3], "<p>Lunch at noon, then a walkthrough of the expense tool.</p>"); err != nil {
		return false, err
	}
	if err := sim.DeleteChannelMessage(tenantID, ch.TeamID, ch.ChannelID, ids[2]); err != nil {
		return false, err
	}
	fmt.Fprintln(out, "then edited two messages (one now matching) and deleted one")
	if err := wait(func() bool {
		edited, deleted := false, false
		for _, in := range list.Insights {
			edited, deleted = edited || in.Edited, deleted || in.Deleted
		}
		return len(list.Insights) >= 4 && edited && deleted
	}); err != nil {
		return false, err
	}
	for _, in := range list.Insights {
		state := ""
		if in.Edited {
			state += " (edited)"
		}
		if in.Deleted {
			state += " (deleted)"
		}
		fmt.Fprintf(out, "  insight%s: %v in %q\n", state, in.Keywords, in.Excerpt)
	}
	// The alerts: by mail to the address, in Teams to the watcher. They go through the outbound
	// queues (Teams at the conversation's pace): wait for them a minute at most.
	var mails, cards int
	var firstMail, firstCard string
	for deadline := time.Now().Add(time.Minute); ; {
		mails, cards, firstMail, firstCard = 0, 0, "", ""
		for _, m := range sim.SentMail(tenantID) {
			for _, to := range m.To {
				if strings.EqualFold(to, "change-office@fabrikam.example") {
					mails++
					if mails == 1 {
						firstMail = m.Subject
					}
				}
			}
		}
		for _, p := range sim.BotPosted(sim.BotConversation(tenantID, watcherOID)) {
			if p.Op == "send" && strings.Contains(string(p.Activity), "mentioned in") {
				cards++
				if cards == 1 {
					firstCard = cardOf(p.Activity).String()
				}
			}
		}
		if (mails >= 4 && cards >= 4) || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if firstMail != "" {
		fmt.Fprintf(out, "  alert by mail to change-office@fabrikam.example: %q\n", firstMail)
	}
	if firstCard != "" {
		fmt.Fprintf(out, "  alert in Teams to the watcher: %s\n", firstCard)
	}
	stats := sim.WebhookStats()
	fmt.Fprintf(out, "alerts: %d by mail, %d in Teams (one per matching message); webhook acks p50 %v, p99 %v, %d slow, %d failed\n",
		mails, cards, stats.AckP50.Round(time.Millisecond), stats.AckP99.Round(time.Millisecond), stats.Slow, stats.Failed)
	matched := 0
	for _, in := range list.Insights {
		if len(in.Keywords) > 0 {
			matched++
		}
	}
	ok := len(list.Insights) == 4 && matched >= 3 && mails == 4 && cards == 4 && stats.Failed == 0
	return ok, nil
}
