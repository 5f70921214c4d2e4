package m365sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The admin API (Options.Admin) lets other processes drive a running sim:
//
//	GET    /_sim/stats                                  Stats as JSON
//	POST   /_sim/faults                                 add a FaultRule: {"method","pathPrefix","pathRegexp","times","status","code","message","retryAfter":"1.5s","delay":"200ms"}
//	DELETE /_sim/faults                                 ClearFaults
//	POST   /_sim/clock                                  {"advance":"168h"}: AdvanceClock
//	POST   /_sim/apps/{id}/redirect-uris                {"uri":"https://..."}: RegisterRedirectURI
//	PUT    /_sim/apps/{id}/permissions                  {"roles":["User.Read.All"]}: SetAppPermissions
//	POST   /_sim/tenants/{t}/sign-in                    SetSignedInTenant (the admin /organizations consents as)
//	POST   /_sim/tenants/{t}/signed-in-user             SignedInUser JSON: {"objectId","userPrincipalName","name","directoryRoles":[...]}
//	PUT    /_sim/apps/{id}/group-membership-claims      {"value":"DirectoryRole"}: SetGroupMembershipClaims
//	POST   /_sim/tenants/{t}/consent-decision           ConsentDecision JSON: {"grant","roles","error","errorDescription","withAdminConsentTrue"}
//	DELETE /_sim/tenants/{t}/consents/{app}             RevokeConsent
//	POST   /_sim/tenants/{t}/mutate                     {"fraction":0.01,"seed":1} -> {"changed":n}
//	POST   /_sim/tenants/{t}/reset-delta                ResetDelta
//	POST   /_sim/tenants/{t}/users                      User JSON -> created user
//	PATCH  /_sim/tenants/{t}/users/{id}                 partial User JSON (Graph property names)
//	DELETE /_sim/tenants/{t}/users/{id}[?permanent=true]
//	POST   /_sim/tenants/{t}/users/{id}/restore
//	POST   /_sim/tenants/{t}/groups/{g}/members         {"id":"..."}
//	DELETE /_sim/tenants/{t}/groups/{g}/members/{id}
//	PATCH  /_sim/tenants/{t}/groups/{g}                 {"displayName":"..."}
//	DELETE /_sim/tenants/{t}/groups/{g}
//	GET    /_sim/tenants/{t}/mail[?since=n]             SentMail list (JSON array) from index n (default 0)
//	PUT    /_sim/tenants/{t}/mail/access-policy         {"clientId":"...","allowed":["a@x",...]}: SetMailAccessPolicy
//	DELETE /_sim/tenants/{t}/mail/access-policy?clientId=...  ClearMailAccessPolicy
//	…      /_sim/teams/{t}/…                            Teams: teams, channels, app catalog, installations (see adminTeams)
//	…      /_sim/teams/{t}/channels/{team}/{channel}/…  channel messages and RSC (see adminChannelMessages)
//	…      /_sim/subscriptions…, /_sim/webhook/…, /_sim/rsc/…  subscriptions, lifecycle events, webhook stats, RSC (see adminSubscriptions)
//	GET    /_sim/mail/stats                             MailStats plus "violations"
//	DELETE /_sim/mail/stats                             ResetMailStats
//	GET    /_sim/mail/limits                            MailLimits in force (latency in ms)
//	PUT    /_sim/mail/limits                            {"perMinute","concurrency","dailyRecipients","requestsPer10Min","latency"}:
//	                                                    SetMailLimits; latency is a Go duration string ("250ms") or
//	                                                    milliseconds (250); absent or 0 fields take the defaults
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/_sim/"), "/"), "/")
	reply := func(v any, err error) {
		switch {
		case errors.Is(err, ErrNotFound):
			writeJSON(w, http.StatusNotFound, "application/json", map[string]string{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusBadRequest, "application/json", map[string]string{"error": err.Error()})
		case v == nil:
			w.WriteHeader(http.StatusNoContent)
		default:
			writeJSON(w, http.StatusOK, "application/json", v)
		}
	}
	// decode reads the JSON body into v; on false it has replied with the error.
	decode := func(v any) bool {
		if err := json.NewDecoder(r.Body).Decode(v); err != nil {
			reply(nil, fmt.Errorf("bad JSON body: %w", err))
			return false
		}
		return true
	}
	m, n := r.Method, len(parts)
	at := func(i int, v string) bool { return i < n && parts[i] == v }
	switch {
	case m == http.MethodGet && n == 1 && at(0, "stats"):
		reply(s.Stats(), nil)
	case m == http.MethodPost && n == 1 && at(0, "faults"):
		var body struct {
			FaultRule
			RetryAfter string `json:"retryAfter"`
			Delay      string `json:"delay"`
		}
		if !decode(&body) {
			return
		}
		var err error
		if body.RetryAfter != "" {
			body.FaultRule.RetryAfter, err = time.ParseDuration(body.RetryAfter)
		}
		if err == nil && body.Delay != "" {
			body.FaultRule.Delay, err = time.ParseDuration(body.Delay)
		}
		if err == nil {
			err = s.AddFault(body.FaultRule)
		}
		reply(nil, err)
	case m == http.MethodDelete && n == 1 && at(0, "faults"):
		s.ClearFaults()
		reply(nil, nil)
	case m == http.MethodPost && n == 1 && at(0, "clock"):
		var body struct {
			Advance string `json:"advance"`
		}
		if !decode(&body) {
			return
		}
		d, err := time.ParseDuration(body.Advance)
		if err == nil {
			s.AdvanceClock(d)
		}
		reply(map[string]string{"now": s.Now().UTC().Format(time.RFC3339)}, err)
	case m == http.MethodPost && n == 3 && at(0, "apps") && at(2, "redirect-uris"):
		var body struct {
			URI string `json:"uri"`
		}
		if !decode(&body) {
			return
		}
		if body.URI == "" {
			reply(nil, errors.New("uri is required"))
			return
		}
		s.RegisterRedirectURI(parts[1], body.URI)
		reply(nil, nil)
	case m == http.MethodPut && n == 3 && at(0, "apps") && at(2, "permissions"):
		var body struct {
			Roles []string `json:"roles"`
		}
		if !decode(&body) {
			return
		}
		reply(nil, s.SetAppPermissions(parts[1], body.Roles...))
	case m == http.MethodPut && n == 3 && at(0, "apps") && at(2, "group-membership-claims"):
		var body struct {
			Value string `json:"value"`
		}
		if !decode(&body) {
			return
		}
		reply(nil, s.SetGroupMembershipClaims(parts[1], body.Value))
	case n >= 2 && at(0, "bot"):
		s.adminBot(r, parts[1:], reply, decode)
	case n >= 4 && at(0, "teams") && at(2, "channels"):
		s.adminChannelMessages(r, parts[1:], reply, decode)
	case n >= 1 && (at(0, "subscriptions") || at(0, "webhook") || at(0, "rsc")):
		s.adminSubscriptions(r, parts, reply, decode)
	case n >= 2 && at(0, "teams"):
		s.adminTeams(r, parts[1:], reply, decode)
	case n == 2 && at(0, "mail"):
		s.adminMail(r, parts[1], reply, decode)
	case n >= 3 && at(0, "tenants"):
		s.adminTenant(r, parts[1], parts[2:], reply, decode)
	default:
		reply(nil, unknownAdmin(r))
	}
}

