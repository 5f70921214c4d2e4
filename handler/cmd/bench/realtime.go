package main

// The real-time sync benchmark (scripts/bench.sh realtime): Entra user changes reaching
// stakeholders through change notifications, end to end. The REAL handler runs behind the local
// Functions host stand-in (devhost) with every function, against Table Storage (Azurite) and a
// simulated tenant in another process (cmd/m365sim) that sends change notifications to the
// host's GraphNotifications endpoint, as Graph would.
//
// Setup (not measured): two orgs registered through the API and connected to the tenant (their
// connection records written as the consent flow leaves them, as the sync benchmark does; a
// tenant binds to one org through the consent flow): "bench" without a group filter and
// "benchfiltered" with a group filter of two groups that together cover about half the users,
// one of them with nested groups (chosen from one groups/delta round of the tenant). A full
// sync of each through the API (POST /m365/sync). Then:
//
//  1. filtered_delta_ratio, real-time sync off in both orgs: -filter-changes users change in the
//     simulated tenant (a rename or a department change each, random users across the tenant,
//     so about half in the filter), then one delta run in "bench" and one in "benchfiltered"
//     (POST /m365/sync, one after the other), each counted from the simulated tenant's Graph
//     requests of the tenant (Stats.GraphByTenant) around it and timed by its run record;
//     repeated -filter-repeats times. The ratio is the filtered org's requests over the
//     unfiltered org's, summed over the repeats; filtered_delta_time_ratio the same for the
//     runs' wall time.
//  2. real-time sync on in "bench" (PUT /m365/settings realTime: true: the handler subscribes
//     to /users). -changes users change at -rate changes a second (open loop, each due at
//     start + i/rate; a rename or a department change of a distinct random active user
//     through the simulated tenant's admin API); each change's time is taken when its request
//     is sent. A poller reads the stakeholders still pending, every -poll (a batch of point
//     reads, 16 at a time, straight from Table Storage: no extra load on the handler), and a
//     change is visible at the end of the first batch that shows its new value. latency =
//     visible − change. A change not visible -lost-after after it was made is lost. Once
//     every change is visible (or lost) the bench waits for the org to settle (no round
//     pending or running), then reads the tenant's Graph request counter again:
//     graph_requests_per_change = the handler's Graph requests in the window / changes (the
//     bench makes no Graph request in the window; admin API calls are not Graph). rounds =
//     runs with trigger "notification" (resync_rounds: "resync") started in the window.
//
// peak_rss_mb is the handler process's peak resident set (VmHWM) during 1 and 2: it is reset
// (/proc/<pid>/clear_refs) after the full syncs, whose peak is setup_peak_rss_mb.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/devhost"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// RealtimeResult is the real-time benchmark's JSON line; the first keys are the benchmark contract's.
type RealtimeResult struct {
	Bench                  string   `json:"bench"`
	Users                  int      `json:"users"`
	Changes                int      `json:"changes"`
	P50S                   float64  `json:"p50_s"`
	P95S                   float64  `json:"p95_s"`
	GraphRequestsPerChange float64  `json:"graph_requests_per_change"`
	FilteredDeltaRatio     *float64 `json:"filtered_delta_ratio"` // null when not measured (-filter-repeats 0)

	Rate          float64 `json:"rate"`          // changes a second asked for
	AchievedRate  float64 `json:"achieved_rate"` // changes a second made, first to last
	DebounceS     float64 `json:"debounce_s"`
	Rounds        int     `json:"rounds"`        // runs with trigger notification in the window
	ResyncRounds  int     `json:"resync_rounds"` // runs with trigger resync in the window
	OtherRuns     int     `json:"other_runs"`    // any other run in the window
	Lost          int     `json:"lost"`
	Visible       int     `json:"visible"`
	MinS          float64 `json:"min_s"`
	P90S          float64 `json:"p90_s"`
	P99S          float64 `json:"p99_s"`
	MaxS          float64 `json:"max_s"`
	MeanS         float64 `json:"mean_s"`
	PollMs        float64 `json:"poll_ms"`
	PollReads     int     `json:"poll_reads"` // stakeholder point reads the poller made
	LostAfterS    float64 `json:"lost_after_s"`
	WindowS       float64 `json:"window_s"` // first change to settled
	GraphRequests int64   `json:"graph_requests"`
	// GraphRoutes are Graph requests per route kind in the window (the sim's Stats.Routes).
	GraphRoutes map[string]int64 `json:"graph_routes"`
	Delivered   int64            `json:"notifications_delivered"`
	NotifyFail  int64            `json:"notifications_failed"`

	Groups                 int              `json:"groups"`
	FilterGroups           int              `json:"filter_groups"`
	FilterNestedGroups     int              `json:"filter_nested_groups"` // groups nested in the filter groups
	FilterUsers            int              `json:"filter_users"`         // users in scope (transitive)
	FilterChanges          int              `json:"filter_changes"`
	FilterRepeats          int              `json:"filter_repeats"`
	DeltaRequestsUnfilt    int64            `json:"delta_requests_unfiltered"`
	DeltaRequestsFilt      int64            `json:"delta_requests_filtered"`
	DeltaRoutesUnfilt      map[string]int64 `json:"delta_routes_unfiltered"` // Graph requests per route kind
	DeltaRoutesFilt        map[string]int64 `json:"delta_routes_filtered"`
	DeltaSUnfilt           float64          `json:"delta_s_unfiltered"`
	DeltaSFilt             float64          `json:"delta_s_filtered"`
	FilteredDeltaTimeRatio float64          `json:"filtered_delta_time_ratio"`
	FilterMethod           string           `json:"filter_method"`

	FullSyncS         float64 `json:"full_sync_s"`
	FullSyncFilteredS float64 `json:"full_sync_filtered_s"`
	PeakRSSMB         float64 `json:"peak_rss_mb"`
	SetupPeakRSSMB    float64 `json:"setup_peak_rss_mb"`
	BenchRSSMB        float64 `json:"bench_peak_rss_mb"`
	NumCPU            int     `json:"nproc"`
}

