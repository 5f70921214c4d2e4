package main

// The Teams benchmark (scripts/bench.sh teams): one batch of N personalised Teams notifications
// to a group of stakeholders synced from Entra ID (ExternalID = the user's object id), through
// the real outbound pipeline and the real Bot Connector client, against the Bot Connector of a
// simulated tenant in another process that enforces Teams' per app per tenant rate (default
// 30 requests a second, the same rate the pipeline paces to). Workers take messages from an
// in-process queue with Service Bus semantics, scheduled enqueue included, as the Functions
// host's TeamsSender (and MailSender, for the dispatch steps) instances would.
//
// Most recipients already have the app: it is installed for them in the simulated tenant
// beforehand and their conversation references are stored as the bot stores them from the
// install activity, so the measurement is the Bot Connector rate. A share (-uninstalled,
// default 5 %) has not: the pipeline installs the app for them through Graph (the real Graph
// client) and posts to the installation's chat.
//
// It measures:
//   - accept_s: accepting the batch (expansion, N delivery rows, dispatch queued), against
//     accept_floor_s: writing N plain entities in the same ≤100-entity transactions
//     (accept_ratio = accept_s/accept_floor_s), as the mail benchmark does.
//   - rate_ratio: activities posted per second, between the first and the last post the
//     simulated tenant accepted, over its per-tenant limit. The pacer keeps 5 % under the
//     limit, so 0.95 is the ceiling.
//   - lost (recipients with no post or a delivery not sent), duplicated (recipients posted to
//     more than once), limit_violations (Bot Connector requests the simulated tenant refused
//     for a Teams limit): all 0.

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leapchange/m365/handler/internal/botframework"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/devhost"
	"github.com/leapchange/m365/handler/internal/mailsettings"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/pacing"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/teamsconn"
)

// TeamsResult is the Teams benchmark's JSON line; the first keys are the benchmark contract's.
type TeamsResult struct {
	Bench      string `json:"bench"`
	Recipients int    `json:"recipients"`
	outboundFigures
	InstalledViaGraph int     `json:"installed_via_graph"`
	PeakRSSMB         float64 `json:"peak_rss_mb"`
	Workers           int     `json:"workers"`

	Preinstalled int `json:"preinstalled"` // recipients who had the app before the batch
	// PeakPosts1s is the most posts the simulated tenant accepted in any one second (rolling).
	PeakPosts1s            int   `json:"peak_posts_1s"`
	TenantViolations       int64 `json:"tenant_violations"`
	ConversationViolations int64 `json:"conversation_violations"`
	Throttled              int64 `json:"throttled"`
	WorkerErrors           int64 `json:"worker_errors"`
	// Late*Ms is how long after its reserved slot each delivery was recorded sent (percentiles
	// and maximum): a late post lands in the same second as the posts after it.
	LateP50Ms float64 `json:"late_p50_ms"`
	LateP99Ms float64 `json:"late_p99_ms"`
	LateMaxMs float64 `json:"late_max_ms"`
	TableTx   int64   `json:"table_transactions"`
}

type teamsOptions struct {
	target
	recipients, rate, workers int
	uninstalled               float64
	horizon                   time.Duration
	botAppID, botTenant       string
	botSecret                 string
}

func runTeams(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o teamsOptions
	fs := o.flagSet("bench teams", stderr)
	fs.IntVar(&o.recipients, "recipients", 0, "recipients of the batch: the first N users of the simulated tenant (required)")
	fs.IntVar(&o.rate, "rate", 30, "Bot Connector requests per second per tenant, as the simulated tenant enforces (Teams: 30)")
	fs.IntVar(&o.workers, "workers", 32, "concurrent TeamsSender invocations (the host's maxConcurrentCalls)")
	fs.Float64Var(&o.uninstalled, "uninstalled", 0.05, "share of recipients without the app (installed through Graph by the pipeline)")
	fs.DurationVar(&o.horizon, "horizon", 0, "how far ahead dispatch books slots and queues messages (0: the pipeline's default, 10 min)")
	fs.StringVar(&o.botAppID, "bot-app-id", "", "the bot's app id, as registered in the simulated tenant (required)")
	fs.StringVar(&o.botTenant, "bot-tenant", "", "the bot's home tenant (required)")
	fs.StringVar(&o.botSecret, "bot-secret", "", "the bot's client secret (required)")
	if err := o.parse(fs, args); err != nil {
		return err
	}
	if o.recipients <= 0 || o.rate <= 0 || o.workers <= 0 || o.uninstalled < 0 || o.uninstalled > 1 || o.horizon < 0 {
		return fmt.Errorf("%w: -recipients is required; -recipients, -rate and -workers must be positive, -uninstalled between 0 and 1, -horizon not negative", errUsage)
	}
	if o.botAppID == "" || o.botTenant == "" || o.botSecret == "" {
		return fmt.Errorf("%w: -bot-app-id, -bot-tenant and -bot-secret are required", errUsage)
	}
	return measure(ctx, &o.target, stdout, teamsBench, o)
}

