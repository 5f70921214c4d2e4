package m365sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Channel messages: the messages and replies of the teams' channels (teams.go), the Graph
// routes that read them, resource-specific consent (RSC) per team, and the state API that
// posts, edits and deletes them — each change notifies the matching subscriptions
// (subscriptions.go). See doc.go, section Change notifications.

func init() {
	Roles["ChannelMessage.Read.All"] = "7b2449af-6ccd-4f4d-9f78-e550c193f0d1"
}

const (
	// permChannelMessagesAll is the application role that reads every channel's messages.
	permChannelMessagesAll = "ChannelMessage.Read.All"
	// RSCChannelMessageRead is the resource-specific consent permission that reads the
	// channel messages of one team, granted when the app is installed there (GrantRSC).
	RSCChannelMessageRead = "ChannelMessage.Read.Group"
	// maxMessagesTop is the largest $top the message listings accept (the default is 20).
	maxMessagesTop = 50
)

// ChannelMessageInput is a message a user posts in a channel (PostChannelMessage,
// PostChannelReply).
type ChannelMessageInput struct {
	AuthorID    string `json:"authorId"` // the user's object id
	AuthorName  string `json:"authorName"`
	ContentType string `json:"contentType"` // "html" (default) or "text"
	Content     string `json:"content"`
	Subject     string `json:"subject"`
	// Mentions are the users the content mentions as <at id="i">DisplayName</at>, i being the
	// index in this list.
	Mentions []ChannelMention `json:"mentions"`
}

// ChannelMention is a user mentioned in a message.
type ChannelMention struct {
	UserID      string `json:"userId"`
	DisplayName string `json:"displayName"`
}

// ChannelMessage is a message or reply as the sim holds it.
type ChannelMessage struct {
	ID, ReplyToID, TeamID, ChannelID string
	ChannelMessageInput
	Created, LastModified, LastEdited, Deleted time.Time
}

type msgRec struct {
	ChannelMessage
	replies []*msgRec // of a root message, in creation order
}

// chainModified is when a root message or any of its replies last changed.
func (m *msgRec) chainModified() time.Time {
	t := m.LastModified
	for _, r := range m.replies {
		if r.LastModified.After(t) {
			t = r.LastModified
		}
	}
	return t
}

// channelMsgs is one channel's messages.
type channelMsgs struct {
	roots  []*msgRec
	byID   map[string]*msgRec // roots and replies
	lastID int64
}

// notifyState is the change-notification state of a Server: channel messages, RSC grants,
// subscriptions and webhook deliveries. Guarded by Server.mu except the delivery fields, which
// have their own lock.
type notifyState struct {
	channels map[string]*channelMsgs        // tenant|team|channel (lower-cased team) -> messages
	rsc      map[string]map[string][]string // tenant|team -> app id -> RSC permissions
	subs     map[string]*subRec             // subscription id -> subscription
	gated    map[string]bool                // app ids without protected-API approval (RequireProtectedAPIApproval)
	dups     int                            // extra deliveries of each notification (SetNotificationDuplicates)

	delivery deliveryState
}

// notifyStates holds each Server's notifyState. The state belongs in a Server field; it lives
// here so that this feature stays in its own files.
var notifyStates sync.Map // *Server -> *notifyState

// notify returns the Server's change-notification state.
func (s *Server) notify() *notifyState {
	if v, ok := notifyStates.Load(s); ok {
		return v.(*notifyState)
	}
	n := &notifyState{channels: map[string]*channelMsgs{}, rsc: map[string]map[string][]string{}, subs: map[string]*subRec{}}
	n.delivery.init()
	v, _ := notifyStates.LoadOrStore(s, n)
	return v.(*notifyState)
}

func channelKey(tenantID, teamID, channelID string) string {
	return strings.ToLower(tenantID) + "|" + strings.ToLower(teamID) + "|" + channelID
}

