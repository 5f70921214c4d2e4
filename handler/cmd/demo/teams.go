package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

// The demo's Teams bot registration: its own app in its own home tenant (single-tenant bots are
// installed into customer tenants).
const (
	botAppID  = "7e3b1c55-2a9d-4f60-8b17-0c4d5e6f7a8b"
	botTenant = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
)

// teamsPermissions are what the demo app asks for besides sync and mail.
var teamsPermissions = []string{"TeamsAppInstallation.ReadWriteSelfForUser.All", "Team.ReadBasic.All", "Channel.ReadBasic.All", "AppCatalog.Read.All"}

// card is the part of a posted Adaptive Card the demo prints and clicks.
type card struct {
	Body []struct {
		Type, Text string
		Facts      []struct{ Title, Value string }
	}
	Actions []struct {
		Type, Title, Verb, URL string
		Data                   json.RawMessage
	}
}

// cardOf reads the card of a posted activity.
func cardOf(activity json.RawMessage) card {
	var a struct {
		Attachments []struct {
			Content card `json:"content"`
		}
	}
	json.Unmarshal(activity, &a)
	if len(a.Attachments) == 0 {
		return card{}
	}
	return a.Attachments[0].Content
}

// String is the card as a person reads it: its texts and facts, then its buttons.
func (c card) String() string {
	var parts []string
	for _, b := range c.Body {
		switch {
		case b.Text != "":
			parts = append(parts, strings.ReplaceAll(strings.ReplaceAll(b.Text, "\\", ""), "\n", " "))
		case len(b.Facts) > 0:
			for _, f := range b.Facts {
				parts = append(parts, f.Title+": "+f.Value)
			}
		}
	}
	var buttons []string
	for _, a := range c.Actions {
		buttons = append(buttons, "["+a.Title+"]")
	}
	if len(buttons) > 0 {
		parts = append(parts, strings.Join(buttons, " "))
	}
	return strings.Join(parts, " | ")
}

// lastCard is the latest card the bot sent to a person (op "send" or "update").
func lastCard(sim *m365sim.Server, userID string) (m365sim.PostedActivity, bool) {
	posted := sim.BotPosted(sim.BotConversation(tenantID, userID))
	if len(posted) == 0 {
		return m365sim.PostedActivity{}, false
	}
	return posted[len(posted)-1], true
}

// awaitReply waits for the bot's next post in a person's conversation after the first before: an
// answer that takes the bot longer than its in-request budget (a loaded machine) comes through
// the queue, at the conversation's pace.
func awaitReply(ctx context.Context, sim *m365sim.Server, userID string, before int) (m365sim.PostedActivity, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if posted := sim.BotPosted(sim.BotConversation(tenantID, userID)); len(posted) > before {
			return posted[before], nil
		}
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			return m365sim.PostedActivity{}, errors.New("no answer within a minute")
		}
	}
}

