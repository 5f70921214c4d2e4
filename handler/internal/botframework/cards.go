package botframework

import (
	"context"

	"github.com/leapchange/m365/handler/internal/cards"
)

// cardMessage is a message carrying one Adaptive Card; summary is its text, what a
// notification (and a client that cannot show the card) shows.
func cardMessage(summary string, card cards.Card) Activity {
	return Activity{Type: TypeMessage, Text: summary, TextFormat: "plain",
		Attachments: []Attachment{{ContentType: ContentTypeAdaptiveCard, Content: card}}}
}

// SendCard posts a card to a conversation and returns the activity's id.
func (c *Client) SendCard(ctx context.Context, serviceURL, conversationID, summary string, card cards.Card) (string, error) {
	return c.Send(ctx, serviceURL, conversationID, cardMessage(summary, card))
}

// UpdateCard replaces a posted card (an answered survey shows the answer).
func (c *Client) UpdateCard(ctx context.Context, serviceURL, conversationID, activityID, summary string, card cards.Card) error {
	return c.Update(ctx, serviceURL, conversationID, activityID, cardMessage(summary, card))
}
