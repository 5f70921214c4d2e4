package dirsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

const (
	tenantID = "11111111-2222-3333-4444-555555555555"
	clientID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	secret   = "s3cret-value"
)

// userSelect is the $select of the stakeholder sync.
const userSelect = "id,givenName,surname,displayName,mail,userPrincipalName,mobilePhone,businessPhones,department,jobTitle,officeLocation,accountEnabled"

// graphDir is a plain net/http users/delta client for the simulated tenant: the test's stand-in
// for the graph package, which these tests must not compile.
type graphDir struct {
	base  string
	hc    *http.Client
	creds *m365auth.Credentials
}

func newGraphDir(sim *m365sim.Server, clientSecret string) *graphDir {
	return &graphDir{
		base: sim.GraphURL(),
		hc:   sim.HTTPClient(),
		creds: m365auth.New(m365auth.Config{ClientID: clientID, ClientSecret: clientSecret,
			AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()}),
	}
}

type wireUser struct {
	ID                string   `json:"id"`
	GivenName         string   `json:"givenName"`
	Surname           string   `json:"surname"`
	DisplayName       string   `json:"displayName"`
	Mail              string   `json:"mail"`
	UserPrincipalName string   `json:"userPrincipalName"`
	MobilePhone       string   `json:"mobilePhone"`
	BusinessPhones    []string `json:"businessPhones"`
	Department        string   `json:"department"`
	JobTitle          string   `json:"jobTitle"`
	OfficeLocation    string   `json:"officeLocation"`
	AccountEnabled    *bool    `json:"accountEnabled"`
	Removed           *struct {
		Reason string `json:"reason"`
	} `json:"@removed"`
}

