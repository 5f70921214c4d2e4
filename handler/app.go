package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/leapchange/m365/handler/internal/api"
	"github.com/leapchange/m365/handler/internal/bot"
	"github.com/leapchange/m365/handler/internal/botframework"
	"github.com/leapchange/m365/handler/internal/changes"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/consent"
	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/health"
	"github.com/leapchange/m365/handler/internal/insights"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/mailsettings"
	"github.com/leapchange/m365/handler/internal/monitoring"
	"github.com/leapchange/m365/handler/internal/org"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/pacing"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/realtime"
	"github.com/leapchange/m365/handler/internal/richnotify"
	"github.com/leapchange/m365/handler/internal/schedule"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/teamsconn"
	"github.com/leapchange/m365/handler/internal/webhook"
)

// app is the wired handler: clients built once at start-up, without network I/O.
type app struct {
	log       *slog.Logger
	store     *tablestore.Store
	queue     queue.Publisher
	conns     *connection.Store
	sync      *dirsync.Engine
	consent   *consent.Flow
	scheduler *schedule.Scheduler
	settings  *syncsettings.Store
	api       *api.Server
	health    *health.Handler
	outbound  *outbound.Pipeline
	bot       *bot.Bot
	hooks     *webhook.Handler
	monitor   *monitoring.Monitor
	subs      *subscriptions.Store
	realTime  *realtime.Sync
}

