// Command bench measures the stakeholder sync (the README's "Benchmarks", scripts/bench.sh sync)
// against a simulated Microsoft 365 tenant that runs in ANOTHER process (handler/cmd/m365sim), so
// this process's peak RSS is the sync's, not the simulated tenant's:
//
//	go run ./handler/cmd/bench -sim https://127.0.0.1:<port> -ca ca.pem -tenant <id> \
//	    -app-id <id> -app-secret <secret> -users 10000 [-tables <connection>] [-out file.json]
//
// It connects org "bench" to the tenant in a fresh set of tables (a test prefix, dropped at the
// end), runs the real dirsync Engine with the real Graph client over an in-process queue, and
// measures three things in one process:
//
//   - full:  a first run (full round) from start to its last step: wall time, Graph requests
//     (graph.Client.Requests), Table transactions (tablestore Stats().Requests).
//   - floor: the same work with no sync logic at all — read the same users/delta round with
//     the same Graph client (from no link to the deltaLink) and insert as many entities as the
//     full run left in the tables it writes (a stakeholder and its email index row per created
//     stakeholder, an Entra index row per one without a derived id, and the run's change-log
//     rows), copies of those very rows (a page of each kind read back after the run: reading
//     every row back would cost Azurite a scan of the table per page of 1000), into fresh
//     tables laid out as the sync's (Azurite's insert cost grows with the table) in
//     single-partition batches of at most 100. ratio = full_s / floor_s.
//   - delta: 1 % of the users changed through the simulated tenant's admin API, then a second
//     run (a delta round), timed and counted the same way. delta_ratio = delta_s / full_s.
//
// Progress goes to stderr; the last line on stdout is one JSON object of the figures. Peak RSS
// is VmHWM from /proc/self/status right after the full run (the floor that follows holds the
// run's entities in memory, which is not the sync's footprint).
//
// "bench mail …" and "bench teams …" are the outbound benchmarks (mail.go, teams.go): the same
// target flags and result line, their own figures. "bench webhook …" (webhook.go) drives the
// change-notification endpoint behind the host stand-in; it needs only Table Storage. "bench
// realtime …" (realtime.go) measures real-time stakeholder sync end to end: the handler behind
// the host stand-in, change notifications from the simulated tenant.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/gcpolicy"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

func main() {
	gcpolicy.Apply(os.Getenv) // the handler's policy: the bench runs its engine
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const org = "bench"

// target is what every benchmark runs against and where its result goes.
type target struct {
	simURL, caFile           string
	tenant, appID, appSecret string
	tables, out              string
	timeout                  time.Duration
	stderr                   io.Writer
}

// flagSet is benchmark name's flag set, printing to stderr (as the benchmark logs), with the
// target's flags declared.
func (t *target) flagSet(name string, stderr io.Writer) *flag.FlagSet {
	t.stderr = stderr
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	t.flags(fs)
	return fs
}

// flags declares the target's flags on fs.
func (t *target) flags(fs *flag.FlagSet) {
	fs.StringVar(&t.simURL, "sim", "", "simulated tenant base URL, e.g. https://127.0.0.1:1234 (required)")
	fs.StringVar(&t.caFile, "ca", "", "CA certificate PEM of the simulated tenant (required)")
	fs.StringVar(&t.tenant, "tenant", "", "tenant id (required)")
	fs.StringVar(&t.appID, "app-id", "", "client id (required)")
	fs.StringVar(&t.appSecret, "app-secret", "", "client secret (required)")
	t.runFlags(fs, 60*time.Minute)
}

// runFlags declares the flags that need no simulated tenant: the tables, the result file and
// the time limit.
func (t *target) runFlags(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&t.tables, "tables", os.Getenv("AZURITE_TABLES_CONNECTION"), "Table Storage connection string (default $AZURITE_TABLES_CONNECTION)")
	fs.StringVar(&t.out, "out", "", "also write the result, with date and machine, to this JSON file")
	fs.DurationVar(&t.timeout, "timeout", timeout, "give up after this long")
}

// parseArgs parses args into fs; a bad flag or a stray argument is a usage error.
func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}

