package m365sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// botMaxActivityBytes is Teams' message size limit (about 28 KB); larger posts answer 413.
const botMaxActivityBytes = 28 << 10

// botBlockedBody is Teams' answer to a write into a conversation whose user blocked or
// uninstalled the bot: JSON nested in a JSON string.
const botBlockedBody = `{"errorCode":209,"message":"{\r\n  \"subCode\": \"MessageWritesBlocked\",\r\n  \"details\": \"Thread is blocked from message writes.\",\r\n  \"errorCode\": null,\r\n  \"errorSubCode\": null\r\n}"}`

// botRoute routes the Bot Framework metadata and the Bot Connector API:
//
//	GET  /botframework/v1/.well-known/openidconfiguration
//	GET  /botframework/v1/.well-known/keys
//	POST /bot/{region}/v3/conversations
//	POST /bot/{region}/v3/conversations/{conversationId}/activities
//	PUT  /bot/{region}/v3/conversations/{conversationId}/activities/{activityId}
func (s *Server) botRoute(r *http.Request) route {
	p := r.URL.Path
	switch {
	case p == botMetadataPath && r.Method == http.MethodGet:
		return route{"bot-openid-configuration", s.botOpenIDConfiguration}
	case p == botKeysPath && r.Method == http.MethodGet:
		return route{"bot-keys", s.botKeys}
	case !strings.HasPrefix(p, "/bot/"):
		return route{}
	}
	segs := botSegments(r)
	if len(segs) < 3 || segs[1] != "v3" || segs[2] != "conversations" {
		return route{}
	}
	switch n := len(segs); {
	case n == 3 && r.Method == http.MethodPost:
		return route{"bot-create-conversation", s.botCreateConversation}
	case n == 5 && segs[4] == "activities" && r.Method == http.MethodPost:
		return route{"bot-send", s.botSend}
	case n == 6 && segs[4] == "activities" && r.Method == http.MethodPut:
		return route{"bot-update", s.botUpdate}
	}
	return route{}
}

// botSegments splits /bot/{region}/… into unescaped segments after /bot/ (conversation ids
// contain ':', '@' and ';', which clients may or may not escape).
func botSegments(r *http.Request) []string {
	raw := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/bot/"), "/")
	for i, s := range raw {
		if u, err := url.PathUnescape(s); err == nil {
			raw[i] = u
		}
	}
	return raw
}

// botError writes the Bot Connector's error envelope.
func botError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, "application/json; charset=utf-8", map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// botFault answers an injected fault on a Bot Connector route, in its format (Code
// MessageWritesBlocked gives Teams' blocked body).
func (s *Server) botFault(w http.ResponseWriter, f *Fault) {
	b := s.lockBot()
	b.stats.Faults++
	if f.Status == http.StatusTooManyRequests {
		b.stats.Throttled++
	}
	b.mu.Unlock()
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatFloat(f.RetryAfter.Seconds(), 'f', -1, 64))
	}
	if f.Code == "MessageWritesBlocked" {
		writeBlockedStatus(w, f.Status)
		return
	}
	code, msg := f.Code, f.Message
	if code == "" {
		code = strings.ReplaceAll(http.StatusText(f.Status), " ", "")
	}
	if msg == "" {
		msg = http.StatusText(f.Status)
	}
	botError(w, f.Status, code, msg)
}

func writeBlockedStatus(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, botBlockedBody)
}

// botAuth checks the bot's bearer token: signed by the sim's Entra key, audience
// https://api.botframework.com, issued to the registered bot in its home tenant, not expired.
// On failure it has answered 401.
func (s *Server) botAuth(w http.ResponseWriter, r *http.Request, now time.Time) (appID string, ok bool) {
	deny := func() (string, bool) {
		b := s.lockBot()
		b.stats.Unauthorized++
		b.mu.Unlock()
		writeJSON(w, http.StatusUnauthorized, "application/json; charset=utf-8", map[string]string{"message": "Authorization has been denied for this request."})
		return "", false
	}
	scheme, tok, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return deny()
	}
	c, err := parseJWT(tok)
	if err != nil || c.Aud != botTokenAudience || now.Unix() >= c.Exp || now.Unix() < c.Nbf-300 {
		return deny()
	}
	home, isBot := s.botHome(c.AppID)
	if !isBot || !strings.EqualFold(c.Tid, home) {
		return deny()
	}
	return strings.ToLower(c.AppID), true
}

