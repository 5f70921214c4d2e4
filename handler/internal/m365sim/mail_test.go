package m365sim_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

const (
	senderUPN  = "ines@fabrikam.example"
	senderMail = "Ines.Okafor@fabrikam.example"
	otherMail  = "tom@fabrikam.example"
)

// mailSim is a sim whose tenant A consented Mail.Send and Mail.ReadBasic.All, with a sender
// mailbox (ines), a second mailbox (tom), a user without a mailbox and a soft-deleted user.
func mailSim(t *testing.T, opts m365sim.Options) (sim *m365sim.Server, clk *clock, tok string, ines m365sim.User) {
	t.Helper()
	return mailSimWith(t, opts, newSim)
}

// mailSimRaw is mailSim without the Unhandled() == 0 check.
func mailSimRaw(t *testing.T, opts m365sim.Options) (sim *m365sim.Server, clk *clock, tok string, ines m365sim.User) {
	t.Helper()
	return mailSimWith(t, opts, newSimRaw)
}

func mailSimWith(t *testing.T, opts m365sim.Options, start func(*testing.T, m365sim.Options) (*m365sim.Server, *clock)) (sim *m365sim.Server, clk *clock, tok string, ines m365sim.User) {
	t.Helper()
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = 100 * time.Hour // the limit tests move the clock by days
	}
	sim, clk = start(t, opts)
	if err := sim.Consent(tenantA, clientID, "User.Read.All", "Mail.Send", "Mail.ReadBasic.All"); err != nil {
		t.Fatal(err)
	}
	ines, err := sim.AddUser(tenantA, m365sim.User{DisplayName: "Ines Okafor", UserPrincipalName: senderUPN, Mail: senderMail, AccountEnabled: true})
	if err != nil {
		t.Fatal(err)
	}
	sim.AddUser(tenantA, m365sim.User{DisplayName: "Tom", UserPrincipalName: "tom.upn@fabrikam.example", Mail: otherMail, AccountEnabled: true})
	sim.AddUser(tenantA, m365sim.User{DisplayName: "No Mailbox", UserPrincipalName: "nomail@fabrikam.example", AccountEnabled: true})
	gone, _ := sim.AddUser(tenantA, m365sim.User{DisplayName: "Gone", UserPrincipalName: "gone@fabrikam.example", Mail: "gone@fabrikam.example", AccountEnabled: true})
	if err := sim.SoftDeleteUser(tenantA, gone.ID); err != nil {
		t.Fatal(err)
	}
	return sim, clk, token(t, sim, tenantA), ines
}

func post(t *testing.T, sim *m365sim.Server, tok, path, body string) (int, http.Header, map[string]any) {
	t.Helper()
	st, h, b, m := call(t, sim, "POST", tok, path, strings.NewReader(body), "Content-Type", "application/json")
	if st == 202 && len(b) != 0 {
		t.Errorf("202 with a body: %s", b)
	}
	return st, h, m
}

func errMessage(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}

// mailJSON is a sendMail body to the given recipients.
func mailJSON(subject string, to ...string) string {
	var rs []string
	for _, a := range to {
		rs = append(rs, fmt.Sprintf(`{"emailAddress":{"address":%q}}`, a))
	}
	return fmt.Sprintf(`{"message":{"subject":%q,"body":{"contentType":"Text","content":"hello"},"toRecipients":[%s]}}`, subject, strings.Join(rs, ","))
}

func sendPath(mailbox string) string { return "/v1.0/users/" + url.PathEscape(mailbox) + "/sendMail" }

