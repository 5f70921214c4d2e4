package m365sim

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// BotSign says how SendBotActivity signs an activity. The zero value signs it as Bot Service
// does: RS256 with the current key of the JWKS (endorsed for msteams), iss
// https://api.botframework.com, aud the bot's app id, serviceurl the activity's serviceUrl,
// valid from now for an hour of sim time.
type BotSign struct {
	WrongKey      bool   // signed by a key outside the JWKS under the current key's kid: bad signature
	UnknownKid    bool   // signed by a key outside the JWKS under its own kid
	NoEndorsement bool   // signed by a published key endorsed for webchat only
	Issuer        string // iss instead of https://api.botframework.com
	Audience      string // aud instead of the bot's app id
	ServiceURL    string // serviceurl claim instead of the activity's serviceUrl
	Expired       bool   // exp 10 minutes ago (beyond the 5-minute skew)
	NotYetValid   bool   // nbf 10 minutes ahead
	// NotBefore, when not zero, sets nbf to now + NotBefore (skew tests).
	NotBefore time.Duration
	Alg       string // RS384 or RS512 instead of RS256
	AlgNone   bool   // alg none, no signature
	// NoAuthorization sends no Authorization header; Authorization, when set, is sent verbatim.
	NoAuthorization bool
	Authorization   string
}

// SendBotActivity posts an activity from the user to the registered bot's endpoint, signed as
// opts say, and returns the endpoint's response (the caller closes its body). a is anything
// that encodes as a JSON object (a map or an activity struct); the fields it lacks are filled
// as Teams fills them: type message, id, timestamp, serviceUrl (BotServiceURL), channelId
// msteams, from (the user's 29: id, name and aadObjectId), recipient (the bot), conversation
// (the user's 1:1: personal, tenantId, id) and channelData.tenant. The user counts as having
// the app installed (unless they blocked it).
func (s *Server) SendBotActivity(ctx context.Context, tenant, userObjectID string, a any, opts BotSign) (*http.Response, error) {
	act, err := s.botActivity(tenant, userObjectID, a)
	if err != nil {
		return nil, err
	}
	b := s.lockBot()
	c := b.convLocked(tenant, userObjectID)
	if !c.blocked {
		c.installed = true
	}
	b.mu.Unlock()
	return s.postToBot(ctx, act, opts)
}

// botActivity fills a's missing fields for an activity from the user.
func (s *Server) botActivity(tenant, oid string, a any) (map[string]any, error) {
	tenant, oid = strings.ToLower(tenant), strings.ToLower(oid)
	s.init()
	s.mu.Lock()
	t, known := s.tenants[tenant]
	var name string
	if known {
		if u, ok := t.user(oid); ok {
			name = u.DisplayName
		}
	}
	now := s.now()
	s.mu.Unlock()
	if !known {
		return nil, fmt.Errorf("tenant %q: %w", tenant, ErrNotFound)
	}
	act := map[string]any{}
	if a != nil {
		raw, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &act); err != nil {
			return nil, fmt.Errorf("m365sim: the activity must encode as a JSON object: %w", err)
		}
	}
	bs := s.lockBot()
	appID := bs.appID
	c := bs.convLocked(tenant, oid)
	bs.lastID = max(bs.lastID+1, now.UnixMilli())
	id := strconv.FormatInt(bs.lastID, 10)
	bs.mu.Unlock()
	if appID == "" {
		return nil, errors.New("m365sim: no bot registered (RegisterBot)")
	}
	fill := func(k string, v any) {
		if _, ok := act[k]; !ok {
			act[k] = v
		}
	}
	from := map[string]any{"id": c.userID, "aadObjectId": oid}
	if name != "" {
		from["name"] = name
	}
	fill("type", "message")
	fill("id", id)
	fill("timestamp", now.UTC().Format("2006-01-02T15:04:05.000Z"))
	fill("serviceUrl", s.BotServiceURL())
	fill("channelId", botChannel)
	fill("from", from)
	fill("recipient", map[string]any{"id": "28:" + appID, "name": "Leap Change"})
	fill("conversation", map[string]any{"conversationType": "personal", "tenantId": tenant, "id": c.id})
	if cd, ok := act["channelData"].(map[string]any); ok {
		if _, ok := cd["tenant"]; !ok {
			cd["tenant"] = map[string]any{"id": tenant}
		}
	} else {
		act["channelData"] = map[string]any{"tenant": map[string]any{"id": tenant}}
	}
	return act, nil
}