// recipientOf is one recipient: the tenant's user and the bot's conversation with them.
type recipientOf struct {
	user         string // Entra object id
	conversation string // the 1:1 conversation id the sim gives the bot
	preinstalled bool
}

// withoutApp spreads the recipients without the app evenly: floor(n × share) of n.
func withoutApp(i int, share float64) bool {
	return int(float64(i+1)*share) != int(float64(i)*share)
}

func teamsBench(ctx context.Context, o teamsOptions) (TeamsResult, error) {
	res := TeamsResult{Bench: "teams", Recipients: o.recipients, Workers: o.workers}
	logf := o.logf
	hc, err := httpClient(o.caFile)
	if err != nil {
		return res, err
	}
	store, err := tablestore.Open(ctx, tablestore.Config{ConnectionString: o.tables, Prefix: fmt.Sprintf("tb%d", time.Now().UnixNano()%1e9)})
	if err != nil {
		return res, err
	}
	defer store.DropTables(context.WithoutCancel(ctx))
	orgKey, _ := tablestore.NewOrg(org)
	gc, err := o.graphClient(hc)
	if err != nil {
		return res, err
	}
	admin := func(method, path string, in, out any) error { return simAdmin(ctx, hc, method, o.simURL+path, in, out) }

	// The tenant's users, read as the sync reads them.
	logf("reading %d users of the simulated tenant", o.recipients)
	var users []string
	for link := ""; ; {
		page, err := gc.UsersDelta(ctx, o.tenant, link)
		if err != nil {
			return res, fmt.Errorf("users/delta: %w", err)
		}
		for _, u := range page.Users {
			if u.Removed == "" && len(users) < o.recipients {
				users = append(users, u.ID)
			}
		}
		if page.DeltaLink != "" || page.NextLink == "" || len(users) == o.recipients {
			break
		}
		link = page.NextLink
	}
	if len(users) < o.recipients {
		return res, fmt.Errorf("the simulated tenant has %d users, want at least %d (start it with -users %d)", len(users), o.recipients, o.recipients)
	}

	// Our Teams app in the tenant's catalog; the org connected to Microsoft 365 and to Teams.
	var app struct {
		ID string `json:"id"`
	}
	if err := admin("POST", "/_sim/teams/"+o.tenant+"/apps", map[string]string{"externalId": o.botAppID, "displayName": "Leap Change"}, &app); err != nil {
		return res, fmt.Errorf("publishing the Teams app: %w", err)
	}
	now := time.Now().UTC()
	conns := connection.NewStore(store)
	if _, err := conns.Put(ctx, orgKey, connection.Record{Status: connection.Connected, TenantID: o.tenant,
		Granted: append([]string{"User.Read.All"}, teamsconn.Required...), ConnectedAt: now, UpdatedAt: now}, ""); err != nil {
		return res, err
	}
	teams := teamsconn.NewStore(store)
	if _, err := teams.Put(ctx, orgKey, teamsconn.Record{Status: teamsconn.Connected, TenantID: o.tenant, CatalogAppID: app.ID,
		CatalogSource: "catalog", Granted: teamsconn.Required, DefaultChannels: []teamsconn.Channel{}, ConnectedAt: now, UpdatedAt: now}, ""); err != nil {
		return res, err
	}

	logf("writing %d synced stakeholders and their group", o.recipients)
	recipients := make([]stakeholder.Stakeholder, len(users))
	for i, u := range users {
		recipients[i] = stakeholder.Stakeholder{ID: stakeholder.SyncedID(u), FirstName: fmt.Sprintf("R%d", i), LastName: "Bench",
			Email: fmt.Sprintf("r%07d@fabrikam.example", i), Source: stakeholder.Entra, ExternalID: u, Active: true, CreatedAt: now, UpdatedAt: now}
	}
	people, groups, err := writeEveryone(ctx, store, orgKey, recipients, now)
	if err != nil {
		return res, err
	}

	// The app installed for most of them, and their references stored as the bot stores them
	// from the install activity.
	convs := conversations.NewStore(store)
	rcpt := make([]recipientOf, o.recipients)
	for i := range rcpt {
		rcpt[i] = recipientOf{user: users[i], preinstalled: !withoutApp(i, o.uninstalled)}
		if rcpt[i].preinstalled {
			res.Preinstalled++
		}
	}
	logf("installing the app for %d of them (%d without it)", res.Preinstalled, o.recipients-res.Preinstalled)
	err = parallel(ctx, len(rcpt), 16, func(i int) error {
		r := &rcpt[i]
		if r.preinstalled {
			if err := admin("POST", "/_sim/teams/"+o.tenant+"/users/"+r.user+"/installations", map[string]string{"teamsAppId": app.ID}, nil); err != nil {
				return err
			}
		}
		var c struct {
			ConversationID string `json:"conversationId"`
			UserID         string `json:"userId"`
			ServiceURL     string `json:"serviceUrl"`
		}
		q := url.Values{"tenant": {o.tenant}, "user": {r.user}}
		if err := admin("GET", "/_sim/bot/conversations?"+q.Encode(), nil, &c); err != nil {
			return err
		}
		r.conversation = c.ConversationID
		if !r.preinstalled {
			return nil
		}
		_, err := convs.Seen(ctx, orgKey, conversations.Ref{AADObjectID: r.user, UserID: c.UserID, TenantID: o.tenant,
			ServiceURL: c.ServiceURL, ConversationID: c.ConversationID}, true, time.Now().UTC())
		return err
	})
	if err != nil {
		return res, fmt.Errorf("installing the app: %w", err)
	}
	if err := admin("PUT", "/_sim/bot/tenant-rate", map[string]int{"perSecond": o.rate}, nil); err != nil {
		return res, err
	}
	if err := admin("DELETE", "/_sim/bot/stats", nil, nil); err != nil {
		return res, err
	}

	// The pipeline, wired as the Function app wires it.
	simHost, err := url.Parse(o.simURL)
	if err != nil {
		return res, err
	}
	botClient, err := botframework.NewClient(botframework.ClientConfig{AppID: o.botAppID, Secret: o.botSecret, TenantID: o.botTenant,
		AuthorityHost: o.simURL + "/", HTTPClient: hc, TrustedHosts: []string{simHost.Host}})
	if err != nil {
		return res, err
	}
	teamsPacer, err := pacing.New(store, outbound.TeamsLimits(o.rate))
	if err != nil {
		return res, err
	}
	var serviceURL struct {
		ServiceURL string `json:"serviceUrl"`
	}
	if err := admin("GET", "/_sim/bot/conversations?"+url.Values{"tenant": {o.tenant}, "user": {users[0]}}.Encode(), nil, &serviceURL); err != nil {
		return res, err
	}
	queues := devhost.NewQueues(nil, devhost.QueueOptions{}, queue.OutboundMail, queue.OutboundTeams)
	p := outbound.New(outbound.Config{Store: store, Queue: &inProcess{q: queues}, Stakeholders: people, Groups: groups, Connections: conns,
		MailSettings: mailsettings.NewStore(store), Horizon: o.horizon,
		Teams: outbound.TeamsConfig{Connections: teams, Conversations: convs, Bot: botClient, Installer: gc,
			Pacer: teamsPacer, FallbackServiceURL: serviceURL.ServiceURL, Gate: outbound.NewGate(o.rate)}})

	tx0 := store.Stats().Requests
	rec, acceptS, err := acceptBatch(ctx, p, orgKey, outbound.Teams,
		outbound.Content{Subject: "{{firstName}}, the expense tool changes on Monday", Text: "Hello {{firstName}}, the new expense tool goes live on Monday."}, logf)
	if err != nil {
		return res, err
	}
	res.AcceptS = acceptS
	logf("accepted %d recipients in %.2fs; posting at %d requests/s (paced 5 %% under)", rec.Batch.Recipients, res.AcceptS, o.rate)

	// Workers: receive, invoke the function, settle — the Functions host's part. MailSender
	// takes the dispatch steps, TeamsSender the deliveries.
	sendStart := time.Now()
	w := startWorkers(ctx, queues, logf)
	w.run(queue.OutboundMail, "MailSender", 2, p.HandleMail)
	w.run(queue.OutboundTeams, "TeamsSender", o.workers, p.HandleTeams)
	// Watch the simulated tenant's count; the batch's rows are scanned only once every
	// recipient has a post, or when the count stops moving (deliveries failing): a scan of
	// 10 000 rows holds this machine's one Azurite process for most of a second, and posts
	// delayed that long go out together with the next ones — over Teams' per-second limit.
	lastSent, lastMove := int64(-1), time.Now()
	_, err = w.watchBatch(ctx, p, orgKey, rec.Batch.ID, func() (bool, error) {
		var st struct {
			Sent       int64 `json:"sent"`
			Violations int64 `json:"violations"`
		}
		if err := admin("GET", "/_sim/bot/stats", nil, &st); err != nil {
			return false, err
		}
		logf("%5.1fs %d activities posted (limit violations %d, worker errors %d)", time.Since(sendStart).Seconds(), st.Sent, st.Violations, w.failures.Load())
		if st.Sent != lastSent {
			lastSent, lastMove = st.Sent, time.Now()
		}
		if int(st.Sent) >= rec.Batch.Recipients || time.Since(lastMove) > 30*time.Second {
			lastMove = time.Now()
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return res, err
	}
	res.SendS = secs(time.Since(sendStart))
	res.TableTx = store.Stats().Requests - tx0
	res.PeakRSSMB = peakRSSMB()
	res.WorkerErrors = w.failures.Load()

	// What the pipeline recorded.
	status := make(map[string]outbound.Delivery, o.recipients)
	var late []time.Duration
	for after := ""; ; {
		page, next, err := p.Deliveries(ctx, orgKey, rec.Batch.ID, outbound.RowsOptions{After: after, Limit: 1000})
		if err != nil {
			return res, err
		}
		for _, d := range page {
			status[d.EntraID] = d
			if d.Status == outbound.Sent {
				res.Sent++
				late = append(late, d.SentAt.Sub(d.DueAt))
			}
			if d.Installed {
				res.InstalledViaGraph++
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	if len(late) > 0 {
		slices.Sort(late)
		res.LateP50Ms, res.LateP99Ms, res.LateMaxMs = ms(percentile(late, 0.50)), ms(percentile(late, 0.99)), ms(late[len(late)-1])
	}
	// What the simulated tenant saw.
	posts := make([][]time.Time, len(rcpt))
	err = parallel(ctx, len(rcpt), 16, func(i int) error {
		var l []struct {
			Op string    `json:"op"`
			At time.Time `json:"at"`
		}
		if err := admin("GET", "/_sim/bot/conversations/"+url.PathEscape(rcpt[i].conversation)+"/activities", nil, &l); err != nil {
			return err
		}
		for _, a := range l {
			if a.Op == "send" {
				posts[i] = append(posts[i], a.At)
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	var times []time.Time
	for i, ts := range posts {
		times = append(times, ts...)
		switch d := status[rcpt[i].user]; {
		case len(ts) == 0 || d.Status != outbound.Sent:
			res.Lost++
		case len(ts) > 1:
			res.Duplicated++
		}
	}
	var stats struct {
		Violations             int64 `json:"violations"`
		TenantViolations       int64 `json:"tenantViolations"`
		ConversationViolations int64 `json:"conversationViolations"`
		Throttled              int64 `json:"throttled"`
	}
	if err := admin("GET", "/_sim/bot/stats", nil, &stats); err != nil {
		return res, err
	}
	res.LimitViolations, res.TenantViolations, res.ConversationViolations, res.Throttled =
		stats.Violations, stats.TenantViolations, stats.ConversationViolations, stats.Throttled
	res.LimitPerS = float64(o.rate)
	res.RatePerS, res.RateRatio = sendRate(times, res.LimitPerS) // sorts times
	for i, j := 0, 0; i < len(times); i++ {
		for times[i].Sub(times[j]) >= time.Second {
			j++
		}
		res.PeakPosts1s = max(res.PeakPosts1s, i-j+1)
	}

	if res.AcceptFloorS, res.AcceptRatio, err = acceptFloorRatio(ctx, store, rec.Batch.Rows, res.AcceptS, logf); err != nil {
		return res, err
	}
	return res, nil
}

// parallel runs f(0..n-1) on conc goroutines and returns the first error (the rest are skipped).
func parallel(ctx context.Context, n, conc int, f func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx) // f's error, the caller's cancellation, or nil
}
