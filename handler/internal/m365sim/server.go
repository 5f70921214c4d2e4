package m365sim

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Options configure a Server. The zero value is valid.
type Options struct {
	// Clock returns the simulated time (token lifetimes, delta token expiry, timestamps).
	// Default time.Now. AdvanceClock adds an offset on top of it.
	Clock func() time.Time
	// PageSize overrides the default page size of every paged route (users/groups delta 200,
	// /users, /groups and member listings 100). Prefer: odata.maxpagesize still lowers it per
	// request, and $top sets it on the routes that accept $top.
	PageSize int
	// MemberLinksPerPage caps the members@delta links one groups/delta page carries (default 500);
	// a larger group is repeated on the following pages with the next slice.
	MemberLinksPerPage int
	// DeltaTokenTTL is how long a delta token stays valid (default 7 days of Clock time); older
	// tokens answer 400 syncStateNotFound.
	DeltaTokenTTL time.Duration
	// TokenLifetime is the lifetime of issued access tokens (default 1 hour).
	TokenLifetime time.Duration
	// Mail are the Exchange Online and Outlook limits sendMail enforces per sending mailbox
	// (zero fields take Exchange's defaults, see MailLimits); SetMailLimits changes them later.
	Mail MailLimits
	// Admin serves the /_sim/ JSON admin API (mutations, faults, stats) on the same listener.
	// It has no authentication: a loopback development tool only.
	Admin bool
	// Logger receives one record per request and a warning per unhandled request.
	// Default: discard.
	Logger *slog.Logger
}

// Server is a simulated Microsoft 365 tenant host: the Entra token/discovery endpoints and the
// Microsoft Graph routes the integration uses, over HTTPS with its own CA.
// The zero Server is usable; New sets options.
type Server struct {
	// Fault, if non-nil, is consulted before every request (after counting it); a non-nil result
	// is answered instead of the normal response (or, for a Fault with only Delay, delays it).
	Fault func(r *http.Request) *Fault

	opts     Options
	initOnce sync.Once

	mu        sync.Mutex
	tenants   map[string]*tenant
	apps      map[string]*app
	decisions map[string]ConsentDecision // tenant id -> scripted admin-consent decision
	signedIn  string                     // tenant id of the admin the organizations path resolves to
	users     map[string]SignedInUser    // tenant id -> scripted signed-in user (SetSignedInUser)
	codes     map[string]*authCode       // authorization codes issued by /authorize
	rules     []*faultRule
	routes    map[string]int64
	byTenant  map[string]int64 // authenticated Graph requests per tenant (Stats.GraphByTenant)
	total     int64
	faulted   int64
	offset    time.Duration
	unhandled atomic.Int64
	mail      mailState
	bot       botState
	teams     teamsState // teams, channels, app catalog, installations (teams.go)

	tlsOnce sync.Once
	tlsErr  error
	caPEM   []byte
	caPool  *x509.CertPool
	leaf    tls.Certificate

	ln   net.Listener
	srv  *http.Server
	base string
}

// New returns a Server with the given options. Call Start (or Listen) to serve it.
func New(opts Options) *Server {
	s := &Server{opts: opts}
	s.init()
	return s
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		o := &s.opts
		if o.Clock == nil {
			o.Clock = time.Now
		}
		if o.MemberLinksPerPage <= 0 {
			o.MemberLinksPerPage = 500
		}
		if o.DeltaTokenTTL <= 0 {
			o.DeltaTokenTTL = 7 * 24 * time.Hour
		}
		if o.TokenLifetime <= 0 {
			o.TokenLifetime = time.Hour
		}
		if o.Logger == nil {
			o.Logger = slog.New(slog.DiscardHandler)
		}
		s.tenants = map[string]*tenant{}
		s.apps = map[string]*app{}
		s.decisions = map[string]ConsentDecision{}
		s.users = map[string]SignedInUser{}
		s.codes = map[string]*authCode{}
		s.routes = map[string]int64{}
		s.byTenant = map[string]int64{}
		s.mail.init(o.Mail)
	})
}

func (s *Server) now() time.Time { return s.opts.Clock().Add(s.offset) }

// Now returns the simulated time (Options.Clock plus AdvanceClock offsets).
func (s *Server) Now() time.Time {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// AdvanceClock moves the simulated time forward by d (for processes that cannot inject Clock).
func (s *Server) AdvanceClock(d time.Duration) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
}

