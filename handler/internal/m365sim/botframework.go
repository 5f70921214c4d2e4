package m365sim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The Bot Framework side of the simulated tenant: Bot Framework OpenID metadata and JWKS,
// activities sent to the bot's endpoint as Teams would (signed), and the Bot Connector REST API
// the bot calls back with its Limits. Its state has its own lock (bot.mu), taken after s.mu when
// both are needed and never before it, so that the Graph routes may call botInstalled and
// botUninstalled with s.mu held.

const (
	botIssuer            = "https://api.botframework.com"
	botTokenAudience     = "https://api.botframework.com" // aud of the bot's outbound tokens
	botMetadataPath      = "/botframework/v1/.well-known/openidconfiguration"
	botKeysPath          = "/botframework/v1/.well-known/keys"
	botServicePath       = "/bot/emea/"
	botChannel           = "msteams"
	defaultBotTenantRate = 30
)

// Teams' per-conversation limits for the bot (send and create conversation), in rolling
// windows: 7 per second, 8 per 2 s, 60 per 30 s, 1800 per hour.
var botConvLimits = []struct {
	n      int
	window time.Duration
}{{7, time.Second}, {8, 2 * time.Second}, {60, 30 * time.Second}, {1800, time.Hour}}

// BotStats counts the Bot Connector traffic and the activities sent to the bot.
type BotStats struct {
	Created int64 `json:"created"` // conversations created (or found) by POST v3/conversations
	Sent    int64 `json:"sent"`    // activities posted
	Updated int64 `json:"updated"` // activities updated
	// Throttled is every 429 the Bot Connector routes answered: Violations plus injected faults.
	Throttled int64 `json:"throttled"`
	// Violations are requests over a Teams limit (answered 429, not performed), split into
	// ConversationViolations (7/1 s, 8/2 s, 60/30 s, 1800/h per conversation) and
	// TenantViolations (per app per tenant per second, SetBotTenantRate).
	Violations             int64 `json:"violations"`
	ConversationViolations int64 `json:"conversationViolations"`
	TenantViolations       int64 `json:"tenantViolations"`
	Blocked                int64 `json:"blocked"`      // 403 MessageWritesBlocked answered
	NotInstalled           int64 `json:"notInstalled"` // 403 ForbiddenOperationException answered
	Unauthorized           int64 `json:"unauthorized"` // 401 answered (bad or missing bot token)
	NotFound               int64 `json:"notFound"`     // 404 answered
	BadRequests            int64 `json:"badRequests"`  // 400 and 413 answered
	Faults                 int64 `json:"faults"`       // injected faults answered on the Bot Connector routes
	// Inbound counts activities the sim posted to the bot's endpoint; InboundFailed those that
	// got no answer or a non-2xx one.
	Inbound       int64 `json:"inbound"`
	InboundFailed int64 `json:"inboundFailed"`
	// First and Last are the sim times of the first and last accepted create, send or update.
	First time.Time `json:"first,omitzero"`
	Last  time.Time `json:"last,omitzero"`
}

// PostedActivity is one activity the bot posted or updated in a conversation.
type PostedActivity struct {
	ConversationID string          `json:"conversationId"`
	ActivityID     string          `json:"activityId"`
	Op             string          `json:"op"` // "send" or "update"
	Type           string          `json:"type"`
	Text           string          `json:"text,omitempty"`
	Activity       json.RawMessage `json:"activity"` // the body as posted
	At             time.Time       `json:"at"`
}

type botState struct {
	mu       sync.Mutex
	pending  sync.WaitGroup // asynchronous deliveries to the endpoint
	appID    string         // "" until RegisterBot
	home     string
	endpoint string
	client   *http.Client
	gen      int                 // signing key generation (RotateBotKeys)
	rate     int                 // per app per tenant per second; 0 default, <0 off
	users    map[string]botUser  // "29:" id -> user
	convs    map[string]*botConv // conversation id -> conversation
	chats    map[string]string   // Graph chat id -> conversation id
	tenantOp map[string][]time.Time
	lastID   int64
	stats    BotStats
}

type botUser struct{ tenant, oid string }

type botConv struct {
	id, chatID, tenant, oid, userID string
	installed, blocked              bool
	ops                             []time.Time // accepted sends and creates of the last hour
	posted                          []PostedActivity
	activities                      map[string]bool
}

// lockBot takes the bot lock and makes its maps; the caller unlocks bot.mu.
func (s *Server) lockBot() *botState {
	b := &s.bot
	b.mu.Lock()
	if b.users == nil {
		b.users, b.convs, b.chats, b.tenantOp = map[string]botUser{}, map[string]*botConv{}, map[string]string{}, map[string][]time.Time{}
	}
	return b
}

