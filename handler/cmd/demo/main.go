// Command demo runs the integration end to end on this machine: a simulated Microsoft 365 tenant
// with generated users, the local Functions host stand-in running the real handler binary, and
// Table Storage in Azurite (AZURITE_TABLES_CONNECTION, started by scripts/demo.sh). It connects
// a demo org, runs a full stakeholder sync, changes 1 % of the tenant, runs a delta sync, sends a
// notification by mail and a survey invitation in Teams, talks to the bot, and
// prints each run's summary and the sync history.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/leapchange/m365/handler/internal/devhost"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/queue"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// The demo's sender mailbox pool and its per-mailbox rate (Exchange Online's 30 a minute,
// scaled up so the send takes seconds).
var senders = []string{"notify@fabrikam.example", "notify2@fabrikam.example"}

const demoMailPerMinute = 600

const (
	tenantID = "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b"
	clientID = "6d0a4f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
	org      = "demo"
)

// options are the demo's flags.
type options struct {
	root           string
	users, groups  int
	invalid        int
	handler        string
	timeout        time.Duration
	tablesConn     string
	verboseHandler bool
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.root, "root", ".", "repository root (host.json, functions/)")
	fs.IntVar(&o.users, "users", 5000, "users in the generated tenant")
	fs.IntVar(&o.groups, "groups", 50, "groups in the generated tenant")
	fs.IntVar(&o.invalid, "invalid-users", 3, "users with incomplete profiles")
	fs.StringVar(&o.handler, "handler", "", "prebuilt handler binary (default: build ./handler)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.BoolVar(&o.verboseHandler, "v", false, "show the handler's own log lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.tablesConn = getenv("AZURITE_TABLES_CONNECTION"); o.tablesConn == "" {
		return errors.New("AZURITE_TABLES_CONNECTION is not set: run scripts/demo.sh, which starts Azurite")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return demo(ctx, o, stdout, stderr)
}

