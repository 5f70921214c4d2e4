package botframework

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365auth"
)

// Scope is what the bot's app-only token is requested for.
const Scope = "https://api.botframework.com/.default"

// service names Bot Connector failures in errkind.Error.
const service = "botconnector"

// CodeMessageWritesBlocked is the Code of the error a send to a user who blocked or uninstalled
// the bot returns (see Blocked).
const CodeMessageWritesBlocked = "MessageWritesBlocked"

const maxErrorBody = 64 << 10

// ClientConfig configures a Client.
type ClientConfig struct {
	AppID    string // BOT_APP_ID
	Secret   string // the bot app's client secret
	TenantID string // BOT_TENANT_ID: the bot's home tenant, where its token is issued
	// AuthorityHost is AZURE_AUTHORITY_HOST; empty means Microsoft's public cloud. Any other
	// host turns instance discovery off.
	AuthorityHost string
	// HTTPClient carries the token requests and the Bot Connector calls; default
	// http.DefaultClient.
	HTTPClient *http.Client
	// TrustedHosts are further host[:port]s (exactly) to which the token may be sent, beside
	// Microsoft's Bot Connector hosts (tests: the simulated tenant's host:port).
	TrustedHosts []string
}

// Client calls the Bot Connector REST API with the bot's app-only token. It is safe for
// concurrent use. It makes no retries of its own except one: a 401 gets a fresh token and the
// request is sent once more.
type Client struct {
	cfg  ClientConfig
	http *http.Client

	mu   sync.Mutex
	cred azcore.TokenCredential
}

// NewClient returns a Client. It does no I/O.
func NewClient(cfg ClientConfig) (*Client, error) {
	var errs []error
	if cfg.AppID == "" {
		errs = append(errs, errors.New("botframework: AppID is required"))
	}
	if cfg.Secret == "" {
		errs = append(errs, errors.New("botframework: Secret is required"))
	}
	if !m365auth.ValidTenant(cfg.TenantID) {
		errs = append(errs, fmt.Errorf("botframework: TenantID %q is not a tenant id", cfg.TenantID))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, http: cmp.Or(cfg.HTTPClient, http.DefaultClient)}
	cred, err := c.newCredential()
	if err != nil {
		return nil, err
	}
	c.cred = cred
	return c, nil
}

// newCredential builds a credential with an empty token cache.
func (c *Client) newCredential() (azcore.TokenCredential, error) {
	opts := &azidentity.ClientSecretCredentialOptions{}
	if h := c.cfg.AuthorityHost; h != "" {
		opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: h}
		opts.DisableInstanceDiscovery = !strings.HasPrefix(h, "https://login.microsoftonline.com")
	}
	opts.Transport = c.http
	cred, err := azidentity.NewClientSecretCredential(c.cfg.TenantID, c.cfg.AppID, c.cfg.Secret, opts)
	if err != nil {
		return nil, fmt.Errorf("botframework: bot credential: %w", err)
	}
	return cred, nil
}

// credential is the current credential (azidentity caches its token until near expiry).
func (c *Client) credential() azcore.TokenCredential {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cred
}

// renew drops old's cached token by replacing the credential, unless another request did.
func (c *Client) renew(old azcore.TokenCredential) error {
	cred, err := c.newCredential()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cred == old {
		c.cred = cred
	}
	return nil
}

// Trusted reports whether serviceURL is a Bot Connector service the token may be sent to:
// https on *.botframework.com, smba.trafficmanager.net or the government clouds' smba hosts
// (default port), or exactly one of TrustedHosts.
func (c *Client) Trusted(serviceURL string) bool {
	u, err := url.Parse(serviceURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	for _, h := range c.cfg.TrustedHosts {
		if strings.EqualFold(u.Host, h) {
			return true
		}
	}
	if p := u.Port(); p != "" && p != "443" {
		return false
	}
	switch host := strings.ToLower(u.Hostname()); {
	case host == "smba.trafficmanager.net",
		strings.HasSuffix(host, ".botframework.com"),
		host == "smba.infra.gcc.teams.microsoft.com",
		host == "smba.infra.gov.teams.microsoft.us",
		host == "smba.infra.dod.teams.microsoft.us":
		return true
	}
	return false
}

// CreateConversation creates (or, for a 1:1 chat, finds) the personal conversation of the bot
// with userID (the user's "29:…" id) in tenantID and returns its id.
func (c *Client) CreateConversation(ctx context.Context, serviceURL, tenantID, userID string) (string, error) {
	body := map[string]any{
		"bot":         ChannelAccount{ID: "28:" + c.cfg.AppID},
		"members":     []ChannelAccount{{ID: userID}},
		"channelData": map[string]any{"tenant": map[string]string{"id": tenantID}},
		"isGroup":     false,
		"tenantId":    tenantID,
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := c.do(ctx, http.MethodPost, serviceURL, "v3/conversations", body, &out); err != nil {
		return "", err
	}
	if out.ID == "" {
		return "", &errkind.Error{Kind: errkind.Other, Service: service, Message: "create conversation answered without an id"}
	}
	return out.ID, nil
}

// Send posts activity a (type "message" when empty) to the conversation and returns the new
// activity's id (keep it to Update the message later; "" when the service gave none).
func (c *Client) Send(ctx context.Context, serviceURL, conversationID string, a Activity) (string, error) {
	a.Type = cmp.Or(a.Type, TypeMessage)
	var out struct {
		ID string `json:"id"`
	}
	err := c.do(ctx, http.MethodPost, serviceURL, "v3/conversations/"+url.PathEscape(conversationID)+"/activities", a, &out)
	return out.ID, err
}

// Update replaces the activity activityID in the conversation with a (e.g. an updated card).
func (c *Client) Update(ctx context.Context, serviceURL, conversationID, activityID string, a Activity) error {
	a.Type = cmp.Or(a.Type, TypeMessage)
	a.ID = cmp.Or(a.ID, activityID)
	return c.do(ctx, http.MethodPut, serviceURL, "v3/conversations/"+url.PathEscape(conversationID)+"/activities/"+url.PathEscape(activityID), a, nil)
}

// do sends one Bot Connector request with the bot's token, retried once with a fresh token
// after a 401, and decodes a 2xx JSON answer into out.
// Ready gets the bot's token now (it is cached): a sender paced in real time asks for it
// before taking its turn, so the first calls of a batch do not all wait for the token and then
// go together.
func (c *Client) Ready(ctx context.Context) error {
	if _, err := c.credential().GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}}); err != nil {
		return tokenError(ctx, err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, serviceURL, path string, body, out any) error {
	if !c.Trusted(serviceURL) {
		return &errkind.Error{Kind: errkind.Invalid, Service: service, Message: "the service URL is not a trusted Bot Connector host; the bot's token is not sent there"}
	}
	u := strings.TrimRight(serviceURL, "/") + "/" + path
	b, err := json.Marshal(body)
	if err != nil {
		return &errkind.Error{Kind: errkind.Invalid, Service: service, Message: "activity cannot be encoded", Err: err}
	}
	for attempt := 0; ; attempt++ {
		cred := c.credential()
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}})
		if err != nil {
			return tokenError(ctx, err)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(b))
		if err != nil {
			return &errkind.Error{Kind: errkind.Invalid, Service: service, Message: "bad request URL", Err: err}
		}
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Accept", "application/json")
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &errkind.Error{Kind: errkind.Unavailable, Service: service, Message: "Bot Connector unreachable", Err: stripURL(err)}
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
			resp.Body.Close()
			if err := c.renew(cred); err != nil {
				return &errkind.Error{Kind: errkind.Unauthorized, Service: service, Status: http.StatusUnauthorized, Message: "token refused and cannot be renewed", Err: err}
			}
			continue
		}
		err = decodeResponse(resp, out)
		resp.Body.Close()
		return err
	}
}

