package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/api"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/mailsettings"
	"github.com/leapchange/m365/handler/internal/mailtest"
	"github.com/leapchange/m365/handler/internal/org"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/pacing"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// noTenant stands in for the consent flow's tenant release, which these tests never reach.
type noTenant struct{}

func (noTenant) Disconnect(context.Context, tablestore.Org) error    { return nil }
func (noTenant) Forget(context.Context, tablestore.Org) (int, error) { return 0, nil }

// mailFixture serves the API over the outbound pipeline with the simulated tenant.
type mailFixture struct {
	*fixture
	env    *testenv.Env
	people []string
}

const mailOrg = "/api/orgs/org-m"

func setupMail(t *testing.T, withSettings bool) *mailFixture {
	t.Helper()
	env := testenv.New(t, testenv.Options{Permissions: []string{"User.Read.All", "GroupMember.Read.All", "Mail.Send"}})
	for _, u := range []m365sim.User{
		{DisplayName: "Notifications", Mail: "notify@contoso.example", UserPrincipalName: "notify@contoso.example", AccountEnabled: true},
		{DisplayName: "Room", UserPrincipalName: "room@contoso.example", AccountEnabled: true},
	} {
		if _, err := env.Sim.AddUser(testenv.Tenant, u); err != nil {
			t.Fatal(err)
		}
	}
	o := tablestoretest.Org(t, "org-m")
	conns := connection.NewStore(env.Store)
	if _, err := conns.Put(t.Context(), o, connection.Record{Status: connection.Connected, TenantID: testenv.Tenant, Granted: []string{"User.Read.All", "Mail.Send"}}, ""); err != nil {
		t.Fatal(err)
	}
	orgs := org.New(org.Config{Store: env.Store, Tenant: noTenant{}})
	if _, _, err := orgs.Register(t.Context(), o, org.Registration{DisplayName: "M", TimeZone: "Europe/London"}); err != nil {
		t.Fatal(err)
	}
	ms := mailsettings.NewStore(env.Store)
	if withSettings {
		if _, err := ms.Put(t.Context(), o, mailsettings.Settings{Senders: []string{"notify@contoso.example"}}, ""); err != nil {
			t.Fatal(err)
		}
	}
	people, groups := stakeholder.NewStore(env.Store), stakeholder.NewGroups(env.Store)
	f := &mailFixture{fixture: &fixture{store: env.Store, q: env.Queue}, env: env}
	for i := range 3 {
		st := stakeholder.Stakeholder{ID: stakeholder.NewID(), FirstName: fmt.Sprint("P", i), Email: fmt.Sprintf("p%d@fabrikam.example", i), Source: stakeholder.Manual, Active: true}
		if _, err := people.Save(t.Context(), o, st, nil, ""); err != nil {
			t.Fatal(err)
		}
		f.people = append(f.people, st.ID)
	}
	pacer, _ := pacing.New(env.Store, pacing.Exchange)
	mailer := &mailtest.Client{Base: env.Sim.GraphURL(), HTTP: env.HTTPClient(), Creds: env.Credentials(testenv.Secret)}
	pipeline := outbound.New(outbound.Config{Store: env.Store, Queue: env.Queue, Stakeholders: people, Groups: groups, Connections: conns,
		MailSettings: ms, Pacer: pacer, Mailer: mailer})
	f.srv = httptest.NewServer(api.New(api.Deps{Orgs: orgs, Connections: conns, Stakeholders: people, Groups: groups,
		Messages: pipeline, MailSettings: ms, Mailboxes: mailer}))
	t.Cleanup(f.srv.Close)
	return f
}