// teams connects Teams, publishes change summaries, lets a few people open the app, sends a
// survey invitation in Teams to a group (installing the app for those who never opened it),
// answers it as one of them and asks the bot who is and my changes. It prints what each person
// saw and reports whether everything ended as expected.
// It returns the stakeholder id and Entra object id of the person who asked (they have the app).
func teams(ctx context.Context, api *client, sim *m365sim.Server, catalogID string, out io.Writer) (bool, [2]string, error) {
	var page struct {
		Teams []struct {
			ID, DisplayName string
			Channels        []struct{ ID, DisplayName string }
		}
	}
	if err := api.do(ctx, "GET", "/teams/channels", nil, &page); err != nil {
		return false, [2]string{}, err
	}
	if len(page.Teams) == 0 || len(page.Teams[0].Channels) == 0 {
		return false, [2]string{}, errors.New("the tenant has no team with a channel")
	}
	team, ch := page.Teams[0], page.Teams[0].Channels[0]
	var conn struct {
		Status, CatalogAppID, CatalogSource string
		Granted                             []string
		DefaultChannels                     []struct{ TeamName, ChannelName string }
	}
	if err := api.do(ctx, "POST", "/teams/connect", map[string]any{"defaultChannels": []map[string]string{{"teamId": team.ID, "channelId": ch.ID}}}, &conn); err != nil {
		return false, [2]string{}, err
	}
	fmt.Fprintf(out, "Teams %s: app %s (from the %s), permissions %v, default channel %q › %q (of %d teams listed)\n",
		conn.Status, conn.CatalogAppID, conn.CatalogSource, conn.Granted, team.DisplayName, conn.DefaultChannels[0].ChannelName, len(page.Teams))

	// The survey goes to the smallest synced group of at least 6 members; three of them opened
	// the app themselves before, the others get it installed through Graph.
	g, err := smallestSyncedGroup(ctx, api, 6)
	if err != nil {
		return false, [2]string{}, err
	}
	var members struct {
		Members []struct {
			StakeholderID string `json:"stakeholderId"`
			Active        bool   `json:"active"`
		} `json:"members"`
	}
	if err := api.do(ctx, "GET", "/groups/"+g.ID+"/members", nil, &members); err != nil {
		return false, [2]string{}, err
	}
	type person struct {
		ID, FirstName, LastName, ExternalID string
	}
	var people []person
	for _, m := range members.Members {
		if !m.Active || len(people) == 8 {
			continue
		}
		var p person
		if err := api.do(ctx, "GET", "/stakeholders/"+m.StakeholderID, nil, &p); err != nil {
			return false, [2]string{}, err
		}
		people = append(people, p)
	}
	if len(people) < 6 {
		return false, [2]string{}, fmt.Errorf("group %q has %d active members", g.Name, len(people))
	}
	var ids []string
	for i, p := range people {
		ids = append(ids, p.ID)
		if i < 3 {
			if _, err := sim.InstallTeamsApp(tenantID, p.ExternalID, catalogID); err != nil {
				return false, [2]string{}, err
			}
		}
	}
	sim.BotWait() // Teams tells the bot of each install (conversationUpdate), as it does
	fmt.Fprintf(out, "%s, %s and %s opened the Leap Change app in Teams; the bot keeps where to reach them\n",
		people[0].FirstName, people[1].FirstName, people[2].FirstName)

	asker := people[0]
	for _, c := range []map[string]any{
		{"id": "chg-expense", "title": "New expense tool", "status": "in_progress", "description": "The new expense tool replaces the paper forms.",
			"impactedGroupIds": []string{g.ID}, "startDate": "2026-12-07", "endDate": "2027-01-31", "url": "https://app.leapchange.example/changes/chg-expense",
			"owner": map[string]string{"name": "Morgan Lee"}},
		{"id": "chg-office", "title": "Office move to Harbour Street", "status": "planned", "impactedStakeholderIds": []string{asker.ID}, "startDate": "2027-02-01"},
		{"id": "chg-robots", "title": "Warehouse robots", "status": "planned"},
	} {
		var put map[string]any
		if err := api.do(ctx, "PUT", "/changes/"+c["id"].(string), c, &put); err != nil {
			return false, [2]string{}, err
		}
	}
	fmt.Fprintln(out, "the web app published 3 change summaries (one impacts the group, one "+asker.FirstName+" directly)")

	var accepted batchView
	if err := api.do(ctx, "POST", "/messages", map[string]any{
		"recipients": map[string]any{"stakeholderIds": ids}, "channels": []string{"teams"}, "kind": "survey_invitation",
		"subject": "{{firstName}}, how ready are you for the new expense tool?", "text": "It goes live on Monday. Two clicks: tell us where you stand.",
		"survey":         map[string]any{"url": "https://survey.leapchange.example/s/expense", "question": "Are you ready?", "choices": []string{"Ready", "Need training", "Not yet"}},
		"idempotencyKey": "demo-survey-1",
	}, &accepted); err != nil {
		return false, [2]string{}, err
	}
	fmt.Fprintf(out, "survey batch %s in Teams to %d members of %q\n", accepted.ID, len(ids), g.Name)
	var b batchView
	for {
		if err := api.do(ctx, "GET", "/messages/"+accepted.ID, nil, &b); err != nil {
			return false, [2]string{}, err
		}
		if b.Counts["queued"]+b.Counts["sending"]+b.Counts["scheduled"] == 0 {
			break
		}
		if err := pause(ctx, 300*time.Millisecond); err != nil {
			return false, [2]string{}, err
		}
	}
	fmt.Fprintf(out, "  %s: sent %d, unreachable %d, failed %d, skipped %d\n", b.State, b.Counts["sent"], b.Counts["unreachable"], b.Counts["failed"], b.Counts["skipped"])
	installed := 0
	for i, p := range people {
		if i >= 3 && len(sim.Installations(tenantID, p.ExternalID)) > 0 {
			installed++
		}
	}
	fmt.Fprintf(out, "  the app was installed through Graph for %d people who never opened it\n", installed)
	for _, p := range people[:3] {
		if a, ok := lastCard(sim, p.ExternalID); ok {
			fmt.Fprintf(out, "  %s %s saw: %s\n", p.FirstName, p.LastName, cardOf(a.Activity))
		}
	}

	// The asker answers on the card (Action.Execute): Teams shows the card the bot answers with.
	posted, ok := lastCard(sim, asker.ExternalID)
	if !ok {
		return false, [2]string{}, errors.New("no card reached " + asker.FirstName)
	}
	survey := cardOf(posted.Activity)
	if len(survey.Actions) < 2 {
		return false, [2]string{}, fmt.Errorf("the survey card has no answer buttons: %s", survey)
	}
	answer := survey.Actions[1]
	resp, err := sim.SendBotActivity(ctx, tenantID, asker.ExternalID, map[string]any{"type": "invoke", "name": "adaptiveCard/action", "replyToId": posted.ActivityID,
		"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": answer.Verb, "data": answer.Data}, "trigger": "manual"}}, m365sim.BotSign{})
	if err != nil {
		return false, [2]string{}, err
	}
	var invoke struct {
		StatusCode int  `json:"statusCode"`
		Value      card `json:"value"`
	}
	json.NewDecoder(resp.Body).Decode(&invoke)
	resp.Body.Close()
	fmt.Fprintf(out, "%s clicked [%s]; Teams shows the bot's answer (%d): %s\n", asker.FirstName, answer.Title, invoke.StatusCode, invoke.Value)

	// The asker talks to the bot.
	other := people[len(people)-1]
	replies := map[string]string{}
	for _, text := range []string{"who is " + other.FirstName + " " + other.LastName, "my changes"} {
		before := len(sim.BotPosted(sim.BotConversation(tenantID, asker.ExternalID)))
		resp, err := sim.SendBotActivity(ctx, tenantID, asker.ExternalID, map[string]any{"text": text}, m365sim.BotSign{})
		if err != nil {
			return false, [2]string{}, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, [2]string{}, fmt.Errorf("the bot answered %q with %d", text, resp.StatusCode)
		}
		reply, err := awaitReply(ctx, sim, asker.ExternalID, before)
		if err != nil {
			return false, [2]string{}, fmt.Errorf("the bot's answer to %q: %w", text, err)
		}
		replies[text] = cardOf(reply.Activity).String()
		fmt.Fprintf(out, "%s asked the bot %q and saw: %s\n", asker.FirstName, text, replies[text])
	}
	// A forged activity (signed by a key the Bot Framework does not publish) gets nothing.
	resp, err = sim.SendBotActivity(ctx, tenantID, asker.ExternalID, map[string]any{"text": "who is " + other.FirstName}, m365sim.BotSign{WrongKey: true})
	if err != nil {
		return false, [2]string{}, err
	}
	resp.Body.Close()
	fmt.Fprintf(out, "a forged activity (wrong signing key) was answered %d, nothing posted\n", resp.StatusCode)

	var final struct {
		Responses map[string]int `json:"responses"`
	}
	if err := api.do(ctx, "GET", "/messages/"+accepted.ID, nil, &final); err != nil {
		return false, [2]string{}, err
	}
	st := sim.BotStats()
	fmt.Fprintf(out, "survey answers so far: %v; Bot Connector: %d cards posted, %d updated, %d Teams limit violations\n", final.Responses, st.Sent, st.Updated, st.Violations)
	ok = b.Counts["sent"] == len(ids) && installed == len(ids)-3 && invoke.StatusCode == http.StatusOK && final.Responses[answer.Title] == 1 &&
		strings.Contains(replies["my changes"], "New expense tool") && strings.Contains(replies["my changes"], "Harbour Street") &&
		strings.Contains(replies["who is "+other.FirstName+" "+other.LastName], other.LastName) && resp.StatusCode == http.StatusUnauthorized && st.Violations == 0
	return ok, [2]string{asker.ID, asker.ExternalID}, nil
}