func (s *Server) pageSize(def int) int {
	if s.opts.PageSize > 0 {
		return s.opts.PageSize
	}
	return def
}

// Start serves HTTPS on a random loopback port.
func (s *Server) Start() error { return s.Listen("127.0.0.1:0") }

// Listen serves HTTPS on addr (host:port; port 0 picks one).
func (s *Server) Listen(addr string) error {
	s.init()
	if err := s.ensureTLS(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{s.leaf}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(discardWriter{}, "", 0),
	}
	s.mu.Lock()
	s.ln, s.srv = ln, srv
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	s.base = "https://" + net.JoinHostPort(host, port)
	s.mu.Unlock()
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("m365sim: serve", "err", err)
		}
	}()
	return nil
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// URL is the base URL, e.g. https://127.0.0.1:53211, used both as the authority host
// (AZURE_AUTHORITY_HOST, with a trailing slash) and, with /v1.0, as GRAPH_BASE_URL.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base
}

// GraphURL is URL() + "/v1.0".
func (s *Server) GraphURL() string { return s.URL() + "/v1.0" }

// Close stops serving.
func (s *Server) Close() error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	// Close, not Shutdown: clients keep HTTP/2 connections open and a graceful
	// shutdown would wait for them on every test.
	return srv.Close()
}

// CACertPEM is the PEM of the CA that signed the server certificate (write it to a file for
// SSL_CERT_FILE, or use Transport/HTTPClient).
func (s *Server) CACertPEM() []byte {
	s.init()
	if err := s.ensureTLS(); err != nil {
		panic(err)
	}
	return append([]byte(nil), s.caPEM...)
}

// Transport returns an HTTP transport that trusts only the simulated tenant's CA.
func (s *Server) Transport() *http.Transport {
	s.init()
	if err := s.ensureTLS(); err != nil {
		panic(err)
	}
	return &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
}

// HTTPClient returns a client over Transport. It implements azcore's policy.Transporter.
func (s *Server) HTTPClient() *http.Client { return &http.Client{Transport: s.Transport()} }

func (s *Server) ensureTLS() error {
	s.tlsOnce.Do(func() { s.tlsErr = s.makeTLS() })
	return s.tlsErr
}

func (s *Server) makeTLS() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	notBefore := time.Now().Add(-time.Hour) // TLS checks use real time, not the sim clock
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "m365sim test CA", Organization: []string{"m365sim"}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	s.caPool = x509.NewCertPool()
	s.caPool.AddCert(ca)
	s.leaf = tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}
	return nil
}

// --- stats ---------------------------------------------------------------------------------

// Stats are request counters. Routes are named by kind: "token", "openid-configuration",
// "keys", "adminconsent", "authorize", "users", "user", "manager", "users/delta", "groups", "group", "groups/delta",
// "members", "transitiveMembers", "servicePrincipals", "appRoleAssignments", "sendMail",
// "sentItems", "admin", "unhandled".
type Stats struct {
	Total     int64            `json:"total"`     // every request except the admin API
	Graph     int64            `json:"graph"`     // requests under /v1.0/
	Faults    int64            `json:"faults"`    // requests answered by a fault
	Unhandled int64            `json:"unhandled"` // requests the sim does not implement (501)
	Routes    map[string]int64 `json:"routes"`
	// GraphByTenant counts the Graph requests with a valid token per tenant (the token's tid),
	// also those then refused (403, 400, 404…). Requests answered by an injected fault, or
	// refused for their token, name no tenant and are not in it.
	GraphByTenant map[string]int64 `json:"graphByTenant"`
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Total: s.total, Faults: s.faulted, Unhandled: s.unhandled.Load(), Routes: maps.Clone(s.routes), GraphByTenant: maps.Clone(s.byTenant)}
	for k, v := range s.routes {
		if graphRoute(k) {
			st.Graph += v
		}
	}
	return st
}

func graphRoute(kind string) bool {
	if strings.HasPrefix(kind, "bot-") { // Bot Framework metadata and Bot Connector
		return false
	}
	switch kind {
	case "token", "openid-configuration", "keys", "adminconsent", "authorize", "admin", "unhandled":
		return false
	}
	return true
}

