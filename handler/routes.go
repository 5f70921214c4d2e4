package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/leapchange/m365/handler/internal/bot"
	"github.com/leapchange/m365/handler/internal/invoke"
	"github.com/leapchange/m365/handler/internal/problem"
	"github.com/leapchange/m365/handler/internal/realtime"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/webhook"
)

// function is one function of the contract (README, Architecture) as the handler serves it.
type function struct {
	name string
	// http is the proxied path pattern of an HTTP function ("" for JSON-mode functions).
	http string
	// h serves the function: the proxied request for HTTP functions, the JSON invocation otherwise.
	h http.Handler
}

// functions is the handler's side of functions/*/function.json, one row per folder; a test
// checks the two agree.
func (a *app) functions() []function {
	return []function{
		{name: "Api", http: "/api/orgs/{org}/{rest...}", h: a.api},
		{name: "ConsentCallback", http: "GET /api/consent/callback", h: a.consent.Callback()},
		{name: "GraphNotifications", http: "POST /api/graph/notifications", h: a.hooks.Notifications()},
		{name: "GraphLifecycle", http: "POST /api/graph/lifecycle", h: a.hooks.Lifecycle()},
		{name: "BotMessages", http: "POST /api/messages", h: a.bot},
		{name: "Health", http: "GET /api/health", h: a.health},
		{name: "SyncScheduler", h: invoke.Timer("timer", a.log, func(ctx context.Context, _ invoke.TimerInfo) error {
			// The same tick looks after message batches: deliveries whose message was lost are
			// queued again, finished batches settled — whatever became of the syncs.
			rep, rerr := a.outbound.Reconcile(ctx)
			a.log.InfoContext(ctx, "message batches reconciled", "batches", rep.Batches, "revived", rep.Revived, "lost", rep.Lost,
				"dispatches", rep.Dispatches, "settled", rep.Settled, "error", fmt.Sprint(rerr))
			// And real-time sync's safety net: dirty orgs whose round is overdue (a lost nudge, or
			// a connection re-authorized since) get it now.
			if n, err := a.realTime.Sweep(ctx); err != nil || n > 0 {
				a.log.InfoContext(ctx, "real-time sync swept", "rounds", n, "error", fmt.Sprint(err))
			}
			res, err := a.scheduler.Run(ctx)
			if err != nil {
				return err
			}
			a.log.InfoContext(ctx, "scheduled syncs", "started", len(res.Started), "skipped", len(res.Skipped), "failed", len(res.Failed))
			return nil // one org's failure is logged and retried next tick; it does not fail the others
		})},
		{name: "SubscriptionRenewer", h: invoke.Timer("timer", a.log, func(ctx context.Context, _ invoke.TimerInfo) error {
			// One renewer for every subscription: channel monitoring's and real-time sync's.
			rep, err := subscriptions.RenewAll(ctx, a.subs, a.log, a.monitor, a.realTime)
			if err != nil {
				return err
			}
			a.log.InfoContext(ctx, "subscriptions reconciled", "created", rep.Created, "renewed", rep.Renewed, "recreated", rep.Recreated,
				"deleted", rep.Deleted, "failed", rep.Failed)
			return nil // one tenant's failure is recorded on its status and retried next tick
		})},
		{name: "SyncWorker", h: invoke.ServiceBus("msg", invoke.BinaryData, a.log, func(ctx context.Context, m invoke.Message) error {
			if realtime.IsNudge(m.Body) {
				return a.realTime.HandleNudge(ctx, m.Body) // a debounced real-time round
			}
			return a.sync.Step(ctx, m.Body, m.DeliveryCount)
		})},
		{name: "ChannelEventWorker", h: invoke.ServiceBus("msg", invoke.BinaryData, a.log, func(ctx context.Context, m invoke.Message) error {
			if subscriptions.Directory(webhook.EventPurpose(m.Body)) {
				return a.realTime.HandleEvent(ctx, m.Body) // a user or group subscription's lifecycle event
			}
			return a.monitor.HandleEvent(ctx, m.Body)
		})},
		{name: "MailSender", h: invoke.ServiceBus("msg", invoke.BinaryData, a.log, func(ctx context.Context, m invoke.Message) error {
			return a.outbound.HandleMail(ctx, m.Body, m.DeliveryCount)
		})},
		{name: "TeamsSender", h: invoke.ServiceBus("msg", invoke.BinaryData, a.log, func(ctx context.Context, m invoke.Message) error {
			if bot.IsJob(m.Body) {
				return a.bot.HandleJob(ctx, m.Body) // an answer the bot could not give within its budget
			}
			return a.outbound.HandleTeams(ctx, m.Body, m.DeliveryCount)
		})},
	}
}

// allowed lists the methods mux serves r's path with, other than through the catch-all "/":
// a PATCH, OPTIONS or other method a function does not take is a 405 naming them, not a 404.
func allowed(mux *http.ServeMux, r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

// routes serves every function: HTTP functions on their proxied paths (and, should the host
// fall back to JSON mode, on POST /<Name>), the others on POST /<Name>; GET / answers the
// host's start-up ping.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	for _, f := range a.functions() {
		if f.http != "" {
			mux.Handle(f.http, f.h)
			if base, ok := strings.CutSuffix(f.http, "/{rest...}"); ok {
				// The host's catch-all {*rest} also matches nothing at all (orgs/acme), where
				// net/http's {rest...} needs the slash: serve both.
				mux.Handle(base, f.h)
			}
			mux.Handle("POST /"+f.name, invoke.HTTPFallback("req", "res", a.log, f.h))
			continue
		}
		mux.Handle("POST /"+f.name, f.h)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowed(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			problem.Write(w, r, problem.New(http.StatusMethodNotAllowed, problem.MethodNotAllow, r.Method+" is not supported here"))
			return
		}
		problem.Write(w, r, problem.New(http.StatusNotFound, problem.NotFound, "no function is served at "+r.URL.Path))
	})
	return mux
}