// unknownAdmin is the error of an admin request that no route serves.
func unknownAdmin(r *http.Request) error {
	return fmt.Errorf("unknown admin request %s %s", r.Method, r.URL.Path)
}

func (s *Server) adminTenant(r *http.Request, t string, p []string, reply func(any, error), decode func(any) bool) {
	m, n := r.Method, len(p)
	switch {
	case m == http.MethodPost && n == 1 && p[0] == "mutate":
		var body struct {
			Fraction float64 `json:"fraction"`
			Seed     uint64  `json:"seed"`
		}
		if !decode(&body) {
			return
		}
		c, err := s.MutateRandom(t, body.Fraction, body.Seed)
		reply(map[string]int{"changed": c}, err)
	case m == http.MethodPost && n == 1 && p[0] == "sign-in":
		reply(nil, s.SetSignedInTenant(t))
	case m == http.MethodPost && n == 1 && p[0] == "signed-in-user":
		var u SignedInUser
		if !decode(&u) {
			return
		}
		reply(nil, s.SetSignedInUser(t, u))
	case m == http.MethodPost && n == 1 && p[0] == "consent-decision":
		var d ConsentDecision
		if !decode(&d) {
			return
		}
		reply(nil, s.SetConsentDecision(t, d))
	case m == http.MethodDelete && n == 2 && p[0] == "consents":
		reply(nil, s.RevokeConsent(t, p[1]))
	case m == http.MethodGet && n == 1 && p[0] == "mail":
		_, unlock, err := s.lockTenant(t)
		if err != nil {
			reply(nil, err)
			return
		}
		unlock()
		since := 0
		if v := r.URL.Query().Get("since"); v != "" {
			if since, err = strconv.Atoi(v); err != nil || since < 0 {
				reply(nil, fmt.Errorf("bad since %q", v))
				return
			}
		}
		l := s.SentMailSince(t, since)
		if l == nil {
			l = []SentMail{}
		}
		reply(l, nil)
	case m == http.MethodPut && n == 2 && p[0] == "mail" && p[1] == "access-policy":
		var body struct {
			ClientID string   `json:"clientId"`
			Allowed  []string `json:"allowed"`
		}
		if !decode(&body) {
			return
		}
		if body.ClientID == "" {
			reply(nil, errors.New("clientId is required"))
			return
		}
		reply(nil, s.SetMailAccessPolicy(t, body.ClientID, body.Allowed...))
	case m == http.MethodDelete && n == 2 && p[0] == "mail" && p[1] == "access-policy":
		id := r.URL.Query().Get("clientId")
		if id == "" {
			reply(nil, errors.New("clientId query parameter is required"))
			return
		}
		reply(nil, s.ClearMailAccessPolicy(t, id))
	case m == http.MethodPost && n == 1 && p[0] == "reset-delta":
		reply(nil, s.ResetDelta(t))
	case m == http.MethodPost && n == 1 && p[0] == "users":
		var u User
		if !decode(&u) {
			return
		}
		reply(s.AddUser(t, u))
	case m == http.MethodPatch && n == 2 && p[0] == "users":
		var raw json.RawMessage
		if !decode(&raw) {
			return
		}
		var uerr error
		err := s.UpdateUser(t, p[1], func(u *User) { uerr = json.Unmarshal(raw, u) })
		reply(nil, errors.Join(err, uerr))
	case m == http.MethodDelete && n == 2 && p[0] == "users":
		if r.URL.Query().Get("permanent") == "true" {
			reply(nil, s.HardDeleteUser(t, p[1]))
		} else {
			reply(nil, s.SoftDeleteUser(t, p[1]))
		}
	case m == http.MethodPost && n == 3 && p[0] == "users" && p[2] == "restore":
		reply(nil, s.RestoreUser(t, p[1]))
	case m == http.MethodPost && n == 3 && p[0] == "groups" && p[2] == "members":
		var body struct {
			ID string `json:"id"`
		}
		if !decode(&body) {
			return
		}
		reply(nil, s.AddMember(t, p[1], body.ID))
	case m == http.MethodDelete && n == 4 && p[0] == "groups" && p[2] == "members":
		reply(nil, s.RemoveMember(t, p[1], p[3]))
	case m == http.MethodPatch && n == 2 && p[0] == "groups":
		var body struct {
			DisplayName string `json:"displayName"`
		}
		if !decode(&body) {
			return
		}
		reply(nil, s.RenameGroup(t, p[1], body.DisplayName))
	case m == http.MethodDelete && n == 2 && p[0] == "groups":
		reply(nil, s.DeleteGroup(t, p[1]))
	default:
		reply(nil, unknownAdmin(r))
	}
}

