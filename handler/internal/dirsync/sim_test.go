package dirsync_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/graphkind"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// userSelect is the $select of the stakeholder sync (manager only through users/delta).
const userSelect = "id,givenName,surname,displayName,mail,userPrincipalName,mobilePhone,businessPhones,department,jobTitle,officeLocation,accountEnabled"

// graphDir is a plain net/http Graph client for the simulated tenant implementing dirsync's
// directory interface: the test's stand-in for the graph package, which these tests must not
// compile.
type graphDir struct {
	base  string
	hc    *http.Client
	creds *m365auth.Credentials
	calls atomic.Int64
	// Requests by kind, for the tests of what a run under a group filter costs.
	groupsDelta, transitive, users, groups atomic.Int64
}

// newGraphDir returns a stand-in signing in as app (the conformance suite registers its own).
func newGraphDir(sim *m365sim.Server, app, clientSecret string) *graphDir {
	return &graphDir{
		base: sim.GraphURL(),
		hc:   sim.HTTPClient(),
		creds: m365auth.New(m365auth.Config{ClientID: app, ClientSecret: clientSecret,
			AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()}),
	}
}

type wireRef struct {
	ID      string          `json:"id"`
	Removed json.RawMessage `json:"@removed"`
}

// wireUser is a user as Graph sends it: the simulated tenant's User has Graph's property names.
type wireUser struct {
	m365sim.User
	AccountEnabled *bool     `json:"accountEnabled"` // absent: enabled
	ManagerDelta   []wireRef `json:"manager@delta"`
	Removed        *struct {
		Reason string `json:"reason"`
	} `json:"@removed"`
}

func (w wireUser) user() entra.User {
	u := entra.User{ID: w.ID, GivenName: w.GivenName, Surname: w.Surname, DisplayName: w.DisplayName,
		Mail: w.Mail, UserPrincipalName: w.UserPrincipalName, MobilePhone: w.MobilePhone,
		BusinessPhones: w.BusinessPhones, Department: w.Department, JobTitle: w.JobTitle,
		OfficeLocation: w.OfficeLocation, AccountEnabled: w.AccountEnabled == nil || *w.AccountEnabled}
	if w.Removed != nil {
		u.Removed = entra.Removal(w.Removed.Reason)
	}
	for _, r := range w.ManagerDelta {
		if len(r.Removed) == 0 {
			u.ManagerID = r.ID
		}
	}
	return u
}

