package main

import (
	"cmp"
	"errors"
	"fmt"
	"github.com/leapchange/m365/handler/internal/pacing"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// config is every setting of the README's Settings table, read once at start-up.
type config struct {
	Port string

	TablesConnectionString string // TablesConnection: a connection string (Azurite locally)
	TablesServiceURL       string // TablesConnection__tableServiceUri: managed identity
	TablesClientID         string // TablesConnection__clientId: a user-assigned identity

	ServiceBusConnectionString string // ServiceBusConnection (or "devhost=<url>" locally)
	ServiceBusNamespace        string // ServiceBusConnection__fullyQualifiedNamespace
	ServiceBusClientID         string // ServiceBusConnection__clientId

	TablePrefix string

	ClientID     string
	ClientSecret string
	GraphBaseURL string
	AuthorityURL string // AZURE_AUTHORITY_HOST; empty = Microsoft's public cloud

	BotAppID          string
	BotAppSecret      string
	BotTenantID       string
	BotOpenIDMetadata string
	// TeamsAppID (optional TEAMS_APP_ID, default BOT_APP_ID) is the Teams app's manifest id: the
	// tenant's app catalog knows the app by it.
	TeamsAppID string
	// BotServiceURL (optional BOT_SERVICE_URL, default Teams' global Bot Connector address) is
	// where the bot reaches a person known only through a Graph installation.
	BotServiceURL string
	// BotTrustedHosts (optional BOT_TRUSTED_HOSTS, comma-separated host[:port]) are hosts the bot
	// token may go to besides Microsoft's Bot Connector hosts: the simulated tenant locally.
	BotTrustedHosts []string
	// TeamsTenantRate (optional TEAMS_TENANT_RATE, requests per second, default 30) is Teams'
	// per-app, per-tenant limit the sends are paced under (Microsoft's pages say 30 or 50).
	TeamsTenantRate int
	badTeamsRate    string

	// The certificate Graph encrypts channel-message notifications for (NOTIFY_CERT_PEM: PEM
	// certificate and RSA key; NOTIFY_CERT_ID its encryptionCertificateId), and the previous one
	// during a rotation. Without a PEM a self-signed one is generated at start-up (local runs:
	// one instance; in Azure the PEM comes from Key Vault, the same for every instance).
	NotifyCertPEM, NotifyCertID                 string
	NotifyCertPreviousPEM, NotifyCertPreviousID string
	// GraphNotifyKeysURL (optional GRAPH_NOTIFY_KEYS_URL) is where the signing keys of Graph's
	// validationTokens are read; default Microsoft identity platform's common keys.
	GraphNotifyKeysURL string

	PublicBaseURL string
	LeapAppURL    string
	StateKey      []byte

	// SyncStallAfter (optional SYNC_STALL_AFTER, a Go duration; default 0 = dirsync's 20 minutes)
	// is how long a running sync may show no progress before its lost step is republished. Only
	// tests and drills shorten it.
	SyncStallAfter time.Duration
	badStallAfter  string

	// RealTimeDebounce (optional REALTIME_DEBOUNCE, a Go duration from 1s to 5m; default 15s) is
	// how long after an org's first user or group change notification its delta round starts.
	RealTimeDebounce time.Duration
	badDebounce      string

	// MailLimits (optional MAIL_LIMITS, "<messages per minute>/<recipients per day>", default
	// Exchange Online's 30/10000) are each sender mailbox's limits. Only a tenant with raised
	// limits, or a benchmark against the simulated tenant, changes them.
	MailLimits    pacing.Limits
	badMailLimits string

	// unresolved names settings whose value is still a Key Vault reference: the platform could
	// not resolve it, and the literal string must never stand in for the secret.
	unresolved []string
}

// settingNames lists every setting loadConfig reads; a test checks local.settings.example.json
// against it.
var settingNames = []string{
	"FUNCTIONS_CUSTOMHANDLER_PORT",
	"TablesConnection", "TablesConnection__tableServiceUri", "TablesConnection__clientId",
	"ServiceBusConnection", "ServiceBusConnection__fullyQualifiedNamespace", "ServiceBusConnection__clientId",
	"TABLE_PREFIX", "M365_CLIENT_ID", "M365_CLIENT_SECRET", "GRAPH_BASE_URL", "AZURE_AUTHORITY_HOST",
	"BOT_APP_ID", "BOT_APP_SECRET", "BOT_TENANT_ID", "BOT_OPENID_METADATA_URL",
	"TEAMS_APP_ID", "BOT_SERVICE_URL", "BOT_TRUSTED_HOSTS", "TEAMS_TENANT_RATE", "REALTIME_DEBOUNCE",
	"NOTIFY_CERT_PEM", "NOTIFY_CERT_ID", "NOTIFY_CERT_PREVIOUS_PEM", "NOTIFY_CERT_PREVIOUS_ID", "GRAPH_NOTIFY_KEYS_URL",
	"PUBLIC_BASE_URL", "LEAP_APP_URL", "STATE_SIGNING_KEY",
}

const (
	defaultGraphBaseURL   = "https://graph.microsoft.com/v1.0"
	defaultBotOpenIDURL   = "https://login.botframework.com/v1/.well-known/openidconfiguration"
	defaultBotServiceURL  = "https://smba.trafficmanager.net/teams/"
	defaultTeamsRate      = 30
	minStateKeyBytes      = 32
	fallbackForwardedPort = "FUNCTIONS_HTTPWORKER_PORT" // the host's legacy alias
)

func loadConfig(getenv func(string) string) (config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	c := config{
		Port:                       cmp.Or(get("FUNCTIONS_CUSTOMHANDLER_PORT"), get(fallbackForwardedPort)),
		TablesConnectionString:     get("TablesConnection"),
		TablesServiceURL:           get("TablesConnection__tableServiceUri"),
		TablesClientID:             get("TablesConnection__clientId"),
		ServiceBusConnectionString: get("ServiceBusConnection"),
		ServiceBusNamespace:        get("ServiceBusConnection__fullyQualifiedNamespace"),
		ServiceBusClientID:         get("ServiceBusConnection__clientId"),
		TablePrefix:                get("TABLE_PREFIX"),
		ClientID:                   get("M365_CLIENT_ID"),
		ClientSecret:               get("M365_CLIENT_SECRET"),
		GraphBaseURL:               strings.TrimRight(cmp.Or(get("GRAPH_BASE_URL"), defaultGraphBaseURL), "/"),
		AuthorityURL:               get("AZURE_AUTHORITY_HOST"),
		BotAppID:                   get("BOT_APP_ID"),
		BotAppSecret:               get("BOT_APP_SECRET"),
		BotTenantID:                get("BOT_TENANT_ID"),
		BotOpenIDMetadata:          cmp.Or(get("BOT_OPENID_METADATA_URL"), defaultBotOpenIDURL),
		TeamsAppID:                 cmp.Or(get("TEAMS_APP_ID"), get("BOT_APP_ID")),
		BotServiceURL:              cmp.Or(get("BOT_SERVICE_URL"), defaultBotServiceURL),
		TeamsTenantRate:            defaultTeamsRate,
		NotifyCertPEM:              getenv("NOTIFY_CERT_PEM"),
		NotifyCertID:               cmp.Or(get("NOTIFY_CERT_ID"), "leap-notify-1"),
		NotifyCertPreviousPEM:      getenv("NOTIFY_CERT_PREVIOUS_PEM"),
		NotifyCertPreviousID:       get("NOTIFY_CERT_PREVIOUS_ID"),
		GraphNotifyKeysURL:         cmp.Or(get("GRAPH_NOTIFY_KEYS_URL"), "https://login.microsoftonline.com/common/discovery/v2.0/keys"),
		PublicBaseURL:              strings.TrimRight(get("PUBLIC_BASE_URL"), "/"),
		LeapAppURL:                 get("LEAP_APP_URL"),
		StateKey:                   []byte(get("STATE_SIGNING_KEY")),
	}
	if v := get("SYNC_STALL_AFTER"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= time.Second {
			c.SyncStallAfter = d
		} else {
			c.badStallAfter = v
		}
	}
	if v := get("REALTIME_DEBOUNCE"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= time.Second && d <= 5*time.Minute {
			c.RealTimeDebounce = d
		} else {
			c.badDebounce = v
		}
	}
	for h := range strings.SplitSeq(get("BOT_TRUSTED_HOSTS"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.BotTrustedHosts = append(c.BotTrustedHosts, h)
		}
	}
	if v := get("TEAMS_TENANT_RATE"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 1000 {
			c.TeamsTenantRate = n
		} else {
			c.badTeamsRate = v
		}
	}
	c.MailLimits = pacing.Exchange
	if v := get("MAIL_LIMITS"); v != "" {
		if l, err := pacing.ParseLimits(v); err == nil {
			c.MailLimits = l
		} else {
			c.badMailLimits = v
		}
	}
	for _, k := range settingNames {
		if strings.HasPrefix(get(k), keyVaultReferencePrefix) {
			c.unresolved = append(c.unresolved, k)
		}
	}
	return c, c.validate()
}

// keyVaultReferencePrefix starts an App Service Key Vault reference. The platform replaces a
// reference with the secret; when it cannot (secret missing, role not yet propagated, bad
// syntax), the app sees the reference itself.
const keyVaultReferencePrefix = "@Microsoft.KeyVault("

var (
	guidPattern   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	prefixPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,31}$`)
	fqdnPattern   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$`)
)

