package graph

import (
	"context"
	"strings"

	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/outmail"
)

// SendMail sends m as the mailbox m.From with POST /users/{from}/sendMail, saving a copy in
// its Sent Items (which FindSent relies on). It is sent once: a throttled or failed answer is
// returned at once, never retried in-process — the mail pipeline re-enqueues the delivery at
// Retry-After as a scheduled message instead of holding a worker (and a 5xx may mean the mail
// went). Errors are *errkind.Error with a kind (graphkind).
func (c *Client) SendMail(ctx context.Context, tenantID string, m outmail.Message) error {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return err
	}
	msg := models.NewMessage()
	msg.SetSubject(&m.Subject)
	body := models.NewItemBody()
	kind := models.TEXT_BODYTYPE
	if m.HTML {
		kind = models.HTML_BODYTYPE
	}
	body.SetContentType(&kind)
	body.SetContent(&m.Body)
	msg.SetBody(body)
	msg.SetToRecipients(recipients(m.To))
	if len(m.Bcc) > 0 {
		msg.SetBccRecipients(recipients(m.Bcc))
	}
	if len(m.ReplyTo) > 0 {
		msg.SetReplyTo(recipients(m.ReplyTo))
	}
	if m.InternetMessageID != "" {
		msg.SetInternetMessageId(&m.InternetMessageID)
	}
	if len(m.Headers) > 0 {
		var hs []models.InternetMessageHeaderable
		for name, value := range m.Headers {
			h := models.NewInternetMessageHeader()
			h.SetName(&name)
			h.SetValue(&value)
			hs = append(hs, h)
		}
		msg.SetInternetMessageHeaders(hs)
	}
	req := users.NewItemSendMailPostRequestBody()
	req.SetMessage(msg)
	save := true
	req.SetSaveToSentItems(&save)
	if err := gc.Users().ByUserId(m.From).SendMail().Post(withoutRetry(ctx), req, nil); err != nil {
		return classify("users/"+m.From+"/sendMail", err)
	}
	return nil
}

func recipients(as []outmail.Address) []models.Recipientable {
	out := make([]models.Recipientable, 0, len(as))
	for _, a := range as {
		e := models.NewEmailAddress()
		e.SetAddress(&a.Address)
		if a.Name != "" {
			e.SetName(&a.Name)
		}
		r := models.NewRecipient()
		r.SetEmailAddress(e)
		out = append(out, r)
	}
	return out
}

// FindSent reports whether mailbox's Sent Items hold a message with this internetMessageId: the
// one way Graph offers to learn whether a sendMail whose answer was lost went out. It needs the
// Mail.ReadBasic.All application permission (a Forbidden kind without it).
func (c *Client) FindSent(ctx context.Context, tenantID, mailbox, internetMessageID string) (bool, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return false, err
	}
	filter := "internetMessageId eq '" + strings.ReplaceAll(internetMessageID, "'", "''") + "'"
	top := int32(1)
	page, err := gc.Users().ByUserId(mailbox).MailFolders().ByMailFolderId("SentItems").Messages().Get(ctx,
		&users.ItemMailFoldersItemMessagesRequestBuilderGetRequestConfiguration{QueryParameters: &users.ItemMailFoldersItemMessagesRequestBuilderGetQueryParameters{
			Filter: &filter, Select: []string{"id", "internetMessageId"}, Top: &top}})
	if err != nil {
		return false, classify("users/"+mailbox+"/mailFolders/SentItems/messages", err)
	}
	for _, m := range page.GetValue() {
		if deref(m.GetInternetMessageId()) == internetMessageID {
			return true, nil
		}
	}
	return false, nil
}

// Mailbox looks up the user a sender mailbox address names (by user principal name or object
// id), for validating mail settings: a NotFound kind when the tenant has no such user; the
// user's Mail is empty when it has no mailbox.
func (c *Client) Mailbox(ctx context.Context, tenantID, address string) (entra.User, error) {
	gc, err := c.tenant(tenantID)
	if err != nil {
		return entra.User{}, err
	}
	u, err := gc.Users().ByUserId(address).Get(ctx, &users.UserItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UserItemRequestBuilderGetQueryParameters{Select: []string{"id", "displayName", "mail", "userPrincipalName", "accountEnabled"}}})
	if err != nil {
		return entra.User{}, classify("users/"+address, err)
	}
	return toUser(u), nil
}
