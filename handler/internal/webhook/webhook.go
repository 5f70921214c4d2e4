// Package webhook is the Graph change-notification endpoints (GraphNotifications and
// GraphLifecycle): the validation handshake, every notification's clientState checked in
// constant time against its subscription, the validationTokens of rich notifications checked,
// and what passes enqueued to channel-events in one Service Bus batch before answering 202; user
// and group change notifications instead mark their org for a real-time sync round. Nothing slow happens here: Graph delays and then drops endpoints that answer late, so the
// work (decrypting, fetching, matching) is the worker's.
package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/problem"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

type (
	subscriptionStore interface {
		Get(ctx context.Context, org tablestore.Org, id string) (subscriptions.Sub, tablestore.ETag, error)
	}
	// tokenValidator checks a validationTokens JWT for a tenant.
	tokenValidator interface {
		Validate(ctx context.Context, token, tenantID string) error
	}
	publisher interface {
		PublishBatch(ctx context.Context, msgs []queue.Message) error
	}
	// directoryNotifier marks an org for a real-time sync round.
	directoryNotifier interface {
		Notified(ctx context.Context, org tablestore.Org) error
	}
)

// Config wires a Handler.
type Config struct {
	Subscriptions subscriptionStore
	States        subscriptions.ClientStates
	Tokens        tokenValidator
	Queue         publisher
	// Directory takes the change notifications of user and group subscriptions: they mark the
	// org for a delta round at once instead of queueing one message each (optional).
	Directory directoryNotifier
	Logger    *slog.Logger
	Now       func() time.Time
	// CacheFor is how long a subscription read from the table is trusted (default 1 min): a
	// burst of notifications costs one read per subscription, not one per notification.
	CacheFor time.Duration
}

// Handler serves both endpoints.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	cache map[string]cached
	// Counters, for the monitoring status and the logs.
	Accepted, Dropped atomic.Int64
}

type cached struct {
	sub   subscriptions.Sub
	found bool
	at    time.Time
}

// New returns a Handler. It does no I/O.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheFor <= 0 {
		cfg.CacheFor = time.Minute
	}
	return &Handler{cfg: cfg, log: cfg.Logger, cache: map[string]cached{}}
}

// guid is the shape of a Graph subscription id.
var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// maxUnknownPerPost bounds the unknown subscriptions one POST may make us look up.
const maxUnknownPerPost = 8

// Limits of what Graph sends.
const (
	maxBody            = 4 << 20 // Graph batches up to ~1 MB of notifications; room to spare
	maxValidationToken = 4096
	maxNotifications   = 1000
)

// Event is a message on channel-events: one notification or lifecycle event of an org.
type Event struct {
	Org       string `json:"org"`
	Lifecycle bool   `json:"lifecycle,omitempty"`
	// Purpose is the subscription's (see package subscriptions): the worker routes by it.
	Purpose      string          `json:"purpose,omitempty"`
	Notification json.RawMessage `json:"notification"`
}

// notification is the part of a Graph notification the endpoint checks.
// EventPurpose is the subscription purpose an Event body names ("" when unreadable).
func EventPurpose(body []byte) string {
	var ev struct {
		Purpose string `json:"purpose"`
	}
	_ = json.Unmarshal(body, &ev)
	return ev.Purpose
}

type notification struct {
	SubscriptionID   string          `json:"subscriptionId"`
	ClientState      string          `json:"clientState"`
	TenantID         string          `json:"tenantId"`
	ChangeType       string          `json:"changeType"`
	LifecycleEvent   string          `json:"lifecycleEvent"`
	Resource         string          `json:"resource"`
	EncryptedContent json.RawMessage `json:"encryptedContent"`
}

type envelope struct {
	Value            []json.RawMessage `json:"value"`
	ValidationTokens []string          `json:"validationTokens"`
}

// Notifications is the GraphNotifications function.
func (h *Handler) Notifications() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, false) })
}

