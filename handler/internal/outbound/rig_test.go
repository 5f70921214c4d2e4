package outbound_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/mailsettings"
	"github.com/leapchange/m365/handler/internal/mailtest"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/outmail"
	"github.com/leapchange/m365/handler/internal/pacing"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

const sender = "notify@contoso.example"

type rig struct {
	teams  *teamsRig
	env    *testenv.Env
	clock  *testenv.Clock
	org    tablestore.Org
	p      *outbound.Pipeline
	mailer *switchMailer
	conns  *failingConnections
	people *stakeholder.Store
	groups *stakeholder.Groups
}

// switchMailer is the plain Graph mail client, with a hook a test can put in front of it.
type switchMailer struct {
	*mailtest.Client
	mu     sync.Mutex
	before func(m outmail.Message) error // runs before a send; an error stops it
	after  func(m outmail.Message) error // runs after a successful send; an error replaces success
}

func (s *switchMailer) SendMail(ctx context.Context, tenant string, m outmail.Message) error {
	s.mu.Lock()
	before, after := s.before, s.after
	s.mu.Unlock()
	if before != nil {
		if err := before(m); err != nil {
			return err
		}
	}
	if err := s.Client.SendMail(ctx, tenant, m); err != nil {
		return err
	}
	if after != nil {
		return after(m)
	}
	return nil
}

// failingConnections reads the real connection records unless a test makes it fail.
type failingConnections struct {
	*connection.Store
	fail error
}

func (f *failingConnections) Get(ctx context.Context, org tablestore.Org) (connection.Record, tablestore.ETag, error) {
	if f.fail != nil {
		return connection.Record{}, "", f.fail
	}
	return f.Store.Get(ctx, org)
}

type rigOptions struct {
	// teams wires the Teams channel: the bot on the simulated Bot Framework, the org's Teams
	// connected, the app in the tenant's catalog; teamsRate is the per-tenant rate (default 30/s).
	teams       bool
	teamsRate   int
	limits      pacing.Limits
	simLimits   m365sim.MailLimits
	senders     []string
	permissions []string
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	c := testenv.NewClock(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))
	if o.limits == (pacing.Limits{}) {
		o.limits = pacing.Exchange
	}
	if o.senders == nil {
		o.senders = []string{sender}
	}
	if o.permissions == nil {
		o.permissions = []string{"User.Read.All", "GroupMember.Read.All", "Mail.Send", "Mail.ReadBasic.All", "TeamsAppInstallation.ReadWriteSelfForUser.All"}
	}
	env := testenv.New(t, testenv.Options{Sim: m365sim.Options{Clock: c.Now, TokenLifetime: 1000 * time.Hour, Mail: o.simLimits}, Permissions: o.permissions})
	env.Queue.Now = c.Now
	for _, m := range o.senders {
		if _, err := env.Sim.AddUser(testenv.Tenant, m365sim.User{DisplayName: "Notifications", Mail: m, UserPrincipalName: m, AccountEnabled: true}); err != nil {
			t.Fatal(err)
		}
	}
	org := tablestoretest.Org(t, "acme")
	conns := connection.NewStore(env.Store)
	if _, err := conns.Put(t.Context(), org, connection.Record{Status: connection.Connected, TenantID: testenv.Tenant, Granted: o.permissions}, ""); err != nil {
		t.Fatal(err)
	}
	ms := mailsettings.NewStore(env.Store)
	if _, err := ms.Put(t.Context(), org, mailsettings.Settings{Senders: o.senders, ReplyTo: "change-team@contoso.example"}, ""); err != nil {
		t.Fatal(err)
	}
	pacer, err := pacing.New(env.Store, o.limits)
	if err != nil {
		t.Fatal(err)
	}
	mailer := &switchMailer{Client: &mailtest.Client{Base: env.Sim.GraphURL(), HTTP: env.HTTPClient(), Creds: env.Credentials(testenv.Secret)}}
	r := &rig{env: env, clock: c, org: org, mailer: mailer, conns: &failingConnections{Store: conns},
		people: stakeholder.NewStore(env.Store), groups: stakeholder.NewGroups(env.Store)}
	cfg := outbound.Config{Store: env.Store, Queue: env.Queue, Stakeholders: r.people, Groups: r.groups, Connections: r.conns,
		MailSettings: ms, Pacer: pacer, Mailer: mailer, Now: c.Now, MaxDeliveries: queuetest.MaxDeliveries}
	if o.teams {
		cfg.Teams = r.wireTeams(t, o.teamsRate)
	}
	r.p = outbound.New(cfg)
	return r
}