// parse parses args into fs and checks the target's flags.
func (t *target) parse(fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if t.simURL == "" || t.caFile == "" || t.tenant == "" || t.appID == "" || t.appSecret == "" || t.tables == "" {
		return fmt.Errorf("%w: -sim, -ca, -tenant, -app-id, -app-secret and -tables (or AZURITE_TABLES_CONNECTION) are required", errUsage)
	}
	t.simURL = strings.TrimRight(t.simURL, "/")
	return nil
}

// measure runs bench with o within the target's time limit and reports its result.
func measure[O, R any](ctx context.Context, t *target, stdout io.Writer, bench func(context.Context, O) (R, error), o O) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	res, err := bench(ctx, o)
	if err != nil {
		return err
	}
	return t.report(stdout, res)
}

// logf writes one line of the benchmark's progress to stderr.
func (t *target) logf(format string, args ...any) {
	fmt.Fprintf(t.stderr, "bench: "+format+"\n", args...)
}

// graphClient is the real Graph client, signed in as the app to the simulated tenant.
func (t *target) graphClient(hc *http.Client) (*graph.Client, error) {
	creds := m365auth.New(m365auth.Config{ClientID: t.appID, ClientSecret: t.appSecret, AuthorityHost: t.simURL + "/", HTTPClient: hc})
	return graph.New(graph.Config{BaseURL: t.simURL + "/v1.0", Credentials: creds, HTTPClient: hc})
}

// report prints the result as one JSON line and writes it, with date and machine, to -out.
func (t *target) report(stdout io.Writer, res any) error {
	line, _ := json.Marshal(res)
	if t.out != "" {
		if err := writeResult(t.out, line); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(stdout, "%s\n", line)
	return err
}

type options struct {
	target
	users, groups          int
	cpuProfile, memProfile string
	mutate                 float64
	floorMode              string
}

// Result is the JSON line; the first keys are the benchmark contract's, in its order.
type Result struct {
	Bench                 string  `json:"bench"`
	Users                 int     `json:"users"`
	FullS                 float64 `json:"full_s"`
	FloorS                float64 `json:"floor_s"`
	Ratio                 float64 `json:"ratio"`
	DeltaS                float64 `json:"delta_s"`
	DeltaRatio            float64 `json:"delta_ratio"`
	GraphRequestsFull     int64   `json:"graph_requests_full"`
	GraphRequestsDelta    int64   `json:"graph_requests_delta"`
	TableTransactionsFull int64   `json:"table_transactions_full"`
	PeakRSSMB             float64 `json:"peak_rss_mb"`
	// GOGC and GOMemLimitMB are the garbage collector's policy the run had (gcpolicy, or the
	// environment's GOGC and GOMEMLIMIT): it moves both the full run and the floor.
	GOGC         int     `json:"gogc"`
	GOMemLimitMB float64 `json:"gomemlimit_mb"`
	// PerUserMS is full_s per user in milliseconds, to compare runs of different sizes;
	// FloorPerUserMS is floor_s per user, the same for the floor: how much of a change in
	// per_user_ms between sizes is the services' own (Azurite's insert cost grows with the table).
	PerUserMS      float64 `json:"per_user_ms"`
	FloorPerUserMS float64 `json:"floor_per_user_ms"`

	Groups                 int     `json:"groups"`
	FloorEntities          int     `json:"floor_entities"`
	FloorMethod            string  `json:"floor_method"`
	FloorFetchS            float64 `json:"floor_fetch_s"`
	FloorSequentialS       float64 `json:"floor_sequential_s"`
	FloorPipelinedS        float64 `json:"floor_pipelined_s"`
	FloorWriteS            float64 `json:"floor_write_s"`
	GraphRequestsFloor     int64   `json:"graph_requests_floor"`
	TableTransactionsFloor int64   `json:"table_transactions_floor"`
	TableTransactionsDelta int64   `json:"table_transactions_delta"`
	FullPages              int     `json:"full_pages"`
	FullProcessed          int     `json:"full_processed"`
	FullCreated            int     `json:"full_created"`
	FullChanges            int     `json:"full_changes"`
	FullSteps              int     `json:"full_steps"`
	DeltaMutated           int     `json:"delta_mutated"`
	DeltaProcessed         int     `json:"delta_processed"`
	DeltaUpdated           int     `json:"delta_updated"`
	DeltaDeactivated       int     `json:"delta_deactivated"`
	DeltaChanges           int     `json:"delta_changes"`

	// Where the wall time went: time spent waiting for answers (to the response headers) and
	// request bytes sent, per service, for the full run and the floor.
	FullGraphWaitS  float64 `json:"full_graph_wait_s"`
	FullTableWaitS  float64 `json:"full_table_wait_s"`
	FullTableBytes  int64   `json:"full_table_bytes"`
	FloorGraphWaitS float64 `json:"floor_graph_wait_s"`
	FloorTableWaitS float64 `json:"floor_table_wait_s"`
	FloorTableBytes int64   `json:"floor_table_bytes"`
	DeltaTableWaitS float64 `json:"delta_table_wait_s"`
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "mail":
			return runMail(ctx, args[1:], stdout, os.Stderr)
		case "teams":
			return runTeams(ctx, args[1:], stdout, os.Stderr)
		case "webhook":
			return runWebhook(ctx, args[1:], stdout, os.Stderr)
		case "realtime":
			return runRealtime(ctx, args[1:], stdout, os.Stderr)
		}
	}
	return runWith(ctx, args, stdout, os.Stderr)
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := o.flagSet("bench", stderr)
	fs.IntVar(&o.users, "users", 0, "users the simulated tenant was generated with (reported)")
	fs.IntVar(&o.groups, "groups", 0, "groups the simulated tenant was generated with (reported)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the full run to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile (after the full run) to this file")
	fs.Float64Var(&o.mutate, "mutate", 0.01, "fraction of users changed before the delta run")
	fs.StringVar(&o.floorMode, "floor", "auto", "how the floor is measured: both (sequential and pipelined, the faster counts), sequential, "+
		"pipelined, or auto (both below 500000 users, sequential from there: each floor run takes about as long as the full run)")
	if err := o.parse(fs, args); err != nil {
		return err
	}
	switch o.floorMode {
	case "auto":
		o.floorMode = "both"
		if o.users >= 500000 {
			o.floorMode = "sequential"
		}
	case "both", "sequential", "pipelined":
	default:
		return fmt.Errorf("%w: -floor %q: want both, sequential, pipelined or auto", errUsage, o.floorMode)
	}
	return measure(ctx, &o.target, stdout, bench, o)
}