// TestMailSettingsAreCheckedAgainstTheTenant: form first, then every sender in the tenant; a bad
// document writes nothing.
func TestMailSettingsAreCheckedAgainstTheTenant(t *testing.T) {
	f := setupMail(t, false)
	if a := f.do(t, "GET", mailOrg+"/m365/settings/mail", "", ""); a.status != 200 || a.raw == "" {
		t.Fatalf("GET before any PUT = %d %s", a.status, a.raw)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"senders":[]}`, "senders"},
		{`{"senders":["not an address"]}`, "senders[0]"},
		{`{"senders":["notify@contoso.example","NOTIFY@contoso.example"]}`, "senders[1]"},
		{`{"senders":["notify@contoso.example"],"replyTo":"nope"}`, "replyTo"},
		{`{"senders":["ghost@contoso.example"]}`, "senders[0]"},
		{`{"senders":["notify@contoso.example","room@contoso.example"]}`, "senders[1]"},
		{`{"senders":["notify@contoso.example"],"extra":1}`, "body"},
	} {
		a := f.do(t, "PUT", mailOrg+"/m365/settings/mail", "application/json", tc.body)
		if a.status != 400 || !strings.Contains(a.raw, `"`+tc.field+`"`) {
			t.Errorf("PUT %s = %d %s, want 400 naming %s", tc.body, a.status, a.raw, tc.field)
		}
	}
	if a := f.do(t, "GET", mailOrg+"/m365/settings/mail", "", ""); a.header.Get("ETag") != "" {
		t.Fatalf("a refused PUT stored settings: %s", a.raw)
	}
	a := f.do(t, "PUT", mailOrg+"/m365/settings/mail", "application/json", `{"senders":[" notify@contoso.example "],"replyTo":"team@contoso.example"}`)
	if a.status != 200 || a.header.Get("ETag") == "" || !strings.Contains(a.raw, `"notify@contoso.example"`) {
		t.Fatalf("PUT = %d %s", a.status, a.raw)
	}
}

// TestMessagesAPI: not set up → 409; bad input → 400 naming the field, nothing written; a good
// send → 202 with the batch; the same idempotency key → 200 and the same batch; the batch view,
// its rows and the cancel.
func TestMessagesAPI(t *testing.T) {
	unset := setupMail(t, false)
	body := func(extra string) string {
		return `{"recipients":{"stakeholderIds":["` + strings.Join(unset.people, `","`) + `"]},"channels":["mail"],"kind":"notification","subject":"Hi","text":"Hello"` + extra + `}`
	}
	if a := unset.do(t, "POST", mailOrg+"/messages", "application/json", body("")); a.status != 409 || !strings.Contains(a.raw, "channel-not-ready") {
		t.Fatalf("POST without a sender mailbox = %d %s", a.status, a.raw)
	}

	f := setupMail(t, true)
	body = func(extra string) string {
		return `{"recipients":{"stakeholderIds":["` + strings.Join(f.people, `","`) + `"]},"channels":["mail"],"kind":"notification","subject":"Hi","text":"Hello"` + extra + `}`
	}
	for _, tc := range []struct{ body, field string }{
		{`{"channels":["mail"],"kind":"notification","subject":"Hi","text":"x"}`, "recipients"},
		{strings.Replace(body(""), `"kind":"notification"`, `"kind":"spam"`, 1), "kind"},
		{strings.Replace(body(""), `["mail"]`, `["pigeon"]`, 1), "channels[0]"},
		{body(`,"scheduleAt":"2001-01-01T00:00:00Z"`), "scheduleAt"},
		{body(`,"html":"<p>{{shoeSize}}</p>"`), "html"},
		{strings.Replace(body(""), `"subject":"Hi"`, `"subject":""`, 1), "subject"},
		{body(`,"bogus":true`), "body"},
		{`{"recipients":{"groupIds":["no-such-group"]},"channels":["mail"],"kind":"notification","subject":"Hi","text":"x"}`, "groupIds[0]"},
	} {
		a := f.do(t, "POST", mailOrg+"/messages", "application/json", tc.body)
		if a.status != 400 || !strings.Contains(a.raw, `"`+tc.field+`"`) {
			t.Errorf("POST %s = %d %s, want 400 naming %s", tc.body, a.status, a.raw, tc.field)
		}
	}
	if a := f.do(t, "GET", mailOrg+"/messages", "", ""); !strings.Contains(a.raw, `"batches":[]`) || len(f.env.Queue.Published()) != 0 {
		t.Fatalf("bad requests wrote something: %s, %d messages", a.raw, len(f.env.Queue.Published()))
	}

	req, _ := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+mailOrg+"/messages", strings.NewReader(body("")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "send-1")
	first := send(t, req)
	if first.status != 202 || first.body["batchId"] == nil || first.header.Get("Location") == "" || first.body["created"] != true {
		t.Fatalf("POST = %d %s", first.status, first.raw)
	}
	req, _ = http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+mailOrg+"/messages", strings.NewReader(body("")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "send-1")
	second := send(t, req)
	if second.status != 200 || second.body["batchId"] != first.body["batchId"] || second.body["created"] != false {
		t.Fatalf("retried POST = %d %s, want 200 and batch %v", second.status, second.raw, first.body["batchId"])
	}
	id := first.body["batchId"].(string)
	for _, tc := range []struct{ path, field string }{
		{"/messages/" + id + "?status=lost", "status"},
		{"/messages/" + id + "?after=zzz", "after"},
		{"/messages/" + id + "?limit=0", "limit"},
		{"/messages?after=nope", "after"},
	} {
		if a := f.do(t, "GET", mailOrg+tc.path, "", ""); a.status != 400 || !strings.Contains(a.raw, `"`+tc.field+`"`) {
			t.Errorf("GET %s = %d %s", tc.path, a.status, a.raw)
		}
	}
	for _, path := range []string{"/messages/bffffffffffff00000000", "/messages/not-a-batch"} {
		if a := f.do(t, "GET", mailOrg+path, "", ""); a.status != 404 {
			t.Errorf("GET %s = %d", path, a.status)
		}
	}
	a := f.do(t, "GET", mailOrg+"/messages/"+id+"?limit=2", "", "")
	var view struct {
		Counts map[string]int `json:"counts"`
		Rows   []struct {
			ID, Status string
		} `json:"deliveryRows"`
		Next string `json:"next"`
	}
	if err := json.Unmarshal([]byte(a.raw), &view); err != nil || a.status != 200 || view.Counts["scheduled"] != 3 || len(view.Rows) != 2 || view.Next == "" {
		t.Fatalf("GET batch = %d %s", a.status, a.raw)
	}
	a = f.do(t, "DELETE", mailOrg+"/messages/"+id, "", "")
	if a.status != 200 || a.body["cancelled"] != float64(3) || a.body["state"] != "cancelled" {
		t.Fatalf("DELETE = %d %s", a.status, a.raw)
	}
	if a := f.do(t, "GET", mailOrg+"/messages", "", ""); !strings.Contains(a.raw, id) {
		t.Fatalf("list = %s", a.raw)
	}
}