// stripURL drops the request URL from a transport error (it names the service URL only, but
// keeps messages short).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func tokenError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	err = m365auth.Classify(err)
	var e *errkind.Error
	if errors.As(err, &e) {
		c := *e
		c.Service = service
		if c.Kind == errkind.Unauthorized {
			c.Message = "the bot's token request was refused: check BOT_APP_ID, its secret and BOT_TENANT_ID (the bot's home tenant)"
		} else {
			c.Message = "bot token: " + c.Message
		}
		return &c
	}
	return err
}

func decodeResponse(resp *http.Response, out any) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil {
			return &errkind.Error{Kind: errkind.Unavailable, Service: service, Status: resp.StatusCode, Message: "reading the answer failed", Err: err}
		}
		if out == nil || len(bytes.TrimSpace(b)) == 0 {
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return &errkind.Error{Kind: errkind.Other, Service: service, Status: resp.StatusCode, Message: "unreadable answer", Err: err}
		}
		return nil
	}
	return classify(resp)
}

// classify maps a Bot Connector error answer to an *errkind.Error: 429 Throttled; 412, 500,
// 502, 503, 504 Unavailable; 403 Forbidden (Code MessageWritesBlocked for a blocked or
// uninstalled bot); 404 NotFound; 400 Invalid; 401 Unauthorized; 409 Conflict.
func classify(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &errkind.Error{Service: service, Status: resp.StatusCode, RequestID: cmp.Or(resp.Header.Get("request-id"), resp.Header.Get("MS-CV"))}
	e.Code, e.Message = errorText(body)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 || resp.StatusCode == http.StatusPreconditionFailed {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		e.Kind = errkind.Throttled
	case s == http.StatusPreconditionFailed, s >= 500:
		e.Kind = errkind.Unavailable
	case s == http.StatusForbidden:
		e.Kind = errkind.Forbidden
		if bytes.Contains(body, []byte(CodeMessageWritesBlocked)) {
			e.Code, e.Message = CodeMessageWritesBlocked, "the user blocked or uninstalled the bot"
		}
	case s == http.StatusNotFound:
		e.Kind = errkind.NotFound
	case s == http.StatusUnauthorized:
		e.Kind = errkind.Unauthorized
	case s == http.StatusConflict:
		e.Kind = errkind.Conflict
	case s >= 400:
		e.Kind = errkind.Invalid
	default:
		e.Kind = errkind.Other
	}
	return e
}

// errorText reads the code and message of an error body: the Bot Connector's
// {"error":{"code","message"}}, Teams' {"errorCode":n,"message":"…"} or {"message":"…"}.
func errorText(body []byte) (code, msg string) {
	var b struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		ErrorCode json.RawMessage `json:"errorCode"`
		Message   string          `json:"message"`
	}
	if json.Unmarshal(body, &b) != nil {
		return "", truncate(strings.TrimSpace(string(body)))
	}
	if b.Error != nil {
		return b.Error.Code, truncate(b.Error.Message)
	}
	return strings.Trim(string(b.ErrorCode), `"`), truncate(b.Message)
}

func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// retryAfter parses a Retry-After header: seconds (fractions allowed) or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f <= 0 {
			return 0
		}
		return time.Duration(f * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Blocked reports whether err is the Bot Connector's 403 MessageWritesBlocked: the user
// blocked or uninstalled the bot, and sending again will not help.
func Blocked(err error) bool {
	var e *errkind.Error
	return errors.As(err, &e) && e.Service == service && e.Status == http.StatusForbidden && e.Code == CodeMessageWritesBlocked
}
