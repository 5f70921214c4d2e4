// Command m365sim serves a simulated Microsoft 365 tenant (see package m365sim) for local runs
// and for tests in other processes:
//
//	go run ./handler/cmd/m365sim -addr 127.0.0.1:0 -tenant <id> -users 1000 -groups 20 \
//	    -app-id <client id> -app-secret <secret> -roles User.Read.All,GroupMember.Read.All,Mail.Send \
//	    -redirect-uri https://localhost:7071/api/consent/callback -ca-out /tmp/m365sim-ca.pem
//
// -roles are the app registration's configured application permissions and, unless
// -consented=false, the tenant's consent. With -consented=false the tenant starts unconsented
// and the admin-consent flow ({url}/organizations/v2.0/adminconsent, signed in as -tenant, to a
// -redirect-uri) grants them; POST /_sim/tenants/{t}/consent-decision scripts a refusal or a
// partial grant.
//
// The same browser signs in through OpenID Connect ({url}/organizations/oauth2/v2.0/authorize,
// response_type=code, then grant_type=authorization_code) as -tenant's Global Administrator;
// POST /_sim/tenants/{t}/signed-in-user picks another user or role set. ID tokens carry wids
// because -group-membership-claims defaults to DirectoryRole: the real app registration needs
// the same manifest setting (Entra's default, None, leaves wids out of ID tokens).
//
// Mail: POST /v1.0/users/{…}/sendMail enforces Exchange's sending limits (-mail-per-minute,
// -mail-daily-recipients) and Outlook's per-app concurrency (-mail-concurrency); -mail-latency
// delays each accepted send. GET /_sim/tenants/{t}/mail lists what was sent, PUT
// /_sim/mail/limits changes the limits at run time.
//
// Teams: -bot-app-id, -bot-tenant and -bot-secret register the bot (its Entra app, whose
// Bot Framework tokens are issued in its home tenant -bot-tenant; the Bot Connector API then
// serves under {url}/bot/emea/), and -bot-endpoint is its messaging endpoint, to which the sim
// posts signed activities (install, uninstall; none when empty). -bot-tenant-rate is Teams'
// per app per tenant limit in requests a second (0: Microsoft's 30; negative: no limit). The
// admin routes /_sim/bot/… and /_sim/teams/{t}/… install the app for users, read what the bot
// posted and the Bot Connector's counters (violations included).
//
// It writes the CA certificate to -ca-out (use it as SSL_CERT_FILE), prints one line
// "READY https://127.0.0.1:<port>" and serves until SIGINT/SIGTERM. The /_sim/ admin API
// (mutations, faults, stats) is enabled.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "m365sim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("m365sim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	tenant := fs.String("tenant", "", "tenant id (required)")
	domain := fs.String("domain", "", "tenant verified domain (default <tenant>.example)")
	users := fs.Int("users", 100, "generated users")
	groups := fs.Int("groups", 10, "generated groups")
	depth := fs.Int("depth", 2, "group nesting depth")
	invalid := fs.Int("invalid-users", 0, "users with incomplete profiles")
	seed := fs.Uint64("seed", 1, "generator seed")
	appID := fs.String("app-id", "", "client id of the Entra app (required)")
	appSecret := fs.String("app-secret", "", "client secret of the app (required)")
	roles := fs.String("roles", "User.Read.All,GroupMember.Read.All,Mail.Send", "consented Graph application permissions")
	redirects := fs.String("redirect-uri", "", "comma-separated redirect URIs registered on the app (admin consent)")
	consented := fs.Bool("consented", true, "consent the tenant at start-up (false: leave it to the admin-consent flow)")
	gmc := fs.String("group-membership-claims", "DirectoryRole", "groupMembershipClaims of the app registration (DirectoryRole or All: ID tokens carry wids; None: Entra's default)")
	mailPerMinute := fs.Int("mail-per-minute", 0, "sendMail messages per mailbox per minute (0: Exchange's 30; negative: no limit)")
	mailConcurrency := fs.Int("mail-concurrency", 0, "concurrent sendMail requests per app per mailbox (0: Outlook's 4; negative: no limit)")
	mailDaily := fs.Int("mail-daily-recipients", 0, "recipients per mailbox per rolling 24 h (0: Exchange's 10000; negative: no limit)")
	mailLatency := fs.Duration("mail-latency", 0, "how long an accepted sendMail takes to answer 202")
	botAppID := fs.String("bot-app-id", "", "register the Teams bot: its Entra app id (then -bot-tenant and -bot-secret are required)")
	botTenant := fs.String("bot-tenant", "", "the bot's home tenant, where its Bot Framework tokens are issued")
	botSecret := fs.String("bot-secret", "", "the bot app's client secret")
	botEndpoint := fs.String("bot-endpoint", "", "the bot's messaging endpoint, to which activities are posted (none when empty)")
	botRate := fs.Int("bot-tenant-rate", 0, "Bot Connector requests per second per app per tenant (0: Teams' 30; negative: no limit)")
	caOut := fs.String("ca-out", "", "write the CA certificate PEM to this file")
	verbose := fs.Bool("v", false, "log every request to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tenant == "" || *appID == "" || *appSecret == "" {
		return fmt.Errorf("-tenant, -app-id and -app-secret are required")
	}
	if (*botTenant != "" || *botSecret != "" || *botEndpoint != "") && *botAppID == "" {
		return fmt.Errorf("-bot-tenant, -bot-secret and -bot-endpoint need -bot-app-id")
	}
	if *botAppID != "" && (*botTenant == "" || *botSecret == "") {
		return fmt.Errorf("-bot-app-id needs -bot-tenant and -bot-secret")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	sim := m365sim.New(m365sim.Options{
		Admin:  true,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		Mail:   m365sim.MailLimits{PerMinute: *mailPerMinute, Concurrency: *mailConcurrency, DailyRecipients: *mailDaily, Latency: *mailLatency},
	})
	sim.AddTenant(*tenant, cmp.Or(*domain, *tenant+".example"))
	sim.RegisterApp(*appID, *appSecret)
	var rl []string
	for r := range strings.SplitSeq(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			rl = append(rl, r)
		}
	}
	if err := sim.SetAppPermissions(*appID, rl...); err != nil {
		return err
	}
	for u := range strings.SplitSeq(*redirects, ",") {
		if u = strings.TrimSpace(u); u != "" {
			sim.RegisterRedirectURI(*appID, u)
		}
	}
	if err := sim.SetSignedInTenant(*tenant); err != nil {
		return err
	}
	if err := sim.SetGroupMembershipClaims(*appID, *gmc); err != nil {
		return err
	}
	if *consented {
		if err := sim.Consent(*tenant, *appID, rl...); err != nil {
			return err
		}
	}
	if *botAppID != "" {
		sim.RegisterBot(*botAppID, *botTenant, *botSecret, *botEndpoint)
	}
	sim.SetBotTenantRate(*botRate)
	if err := sim.Generate(*tenant, m365sim.GenSpec{Users: *users, Groups: *groups, Depth: *depth, Seed: *seed, InvalidUsers: *invalid}); err != nil {
		return err
	}
	if *caOut != "" {
		if err := os.WriteFile(*caOut, sim.CACertPEM(), 0o644); err != nil {
			return err
		}
	}
	if err := sim.Listen(*addr); err != nil {
		return err
	}
	defer sim.Close()
	fmt.Fprintln(stdout, "READY", sim.URL())
	<-ctx.Done()
	return nil
}
