// Package mailtest is a plain net/http client of the Graph routes the outbound pipeline uses,
// for the simulated tenant — sendMail, the Sent Items lookup, the mailbox lookup and the Teams
// app installation — for tests and tools that must not compile msgraph-sdk-go (only the graph package does). Its errors are classified by graphkind,
// exactly as the graph package's are, so a test double and the real client fail alike; the
// Conformance suite checks the two against the same simulated tenant.
package mailtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/graphkind"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/outmail"
)

// Client sends and looks up mail through Graph's wire format.
type Client struct {
	Base  string       // the Graph base URL, e.g. sim.GraphURL()
	HTTP  *http.Client // trusts the simulated tenant
	Creds *m365auth.Credentials
}

type address struct {
	EmailAddress struct {
		Address string `json:"address"`
		Name    string `json:"name,omitempty"`
	} `json:"emailAddress"`
}

func addresses(as []outmail.Address) []address {
	out := make([]address, len(as))
	for i, a := range as {
		out[i].EmailAddress.Address, out[i].EmailAddress.Name = a.Address, a.Name
	}
	return out
}

type header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SendMail posts m to /users/{from}/sendMail, once.
func (c *Client) SendMail(ctx context.Context, tenantID string, m outmail.Message) error {
	type body struct {
		ContentType string `json:"contentType"`
		Content     string `json:"content"`
	}
	msg := map[string]any{"subject": m.Subject, "toRecipients": addresses(m.To)}
	kind := "Text"
	if m.HTML {
		kind = "HTML"
	}
	msg["body"] = body{kind, m.Body}
	if len(m.Bcc) > 0 {
		msg["bccRecipients"] = addresses(m.Bcc)
	}
	if len(m.ReplyTo) > 0 {
		msg["replyTo"] = addresses(m.ReplyTo)
	}
	if m.InternetMessageID != "" {
		msg["internetMessageId"] = m.InternetMessageID
	}
	var hs []header
	for k, v := range m.Headers {
		hs = append(hs, header{k, v})
	}
	if len(hs) > 0 {
		msg["internetMessageHeaders"] = hs
	}
	payload, _ := json.Marshal(map[string]any{"message": msg, "saveToSentItems": true})
	return c.do(ctx, tenantID, http.MethodPost, "/users/"+url.PathEscape(m.From)+"/sendMail", payload, nil)
}

// FindSent looks mailbox's Sent Items up by internetMessageId.
func (c *Client) FindSent(ctx context.Context, tenantID, mailbox, internetMessageID string) (bool, error) {
	q := url.Values{"$filter": {"internetMessageId eq '" + strings.ReplaceAll(internetMessageID, "'", "''") + "'"}, "$select": {"id,internetMessageId"}}
	var out struct {
		Value []struct {
			InternetMessageID string `json:"internetMessageId"`
		} `json:"value"`
	}
	if err := c.do(ctx, tenantID, http.MethodGet, "/users/"+url.PathEscape(mailbox)+"/mailFolders/SentItems/messages?"+q.Encode(), nil, &out); err != nil {
		return false, err
	}
	for _, v := range out.Value {
		if v.InternetMessageID == internetMessageID {
			return true, nil
		}
	}
	return false, nil
}

// Mailbox reads the user an address names.
func (c *Client) Mailbox(ctx context.Context, tenantID, address string) (entra.User, error) {
	var u struct {
		ID, DisplayName, Mail, UserPrincipalName string
	}
	err := c.do(ctx, tenantID, http.MethodGet, "/users/"+url.PathEscape(address)+"?$select=id,displayName,mail,userPrincipalName", nil, &u)
	return entra.User{ID: u.ID, DisplayName: u.DisplayName, Mail: u.Mail, UserPrincipalName: u.UserPrincipalName}, err
}

func (c *Client) do(ctx context.Context, tenantID, method, path string, body []byte, out any) error {
	cred, err := c.Creds.ForTenant(tenantID)
	if err != nil {
		return err
	}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{m365auth.GraphScope}})
	if err != nil {
		return m365auth.Classify(err)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return &errkind.Error{Kind: errkind.Unavailable, Message: method + " " + path, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return &errkind.Error{Kind: errkind.Unavailable, Message: method + " " + path, Err: err}
	}
	if resp.StatusCode/100 != 2 {
		return graphkind.FromAnswer(resp.StatusCode, resp.Header, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}