func TestSendMailAccepted(t *testing.T) {
	sim, clk, tok, ines := mailSim(t, m365sim.Options{})
	body := `{"message":{"subject":"Change: new HR system","body":{"contentType":"HTML","content":"<p>Hi</p>"},
		"toRecipients":[{"emailAddress":{"address":"a@contoso.example","name":"A"}}],
		"ccRecipients":[{"emailAddress":{"address":"c@contoso.example"}}],
		"bccRecipients":[{"emailAddress":{"address":"b@contoso.example"}}],
		"replyTo":[{"emailAddress":{"address":"r@contoso.example"}}],
		"internetMessageId":"<n1.d1@leapchange.example>",
		"internetMessageHeaders":[{"name":"X-LeapChange-Delivery","value":"n1/d1"}]},
		"saveToSentItems":true}`
	st, h, m := post(t, sim, tok, sendPath(senderUPN), body)
	if st != 202 || h.Get("request-id") == "" {
		t.Fatalf("send: %d %v %v", st, h, m)
	}
	// By object id, by mail in another case, saveToSentItems as a string (as Graph's own example).
	for _, box := range []string{ines.ID, strings.ToUpper(senderMail)} {
		if st, _, m := post(t, sim, tok, sendPath(box), `{"message":{"toRecipients":[{"emailAddress":{"address":"d@contoso.example"}}]},"saveToSentItems":"false"}`); st != 202 {
			t.Fatalf("send as %s: %d %v", box, st, m)
		}
	}
	sent := sim.SentMail(tenantA)
	if len(sent) != 3 {
		t.Fatalf("sent %d mails", len(sent))
	}
	got := sent[0]
	want := m365sim.SentMail{
		From: senderMail, To: []string{"a@contoso.example"}, Cc: []string{"c@contoso.example"}, Bcc: []string{"b@contoso.example"},
		ReplyTo: []string{"r@contoso.example"}, Subject: "Change: new HR system", ContentType: "html", Content: "<p>Hi</p>",
		InternetMessageID: "<n1.d1@leapchange.example>", Headers: map[string]string{"X-LeapChange-Delivery": "n1/d1"},
		SavedToSentItems: true, SentAt: clk.Now().UTC(), ClientID: clientID,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("captured\n %+v\nwant\n %+v", got, want)
	}
	if !regexp.MustCompile(`^<[0-9A-F]{32}@[a-z0-9.]+>$`).MatchString(sent[1].InternetMessageID) || sent[1].InternetMessageID == sent[2].InternetMessageID {
		t.Errorf("generated ids %q %q", sent[1].InternetMessageID, sent[2].InternetMessageID)
	}
	if sent[1].SavedToSentItems || sent[1].ContentType != "text" || sent[2].From != senderMail {
		t.Errorf("second mail %+v", sent[1])
	}
	if s := sim.MailStats(); s.Accepted != 3 || s.Recipients != 5 || s.Violations() != 0 || s.InFlight != 0 || s.PeakConcurrency != 1 {
		t.Errorf("stats %+v", s)
	}
	if sim.Stats().Routes["sendMail"] != 3 {
		t.Errorf("route stats %+v", sim.Stats().Routes)
	}
}

