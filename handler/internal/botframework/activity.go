// Package botframework is the small part of the Bot Framework protocol the Teams bot needs, on
// plain net/http (there is no Bot Framework SDK for Go): the Activity wire types, the
// validation of the JWT Bot Service sends with every inbound activity (Validator), and an
// outbound Bot Connector client that creates 1:1 conversations, sends activities and updates
// them (Client).
//
// # Inbound
//
// Teams POSTs each activity to the bot's endpoint with Authorization: Bearer <JWT>. Validate
// checks the token against the Bot Framework OpenID metadata's JWKS and the activity (issuer,
// audience, lifetime with 5 minutes of skew, the serviceurl claim, the signing key's channel
// endorsements) and answers an error of kind errkind.Unauthorized (401) or errkind.Forbidden
// (403, the key does not endorse the activity's channel). Errors never quote the token.
//
// # Outbound
//
// Client takes an app-only token for https://api.botframework.com/.default from the bot's home
// tenant and sends it only to trusted service URLs. Failures are *errkind.Error with Service
// "botconnector"; Blocked tells a user who blocked or uninstalled the bot apart.
package botframework

import (
	"encoding/json"
)

// ContentTypeAdaptiveCard is the attachment content type of an Adaptive Card.
const ContentTypeAdaptiveCard = "application/vnd.microsoft.card.adaptive"

// ChannelMSTeams is the channelId of Teams activities.
const ChannelMSTeams = "msteams"

// Activity is a Bot Framework activity as it travels on the wire, limited to the fields a
// Teams bot uses. Unknown fields are dropped on decoding.
type Activity struct {
	Type           string              `json:"type,omitempty"`
	ID             string              `json:"id,omitempty"`
	Name           string              `json:"name,omitempty"`
	Timestamp      string              `json:"timestamp,omitempty"`
	LocalTimestamp string              `json:"localTimestamp,omitempty"`
	ServiceURL     string              `json:"serviceUrl,omitempty"`
	ChannelID      string              `json:"channelId,omitempty"`
	From           ChannelAccount      `json:"from,omitzero"`
	Recipient      ChannelAccount      `json:"recipient,omitzero"`
	Conversation   ConversationAccount `json:"conversation,omitzero"`
	Text           string              `json:"text,omitempty"`
	TextFormat     string              `json:"textFormat,omitempty"`
	ReplyToID      string              `json:"replyToId,omitempty"`
	Locale         string              `json:"locale,omitempty"`
	// Action is the installationUpdate action: "add" or "remove" (also "add-upgrade", ...).
	Action         string            `json:"action,omitempty"`
	MembersAdded   []ChannelAccount  `json:"membersAdded,omitempty"`
	MembersRemoved []ChannelAccount  `json:"membersRemoved,omitempty"`
	Attachments    []Attachment      `json:"attachments,omitempty"`
	Value          json.RawMessage   `json:"value,omitempty"`
	ChannelData    json.RawMessage   `json:"channelData,omitempty"`
	Entities       []json.RawMessage `json:"entities,omitempty"`
}

// Activity types a Teams bot meets.
const (
	TypeMessage            = "message"
	TypeConversationUpdate = "conversationUpdate"
	TypeInstallationUpdate = "installationUpdate"
	TypeInvoke             = "invoke"
	TypeInvokeResponse     = "invokeResponse"
	TypeMessageReaction    = "messageReaction"
	TypeTyping             = "typing"
)

// TenantID is the Entra tenant the activity comes from: channelData.tenant.id, else
// conversation.tenantId ("" when neither is set).
func (a Activity) TenantID() string {
	if len(a.ChannelData) > 0 {
		var cd struct {
			Tenant struct {
				ID string `json:"id"`
			} `json:"tenant"`
		}
		if json.Unmarshal(a.ChannelData, &cd) == nil && cd.Tenant.ID != "" {
			return cd.Tenant.ID
		}
	}
	return a.Conversation.TenantID
}

// ChannelAccount is a user or bot in a conversation. In Teams, ID is "29:…" for a user (specific
// to the bot) and "28:<app id>" for a bot; AADObjectID is the user's Entra object id.
type ChannelAccount struct {
	ID          string `json:"id,omitempty"`
	Name        string `json:"name,omitempty"`
	AADObjectID string `json:"aadObjectId,omitempty"`
	Role        string `json:"role,omitempty"`
}

// ConversationAccount is the conversation an activity belongs to. ConversationType is
// "personal", "groupChat" or "channel".
type ConversationAccount struct {
	ID               string `json:"id,omitempty"`
	ConversationType string `json:"conversationType,omitempty"`
	TenantID         string `json:"tenantId,omitempty"`
	IsGroup          bool   `json:"isGroup,omitempty"`
}

// Attachment is a card or file attached to a message; Content is the card's JSON object.
type Attachment struct {
	ContentType string `json:"contentType"`
	Content     any    `json:"content,omitempty"`
}

// InvokeResponse is the HTTP response body of an invoke activity, e.g. an adaptiveCard/action
// answered with an updated card (Type ContentTypeAdaptiveCard, Value the card) or a message
// (Type "application/vnd.microsoft.activity.message", Value the text).
type InvokeResponse struct {
	StatusCode int    `json:"statusCode"`
	Type       string `json:"type"`
	Value      any    `json:"value"`
}