func newApp(ctx context.Context, cfg config, log *slog.Logger) (*app, error) {
	tcfg := tablestore.Config{ConnectionString: cfg.TablesConnectionString, Prefix: cfg.TablePrefix}
	if cfg.TablesConnectionString == "" {
		cred, err := managedIdentity(cfg.TablesClientID)
		if err != nil {
			return nil, err
		}
		tcfg.ServiceURL, tcfg.Credential = cfg.TablesServiceURL, cred
	}
	store, err := tablestore.Open(ctx, tcfg)
	if err != nil {
		return nil, err
	}

	qc := queue.Connection{ConnectionString: cfg.ServiceBusConnectionString}
	if qc.ConnectionString == "" {
		cred, err := managedIdentity(cfg.ServiceBusClientID)
		if err != nil {
			return nil, err
		}
		qc.Namespace, qc.Credential = cfg.ServiceBusNamespace, cred
	}
	pub, err := queue.Open(qc, queue.Options{})
	if err != nil {
		return nil, err
	}

	creds := m365auth.New(m365auth.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, AuthorityHost: cfg.AuthorityURL})
	gc, err := graph.New(graph.Config{BaseURL: cfg.GraphBaseURL, Credentials: creds, Logger: log})
	if err != nil {
		return nil, err
	}
	conns := connection.NewStore(store)
	settings := syncsettings.NewStore(store)
	engine := dirsync.New(dirsync.Config{Store: store, Directory: gc, Queue: pub, Tenants: conns, Reauth: conns, Settings: settings, Logger: log,
		StallAfter: cfg.SyncStallAfter})
	flow := consent.New(consent.Config{
		Store: store, Connections: conns, Tenants: conns.Tenants(), Tokens: creds, Access: gc, ClientID: cfg.ClientID, AuthorityHost: cfg.AuthorityURL,
		PublicBaseURL: cfg.PublicBaseURL, LeapAppURL: cfg.LeapAppURL, Key: cfg.StateKey, Logger: log,
	})
	pacer, err := pacing.New(store, cfg.MailLimits)
	if err != nil {
		return nil, err
	}
	mailSettings := mailsettings.NewStore(store)
	stakeholders, groups := stakeholder.NewStore(store), stakeholder.NewGroups(store)
	botClient, err := botframework.NewClient(botframework.ClientConfig{AppID: cfg.BotAppID, Secret: cfg.BotAppSecret, TenantID: cfg.BotTenantID,
		AuthorityHost: cfg.AuthorityURL, TrustedHosts: cfg.BotTrustedHosts})
	if err != nil {
		return nil, err
	}
	teamsPacer, err := pacing.New(store, outbound.TeamsLimits(cfg.TeamsTenantRate))
	if err != nil {
		return nil, err
	}
	teamsStore, convs, changeStore := teamsconn.NewStore(store), conversations.NewStore(store), changes.NewStore(store)
	pipeline := outbound.New(outbound.Config{
		Store: store, Queue: pub, Stakeholders: stakeholders, Groups: groups, Connections: conns, MailSettings: mailSettings,
		Pacer: pacer, Mailer: gc, Logger: log,
		Teams: outbound.TeamsConfig{Connections: teamsStore, Conversations: convs, Bot: botClient, Installer: gc,
			Pacer: teamsPacer, FallbackServiceURL: cfg.BotServiceURL, Gate: outbound.NewGate(cfg.TeamsTenantRate)},
	})
	keyring, err := notifyKeyring(cfg)
	if err != nil {
		return nil, err
	}
	states, err := subscriptions.NewClientStates(cfg.StateKey)
	if err != nil {
		return nil, err
	}
	subs := subscriptions.NewStore(store)
	var hooks *webhook.Handler // the reconciler tells the webhook's cache what changed
	reconciler := subscriptions.NewReconciler(subscriptions.ReconcilerConfig{Store: subs, States: states, Graph: graphSubscriptions{gc},
		Certificate: notifyCertificate{keyring.Current()}, PublicBaseURL: cfg.PublicBaseURL, Logger: log,
		Forget: func(org tablestore.Org, id string) { hooks.Forget(org, id) }})
	realTime := realtime.New(realtime.Config{Store: store, Settings: settings, Connections: conns, Subscriptions: reconciler,
		Runs: engine, Queue: pub, Debounce: cfg.RealTimeDebounce, Logger: log})
	hooks = webhook.New(webhook.Config{Subscriptions: subs, States: states, Queue: pub, Directory: realTime, Logger: log,
		Tokens: richnotify.NewTokenValidator(richnotify.TokenConfig{KeysURL: cfg.GraphNotifyKeysURL, AppID: cfg.ClientID, Logger: log})})
	monitor := monitoring.New(monitoring.Config{
		Settings: monitoring.NewStore(store), Subscriptions: reconciler, Teams: teamsStore, Connections: conns,
		Messages: gc, Channels: teamsGraph{gc}, Decrypter: keyringDecrypter{keyring}, Insights: insights.NewStore(store), Alerts: pipeline,
		Logger: log,
	})
	teamsBot := bot.New(bot.Config{
		Validator: botframework.NewValidator(botframework.ValidatorConfig{MetadataURL: cfg.BotOpenIDMetadata, AppID: cfg.BotAppID, Logger: log}),
		Orgs:      conns.Tenants(), Teams: teamsStore, Conversations: convs, Replier: botClient,
		Directory: stakeholders, Memberships: groups, Changes: changeStore, Responses: pipeline, Queue: pub, Logger: log,
	})
	// Orgs exist once registered; an erased (or erasing) org drops out of the scheduler.
	orgs := org.New(org.Config{Store: store, Tenant: flow, Logger: log})
	scheduler, err := schedule.New(schedule.Config{Orgs: orgs.ActiveOrgs(settings.Orgs), Settings: settings, Starter: engine, Store: store, Logger: log})
	if err != nil {
		return nil, err
	}
	return &app{
		scheduler: scheduler,
		log:       log, store: store, queue: pub, conns: conns, sync: engine, consent: flow,
		settings: settings, outbound: pipeline, bot: teamsBot, hooks: hooks, monitor: monitor, subs: subs, realTime: realTime,
		api: api.New(api.Deps{
			Orgs: orgs, Sync: engine, Connections: conns, Consent: flow, Settings: settings, Directory: gc,
			Stakeholders: stakeholders, Groups: groups,
			Messages: pipeline, MailSettings: mailSettings, Mailboxes: gc,
			Changes: changeStore,
			TeamsConnector: teamsconn.NewConnector(teamsconn.ConnectorConfig{Store: teamsStore, Connections: conns, Roles: tokenRoles{creds},
				Catalog: teamsGraph{gc}, AppID: cfg.TeamsAppID}),
			TeamsRecords: teamsStore, TeamsDirectory: teamsGraph{gc}, Monitoring: monitor, RealTime: realTime,
			Insights: insights.NewStore(store),
			NextSync: schedule.Next, Logger: log,
		}),
		health: health.New(health.Config{Logger: log},
			health.Check{Name: "tableStorage", Title: "Table Storage", Ping: store.Ping},
			health.Check{Name: "serviceBus", Title: "Service Bus", Ping: pub.Ping}),
	}, nil
}

// managedIdentity is the credential for identity-based connections: DefaultAzureCredential, or
// the user-assigned identity named by <prefix>__clientId.
func managedIdentity(clientID string) (azcore.TokenCredential, error) {
	if clientID != "" {
		cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(clientID)})
		if err != nil {
			return nil, fmt.Errorf("managed identity %s: %w", clientID, err)
		}
		return cred, nil
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("default Azure credential: %w", err)
	}
	return cred, nil
}

func (a *app) close(ctx context.Context) {
	if err := a.queue.Close(ctx); err != nil {
		a.log.Warn("closing the queue publisher", "error", err.Error())
	}
}