func TestSendMailValidation(t *testing.T) {
	sim, _, tok, _ := mailSim(t, m365sim.Options{})
	many := make([]string, 501)
	for i := range many {
		many[i] = fmt.Sprintf("u%d@contoso.example", i)
	}
	headers := func(names ...string) string {
		var hs []string
		for _, n := range names {
			hs = append(hs, fmt.Sprintf(`{"name":%q,"value":"v"}`, n))
		}
		return `{"message":{"toRecipients":[{"emailAddress":{"address":"a@contoso.example"}}],"internetMessageHeaders":[` + strings.Join(hs, ",") + `]}}`
	}
	withID := func(id string) string {
		return fmt.Sprintf(`{"message":{"toRecipients":[{"emailAddress":{"address":"a@contoso.example"}}],"internetMessageId":%q}}`, id)
	}
	for _, tc := range []struct {
		name, body string
		code, msg  string
	}{
		{"malformed JSON", `{"message":`, "BadRequest", "Unable to read JSON request payload"},
		{"no message", `{"saveToSentItems":true}`, "ErrorInvalidParameter", ""},
		{"no recipients", `{"message":{"subject":"x","toRecipients":[]}}`, "ErrorInvalidRecipients", "A message can't be sent because it contains no recipients."},
		{"501 recipients", mailJSON("x", many...), "ErrorInvalidRecipients", "The limit is 500. This message has 501 recipients."},
		{"not an address", mailJSON("x", "a@contoso.example", "not-an-address"), "ErrorInvalidRecipients", "Recipient 'not-an-address' is not resolved."},
		{"display form", mailJSON("x", "A <a@contoso.example>"), "ErrorInvalidRecipients", "is not resolved"},
		{"empty address", `{"message":{"ccRecipients":[{"emailAddress":{"name":"x"}}]}}`, "ErrorInvalidRecipients", "Recipient '' is not resolved."},
		{".invalid domain (sim convention)", `{"message":{"toRecipients":[{"emailAddress":{"address":"ok@contoso.example"}}],"bccRecipients":[{"emailAddress":{"address":"bounce@nowhere.invalid"}}]}}`, "ErrorInvalidRecipients", "Recipient 'bounce@nowhere.invalid' is not resolved."},
		{"header without x-", headers("X-Ok", "Notification-Id"), "InvalidInternetMessageHeader", "The internet message header name 'Notification-Id' should start with 'x-' or 'X-'."},
		{"six headers", headers("x-1", "x-2", "x-3", "x-4", "x-5", "x-6"), "InvalidInternetMessageHeaderCollection", "less than or equal to 5"},
		{"empty header collection", headers(), "InvalidInternetMessageHeaderCollection", ""},
		{"message id without brackets", withID("n1@leapchange.example"), "InvalidInternetMessageId", ""},
		{"message id without @", withID("<n1>"), "InvalidInternetMessageId", ""},
		{"bad content type", `{"message":{"body":{"contentType":"markdown","content":"x"},"toRecipients":[{"emailAddress":{"address":"a@contoso.example"}}]}}`, "RequestBodyRead", ""},
		{"bad saveToSentItems", `{"message":{"toRecipients":[{"emailAddress":{"address":"a@contoso.example"}}]},"saveToSentItems":"maybe"}`, "BadRequest", "Edm.Boolean"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, m := post(t, sim, tok, sendPath(senderUPN), tc.body)
			if st != 400 || errCode(m) != tc.code || !strings.Contains(errMessage(m), tc.msg) {
				t.Fatalf("%d %v, want 400 %s %q", st, m, tc.code, tc.msg)
			}
		})
	}
	if n := len(sim.SentMail(tenantA)); n != 0 {
		t.Errorf("%d mails captured", n)
	}
	if s := sim.MailStats(); s.Accepted != 0 || s.Invalid != 15 {
		t.Errorf("stats %+v", s)
	}
	// Exactly 500 recipients and 5 headers are fine.
	if st, _, m := post(t, sim, tok, sendPath(senderUPN), mailJSON("x", many[:500]...)); st != 202 {
		t.Errorf("500 recipients: %d %v", st, m)
	}
	if st, _, m := post(t, sim, tok, sendPath(senderUPN), headers("x-1", "X-2", "x-3", "x-4", "x-5")); st != 202 {
		t.Errorf("5 headers: %d %v", st, m)
	}
}