// channelLocked finds a team's channel (s.mu held) and its messages.
func (s *Server) channelLocked(tenantID, teamID, channelID string) (*teamRec, *channelRec, *channelMsgs, error) {
	team, err := s.teamLocked(tenantID, teamID)
	if err != nil {
		return nil, nil, nil, err
	}
	i := slices.IndexFunc(team.channels, func(c *channelRec) bool { return strings.EqualFold(c.ID, channelID) })
	if i < 0 {
		return nil, nil, nil, fmt.Errorf("channel %q of team %q: %w", channelID, teamID, ErrNotFound)
	}
	ch := team.channels[i]
	n := s.notify()
	key := channelKey(tenantID, team.ID, ch.ID)
	cm := n.channels[key]
	if cm == nil {
		cm = &channelMsgs{byID: map[string]*msgRec{}}
		n.channels[key] = cm
	}
	return team, ch, cm, nil
}

// newMessageID is a Teams message id: the creation time in Unix milliseconds, made unique and
// increasing within the channel.
func (cm *channelMsgs) newMessageID(now time.Time) string {
	id := max(now.UnixMilli(), cm.lastID+1)
	cm.lastID = id
	return strconv.FormatInt(id, 10)
}

// --- state API -------------------------------------------------------------------------------

// PostChannelMessage posts a new message in a channel as a user and returns its id; the
// channel's subscriptions are notified (changeType created).
func (s *Server) PostChannelMessage(tenantID, teamID, channelID string, in ChannelMessageInput) (string, error) {
	return s.postMessage(tenantID, teamID, channelID, "", in)
}

// PostChannelReply posts a reply to the root message rootID and returns its id; the channel's
// subscriptions are notified (changeType created, resource …/messages('root')/replies('id')).
func (s *Server) PostChannelReply(tenantID, teamID, channelID, rootID string, in ChannelMessageInput) (string, error) {
	if rootID == "" {
		return "", fmt.Errorf("m365sim: a reply needs the id of its root message")
	}
	return s.postMessage(tenantID, teamID, channelID, rootID, in)
}

func (s *Server) postMessage(tenantID, teamID, channelID, rootID string, in ChannelMessageInput) (string, error) {
	switch in.ContentType {
	case "":
		in.ContentType = "html"
	case "html", "text":
	default:
		return "", fmt.Errorf("m365sim: message contentType %q: want html or text", in.ContentType)
	}
	s.init()
	s.mu.Lock()
	team, ch, cm, err := s.channelLocked(tenantID, teamID, channelID)
	if err != nil {
		s.mu.Unlock()
		return "", err
	}
	var root *msgRec
	if rootID != "" {
		if root = cm.byID[rootID]; root == nil || root.ReplyToID != "" {
			s.mu.Unlock()
			return "", fmt.Errorf("root message %q in channel %q: %w", rootID, channelID, ErrNotFound)
		}
	}
	now := s.now().UTC()
	m := &msgRec{ChannelMessage: ChannelMessage{ID: cm.newMessageID(now), ReplyToID: rootID, TeamID: team.ID, ChannelID: ch.ID,
		ChannelMessageInput: in, Created: now, LastModified: now}}
	m.Mentions = slices.Clone(in.Mentions)
	cm.byID[m.ID] = m
	if root != nil {
		root.replies = append(root.replies, m)
	} else {
		cm.roots = append(cm.roots, m)
	}
	s.changedLocked(tenantID, m, "created")
	s.mu.Unlock()
	return m.ID, nil
}

// EditChannelMessage replaces the content of a message or reply (as its author editing it in
// Teams); the subscriptions are notified (changeType updated).
func (s *Server) EditChannelMessage(tenantID, teamID, channelID, messageID, content string) error {
	deleted := fmt.Errorf("m365sim: message %q is deleted", messageID)
	return s.changeMessage(tenantID, teamID, channelID, messageID, "updated", deleted, func(m *msgRec, now time.Time) {
		m.Content, m.LastModified, m.LastEdited = content, now, now
	})
}

