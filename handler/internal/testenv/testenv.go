// Package testenv is the one rig for tests that need the whole outside world of a worker: the
// simulated Microsoft 365 tenant (with our app registered), a Table Storage of the test's own on
// Azurite, and an in-memory queue with Service Bus semantics — all stopped or dropped when the
// test ends (after tailscale's integration TestEnv). The test binary's TestMain must call
// azuritetest.Main.
package testenv

import (
	"cmp"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// The simulated tenant's identities.
const (
	Tenant   = "11111111-2222-3333-4444-555555555555"
	ClientID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	Secret   = "s3cret-value"
)

// Options shape an Env; the zero value is a consented tenant with default page sizes.
type Options struct {
	Sim         m365sim.Options // e.g. PageSize
	Domain      string          // the tenant's domain; default contoso.example
	Permissions []string        // consented in Tenant; default User.Read.All and GroupMember.Read.All
	NoConsent   bool            // leave the tenant unconsented (consent-flow tests)
	// StoreTransport, when set, carries every Table Storage request (fault injection). Its SDK
	// retries keep their count but wait only milliseconds, so a test of a busy store does not
	// sleep through them.
	StoreTransport policy.Transporter
}

// Env is a running rig.
type Env struct {
	Sim   *m365sim.Server
	Store *tablestore.Store
	Queue *queuetest.Queue
}

// New starts the rig for t.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	sim := NewTenant(t, opts)
	cfg := tablestore.Config{ConnectionString: azuritetest.Start(t), Prefix: azuritetest.Prefix()}
	if opts.StoreTransport != nil {
		cfg.ClientOptions = azcore.ClientOptions{Transport: opts.StoreTransport,
			Retry: policy.RetryOptions{RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond}}
	}
	store, err := tablestore.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.DropTables(context.Background()) })
	return &Env{Sim: sim, Store: store, Queue: &queuetest.Queue{}}
}

// StartSim starts a simulated Microsoft 365 with no tenant yet; it is closed when the test ends.
func StartSim(t testing.TB, opts m365sim.Options) *m365sim.Server {
	t.Helper()
	sim := m365sim.New(opts)
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// NewTenant starts the rig's simulated tenant alone, for tests that need no store (and no
// Azurite): Tenant with our app registered and, unless opts.NoConsent, consented.
// opts.StoreTransport is not used.
func NewTenant(t testing.TB, opts Options) *m365sim.Server {
	t.Helper()
	sim := StartSim(t, opts.Sim)
	sim.AddTenant(Tenant, cmp.Or(opts.Domain, "contoso.example"))
	sim.RegisterApp(ClientID, Secret)
	if !opts.NoConsent {
		perms := opts.Permissions
		if perms == nil {
			perms = []string{"User.Read.All", "GroupMember.Read.All"}
		}
		if err := sim.Consent(Tenant, ClientID, perms...); err != nil {
			t.Fatal(err)
		}
	}
	return sim
}

// Credentials are app-only credentials of our app, with clientSecret, against the simulated
// tenant's token endpoint.
func (e *Env) Credentials(clientSecret string) *m365auth.Credentials {
	return m365auth.New(m365auth.Config{ClientID: ClientID, ClientSecret: clientSecret,
		AuthorityHost: e.Sim.URL() + "/", HTTPClient: e.Sim.HTTPClient()})
}

// HTTPClient trusts the simulated tenant's certificate.
func (e *Env) HTTPClient() *http.Client { return e.Sim.HTTPClient() }