func TestSendMailMailboxAndPermission(t *testing.T) {
	sim, _, tok, _ := mailSimRaw(t, m365sim.Options{})
	if err := sim.Consent(tenantB, clientID, "User.Read.All"); err != nil {
		t.Fatal(err)
	}
	tokB := token(t, sim, tenantB)
	for _, tc := range []struct {
		name, tok, box string
		status         int
		code, msg      string
	}{
		{"unknown mailbox", tok, "nobody@fabrikam.example", 404, "ErrorInvalidUser", "The requested user 'nobody@fabrikam.example' is invalid."},
		{"user of another tenant", tok, "tom.weber@contoso.example", 404, "ErrorInvalidUser", "The requested user 'tom.weber@contoso.example' is invalid."},
		{"user without mailbox", tok, "nomail@fabrikam.example", 404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise."},
		{"soft-deleted user", tok, "gone@fabrikam.example", 404, "MailboxNotEnabledForRESTAPI", ""},
		{"no Mail.Send", tokB, senderUPN, 403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."},
		{"no token", "", senderUPN, 401, "InvalidAuthenticationToken", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, m := post(t, sim, tc.tok, sendPath(tc.box), mailJSON("x", "a@contoso.example"))
			if st != tc.status || errCode(m) != tc.code || !strings.Contains(errMessage(m), tc.msg) {
				t.Fatalf("%d %v, want %d %s", st, m, tc.status, tc.code)
			}
		})
	}
	if n := len(sim.SentMail(tenantA)); n != 0 {
		t.Errorf("%d mails captured", n)
	}
	// Other methods and folders are not implemented: 501 and counted.
	before := sim.Unhandled()
	if st, _, _ := get(t, sim, tok, sendPath(senderUPN)); st != 501 {
		t.Errorf("GET sendMail: %d", st)
	}
	if st, _, _ := get(t, sim, tok, "/v1.0/users/"+senderUPN+"/mailFolders/Inbox/messages"); st != 501 {
		t.Errorf("Inbox: %d", st)
	}
	if sim.Unhandled()-before != 2 {
		t.Errorf("unhandled %d", sim.Unhandled()-before)
	}
}

func TestMailAccessPolicy(t *testing.T) {
	sim, _, tok, ines := mailSim(t, m365sim.Options{})
	if err := sim.SetMailAccessPolicy(tenantA, strings.ToUpper(clientID), strings.ToUpper(senderMail)); err != nil {
		t.Fatal(err)
	}
	const deny = "Access to OData is disabled"
	for _, tc := range []struct {
		box    string
		status int
	}{{senderUPN, 202}, {ines.ID, 202}, {otherMail, 403}} {
		st, _, m := post(t, sim, tok, sendPath(tc.box), mailJSON("x", "a@contoso.example"))
		if st != tc.status || (st == 403 && (errCode(m) != "ErrorAccessDenied" || !strings.Contains(errMessage(m), deny))) {
			t.Errorf("send as %s: %d %v, want %d", tc.box, st, m, tc.status)
		}
	}
	if st, _, m := get(t, sim, tok, sentItems(otherMail, "<x@y>")); st != 403 || errCode(m) != "ErrorAccessDenied" {
		t.Errorf("lookup of a denied mailbox: %d %v", st, m)
	}
	if st, _, _ := get(t, sim, tok, sentItems(senderUPN, "<x@y>")); st != 200 {
		t.Errorf("lookup of an allowed mailbox: %d", st)
	}
	if err := sim.SetMailAccessPolicy("no-such-tenant", clientID); err == nil {
		t.Error("policy for an unknown tenant accepted")
	}
	if err := sim.ClearMailAccessPolicy(tenantA, clientID); err != nil {
		t.Fatal(err)
	}
	if st, _, m := post(t, sim, tok, sendPath(otherMail), mailJSON("x", "a@contoso.example")); st != 202 {
		t.Errorf("after clear: %d %v", st, m)
	}
	if len(sim.SentMail(tenantA)) != 3 {
		t.Errorf("sent %d", len(sim.SentMail(tenantA)))
	}
}

func retryAfter(t *testing.T, h http.Header) time.Duration {
	t.Helper()
	f, err := strconv.ParseFloat(h.Get("Retry-After"), 64)
	if err != nil || f <= 0 {
		t.Fatalf("Retry-After %q", h.Get("Retry-After"))
	}
	return time.Duration(f * float64(time.Second))
}

func TestMailLimits(t *testing.T) {
	type step struct {
		advance    time.Duration // before the send
		recipients int
		status     int
		code       string
		retryAfter string // on 429
	}
	rcpts := func(n int) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = fmt.Sprintf("r%d@contoso.example", i)
		}
		return l
	}
	for _, tc := range []struct {
		name   string
		limits m365sim.MailLimits
		steps  []step
		stat   func(m365sim.MailStats) int64
	}{
		{
			name:   "messages per minute",
			limits: m365sim.MailLimits{PerMinute: 2},
			steps: []step{
				{0, 1, 202, "", ""},
				{58750 * time.Millisecond, 1, 202, "", ""},
				{0, 1, 429, "ApplicationThrottled", "1.25"},           // the first leaves the window at 60 s
				{time.Second, 1, 429, "ApplicationThrottled", "0.25"}, // the refusal did not count
			},
			stat: func(s m365sim.MailStats) int64 { return s.ThrottledRate },
		},
		{
			name:   "recipients per 24 hours",
			limits: m365sim.MailLimits{DailyRecipients: 5},
			steps: []step{
				{0, 3, 202, "", ""},
				{time.Hour, 3, 429, "ErrorSubmissionQuotaExceeded", "82800"},
				{0, 2, 202, "", ""}, // 3 + 2 = 5: the refused 3 did not count
				{30 * time.Minute, 1, 429, "ErrorSubmissionQuotaExceeded", "81000"},
				{0, 6, 429, "ErrorSubmissionQuotaExceeded", "86400"}, // never fits
			},
			stat: func(s m365sim.MailStats) int64 { return s.ThrottledDaily },
		},
		{
			name:   "Outlook requests per 10 minutes",
			limits: m365sim.MailLimits{RequestsPer10Min: 2},
			steps: []step{
				{0, 1, 202, "", ""},
				{90 * time.Second, 1, 202, "", ""},
				{500 * time.Millisecond, 1, 429, "ApplicationThrottled", "509.5"},
			},
			stat: func(s m365sim.MailStats) int64 { return s.ThrottledRequests },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, clk, tok, _ := mailSim(t, m365sim.Options{Mail: tc.limits})
			accepted, refused := 0, int64(0)
			var last http.Header
			for i, s := range tc.steps {
				clk.Advance(s.advance)
				st, h, m := post(t, sim, tok, sendPath(senderUPN), mailJSON(fmt.Sprint(i), rcpts(s.recipients)...))
				if st != s.status || errCode(m) != s.code || (st == 429 && h.Get("Retry-After") != s.retryAfter) {
					t.Fatalf("step %d: %d %q %v, want %d %s %q", i, st, h.Get("Retry-After"), m, s.status, s.code, s.retryAfter)
				}
				if st == 202 {
					accepted++
				} else {
					refused++
					last = h
				}
			}
			if n := len(sim.SentMail(tenantA)); n != accepted {
				t.Errorf("captured %d, want %d", n, accepted)
			}
			ms := sim.MailStats()
			if tc.stat(ms) != refused || ms.Violations() != refused || ms.Accepted != int64(accepted) {
				t.Errorf("stats %+v", ms)
			}
			// After the last Retry-After the same request goes through; a mailbox of its own
			// never was limited by this one.
			clk.Advance(retryAfter(t, last))
			if st, _, m := post(t, sim, tok, sendPath(senderUPN), mailJSON("again", "a@contoso.example")); st != 202 {
				t.Errorf("after Retry-After: %d %v", st, m)
			}
			if st, _, m := post(t, sim, tok, sendPath(otherMail), mailJSON("other", "a@contoso.example")); st != 202 {
				t.Errorf("other mailbox: %d %v", st, m)
			}
		})
	}
}