// readBotBody reads a JSON object body; on false it has answered 400 or 413.
func (s *Server) readBotBody(w http.ResponseWriter, r *http.Request, v any) ([]byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	bad := func(status int, code, msg string) ([]byte, bool) {
		b := s.lockBot()
		b.stats.BadRequests++
		b.mu.Unlock()
		botError(w, status, code, msg)
		return nil, false
	}
	if err != nil {
		return bad(http.StatusBadRequest, "BadSyntax", "Unable to read the request body.")
	}
	if len(body) > botMaxActivityBytes {
		return bad(http.StatusRequestEntityTooLarge, "MessageSizeTooBig", "Message size too big.")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return bad(http.StatusBadRequest, "BadSyntax", "Invalid JSON: "+err.Error())
	}
	return body, true
}

// admitLocked applies the rate limits to one operation at now: the tenant's per-second limit
// and, with perConv, the conversation's windows. An admitted operation is recorded; a refused
// one is counted as a violation and gets the wait until the window admits it.
func (b *botState) admitLocked(c *botConv, perConv bool, now time.Time) (time.Duration, bool) {
	var wait time.Duration
	convOver, tenantOver := false, false
	rate := b.rate
	if rate == 0 {
		rate = defaultBotTenantRate
	}
	ops := prune(b.tenantOp[c.tenant], now.Add(-time.Second))
	b.tenantOp[c.tenant] = ops
	if rate > 0 && len(ops) >= rate {
		tenantOver = true
		wait = max(wait, ops[len(ops)-rate].Add(time.Second).Sub(now))
	}
	if perConv {
		c.ops = prune(c.ops, now.Add(-time.Hour))
		for _, l := range botConvLimits {
			from := now.Add(-l.window)
			in := 0
			for i := len(c.ops) - 1; i >= 0 && c.ops[i].After(from); i-- {
				in++
			}
			if in >= l.n {
				convOver = true
				wait = max(wait, c.ops[len(c.ops)-l.n].Add(l.window).Sub(now))
			}
		}
	}
	if convOver || tenantOver {
		b.stats.Violations++
		b.stats.Throttled++
		if convOver {
			b.stats.ConversationViolations++
		}
		if tenantOver {
			b.stats.TenantViolations++
		}
		return max(wait, time.Millisecond), false
	}
	b.tenantOp[c.tenant] = append(ops, now)
	if perConv {
		c.ops = append(c.ops, now)
	}
	if b.stats.First.IsZero() {
		b.stats.First = now
	}
	b.stats.Last = now
	return 0, true
}

// prune drops the times not after since (times are in order).
func prune(ts []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(since) {
		i++
	}
	if i == 0 {
		return ts
	}
	return append(ts[:0], ts[i:]...)
}

func writeThrottled(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.FormatFloat(wait.Seconds(), 'f', 3, 64))
	botError(w, http.StatusTooManyRequests, "TooManyRequests", "Too many requests. Please retry after the time given in Retry-After.")
}