// bench is one measurement: full, floor, delta.
func bench(ctx context.Context, o options) (Result, error) {
	res := Result{Bench: "sync", Users: o.users, Groups: o.groups}
	gogc, limit := gcpolicy.Current()
	res.GOGC, res.GOMemLimitMB = gogc, round3(float64(limit)/(1<<20))
	logf := o.logf

	hc, err := httpClient(o.caFile)
	if err != nil {
		return res, err
	}
	graphTimer := &timer{next: hc.Transport}
	hc = &http.Client{Transport: graphTimer}
	tableTimer := &timer{next: http.DefaultTransport, byKind: true}
	gc, err := o.graphClient(hc)
	if err != nil {
		return res, err
	}
	prefix := "testbench" + strconv.FormatInt(time.Now().UnixNano(), 36)
	store, err := tablestore.Open(ctx, tablestore.Config{ConnectionString: o.tables, Prefix: prefix,
		ClientOptions: azcore.ClientOptions{Transport: &http.Client{Transport: tableTimer}}})
	if err != nil {
		return res, err
	}
	defer dropTables(ctx, store, 2*time.Minute, logf, "dropping tables "+prefix+"*")
	orgKey, err := tablestore.NewOrg(org)
	if err != nil {
		return res, err
	}
	conns := connection.NewStore(store)
	now := time.Now().UTC()
	if _, err := conns.Put(ctx, orgKey, connection.Record{Status: connection.Connected, TenantID: o.tenant,
		Granted: []string{"User.Read.All", "GroupMember.Read.All"}, ConnectedAt: now, UpdatedAt: now}, ""); err != nil {
		return res, err
	}
	// The delta run deactivates about 0.2 % of the users (the mutation deletes and disables some):
	// past the default guard's 500 at a million users, which would hold the run for an admin's
	// approval. The bench measures the sync, so the guard lets everything through.
	settings := syncsettings.Defaults()
	settings.DeletionThreshold = syncsettings.Threshold{Percent: 100, Count: max(o.users, 1)}
	if _, err := syncsettings.NewStore(store).Put(ctx, orgKey, settings, ""); err != nil {
		return res, fmt.Errorf("sync settings: %w", err)
	}
	q := &queuetest.Queue{}
	engine := dirsync.New(dirsync.Config{
		Store: store, Directory: gc, Queue: q, Tenants: conns, Reauth: conns,
		Logger:     slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		StepBudget: 10 * time.Minute,
	})
	logf("tables %s*, tenant %s at %s, %d users", prefix, o.tenant, o.simURL, o.users)

	// (a) full
	stopProfile := func() {}
	if o.cpuProfile != "" {
		if stopProfile, err = startCPUProfile(o.cpuProfile); err != nil {
			return res, err
		}
		defer stopProfile()
	}
	gw0, tw0, tb0 := graphTimer.snapshot(tableTimer)
	kinds0 := tableTimer.kindsNow()
	full, err := measureRun(ctx, "full", engine, q, gc, store, orgKey, logf)
	gw1, tw1, tb1 := graphTimer.snapshot(tableTimer)
	logf("full: Table requests by kind: %s", tableTimer.kindsSince(kinds0))
	res.FullGraphWaitS, res.FullTableWaitS, res.FullTableBytes = secs(gw1-gw0), secs(tw1-tw0), tb1-tb0
	stopProfile()
	if err != nil {
		return res, err
	}
	if o.memProfile != "" {
		if err := writeHeapProfile(o.memProfile); err != nil {
			return res, err
		}
	}
	// The peak of the sync itself: read before the floor, which holds the run's entities in memory.
	res.PeakRSSMB = peakRSSMB()
	res.FullS, res.GraphRequestsFull, res.TableTransactionsFull = secs(full.elapsed), full.graph, full.tables
	if o.users > 0 {
		res.PerUserMS = round3(full.elapsed.Seconds() * 1000 / float64(o.users))
	}
	res.FullPages, res.FullProcessed, res.FullCreated, res.FullChanges, res.FullSteps =
		full.run.Pages, full.run.Processed, full.run.Created, full.run.Changes, full.steps

	// (b) floor: count what the full run left in the tables it writes, then do only that.
	ents, err := floorEntities(ctx, store, orgKey, full.run)
	if err != nil {
		return res, err
	}
	res.FloorEntities = len(ents)
	kinds0 = tableTimer.kindsNow()
	res.FloorMethod = "users/delta round read from no link to deltaLink with the same Graph client, then floor_entities inserts " +
		"(per created stakeholder its row and its email index row, an Entra index row per one without a derived id, and the run's change-log rows; " +
		"copies of the rows the run left, a page of each kind read back) " +
		"into fresh tables laid out as the sync's (stakeholder rows and index rows in one, change-log rows in another), single-partition batches of <=100; " +
		floorMethods[o.floorMode]
	gw0, tw0, tb0 = graphTimer.snapshot(tableTimer)
	floorStore := func(name string) (*tablestore.Store, error) {
		return tablestore.Open(ctx, tablestore.Config{ConnectionString: o.tables, Prefix: prefix + name,
			ClientOptions: azcore.ClientOptions{Transport: &http.Client{Transport: tableTimer}}})
	}
	var fl floorFigures
	for i, pipelined := range []bool{false, true} {
		if (pipelined && o.floorMode == "sequential") || (!pipelined && o.floorMode == "pipelined") {
			continue
		}
		f, err := floor(ctx, gc, floorStore, strconv.Itoa(i), orgKey, o.tenant, ents, full.run.Processed, pipelined, logf)
		if err != nil {
			return res, err
		}
		if pipelined {
			res.FloorPipelinedS = secs(f.total)
		} else {
			res.FloorSequentialS = secs(f.total)
		}
		if fl.total == 0 || f.total < fl.total {
			fl = f
		}
	}
	ents = nil
	logf("floor: Table requests by kind: %s", tableTimer.kindsSince(kinds0))
	gw1, tw1, tb1 = graphTimer.snapshot(tableTimer)
	res.FloorGraphWaitS, res.FloorTableWaitS, res.FloorTableBytes = secs(gw1-gw0), secs(tw1-tw0), tb1-tb0
	logf("waiting on services: full Graph %.2fs, Table %.2fs (%d request bytes); floor Graph %.2fs, Table %.2fs (%d request bytes)",
		res.FullGraphWaitS, res.FullTableWaitS, res.FullTableBytes, res.FloorGraphWaitS, res.FloorTableWaitS, res.FloorTableBytes)
	res.FloorS, res.FloorFetchS, res.FloorWriteS = secs(fl.total), secs(fl.fetch), secs(fl.write)
	res.GraphRequestsFloor, res.TableTransactionsFloor = fl.graph, fl.tables
	if res.FloorS > 0 {
		res.Ratio = round3(res.FullS / res.FloorS)
	}
	if o.users > 0 {
		res.FloorPerUserMS = round3(fl.total.Seconds() * 1000 / float64(o.users))
	}

	// (c) delta after changing a fraction of the users in the simulated tenant.
	changed, err := mutate(ctx, hc, o.simURL, o.tenant, o.mutate)
	if err != nil {
		return res, err
	}
	res.DeltaMutated = changed
	logf("delta: %d users changed in the simulated tenant", changed)
	_, tw0, _ = graphTimer.snapshot(tableTimer)
	kinds0 = tableTimer.kindsNow()
	delta, err := measureRun(ctx, "delta", engine, q, gc, store, orgKey, logf)
	if err != nil {
		return res, err
	}
	logf("delta: Table requests by kind: %s", tableTimer.kindsSince(kinds0))
	_, tw1, _ = graphTimer.snapshot(tableTimer)
	res.DeltaTableWaitS = secs(tw1 - tw0)
	if delta.run.Kind != "delta" {
		return res, fmt.Errorf("second run was a %s round, want a delta round", delta.run.Kind)
	}
	res.DeltaS, res.GraphRequestsDelta, res.TableTransactionsDelta = secs(delta.elapsed), delta.graph, delta.tables
	res.DeltaProcessed, res.DeltaUpdated, res.DeltaDeactivated, res.DeltaChanges =
		delta.run.Processed, delta.run.Updated, delta.run.Deactivated, delta.run.Changes
	if res.FullS > 0 {
		res.DeltaRatio = round3(res.DeltaS / res.FullS)
	}
	return res, nil
}