func TestMailLimitsDisabledAndRuntime(t *testing.T) {
	sim, _, tok, _ := mailSim(t, m365sim.Options{Mail: m365sim.MailLimits{PerMinute: -1}})
	if l := sim.MailLimits(); l.PerMinute != -1 || l.Concurrency != 4 || l.DailyRecipients != 10000 || l.RequestsPer10Min != 10000 || l.Latency != 0 {
		t.Errorf("limits %+v", l)
	}
	for i := range 40 {
		if st, _, m := post(t, sim, tok, sendPath(senderUPN), mailJSON(fmt.Sprint(i), "a@contoso.example")); st != 202 {
			t.Fatalf("send %d: %d %v", i, st, m)
		}
	}
	sim.SetMailLimits(m365sim.MailLimits{PerMinute: 40})
	if st, _, _ := post(t, sim, tok, sendPath(senderUPN), mailJSON("41", "a@contoso.example")); st != 429 {
		t.Errorf("after SetMailLimits: %d", st)
	}
}

func TestMailConcurrency(t *testing.T) {
	sim, _, tok, _ := mailSim(t, m365sim.Options{Mail: m365sim.MailLimits{Concurrency: 2, Latency: time.Hour}})
	var wg sync.WaitGroup
	statuses := make(chan int, 3)
	send := func(box string) {
		wg.Go(func() {
			st, _, _ := post(t, sim, tok, sendPath(box), mailJSON("c", "a@contoso.example"))
			statuses <- st
		})
	}
	waitInFlight := func(n int) {
		t.Helper()
		for sim.MailStats().InFlight != n {
			select {
			case <-t.Context().Done():
				t.Fatalf("in flight %d, want %d", sim.MailStats().InFlight, n)
			case <-time.After(time.Millisecond):
			}
		}
	}
	send(senderUPN)
	send(senderUPN)
	waitInFlight(2)
	st, h, m := post(t, sim, tok, sendPath(senderUPN), mailJSON("third", "a@contoso.example"))
	if st != 429 || errCode(m) != "ApplicationThrottled" || !strings.Contains(errMessage(m), "MailboxConcurrency") || h.Get("Retry-After") == "" {
		t.Fatalf("third concurrent send: %d %v %v", st, h, m)
	}
	send(otherMail) // another mailbox has its own slots
	waitInFlight(3)
	if s := sim.MailStats(); s.PeakConcurrency != 2 || s.ThrottledConcurrency != 1 || s.Accepted != 3 {
		t.Errorf("stats %+v", s)
	}
	sim.SetMailLimits(m365sim.MailLimits{Concurrency: 2}) // Latency 0 releases the waiting sends
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != 202 {
			t.Errorf("waiting send answered %d", st)
		}
	}
	if s := sim.MailStats(); s.InFlight != 0 || len(sim.SentMail(tenantA)) != 3 {
		t.Errorf("after release: %+v, %d sent", s, len(sim.SentMail(tenantA)))
	}
	if st, _, _ := post(t, sim, tok, sendPath(senderUPN), mailJSON("later", "a@contoso.example")); st != 202 {
		t.Errorf("after release: %d", st)
	}
}