type realtimeOptions struct {
	target
	handlerApp
	users, groups, changes       int
	rate                         float64
	debounce, poll, lostAfter    time.Duration
	filterChanges, filterRepeats int
	seed                         uint64
	verbose                      bool
}

func runRealtime(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o realtimeOptions
	fs := o.flagSet("bench realtime", stderr)
	o.handlerApp.flags(fs)
	fs.IntVar(&o.users, "users", 0, "users the simulated tenant was generated with (required)")
	fs.IntVar(&o.groups, "groups", 0, "groups the simulated tenant was generated with (reported)")
	fs.IntVar(&o.changes, "changes", 0, "user changes made with real-time sync on (required)")
	fs.Float64Var(&o.rate, "rate", 5, "changes a second")
	fs.DurationVar(&o.debounce, "debounce", 0, "REALTIME_DEBOUNCE of the handler (0: its default, 15s)")
	fs.DurationVar(&o.poll, "poll", 500*time.Millisecond, "how often the pending stakeholders are read")
	fs.DurationVar(&o.lostAfter, "lost-after", 3*time.Minute, "a change not visible this long after it was made is lost")
	fs.IntVar(&o.filterChanges, "filter-changes", 0, "user changes before each pair of delta runs of the filtered-delta measurement (default 1 % of the users, at least 20: the sync benchmark's delta)")
	fs.IntVar(&o.filterRepeats, "filter-repeats", 3, "pairs of delta runs of the filtered-delta measurement (0: no filtered org, no measurement)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the choice of users and changes")
	fs.BoolVar(&o.verbose, "v", false, "show the handler's info log")
	if err := o.parse(fs, args); err != nil {
		return err
	}
	if o.filterChanges == 0 {
		o.filterChanges = max(20, o.users/100)
	}
	if o.users <= 0 || o.changes <= 0 || o.rate <= 0 || o.poll <= 0 || o.lostAfter <= 0 || o.filterChanges <= 0 || o.filterRepeats < 0 {
		return fmt.Errorf("%w: -users and -changes are required; -users, -changes, -rate, -poll, -lost-after, -filter-changes must be positive, -filter-repeats not negative", errUsage)
	}
	if o.debounce != 0 && (o.debounce < time.Second || o.debounce > 5*time.Minute) {
		return fmt.Errorf("%w: -debounce must be from 1s to 5m (the handler's REALTIME_DEBOUNCE)", errUsage)
	}
	return measure(ctx, &o.target, stdout, realtimeBench, o)
}

const filteredOrg = "benchfiltered"

