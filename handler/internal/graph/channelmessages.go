package graph

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/teams"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/teamsmsg"
)

// Reading a Teams channel's messages: one message or reply (a notification without resource
// data), and the catch-up after a missed notification or a removed subscription. Permissions
// (application): ChannelMessage.Read.All, or ChannelMessage.Read.Group granted to the app in
// the team (resource-specific consent); a missing one is errkind.Forbidden, an unknown team,
// channel or message errkind.NotFound.

// ChannelMessage returns a root message of a channel (GET …/messages/{id}).
func (c *Client) ChannelMessage(ctx context.Context, tenantID, teamID, channelID, messageID string) (teamsmsg.Message, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return teamsmsg.Message{}, err
	}
	m, err := gc.Teams().ByTeamId(teamID).Channels().ByChannelId(channelID).Messages().ByChatMessageId(messageID).Get(ctx, nil)
	if err != nil {
		return teamsmsg.Message{}, classify("teams/"+teamID+"/channels/{id}/messages/"+messageID, err)
	}
	return toMessage(m, teamID, channelID, ""), nil
}

// ChannelReply returns a reply to a channel message (GET …/messages/{id}/replies/{id}).
func (c *Client) ChannelReply(ctx context.Context, tenantID, teamID, channelID, messageID, replyID string) (teamsmsg.Message, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return teamsmsg.Message{}, err
	}
	m, err := gc.Teams().ByTeamId(teamID).Channels().ByChannelId(channelID).Messages().ByChatMessageId(messageID).Replies().ByChatMessageId1(replyID).Get(ctx, nil)
	if err != nil {
		return teamsmsg.Message{}, classify("teams/"+teamID+"/channels/{id}/messages/"+messageID+"/replies/"+replyID, err)
	}
	return toMessage(m, teamID, channelID, messageID), nil
}

// ChannelMessagesPageSize is the $top of the catch-up's delta pages (Graph's maximum).
const ChannelMessagesPageSize = 50

// ChannelMessagesSince returns the channel's messages and replies created, edited or deleted
// after since (all of them within Graph's delta window of eight months when since is zero),
// ordered by their last modification, oldest first. It reads
// GET …/messages/delta?$filter=lastModifiedDateTime gt {since}&$expand=replies, which answers
// the reply chains that changed, page by page to the deltaLink; a chain's messages that did
// not change since then are left out. Deleted messages come with Deleted set.
func (c *Client) ChannelMessagesSince(ctx context.Context, tenantID, teamID, channelID string, since time.Time) ([]teamsmsg.Message, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return nil, err
	}
	top := int32(ChannelMessagesPageSize)
	q := &teams.ItemChannelsItemMessagesDeltaRequestBuilderGetQueryParameters{Top: &top, Expand: []string{"replies"}}
	if !since.IsZero() {
		f := "lastModifiedDateTime gt " + since.UTC().Format("2006-01-02T15:04:05.000Z")
		q.Filter = &f
	}
	builder := gc.Teams().ByTeamId(teamID).Channels().ByChannelId(channelID).Messages().Delta()
	cfg := &teams.ItemChannelsItemMessagesDeltaRequestBuilderGetRequestConfiguration{QueryParameters: q}
	op := "teams/" + teamID + "/channels/{id}/messages/delta"
	var out []teamsmsg.Message
	add := func(m teamsmsg.Message) {
		if since.IsZero() || cmp.Or(m.LastModified, m.Created).After(since) {
			out = append(out, m)
		}
	}
	for range 100000 {
		page, err := builder.GetAsDeltaGetResponse(ctx, cfg)
		if err != nil {
			return nil, classify(op, err)
		}
		for _, m := range page.GetValue() {
			root := toMessage(m, teamID, channelID, "")
			add(root)
			for _, r := range m.GetReplies() {
				add(toMessage(r, teamID, channelID, root.ID))
			}
		}
		next := deref(page.GetOdataNextLink())
		if next == "" {
			slices.SortStableFunc(out, func(a, b teamsmsg.Message) int {
				return cmp.Or(a.LastModified, a.Created).Compare(cmp.Or(b.LastModified, b.Created))
			})
			return out, nil
		}
		builder, cfg = builder.WithUrl(next), nil
	}
	return nil, &errkind.Error{Kind: errkind.Other, Message: op + ": paging never ended"}
}

// toMessage converts the SDK's chatMessage; teamID and channelID stand in when the answer
// has no channelIdentity, rootID is the root of a reply whose replyToId is missing.
func toMessage(m models.ChatMessageable, teamID, channelID, rootID string) teamsmsg.Message {
	out := teamsmsg.Message{ID: deref(m.GetId()), ReplyToID: cmp.Or(deref(m.GetReplyToId()), rootID), TeamID: teamID, ChannelID: channelID,
		WebURL: deref(m.GetWebUrl())}
	if t := m.GetMessageType(); t != nil {
		out.MessageType = t.String()
	}
	if ci := m.GetChannelIdentity(); ci != nil {
		out.TeamID, out.ChannelID = cmp.Or(deref(ci.GetTeamId()), teamID), cmp.Or(deref(ci.GetChannelId()), channelID)
	}
	if f := m.GetFrom(); f != nil && f.GetUser() != nil {
		out.AuthorID, out.AuthorName = deref(f.GetUser().GetId()), deref(f.GetUser().GetDisplayName())
	}
	if b := m.GetBody(); b != nil {
		out.Content = deref(b.GetContent())
		if ct := b.GetContentType(); ct != nil {
			out.ContentType = ct.String()
		}
	}
	out.Created = utc(m.GetCreatedDateTime())
	out.LastModified = utc(m.GetLastModifiedDateTime())
	out.LastEdited = utc(m.GetLastEditedDateTime())
	out.Deleted = utc(m.GetDeletedDateTime())
	for _, mt := range m.GetMentions() {
		if t := deref(mt.GetMentionText()); t != "" {
			out.MentionedNames = append(out.MentionedNames, t)
		}
	}
	return out
}

func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