func (g *graphDir) UsersDelta(ctx context.Context, tenant, link string) (entra.UserPage, error) {
	cred, err := g.creds.ForTenant(tenant)
	if err != nil {
		return entra.UserPage{}, err
	}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{m365auth.GraphScope}})
	if err != nil {
		return entra.UserPage{}, m365auth.Classify(err)
	}
	if link == "" {
		link = g.base + "/users/delta?$select=" + url.QueryEscape(userSelect)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return entra.UserPage{}, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err := g.hc.Do(req)
	if err != nil {
		return entra.UserPage{}, &entra.Error{Kind: entra.KindUnavailable, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return entra.UserPage{}, &entra.Error{Kind: entra.KindUnavailable, Err: err}
	}
	if resp.StatusCode/100 != 2 {
		return entra.UserPage{}, graphError(resp, body)
	}
	var page struct {
		Value     []wireUser `json:"value"`
		NextLink  string     `json:"@odata.nextLink"`
		DeltaLink string     `json:"@odata.deltaLink"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return entra.UserPage{}, &entra.Error{Kind: entra.KindInvalid, Message: "users/delta: " + err.Error(), Err: err}
	}
	out := entra.UserPage{NextLink: page.NextLink, DeltaLink: page.DeltaLink}
	for _, w := range page.Value {
		u := entra.User{ID: w.ID, GivenName: w.GivenName, Surname: w.Surname, DisplayName: w.DisplayName,
			Mail: w.Mail, UserPrincipalName: w.UserPrincipalName, MobilePhone: w.MobilePhone,
			BusinessPhones: w.BusinessPhones, Department: w.Department, JobTitle: w.JobTitle,
			OfficeLocation: w.OfficeLocation, AccountEnabled: w.AccountEnabled == nil || *w.AccountEnabled}
		if w.Removed != nil {
			u.Removed = entra.Removal(w.Removed.Reason)
		}
		out.Users = append(out.Users, u)
	}
	return out, nil
}

// graphError maps a Graph error answer to an *entra.Error.
func graphError(resp *http.Response, body []byte) error {
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &env)
	e := &entra.Error{Kind: entra.KindOther, Status: resp.StatusCode, Code: env.Error.Code, Message: env.Error.Message}
	switch {
	case resp.StatusCode == http.StatusGone, env.Error.Code == "syncStateNotFound", env.Error.Code == "resyncRequired":
		e.Kind = entra.KindResync
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Kind = entra.KindThrottled
		if s, err := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64); err == nil && s > 0 {
			e.RetryAfter = time.Duration(s * float64(time.Second))
		}
	case resp.StatusCode == http.StatusUnauthorized:
		e.Kind = entra.KindUnauthorized
	case resp.StatusCode == http.StatusForbidden:
		e.Kind = entra.KindForbidden
	case resp.StatusCode == http.StatusNotFound:
		e.Kind = entra.KindNotFound
	case resp.StatusCode >= 500:
		e.Kind = entra.KindUnavailable
	case resp.StatusCode == http.StatusBadRequest:
		e.Kind = entra.KindInvalid
	}
	return e
}

// recorder is the test's sync-jobs queue: it keeps every published message in order.
type recorder struct {
	mu      sync.Mutex
	all     []queue.Message
	pending []queue.Message
}

func (r *recorder) Publish(_ context.Context, m queue.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, m)
	r.pending = append(r.pending, m)
	return nil
}

func (r *recorder) pop() (queue.Message, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return queue.Message{}, false
	}
	m := r.pending[0]
	r.pending = r.pending[1:]
	return m, true
}

func (r *recorder) published() []queue.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]queue.Message(nil), r.all...)
}

// clock is an injected Now that moves on by tick at every reading, so step budgets run out
// deterministically.
type clock struct {
	mu   sync.Mutex
	now  time.Time
	tick time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.tick)
	return c.now
}

// env is one org connected to one simulated tenant, with its own tables.
type env struct {
	sim   *m365sim.Server
	store *tablestore.Store
	conns *connection.Store
	q     *recorder
	clock *clock
	eng   *dirsync.Engine
	org   tablestore.Org
}

func newSim(t *testing.T, pageSize int) *m365sim.Server {
	t.Helper()
	sim := m365sim.New(m365sim.Options{PageSize: pageSize})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	sim.AddTenant(tenantID, "contoso.example")
	sim.RegisterApp(clientID, secret)
	if err := sim.Consent(tenantID, clientID, "User.Read.All", "GroupMember.Read.All"); err != nil {
		t.Fatal(err)
	}
	return sim
}

func openStore(t *testing.T) *tablestore.Store {
	t.Helper()
	conn := azuritetest.Start(t)
	store, err := tablestore.Open(t.Context(), tablestore.Config{ConnectionString: conn, Prefix: azuritetest.Prefix()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.DropTables(context.Background()) })
	return store
}

func mustOrg(t *testing.T, s string) tablestore.Org {
	t.Helper()
	org, err := tablestore.NewOrg(s)
	if err != nil {
		t.Fatal(err)
	}
	return org
}

// newEngine builds an engine over store and sim for org, connecting org to the tenant.
func newEngine(t *testing.T, sim *m365sim.Server, store *tablestore.Store, org tablestore.Org, budget time.Duration) *env {
	t.Helper()
	conns := connection.NewStore(store)
	if _, err := conns.Put(t.Context(), org, connection.Record{Status: connection.Connected, TenantID: tenantID}, ""); err != nil {
		t.Fatal(err)
	}
	e := &env{sim: sim, store: store, conns: conns, q: &recorder{}, org: org,
		clock: &clock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), tick: 100 * time.Millisecond}}
	e.eng = dirsync.New(dirsync.Config{Store: store, Directory: newGraphDir(sim, secret), Queue: e.q,
		Tenants: conns, Now: e.clock.Now, StepBudget: budget, GiveUpAfter: 3})
	return e
}

func setup(t *testing.T, users, pageSize int) *env {
	t.Helper()
	sim := newSim(t, pageSize)
	if users > 0 {
		if err := sim.Generate(tenantID, m365sim.GenSpec{Users: users, Groups: 3, Seed: 7}); err != nil {
			t.Fatal(err)
		}
	}
	return newEngine(t, sim, openStore(t), mustOrg(t, "org-a"), 250*time.Millisecond)
}

// drain delivers pending messages to Step until none is left, redelivering a failed message
// (deliveryCount+1) up to maxDeliveries, and returns the number of step deliveries.
func (e *env) drain(t *testing.T) int {
	t.Helper()
	type delivery struct {
		m     queue.Message
		count int
	}
	var retry []delivery
	n := 0
	for n < 500 {
		var d delivery
		if len(retry) > 0 {
			d, retry = retry[0], retry[1:]
		} else if m, ok := e.q.pop(); ok {
			d = delivery{m: m, count: 1}
		} else {
			return n
		}
		n++
		if err := e.eng.Step(t.Context(), d.m.Body, d.count); err != nil {
			if d.count >= 10 {
				t.Fatalf("step %s still failing after %d deliveries: %v", d.m.ID, d.count, err)
			}
			retry = append(retry, delivery{d.m, d.count + 1})
		}
	}
	t.Fatal("drain: the step chain does not end")
	return n
}

func (e *env) start(t *testing.T) dirsync.Run {
	t.Helper()
	run, started, err := e.eng.Start(t.Context(), e.org, "manual")
	if err != nil || !started {
		t.Fatalf("Start = %v, started %v; want a new run", err, started)
	}
	return run
}

// sync runs one whole run and returns its final record.
func (e *env) sync(t *testing.T) dirsync.Run {
	t.Helper()
	run := e.start(t)
	e.drain(t)
	return e.run(t, run.ID)
}

func (e *env) run(t *testing.T, id string) dirsync.Run {
	t.Helper()
	run, _, err := e.eng.Run(t.Context(), e.org, id)
	if err != nil {
		t.Fatalf("Run(%s): %v", id, err)
	}
	return run
}

// stakeholders reads every stakeholder of org, by Entra id.
func stakeholders(t *testing.T, store *tablestore.Store, org tablestore.Org) map[string]dirsync.Stakeholder {
	t.Helper()
	out := map[string]dirsync.Stakeholder{}
	for row, err := range tablestore.Query[dirsync.Stakeholder](t.Context(), store.Table(dirsync.StakeholdersTable), org, tablestore.QueryOptions{}) {
		if errors.Is(err, tablestore.ErrNotFound) {
			break // the table was never created
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[row.Value.ExternalID]; dup {
			t.Errorf("stakeholder %s stored twice", row.Value.ExternalID)
		}
		out[row.Value.ExternalID] = row.Value
	}
	return out
}

// synced strips what differs between two syncs of the same state (time of sync).
func synced(m map[string]dirsync.Stakeholder) map[string]dirsync.Stakeholder {
	out := make(map[string]dirsync.Stakeholder, len(m))
	for k, v := range m {
		v.SyncedAt = time.Time{}
		out[k] = v
	}
	return out
}

func wantState(t *testing.T, run dirsync.Run, want dirsync.State) {
	t.Helper()
	if run.State != want {
		t.Fatalf("run %s state = %s (last error %q, errors %+v), want %s", run.ID, run.State, run.LastError, run.Errors, want)
	}
}

func hasError(run dirsync.Run, code, object string) *dirsync.RunError {
	for i, e := range run.Errors {
		if e.Code == code && (object == "" || e.Object == object) {
			return &run.Errors[i]
		}
	}
	return nil
}

func fmtKey(id string) string { return fmt.Sprintf("e-%s", tablestore.KeyEscape(id)) }