// measured is one run's figures.
type measured struct {
	run     dirsync.Run
	elapsed time.Duration
	graph   int64
	tables  int64
	steps   int
}

// measureRun starts a run, drains the queue, and reads the run. Progress is printed from
// counters only: reading the run while it runs would add Table transactions to the figures.
func measureRun(ctx context.Context, phase string, e *dirsync.Engine, q *queuetest.Queue, gc *graph.Client, store *tablestore.Store, orgKey tablestore.Org, logf func(string, ...any)) (measured, error) {
	g0, t0 := gc.Requests(), store.Stats().Requests
	start := time.Now()
	stop := progress(phase, start, gc, store, g0, t0, logf)
	r, started, err := e.Start(ctx, orgKey, dirsync.StartOptions{Trigger: "manual"})
	if err != nil {
		stop()
		return measured{}, fmt.Errorf("%s: start: %w", phase, err)
	}
	if !started {
		stop()
		return measured{}, fmt.Errorf("%s: run %s was already running", phase, r.ID)
	}
	logf("%s: run %s started (%s round)", phase, r.ID, r.Kind)
	steps, err := drain(ctx, q, e)
	elapsed := time.Since(start)
	stop()
	m := measured{elapsed: elapsed, graph: gc.Requests() - g0, tables: store.Stats().Requests - t0, steps: steps}
	if err != nil {
		return m, fmt.Errorf("%s: %w", phase, err)
	}
	if m.run, _, err = e.Run(ctx, orgKey, r.ID); err != nil {
		return m, fmt.Errorf("%s: read run: %w", phase, err)
	}
	run := m.run
	logf("%s: run %s %s in %.2fs: %d steps, %d pages, %d processed, %d created, %d updated, %d unchanged, %d deactivated, %d invalid, %d changes; %d Graph requests, %d Table transactions",
		phase, run.ID, run.State, secs(elapsed), steps, run.Pages, run.Processed, run.Created, run.Updated, run.Unchanged, run.Deactivated, run.Invalid, run.Changes, m.graph, m.tables)
	if run.State != dirsync.Succeeded {
		return m, fmt.Errorf("%s: run %s ended %s: %s", phase, run.ID, run.State, run.LastError)
	}
	return m, nil
}

