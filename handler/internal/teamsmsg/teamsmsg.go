// Package teamsmsg is a Teams channel message as plain data: what a change notification's
// resource data (decrypted) or Graph's chatMessage resource holds, as channel monitoring needs
// it. It has no dependency on the Graph SDK, so the webhook, the worker and the tests share it.
package teamsmsg

import (
	"encoding/json"
	"fmt"
	"time"
)

// Message is a channel message or reply.
type Message struct {
	ID        string `json:"id"`
	ReplyToID string `json:"replyToId,omitempty"` // the root message of a reply
	TeamID    string `json:"teamId"`
	ChannelID string `json:"channelId"`
	WebURL    string `json:"webUrl,omitempty"` // the deep link
	// MessageType is "message" for people's messages ("systemEventMessage" and others are not).
	MessageType    string    `json:"messageType"`
	AuthorID       string    `json:"authorId,omitempty"` // the Entra object id of a user author
	AuthorName     string    `json:"authorName,omitempty"`
	ContentType    string    `json:"contentType"` // "html" or "text"
	Content        string    `json:"content"`
	Created        time.Time `json:"created"`
	LastModified   time.Time `json:"lastModified,omitzero"`
	LastEdited     time.Time `json:"lastEdited,omitzero"`
	Deleted        time.Time `json:"deleted,omitzero"`
	MentionedNames []string  `json:"mentionedNames,omitempty"`
}

// wire is Graph's chatMessage JSON, as far as monitoring reads it.
type wire struct {
	ID                   string  `json:"id"`
	ReplyToID            *string `json:"replyToId"`
	MessageType          string  `json:"messageType"`
	WebURL               string  `json:"webUrl"`
	CreatedDateTime      string  `json:"createdDateTime"`
	LastModifiedDateTime string  `json:"lastModifiedDateTime"`
	LastEditedDateTime   *string `json:"lastEditedDateTime"`
	DeletedDateTime      *string `json:"deletedDateTime"`
	From                 *struct {
		User *struct {
			ID          string `json:"id"`
			DisplayName string `json:"displayName"`
		} `json:"user"`
	} `json:"from"`
	Body struct {
		ContentType string `json:"contentType"`
		Content     string `json:"content"`
	} `json:"body"`
	ChannelIdentity *struct {
		TeamID    string `json:"teamId"`
		ChannelID string `json:"channelId"`
	} `json:"channelIdentity"`
	Mentions []struct {
		MentionText string `json:"mentionText"`
	} `json:"mentions"`
}

// Decode reads Graph's chatMessage JSON (a GET answer or a decrypted notification's content).
func Decode(data []byte) (Message, error) {
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return Message{}, fmt.Errorf("teamsmsg: not a chatMessage: %w", err)
	}
	if w.ID == "" {
		return Message{}, fmt.Errorf("teamsmsg: a chatMessage without an id")
	}
	m := Message{ID: w.ID, MessageType: w.MessageType, WebURL: w.WebURL, ContentType: w.Body.ContentType, Content: w.Body.Content}
	if w.ReplyToID != nil {
		m.ReplyToID = *w.ReplyToID
	}
	if w.From != nil && w.From.User != nil {
		m.AuthorID, m.AuthorName = w.From.User.ID, w.From.User.DisplayName
	}
	if w.ChannelIdentity != nil {
		m.TeamID, m.ChannelID = w.ChannelIdentity.TeamID, w.ChannelIdentity.ChannelID
	}
	for _, mt := range w.Mentions {
		m.MentionedNames = append(m.MentionedNames, mt.MentionText)
	}
	m.Created = parseTime(w.CreatedDateTime)
	m.LastModified = parseTime(w.LastModifiedDateTime)
	if w.LastEditedDateTime != nil {
		m.LastEdited = parseTime(*w.LastEditedDateTime)
	}
	if w.DeletedDateTime != nil {
		m.Deleted = parseTime(*w.DeletedDateTime)
	}
	return m, nil
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}