// DeleteChannelMessage deletes a message or reply as Teams does (soft: it stays, with
// deletedDateTime set and its content emptied); the subscriptions are notified (changeType
// deleted).
func (s *Server) DeleteChannelMessage(tenantID, teamID, channelID, messageID string) error {
	return s.changeMessage(tenantID, teamID, channelID, messageID, "deleted", nil, func(m *msgRec, now time.Time) {
		m.Content, m.Mentions, m.LastModified, m.Deleted = "", nil, now, now
	})
}

// changeMessage applies change to a message that is not deleted, at the sim's time, and
// notifies the subscriptions of changeType; a deleted message is left as it is and answers
// ifDeleted.
func (s *Server) changeMessage(tenantID, teamID, channelID, messageID, changeType string, ifDeleted error, change func(m *msgRec, now time.Time)) error {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.messageLocked(tenantID, teamID, channelID, messageID)
	if err != nil {
		return err
	}
	if !m.Deleted.IsZero() {
		return ifDeleted
	}
	change(m, s.now().UTC())
	s.changedLocked(tenantID, m, changeType)
	return nil
}

func (s *Server) messageLocked(tenantID, teamID, channelID, messageID string) (*msgRec, error) {
	_, _, cm, err := s.channelLocked(tenantID, teamID, channelID)
	if err != nil {
		return nil, err
	}
	m := cm.byID[messageID]
	if m == nil {
		return nil, fmt.Errorf("message %q in channel %q: %w", messageID, channelID, ErrNotFound)
	}
	return m, nil
}

// ChannelMessages returns a channel's messages and replies (each root followed by its
// replies), oldest first.
func (s *Server) ChannelMessages(tenantID, teamID, channelID string) ([]ChannelMessage, error) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, cm, err := s.channelLocked(tenantID, teamID, channelID)
	if err != nil {
		return nil, err
	}
	var out []ChannelMessage
	for _, r := range cm.roots {
		out = append(out, r.ChannelMessage)
		for _, rp := range r.replies {
			out = append(out, rp.ChannelMessage)
		}
	}
	return out, nil
}

// GrantRSC records resource-specific consent: the Teams app of appID (its Entra client id) is
// installed in the team and granted permissions there (default ChannelMessage.Read.Group).
func (s *Server) GrantRSC(tenantID, teamID, appID string, permissions ...string) error {
	if len(permissions) == 0 {
		permissions = []string{RSCChannelMessageRead}
	}
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	team, err := s.teamLocked(tenantID, teamID)
	if err != nil {
		return err
	}
	n := s.notify()
	key := strings.ToLower(tenantID) + "|" + strings.ToLower(team.ID)
	if n.rsc[key] == nil {
		n.rsc[key] = map[string][]string{}
	}
	app := strings.ToLower(appID)
	for _, p := range permissions {
		if !slices.Contains(n.rsc[key][app], p) {
			n.rsc[key][app] = append(n.rsc[key][app], p)
		}
	}
	return nil
}

// RevokeRSC removes the app's resource-specific consent in a team (the app is uninstalled from
// it). Its subscriptions to the team's channels that no application role covers any more are
// removed, with a subscriptionRemoved lifecycle notification.
func (s *Server) RevokeRSC(tenantID, teamID, appID string) error {
	s.init()
	s.mu.Lock()
	t, err := s.tenantLocked(tenantID)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	n := s.notify()
	delete(n.rsc[strings.ToLower(t.id)+"|"+strings.ToLower(teamID)], strings.ToLower(appID))
	var removed []*subRec
	for id, sub := range n.subs {
		if sub.tenant == t.id && strings.EqualFold(sub.appID, appID) && strings.EqualFold(sub.TeamID, teamID) &&
			!slices.Contains(t.consents[strings.ToLower(appID)], permChannelMessagesAll) {
			delete(n.subs, id)
			removed = append(removed, sub)
		}
	}
	s.mu.Unlock()
	for _, sub := range removed {
		s.postLifecycle(sub, "subscriptionRemoved")
	}
	return nil
}

