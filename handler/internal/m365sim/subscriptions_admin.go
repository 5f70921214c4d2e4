package m365sim

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// adminChannelMessages serves /_sim/teams/{tenant}/channels/{team}/{channel}/… (Options.Admin):
//
//	GET    /_sim/teams/{t}/channels/{team}/{channel}/messages                ChannelMessages (roots each followed by their replies)
//	POST   /_sim/teams/{t}/channels/{team}/{channel}/messages                ChannelMessageInput JSON -> {"id"}: PostChannelMessage
//	POST   /_sim/teams/{t}/channels/{team}/{channel}/messages/{id}/replies   ChannelMessageInput JSON -> {"id"}: PostChannelReply
//	PATCH  /_sim/teams/{t}/channels/{team}/{channel}/messages/{id}           {"content":"…"}: EditChannelMessage
//	DELETE /_sim/teams/{t}/channels/{team}/{channel}/messages/{id}           DeleteChannelMessage
//
// The channel id may be sent escaped (%3A, %40) or not.
func (s *Server) adminChannelMessages(r *http.Request, p []string, reply func(any, error), decode func(any) bool) {
	m, n := r.Method, len(p)
	tenant, team, channel := p[0], p[2], p[3]
	if n < 5 || p[4] != "messages" {
		reply(nil, unknownAdmin(r))
		return
	}
	switch {
	case m == http.MethodGet && n == 5:
		l, err := s.ChannelMessages(tenant, team, channel)
		if l == nil {
			l = []ChannelMessage{}
		}
		reply(l, err)
	case m == http.MethodPost && n == 5:
		var in ChannelMessageInput
		if !decode(&in) {
			return
		}
		id, err := s.PostChannelMessage(tenant, team, channel, in)
		reply(map[string]string{"id": id}, err)
	case m == http.MethodPost && n == 7 && p[6] == "replies":
		var in ChannelMessageInput
		if !decode(&in) {
			return
		}
		id, err := s.PostChannelReply(tenant, team, channel, p[5], in)
		reply(map[string]string{"id": id}, err)
	case m == http.MethodPatch && n == 6:
		var body struct {
			Content string `json:"content"`
		}
		if !decode(&body) {
			return
		}
		reply(nil, s.EditChannelMessage(tenant, team, channel, p[5], body.Content))
	case m == http.MethodDelete && n == 6:
		reply(nil, s.DeleteChannelMessage(tenant, team, channel, p[5]))
	default:
		reply(nil, unknownAdmin(r))
	}
}

// adminSubscriptions serves the change-notification admin API (Options.Admin):
//
//	GET    /_sim/subscriptions[?tenant=t]              the live subscriptions (Subscription JSON array)
//	POST   /_sim/subscriptions/{id}/lifecycle          {"event":"reauthorizationRequired"|"subscriptionRemoved"|"missed"}: FireLifecycle
//	DELETE /_sim/subscriptions/{id}                    RemoveSubscription (Graph drops it; subscriptionRemoved if it has a lifecycle URL)
//	GET    /_sim/webhook/stats                         WebhookStats (durations in nanoseconds); DELETE resets them
//	PUT    /_sim/webhook/options                       {"slowAfter":"3s","timeout":"10s","handshakeTimeout":"10s","retries":3,
//	                                                   "retryBackoff":"1s","concurrency":256,"batch":100,"batchWindow":"5ms"}: SetWebhookOptions
//	PUT    /_sim/webhook/duplicates                    {"n":1}: SetNotificationDuplicates
//	POST   /_sim/webhook/wait[?timeout=60s]            WaitDeliveries
//	POST   /_sim/rsc/{t}/{team}                        {"appId","permissions":[…]}: GrantRSC (default ChannelMessage.Read.Group)
//	DELETE /_sim/rsc/{t}/{team}/{appId}                RevokeRSC
func (s *Server) adminSubscriptions(r *http.Request, p []string, reply func(any, error), decode func(any) bool) {
	m, n := r.Method, len(p)
	at := func(i int, v string) bool { return i < n && p[i] == v }
	switch {
	case m == http.MethodGet && n == 1 && at(0, "subscriptions"):
		out := []Subscription{}
		if t := r.URL.Query().Get("tenant"); t != "" {
			out = append(out, s.Subscriptions(t)...)
		} else {
			s.mu.Lock()
			var tenants []string
			for id := range s.tenants {
				tenants = append(tenants, id)
			}
			s.mu.Unlock()
			for _, t := range tenants {
				out = append(out, s.Subscriptions(t)...)
			}
		}
		reply(out, nil)
	case m == http.MethodPost && n == 3 && at(0, "subscriptions") && at(2, "lifecycle"):
		var body struct {
			Event string `json:"event"`
		}
		if !decode(&body) {
			return
		}
		reply(nil, s.FireLifecycle(p[1], body.Event))
	case m == http.MethodDelete && n == 2 && at(0, "subscriptions"):
		reply(nil, s.RemoveSubscription(p[1]))
	case n == 2 && at(0, "webhook") && at(1, "stats") && m == http.MethodGet:
		reply(s.WebhookStats(), nil)
	case n == 2 && at(0, "webhook") && at(1, "stats") && m == http.MethodDelete:
		s.ResetWebhookStats()
		reply(nil, nil)
	case n == 2 && at(0, "webhook") && at(1, "options") && m == http.MethodPut:
		var body struct {
			SlowAfter, Timeout, HandshakeTimeout, RetryBackoff, BatchWindow string
			Retries, Concurrency, Batch                                     int
		}
		if !decode(&body) {
			return
		}
		o := WebhookOptions{Retries: body.Retries, Concurrency: body.Concurrency, Batch: body.Batch}
		for _, f := range []struct {
			v   string
			dst *time.Duration
		}{{body.SlowAfter, &o.SlowAfter}, {body.Timeout, &o.Timeout}, {body.HandshakeTimeout, &o.HandshakeTimeout}, {body.RetryBackoff, &o.RetryBackoff},
			{body.BatchWindow, &o.BatchWindow}} {
			if f.v == "" {
				continue
			}
			d, err := time.ParseDuration(f.v)
			if err != nil {
				reply(nil, fmt.Errorf("bad duration %q: %w", f.v, err))
				return
			}
			*f.dst = d
		}
		s.SetWebhookOptions(o)
		reply(nil, nil)
	case n == 2 && at(0, "webhook") && at(1, "duplicates") && m == http.MethodPut:
		var body struct {
			N int `json:"n"`
		}
		if !decode(&body) {
			return
		}
		s.SetNotificationDuplicates(body.N)
		reply(nil, nil)
	case n == 2 && at(0, "webhook") && at(1, "wait") && m == http.MethodPost:
		d := time.Minute
		if v := r.URL.Query().Get("timeout"); v != "" {
			var err error
			if d, err = time.ParseDuration(v); err != nil {
				reply(nil, fmt.Errorf("bad timeout %q: %w", v, err))
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		reply(nil, s.WaitDeliveries(ctx))
	case m == http.MethodPost && n == 3 && at(0, "rsc"):
		var body struct {
			AppID       string   `json:"appId"`
			Permissions []string `json:"permissions"`
		}
		if !decode(&body) {
			return
		}
		if strings.TrimSpace(body.AppID) == "" {
			reply(nil, fmt.Errorf("appId is required"))
			return
		}
		reply(nil, s.GrantRSC(p[1], p[2], body.AppID, body.Permissions...))
	case m == http.MethodDelete && n == 4 && at(0, "rsc"):
		reply(nil, s.RevokeRSC(p[1], p[2], p[3]))
	default:
		reply(nil, unknownAdmin(r))
	}
}