// Lifecycle is the GraphLifecycle function.
func (h *Handler) Lifecycle() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, true) })
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, lifecycle bool) {
	q := r.URL.Query()
	if q.Has("validationToken") {
		// The handshake: the decoded token, as plain text, at once.
		tok := q.Get("validationToken")
		if len(tok) > maxValidationToken {
			problem.Write(w, r, problem.New(http.StatusBadRequest, problem.Invalid, "validationToken is too long"))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, tok)
		return
	}
	org, err := tablestore.NewOrg(q.Get("org"))
	if err != nil {
		problem.Write(w, r, problem.New(http.StatusBadRequest, problem.Invalid, "the notification URL names no org"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var env envelope
	if err == nil {
		err = json.Unmarshal(body, &env)
	}
	if err != nil || len(env.Value) == 0 || len(env.Value) > maxNotifications {
		problem.Write(w, r, problem.New(http.StatusBadRequest, problem.Invalid, "not a change notification collection"))
		return
	}
	ctx := r.Context()
	var msgs []queue.Message
	directory := 0              // user and group change notifications that passed
	looked := map[string]bool{} // subscription ids looked up in this POST
	unknown := 0
	tokensGood := h.tokensValid(ctx, env) // checked once per POST, only when resource data came
	for _, raw := range env.Value {
		var n notification
		if json.Unmarshal(raw, &n) != nil || !guid.MatchString(n.SubscriptionID) {
			h.drop(ctx, org, "", "malformed")
			continue
		}
		if !looked[n.SubscriptionID] && unknown >= maxUnknownPerPost {
			// Made-up ids cost a table read each: an anonymous POST gets a few, not a thousand.
			h.drop(ctx, org, n.SubscriptionID, "unknown subscription")
			continue
		}
		looked[n.SubscriptionID] = true
		sub, ok, err := h.subscription(ctx, org, n.SubscriptionID)
		if err != nil {
			// Storage trouble: answer 503 so Graph delivers again — nothing is lost.
			h.log.ErrorContext(ctx, "webhook: reading a subscription", "error", err.Error())
			problem.Write(w, r, problem.New(http.StatusServiceUnavailable, problem.Unavailable, "try again"))
			return
		}
		switch {
		case !ok:
			unknown++
			h.drop(ctx, org, n.SubscriptionID, "unknown subscription")
			continue
		case !h.cfg.States.Valid(org, sub, n.ClientState):
			h.drop(ctx, org, n.SubscriptionID, "clientState mismatch")
			continue
		case !strings.EqualFold(n.TenantID, sub.Tenant):
			h.drop(ctx, org, n.SubscriptionID, "tenant mismatch")
			continue
		case lifecycle != (n.LifecycleEvent != ""):
			h.drop(ctx, org, n.SubscriptionID, "wrong endpoint for the event")
			continue
		}
		if len(n.EncryptedContent) > 0 {
			if !tokensGood() {
				h.drop(ctx, org, n.SubscriptionID, "validation tokens invalid")
				continue
			}
		}
		if !lifecycle && subscriptions.Directory(sub.Purpose) && h.cfg.Directory != nil {
			directory++ // what changed is read by the delta round, not per notification
			continue
		}
		ev, _ := json.Marshal(Event{Org: org.String(), Lifecycle: lifecycle, Purpose: sub.Purpose, Notification: raw})
		sum := sha256.Sum256(raw)
		msgs = append(msgs, queue.Message{Queue: queue.ChannelEvents, ID: "n-" + hex.EncodeToString(sum[:16]), Body: ev,
			ContentType: "application/json", Subject: "notification"})
	}
	if directory > 0 {
		if err := h.cfg.Directory.Notified(ctx, org); err != nil {
			h.log.ErrorContext(ctx, "webhook: marking the org for real-time sync", "error", err.Error(), "org", org.String())
			problem.Write(w, r, problem.New(http.StatusServiceUnavailable, problem.Unavailable, "try again"))
			return
		}
		h.Accepted.Add(int64(directory))
	}
	if len(msgs) > 0 {
		if err := h.cfg.Queue.PublishBatch(ctx, msgs); err != nil {
			h.log.ErrorContext(ctx, "webhook: enqueueing notifications", "error", err.Error(), "count", len(msgs))
			problem.Write(w, r, problem.New(http.StatusServiceUnavailable, problem.Unavailable, "try again"))
			return
		}
		h.Accepted.Add(int64(len(msgs)))
	}
	w.WriteHeader(http.StatusAccepted)
}

// tokensValid returns whether the POST's validationTokens are all good: Graph sends one per
// app and tenant of the rich notifications it carries, and every one must be Microsoft's, for
// our app, for one of those tenants. Decided on first use (a POST without resource data
// validates nothing).
func (h *Handler) tokensValid(ctx context.Context, env envelope) func() bool {
	var once sync.Once
	var good bool
	return func() bool {
		once.Do(func() {
			if h.cfg.Tokens == nil || len(env.ValidationTokens) == 0 {
				return
			}
			tenants := map[string]bool{}
			for _, raw := range env.Value {
				var n notification
				if json.Unmarshal(raw, &n) == nil && len(n.EncryptedContent) > 0 && n.TenantID != "" {
					tenants[strings.ToLower(n.TenantID)] = true
				}
			}
			for _, tok := range env.ValidationTokens {
				ok := false
				for tenant := range tenants {
					if h.cfg.Tokens.Validate(ctx, tok, tenant) == nil {
						ok = true
						break
					}
				}
				if !ok {
					return
				}
			}
			good = true
		})
		return good
	}
}

func (h *Handler) drop(ctx context.Context, org tablestore.Org, sub, why string) {
	h.Dropped.Add(1)
	h.log.WarnContext(ctx, "webhook: notification dropped", "org", org.String(), "subscription", sub, "reason", why)
}

// subscription reads a subscription through the cache.
func (h *Handler) subscription(ctx context.Context, org tablestore.Org, id string) (subscriptions.Sub, bool, error) {
	k := org.String() + "\x00" + id
	now := h.cfg.Now()
	h.mu.Lock()
	c, ok := h.cache[k]
	h.mu.Unlock()
	ttl := h.cfg.CacheFor
	if !c.found {
		ttl = min(ttl, 5*time.Second) // a subscription just created must not wait a minute to count
	}
	if ok && now.Sub(c.at) < ttl {
		return c.sub, c.found, nil
	}
	sub, _, err := h.cfg.Subscriptions.Get(ctx, org, id)
	found := err == nil
	if err != nil && !errors.Is(err, errkind.NotFound) {
		return sub, false, err
	}
	h.mu.Lock()
	if len(h.cache) > 10_000 {
		clear(h.cache) // bounded: a flood of made-up ids cannot grow it
	}
	h.cache[k] = cached{sub: sub, found: found, at: now}
	h.mu.Unlock()
	return sub, found, nil
}

// Forget drops a subscription from the cache (after it changed here).
func (h *Handler) Forget(org tablestore.Org, id string) {
	h.mu.Lock()
	delete(h.cache, org.String()+"\x00"+id)
	h.mu.Unlock()
}