// defaultBotEndpointClient posts to the bot's endpoint unless SetBotEndpointClient says
// otherwise (shared, so connections are reused).
var defaultBotEndpointClient = &http.Client{Timeout: 30 * time.Second}

// postToBot signs and posts the activity to the endpoint.
func (s *Server) postToBot(ctx context.Context, act map[string]any, opts BotSign) (*http.Response, error) {
	b := s.lockBot()
	endpoint, appID := b.endpoint, b.appID
	client := b.client
	b.mu.Unlock()
	if endpoint == "" {
		return nil, errors.New("m365sim: the bot has no endpoint (RegisterBot)")
	}
	if client == nil {
		client = defaultBotEndpointClient
	}
	body, err := json.Marshal(act)
	if err != nil {
		return nil, err
	}
	su, _ := act["serviceUrl"].(string)
	auth := opts.Authorization
	if auth == "" && !opts.NoAuthorization {
		tok, err := s.botToken(appID, su, opts)
		if err != nil {
			return nil, err
		}
		auth = "Bearer " + tok
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Microsoft-SkypeBotApi (Microsoft-BotFramework 3.0)")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	b = s.lockBot()
	b.stats.Inbound++
	if err != nil || resp.StatusCode/100 != 2 {
		b.stats.InboundFailed++
	}
	b.mu.Unlock()
	return resp, err
}

// BotToken returns a token as Bot Service signs it for an activity whose serviceUrl is
// serviceURL, altered as opts say (for tests that build their own requests).
func (s *Server) BotToken(serviceURL string, opts BotSign) (string, error) {
	b := s.lockBot()
	appID := b.appID
	b.mu.Unlock()
	return s.botToken(appID, serviceURL, opts)
}

func (s *Server) botToken(appID, serviceURL string, opts BotSign) (string, error) {
	now := s.Now()
	b := s.lockBot()
	gen := b.gen
	b.mu.Unlock()
	key := botGenKey(gen)
	kid := key.kid
	switch {
	case opts.WrongKey:
		key = botKeyNamed("rogue")
	case opts.UnknownKid:
		key = botKeyNamed("rogue")
		kid = key.kid
	case opts.NoEndorsement:
		key = botKeyNamed("webchat")
		kid = key.kid
	}
	nbf, exp := now, now.Add(time.Hour)
	switch {
	case opts.Expired:
		nbf, exp = now.Add(-70*time.Minute), now.Add(-10*time.Minute)
	case opts.NotYetValid:
		nbf = now.Add(10 * time.Minute)
	case opts.NotBefore != 0:
		nbf = now.Add(opts.NotBefore)
	}
	if !exp.After(nbf) {
		exp = nbf.Add(time.Hour)
	}
	claims := map[string]any{
		"serviceurl": cmp.Or(opts.ServiceURL, serviceURL),
		"nbf":        nbf.Unix(),
		"exp":        exp.Unix(),
		"iss":        cmp.Or(opts.Issuer, botIssuer),
		"aud":        cmp.Or(opts.Audience, appID),
	}
	alg := cmp.Or(opts.Alg, "RS256")
	if opts.AlgNone {
		alg = "none"
	}
	hdr, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid, "x5t": kid, "typ": "JWT"})
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := b64(hdr) + "." + b64(payload)
	if opts.AlgNone {
		return signing + ".", nil
	}
	var h crypto.Hash
	switch alg {
	case "RS256":
		h = crypto.SHA256
	case "RS384":
		h = crypto.SHA384
	case "RS512":
		h = crypto.SHA512
	default:
		return "", fmt.Errorf("m365sim: unsupported alg %q", alg)
	}
	hw := h.New()
	hw.Write([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key.key, h, hw.Sum(nil))
	if err != nil {
		return "", err
	}
	return signing + "." + b64(sig), nil
}

// deliver posts one activity correctly signed and logs a failure.
func (s *Server) deliver(tenant, oid string, a map[string]any) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	act, err := s.botActivity(tenant, oid, a)
	var resp *http.Response
	if err == nil {
		resp, err = s.postToBot(ctx, act, BotSign{})
	}
	if err != nil {
		s.opts.Logger.Warn("m365sim: posting an activity to the bot failed", "type", a["type"], "err", err)
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.opts.Logger.Warn("m365sim: the bot refused an activity", "type", a["type"], "status", resp.StatusCode)
	}
}