func sentItems(box, id string) string {
	f := "internetMessageId eq '" + strings.ReplaceAll(id, "'", "''") + "'"
	return "/v1.0/users/" + url.PathEscape(box) + "/mailFolders/SentItems/messages?$filter=" + url.QueryEscape(f) + "&$select=id,internetMessageId,subject,sentDateTime"
}

func TestSentItemsLookup(t *testing.T) {
	sim, clk, tok, ines := mailSimRaw(t, m365sim.Options{})
	const id = "<o'brien.1@leapchange.example>"
	post(t, sim, tok, sendPath(senderUPN), fmt.Sprintf(`{"message":{"subject":"Saved","toRecipients":[{"emailAddress":{"address":"a@contoso.example"}}],"internetMessageId":%q}}`, id))
	post(t, sim, tok, sendPath(senderUPN), `{"message":{"subject":"Unsaved","toRecipients":[{"emailAddress":{"address":"a@contoso.example"}}],"internetMessageId":"<unsaved@leapchange.example>"},"saveToSentItems":false}`)

	st, _, m := get(t, sim, tok, sentItems(senderUPN, id))
	v, _ := m["value"].([]any)
	if st != 200 || len(v) != 1 {
		t.Fatalf("lookup: %d %v", st, m)
	}
	item := v[0].(map[string]any)
	if item["internetMessageId"] != id || item["subject"] != "Saved" || item["sentDateTime"] != clk.Now().UTC().Format("2006-01-02T15:04:05Z") || item["id"] == "" {
		t.Errorf("item %v", item)
	}
	if _, ok := item["toRecipients"]; ok {
		t.Errorf("$select ignored: %v", item)
	}
	if !strings.HasSuffix(m["@odata.context"].(string), "/mailFolders('SentItems')/messages(id,internetMessageId,subject,sentDateTime)") {
		t.Errorf("context %v", m["@odata.context"])
	}
	// The other folder-segment forms and the mailbox's other names find it too.
	for _, p := range []string{
		strings.Replace(sentItems(ines.ID, id), "mailFolders/SentItems", "mailFolders('SentItems')", 1),
		strings.Replace(sentItems(senderMail, id), "mailFolders/SentItems", "mailFolders/sentitems", 1),
	} {
		if st, _, m := get(t, sim, tok, p); st != 200 || len(m["value"].([]any)) != 1 {
			t.Errorf("%s: %d %v", p, st, m)
		}
	}
	for _, tc := range []struct{ name, path string }{
		{"not saved", sentItems(senderUPN, "<unsaved@leapchange.example>")},
		{"never sent", sentItems(senderUPN, "<nope@leapchange.example>")},
		{"other mailbox", sentItems(otherMail, id)},
	} {
		if st, _, m := get(t, sim, tok, tc.path); st != 200 || len(m["value"].([]any)) != 0 {
			t.Errorf("%s: %d %v", tc.name, st, m)
		}
	}

	// Errors.
	if err := sim.Consent(tenantB, clientID, "Mail.Send"); err != nil {
		t.Fatal(err)
	}
	if st, _, m := get(t, sim, token(t, sim, tenantB), sentItems(senderUPN, id)); st != 403 || errCode(m) != "ErrorAccessDenied" {
		t.Errorf("without a read role: %d %v", st, m)
	}
	if st, _, m := get(t, sim, tok, sentItems("nobody@fabrikam.example", id)); st != 404 || errCode(m) != "ErrorInvalidUser" {
		t.Errorf("unknown mailbox: %d %v", st, m)
	}
	base := "/v1.0/users/" + senderUPN + "/mailFolders/SentItems/messages"
	if st, _, m := get(t, sim, tok, base+"?$filter="+url.QueryEscape("internetMessageId eq 'unterminated")); st != 400 {
		t.Errorf("unterminated literal: %d %v", st, m)
	}
	if st, _, m := get(t, sim, tok, base+"?$filter="+url.QueryEscape("internetMessageId eq '"+id+"'")+"&$select=nosuch"); st != 400 || errCode(m) != "RequestBroker--ParseUri" {
		t.Errorf("unknown $select: %d %v", st, m)
	}
	// Without $select: every property the sim keeps.
	st, _, m = get(t, sim, tok, base+"?$filter="+url.QueryEscape("internetMessageId eq '"+strings.ReplaceAll(id, "'", "''")+"'"))
	if v := m["value"].([]any); st != 200 || len(v) != 1 || v[0].(map[string]any)["from"] == nil {
		t.Errorf("no $select: %d %v", st, m)
	}
	// Filters Graph supports but the sim does not: 501, counted as unhandled.
	before := sim.Unhandled()
	for _, q := range []string{"?$filter=" + url.QueryEscape("subject eq 'Saved'"), "", "?$orderby=sentDateTime"} {
		if st, _, m := get(t, sim, tok, base+q); st != 501 {
			t.Errorf("%q: %d %v", q, st, m)
		}
	}
	if sim.Unhandled()-before != 3 {
		t.Errorf("unhandled %d", sim.Unhandled()-before)
	}
	if sim.Stats().Routes["sentItems"] == 0 {
		t.Errorf("route stats %v", sim.Stats().Routes)
	}
}