// mayReadMessages reports whether the caller may read the team's channel messages: the
// application role, or the RSC permission granted in that team.
func (s *Server) mayReadMessages(g *gctx, teamID string) bool {
	if slices.Contains(g.roles, permChannelMessagesAll) {
		return true
	}
	return s.hasRSC(g, teamID)
}

// hasRSC reports whether the caller holds ChannelMessage.Read.Group in the team.
func (s *Server) hasRSC(g *gctx, teamID string) bool {
	grants := s.notify().rsc[strings.ToLower(g.t.id)+"|"+strings.ToLower(teamID)][strings.ToLower(g.appID)]
	return slices.Contains(grants, RSCChannelMessageRead)
}

// RequireProtectedAPIApproval makes the apps (client ids) ones Microsoft has not approved for
// the protected Teams APIs (https://learn.microsoft.com/graph/teams-protected-apis): their
// reads of channel messages with the application role alone answer 403 "Invoked API requires
// Protected API access in application-only context when not using Resource Specific
// Consent…"; with RSC in the team they pass. Subscriptions are not gated. By default every
// app counts as approved.
func (s *Server) RequireProtectedAPIApproval(appIDs ...string) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.notify()
	if n.gated == nil {
		n.gated = map[string]bool{}
	}
	for _, id := range appIDs {
		n.gated[strings.ToLower(id)] = true
	}
}

func messagesDenied(g *gctx) gresp {
	return missingRoles([]string{permChannelMessagesAll, RSCChannelMessageRead + " (resource-specific consent in the team)"}, g.roles)
}

// --- wire format -----------------------------------------------------------------------------

type identityJSON struct {
	ODataType        string `json:"@odata.type,omitempty"`
	ID               string `json:"id"`
	DisplayName      string `json:"displayName"`
	UserIdentityType string `json:"userIdentityType"`
	TenantID         string `json:"tenantId,omitempty"`
}

type fromJSON struct {
	Application  *struct{}     `json:"application"`
	Device       *struct{}     `json:"device"`
	User         *identityJSON `json:"user"`
	Conversation *struct{}     `json:"conversation"`
}

type mentionJSON struct {
	ID          int    `json:"id"`
	MentionText string `json:"mentionText"`
	Mentioned   struct {
		Application  *struct{}     `json:"application"`
		Device       *struct{}     `json:"device"`
		Conversation *struct{}     `json:"conversation"`
		User         *identityJSON `json:"user"`
	} `json:"mentioned"`
}

// chatMessageJSON is Graph's chatMessage as GET answers it (and a rich notification carries).
type chatMessageJSON struct {
	ODataContext         string    `json:"@odata.context,omitempty"`
	ODataType            string    `json:"@odata.type,omitempty"`
	ID                   string    `json:"id"`
	ReplyToID            *string   `json:"replyToId"`
	Etag                 string    `json:"etag"`
	MessageType          string    `json:"messageType"`
	CreatedDateTime      string    `json:"createdDateTime"`
	LastModifiedDateTime string    `json:"lastModifiedDateTime"`
	LastEditedDateTime   *string   `json:"lastEditedDateTime"`
	DeletedDateTime      *string   `json:"deletedDateTime"`
	Subject              *string   `json:"subject"`
	Summary              *string   `json:"summary"`
	ChatID               *string   `json:"chatId"`
	Importance           string    `json:"importance"`
	Locale               string    `json:"locale"`
	WebURL               string    `json:"webUrl"`
	PolicyViolation      *struct{} `json:"policyViolation"`
	EventDetail          *struct{} `json:"eventDetail"`
	From                 *fromJSON `json:"from"`
	Body                 struct {
		ContentType string `json:"contentType"`
		Content     string `json:"content"`
	} `json:"body"`
	ChannelIdentity struct {
		TeamID    string `json:"teamId"`
		ChannelID string `json:"channelId"`
	} `json:"channelIdentity"`
	Attachments    []struct{}        `json:"attachments"`
	Mentions       []mentionJSON     `json:"mentions"`
	Reactions      []struct{}        `json:"reactions"`
	MessageHistory []struct{}        `json:"messageHistory"`
	Replies        []chatMessageJSON `json:"replies,omitempty"`
	RepliesContext string            `json:"replies@odata.context,omitempty"`
}

