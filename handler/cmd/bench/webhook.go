package main

// The webhook benchmark (scripts/bench.sh webhook): Graph's change notifications for Teams
// channel messages POSTed at a fixed rate to the REAL handler behind the local Functions host
// stand-in (handler/internal/devhost), as Graph would reach GraphNotifications: host route, proxy
// to the handler process, subscription lookup in Table Storage (Azurite), clientState check,
// one batch published to channel-events through the host's Service Bus stand-in, 202.
//
// The load is open loop: request i is sent at start + i/rate whether or not earlier ones were
// answered (as Graph does), each on its own goroutine, over keep-alive connections. Every
// request carries -per-request plain notifications (default 1, Graph's usual delivery) for
// one of -subscriptions channel subscriptions that exist in the tables, with their real
// clientState. Each notification is unique (its own message id).
//
// It measures:
//   - p50_ms / p99_ms (and max_ms): from the moment a request is sent to its answer's headers,
//     over the requests answered 202 (when failed > 0 the figures leave those out: read them
//     together); sched_p99_ms from the moment it was due (client-side lag included).
//   - accepted: notifications answered 202 during the measured period.
//   - lost: notifications answered 202 (warm-up included) whose message is not on
//     channel-events after the run. The host's ChannelEventWorker is disabled for the run (a
//     copy of the app files with "disabled": true), so every message the webhook accepted stays
//     on channel-events, where the worker takes it: the bench reads them all back and matches
//     them to the notifications by subscription and resource. duplicated: notifications found
//     there more than once.
//   - failed: requests answered anything but 202, or not answered within 10 s (Graph's limit).
//     A request given up on may still have been enqueued (on_channel_events > accepted): Graph
//     would deliver it again and duplicate detection would drop the copy.
//
// -route inprocess measures the webhook's Handler alone: on a loopback HTTP server in this
// process, publishing to an in-memory queue with Service Bus semantics (queuetest), the
// subscriptions still in Azurite — no host proxy, no handler process, no queue over HTTP.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leapchange/m365/handler/internal/devhost"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/webhook"
)

// WebhookResult is the webhook benchmark's JSON line; the first keys are the benchmark contract's.
type WebhookResult struct {
	Bench    string  `json:"bench"`
	Rate     int     `json:"rate"`
	Accepted int     `json:"accepted"`
	Lost     int     `json:"lost"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`

	Seconds       int            `json:"seconds"`
	Requests      int            `json:"requests"`
	PerRequest    int            `json:"per_request"`
	Subscriptions int            `json:"subscriptions"`
	Failed        int            `json:"failed"`
	Duplicated    int            `json:"duplicated"`
	AchievedRate  float64        `json:"achieved_rate"` // requests sent per second over the measured period
	P90Ms         float64        `json:"p90_ms"`
	P999Ms        float64        `json:"p999_ms"`
	MaxMs         float64        `json:"max_ms"`
	SchedP99Ms    float64        `json:"sched_p99_ms"` // from when each request was due
	MaxLagMs      float64        `json:"max_send_lag_ms"`
	Over100Ms     int            `json:"over_100ms"`
	OnQueue       int            `json:"on_channel_events"`
	Statuses      map[string]int `json:"statuses"`
	Route         string         `json:"route"`
	NumCPU        int            `json:"nproc"`
}

type webhookOptions struct {
	target
	handlerApp
	cpuProfile, route                string
	rate, seconds, perRequest, nsubs int
	warmup                           int
}

func runWebhook(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := webhookOptions{target: target{stderr: stderr}}
	fs := flag.NewFlagSet("bench webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.runFlags(fs, 10*time.Minute) // no simulated tenant: the webhook needs only Table Storage
	o.handlerApp.flags(fs)
	fs.StringVar(&o.route, "route", "devhost", "devhost: the handler binary behind the host stand-in, as Graph reaches it; inprocess: the webhook's Handler alone on a loopback HTTP server in this process, publishing to an in-memory queue")
	fs.IntVar(&o.rate, "rate", 0, "requests per second (required)")
	fs.IntVar(&o.seconds, "seconds", 10, "measured seconds")
	fs.IntVar(&o.perRequest, "per-request", 1, "notifications per request")
	fs.IntVar(&o.nsubs, "subscriptions", 20, "monitored channels (subscriptions) the notifications are spread over")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the load, the host stand-in and its queues) during the measured period")
	fs.IntVar(&o.warmup, "warmup", 0, "warm-up requests before the measured period (default: one per subscription)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if o.rate <= 0 || o.seconds <= 0 || o.perRequest <= 0 || o.perRequest > 1000 || o.nsubs <= 0 || o.warmup < 0 {
		return fmt.Errorf("%w: -rate is required; -rate, -seconds, -subscriptions positive; -per-request 1..1000", errUsage)
	}
	if o.route != "devhost" && o.route != "inprocess" {
		return fmt.Errorf("%w: -route is devhost or inprocess", errUsage)
	}
	if o.tables == "" {
		return fmt.Errorf("%w: -tables (or AZURITE_TABLES_CONNECTION) is required", errUsage)
	}
	return measure(ctx, &o.target, stdout, webhookBench, o)
}

