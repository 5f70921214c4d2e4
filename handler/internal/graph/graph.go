// Package graph is the only package that uses msgraph-sdk-go (it takes minutes to compile, so
// nothing else imports it). It reads users and groups from Microsoft Graph per tenant and returns
// them as entra's plain data; every SDK error is classified into an errkind.Error here, in one place.
//
// Throttling is handled below the SDK by our own transport, because the SDK's retry handler does
// not honour fractional Retry-After values and would hide rate limiting from the run's report.
package graph

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	kauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraph "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"

	"github.com/leapchange/m365/handler/internal/m365auth"
)

// DefaultBaseURL is the SDK's own base URL (GRAPH_BASE_URL's default).
const DefaultBaseURL = "https://graph.microsoft.com/v1.0"

// credentials is the slice of m365auth.Credentials this package needs.
type credentials interface {
	ForTenant(tenantID string) (azcore.TokenCredential, error)
}

// Config configures a Client.
type Config struct {
	BaseURL     string // GRAPH_BASE_URL; default DefaultBaseURL
	Credentials credentials
	HTTPClient  *http.Client // base transport (TLS); default http.DefaultTransport
	Retry       RetryPolicy
	Logger      *slog.Logger
}

// Client reads a tenant's directory. It is safe for concurrent use; each tenant gets its own
// SDK client, created on first use.
type Client struct {
	cfg       Config
	base      *url.URL
	transport *retryTransport

	mu      sync.Mutex
	tenants map[string]*msgraph.GraphServiceClient
}

// New returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("graph: base URL %q is not absolute", cfg.BaseURL)
	}
	if cfg.Credentials == nil {
		return nil, fmt.Errorf("graph: no credentials")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var base http.RoundTripper = http.DefaultTransport
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		base = cfg.HTTPClient.Transport
	}
	return &Client{
		cfg:       cfg,
		base:      u,
		transport: newRetryTransport(base, cfg.Retry.withDefaults(), cfg.Logger),
		tenants:   map[string]*msgraph.GraphServiceClient{},
	}, nil
}

// Requests is the number of HTTP requests sent to Graph so far, retries included.
func (c *Client) Requests() int64 { return c.transport.requests.Load() }

func (c *Client) tenant(tenantID string) (*msgraph.GraphServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gc, ok := c.tenants[tenantID]; ok {
		return gc, nil
	}
	cred, err := c.cfg.Credentials.ForTenant(tenantID)
	if err != nil {
		return nil, err
	}
	// The Graph host must be a valid host or the provider silently sends no token. This kiota
	// version compares the host name without its port; list both forms to be safe across versions.
	hosts := []string{c.base.Hostname()}
	if c.base.Host != c.base.Hostname() {
		hosts = append(hosts, c.base.Host)
	}
	auth, err := kauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, []string{m365auth.GraphScope}, hosts)
	if err != nil {
		return nil, fmt.Errorf("graph: auth provider: %w", err)
	}
	opts := msgraph.GetDefaultClientOptions()
	var middlewares []khttp.Middleware
	for _, m := range msgraphcore.GetDefaultMiddlewaresWithOptions(&opts) {
		switch m.(type) {
		case *khttp.RetryHandler:
			continue // retryTransport does this, honouring fractional Retry-After
		case *khttp.CompressionHandler:
			// It gzips every request body: CPU on each of thousands of sendMail calls for bodies
			// of a few kilobytes. Graph takes them uncompressed.
			continue
		}
		middlewares = append(middlewares, m)
	}
	hc := &http.Client{Transport: khttp.NewCustomTransportWithParentTransport(c.transport, middlewares...), Timeout: 100 * time.Second}
	adapter, err := msgraph.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, hc)
	if err != nil {
		return nil, fmt.Errorf("graph: request adapter: %w", err)
	}
	adapter.SetBaseUrl(c.cfg.BaseURL)
	gc := msgraph.NewGraphServiceClient(adapter)
	c.tenants[tenantID] = gc
	return gc, nil
}