func realtimeBench(ctx context.Context, o realtimeOptions) (RealtimeResult, error) {
	debounce := cmp.Or(o.debounce, 15*time.Second)
	res := RealtimeResult{Bench: "realtime", Users: o.users, Changes: o.changes, Rate: o.rate, DebounceS: secs(debounce),
		Groups: o.groups, FilterChanges: o.filterChanges, FilterRepeats: o.filterRepeats, PollMs: ms(o.poll),
		LostAfterS: secs(o.lostAfter), NumCPU: runtime.NumCPU()}
	logf := o.logf
	rng := rand.New(rand.NewPCG(o.seed, o.seed^0x2545f4914f6cdd1d))

	hc, err := httpClient(o.caFile)
	if err != nil {
		return res, err
	}
	sim := simClient{hc: hc, url: o.simURL, tenant: o.tenant}
	work, err := os.MkdirTemp("", "bench-realtime-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)
	handlerPath, err := o.binary(ctx, work, o.stderr, logf)
	if err != nil {
		return res, err
	}
	caFile, err := filepath.Abs(o.caFile)
	if err != nil {
		return res, err
	}

	prefix := "testrt" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36) // a test prefix: dropped at the end
	store, err := tablestore.Open(ctx, tablestore.Config{ConnectionString: o.tables, Prefix: prefix})
	if err != nil {
		return res, err
	}
	defer dropTables(ctx, store, 2*time.Minute, logf, "dropping tables "+prefix+"*")

	// The handler behind the host stand-in, reachable by the simulated tenant's webhooks: the
	// host's address is PUBLIC_BASE_URL, so its port is chosen first.
	port, err := freeLoopbackPort()
	if err != nil {
		return res, err
	}
	publicURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	key := randomKey()
	settings := hostSettings(o.tables, prefix, map[string]string{
		"M365_CLIENT_ID":          o.appID,
		"M365_CLIENT_SECRET":      o.appSecret,
		"GRAPH_BASE_URL":          o.simURL + "/v1.0",
		"AZURE_AUTHORITY_HOST":    o.simURL + "/",
		"GRAPH_NOTIFY_KEYS_URL":   o.simURL + "/common/discovery/v2.0/keys",
		"BOT_OPENID_METADATA_URL": o.simURL + "/botframework/v1/.well-known/openidconfiguration",
		"BOT_SERVICE_URL":         o.simURL + "/bot/emea/",
		"PUBLIC_BASE_URL":         publicURL,
		"LEAP_APP_URL":            "http://localhost:3000/settings/integrations",
		"STATE_SIGNING_KEY":       randomKey(),
		"DEVHOST_FUNCTION_KEY":    key,
	})
	if o.debounce > 0 {
		settings["REALTIME_DEBOUNCE"] = o.debounce.String()
	}
	var handlerOut io.Writer
	if o.verbose {
		handlerOut = o.stderr
	}
	host, err := devhost.New(devhost.Config{
		Root: o.root, Port: port, HandlerPath: handlerPath, Env: append(os.Environ(), "SSL_CERT_FILE="+caFile),
		Settings: settings,
		Logger:   slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Stdout:   handlerOut, Stderr: o.stderr, // the handler's warnings and errors
	})
	if err != nil {
		return res, err
	}
	if err := host.Start(ctx); err != nil {
		return res, err
	}
	defer host.Close()
	go host.Serve(ctx)
	api := &apiClient{hc: &http.Client{Timeout: 5 * time.Minute}, base: host.URL() + "/api/orgs/", key: key}
	logf("handler behind the host stand-in at %s (tables %s*), tenant %s at %s, %d users, debounce %s", host.URL(), prefix, o.tenant, o.simURL, o.users, debounce)

	// Orgs, connected.
	orgs := []string{org}
	if o.filterRepeats > 0 {
		orgs = append(orgs, filteredOrg)
	}
	conns := connection.NewStore(store)
	now := time.Now().UTC()
	for _, name := range orgs {
		if err := api.do(ctx, "PUT", name, "", map[string]any{"displayName": "Bench " + name, "timeZone": "UTC"}, nil); err != nil {
			return res, fmt.Errorf("registering org %s: %w", name, err)
		}
		k, _ := tablestore.NewOrg(name)
		if _, err := conns.Put(ctx, k, connection.Record{Status: connection.Connected, TenantID: o.tenant,
			Granted: []string{"User.Read.All", "GroupMember.Read.All"}, ConnectedAt: now, UpdatedAt: now}, ""); err != nil {
			return res, err
		}
	}

	// The group filter: two groups, one with nested groups, covering about half the users.
	var filter []string
	var pick filterPick
	if o.filterRepeats > 0 {
		gc, err := o.graphClient(hc)
		if err != nil {
			return res, err
		}
		tree, err := readGroupTree(ctx, gc, o.tenant)
		if err != nil {
			return res, err
		}
		var ok bool
		if pick, ok = pickFilter(tree, o.users); !ok {
			return res, fmt.Errorf("no pair of groups with a nested group among the tenant's %d groups: generate the tenant with groups and depth ≥ 1", len(tree.ids))
		}
		filter = []string{tree.ids[pick.a], tree.ids[pick.b]}
		res.FilterGroups, res.FilterUsers, res.FilterNestedGroups = len(filter), pick.users, pick.nested
		logf("group filter: %s (%d groups nested in it) and %s: %d of %d users (%.0f %%)", filter[0], pick.nested, filter[1], pick.users, o.users,
			100*float64(pick.users)/float64(o.users))
	}

	base := map[string]any{"frequency": "manual", "timeZone": "UTC", "mergeStrategy": "entra_wins", "groupFilter": []string{},
		"groupSync": false, "groupType": "custom", "deletionThreshold": map[string]int{"percent": 20, "count": 500}, "realTime": false}
	withFilter := map[string]any{}
	for k, v := range base {
		withFilter[k] = v
	}
	withFilter["groupFilter"] = filter
	if err := api.do(ctx, "PUT", org, "/m365/settings", base, nil); err != nil {
		return res, err
	}
	if o.filterRepeats > 0 {
		if err := api.do(ctx, "PUT", filteredOrg, "/m365/settings", withFilter, nil); err != nil {
			return res, err
		}
	}

	// Full syncs of the orgs, at the same time (setup).
	logf("full sync of %s", strings.Join(orgs, " and "))
	var fulls [2]rtRun
	var ferrs [2]error
	var wg sync.WaitGroup
	for i, name := range orgs {
		wg.Go(func() {
			var id string
			if id, ferrs[i] = api.startRun(ctx, name); ferrs[i] == nil {
				fulls[i], ferrs[i] = api.waitRun(ctx, name, id, 3*time.Second, logf)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(ferrs[:]...); err != nil {
		return res, fmt.Errorf("full sync: %w", err)
	}
	res.FullSyncS, res.FullSyncFilteredS = secs(fulls[0].duration()), secs(fulls[1].duration())
	logf("full syncs: %s %.1fs (%d created), %s %.1fs (%d created)", org, res.FullSyncS, fulls[0].Created, filteredOrg, res.FullSyncFilteredS, fulls[1].Created)
	if o.filterRepeats == 0 {
		res.FullSyncFilteredS = 0
	}

	handlerPID := childPID(filepath.Base(handlerPath))
	res.SetupPeakRSSMB = vmHWM(handlerPID)
	resetPeakRSS(handlerPID)

	// The users to change: distinct active synced stakeholders of the unfiltered org, in random
	// order (ids derive from object ids, so a prefix of the key order is itself a random sample).
	need := o.changes + o.filterChanges*o.filterRepeats
	orgKey, _ := tablestore.NewOrg(org)
	people := stakeholder.NewStore(store)
	active := true
	sample, _, err := people.List(ctx, orgKey, stakeholder.ListOptions{Limit: min(max(need*2, 200), 1000), Source: stakeholder.Entra, Active: &active})
	if err != nil {
		return res, err
	}
	for len(sample) < need {
		more, _, err := people.List(ctx, orgKey, stakeholder.ListOptions{After: sample[len(sample)-1].ID, Limit: 1000, Source: stakeholder.Entra, Active: &active})
		if err != nil {
			return res, err
		}
		if len(more) == 0 {
			return res, fmt.Errorf("only %d active synced stakeholders, %d changes asked for", len(sample), need)
		}
		sample = append(sample, more...)
	}
	rng.Shuffle(len(sample), func(i, j int) { sample[i], sample[j] = sample[j], sample[i] })
	changes := make([]userChange, need)
	for i := range changes {
		changes[i] = newChange(i, sample[i], i%2 == 0)
	}
	filterChanges, rtChanges := changes[:o.filterChanges*o.filterRepeats], changes[o.filterChanges*o.filterRepeats:]

	// 1. filtered_delta_ratio: the same changes, one delta run in each org.
	res.DeltaRoutesUnfilt, res.DeltaRoutesFilt = map[string]int64{}, map[string]int64{}
	for rep := range o.filterRepeats {
		for _, c := range filterChanges[rep*o.filterChanges : (rep+1)*o.filterChanges] {
			if err := sim.patchUser(ctx, c.externalID, c.patch()); err != nil {
				return res, err
			}
		}
		for i, name := range []string{org, filteredOrg} {
			g0, r0, err := sim.graphRequests(ctx)
			if err != nil {
				return res, err
			}
			id, err := api.startRun(ctx, name)
			if err != nil {
				return res, err
			}
			run, err := api.waitRun(ctx, name, id, 200*time.Millisecond, nil)
			if err != nil {
				return res, err
			}
			g1, r1, err := sim.graphRequests(ctx)
			if err != nil {
				return res, err
			}
			routes := res.DeltaRoutesUnfilt
			if i == 1 {
				routes = res.DeltaRoutesFilt
			}
			addRoutes(routes, r0, r1)
			if run.Kind != "delta" {
				return res, fmt.Errorf("%s: run %s was a %s round, want a delta round", name, run.ID, run.Kind)
			}
			logf("delta %d/%d %-13s: %d Graph requests, %.2fs, %d processed, %d updated", rep+1, o.filterRepeats, name, g1-g0, run.duration().Seconds(), run.Processed, run.Updated)
			if i == 0 {
				res.DeltaRequestsUnfilt += g1 - g0
				res.DeltaSUnfilt += run.duration().Seconds()
			} else {
				res.DeltaRequestsFilt += g1 - g0
				res.DeltaSFilt += run.duration().Seconds()
			}
		}
	}
	res.DeltaSUnfilt, res.DeltaSFilt = round3(res.DeltaSUnfilt), round3(res.DeltaSFilt)
	if res.DeltaRequestsUnfilt > 0 {
		r := round3(float64(res.DeltaRequestsFilt) / float64(res.DeltaRequestsUnfilt))
		res.FilteredDeltaRatio = &r
	}
	if res.DeltaSUnfilt > 0 {
		res.FilteredDeltaTimeRatio = round3(res.DeltaSFilt / res.DeltaSUnfilt)
	}
	res.FilterMethod = fmt.Sprintf("two orgs on the same tenant, real-time off: %d user changes (rename or department, random users), then one delta run (POST /m365/sync) "+
		"in the unfiltered org and one in the org filtered on %d groups (%d nested, %d users in scope), one after the other; Graph requests of the tenant around each run (sim Stats.GraphByTenant), "+
		"run wall time from the run record; summed over %d repeats; ratio = filtered / unfiltered", o.filterChanges, len(filter), pick.nested, pick.users, o.filterRepeats)
	if o.filterRepeats == 0 {
		res.FilterMethod = "not measured (-filter-repeats 0: no filtered org)"
	} else {
		logf("filtered delta: %d vs %d Graph requests (ratio %.3f), %.2fs vs %.2fs (time ratio %.3f)",
			res.DeltaRequestsFilt, res.DeltaRequestsUnfilt, *res.FilteredDeltaRatio, res.DeltaSFilt, res.DeltaSUnfilt, res.FilteredDeltaTimeRatio)
	}

	// 2. Real-time sync on in the unfiltered org.
	base["realTime"] = true
	if err := api.do(ctx, "PUT", org, "/m365/settings", base, nil); err != nil {
		return res, err
	}
	if err := api.waitHealthy(ctx, org, time.Minute); err != nil {
		return res, err
	}
	if err := sim.admin(ctx, "DELETE", "/_sim/webhook/stats", nil, nil); err != nil {
		return res, err
	}
	logf("real-time sync on in %s (subscribed to /users); %d changes at %.1f/s", org, len(rtChanges), o.rate)

	g0, routes0, err := sim.graphRequests(ctx)
	if err != nil {
		return res, err
	}
	start := time.Now()
	p := &poller{people: people, org: orgKey, changes: rtChanges, every: o.poll, lostAfter: o.lostAfter}
	pollDone := make(chan error, 1)
	pctx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go func() { pollDone <- p.run(pctx, logf) }()

	interval := time.Duration(float64(time.Second) / o.rate)
	var sendErr error
	for i := range rtChanges {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
		c := &rtChanges[i]
		p.made(i, time.Now())
		if err := sim.patchUser(ctx, c.externalID, c.patch()); err != nil {
			sendErr = err
			break
		}
	}
	if sendErr != nil {
		stopPoll()
		<-pollDone
		return res, sendErr
	}
	if n := len(rtChanges); n > 1 {
		res.AchievedRate = round3(float64(n-1) / p.at(n-1).Sub(p.at(0)).Seconds())
	} else {
		res.AchievedRate = o.rate
	}
	if err := <-pollDone; err != nil {
		return res, err
	}
	// Settle: whatever the notifications still started (a round for changes its predecessor
	// had already read, say) belongs to their cost.
	if err := api.waitSettled(ctx, org, 2*debounce+90*time.Second, logf); err != nil {
		logf("%v", err)
	}
	res.WindowS = secs(time.Since(start))
	g1, routes1, err := sim.graphRequests(ctx)
	if err != nil {
		return res, err
	}
	res.GraphRequests = g1 - g0
	res.GraphRequestsPerChange = round3(float64(res.GraphRequests) / float64(len(rtChanges)))
	res.GraphRoutes = map[string]int64{}
	addRoutes(res.GraphRoutes, routes0, routes1)

	lat, lost := p.latencies()
	res.Lost, res.Visible, res.PollReads = lost, len(lat), p.reads
	if len(lat) > 0 {
		res.MinS, res.P50S, res.P90S, res.P95S, res.P99S, res.MaxS = secs(lat[0]), secs(percentile(lat, 0.50)), secs(percentile(lat, 0.90)),
			secs(percentile(lat, 0.95)), secs(percentile(lat, 0.99)), secs(lat[len(lat)-1])
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		res.MeanS = secs(sum / time.Duration(len(lat)))
	}

	var runs struct{ Runs []rtRun }
	if err := api.do(ctx, "GET", org, "/m365/sync/runs?limit=100", nil, &runs); err != nil {
		return res, err
	}
	for _, r := range runs.Runs {
		if r.StartedAt.Before(start) {
			continue
		}
		switch r.Trigger {
		case "notification":
			res.Rounds++
		case "resync":
			res.ResyncRounds++
		default:
			res.OtherRuns++
		}
	}
	var ws struct {
		Delivered int64 `json:"delivered"`
		Failed    int64 `json:"failed"`
	}
	if err := sim.admin(ctx, "GET", "/_sim/webhook/stats", nil, &ws); err == nil {
		res.Delivered, res.NotifyFail = ws.Delivered, ws.Failed
	}
	res.PeakRSSMB = vmHWM(childPID(filepath.Base(handlerPath)))
	res.BenchRSSMB = peakRSSMB()
	logf("%d changes: %d visible, %d lost; latency p50 %.2fs, p95 %.2fs, max %.2fs; %d rounds; %d Graph requests (%.3f a change); window %.1fs",
		len(rtChanges), res.Visible, res.Lost, res.P50S, res.P95S, res.MaxS, res.Rounds, res.GraphRequests, res.GraphRequestsPerChange, res.WindowS)
	return res, nil
}

// userChange is one change made to a user in the simulated tenant and the stakeholder value
// that shows it.
type userChange struct {
	stakeholderID, externalID string
	rename                    bool
	value                     string // the new surname (rename) or department
	givenName                 string
}

func newChange(i int, st stakeholder.Stakeholder, rename bool) userChange {
	c := userChange{stakeholderID: st.ID, externalID: st.ExternalID, rename: rename, givenName: st.FirstName}
	if rename {
		c.value = fmt.Sprintf("%s-Rt%d", st.LastName, i)
	} else {
		c.value = fmt.Sprintf("Realtime Dept %d", i)
	}
	return c
}

// patch is the admin API's partial user (Graph property names).
func (c userChange) patch() map[string]any {
	if c.rename {
		return map[string]any{"surname": c.value, "displayName": strings.TrimSpace(c.givenName + " " + c.value)}
	}
	return map[string]any{"department": c.value}
}

// shows reports whether st carries the change.
func (c userChange) shows(st stakeholder.Stakeholder) bool {
	if c.rename {
		return st.LastName == c.value
	}
	return st.Department == c.value
}

// poller reads the stakeholders of the changes made and not yet seen, every `every`, and
// records when each first shows its change.
type poller struct {
	people    *stakeholder.Store
	org       tablestore.Org
	changes   []userChange
	every     time.Duration
	lostAfter time.Duration

	mu     sync.Mutex
	madeAt []time.Time // zero: not made yet
	seenAt []time.Time // zero: not seen yet
	nMade  int
	reads  int
}

func (p *poller) made(i int, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.madeAt == nil {
		p.madeAt, p.seenAt = make([]time.Time, len(p.changes)), make([]time.Time, len(p.changes))
	}
	p.madeAt[i] = t
	p.nMade++
}

func (p *poller) at(i int) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.madeAt[i]
}

// run polls until every change is seen or lost.
func (p *poller) run(ctx context.Context, logf func(string, ...any)) error {
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	lastLog := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		p.mu.Lock()
		var idx []int
		var ids []string
		now := time.Now()
		lost := 0
		for i := range p.madeAt {
			if p.madeAt[i].IsZero() || !p.seenAt[i].IsZero() {
				continue
			}
			if now.Sub(p.madeAt[i]) > p.lostAfter {
				lost++
				continue
			}
			idx, ids = append(idx, i), append(ids, p.changes[i].stakeholderID)
		}
		made := p.nMade
		p.mu.Unlock()
		if len(ids) > 0 {
			got, err := p.people.GetMany(ctx, p.org, ids)
			if err != nil {
				return err
			}
			at := time.Now()
			p.mu.Lock()
			p.reads += len(ids)
			for _, i := range idx {
				if v, ok := got[p.changes[i].stakeholderID]; ok && p.changes[i].shows(v.Stakeholder) {
					p.seenAt[i] = at
				}
			}
			p.mu.Unlock()
		}
		p.mu.Lock()
		seen := 0
		for i := range p.seenAt {
			if !p.seenAt[i].IsZero() {
				seen++
			}
		}
		p.mu.Unlock()
		if time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			logf("%d changes made, %d visible, %d pending, %d lost", made, seen, made-seen-lost, lost)
		}
		if made == len(p.changes) && seen+lost == made {
			return nil
		}
	}
}

// latencies returns the sorted latencies of the changes seen, and how many were not.
func (p *poller) latencies() ([]time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return changeLatencies(p.madeAt, p.seenAt)
}

// changeLatencies pairs made and seen times: the sorted latencies of the changes seen, and the
// number of changes made but never seen.
func changeLatencies(madeAt, seenAt []time.Time) ([]time.Duration, int) {
	var lat []time.Duration
	lost := 0
	for i := range madeAt {
		switch {
		case madeAt[i].IsZero():
		case seenAt[i].IsZero():
			lost++
		default:
			lat = append(lat, max(0, seenAt[i].Sub(madeAt[i])))
		}
	}
	slices.Sort(lat)
	return lat, lost
}

// percentile is the p-quantile of sorted (the element at index ⌊n·p⌋, the webhook benchmark's
// convention); 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, max(0, int(float64(len(sorted))*p)))]
}

