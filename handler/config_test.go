package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