// validate reports every problem at once, naming settings and never echoing a secret's value.
func (c config) validate() error {
	var errs []error
	bad := func(cond bool, format string, args ...any) {
		if cond {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	bad(c.badTeamsRate != "", "TEAMS_TENANT_RATE must be requests per second, 1 to 1000, got %q", c.badTeamsRate)
	bad(!guidPattern.MatchString(c.TeamsAppID), "TEAMS_APP_ID must be the Teams app's manifest id (a GUID), got %q", c.TeamsAppID)
	bad(!isHTTPSURL(c.BotServiceURL), "BOT_SERVICE_URL must be an https URL, got %q", c.BotServiceURL)
	bad(!isHTTPSURL(c.GraphNotifyKeysURL), "GRAPH_NOTIFY_KEYS_URL must be an https URL, got %q", c.GraphNotifyKeysURL)
	bad((strings.TrimSpace(c.NotifyCertPreviousPEM) == "") != (c.NotifyCertPreviousID == ""), "NOTIFY_CERT_PREVIOUS_PEM and NOTIFY_CERT_PREVIOUS_ID go together: set both during a rotation, or neither")
	bad(c.badMailLimits != "", "MAIL_LIMITS must be <messages per minute>/<recipients per day> (e.g. 30/10000), got %q", c.badMailLimits)
	bad(c.badDebounce != "", "REALTIME_DEBOUNCE must be a duration from 1s to 5m (e.g. 15s), got %q", c.badDebounce)
	bad(c.badStallAfter != "", "SYNC_STALL_AFTER must be a duration of at least 1s (e.g. 20m), got %q", c.badStallAfter)
	for _, k := range c.unresolved {
		errs = append(errs, fmt.Errorf("%s is an unresolved Key Vault reference: the platform could not read the secret. "+
			"Check that the secret exists in the vault, that the app's identity holds Key Vault Secrets User on it (a new role assignment can take minutes to apply), "+
			"and the reference's syntax; then restart the app", k))
	}
	port, err := strconv.Atoi(c.Port)
	bad(c.Port == "", "FUNCTIONS_CUSTOMHANDLER_PORT is not set (the Functions host sets it)")
	bad(c.Port != "" && (err != nil || port < 1 || port > 65535), "FUNCTIONS_CUSTOMHANDLER_PORT must be a port number, got %q", c.Port)

	bad(c.TablesConnectionString == "" && c.TablesServiceURL == "", "TablesConnection (connection string) or TablesConnection__tableServiceUri (managed identity) must be set")
	bad(c.TablesConnectionString != "" && !strings.Contains(c.TablesConnectionString, "AccountName=") && !strings.Contains(c.TablesConnectionString, "UseDevelopmentStorage=true") && !strings.Contains(c.TablesConnectionString, "TableEndpoint="),
		"TablesConnection is not a storage connection string (want AccountName=…;AccountKey=… or TableEndpoint=…)")
	bad(c.TablesConnectionString == "" && c.TablesServiceURL != "" && !isHTTPSURL(c.TablesServiceURL), "TablesConnection__tableServiceUri must be an https URL, got %q", c.TablesServiceURL)

	bad(c.ServiceBusConnectionString == "" && c.ServiceBusNamespace == "", "ServiceBusConnection (connection string) or ServiceBusConnection__fullyQualifiedNamespace (managed identity) must be set")
	bad(c.ServiceBusConnectionString != "" && !strings.HasPrefix(c.ServiceBusConnectionString, "devhost=") && !strings.Contains(c.ServiceBusConnectionString, "Endpoint=sb://"),
		"ServiceBusConnection is not a Service Bus connection string (want Endpoint=sb://…) nor devhost=<url>")
	bad(c.ServiceBusConnectionString == "" && c.ServiceBusNamespace != "" && !fqdnPattern.MatchString(c.ServiceBusNamespace),
		"ServiceBusConnection__fullyQualifiedNamespace must be a host name like leap.servicebus.windows.net, got %q", c.ServiceBusNamespace)

	bad(c.TablePrefix != "" && !prefixPattern.MatchString(c.TablePrefix), "TABLE_PREFIX must be a letter then up to 31 letters or digits, got %q", c.TablePrefix)

	bad(!guidPattern.MatchString(c.ClientID), "M365_CLIENT_ID must be the app's client id (a GUID), got %q", c.ClientID)
	bad(c.ClientSecret == "", "M365_CLIENT_SECRET is not set")
	bad(!isHTTPSURL(c.GraphBaseURL), "GRAPH_BASE_URL must be an https URL, got %q", c.GraphBaseURL)
	bad(c.AuthorityURL != "" && !isHTTPSURL(c.AuthorityURL), "AZURE_AUTHORITY_HOST must be an https URL, got %q", c.AuthorityURL)

	bad(!guidPattern.MatchString(c.BotAppID), "BOT_APP_ID must be the bot's app id (a GUID), got %q", c.BotAppID)
	bad(c.BotAppSecret == "", "BOT_APP_SECRET is not set")
	bad(!guidPattern.MatchString(c.BotTenantID), "BOT_TENANT_ID must be the bot's tenant id (a GUID), got %q", c.BotTenantID)
	bad(!isHTTPSURL(c.BotOpenIDMetadata), "BOT_OPENID_METADATA_URL must be an https URL, got %q", c.BotOpenIDMetadata)

	bad(!isPublicURL(c.PublicBaseURL), "PUBLIC_BASE_URL must be an https URL (http only for localhost), got %q", c.PublicBaseURL)
	bad(!isPublicURL(c.LeapAppURL), "LEAP_APP_URL must be an https URL (http only for localhost), got %q", c.LeapAppURL)
	bad(len(c.StateKey) < minStateKeyBytes, "STATE_SIGNING_KEY must be at least %d bytes, got %d", minStateKeyBytes, len(c.StateKey))
	return errors.Join(errs...)
}

func isHTTPSURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Host != ""
}

// isPublicURL accepts https, and http for loopback addresses (local runs).
func isPublicURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		h := u.Hostname()
		ip := net.ParseIP(h)
		return h == "localhost" || (ip != nil && ip.IsLoopback())
	}
	return false
}