// groupTree is the tenant's groups: direct users and nested groups of each, by index.
type groupTree struct {
	ids      []string
	users    [][]int // direct user members, as indexes into the tenant's users seen
	children [][]int // nested groups
	nUsers   int
}

// readGroupTree reads every group and its members with one groups/delta round (setup: the
// bench's own Graph requests, made before anything is measured).
func readGroupTree(ctx context.Context, gc *graph.Client, tenant string) (groupTree, error) {
	var t groupTree
	gIdx, uIdx := map[string]int{}, map[string]int{}
	group := func(id string) int {
		i, ok := gIdx[id]
		if !ok {
			i = len(t.ids)
			gIdx[id] = i
			t.ids, t.users, t.children = append(t.ids, id), append(t.users, nil), append(t.children, nil)
		}
		return i
	}
	link := ""
	for {
		page, err := gc.GroupsDelta(ctx, tenant, link, nil)
		if err != nil {
			return t, fmt.Errorf("groups/delta: %w", err)
		}
		for _, g := range page.Groups {
			if g.Removed != entra.NotRemoved {
				continue
			}
			gi := group(g.ID)
			for _, m := range g.Members {
				switch {
				case m.Removed:
				case m.IsGroup:
					t.children[gi] = append(t.children[gi], group(m.ID))
				default:
					ui, ok := uIdx[m.ID]
					if !ok {
						ui = len(uIdx)
						uIdx[m.ID] = ui
					}
					t.users[gi] = append(t.users[gi], ui)
				}
			}
		}
		if page.DeltaLink != "" {
			t.nUsers = len(uIdx)
			return t, nil
		}
		if page.NextLink == "" {
			return t, errors.New("groups/delta page has neither nextLink nor deltaLink")
		}
		link = page.NextLink
	}
}

