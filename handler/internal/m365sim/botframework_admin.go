package m365sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// adminBot serves /_sim/bot/… (see serveAdmin and the package documentation):
//
//	POST /_sim/bot/register                       {"appId","homeTenant","secret","endpoint"}: RegisterBot
//	POST /_sim/bot/activities                     {"tenant","user","activity":{…},"sign":{…}}: SendBotActivity;
//	                                              answers {"status":n,"body":…} (the bot's answer, JSON or text)
//	GET  /_sim/bot/conversations?tenant=&user=    {"conversationId","chatId","userId","serviceUrl"}
//	GET  /_sim/bot/conversations/{id}/activities  BotPosted as a JSON array
//	GET  /_sim/bot/stats                          BotStats
//	DELETE /_sim/bot/stats                        ResetBotStats
//	POST /_sim/bot/block                          {"tenant","user"}: BlockBot
//	PUT  /_sim/bot/tenant-rate                    {"perSecond":n}: SetBotTenantRate
//	POST /_sim/bot/rotate-keys                    RotateBotKeys
func (s *Server) adminBot(r *http.Request, p []string, reply func(any, error), decode func(any) bool) {
	m, n := r.Method, len(p)
	type who struct {
		Tenant string `json:"tenant"`
		User   string `json:"user"`
	}
	need := func(w who) error {
		if w.Tenant == "" || w.User == "" {
			return errors.New("tenant and user are required")
		}
		return nil
	}
	switch {
	case m == http.MethodPost && n == 1 && p[0] == "register":
		var body struct {
			AppID      string `json:"appId"`
			HomeTenant string `json:"homeTenant"`
			Secret     string `json:"secret"`
			Endpoint   string `json:"endpoint"`
		}
		if !decode(&body) {
			return
		}
		if body.AppID == "" || body.HomeTenant == "" || body.Secret == "" {
			reply(nil, errors.New("appId, homeTenant and secret are required"))
			return
		}
		s.RegisterBot(body.AppID, body.HomeTenant, body.Secret, body.Endpoint)
		reply(nil, nil)
	case m == http.MethodPost && n == 1 && p[0] == "activities":
		var body struct {
			who
			Activity json.RawMessage `json:"activity"`
			Sign     struct {
				BotSign
				NotBefore string `json:"notBefore"`
			} `json:"sign"`
		}
		if !decode(&body) {
			return
		}
		if err := need(body.who); err != nil {
			reply(nil, err)
			return
		}
		opts := body.Sign.BotSign
		if body.Sign.NotBefore != "" {
			d, err := time.ParseDuration(body.Sign.NotBefore)
			if err != nil {
				reply(nil, fmt.Errorf("bad sign.notBefore: %w", err))
				return
			}
			opts.NotBefore = d
		}
		var act any
		if len(body.Activity) > 0 {
			act = body.Activity
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		resp, err := s.SendBotActivity(ctx, body.Tenant, body.User, act, opts)
		if err != nil {
			reply(nil, err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		out := map[string]any{"status": resp.StatusCode}
		switch {
		case len(b) == 0:
		case json.Valid(b):
			out["body"] = json.RawMessage(b)
		default:
			out["body"] = string(b)
		}
		reply(out, nil)
	case m == http.MethodGet && n == 1 && p[0] == "conversations":
		q := who{r.URL.Query().Get("tenant"), r.URL.Query().Get("user")}
		if err := need(q); err != nil {
			reply(nil, err)
			return
		}
		reply(map[string]string{
			"conversationId": s.BotConversation(q.Tenant, q.User),
			"chatId":         s.BotChatID(q.Tenant, q.User),
			"userId":         s.BotUserID(q.Tenant, q.User),
			"serviceUrl":     s.BotServiceURL(),
		}, nil)
	case m == http.MethodGet && n == 3 && p[0] == "conversations" && p[2] == "activities":
		l := s.BotPosted(p[1])
		if l == nil {
			l = []PostedActivity{}
		}
		reply(l, nil)
	case m == http.MethodGet && n == 1 && p[0] == "stats":
		reply(s.BotStats(), nil)
	case m == http.MethodDelete && n == 1 && p[0] == "stats":
		s.ResetBotStats()
		reply(nil, nil)
	case m == http.MethodPost && n == 1 && p[0] == "block":
		var body who
		if !decode(&body) {
			return
		}
		if err := need(body); err != nil {
			reply(nil, err)
			return
		}
		s.BlockBot(body.Tenant, body.User)
		reply(nil, nil)
	case m == http.MethodPut && n == 1 && p[0] == "tenant-rate":
		var body struct {
			PerSecond int `json:"perSecond"`
		}
		if !decode(&body) {
			return
		}
		s.SetBotTenantRate(body.PerSecond)
		reply(nil, nil)
	case m == http.MethodPost && n == 1 && p[0] == "rotate-keys":
		s.RotateBotKeys()
		reply(nil, nil)
	default:
		reply(nil, unknownAdmin(r))
	}
}