// person adds an active manual stakeholder and returns its id.
func (r *rig) person(t *testing.T, first, email string, active bool) string {
	t.Helper()
	st := stakeholder.Stakeholder{ID: stakeholder.NewID(), FirstName: first, LastName: "Doe", Email: email, Source: stakeholder.Manual,
		Active: active, CreatedAt: r.clock.Now(), UpdatedAt: r.clock.Now()}
	if _, err := r.people.Save(t.Context(), r.org, st, nil, ""); err != nil {
		t.Fatal(err)
	}
	return st.ID
}

// people adds n active stakeholders with addresses and returns their ids.
func (r *rig) crowd(t *testing.T, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = r.person(t, fmt.Sprintf("P%03d", i), fmt.Sprintf("p%03d@fabrikam.example", i), true)
	}
	return ids
}

func (r *rig) group(t *testing.T, id string, members []string) {
	t.Helper()
	if err := r.groups.Put(t.Context(), r.org, stakeholder.Group{ID: id, Name: id, Type: "custom", Source: stakeholder.Manual, Active: true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.groups.SetMembers(t.Context(), r.org, id, members, stakeholder.Manual, r.clock.Now()); err != nil {
		t.Fatal(err)
	}
}

func request(ids ...string) outbound.Request {
	return outbound.Request{StakeholderIDs: ids, Channels: []string{outbound.Mail}, Kind: "notification",
		Content: outbound.Content{Subject: "Change ahead, {{firstName}}", Text: "Hello {{firstName}}, the new expense tool goes live on Monday."}}
}

// handle is the function host's side: a delivery goes to the function of its queue.
func (r *rig) handle(ctx context.Context, d queuetest.Delivery) error {
	if d.Queue == queue.OutboundTeams {
		if r.teams != nil && r.teams.before != nil {
			if err := r.teams.before(d); err != nil {
				return err
			}
		}
		return r.p.HandleTeams(ctx, d.Body, d.Count)
	}
	return r.p.HandleMail(ctx, d.Body, d.Count)
}

// drain delivers every message, moving the clock to each scheduled one.
func (r *rig) drain(t *testing.T) {
	t.Helper()
	_, err := r.env.Queue.Drain(t.Context(), r.handle, queuetest.DrainOptions{
		Wait:          func(_ context.Context, until time.Time) error { r.clock.Set(until); return nil },
		MaxDeliveries: 200_000,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (r *rig) progress(t *testing.T, id string) outbound.Progress {
	t.Helper()
	b, _, err := r.p.Store().Batch(t.Context(), r.org, id)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.p.Progress(t.Context(), r.org, b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *rig) rows(t *testing.T, id string) []outbound.Delivery {
	t.Helper()
	rows, _, err := r.p.Deliveries(t.Context(), r.org, id, outbound.RowsOptions{Limit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// sentTo counts the captured mails per recipient address.
// mails counts the mails the simulated tenant sent.
func (r *rig) mails() int { return len(r.env.Sim.SentMail(testenv.Tenant)) }

// wantMails fails the test unless the tenant sent exactly want mails; when says at what point.
func (r *rig) wantMails(t *testing.T, want int, when string) {
	t.Helper()
	if n := r.mails(); n != want {
		t.Fatalf("%d mails sent (%s), want %d", n, when, want)
	}
}

func (r *rig) sentTo() map[string]int {
	out := map[string]int{}
	for _, m := range r.env.Sim.SentMail(testenv.Tenant) {
		for _, a := range append(append(m.To, m.Cc...), m.Bcc...) {
			out[a]++
		}
	}
	return out
}

// queuetestOnce drains only what is due now, without moving the clock.
func queuetestOnce() queuetest.DrainOptions {
	return queuetest.DrainOptions{Wait: func(context.Context, time.Time) error { return errStop }}
}

var errStop = fmt.Errorf("stop at the first scheduled message")

// drainConcurrently delivers messages with n workers at once, every message as if due (the
// clock does not move), redelivering failures, until nothing is pending or in flight.
func (r *rig) drainConcurrently(t *testing.T, n int) {
	t.Helper()
	var (
		mu       sync.Mutex
		inFlight int
		wg       sync.WaitGroup
		far      = time.Unix(1<<40, 0)
	)
	deadline := time.Now().Add(time.Minute) // liveness bound only
	for range n {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				mu.Lock()
				d, ok := r.env.Queue.Next(far)
				if ok {
					inFlight++
				} else if inFlight == 0 {
					mu.Unlock()
					return
				}
				mu.Unlock()
				if !ok {
					time.Sleep(time.Millisecond)
					continue
				}
				if err := r.handle(t.Context(), d); err != nil {
					r.env.Queue.Abandon(d)
				}
				mu.Lock()
				inFlight--
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// accept accepts req for the rig's org, failing the test if it is refused.
func (r *rig) accept(t *testing.T, req outbound.Request) outbound.Receipt {
	t.Helper()
	rec, err := r.p.Accept(t.Context(), r.org, req)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}