// progress prints counters every 2 seconds until the returned stop is called.
func progress(phase string, start time.Time, gc *graph.Client, store *tablestore.Store, g0, t0 int64, logf func(string, ...any)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				logf("%s: %5.1fs elapsed, %d Graph requests (~pages), %d Table transactions",
					phase, secs(time.Since(start)), gc.Requests()-g0, store.Stats().Requests-t0)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// floorEntities returns the entities the full run left in the tables it writes, as many as it
// left and of their kinds: per created stakeholder its row and its email index row (every
// stakeholder has an address) and an Entra index row when its id is not derived from the
// object id, and the run's change-log rows. The entities are copies of rows read back, one
// query page of each kind, spread as the run wrote them (a user's rows, then its share of the
// change log). Reading every row back would cost a scan of the whole table per page of 1000
// in Azurite, hours at a million users.
func floorEntities(ctx context.Context, store *tablestore.Store, orgKey tablestore.Org, run dirsync.Run) ([]floorEntity, error) {
	sample := func(table, prefix string) ([]map[string]any, error) {
		var out []map[string]any
		for row, err := range tablestore.Query[map[string]any](ctx, store.Table(table), orgKey, tablestore.QueryOptions{KeyPrefix: prefix}) {
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", table, err)
			}
			e := row.Value
			for k := range e {
				if k == "PartitionKey" || k == "RowKey" || k == "Timestamp" || strings.Contains(k, "odata") {
					delete(e, k)
				}
			}
			out = append(out, e)
			if len(out) == tablestore.MaxPageSize {
				break
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no %s rows with prefix %q to copy", table, prefix)
		}
		return out, nil
	}
	stakeholders, err := sample(stakeholder.Table, "s-")
	if err != nil {
		return nil, err
	}
	emails, err := sample(stakeholder.Table, "m-")
	if err != nil {
		return nil, err
	}
	changes, err := sample(dirsync.ChangesTable, run.ID+".")
	if err != nil {
		return nil, err
	}
	var linked []map[string]any
	for _, st := range stakeholders {
		if id, _ := st["id"].(string); id != "" && !strings.HasPrefix(id, "e") {
			linked = append(linked, st) // no derived id: it has an Entra index row too
		}
	}
	n := run.Created
	out := make([]floorEntity, 0, 2*n+n*len(linked)/len(stakeholders)+run.Changes)
	logged := 0
	for i := range n {
		out = append(out, floorEntity{props: stakeholders[i%len(stakeholders)]}, floorEntity{props: emails[i%len(emails)]})
		if len(linked) > 0 && i*len(linked)/len(stakeholders) != (i+1)*len(linked)/len(stakeholders) {
			out = append(out, floorEntity{props: linked[i%len(linked)]})
		}
		for ; logged < run.Changes*(i+1)/max(n, 1); logged++ {
			out = append(out, floorEntity{changeLog: true, props: changes[logged%len(changes)]})
		}
	}
	for ; logged < run.Changes; logged++ {
		out = append(out, floorEntity{changeLog: true, props: changes[logged%len(changes)]})
	}
	return out, nil
}

// floorEntity is one entity for the floor to write, to the change-log table or to the
// stakeholders' (as the sync does: Azurite's cost of an insert grows with its table).
type floorEntity struct {
	changeLog bool
	props     map[string]any
}

// floorMethods ends floor_method: how the floor was measured.
var floorMethods = map[string]string{
	"both": "measured twice, all pages first then all writes, and writing as pages arrive with one fetched ahead (as the sync does); floor_s is the faster",
	"sequential": "measured once, all pages first then all writes (the faster way at 100 000 users and below; " +
		"at this size a second measurement would take as long again)",
	"pipelined": "measured once, writing as pages arrive with one fetched ahead (as the sync does)",
}

type floorFigures struct {
	fetch, write, total time.Duration
	graph, tables       int64
}

// floor reads the users/delta round and writes n plain entities: the least any sync of this
// tenant must do against the same services. Like the sync, it fetches the next page while it
// writes (the sync prefetches one page ahead), so the two are compared at the same overlap.
//
// Its table is in a store of its own (the bench's prefix and a digit, which no table name of
// the bench's own store starts with: dropping it drops no other table), dropped at the end, so
// that Azurite does not hold two more copies of the run's rows through the rest of the bench.
func floor(ctx context.Context, gc *graph.Client, open func(name string) (*tablestore.Store, error), name string, orgKey tablestore.Org, tenant string, ents []floorEntity, users int, pipelined bool, logf func(string, ...any)) (floorFigures, error) {
	n := len(ents)
	var f floorFigures
	store, err := open(name)
	if err != nil {
		return f, err
	}
	defer dropTables(ctx, store, 5*time.Minute, logf, "floor: dropping its table")
	g0, t0 := gc.Requests(), store.Stats().Requests
	start := time.Now()
	var pages <-chan int
	fetched := make(chan int, 1) // users per page, one page ahead, as the sync
	pages = fetched
	fetchErr := make(chan error, 1)
	go func() {
		defer close(fetched)
		link := ""
		for {
			page, err := gc.UsersDelta(ctx, tenant, link)
			if err != nil {
				fetchErr <- fmt.Errorf("floor: users/delta: %w", err)
				return
			}
			rows := len(page.Users)
			select {
			case fetched <- rows:
			case <-ctx.Done():
				fetchErr <- ctx.Err()
				return
			}
			if page.DeltaLink != "" {
				f.fetch = time.Since(start)
				fetchErr <- nil
				return
			}
			if page.NextLink == "" {
				fetchErr <- errors.New("floor: users/delta page has neither nextLink nor deltaLink")
				return
			}
			link = page.NextLink
		}
	}()
	if !pipelined {
		// All pages first, then all writes: no overlap at all.
		all := 0
		for rows := range pages {
			all += rows
		}
		if err := <-fetchErr; err != nil {
			return f, err
		}
		fetchErr <- nil
		seq := make(chan int, 1)
		seq <- all
		close(seq)
		pages = seq
	}
	// Two tables, as the sync's: stakeholder and index rows, and change-log rows.
	name0 := "benchfloor"
	if pipelined {
		name0 = "benchfloorp"
	}
	tables := [2]*tablestore.Table{store.Table(name0), store.Table(name0 + "c")}
	var ops [2][]tablestore.Op
	flush := func(k int) error {
		if len(ops[k]) == 0 {
			return nil
		}
		ws := time.Now()
		if err := tables[k].Batch(ctx, orgKey, ops[k]); err != nil {
			return fmt.Errorf("floor: batch: %w", err)
		}
		f.write += time.Since(ws)
		ops[k] = ops[k][:0]
		return nil
	}
	written, seen := 0, 0
	emit := func(upTo int) error {
		for ; written < upTo; written++ {
			k := 0
			if ents[written].changeLog {
				k = 1
			}
			ops[k] = append(ops[k], tablestore.InsertOp(fmt.Sprintf("e%08d", written), ents[written].props))
			if len(ops[k]) == 100 {
				if err := flush(k); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for rows := range pages {
		seen += rows
		// The sync's entities, spread over the round as its pages arrive.
		if err := emit(n * seen / max(users, 1)); err != nil {
			return f, err
		}
	}
	if err := <-fetchErr; err != nil {
		return f, err
	}
	if err := emit(n); err != nil {
		return f, err
	}
	for k := range ops {
		if err := flush(k); err != nil {
			return f, err
		}
	}
	f.total = time.Since(start)
	f.graph, f.tables = gc.Requests()-g0, store.Stats().Requests-t0
	logf("floor: %.2fs (fetch %.2fs, writing %.2fs, overlapped), %d entities, %d Graph requests, %d Table transactions",
		secs(f.total), secs(f.fetch), secs(f.write), n, f.graph, f.tables)
	return f, nil
}

// mutate changes a fraction of the tenant's users through the simulated tenant's admin API.
func mutate(ctx context.Context, hc *http.Client, simURL, tenant string, fraction float64) (int, error) {
	body, _ := json.Marshal(map[string]any{"fraction": fraction, "seed": 7})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, simURL+"/_sim/tenants/"+tenant+"/mutate", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("mutate: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("mutate: %d %s (is the simulated tenant's admin API on?)", resp.StatusCode, b)
	}
	var out struct {
		Changed int `json:"changed"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, fmt.Errorf("mutate: %w", err)
	}
	return out.Changed, nil
}

// drain runs the queue's steps until it is empty, waiting for scheduled steps in real time and
// redelivering failed ones (Service Bus semantics, queuetest).
func drain(ctx context.Context, q *queuetest.Queue, e *dirsync.Engine) (steps int, err error) {
	return q.Drain(ctx, func(ctx context.Context, d queuetest.Delivery) error {
		return e.Step(ctx, d.Body, d.Count)
	}, queuetest.DrainOptions{Wait: queuetest.WaitRealTime, FailOnDeadLetter: true})
}

// timer is a RoundTripper that adds up the time to each response's headers and the request
// bytes sent, in all and, with byKind, by kind of Table Storage request (which says where a
// run's time with the store goes).
type timer struct {
	next   http.RoundTripper
	byKind bool
	wait   atomic.Int64 // nanoseconds
	bytes  atomic.Int64
	mu     sync.Mutex
	kinds  map[string]kindFigures
}

// kindFigures is how many requests of a kind were sent and how long they waited in all.
type kindFigures struct {
	n    int64
	wait time.Duration
}

func (t *timer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.ContentLength > 0 {
		t.bytes.Add(req.ContentLength)
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	d := time.Since(start)
	t.wait.Add(int64(d))
	if !t.byKind {
		return resp, err
	}
	kind := requestKind(req)
	t.mu.Lock()
	if t.kinds == nil {
		t.kinds = map[string]kindFigures{}
	}
	k := t.kinds[kind]
	k.n++
	k.wait += d
	t.kinds[kind] = k
	t.mu.Unlock()
	return resp, err
}

// requestKind names a Table Storage request by what it asks of the service.
func requestKind(req *http.Request) string {
	switch path := req.URL.Path; {
	case strings.HasSuffix(path, "$batch"):
		return "transaction"
	case req.Method == http.MethodGet && strings.HasSuffix(path, ")") && strings.Contains(path, "RowKey="):
		return "point read"
	case req.Method == http.MethodGet:
		return "query"
	default:
		return strings.ToLower(req.Method) + " entity"
	}
}

// kindsSince describes the requests by kind sent since before (a copy taken by kinds).
func (t *timer) kindsSince(before map[string]kindFigures) string {
	now := t.kindsNow()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(now)) {
		n, w := now[k].n-before[k].n, now[k].wait-before[k].wait
		if n == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d (%.2fs, %.2f ms each)", k, n, w.Seconds(), w.Seconds()*1000/float64(n))
	}
	return b.String()
}

// kindsNow copies the figures by kind.
func (t *timer) kindsNow() map[string]kindFigures {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]kindFigures, len(t.kinds))
	maps.Copy(out, t.kinds)
	return out
}

// snapshot returns g's wait, and tab's wait and bytes.
func (g *timer) snapshot(tab *timer) (graphWait, tableWait time.Duration, tableBytes int64) {
	return time.Duration(g.wait.Load()), time.Duration(tab.wait.Load()), tab.bytes.Load()
}

// httpClient trusts the simulated tenant's CA.
func httpClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// peakRSSMB is this process's VmHWM (peak resident set) in MB; 0 where there is none.
func peakRSSMB() float64 { return vmHWM(os.Getpid()) }

// dropTables drops store's tables even once ctx has ended (the bench cleans up after itself),
// giving up after limit, and logs a failure after what.
func dropTables(ctx context.Context, store *tablestore.Store, limit time.Duration, logf func(string, ...any), what string) {
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	defer dcancel()
	if err := store.DropTables(dctx); err != nil {
		logf("%s: %v", what, err)
	}
}

// startCPUProfile writes a CPU profile of this process to path until stop is called (stop may
// be called more than once).
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return sync.OnceFunc(func() { pprof.StopCPUProfile(); f.Close() }), nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.WriteHeapProfile(f)
}

// writeResult writes the figures with the date and the machine to path.
func writeResult(path string, line []byte) error {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		return err
	}
	m["date"] = time.Now().UTC().Format(time.RFC3339)
	m["machine"] = map[string]any{"nproc": runtime.NumCPU(), "cpu": cpuModel(), "go": runtime.Version(), "os": runtime.GOOS + "/" + runtime.GOARCH}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func secs(d time.Duration) float64 { return round3(d.Seconds()) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