func demo(ctx context.Context, o options, out, errOut io.Writer) error {
	step := func(format string, args ...any) { fmt.Fprintf(out, "\n== "+format+"\n", args...) }
	work, err := os.MkdirTemp("", "leap-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	secret := randomHex(16)
	step("Simulated Microsoft 365 tenant: %d users in %d groups", o.users, o.groups)
	sim := m365sim.New(m365sim.Options{Admin: true})
	sim.RegisterApp(clientID, secret)
	sim.AddTenant(tenantID, "fabrikam.example")
	if err := sim.Generate(tenantID, m365sim.GenSpec{Users: o.users, Groups: o.groups, Depth: 2, Seed: 42, InvalidUsers: o.invalid}); err != nil {
		return err
	}
	// Two notification mailboxes; Exchange's 30 mails a minute per mailbox are scaled up 20×
	// here (in the simulated tenant and in MAIL_LIMITS alike) so the demo's send takes seconds.
	sim.SetMailLimits(m365sim.MailLimits{PerMinute: demoMailPerMinute, DailyRecipients: 10_000})
	for _, m := range senders {
		if _, err := sim.AddUser(tenantID, m365sim.User{DisplayName: "Change notifications", Mail: m, UserPrincipalName: m, AccountEnabled: true}); err != nil {
			return err
		}
	}
	if err := sim.Start(); err != nil {
		return err
	}
	defer sim.Close()
	caFile := filepath.Join(work, "sim-ca.pem")
	if err := os.WriteFile(caFile, sim.CACertPEM(), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "tenant %s at %s\n", tenantID, sim.URL())

	prefix := "demo" + strconv.FormatInt(time.Now().Unix(), 36) // this run's own tables
	// The host's address must be known before it starts: it is the consent redirect URI.
	port, err := devhost.FreePort()
	if err != nil {
		return err
	}
	publicURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	sim.RegisterRedirectURI(clientID, publicURL+"/api/consent/callback")
	// Mail.ReadBasic.All (optional) lets a send whose outcome was lost be checked in Sent Items.
	if err := sim.SetAppPermissions(clientID, append([]string{"User.Read.All", "GroupMember.Read.All", "Mail.Send", "Mail.ReadBasic.All", "ChannelMessage.Read.All"}, teamsPermissions...)...); err != nil {
		return err
	}
	// Teams: the bot's registration (its messaging endpoint is the host's BotMessages), the
	// Leap Change app in the tenant's app catalog, a few teams.
	botSecret := randomHex(16)
	sim.RegisterBot(botAppID, botTenant, botSecret, publicURL+"/api/messages")
	catalogID, err := sim.PublishTeamsApp(tenantID, botAppID)
	if err != nil {
		return err
	}
	if _, err := sim.GenerateTeams(tenantID, 4, 42); err != nil {
		return err
	}
	if err := sim.SetSignedInTenant(tenantID); err != nil {
		return err
	}
	// Our app registration emits the signed-in user's directory roles (wids) in ID tokens.
	if err := sim.SetGroupMembershipClaims(clientID, "DirectoryRole"); err != nil {
		return err
	}

	step("Starting the local Functions host stand-in with the handler")
	handlerOut := io.Discard
	if o.verboseHandler {
		handlerOut = errOut
	}
	handlerPath := o.handler
	if handlerPath == "" {
		fmt.Fprintln(out, "building ./handler …")
		if handlerPath, err = devhost.BuildHandler(ctx, o.root, work, errOut); err != nil {
			return err
		}
	}
	key := randomHex(12)
	host, err := devhost.New(devhost.Config{
		Root: o.root, Port: port, HandlerPath: handlerPath, Env: append(os.Environ(), "SSL_CERT_FILE="+caFile),
		Settings: map[string]string{
			"FUNCTIONS_WORKER_RUNTIME": "custom",
			"TablesConnection":         o.tablesConn,
			"TABLE_PREFIX":             prefix,
			"ServiceBusConnection":     "devhost",
			"M365_CLIENT_ID":           clientID,
			"M365_CLIENT_SECRET":       secret,
			"GRAPH_BASE_URL":           sim.GraphURL(),
			"AZURE_AUTHORITY_HOST":     sim.URL() + "/",
			"BOT_APP_ID":               botAppID,
			"BOT_APP_SECRET":           botSecret,
			"BOT_TENANT_ID":            botTenant,
			"BOT_OPENID_METADATA_URL":  sim.BotOpenIDMetadataURL(),
			"BOT_TRUSTED_HOSTS":        strings.TrimPrefix(sim.URL(), "https://"),
			"BOT_SERVICE_URL":          sim.BotServiceURL(), // the simulated Teams' Bot Connector
			"GRAPH_NOTIFY_KEYS_URL":    sim.URL() + "/common/discovery/v2.0/keys",
			"PUBLIC_BASE_URL":          publicURL,
			"LEAP_APP_URL":             "http://localhost:3000/settings/integrations",
			"STATE_SIGNING_KEY":        randomHex(32),
			"DEVHOST_FUNCTION_KEY":     key,
			"MAIL_LIMITS":              fmt.Sprintf("%d/10000", demoMailPerMinute),
		},
		Logger: slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Stdout: handlerOut, Stderr: errOut,
	})
	if err != nil {
		return err
	}
	if err := host.Start(ctx); err != nil {
		return err
	}
	defer host.Close()
	go host.Serve(ctx)
	fmt.Fprintf(out, "host at %s\n", host.URL())
	if err := printHealth(ctx, host.URL(), out); err != nil {
		return err
	}
	api := &client{base: host.URL() + "/api/orgs/" + org, key: key}

	step("Registering org %q", org)
	var registered map[string]any
	if err := api.do(ctx, "PUT", "", map[string]any{"displayName": "Demo Org", "timeZone": "Europe/Berlin"}, &registered); err != nil {
		return err
	}
	fmt.Fprintf(out, "org %v (%v), default time zone %v\n", registered["id"], registered["displayName"], registered["timeZone"])

	step("Connecting org %q to Microsoft 365 (admin consent)", org)
	if err := connect(ctx, api, sim, out); err != nil {
		return err
	}

	step("Sync settings and a stakeholder that already exists in Leap Change")
	var settings map[string]any
	// Group sync mirrors the top-level groups (nested members included: every generated user)
	// as stakeholder groups; the notification below goes to one of them.
	topLevel := topLevelGroups(sim)
	if err := api.do(ctx, "PUT", "/m365/settings", map[string]any{
		"frequency": "twice_daily", "timeZone": "Europe/Berlin", "mergeStrategy": "entra_wins",
		"groupFilter": topLevel, "groupSync": true, "groupType": "functional",
		"deletionThreshold": map[string]int{"percent": 20, "count": 500},
	}, &settings); err != nil {
		return err
	}
	fmt.Fprintf(out, "settings: %v twice daily in %v, %v\n", settings["frequency"], settings["timeZone"], settings["mergeStrategy"])
	users := sim.Users(tenantID)
	known := users[0]
	var manual map[string]any
	if err := api.do(ctx, "POST", "/stakeholders", map[string]any{
		"firstName": known.GivenName, "lastName": known.Surname, "email": strings.ToUpper(known.Mail), "influence": "high",
	}, &manual); err != nil {
		return err
	}
	fmt.Fprintf(out, "manual stakeholder %v %v <%v>, influence high\n", manual["firstName"], manual["lastName"], manual["email"])

	step("Full sync")
	full, err := syncAndPrint(ctx, api, out)
	if err != nil {
		return err
	}
	var linked map[string]any
	if err := api.do(ctx, "GET", "/stakeholders/"+manual["id"].(string), nil, &linked); err != nil {
		return err
	}
	fmt.Fprintf(out, "the manual stakeholder was linked, not duplicated: source %v, externalId %v, influence kept: %v\n", linked["source"], linked["externalId"], linked["influence"])

	step("Both sides change the same field; 1 %% of the tenant changes in Entra")
	target := users[1]
	targetID, err := api.findSynced(ctx, target.ID)
	if err != nil {
		return err
	}
	if err := api.editRole(ctx, targetID, "Change lead (set in Leap Change)"); err != nil {
		return err
	}
	if err := sim.UpdateUser(tenantID, target.ID, func(u *m365sim.User) { u.JobTitle = "Head of Operations (set in Entra)" }); err != nil {
		return err
	}
	changed, err := sim.MutateRandom(tenantID, 0.01, 7)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s's role edited in Leap Change and in Entra; %d other users changed in Entra\n", target.DisplayName, changed)

	step("Delta sync")
	delta, err := syncAndPrint(ctx, api, out)
	if err != nil {
		return err
	}
	if err := printChanges(ctx, api, out, delta.ID, 6); err != nil {
		return err
	}

	step("Real-time sync: changes in Entra reach the stakeholders without a sync being started")
	realTimeOK, err := realTime(ctx, api, sim, settings, out)
	if err != nil {
		return err
	}

	// A notification that came in while the real-time round ran leaves another round pending:
	// let it run before a manual run asks for the org.
	if err := settle(ctx, api, host.Queues()); err != nil {
		return err
	}
	step("Dry run: what would a group filter on one group change?")
	groups := sim.Groups(tenantID)
	settings["groupFilter"] = []string{groups[0].ID}
	delete(settings, "updatedAt")
	if err := api.do(ctx, "PUT", "/m365/settings", settings, &settings); err != nil {
		return err
	}
	preview, err := syncOnce(ctx, api, out, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "filter on %q: %d stakeholders would be deactivated (out of the filter); nothing was written\n", groups[0].DisplayName, preview.PendingDeactivations)
	settings["groupFilter"] = topLevel
	if err := api.do(ctx, "PUT", "/m365/settings", settings, &settings); err != nil {
		return err
	}

	step("A notification by mail to a synced stakeholder group")
	sent, err := notify(ctx, api, sim, out)
	if err != nil {
		return err
	}

	step("Microsoft Teams: the bot, a survey card, and questions to the bot")
	teamsOK, asker, err := teams(ctx, api, sim, catalogID, out)
	if err != nil {
		return err
	}

	step("Channel monitoring: keywords in a Teams channel become insights, and the watchers hear of them")
	monitorOK, err := monitorChannel(ctx, api, sim, asker[0], asker[1], out)
	if err != nil {
		return err
	}

	step("Sync history")
	// The filter changes above, and any notification since, may have started a real-time round:
	// the history and the queue counts are read once it has ended.
	if err := settle(ctx, api, host.Queues()); err != nil {
		return err
	}
	var hist struct{ Runs []runView }
	if err := api.do(ctx, "GET", "/m365/sync/runs", nil, &hist); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tKIND\tTRIGGER\tDRY\tSTATE\tSECONDS\tPROCESSED\tCREATED\tUPDATED\tCONFLICTS\tDEACTIVATED\tERRORS")
	for _, r := range hist.Runs {
		seconds := "-" // not finished
		if !r.FinishedAt.IsZero() {
			seconds = fmt.Sprintf("%.2f", r.FinishedAt.Sub(r.StartedAt).Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", r.ID, r.Kind, r.Trigger, r.DryRun, r.State, seconds,
			r.Processed, r.Created, r.Updated, r.Conflicts, r.Deactivated, r.ErrorCount)
	}
	tw.Flush()
	var status struct {
		LastSync      time.Time `json:"lastSync"`
		RecordsSynced int       `json:"recordsSynced"`
		NextSync      time.Time `json:"nextScheduledSync"`
	}
	if err := api.do(ctx, "GET", "/m365/status", nil, &status); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nstatus: last sync %s, %d records synced, next scheduled sync %s\n", status.LastSync.Format(time.RFC3339), status.RecordsSynced, status.NextSync.Format(time.RFC3339))
	st := sim.Stats()
	fmt.Fprintf(out, "\nGraph requests served by the simulated tenant: %d\n", st.Graph)
	counts := host.Queues().Counts()
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(out, "queue %-15s %+v\n", name, counts[name])
	}
	if full.State != "succeeded" || delta.State != "succeeded" {
		return fmt.Errorf("a sync did not succeed: full %s, delta %s", full.State, delta.State)
	}
	if !realTimeOK {
		return errors.New("the real-time step did not end as expected")
	}
	if !sent {
		return errors.New("the notification did not end as expected")
	}
	if !teamsOK {
		return errors.New("the Teams step did not end as expected")
	}
	if !monitorOK {
		return errors.New("the monitoring step did not end as expected")
	}
	fmt.Fprintln(out, "\nDEMO OK")
	return nil
}

// connect runs the admin-consent flow as an admin's browser would: the API's consent URL, the
// simulated Entra consent page (the admin approves), and its redirect to our callback, which
// proves consent and sends the browser back to the web app with a one-time ticket; then, as the
// web app does inside the signed-in Leap user's session, it confirms the ticket for the org.
func connect(ctx context.Context, api *client, sim *m365sim.Server, out io.Writer) error {
	var started struct {
		ConsentURL string `json:"consentUrl"`
	}
	var err error
	if err = api.do(ctx, "POST", "/m365/connect", map[string]any{}, &started); err != nil {
		return err
	}
	fmt.Fprintf(out, "consent URL: %s…\n", started.ConsentURL[:min(len(started.ConsentURL), 90)])
	browser := sim.HTTPClient()
	browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hop := func(u string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return "", err
		}
		resp, err := browser.Do(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return "", fmt.Errorf("GET %s: %d, want a redirect", u, resp.StatusCode)
		}
		return resp.Header.Get("Location"), nil
	}
	// Consent page → our callback → the administrator's sign-in → our callback → the web app.
	next := started.ConsentURL
	for range 4 {
		if next, err = hop(next); err != nil {
			return err
		}
		if strings.HasPrefix(next, "http://localhost:3000/") {
			break
		}
	}
	back, err := url.Parse(next)
	if err != nil {
		return err
	}
	q := back.Query()
	ticket := q.Get("ticket")
	if q.Get("m365") != "confirm" || ticket == "" {
		return fmt.Errorf("the callback sent the admin back to %s, want a ticket to confirm", next)
	}
	// Single use, but still not for printing.
	fmt.Fprintf(out, "admin approved and signed in; the callback sent the admin back to %s\n", strings.Replace(next, ticket, "<one-time ticket>", 1))
	// The web app checks the redirect's org is its signed-in user's org, then confirms.
	var status struct {
		Status             string   `json:"status"`
		TenantID           string   `json:"tenantId"`
		GrantedPermissions []string `json:"grantedPermissions"`
		MissingPermissions []string `json:"missingPermissions"`
	}
	if err := api.do(ctx, "POST", "/m365/connect/confirm", map[string]any{"ticket": ticket}, &status); err != nil {
		return fmt.Errorf("confirming the connection: %w", err)
	}
	fmt.Fprintf(out, "the web app confirmed the ticket for org %s (POST /m365/connect/confirm)\n", q.Get("org"))
	fmt.Fprintf(out, "connection: %s to tenant %s; granted %v; missing %v\n", status.Status, status.TenantID, status.GrantedPermissions, status.MissingPermissions)
	if status.Status != "connected" {
		return fmt.Errorf("connection is %s, not connected", status.Status)
	}
	return nil
}