func (s *Server) botCreateConversation(w http.ResponseWriter, r *http.Request) {
	now := s.Now()
	appID, ok := s.botAuth(w, r, now)
	if !ok {
		return
	}
	var body struct {
		Bot         struct{ ID string }   `json:"bot"`
		Members     []struct{ ID string } `json:"members"`
		IsGroup     bool                  `json:"isGroup"`
		TenantID    string                `json:"tenantId"`
		ChannelData struct {
			Tenant struct{ ID string } `json:"tenant"`
		} `json:"channelData"`
	}
	if _, ok := s.readBotBody(w, r, &body); !ok {
		return
	}
	tenant := strings.ToLower(body.ChannelData.Tenant.ID)
	if tenant == "" {
		tenant = strings.ToLower(body.TenantID)
	}
	s.mu.Lock()
	_, known := s.tenants[tenant]
	s.mu.Unlock()
	b := s.lockBot()
	defer b.mu.Unlock()
	bad := func(code, msg string) {
		b.stats.BadRequests++
		botError(w, http.StatusBadRequest, code, msg)
	}
	switch {
	case tenant == "" || !known:
		bad("BadArgument", "Tenant id is required and must be a tenant where the bot is installed.")
		return
	case body.IsGroup || len(body.Members) != 1:
		bad("BadArgument", "Exactly one member is required for a personal conversation (isGroup false).")
		return
	case body.Bot.ID != "" && !strings.EqualFold(body.Bot.ID, "28:"+appID):
		bad("BadArgument", "The bot id does not match the token's app id.")
		return
	}
	member := body.Members[0].ID
	var c *botConv
	if u, ok := b.users[member]; ok && u.tenant == tenant {
		c = b.convLocked(u.tenant, u.oid)
	} else if cid := botConvID(b.appID, tenant, strings.ToLower(member)); b.convs[cid] != nil && b.convs[cid].installed {
		c = b.convs[cid] // an Entra object id works once the app is installed
	}
	if c == nil {
		bad("BadArgument", "Invalid user identity in provided tenant.")
		return
	}
	if wait, ok := b.admitLocked(c, true, now); !ok {
		writeThrottled(w, wait)
		return
	}
	if !c.installed && !c.blocked {
		b.stats.NotInstalled++
		botError(w, http.StatusForbidden, "ForbiddenOperationException", "Bot is not installed in user's personal scope")
		return
	}
	b.stats.Created++
	writeJSON(w, http.StatusCreated, "application/json; charset=utf-8", map[string]string{"id": c.id})
}

func (s *Server) botSend(w http.ResponseWriter, r *http.Request) {
	s.botWrite(w, r, botSegments(r)[3], "")
}

func (s *Server) botUpdate(w http.ResponseWriter, r *http.Request) {
	segs := botSegments(r)
	s.botWrite(w, r, segs[3], segs[5])
}

// botWrite posts (activityID "") or updates an activity in a conversation.
func (s *Server) botWrite(w http.ResponseWriter, r *http.Request, convID, activityID string) {
	now := s.Now()
	if _, ok := s.botAuth(w, r, now); !ok {
		return
	}
	var act struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	raw, ok := s.readBotBody(w, r, &act)
	if !ok {
		return
	}
	b := s.lockBot()
	defer b.mu.Unlock()
	c := b.findConvLocked(convID)
	if c == nil || !c.installed && !c.blocked {
		b.stats.NotFound++
		botError(w, http.StatusNotFound, "ConversationNotFound", "Conversation not found.")
		return
	}
	if activityID != "" && !c.activities[activityID] {
		b.stats.NotFound++
		botError(w, http.StatusNotFound, "ActivityNotFound", "Activity not found.")
		return
	}
	if act.Type == "" {
		b.stats.BadRequests++
		botError(w, http.StatusBadRequest, "BadArgument", "Activity type is required.")
		return
	}
	if wait, ok := b.admitLocked(c, activityID == "", now); !ok {
		writeThrottled(w, wait)
		return
	}
	if c.blocked {
		b.stats.Blocked++
		writeBlockedStatus(w, http.StatusForbidden)
		return
	}
	op, status := "update", http.StatusOK
	if activityID == "" {
		op, status = "send", http.StatusCreated
		b.lastID = max(b.lastID+1, now.UnixMilli())
		activityID = strconv.FormatInt(b.lastID, 10)
		c.activities[activityID] = true
		b.stats.Sent++
	} else {
		b.stats.Updated++
	}
	var compact bytes.Buffer
	if json.Compact(&compact, raw) != nil {
		compact.Write(raw)
	}
	c.posted = append(c.posted, PostedActivity{ConversationID: c.id, ActivityID: activityID, Op: op, Type: act.Type, Text: act.Text, Activity: compact.Bytes(), At: now})
	writeJSON(w, status, "application/json; charset=utf-8", map[string]string{"id": activityID})
}
