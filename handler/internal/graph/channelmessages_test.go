package graph_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/m365sim"
)

func TestChannelMessagesThroughTheSDK(t *testing.T) {
	sim, users := teamsTenant(t, "Team.ReadBasic.All", "ChannelMessage.Read.All")
	c := newClient(t, sim, secret)
	team, channel := monitoredChannel(t, sim)
	author := m365sim.ChannelMessageInput{AuthorID: users[0].ID, AuthorName: "Ines Okafor"}

	post := func(content string) string {
		t.Helper()
		in := author
		in.Content = content
		id, err := sim.PostChannelMessage(tenantID, team, channel, in)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// More than two delta pages before and after the catch-up point.
	var before, after []string
	for i := range graph.ChannelMessagesPageSize + 10 {
		before = append(before, post(fmt.Sprintf("old %d", i)))
	}
	sim.AdvanceClock(time.Minute)
	since := sim.Now()
	sim.AdvanceClock(time.Minute)
	for i := range 2*graph.ChannelMessagesPageSize + 5 {
		after = append(after, post(fmt.Sprintf("<p>new %d</p>", i)))
	}
	in := author
	in.Content, in.Mentions = `ask <at id="0">Tom</at>`, []m365sim.ChannelMention{{UserID: users[1].ID, DisplayName: "Tom"}}
	reply, err := sim.PostChannelReply(tenantID, team, channel, before[0], in)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.EditChannelMessage(tenantID, team, channel, before[1], "old 1, edited"); err != nil {
		t.Fatal(err)
	}
	if err := sim.DeleteChannelMessage(tenantID, team, channel, before[2]); err != nil {
		t.Fatal(err)
	}

	m, err := c.ChannelMessage(t.Context(), tenantID, team, channel, after[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != after[0] || m.TeamID != team || m.ChannelID != channel || m.Content != "<p>new 0</p>" || m.ContentType != "html" ||
		m.AuthorID != users[0].ID || m.AuthorName != "Ines Okafor" || m.MessageType != "message" || m.WebURL == "" || m.Created.IsZero() {
		t.Errorf("ChannelMessage = %+v", m)
	}
	r, err := c.ChannelReply(t.Context(), tenantID, team, channel, before[0], reply)
	if err != nil {
		t.Fatal(err)
	}
	if r.ReplyToID != before[0] || len(r.MentionedNames) != 1 || r.MentionedNames[0] != "Tom" {
		t.Errorf("ChannelReply = %+v", r)
	}
	if _, err := c.ChannelMessage(t.Context(), tenantID, team, channel, "1"); errkind.Of(err) != errkind.NotFound {
		t.Errorf("unknown message: err = %v, want not found", err)
	}

	got, err := c.ChannelMessagesSince(t.Context(), tenantID, team, channel, since)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, m := range got {
		ids[m.ID]++
		if !m.LastModified.After(since) {
			t.Errorf("message %s last modified %v, not after %v", m.ID, m.LastModified, since)
		}
	}
	want := append(append([]string{}, after...), reply, before[1], before[2])
	for _, id := range want {
		if ids[id] != 1 {
			t.Errorf("message %s returned %d times", id, ids[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d messages since, want %d", len(got), len(want))
	}
	for _, m := range got {
		if m.ID == before[2] && m.Deleted.IsZero() {
			t.Error("the deleted message is not marked deleted")
		}
		if m.ID == reply && m.ReplyToID != before[0] {
			t.Errorf("reply %+v", m)
		}
	}
	all, err := c.ChannelMessagesSince(t.Context(), tenantID, team, channel, time.Time{})
	if err != nil || len(all) != len(before)+len(after)+1 {
		t.Errorf("everything: %d messages, %v", len(all), err)
	}
}