// sentNote identifies a notification: its subscription and resource.
type sentNote struct{ sub, resource string }

func webhookBench(ctx context.Context, o webhookOptions) (WebhookResult, error) {
	res := WebhookResult{Bench: "webhook", Rate: o.rate, Seconds: o.seconds, PerRequest: o.perRequest, Subscriptions: o.nsubs,
		Route: o.route, NumCPU: runtime.NumCPU(), Statuses: map[string]int{}}
	logf := o.logf
	work, err := os.MkdirTemp("", "bench-webhook-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)

	// The app files, with every function disabled but the two endpoints and channel-events'
	// queue kept (its worker disabled: what the webhook accepted stays there to be counted).
	appRoot := filepath.Join(work, "app")
	if err := copyAppFiles(o.root, appRoot); err != nil {
		return res, err
	}
	var handlerPath string // only the devhost route runs the handler
	if o.route == "devhost" {
		if handlerPath, err = o.binary(ctx, work, o.stderr, logf); err != nil {
			return res, err
		}
	}

	// Subscriptions, as monitoring stores them, in this run's tables.
	prefix := "wb" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36)
	store, err := tablestore.Open(ctx, tablestore.Config{ConnectionString: o.tables, Prefix: prefix})
	if err != nil {
		return res, err
	}
	defer store.DropTables(context.WithoutCancel(ctx))
	orgKey, _ := tablestore.NewOrg(org)
	stateKey := randomKey()
	states, err := subscriptions.NewClientStates([]byte(stateKey))
	if err != nil {
		return res, err
	}
	const tenant = "7e3f1a2b-9c4d-4e5f-8a6b-1c2d3e4f5a6b"
	type subOf struct{ id, clientState, team, channel string }
	subs := make([]subOf, o.nsubs)
	subStore := subscriptions.NewStore(store)
	now := time.Now().UTC()
	for i := range subs {
		s := subOf{id: fmt.Sprintf("5b0c%04x-1e2f-4a3b-8c4d-%012x", i, i), team: fmt.Sprintf("9c8b7a6d-5e4f-4a3b-8c2d-%012x", i/4),
			channel: fmt.Sprintf("19:%032x@thread.tacv2", i)}
		nonce := subscriptions.NewNonce()
		s.clientState = states.For(orgKey, nonce)
		if err := subStore.Put(ctx, orgKey, subscriptions.Sub{ID: s.id, Tenant: tenant, Purpose: subscriptions.ChannelMessages,
			TeamID: s.team, ChannelID: s.channel, Resource: "/teams/" + s.team + "/channels/" + s.channel + "/messages",
			ChangeType: "created,updated,deleted", Nonce: nonce, Expires: now.Add(72 * time.Hour), CreatedAt: now}); err != nil {
			return res, err
		}
		subs[i] = s
	}

	var (
		endpoint  string
		drain     func() ([][]byte, error) // every message on channel-events, once the load is over
		inProcess *queuetest.Queue
		closeHost func()
	)
	defer func() {
		if closeHost != nil {
			closeHost()
		}
	}()
	startDevhost := func() error {
		var host *devhost.Host
		host, err = devhost.New(devhost.Config{
			Root: appRoot, HandlerPath: handlerPath, Env: os.Environ(),
			Settings: hostSettings(o.tables, prefix, map[string]string{
				// Nothing below is called by the webhook; the handler needs them to start.
				"M365_CLIENT_ID":          "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
				"M365_CLIENT_SECRET":      "unused",
				"GRAPH_BASE_URL":          "https://127.0.0.1:9/v1.0",
				"AZURE_AUTHORITY_HOST":    "https://127.0.0.1:9/",
				"BOT_OPENID_METADATA_URL": "https://127.0.0.1:9/openid",
				"PUBLIC_BASE_URL":         "https://leap-func.example.net",
				"LEAP_APP_URL":            "https://leap.example.net/settings/integrations",
				"STATE_SIGNING_KEY":       stateKey,
				"DEVHOST_FUNCTION_KEY":    randomKey(),
			}),
			Logger: slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Stderr: o.stderr, // the handler's warnings and errors (stdout, its info log, is dropped)
		})
		if err != nil {
			return err
		}
		if err := host.Start(ctx); err != nil {
			return err
		}
		closeHost = func() { host.Close() }
		go host.Serve(ctx)
		endpoint = host.URL() + "/api/graph/notifications?org=" + org
		logf("handler behind the host stand-in at %s; %d subscriptions in tables %s*", host.URL(), o.nsubs, prefix)
		drain = func() ([][]byte, error) {
			var out [][]byte
			for {
				rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
				d, err := host.Queues().Receive(rctx, queue.ChannelEvents)
				rcancel()
				if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
					return out, nil
				}
				if err != nil {
					return nil, fmt.Errorf("reading channel-events: %w", err)
				}
				out = append(out, d.Body)
				_ = host.Queues().Complete(d)
			}
		}
		return nil
	}
	switch o.route {
	case "devhost":
		if err := startDevhost(); err != nil {
			return res, err
		}
	case "inprocess":
		// The webhook alone: its Handler on a real HTTP server on loopback, publishing to an
		// in-memory queue with Service Bus semantics, subscriptions still in Azurite.
		inProcess = &queuetest.Queue{}
		states, _ := subscriptions.NewClientStates([]byte(stateKey))
		hooks := webhook.New(webhook.Config{Subscriptions: subStore, States: states, Queue: inProcess,
			Logger: slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		mux := http.NewServeMux()
		mux.Handle("POST /api/graph/notifications", hooks.Notifications())
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return res, err
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		endpoint = "http://" + ln.Addr().String() + "/api/graph/notifications?org=" + org
		drain = func() ([][]byte, error) {
			var out [][]byte
			for _, m := range inProcess.Published() {
				if m.Queue != queue.ChannelEvents {
					return nil, fmt.Errorf("a message on %s", m.Queue)
				}
				out = append(out, m.Body)
			}
			return out, nil
		}
		logf("webhook handler in process at %s; %d subscriptions in tables %s*", ln.Addr(), o.nsubs, prefix)
	}

	// Graph keeps connections to the endpoint open; so does this client.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096,
		IdleConnTimeout: time.Minute, DisableCompression: true}}
	defer client.CloseIdleConnections()

	var (
		mu     sync.Mutex
		acked  []sentNote
		msgSeq atomic.Int64
	)
	// payload builds request i's body and its notifications.
	payload := func() ([]byte, []sentNote) {
		notes := make([]map[string]any, o.perRequest)
		ids := make([]sentNote, o.perRequest)
		for j := range notes {
			k := msgSeq.Add(1)
			s := subs[int(k)%len(subs)]
			msgID := strconv.FormatInt(1764660000000+k, 10)
			resource := fmt.Sprintf("teams('%s')/channels('%s')/messages('%s')", s.team, s.channel, msgID)
			notes[j] = map[string]any{
				"subscriptionId": s.id, "changeType": "created", "clientState": s.clientState, "tenantId": tenant,
				"subscriptionExpirationDateTime": now.Add(72 * time.Hour).Format("2006-01-02T15:04:05.0000000-07:00"),
				"resource":                       resource,
				"resourceData":                   map[string]any{"id": msgID, "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": resource},
			}
			ids[j] = sentNote{s.id, resource}
		}
		b, _ := json.Marshal(map[string]any{"value": notes})
		return b, ids
	}
	type sample struct {
		lat, sched time.Duration
		status     int
	}
	send := func(due time.Time, b []byte, ids []sentNote) sample {
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		resp, err := client.Do(req)
		end := time.Now()
		s := sample{lat: end.Sub(start), sched: end.Sub(due)}
		if err != nil {
			return s
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		s.status = resp.StatusCode
		if resp.StatusCode == http.StatusAccepted {
			mu.Lock()
			acked = append(acked, ids...)
			mu.Unlock()
		}
		return s
	}

	// Warm-up: connections opened, every subscription read once (the handler caches them).
	warm := o.warmup
	if warm == 0 {
		warm = o.nsubs
	}
	logf("warm-up: %d requests", warm)
	for range warm {
		b, ids := payload()
		if s := send(time.Now(), b, ids); s.status != http.StatusAccepted {
			return res, fmt.Errorf("warm-up request answered %d: is the handler up? (see its log above)", s.status)
		}
	}

	// The measured period: open loop.
	n := o.rate * o.seconds
	res.Requests = n
	bodies := make([][]byte, n)
	notes := make([][]sentNote, n)
	for i := range n {
		bodies[i], notes[i] = payload()
	}
	samples := make([]sample, n)
	logf("sending %d requests at %d/s for %ds (%d notification(s) each)", n, o.rate, o.seconds, o.perRequest)
	if o.cpuProfile != "" {
		stopProfile, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return res, err
		}
		defer stopProfile()
	}
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Second / time.Duration(o.rate)
	var maxLag time.Duration
	lastLog := start
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else if -d > maxLag {
			maxLag = -d
		}
		wg.Go(func() { samples[i] = send(due, bodies[i], notes[i]) })
		if time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			logf("%5.1fs %d requests sent", time.Since(start).Seconds(), i+1)
		}
	}
	sentFor := time.Since(start)
	wg.Wait()
	res.AchievedRate = round3(float64(n) / sentFor.Seconds())
	res.MaxLagMs = ms(maxLag)

	var lats, scheds []time.Duration
	for i, s := range samples {
		res.Statuses[strconv.Itoa(s.status)]++
		if s.status != http.StatusAccepted {
			res.Failed++
			continue
		}
		res.Accepted += len(notes[i])
		lats, scheds = append(lats, s.lat), append(scheds, s.sched)
		if s.lat > 100*time.Millisecond {
			res.Over100Ms++
		}
	}
	if res.Statuses["0"] > 0 {
		res.Statuses["no answer"] = res.Statuses["0"]
		delete(res.Statuses, "0")
	}
	slices.Sort(lats)
	slices.Sort(scheds)
	if len(lats) > 0 {
		res.P50Ms, res.P90Ms, res.P99Ms, res.P999Ms, res.MaxMs = ms(percentile(lats, 0.50)), ms(percentile(lats, 0.90)), ms(percentile(lats, 0.99)),
			ms(percentile(lats, 0.999)), ms(lats[len(lats)-1])
		res.SchedP99Ms = ms(percentile(scheds, 0.99))
	}
	logf("%d requests in %.2fs: %d notifications accepted, %d requests failed; ack p50 %.2f ms, p99 %.2f ms, max %.2f ms",
		n, sentFor.Seconds(), res.Accepted, res.Failed, res.P50Ms, res.P99Ms, res.MaxMs)

	// What reached channel-events: read every message back (the worker is disabled, so they are
	// all there) and match them to the acknowledged notifications.
	onQueue := map[sentNote]int{}
	queued, err := drain()
	if err != nil {
		return res, err
	}
	for _, body := range queued {
		var ev webhook.Event
		var nt struct {
			SubscriptionID string `json:"subscriptionId"`
			Resource       string `json:"resource"`
		}
		if json.Unmarshal(body, &ev) != nil || json.Unmarshal(ev.Notification, &nt) != nil || ev.Org != org {
			return res, fmt.Errorf("channel-events holds a message that is not a notification of org %s: %s", org, body)
		}
		onQueue[sentNote{nt.SubscriptionID, nt.Resource}]++
		res.OnQueue++
	}
	for _, a := range acked {
		switch c := onQueue[a]; {
		case c == 0:
			res.Lost++
		case c > 1:
			res.Duplicated++
		}
	}
	logf("channel-events: %d messages for %d acknowledged notifications (warm-up included): %d lost, %d duplicated",
		res.OnQueue, len(acked), res.Lost, res.Duplicated)
	return res, nil
}

// copyAppFiles copies host.json and the function folders from root to dst, every function
// disabled except GraphNotifications and GraphLifecycle; ChannelEventWorker's folder is kept
// (disabled) so that its queue exists.
func copyAppFiles(root, dst string) error {
	b, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dst, "host.json"), b, 0o644); err != nil {
		return err
	}
	for _, name := range []string{"GraphNotifications", "GraphLifecycle", "ChannelEventWorker"} {
		b, err := os.ReadFile(filepath.Join(root, "functions", name, "function.json"))
		if err != nil {
			return err
		}
		var fn map[string]any
		if err := json.Unmarshal(b, &fn); err != nil {
			return fmt.Errorf("%s/function.json: %w", name, err)
		}
		if name == "ChannelEventWorker" {
			fn["disabled"] = true
		}
		out, _ := json.MarshalIndent(fn, "", "  ")
		if err := os.MkdirAll(filepath.Join(dst, "functions", name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, "functions", name, "function.json"), out, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

// randomKey is 32 random bytes, hex.
func randomKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
