package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// validEnv is a complete local configuration, with overrides.
func validEnv(over map[string]string) func(string) string {
	env := map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": "7001",
		"TablesConnection":             "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;TableEndpoint=http://127.0.0.1:1/devstoreaccount1;",
		"ServiceBusConnection":         "devhost=http://127.0.0.1:1",
		"M365_CLIENT_ID":               "00000000-0000-4000-8000-00000000c1d0",
		"M365_CLIENT_SECRET":           "top-secret-value",
		"BOT_APP_ID":                   "00000000-0000-4000-8000-00000000b07a",
		"BOT_APP_SECRET":               "bot-secret-value",
		"BOT_TENANT_ID":                "00000000-0000-4000-8000-0000000071d0",
		"PUBLIC_BASE_URL":              "https://leap.example.net",
		"LEAP_APP_URL":                 "https://app.leap.example.net/settings",
		"STATE_SIGNING_KEY":            "0123456789abcdef0123456789abcdef-key",
	}
	for k, v := range over {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

func TestConfigRejectsPortZero(t *testing.T) {
	if _, err := loadConfig(validEnv(map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "0"})); err == nil {
		t.Fatal("port 0 accepted")
	}
}

func TestConfigValid(t *testing.T) {
	for name, over := range map[string]map[string]string{
		"connection strings": {"FUNCTIONS_CUSTOMHANDLER_PORT": "7001"},
		"managed identity": {"FUNCTIONS_CUSTOMHANDLER_PORT": "7001", "TablesConnection": "", "TablesConnection__tableServiceUri": "https://leapdata.table.core.windows.net",
			"ServiceBusConnection": "", "ServiceBusConnection__fullyQualifiedNamespace": "leap-sb.servicebus.windows.net"},
		"legacy port alias": {"FUNCTIONS_CUSTOMHANDLER_PORT": "", "FUNCTIONS_HTTPWORKER_PORT": "7002"},
		"localhost http":    {"FUNCTIONS_CUSTOMHANDLER_PORT": "7001", "PUBLIC_BASE_URL": "http://localhost:7071", "LEAP_APP_URL": "http://127.0.0.1:3000/x"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := loadConfig(validEnv(over))
			if err != nil {
				t.Fatal(err)
			}
			if c.GraphBaseURL != defaultGraphBaseURL || c.BotOpenIDMetadata != defaultBotOpenIDURL {
				t.Errorf("defaults not applied: %q %q", c.GraphBaseURL, c.BotOpenIDMetadata)
			}
		})
	}
}

// TestRunNamesEveryBadSetting is the start-up contract: one error naming every problem, no secret.
func TestRunNamesEveryBadSetting(t *testing.T) {
	env := validEnv(map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": "",
		"TablesConnection":             "",
		"ServiceBusConnection":         "Endpoint=nonsense;SharedAccessKey=hunter2",
		"M365_CLIENT_ID":               "not-a-guid",
		"M365_CLIENT_SECRET":           "",
		"GRAPH_BASE_URL":               "http://graph.example",
		"BOT_APP_ID":                   "",
		"BOT_APP_SECRET":               "",
		"BOT_TENANT_ID":                "x",
		"PUBLIC_BASE_URL":              "http://leap.example.net",
		"LEAP_APP_URL":                 "",
		"STATE_SIGNING_KEY":            "short",
		"TABLE_PREFIX":                 "9bad-prefix",
	})
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), env, &stdout, &stderr)
	if err == nil {
		t.Fatal("run succeeded with a bad configuration")
	}
	msg := err.Error()
	for _, name := range []string{"FUNCTIONS_CUSTOMHANDLER_PORT", "TablesConnection", "ServiceBusConnection", "M365_CLIENT_ID", "M365_CLIENT_SECRET",
		"GRAPH_BASE_URL", "BOT_APP_ID", "BOT_APP_SECRET", "BOT_TENANT_ID", "PUBLIC_BASE_URL", "LEAP_APP_URL", "STATE_SIGNING_KEY", "TABLE_PREFIX"} {
		if !strings.Contains(msg, name) {
			t.Errorf("error does not name %s:\n%s", name, msg)
		}
	}
	for _, secret := range []string{"hunter2", "short"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error leaks a secret value %q:\n%s", secret, msg)
		}
	}
}

// TestConfigRefusesUnresolvedKeyVaultReferences: when App Service cannot resolve a Key Vault
// reference the app sees the reference itself, which must never stand in for the secret (it is
// long enough to pass as a signing key, and anyone can guess it).
func TestConfigRefusesUnresolvedKeyVaultReferences(t *testing.T) {
	const ref = "@Microsoft.KeyVault(SecretUri=https://leap-kv.vault.azure.net/secrets/state-signing-key/)"
	for _, setting := range []string{"M365_CLIENT_SECRET", "BOT_APP_SECRET", "STATE_SIGNING_KEY", "TablesConnection", "ServiceBusConnection"} {
		t.Run(setting, func(t *testing.T) {
			_, err := loadConfig(validEnv(map[string]string{setting: ref}))
			if err == nil {
				t.Fatalf("%s = a Key Vault reference was accepted", setting)
			}
			msg := err.Error()
			if !strings.Contains(msg, setting+" is an unresolved Key Vault reference") || !strings.Contains(msg, "Key Vault Secrets User") {
				t.Errorf("error does not name the setting and the likely cause: %v", err)
			}
			if strings.Contains(msg, "SecretUri") {
				t.Errorf("error repeats the reference: %v", err)
			}
		})
	}
	// A value that merely mentions Key Vault is not a reference.
	if _, err := loadConfig(validEnv(map[string]string{"M365_CLIENT_SECRET": "x@Microsoft.KeyVault(y)"})); err != nil {
		t.Errorf("a secret containing the marker mid-value was refused: %v", err)
	}
}

// TestConfigSyncStallAfter: the optional SYNC_STALL_AFTER is a duration of at least a second;
// absent, dirsync's default (20 minutes) applies.
func TestConfigSyncStallAfter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"3s", 3 * time.Second, true},
		{"20m", 20 * time.Minute, true},
		{"500ms", 0, false},
		{"soon", 0, false},
	} {
		c, err := loadConfig(validEnv(map[string]string{"SYNC_STALL_AFTER": tc.in}))
		if (err == nil) != tc.ok || c.SyncStallAfter != tc.want {
			t.Errorf("SYNC_STALL_AFTER=%q: %v, %v; want %v, ok %v", tc.in, c.SyncStallAfter, err, tc.want, tc.ok)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "SYNC_STALL_AFTER")) {
			t.Errorf("SYNC_STALL_AFTER=%q: error does not name the setting: %v", tc.in, err)
		}
	}
}