// get does one authorized GET and maps a Graph error answer to an *errkind.Error.
func (g *graphDir) get(ctx context.Context, tenant, link string, hdr http.Header, out any) error {
	g.calls.Add(1)
	cred, err := g.creds.ForTenant(tenant)
	if err != nil {
		return err
	}
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{m365auth.GraphScope}})
	if err != nil {
		return m365auth.Classify(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err := g.hc.Do(req)
	if err != nil {
		return &errkind.Error{Kind: errkind.Unavailable, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return &errkind.Error{Kind: errkind.Unavailable, Err: err}
	}
	if resp.StatusCode/100 != 2 {
		if resp.StatusCode == http.StatusTooManyRequests {
			entra.RequestStatsFrom(ctx).Throttled() // as the graph transport counts an answer it gives up on
		}
		return graphError(resp, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return &errkind.Error{Kind: errkind.Invalid, Message: link + ": " + err.Error(), Err: err}
	}
	return nil
}

func (g *graphDir) UsersDelta(ctx context.Context, tenant, link string) (entra.UserPage, error) {
	if link == "" {
		link = g.base + "/users/delta?$select=" + url.QueryEscape(userSelect+",manager")
	}
	var page struct {
		Value     []wireUser `json:"value"`
		NextLink  string     `json:"@odata.nextLink"`
		DeltaLink string     `json:"@odata.deltaLink"`
	}
	if err := g.get(ctx, tenant, link, nil, &page); err != nil {
		return entra.UserPage{}, err
	}
	out := entra.UserPage{NextLink: page.NextLink, DeltaLink: page.DeltaLink}
	for _, w := range page.Value {
		out.Users = append(out.Users, w.user())
	}
	return out, nil
}

func (g *graphDir) User(ctx context.Context, tenant, id string) (entra.User, error) {
	g.users.Add(1)
	var w wireUser
	if err := g.get(ctx, tenant, g.base+"/users/"+url.PathEscape(id)+"?$select="+url.QueryEscape(userSelect), nil, &w); err != nil {
		return entra.User{}, err
	}
	u := w.user()
	var m struct {
		ID string `json:"id"`
	}
	err := g.get(ctx, tenant, g.base+"/users/"+url.PathEscape(id)+"/manager?$select=id", nil, &m)
	switch {
	case err == nil:
		u.ManagerID = m.ID
	case errkind.Of(err) != errkind.NotFound: // no manager is a 404
		return entra.User{}, err
	}
	return u, nil
}

func (g *graphDir) Group(ctx context.Context, tenant, id string) (entra.Group, error) {
	g.groups.Add(1)
	var w struct {
		ID          string `json:"id"`
		DisplayName string `json:"displayName"`
		Description string `json:"description"`
	}
	if err := g.get(ctx, tenant, g.base+"/groups/"+url.PathEscape(id)+"?$select=id,displayName,description", nil, &w); err != nil {
		return entra.Group{}, err
	}
	return entra.Group{ID: w.ID, DisplayName: w.DisplayName, Description: w.Description}, nil
}

func (g *graphDir) TransitiveUserIDs(ctx context.Context, tenant, groupID string) ([]string, error) {
	g.transitive.Add(1)
	link := g.base + "/groups/" + url.PathEscape(groupID) + "/transitiveMembers/microsoft.graph.user?$select=id&$count=true"
	hdr := http.Header{"Consistencylevel": {"eventual"}}
	var ids []string
	for link != "" {
		var page struct {
			Value []struct {
				ID string `json:"id"`
			} `json:"value"`
			NextLink string `json:"@odata.nextLink"`
		}
		if err := g.get(ctx, tenant, link, hdr, &page); err != nil {
			return nil, err
		}
		for _, v := range page.Value {
			ids = append(ids, v.ID)
		}
		link = page.NextLink
	}
	return ids, nil
}

// wireGroup is a groups/delta entry as Graph sends it.
type wireGroup struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	Description string `json:"description"`
	Members     []struct {
		Type    string          `json:"@odata.type"`
		ID      string          `json:"id"`
		Removed json.RawMessage `json:"@removed"`
	} `json:"members@delta"`
	Removed *struct {
		Reason string `json:"reason"`
	} `json:"@removed"`
}

// groupsDeltaStart is the link that starts a groups/delta round over the groups ids (every group
// when there are none), with params (such as "&$deltatoken=latest") added.
func (g *graphDir) groupsDeltaStart(ids []string, params string) string {
	link := g.base + "/groups/delta?$select=displayName,description,members" + params
	if len(ids) > 0 {
		clauses := make([]string, len(ids))
		for i, id := range ids {
			clauses[i] = "id eq '" + id + "'"
		}
		link += "&$filter=" + url.QueryEscape(strings.Join(clauses, " or "))
	}
	return link
}

func (g *graphDir) GroupsDelta(ctx context.Context, tenant, link string, ids []string) (entra.GroupPage, error) {
	g.groupsDelta.Add(1)
	if link == "" {
		link = g.groupsDeltaStart(ids, "")
	}
	var page struct {
		Value     []wireGroup `json:"value"`
		NextLink  string      `json:"@odata.nextLink"`
		DeltaLink string      `json:"@odata.deltaLink"`
	}
	if err := g.get(ctx, tenant, link, nil, &page); err != nil {
		return entra.GroupPage{}, err
	}
	out := entra.GroupPage{NextLink: page.NextLink, DeltaLink: page.DeltaLink}
	for _, w := range page.Value {
		gr := entra.Group{ID: w.ID, DisplayName: w.DisplayName, Description: w.Description}
		if w.Removed != nil {
			gr.Removed = entra.Removal(w.Removed.Reason)
			if gr.Removed != entra.SoftDeleted {
				gr.Removed = entra.HardDeleted
			}
		}
		for _, m := range w.Members {
			isGroup := strings.HasSuffix(strings.ToLower(m.Type), ".group")
			if !isGroup && !strings.HasSuffix(strings.ToLower(m.Type), ".user") {
				continue
			}
			gr.Members = append(gr.Members, entra.MemberChange{ID: m.ID, IsGroup: isGroup, Removed: len(m.Removed) > 0})
		}
		out.Groups = append(out.Groups, gr)
	}
	return out, nil
}

// graphError classifies a Graph error answer exactly as the graph package does (graphkind).
func graphError(resp *http.Response, body []byte) error {
	return graphkind.FromAnswer(resp.StatusCode, resp.Header, body)
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

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// advanceTo moves the clock on to t, if t is later.
func (c *clock) advanceTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
}

// killer is the Table Storage transport of a test: armed, it lets the next stakeholder write
// through and then fails the run checkpoint that follows it (a PUT on the syncruns table), as if
// the process died between its writes and its checkpoint.
type killer struct {
	base   policy.Transporter
	prefix string
	mu     sync.Mutex
	armed  bool
	wrote  bool
	kills  atomic.Int32
	// watch, when set, sees every request (after a $batch body is read into body).
	watch func(r *http.Request, body []byte)
	// fail, when set, answers 503 (server busy) to each request it returns true for.
	fail func(r *http.Request, body []byte) bool
}

type killed struct{}

func (killed) Error() string { return "test: process killed before the checkpoint" }
func (killed) NonRetriable() {}

func (k *killer) arm() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.armed, k.wrote = true, false
}

// setWatch and setFail set watch and fail under the lock: the transport reads them on the
// engine's goroutines.
func (k *killer) setWatch(watch func(r *http.Request, body []byte)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.watch = watch
}

func (k *killer) setFail(fail func(r *http.Request, body []byte) bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fail = fail
}

// peekBody reads r's body and puts it back for the transport.
func peekBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

func (k *killer) Do(r *http.Request) (*http.Response, error) {
	k.mu.Lock()
	armed, watch := k.armed, k.watch
	k.mu.Unlock()
	if watch != nil {
		body, err := peekBody(r)
		if err != nil {
			return nil, err
		}
		watch(r, body)
	}
	k.mu.Lock()
	fail := k.fail
	k.mu.Unlock()
	if fail != nil {
		body, err := peekBody(r)
		if err != nil {
			return nil, err
		}
		if fail(r, body) {
			return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Server Busy", Header: http.Header{},
				Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
		}
	}
	if !armed {
		return k.base.Do(r)
	}
	if strings.HasSuffix(r.URL.Path, "$batch") && r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		// Inserts name the table alone ("…/stakeholders?…" or "…/stakeholders HTTP/1.1"), updates with keys.
		if bytes.Contains(b, []byte("/"+k.prefix+stakeholder.Table)) {
			resp, err := k.base.Do(r)
			if err == nil && resp.StatusCode/100 == 2 {
				k.mu.Lock()
				k.wrote = true
				k.mu.Unlock()
			}
			return resp, err
		}
	}
	if r.Method == http.MethodPut && strings.Contains(r.URL.Path, k.prefix+dirsync.RunsTable+"(") {
		k.mu.Lock()
		kill := k.wrote
		if kill {
			k.armed = false
		}
		k.mu.Unlock()
		if kill {
			k.kills.Add(1)
			return nil, killed{}
		}
	}
	return k.base.Do(r)
}