// runView is the part of a run the demo prints.
type runView struct {
	ID          string    `json:"id"`
	State       string    `json:"state"`
	Kind        string    `json:"kind"`
	Trigger     string    `json:"trigger"`
	StartedAt   time.Time `json:"startedAt"`
	FinishedAt  time.Time `json:"finishedAt"`
	Pages       int       `json:"pages"`
	Processed   int       `json:"processed"`
	DryRun      bool      `json:"dryRun"`
	Created     int       `json:"created"`
	Updated     int       `json:"updated"`
	Unchanged   int       `json:"unchanged"`
	Conflicts   int       `json:"conflicts"`
	Skipped     int       `json:"skipped"`
	Linked      int       `json:"linked"`
	Deactivated int       `json:"deactivated"`
	Reactivated int       `json:"reactivated"`
	Invalid     int       `json:"invalid"`
	Excluded    struct {
		Deleted     int `json:"deleted"`
		OutOfFilter int `json:"outOfFilter"`
		Disabled    int `json:"disabled"`
	} `json:"excluded"`
	Throttled            int    `json:"throttled"`
	ErrorCount           int    `json:"errorCount"`
	PendingDeactivations int    `json:"pendingDeactivations"`
	LastError            string `json:"lastError"`
	Errors               []struct {
		Code, Object, Detail, Hint string
	} `json:"errors"`
}

