package mailtest

import (
	"context"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/outmail"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// Mailer is what the outbound pipeline needs of a Graph mail client.
type Mailer interface {
	SendMail(ctx context.Context, tenantID string, m outmail.Message) error
	FindSent(ctx context.Context, tenantID, mailbox, internetMessageID string) (bool, error)
	Mailbox(ctx context.Context, tenantID, address string) (entra.User, error)
}

// The suite's tenant and app.
const (
	Tenant       = "5c1d2e3f-4a5b-4d6b-9a8e-3b9e7c214f0a"
	ClientID     = "a1b2c3d4-e5f6-4d5e-8f90-6d0a4f3e1b2c"
	ClientSecret = "mailtest-secret"
	Sender       = "notify@contoso.example"
)

// Conformance runs the mail suite against the client newMailer builds for a simulated tenant
// (Tenant, with app ClientID/ClientSecret consented to Mail.Send and Mail.ReadBasic.All and a
// mailbox Sender): what is sent is captured as sent, found in Sent Items by its
// internetMessageId, and every failure has the kind the pipeline's policy expects.
func Conformance(t *testing.T, newMailer func(t *testing.T, sim *m365sim.Server) Mailer) {
	sim := testenv.StartSim(t, m365sim.Options{Mail: m365sim.MailLimits{PerMinute: 2}})
	sim.AddTenant(Tenant, "contoso.example")
	sim.RegisterApp(ClientID, ClientSecret)
	if err := sim.Consent(Tenant, ClientID, "User.Read.All", "Mail.Send", "Mail.ReadBasic.All"); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.AddUser(Tenant, m365sim.User{DisplayName: "Notifications", Mail: Sender, UserPrincipalName: Sender, AccountEnabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.AddUser(Tenant, m365sim.User{DisplayName: "No mailbox", UserPrincipalName: "nobox@contoso.example", AccountEnabled: true}); err != nil {
		t.Fatal(err)
	}
	c := newMailer(t, sim)
	ctx := t.Context()
	msg := func(id, to string) outmail.Message {
		return outmail.Message{From: Sender, To: []outmail.Address{{Address: to, Name: "Pat"}}, Subject: "Hello", HTML: true, Body: "<p>Hi</p>",
			InternetMessageID: id, Headers: map[string]string{"X-LeapChange-Batch": "b1"}, ReplyTo: []outmail.Address{{Address: "team@contoso.example"}}}
	}

	t.Run("send and find", func(t *testing.T) {
		id := "<b1.0000001@leapchange.mail>"
		if found, err := c.FindSent(ctx, Tenant, Sender, id); err != nil || found {
			t.Fatalf("before sending: found %v, %v", found, err)
		}
		if err := c.SendMail(ctx, Tenant, msg(id, "pat@fabrikam.example")); err != nil {
			t.Fatal(err)
		}
		sent := sim.SentMail(Tenant)
		if len(sent) != 1 || sent[0].InternetMessageID != id || sent[0].To[0] != "pat@fabrikam.example" || sent[0].ContentType != "html" ||
			sent[0].Headers["X-LeapChange-Batch"] != "b1" || len(sent[0].ReplyTo) != 1 {
			t.Fatalf("captured %+v", sent)
		}
		if found, err := c.FindSent(ctx, Tenant, Sender, id); err != nil || !found {
			t.Fatalf("after sending: found %v, %v", found, err)
		}
	})
	t.Run("mailbox", func(t *testing.T) {
		u, err := c.Mailbox(ctx, Tenant, Sender)
		if err != nil || u.Mail != Sender {
			t.Fatalf("Mailbox(%s) = %+v, %v", Sender, u, err)
		}
		if u, err := c.Mailbox(ctx, Tenant, "nobox@contoso.example"); err != nil || u.Mail != "" {
			t.Fatalf("a user without a mailbox: %+v, %v", u, err)
		}
		if _, err := c.Mailbox(ctx, Tenant, "ghost@contoso.example"); errkind.Of(err) != errkind.NotFound {
			t.Fatalf("an unknown mailbox: %v, want NotFound", err)
		}
	})
	for _, tc := range []struct {
		name  string
		stage func()
		m     outmail.Message
		kind  errkind.Kind
		retry bool // a Retry-After comes with it
	}{
		{"unknown sender", func() {}, func() outmail.Message {
			m := msg("<x1@leapchange.mail>", "a@fabrikam.example")
			m.From = "ghost@contoso.example"
			return m
		}(), errkind.NotFound, false},
		{"recipient refused", func() {}, msg("<x2@leapchange.mail>", "a@bounce.invalid"), errkind.Invalid, false},
		{"access policy", func() { sim.SetMailAccessPolicy(Tenant, ClientID, "other@contoso.example") }, msg("<x3@leapchange.mail>", "a@fabrikam.example"), errkind.Forbidden, false},
		{"rate limit", func() { sim.ClearMailAccessPolicy(Tenant, ClientID) }, msg("<x4@leapchange.mail>", "a@fabrikam.example"), errkind.Throttled, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.stage()
			before := len(sim.SentMail(Tenant))
			err := c.SendMail(ctx, Tenant, tc.m)
			if tc.kind == errkind.Throttled && err == nil {
				err = c.SendMail(ctx, Tenant, msg("<x5@leapchange.mail>", "b@fabrikam.example")) // the second of this minute at 2/min
			}
			if errkind.Of(err) != tc.kind {
				t.Fatalf("got %v (kind %s), want kind %s", err, errkind.Of(err), tc.kind)
			}
			if got := errkind.RetryAfterOf(err) > 0; got != tc.retry || (tc.retry && errkind.RetryAfterOf(err) > time.Minute) {
				t.Fatalf("Retry-After %v, want one: %v", errkind.RetryAfterOf(err), tc.retry)
			}
			if tc.kind != errkind.Throttled && len(sim.SentMail(Tenant)) != before {
				t.Fatal("a refused mail was captured as sent")
			}
		})
	}
}