// env is one org connected to one simulated tenant, with its own tables.
type env struct {
	sim   *m365sim.Server
	store *tablestore.Store
	kill  *killer
	dir   *graphDir
	conns *connection.Store
	q     *queuetest.Queue // sync-jobs
	clock *clock
	eng   *dirsync.Engine
	org   tablestore.Org
	shs   *stakeholder.Store
	grps  *stakeholder.Groups
}

// syncRacingEdits runs a sync during which edit (given the edit's number, from 1) runs max
// times, each time the store is about to apply a $batch whose body holds every one of marks — a
// Leap Change edit racing the sync's write. The run must succeed, and the race must have been
// staged max times.
func (e *env) syncRacingEdits(t *testing.T, max int, edit func(n int), marks ...string) dirsync.Run {
	t.Helper()
	var editing atomic.Bool
	var edited atomic.Int32
	run := e.syncWatching(t, func(r *http.Request, body []byte) {
		if !strings.HasSuffix(r.URL.Path, "$batch") || int(edited.Load()) >= max {
			return
		}
		for _, m := range marks {
			if !bytes.Contains(body, []byte(m)) {
				return
			}
		}
		if !editing.CompareAndSwap(false, true) {
			return // the edit's own requests
		}
		defer editing.Store(false)
		edit(int(edited.Add(1)))
	})
	wantState(t, run, dirsync.Succeeded)
	if n := int(edited.Load()); n != max {
		t.Fatalf("%d racing edits, want %d: the race was not staged", n, max)
	}
	return run
}