// ResetStats zeroes the counters (not Unhandled, which tests assert over a whole run).
func (s *Server) ResetStats() {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total, s.faulted = 0, 0
	clear(s.routes)
	clear(s.byTenant)
}

// GraphRequests is the number of Graph requests made with a token of the tenant since the last
// ResetStats (Stats.GraphByTenant): benchmarks divide it by the changes they made.
func (s *Server) GraphRequests(tenantID string) int64 {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byTenant[strings.ToLower(tenantID)]
}

// Unhandled is the number of requests the sim did not recognise; tests assert it stays zero.
func (s *Server) Unhandled() int64 { return s.unhandled.Load() }

// --- routing -------------------------------------------------------------------------------

type route struct {
	kind string
	h    func(w http.ResponseWriter, r *http.Request)
}

// ServeHTTP routes one request. Unknown requests answer 501 and count as Unhandled.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	start := time.Now()
	reqID := uuid.NewString()
	w.Header().Set("request-id", reqID)
	w.Header().Set("client-request-id", cmp.Or(r.Header.Get("client-request-id"), reqID))
	rt := s.route(r)
	if rt.kind == "" {
		rt = route{"unhandled", s.unhandledRequest}
	}
	s.mu.Lock()
	if rt.kind != "admin" {
		s.total++
	}
	s.routes[rt.kind]++
	s.mu.Unlock()
	if rt.kind != "admin" && rt.kind != "unhandled" {
		if f := s.fault(r); f != nil {
			if f.Delay > 0 {
				t := time.NewTimer(f.Delay)
				select {
				case <-t.C:
				case <-r.Context().Done():
					t.Stop()
					return
				}
			}
			if f.Status != 0 {
				s.mu.Lock()
				s.faulted++
				s.mu.Unlock()
				s.writeFault(w, r, f)
				s.opts.Logger.InfoContext(r.Context(), "m365sim fault", "method", r.Method, "path", r.URL.Path, "status", f.Status)
				return
			}
		}
	}
	rt.h(w, r)
	s.opts.Logger.DebugContext(r.Context(), "m365sim request", "method", r.Method, "url", r.URL.String(), "route", rt.kind, "dur", time.Since(start))
}

func (s *Server) unhandledRequest(w http.ResponseWriter, r *http.Request) {
	s.unhandled.Add(1)
	msg := fmt.Sprintf("m365sim: unhandled request %s %s (the simulated tenant does not implement it; add it to m365sim or fix the caller)", r.Method, r.URL.RequestURI())
	s.opts.Logger.WarnContext(r.Context(), msg)
	s.graphError(w, r, http.StatusNotImplemented, "NotImplemented", msg)
}

func (s *Server) route(r *http.Request) route {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1.0/"):
		return s.graphRoute(r, strings.Split(strings.TrimPrefix(p, "/v1.0/"), "/"))
	case strings.HasPrefix(p, "/bot/"), strings.HasPrefix(p, "/botframework/"):
		return s.botRoute(r)
	case strings.HasPrefix(p, "/_sim/"):
		if s.opts.Admin {
			return route{"admin", s.serveAdmin}
		}
		return route{}
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	switch {
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration" && r.Method == http.MethodGet:
		return route{"openid-configuration", s.openIDConfiguration}
	case len(parts) == 3 && parts[1] == "v2.0" && parts[2] == "adminconsent" && r.Method == http.MethodGet:
		return route{"adminconsent", s.adminConsent}
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "authorize" && r.Method == http.MethodGet:
		return route{"authorize", s.authorize}
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token" && r.Method == http.MethodPost:
		return route{"token", s.token}
	case len(parts) == 4 && parts[1] == "discovery" && parts[2] == "v2.0" && parts[3] == "keys" && r.Method == http.MethodGet:
		return route{"keys", s.keys}
	}
	return route{}
}

// --- ids -----------------------------------------------------------------------------------

// uuidFrom derives a stable UUID from parts (service principal ids and the like).
func uuidFrom(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	var b [16]byte
	copy(b[:], h[:16])
	return formatUUID(b)
}

// formatUUID marks b as a version 4 UUID and formats it in the 8-4-4-4-12 form (stable and
// seeded ids; random ones come from uuid.NewString).
func formatUUID(b [16]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return uuid.UUID(b).String()
}

// baseURL is the scheme and host the request came in on (links are built from it).
func baseURL(r *http.Request) string {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}