// --- registration and ids ------------------------------------------------------------------

// RegisterBot registers the bot: an Entra app appID with secret in its home tenant (added if
// absent), whose tokens for https://api.botframework.com/.default are issued only there, and
// endpoint, the bot's messaging URL to which activities are POSTed. One bot per sim:
// registering again replaces it.
func (s *Server) RegisterBot(appID, homeTenant, secret, endpoint string) {
	s.init()
	appID, homeTenant = strings.ToLower(appID), strings.ToLower(homeTenant)
	s.mu.Lock()
	_, ok := s.tenants[homeTenant]
	s.mu.Unlock()
	if !ok {
		s.AddTenant(homeTenant, "bot-home-"+homeTenant[:min(8, len(homeTenant))]+".example")
	}
	s.RegisterApp(appID, secret)
	if err := s.Consent(homeTenant, appID); err != nil {
		panic(err) // the tenant exists: cannot happen
	}
	b := s.lockBot()
	defer b.mu.Unlock()
	b.appID, b.home, b.endpoint = appID, homeTenant, endpoint
}

// SetBotEndpointClient sets the client that posts activities to the bot's endpoint (default:
// one with a 30 s timeout that trusts the system's roots; tests with an httptest TLS server
// pass its Client()).
func (s *Server) SetBotEndpointClient(c *http.Client) {
	b := s.lockBot()
	defer b.mu.Unlock()
	b.client = c
}

// botHome returns the home tenant of appID when it is the registered bot.
func (s *Server) botHome(appID string) (string, bool) {
	b := s.lockBot()
	defer b.mu.Unlock()
	return b.home, b.appID != "" && b.appID == strings.ToLower(appID)
}

// BotOpenIDMetadataURL is the Bot Framework OpenID metadata document
// (BOT_OPENID_METADATA_URL), whose jwks_uri lists the keys that sign activities to the bot.
func (s *Server) BotOpenIDMetadataURL() string { return s.URL() + botMetadataPath }

// BotServiceURL is the Bot Connector service URL the sim's activities carry (a regional-looking
// base with a trailing slash, like https://smba.trafficmanager.net/emea/).
func (s *Server) BotServiceURL() string { return s.URL() + botServicePath }

func botHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// BotUserID is the stable "29:…" id of a user for the registered bot (another bot would see
// another id). Like BotConversation and BotChatID, it depends on the bot: ask after RegisterBot.
func (s *Server) BotUserID(tenant, userObjectID string) string {
	b := s.lockBot()
	defer b.mu.Unlock()
	return b.convLocked(tenant, userObjectID).userID
}

// BotConversation is the id of the user's 1:1 conversation with the bot ("a:…").
func (s *Server) BotConversation(tenant, userObjectID string) string {
	b := s.lockBot()
	defer b.mu.Unlock()
	return b.convLocked(tenant, userObjectID).id
}

// BotChatID is the Graph chat id of the user's 1:1 chat with the bot
// ("19:…@unq.gbl.spaces", what GET …/installedApps/{id}/chat answers); the Bot Connector
// accepts it as the conversation id as well.
func (s *Server) BotChatID(tenant, userObjectID string) string {
	b := s.lockBot()
	defer b.mu.Unlock()
	return b.convLocked(tenant, userObjectID).chatID
}

// botConvID is the id of the bot's 1:1 conversation with the user.
func botConvID(appID, tenant, oid string) string {
	return "a:1" + botHash("conversation", appID, tenant, oid)[:40]
}

// convLocked returns (creating) the 1:1 conversation of the bot with the user.
func (b *botState) convLocked(tenant, oid string) *botConv {
	tenant, oid = strings.ToLower(tenant), strings.ToLower(oid)
	userID := "29:1" + botHash("user", b.appID, tenant, oid)[:42]
	id := botConvID(b.appID, tenant, oid)
	if c, ok := b.convs[id]; ok {
		return c
	}
	c := &botConv{id: id, chatID: "19:" + oid + "_" + b.appID + "@unq.gbl.spaces", tenant: tenant, oid: oid, userID: userID, activities: map[string]bool{}}
	b.convs[id], b.chats[c.chatID], b.users[userID] = c, id, botUser{tenant, oid}
	return c
}

// findConvLocked resolves a conversation id or Graph chat id.
func (b *botState) findConvLocked(id string) *botConv {
	if c, ok := b.convs[id]; ok {
		return c
	}
	if cid, ok := b.chats[id]; ok {
		return b.convs[cid]
	}
	return nil
}