func strPtr(s string) *string { return &s }

func timePtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	return strPtr(graphTime(t))
}

// messageWebURL is the message's deep link, in Teams' form.
func messageWebURL(tenantID string, m *msgRec) string {
	root := m.ID
	if m.ReplyToID != "" {
		root = m.ReplyToID
	}
	return "https://teams.microsoft.com/l/message/" + url.PathEscape(m.ChannelID) + "/" + m.ID + "?groupId=" + m.TeamID +
		"&tenantId=" + tenantID + "&createdTime=" + strconv.FormatInt(m.Created.UnixMilli(), 10) + "&parentMessageId=" + root
}

func (m *msgRec) wire(tenantID string, withReplies bool) chatMessageJSON {
	w := chatMessageJSON{ID: m.ID, Etag: strconv.FormatInt(m.LastModified.UnixMilli(), 10), MessageType: "message",
		CreatedDateTime: graphTime(m.Created), LastModifiedDateTime: graphTime(m.LastModified),
		LastEditedDateTime: timePtr(m.LastEdited), DeletedDateTime: timePtr(m.Deleted),
		Importance: "normal", Locale: "en-us", WebURL: messageWebURL(tenantID, m),
		Attachments: []struct{}{}, Mentions: []mentionJSON{}, Reactions: []struct{}{}, MessageHistory: []struct{}{}}
	if m.ReplyToID != "" {
		w.ReplyToID = strPtr(m.ReplyToID)
	}
	if m.Subject != "" {
		w.Subject = strPtr(m.Subject)
	}
	if m.AuthorID != "" {
		w.From = &fromJSON{User: &identityJSON{ODataType: "#microsoft.graph.teamworkUserIdentity", ID: m.AuthorID,
			DisplayName: m.AuthorName, UserIdentityType: "aadUser", TenantID: tenantID}}
	}
	w.Body.ContentType, w.Body.Content = m.ContentType, m.Content
	w.ChannelIdentity.TeamID, w.ChannelIdentity.ChannelID = m.TeamID, m.ChannelID
	for i, mt := range m.Mentions {
		var mj mentionJSON
		mj.ID, mj.MentionText = i, mt.DisplayName
		mj.Mentioned.User = &identityJSON{ID: mt.UserID, DisplayName: mt.DisplayName, UserIdentityType: "aadUser"}
		w.Mentions = append(w.Mentions, mj)
	}
	if withReplies {
		w.Replies = []chatMessageJSON{}
		for _, r := range m.replies {
			w.Replies = append(w.Replies, r.wire(tenantID, false))
		}
	}
	return w
}

// --- Graph routes ------------------------------------------------------------------------------

// channelMessagesRoute routes teams/{t}/channels/{c}/messages[…]; ok is false for other paths.
func (s *Server) channelMessagesRoute(r *http.Request, segs []string) (route, bool) {
	n := len(segs)
	if n < 5 || segs[0] != "teams" || segs[2] != "channels" || segs[4] != "messages" {
		return route{}, false
	}
	if r.Method != http.MethodGet {
		return route{}, true // posting or changing messages through Graph is not implemented (501)
	}
	switch {
	case n == 5:
		return route{"channelMessages", s.messagesGraph(s.listMessages)}, true
	case n == 6 && isDelta(segs[5]):
		return route{"channelMessages/delta", s.messagesGraph(s.messagesDelta)}, true
	case n == 6:
		return route{"channelMessage", s.messagesGraph(s.getMessage)}, true
	case n == 7 && segs[6] == "replies":
		return route{"messageReplies", s.messagesGraph(s.listReplies)}, true
	case n == 8 && segs[6] == "replies":
		return route{"messageReply", s.messagesGraph(s.getMessage)}, true
	}
	return route{}, true
}