// filterPick is a group filter: groups a (with nested groups) and b.
type filterPick struct {
	a, b   int
	users  int // users in either, nested groups expanded
	nested int // groups nested in a or b (transitively)
}

// pickFilter chooses two groups, the first with nested groups and neither inside the other,
// whose members (nested groups expanded) are closest to half of total users.
func pickFilter(t groupTree, total int) (filterPick, bool) {
	n := len(t.ids)
	words := (t.nUsers + 63) / 64
	closure := make([][]uint64, n) // users, transitively
	inside := make([][]bool, n)    // groups nested in each, transitively
	for g := range n {
		closure[g] = make([]uint64, words)
		inside[g] = make([]bool, n)
		stack := []int{g}
		seen := map[int]bool{g: true}
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, u := range t.users[x] {
				closure[g][u/64] |= 1 << (u % 64)
			}
			for _, c := range t.children[x] {
				if !seen[c] {
					seen[c] = true
					inside[g][c] = true
					stack = append(stack, c)
				}
			}
		}
	}
	best, found, bestDist := filterPick{}, false, 0
	for a := range n {
		if len(t.children[a]) == 0 {
			continue
		}
		for b := range n {
			if b == a || inside[a][b] || inside[b][a] {
				continue
			}
			users := 0
			for w := range words {
				users += bits.OnesCount64(closure[a][w] | closure[b][w])
			}
			dist := users - total/2
			if dist < 0 {
				dist = -dist
			}
			if !found || dist < bestDist {
				nested := 0
				for g := range n {
					if inside[a][g] || inside[b][g] {
						nested++
					}
				}
				best, found, bestDist = filterPick{a: a, b: b, users: users, nested: nested}, true, dist
			}
		}
	}
	return best, found
}