// newRig starts the simulated tenant (pages of pageSize) and a Table Storage of the test's own
// behind a killer, through the project's rig (testenv).
func newRig(t *testing.T, pageSize int) (*m365sim.Server, *tablestore.Store, *killer) {
	t.Helper()
	k := &killer{base: http.DefaultClient}
	rig := testenv.New(t, testenv.Options{Sim: m365sim.Options{PageSize: pageSize}, StoreTransport: k})
	k.prefix = rig.Store.Prefix()
	return rig.Sim, rig.Store, k
}

// newEngine builds an engine over store and sim for org, connecting org to the tenant.
func newEngine(t *testing.T, sim *m365sim.Server, store *tablestore.Store, k *killer, org tablestore.Org) *env {
	t.Helper()
	conns := connection.NewStore(store)
	if _, err := conns.Put(t.Context(), org, connection.Record{Status: connection.Connected, TenantID: testenv.Tenant}, ""); err != nil {
		t.Fatal(err)
	}
	e := &env{sim: sim, store: store, kill: k, conns: conns, q: &queuetest.Queue{}, org: org, dir: newGraphDir(sim, testenv.ClientID, testenv.Secret),
		clock: &clock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), tick: 100 * time.Millisecond},
		shs:   stakeholder.NewStore(store), grps: stakeholder.NewGroups(store)}
	e.configure(func(*dirsync.Config) {})
	return e
}

// configure replaces the engine with one configured as these tests usually do (a step budget
// of 250 ms of the test's clock, giving up after 3 failures), changed by fn.
func (e *env) configure(fn func(*dirsync.Config)) {
	cfg := dirsync.Config{Store: e.store, Directory: e.dir, Queue: e.q,
		Tenants: e.conns, Now: e.clock.Now, StepBudget: 250 * time.Millisecond, GiveUpAfter: 3}
	fn(&cfg)
	e.eng = dirsync.New(cfg)
}

// onePagePerStep ends every step after its first page or chunk, with a few more failures allowed.
func onePagePerStep(c *dirsync.Config) { c.StepBudget, c.GiveUpAfter = time.Nanosecond, 5 }

// setup starts an empty simulated tenant (page size 50) and an engine for org "org-a".
func setup(t *testing.T) *env {
	t.Helper()
	sim, store, k := newRig(t, 50)
	return newEngine(t, sim, store, k, tablestoretest.Org(t, "org-a"))
}

// addUser adds an enabled user with a full profile and returns its id.
func (e *env) addUser(t *testing.T, given, surname string, mod ...func(*m365sim.User)) string {
	t.Helper()
	upn := strings.ToLower(given+"."+surname) + "@contoso.example"
	u := m365sim.User{GivenName: given, Surname: surname, DisplayName: given + " " + surname, Mail: upn, UserPrincipalName: upn,
		Department: "Operations", JobTitle: "Analyst", OfficeLocation: "London", MobilePhone: "+44 20 0000 0000", AccountEnabled: true}
	for _, f := range mod {
		f(&u)
	}
	got, err := e.sim.AddUser(testenv.Tenant, u)
	if err != nil {
		t.Fatal(err)
	}
	return got.ID
}

// addUsers adds n users named after prefix and returns their ids.
func (e *env) addUsers(t *testing.T, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.addUser(t, prefix, fmt.Sprintf("N%03d", i))
	}
	return ids
}