// --- inspection and control ----------------------------------------------------------------

// BotPosted returns what the bot posted and updated in a conversation (id or chat id), in
// order; nil for none.
func (s *Server) BotPosted(conversationID string) []PostedActivity {
	b := s.lockBot()
	defer b.mu.Unlock()
	c := b.findConvLocked(conversationID)
	if c == nil || len(c.posted) == 0 {
		return nil
	}
	out := make([]PostedActivity, len(c.posted))
	for i, p := range c.posted {
		p.Activity = append(json.RawMessage(nil), p.Activity...)
		out[i] = p
	}
	return out
}

// BotStats returns a snapshot of the Bot Framework counters.
func (s *Server) BotStats() BotStats {
	b := s.lockBot()
	defer b.mu.Unlock()
	return b.stats
}

// ResetBotStats zeroes the Bot Framework counters (conversations and posts stay).
func (s *Server) ResetBotStats() {
	b := s.lockBot()
	defer b.mu.Unlock()
	b.stats = BotStats{}
}

// SetBotTenantRate sets the per app per tenant limit in requests per second (Microsoft's pages
// say 30 or 50; default 30); 0 restores the default, a negative value turns it off.
func (s *Server) SetBotTenantRate(perSecond int) {
	b := s.lockBot()
	defer b.mu.Unlock()
	b.rate = perSecond
}

// BlockBot makes the user block the bot: sends and updates in their conversation answer 403
// MessageWritesBlocked (until botInstalled installs it again).
func (s *Server) BlockBot(tenant, userObjectID string) {
	b := s.lockBot()
	defer b.mu.Unlock()
	b.convLocked(tenant, userObjectID).blocked = true
}

// RotateBotKeys makes a new key sign the activities; the JWKS then lists it and the previous
// one (plus the key that is not endorsed for Teams).
func (s *Server) RotateBotKeys() {
	b := s.lockBot()
	defer b.mu.Unlock()
	b.gen++
}

// BotWait waits until the activities botInstalled and botUninstalled send asynchronously have
// been answered.
func (s *Server) BotWait() { s.bot.pending.Wait() }

// --- keys (shared by every Server in the process: RSA generation is slow) -------------------

// botKey is a Bot Framework signing key, made like the Entra token signer's.
type botKey = signer

var botKeys struct {
	mu   sync.Mutex
	keys map[string]*botKey
}

// botKeyNamed returns the process-wide key of that name ("gen-0", "webchat", "rogue", ...).
func botKeyNamed(name string) *botKey {
	botKeys.mu.Lock()
	defer botKeys.mu.Unlock()
	if k, ok := botKeys.keys[name]; ok {
		return k
	}
	k := newSigner(int64(len(botKeys.keys)+10), "m365sim Bot Framework signing "+name)
	if botKeys.keys == nil {
		botKeys.keys = map[string]*botKey{}
	}
	botKeys.keys[name] = k
	return k
}

func botGenKey(gen int) *botKey { return botKeyNamed("gen-" + strconv.Itoa(gen)) }

// publishedBotKeys are the JWKS entries: the current key and the previous one endorsed for
// msteams, and one endorsed for webchat only.
func (s *Server) publishedBotKeys() []map[string]any {
	b := s.lockBot()
	gen := b.gen
	b.mu.Unlock()
	type entry struct {
		k            *botKey
		endorsements []string
	}
	es := []entry{{botGenKey(gen), []string{botChannel}}}
	if gen > 0 {
		es = append(es, entry{botGenKey(gen - 1), []string{botChannel}})
	}
	es = append(es, entry{botKeyNamed("webchat"), []string{"webchat"}})
	out := make([]map[string]any, 0, len(es))
	for _, e := range es {
		pub := e.k.key.PublicKey
		out = append(out, map[string]any{
			"kty":          "RSA",
			"use":          "sig",
			"kid":          e.k.kid,
			"x5t":          e.k.kid,
			"n":            base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e":            base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
			"x5c":          []string{base64.StdEncoding.EncodeToString(e.k.cert)},
			"endorsements": e.endorsements,
		})
	}
	return out
}

func (s *Server) botOpenIDConfiguration(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", map[string]any{
		"issuer":                                botIssuer,
		"authorization_endpoint":                "https://invalid.botframework.com",
		"jwks_uri":                              baseURL(r) + botKeysPath,
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
	})
}

func (s *Server) botKeys(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", map[string]any{"keys": s.publishedBotKeys()})
}