// apiClient calls the handler's API through the host stand-in with the function key.
type apiClient struct {
	hc        *http.Client
	base, key string
}

func (a *apiClient) do(ctx context.Context, method, orgID, path string, in, out any) error {
	u := a.base + orgID + path
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return simAdmin(ctx, a.hc, method, u+sep+"code="+url.QueryEscape(a.key), in, out)
}

// rtRun is the part of a run (GET /m365/sync/runs/{id}) the bench reads.
type rtRun struct {
	ID         string    `json:"id"`
	State      string    `json:"state"`
	Kind       string    `json:"kind"`
	Trigger    string    `json:"trigger"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	Processed  int       `json:"processed"`
	Created    int       `json:"created"`
	Updated    int       `json:"updated"`
	LastError  string    `json:"lastError"`
}

func (r rtRun) duration() time.Duration { return r.FinishedAt.Sub(r.StartedAt) }

// startRun starts a manual run (POST /m365/sync); one already running is an error.
func (a *apiClient) startRun(ctx context.Context, orgID string) (string, error) {
	var out struct {
		RunID   string `json:"runId"`
		Started bool   `json:"started"`
	}
	if err := a.do(ctx, "POST", orgID, "/m365/sync", map[string]any{}, &out); err != nil {
		return "", fmt.Errorf("%s: starting a run: %w", orgID, err)
	}
	if !out.Started {
		return "", fmt.Errorf("%s: run %s was already running", orgID, out.RunID)
	}
	return out.RunID, nil
}

// waitRun polls a run until it is over; it must succeed. It reads the list of runs (the runs
// table only): a run's detail also reads its change log, a query whose cost in Azurite grows
// with the table, which would slow the runs it waits for.
func (a *apiClient) waitRun(ctx context.Context, orgID, id string, every time.Duration, logf func(string, ...any)) (rtRun, error) {
	last := time.Now()
	for {
		var list struct{ Runs []rtRun }
		if err := a.do(ctx, "GET", orgID, "/m365/sync/runs?limit=5", nil, &list); err != nil {
			return rtRun{}, err
		}
		i := slices.IndexFunc(list.Runs, func(r rtRun) bool { return r.ID == id })
		if i < 0 {
			return rtRun{}, fmt.Errorf("%s: run %s is not among the latest runs", orgID, id)
		}
		r := list.Runs[i]
		switch r.State {
		case "running":
		case "succeeded":
			return r, nil
		default:
			return r, fmt.Errorf("%s: run %s ended %s: %s", orgID, id, r.State, r.LastError)
		}
		if logf != nil && time.Since(last) >= 10*time.Second {
			last = time.Now()
			logf("%s: run %s (%s) %.0fs, %d processed", orgID, id, r.Kind, time.Since(r.StartedAt).Seconds(), r.Processed)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(every):
		}
	}
}

// rtStatus is the part of GET /m365/status the bench reads.
type rtStatus struct {
	Running  *rtRun `json:"running"`
	RealTime *struct {
		Enabled   bool   `json:"enabled"`
		Healthy   bool   `json:"healthy"`
		Pending   bool   `json:"pending"`
		Waiting   string `json:"waiting"`
		LastError string `json:"lastError"`
	} `json:"realTime"`
}

func (a *apiClient) status(ctx context.Context, orgID string) (rtStatus, error) {
	var st rtStatus
	err := a.do(ctx, "GET", orgID, "/m365/status", nil, &st)
	if err == nil && st.RealTime == nil {
		err = errors.New("GET /m365/status has no realTime")
	}
	return st, err
}

// waitHealthy waits until real-time sync reports its subscriptions healthy.
func (a *apiClient) waitHealthy(ctx context.Context, orgID string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := a.status(ctx, orgID)
		if err != nil {
			return err
		}
		if st.RealTime.Healthy {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: real-time sync not healthy after %s (last error %q)", orgID, limit, st.RealTime.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitSettled waits until no real-time round is pending and no run is running.
func (a *apiClient) waitSettled(ctx context.Context, orgID string, limit time.Duration, logf func(string, ...any)) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := a.status(ctx, orgID)
		if err != nil {
			return err
		}
		if !st.RealTime.Pending && st.Running == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not settled after %s (pending %v, waiting %q, running %v)", orgID, limit, st.RealTime.Pending, st.RealTime.Waiting, st.Running != nil)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// simClient is the simulated tenant's admin API.
type simClient struct {
	hc          *http.Client
	url, tenant string
}

func (s simClient) admin(ctx context.Context, method, path string, in, out any) error {
	return simAdmin(ctx, s.hc, method, s.url+path, in, out)
}

func (s simClient) patchUser(ctx context.Context, id string, patch map[string]any) error {
	return s.admin(ctx, "PATCH", "/_sim/tenants/"+s.tenant+"/users/"+id, patch, nil)
}

// graphRequests reads the tenant's Graph request counter (Stats.GraphByTenant) and the
// per-route counts.
func (s simClient) graphRequests(ctx context.Context) (int64, map[string]int64, error) {
	var st struct {
		Routes        map[string]int64 `json:"routes"`
		GraphByTenant map[string]int64 `json:"graphByTenant"`
	}
	if err := s.admin(ctx, "GET", "/_sim/stats", nil, &st); err != nil {
		return 0, nil, err
	}
	return st.GraphByTenant[strings.ToLower(s.tenant)], st.Routes, nil
}

// addRoutes adds to sum the Graph requests per route kind between two Stats.Routes snapshots.
func addRoutes(sum, before, after map[string]int64) {
	for k, v := range after {
		if d := v - before[k]; d > 0 && graphRouteKind(k) {
			sum[k] += d
		}
	}
}

// graphRouteKind mirrors the sim's Stats: route kinds that are not Graph.
func graphRouteKind(kind string) bool {
	if strings.HasPrefix(kind, "bot-") {
		return false
	}
	switch kind {
	case "token", "openid-configuration", "keys", "adminconsent", "authorize", "admin", "unhandled":
		return false
	}
	return true
}

func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// childPID finds this process's child named comm (the handler the host stand-in started); 0
// when there is none.
func childPID(comm string) int {
	comm = comm[:min(len(comm), 15)] // the kernel keeps 15 bytes of it
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		name, ppid, ok := parseStat(string(b))
		if ok && ppid == self && name == comm {
			return pid
		}
	}
	return 0
}

// parseStat reads comm and ppid from a /proc/<pid>/stat line ("pid (comm) state ppid …").
func parseStat(s string) (comm string, ppid int, ok bool) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return s[open+1 : end], ppid, err == nil
}

// vmHWM is a process's peak resident set in MB (0 when unknown).
func vmHWM(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return parseVmHWM(string(b))
}

// parseVmHWM reads VmHWM from /proc/<pid>/status text, in MB.
func parseVmHWM(status string) float64 {
	for line := range strings.SplitSeq(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return round3(kb / 1024)
			}
		}
	}
	return 0
}

// resetPeakRSS resets a process's VmHWM to its current RSS (Linux: "5" to clear_refs).
func resetPeakRSS(pid int) {
	if pid > 0 {
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	}
}