func (e *env) addGroup(t *testing.T, name string, members ...string) string {
	t.Helper()
	g, err := e.sim.AddGroup(testenv.Tenant, m365sim.Group{DisplayName: name, Description: name + " group", SecurityEnabled: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if err := e.sim.AddMember(testenv.Tenant, g.ID, m); err != nil {
			t.Fatal(err)
		}
	}
	return g.ID
}

func (e *env) updateUser(t *testing.T, id string, fn func(*m365sim.User)) {
	t.Helper()
	if err := e.sim.UpdateUser(testenv.Tenant, id, fn); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// settings stores org's sync settings: the defaults changed by fn.
func (e *env) settings(t *testing.T, fn func(*syncsettings.Settings)) {
	t.Helper()
	ss := syncsettings.NewStore(e.store)
	cur, etag, err := ss.Get(t.Context(), e.org)
	must(t, err)
	fn(&cur)
	if _, err := ss.Put(t.Context(), e.org, cur, etag); err != nil {
		t.Fatal(err)
	}
}

// drain delivers pending messages to Step until none is left (the queue redelivers a failed
// one and dead-letters it after its 10th delivery, which fails the test), and returns the number
// of step deliveries. A message scheduled for later moves the injected clock to its time, as the
// queue would wait for it.
func (e *env) drain(t *testing.T) int {
	t.Helper()
	n, err := e.q.Drain(t.Context(), func(ctx context.Context, d queuetest.Delivery) error {
		return e.eng.Step(ctx, d.Body, d.Count)
	}, queuetest.DrainOptions{
		Now:              e.clock.Now,
		Wait:             func(_ context.Context, until time.Time) error { e.clock.advanceTo(until); return nil },
		MaxDeliveries:    1000, // the step chain does not end
		FailOnDeadLetter: true,
	})
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	return n
}

// next takes the first pending step message in publishing order, due or not, for a test that
// delivers by hand (it moves the clock itself where the time matters).
func (e *env) next() (queuetest.Delivery, bool) {
	return e.q.Next(time.Unix(1<<40, 0)) // every message is due
}

func (e *env) startOpts(t *testing.T, o dirsync.StartOptions) dirsync.Run {
	t.Helper()
	run, started, err := e.eng.Start(t.Context(), e.org, o)
	if err != nil || !started {
		t.Fatalf("Start = %v, started %v; want a new run", err, started)
	}
	return run
}

// syncWatching is sync with watch seeing every request the run sends.
func (e *env) syncWatching(t *testing.T, watch func(r *http.Request, body []byte)) dirsync.Run {
	t.Helper()
	e.kill.setWatch(watch)
	defer e.kill.setWatch(nil)
	return e.sync(t)
}

// sync runs one whole run and returns its final record.
func (e *env) sync(t *testing.T) dirsync.Run {
	t.Helper()
	run := e.startOpts(t, dirsync.StartOptions{Trigger: "manual"})
	e.drain(t)
	return accounted(t, e.run(t, run.ID))
}

// accounted checks that a finished run puts every processed user in exactly one outcome column.
func accounted(t *testing.T, r dirsync.Run) dirsync.Run {
	t.Helper()
	if r.State == dirsync.Succeeded && r.Unaccounted() != 0 {
		t.Errorf("run %s: %d of %d processed users are in no column: %+v", r.ID, r.Unaccounted(), r.Processed, r)
	}
	return r
}

func (e *env) dryRun(t *testing.T) dirsync.Run {
	t.Helper()
	run := e.startOpts(t, dirsync.StartOptions{Trigger: "manual", DryRun: true})
	e.drain(t)
	return accounted(t, e.run(t, run.ID))
}

func (e *env) run(t *testing.T, id string) dirsync.Run {
	t.Helper()
	run, _, err := e.eng.Run(t.Context(), e.org, id)
	if err != nil {
		t.Fatalf("Run(%s): %v", id, err)
	}
	return run
}

// changes reads a run's whole change log.
func (e *env) changes(t *testing.T, runID string) []dirsync.Change {
	t.Helper()
	var out []dirsync.Change
	after := 0
	for {
		page, err := e.eng.Changes(t.Context(), e.org, runID, after, 100)
		must(t, err)
		out = append(out, page...)
		if len(page) < 100 {
			return out
		}
		after = page[len(page)-1].Seq
	}
}

// changesOf returns the log entries about one Entra user.
func changesOf(all []dirsync.Change, externalID string) []dirsync.Change {
	var out []dirsync.Change
	for _, c := range all {
		if c.ExternalID == externalID {
			out = append(out, c)
		}
	}
	return out
}

// all reads every stakeholder of org.
func (e *env) all(t *testing.T, org tablestore.Org) []stakeholder.Stakeholder {
	t.Helper()
	var out []stakeholder.Stakeholder
	after := ""
	for {
		page, next, err := e.shs.List(t.Context(), org, stakeholder.ListOptions{After: after, Limit: 1000})
		must(t, err)
		out = append(out, page...)
		if next == "" {
			return out
		}
		after = next
	}
}

// byExternal reads org's synced stakeholders by Entra id, failing on a duplicate.
func (e *env) byExternal(t *testing.T, org tablestore.Org) map[string]stakeholder.Stakeholder {
	t.Helper()
	out := map[string]stakeholder.Stakeholder{}
	for _, s := range e.all(t, org) {
		if s.ExternalID == "" {
			continue
		}
		if _, dup := out[s.ExternalID]; dup {
			t.Errorf("Entra user %s has two stakeholders", s.ExternalID)
		}
		out[s.ExternalID] = s
	}
	return out
}

// get reads the stakeholder linked to an Entra user through the index.
func (e *env) get(t *testing.T, externalID string) (stakeholder.Stakeholder, tablestore.ETag) {
	t.Helper()
	id, err := e.shs.Lookup(t.Context(), e.org, externalID, "")
	must(t, err)
	if id == "" {
		t.Fatalf("no stakeholder linked to Entra user %s", externalID)
	}
	st, etag, err := e.shs.Get(t.Context(), e.org, id)
	must(t, err)
	return st, etag
}

// edit changes a stakeholder in Leap Change, as the web app would.
func (e *env) edit(t *testing.T, externalID string, fn func(*stakeholder.Stakeholder)) {
	t.Helper()
	cur, etag := e.get(t, externalID)
	next := cur
	fn(&next)
	if _, err := e.shs.Save(t.Context(), e.org, next, &cur, etag); err != nil {
		t.Fatal(err)
	}
}

// manual creates a manual stakeholder.
func (e *env) manual(t *testing.T, org tablestore.Org, first, last, email string) stakeholder.Stakeholder {
	t.Helper()
	st := stakeholder.Stakeholder{ID: stakeholder.NewID(), FirstName: first, LastName: last, Email: email, Source: stakeholder.Manual,
		Active: true, Influence: "high", CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()}
	if _, err := e.shs.Save(t.Context(), org, st, nil, ""); err != nil {
		t.Fatal(err)
	}
	return st
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

// snapshot is every row of the tables a sync writes for org, as raw JSON by table and key.
func (e *env) snapshot(t *testing.T, org tablestore.Org) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range []string{stakeholder.Table, stakeholder.GroupsTable, stakeholder.MembershipsTable, dirsync.StateTable} {
		for row, err := range tablestore.Query[map[string]any](t.Context(), e.store.Table(name), org, tablestore.QueryOptions{}) {
			if errors.Is(err, tablestore.ErrNotFound) {
				break
			}
			must(t, err)
			v := row.Value
			if name == dirsync.StateTable {
				// The claim of the running run is not sync output.
				delete(v, "activeRunId")
				delete(v, "claimedAt")
			}
			b, _ := json.Marshal(v)
			if name != dirsync.StateTable {
				b = append(b, " etag="+string(row.ETag)...) // a rewrite with the same values is a write too
			}
			out[name+"/"+row.Key] = string(b)
		}
	}
	return out
}

// members returns the stakeholder ids of a group, sorted.
func (e *env) members(t *testing.T, groupID string) []string {
	t.Helper()
	ms, err := e.grps.MemberIDs(t.Context(), e.org, groupID)
	must(t, err)
	var out []string
	for _, m := range ms {
		out = append(out, m.StakeholderID)
	}
	slices.Sort(out)
	return out
}

// stakeholderIDs maps Entra user ids to their stakeholder ids, sorted.
func (e *env) stakeholderIDs(t *testing.T, externalIDs ...string) []string {
	t.Helper()
	var out []string
	for _, x := range externalIDs {
		st, _ := e.get(t, x)
		out = append(out, st.ID)
	}
	slices.Sort(out)
	return out
}