func (s *Server) adminMail(r *http.Request, what string, reply func(any, error), decode func(any) bool) {
	type limitsJSON struct {
		PerMinute        int             `json:"perMinute"`
		Concurrency      int             `json:"concurrency"`
		DailyRecipients  int             `json:"dailyRecipients"`
		RequestsPer10Min int             `json:"requestsPer10Min"`
		Latency          json.RawMessage `json:"latency,omitempty"`
	}
	show := func(l MailLimits) limitsJSON {
		return limitsJSON{l.PerMinute, l.Concurrency, l.DailyRecipients, l.RequestsPer10Min, json.RawMessage(strconv.FormatInt(l.Latency.Milliseconds(), 10))}
	}
	switch {
	case r.Method == http.MethodGet && what == "stats":
		st := s.MailStats()
		reply(struct {
			MailStats
			Violations int64 `json:"violations"`
		}{st, st.Violations()}, nil)
	case r.Method == http.MethodDelete && what == "stats":
		s.ResetMailStats()
		reply(nil, nil)
	case r.Method == http.MethodGet && what == "limits":
		reply(show(s.MailLimits()), nil)
	case r.Method == http.MethodPut && what == "limits":
		var body limitsJSON
		if !decode(&body) {
			return
		}
		l := MailLimits{PerMinute: body.PerMinute, Concurrency: body.Concurrency, DailyRecipients: body.DailyRecipients, RequestsPer10Min: body.RequestsPer10Min}
		if len(body.Latency) > 0 && string(body.Latency) != "null" {
			var ms float64
			var str string
			switch {
			case json.Unmarshal(body.Latency, &ms) == nil:
				l.Latency = time.Duration(ms * float64(time.Millisecond))
			case json.Unmarshal(body.Latency, &str) == nil:
				d, err := time.ParseDuration(str)
				if err != nil {
					reply(nil, fmt.Errorf("bad latency: %w", err))
					return
				}
				l.Latency = d
			default:
				reply(nil, fmt.Errorf("bad latency %s: want a duration string or milliseconds", body.Latency))
				return
			}
		}
		s.SetMailLimits(l)
		reply(show(s.MailLimits()), nil)
	default:
		reply(nil, unknownAdmin(r))
	}
}