// msgReq is a parsed request on a channel's messages.
type msgReq struct {
	team    *teamRec
	cm      *channelMsgs
	segs    []string
	tenant  string
	baseCtx string
}

// messagesGraph authenticates a message route, finds the channel and checks that the caller
// may read its messages (ChannelMessage.Read.All or RSC in the team).
func (s *Server) messagesGraph(h func(r *http.Request, g *gctx, m msgReq) gresp) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		s.writeGraph(w, r, s.runGraphDenied(r, allRoles(), missingRoles([]string{permChannelMessagesAll}, nil), func(r *http.Request, g *gctx) gresp {
			segs := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1.0/"), "/")
			tt, _ := s.teamsLocked(g.t.id)
			team := tt.team(segs[1])
			if team == nil {
				return teamsNotFound("No team found with Group Id " + segs[1])
			}
			if !s.mayReadMessages(g, team.ID) {
				return messagesDenied(g)
			}
			if s.notify().gated[strings.ToLower(g.appID)] && !s.hasRSC(g, team.ID) {
				return errResp(http.StatusForbidden, "Forbidden", "Invoked API requires Protected API access in application-only context when not using Resource Specific Consent. Visit https://docs.microsoft.com/en-us/graph/teams-protected-apis for more details.")
			}
			_, ch, cm, err := s.channelLocked(g.t.id, team.ID, segs[3])
			if err != nil {
				return teamsNotFound("Channel not found: " + segs[3])
			}
			ctx := g.base + "/v1.0/$metadata#teams('" + team.ID + "')/channels('" + url.PathEscape(ch.ID) + "')/messages"
			return h(r, g, msgReq{team: team, cm: cm, segs: segs, tenant: g.t.id, baseCtx: ctx})
		}))
	}
}

func jsonResp(v any) gresp {
	b, err := json.Marshal(v)
	if err != nil {
		return errResp(http.StatusInternalServerError, "InternalServerError", err.Error())
	}
	return gresp{body: b}
}

// getMessage is GET …/messages/{id} (a root message) and …/messages/{id}/replies/{id}.
func (s *Server) getMessage(r *http.Request, g *gctx, m msgReq) gresp {
	if e := checkQuery(r.URL.Query()); e != nil {
		return *e
	}
	msg := m.cm.byID[m.segs[5]]
	ctx := m.baseCtx
	if msg != nil && len(m.segs) == 8 {
		ctx += "('" + msg.ID + "')/replies"
		if msg = m.cm.byID[m.segs[7]]; msg != nil && msg.ReplyToID != m.segs[5] {
			msg = nil
		}
	} else if msg != nil && msg.ReplyToID != "" {
		msg = nil // a reply is read under its root's replies
	}
	if msg == nil {
		return teamsNotFound("Message not found: " + m.segs[len(m.segs)-1])
	}
	w := msg.wire(m.tenant, false)
	w.ODataContext = ctx + "/$entity"
	return jsonResp(w)
}

type msgPage struct {
	ODataContext string            `json:"@odata.context"`
	Count        *int              `json:"@odata.count,omitempty"`
	NextLink     string            `json:"@odata.nextLink,omitempty"`
	DeltaLink    string            `json:"@odata.deltaLink,omitempty"`
	Value        []chatMessageJSON `json:"value"`
}