// settleTimeout bounds settle: a real-time round of the demo's few changes ends in seconds,
// and a nudge that comes to nothing fires within the debounce (15 s).
const settleTimeout = 2 * time.Minute

// settle waits until no sync run of the org is running, no real-time round is pending, and the
// sync-jobs queue holds nothing (a nudge may outlive the round it asked for: it then finds the
// org clean and does nothing). With real-time sync on, a notification that arrives while a round
// runs leaves the org dirty and another round starts after the debounce: the demo's next steps
// wait for it rather than race it.
func settle(ctx context.Context, api *client, queues *devhost.Queues) error {
	deadline := time.Now().Add(settleTimeout)
	for {
		var hist struct{ Runs []runView }
		if err := api.do(ctx, "GET", "/m365/sync/runs", nil, &hist); err != nil {
			return err
		}
		status, err := api.realTimeStatus(ctx)
		if err != nil {
			return err
		}
		running := ""
		for _, r := range hist.Runs {
			if r.State == "running" {
				running = r.ID
			}
		}
		jobs := queues.Counts()[queue.SyncJobs]
		if running == "" && !status.Pending && jobs.Active+jobs.Scheduled+jobs.Locked == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the org's sync has not settled after %v: running run %q, real-time round pending %v (waiting: %q), sync-jobs %+v",
				settleTimeout, running, status.Pending, status.Waiting, jobs)
		}
		if err := pause(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// pause waits d, or less if ctx ends first: the demo's polling loops.
func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// syncOnce starts a sync through the API and follows it to its end, printing progress.
func syncOnce(ctx context.Context, api *client, out io.Writer, dryRun bool) (runView, error) {
	var started struct {
		RunID string `json:"runId"`
	}
	if err := api.do(ctx, "POST", "/m365/sync", map[string]any{"dryRun": dryRun}, &started); err != nil {
		return runView{}, err
	}
	fmt.Fprintf(out, "run %s accepted\n", started.RunID)
	last := -1
	for {
		var r runView
		if err := api.do(ctx, "GET", "/m365/sync/runs/"+started.RunID, nil, &r); err != nil {
			return runView{}, err
		}
		if r.Processed != last {
			fmt.Fprintf(out, "  %s: %d users processed (%d pages)\n", r.State, r.Processed, r.Pages)
			last = r.Processed
		}
		if r.State != "running" {
			return r, nil
		}
		if err := pause(ctx, 200*time.Millisecond); err != nil {
			return runView{}, fmt.Errorf("run %s still running: %w", started.RunID, err)
		}
	}
}

// syncAndPrint runs a sync to its end and prints its summary.
func syncAndPrint(ctx context.Context, api *client, out io.Writer) (runView, error) {
	r, err := syncOnce(ctx, api, out, false)
	if err != nil {
		return r, err
	}
	return r, printRun(out, r)
}

// printRun prints a run's summary, in which every processed user has exactly one column.
func printRun(out io.Writer, r runView) error {
	x := r.Excluded
	fmt.Fprintf(out, "run %s: %s %s sync in %.2fs — %d processed: %d created, %d updated, %d unchanged, %d reactivated, %d skipped, %d invalid, %d excluded (%d disabled and never synced, %d deleted, %d outside the group filter)\n",
		r.ID, r.State, r.Kind, r.FinishedAt.Sub(r.StartedAt).Seconds(), r.Processed, r.Created, r.Updated, r.Unchanged, r.Reactivated, r.Skipped, r.Invalid,
		x.Disabled+x.Deleted+x.OutOfFilter, x.Disabled, x.Deleted, x.OutOfFilter)
	fmt.Fprintf(out, "  also: %d conflicts resolved, %d deactivated, %d linked by email, %d throttled requests\n", r.Conflicts, r.Deactivated, r.Linked, r.Throttled)
	for i, e := range r.Errors {
		if i == 5 {
			fmt.Fprintf(out, "  … and %d more errors\n", len(r.Errors)-5)
			break
		}
		fmt.Fprintf(out, "  error %s on %s: %s (%s)\n", e.Code, e.Object, e.Detail, e.Hint)
	}
	if r.LastError != "" {
		fmt.Fprintf(out, "  last error: %s\n", r.LastError)
	}
	if n := r.Processed - (r.Created + r.Updated + r.Unchanged + r.Reactivated + r.Skipped + r.Invalid + x.Disabled + x.Deleted + x.OutOfFilter); n != 0 {
		return fmt.Errorf("run %s: %d of %d processed users are in no column of its summary", r.ID, n, r.Processed)
	}
	return nil
}

// findSynced pages through the synced stakeholders for the one linked to an Entra user, as the
// web app would: list order follows stakeholder ids, not sync order.
func (c *client) findSynced(ctx context.Context, externalID string) (string, error) {
	after := ""
	for {
		var page struct {
			Stakeholders []struct {
				ID         string `json:"id"`
				ExternalID string `json:"externalId"`
			} `json:"stakeholders"`
			Next string `json:"next"`
		}
		if err := c.do(ctx, "GET", "/stakeholders?limit=1000&source=entra&after="+url.QueryEscape(after), nil, &page); err != nil {
			return "", err
		}
		for _, st := range page.Stakeholders {
			if st.ExternalID == externalID {
				return st.ID, nil
			}
		}
		if page.Next == "" {
			return "", fmt.Errorf("user %s was not synced", externalID)
		}
		after = page.Next
	}
}

// printChanges shows the first entries of a run's change log, with old and new values.
func printChanges(ctx context.Context, api *client, out io.Writer, runID string, n int) error {
	var detail struct {
		ChangeLog []struct {
			Action, Name, Reason string
			Fields               []struct {
				Field, Old, New, Entra, Leap string
				Base                         *string
				Conflict                     bool
			}
		} `json:"changeLog"`
	}
	if err := api.do(ctx, "GET", fmt.Sprintf("/m365/sync/runs/%s?changesLimit=%d", runID, n), nil, &detail); err != nil {
		return err
	}
	for _, c := range detail.ChangeLog {
		fmt.Fprintf(out, "  %-11s %s %s\n", c.Action, c.Name, c.Reason)
		for _, f := range c.Fields {
			if f.Conflict {
				base := "none"
				if f.Base != nil {
					base = fmt.Sprintf("%q", *f.Base)
				}
				fmt.Fprintf(out, "      %s: Entra %q vs Leap %q → %q (base %s)\n", f.Field, f.Entra, f.Leap, f.New, base)
				continue
			}
			fmt.Fprintf(out, "      %s: %q → %q\n", f.Field, f.Old, f.New)
		}
	}
	return nil
}

// editRole changes a stakeholder's role the way the web app does: read, then PUT with If-Match.
func (c *client) editRole(ctx context.Context, id, role string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/stakeholders/"+id, nil)
	if err != nil {
		return err
	}
	req.Header.Set("x-functions-key", c.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	var st map[string]any
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		return err
	}
	body := map[string]any{}
	for _, k := range []string{"firstName", "lastName", "email", "phone", "department", "location", "influence", "supportLevel", "interest"} {
		body[k] = st[k]
	}
	body["role"] = role
	b, _ := json.Marshal(body)
	put, err := http.NewRequestWithContext(ctx, "PUT", c.base+"/stakeholders/"+id, bytes.NewReader(b))
	if err != nil {
		return err
	}
	put.Header.Set("x-functions-key", c.key)
	put.Header.Set("Content-Type", "application/json")
	put.Header.Set("If-Match", resp.Header.Get("ETag"))
	presp, err := http.DefaultClient.Do(put)
	if err != nil {
		return err
	}
	defer presp.Body.Close()
	if presp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(presp.Body)
		return fmt.Errorf("PUT stakeholder: %d %s", presp.StatusCode, msg)
	}
	return nil
}

// client calls the org's API through the host stand-in with the function key.
type client struct{ base, key string }

func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("x-functions-key", c.key)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// printHealth shows the anonymous Health function's answer, as an availability test sees it.
func printHealth(ctx context.Context, base string, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/api/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct {
		Status  string
		Version string
		Checks  []struct {
			Name      string
			Healthy   bool
			LatencyMs int64
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /api/health: %d %v", resp.StatusCode, err)
	}
	fmt.Fprintf(out, "health: %s, version %s;", h.Status, h.Version)
	for _, c := range h.Checks {
		fmt.Fprintf(out, " %s healthy=%v (%d ms)", c.Name, c.Healthy, c.LatencyMs)
	}
	fmt.Fprintln(out)
	return nil
}