func TestMailFaults(t *testing.T) {
	sim, _, tok, _ := mailSim(t, m365sim.Options{})
	if err := sim.AddFault(m365sim.FaultRule{Method: "POST", PathRegexp: `/sendMail$`, Times: 1, Status: 503, RetryAfter: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	st, h, m := post(t, sim, tok, sendPath(senderUPN), mailJSON("x", "a@contoso.example"))
	if st != 503 || errCode(m) != "ServiceUnavailable" || h.Get("Retry-After") != "2" {
		t.Fatalf("fault: %d %v %v", st, h, m)
	}
	if len(sim.SentMail(tenantA)) != 0 || sim.MailStats().Accepted != 0 {
		t.Error("faulted send captured")
	}
	if st, _, _ := post(t, sim, tok, sendPath(senderUPN), mailJSON("x", "a@contoso.example")); st != 202 {
		t.Errorf("after the fault: %d", st)
	}
	if sim.Stats().Faults != 1 {
		t.Errorf("stats %+v", sim.Stats())
	}
}

func TestMailAdmin(t *testing.T) {
	sim, _, tok, _ := mailSim(t, m365sim.Options{Admin: true})
	var lim map[string]any
	if st := admin(t, sim, "PUT", "/_sim/mail/limits", `{"perMinute":3,"latency":"250ms"}`, &lim); st != 200 || lim["perMinute"] != 3.0 || lim["latency"] != 250.0 || lim["concurrency"] != 4.0 {
		t.Fatalf("PUT limits: %d %v", st, lim)
	}
	if st := admin(t, sim, "PUT", "/_sim/mail/limits", `{"perMinute":2,"latency":0}`, &lim); st != 200 || sim.MailLimits() != (m365sim.MailLimits{PerMinute: 2, Concurrency: 4, DailyRecipients: 10000, RequestsPer10Min: 10000}) {
		t.Fatalf("PUT limits (ms): %d %+v", st, sim.MailLimits())
	}
	if st := admin(t, sim, "GET", "/_sim/mail/limits", "", &lim); st != 200 || lim["perMinute"] != 2.0 || lim["latency"] != 0.0 {
		t.Fatalf("GET limits: %d %v", st, lim)
	}
	if st := admin(t, sim, "PUT", "/_sim/mail/limits", `{"latency":"soon"}`, nil); st != 400 {
		t.Errorf("bad latency: %d", st)
	}
	if st := admin(t, sim, "PUT", "/_sim/tenants/"+tenantA+"/mail/access-policy", `{"clientId":"`+clientID+`","allowed":["`+senderMail+`"]}`, nil); st != 204 {
		t.Fatalf("PUT policy: %d", st)
	}
	if st, _, _ := post(t, sim, tok, sendPath(otherMail), mailJSON("x", "a@contoso.example")); st != 403 {
		t.Errorf("denied by policy: %d", st)
	}
	if st := admin(t, sim, "DELETE", "/_sim/tenants/"+tenantA+"/mail/access-policy?clientId="+clientID, "", nil); st != 204 {
		t.Fatalf("DELETE policy: %d", st)
	}
	for i, want := range []int{202, 202, 429} {
		if st, _, _ := post(t, sim, tok, sendPath(otherMail), mailJSON(fmt.Sprint(i), "a@contoso.example")); st != want {
			t.Errorf("send %d: %d, want %d", i, st, want)
		}
	}
	var sent []m365sim.SentMail
	if st := admin(t, sim, "GET", "/_sim/tenants/"+tenantA+"/mail", "", &sent); st != 200 || len(sent) != 2 || sent[0].From != otherMail || sent[1].Subject != "1" {
		t.Fatalf("GET mail: %d %+v", st, sent)
	}
	if st := admin(t, sim, "GET", "/_sim/tenants/"+tenantA+"/mail?since=1", "", &sent); st != 200 || len(sent) != 1 || sent[0].Subject != "1" {
		t.Fatalf("GET mail since: %d %+v", st, sent)
	}
	if st := admin(t, sim, "GET", "/_sim/tenants/"+tenantA+"/mail?since=9", "", &sent); st != 200 || len(sent) != 0 {
		t.Fatalf("GET mail since past the end: %d %+v", st, sent)
	}
	if st := admin(t, sim, "GET", "/_sim/tenants/nope/mail", "", nil); st != 404 {
		t.Errorf("unknown tenant: %d", st)
	}
	var stats map[string]any
	if st := admin(t, sim, "GET", "/_sim/mail/stats", "", &stats); st != 200 || stats["accepted"] != 2.0 || stats["throttledRate"] != 1.0 || stats["violations"] != 1.0 || stats["denied"] != 1.0 {
		t.Fatalf("stats: %d %v", st, stats)
	}
	if st := admin(t, sim, "DELETE", "/_sim/mail/stats", "", nil); st != 204 || sim.MailStats() != (m365sim.MailStats{}) {
		t.Errorf("reset stats: %d %+v", st, sim.MailStats())
	}
}

// TestMailSteadyRate sends at exactly the per-minute limit for several minutes: every send is
// admitted, and one more at the same instant is refused until the oldest leaves the window.
func TestMailSteadyRate(t *testing.T) {
	sim, clk, tok, _ := mailSim(t, m365sim.Options{Mail: m365sim.MailLimits{PerMinute: 100, DailyRecipients: -1}})
	for i := range 300 {
		if i > 0 {
			clk.Advance(600 * time.Millisecond)
		}
		if st, _, m := post(t, sim, tok, sendPath(senderUPN), mailJSON(fmt.Sprint(i), "a@contoso.example")); st != 202 {
			t.Fatalf("send %d: %d %v", i, st, m)
		}
	}
	st, h, _ := post(t, sim, tok, sendPath(senderUPN), mailJSON("extra", "a@contoso.example"))
	if st != 429 || h.Get("Retry-After") != "0.6" {
		t.Fatalf("extra: %d %q", st, h.Get("Retry-After"))
	}
	if s := sim.MailStats(); s.Accepted != 300 || s.ThrottledRate != 1 || len(sim.SentMail(tenantA)) != 300 {
		t.Errorf("stats %+v", s)
	}
}