// messagesTop reads $top (default 20, at most 50, as Graph documents for channel messages).
func messagesTop(q url.Values) (int, *gresp) {
	v := qget(q, "top")
	if v == "" {
		return 20, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxMessagesTop {
		return 0, new(teamsBadRequest(fmt.Sprintf("Invalid page size: '%s'. $top must be between 1 and %d.", v, maxMessagesTop)))
	}
	return n, nil
}

func expandReplies(q url.Values) (bool, *gresp) {
	switch v := qget(q, "expand"); v {
	case "":
		return false, nil
	case "replies":
		return true, nil
	default:
		return false, new(teamsBadRequest("Only $expand=replies is supported on channel messages, got " + v))
	}
}

// msgState is the content of the message listings' $skiptoken and $deltatoken.
type msgState struct {
	T     string `json:"t"`
	Team  string `json:"tm"`
	Ch    string `json:"c"`
	Root  string `json:"r,omitempty"` // replies of this root
	Off   int    `json:"o,omitempty"`
	Top   int    `json:"n"`
	Exp   bool   `json:"x,omitempty"`
	Since int64  `json:"s,omitempty"` // delta: chains modified after (Unix ms); -1 none
	Upto  int64  `json:"u,omitempty"` // delta: the round's high-water mark (Unix ms)
}

func encodeMsgState(st msgState) string {
	return encodeState(pageState{K: "msgs", T: st.T, F: mustJSON(st)})
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func decodeMsgState(tok string, g *gctx, m msgReq) (msgState, *gresp) {
	p, e := decodeState(tok, "msgs", g)
	if e != nil {
		return msgState{}, e
	}
	var st msgState
	if json.Unmarshal([]byte(p.F), &st) != nil || !strings.EqualFold(st.Team, m.team.ID) || st.Ch != m.segs[3] {
		return msgState{}, new(teamsBadRequest("Invalid skip token."))
	}
	return st, nil
}

// pageLink is the request's own URL with only the token query parameter.
func pageLink(g *gctx, r *http.Request, name, tok string) string {
	return g.base + r.URL.EscapedPath() + "?" + name + "=" + url.QueryEscape(tok)
}

// listMessages is GET …/messages: root messages, newest first (a sim choice; Graph does not
// document the order), $top (default 20, at most 50), $expand=replies, $skiptoken paging.
func (s *Server) listMessages(r *http.Request, g *gctx, m msgReq) gresp {
	st, e := m.listState(r.URL.Query(), g, "", "top", "expand")
	if e != nil {
		return *e
	}
	roots := slices.Clone(m.cm.roots)
	slices.Reverse(roots)
	out := msgsPage(g, r, m.baseCtx, roots, st, func(msg *msgRec) chatMessageJSON { return msg.wire(m.tenant, st.Exp) })
	return jsonResp(out)
}

// listReplies is GET …/messages/{id}/replies: oldest first, $top (at most 50), $skiptoken.
func (s *Server) listReplies(r *http.Request, g *gctx, m msgReq) gresp {
	root := m.cm.byID[m.segs[5]]
	if root == nil || root.ReplyToID != "" {
		return teamsNotFound("Message not found: " + m.segs[5])
	}
	st, e := m.listState(r.URL.Query(), g, root.ID, "top")
	if e != nil {
		return *e
	}
	out := msgsPage(g, r, m.baseCtx+"('"+root.ID+"')/replies", root.replies, st, func(msg *msgRec) chatMessageJSON { return msg.wire(m.tenant, false) })
	return jsonResp(out)
}

// messagesDelta is GET …/messages/delta (and delta()): the reply chains (root messages, with
// $expand=replies their replies) created or changed after $filter=lastModifiedDateTime gt
// <time> (the only filter Graph supports there), oldest change first, $top at most 50, pages
// by $skiptoken and a closing @odata.deltaLink whose $deltatoken returns the chains changed
// since this round.
func (s *Server) messagesDelta(r *http.Request, g *gctx, m msgReq) gresp {
	q := r.URL.Query()
	var st msgState
	switch {
	case qget(q, "skiptoken") != "":
		var e *gresp
		if st, e = decodeMsgState(qget(q, "skiptoken"), g, m); e != nil {
			return *e
		}
	case qget(q, "deltatoken") != "":
		prev, e := decodeMsgState(qget(q, "deltatoken"), g, m)
		if e != nil {
			return *e
		}
		st = msgState{T: prev.T, Team: prev.Team, Ch: prev.Ch, Top: prev.Top, Exp: prev.Exp, Since: prev.Upto}
	default:
		var e *gresp
		if st, e = m.firstState(q, g, "", "top", "expand", "filter"); e != nil {
			return *e
		}
		st.Since = -1
		if f := strings.TrimSpace(qget(q, "filter")); f != "" {
			v, ok := strings.CutPrefix(f, "lastModifiedDateTime gt ")
			t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(v))
			if !ok || err != nil {
				return teamsBadRequest("Unsupported filter: only 'lastModifiedDateTime gt <date time>' is supported on channel messages delta, got " + f)
			}
			st.Since = t.UnixMilli()
		}
	}
	if st.Upto == 0 {
		st.Upto = g.now.UnixMilli()
	}
	var chains []*msgRec
	for _, root := range m.cm.roots {
		mod := root.chainModified().UnixMilli()
		if mod > st.Since && mod <= st.Upto {
			chains = append(chains, root)
		}
	}
	slices.SortStableFunc(chains, func(a, b *msgRec) int { return a.chainModified().Compare(b.chainModified()) })
	out := msgsPage(g, r, g.base+"/v1.0/$metadata#Collection(chatMessage)", chains, st, func(msg *msgRec) chatMessageJSON {
		w := msg.wire(m.tenant, st.Exp)
		w.ODataType = "#microsoft.graph.chatMessage"
		return w
	})
	if out.NextLink == "" { // the last page
		st.Off = 0
		out.DeltaLink = pageLink(g, r, "$deltatoken", encodeMsgState(st))
	}
	return jsonResp(out)
}

// listState is the state of a listing's page: its $skiptoken's, or for a first page
// firstState's.
func (m msgReq) listState(q url.Values, g *gctx, root string, allowed ...string) (msgState, *gresp) {
	if tok := qget(q, "skiptoken"); tok != "" {
		return decodeMsgState(tok, g, m)
	}
	return m.firstState(q, g, root, allowed...)
}

// firstState reads the query of a listing's first page (allowed names the options it takes):
// $top and $expand=replies; root is the message whose replies it lists, if any.
func (m msgReq) firstState(q url.Values, g *gctx, root string, allowed ...string) (msgState, *gresp) {
	if e := checkQuery(q, allowed...); e != nil {
		return msgState{}, e
	}
	top, e := messagesTop(q)
	if e != nil {
		return msgState{}, e
	}
	exp, e := expandReplies(q) // false where allowed leaves $expand out: checkQuery refused it
	if e != nil {
		return msgState{}, e
	}
	return msgState{T: g.t.id, Team: m.team.ID, Ch: m.segs[3], Root: root, Top: top, Exp: exp}, nil
}

// msgsPage is the page of msgs that st starts, each as wire writes it, with the nextLink to
// the rest when there is one.
func msgsPage(g *gctx, r *http.Request, ctx string, msgs []*msgRec, st msgState, wire func(*msgRec) chatMessageJSON) (out msgPage) {
	page, end := pageAt(msgs, st.Off, st.Top)
	out = msgPage{ODataContext: ctx, Value: []chatMessageJSON{}}
	for _, msg := range page {
		out.Value = append(out.Value, wire(msg))
	}
	if end < len(msgs) {
		st.Off = end
		out.NextLink = pageLink(g, r, "$skiptoken", encodeMsgState(st))
	}
	return out
}
