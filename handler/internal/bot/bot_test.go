package bot_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/bot"
	"github.com/leapchange/m365/handler/internal/changes"
	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// TestRefusesWhatItCannotAuthenticate: every JWT failure mode, and a tenant no org connected,
// is refused with 401 or 403, no detail, nothing stored and nothing answered.
func TestRefusesWhatItCannotAuthenticate(t *testing.T) {
	r := newRig(t)
	const strangers = "33333333-4444-5555-6666-777777777777"
	r.sim.AddTenant(strangers, "strangers.example")
	alice := r.person(t, testenv.Tenant, &r.acme, "Alice", "Adams", "alice@contoso.example", "Analyst")
	eve := r.person(t, strangers, nil, "Eve", "Evans", "eve@strangers.example", "")
	cases := []struct {
		name   string
		tenant string
		user   string
		opts   m365sim.BotSign
		want   int
	}{
		{"no Authorization header", testenv.Tenant, alice, m365sim.BotSign{NoAuthorization: true}, http.StatusUnauthorized},
		{"not a bearer token", testenv.Tenant, alice, m365sim.BotSign{Authorization: "Basic YWxhZGRpbjpvcGVuc2VzYW1l"}, http.StatusUnauthorized},
		{"bad signature", testenv.Tenant, alice, m365sim.BotSign{WrongKey: true}, http.StatusUnauthorized},
		{"unknown kid", testenv.Tenant, alice, m365sim.BotSign{UnknownKid: true}, http.StatusUnauthorized},
		{"wrong issuer", testenv.Tenant, alice, m365sim.BotSign{Issuer: "https://sts.windows.net/" + testenv.Tenant + "/"}, http.StatusUnauthorized},
		{"wrong audience", testenv.Tenant, alice, m365sim.BotSign{Audience: "00000000-0000-0000-0000-000000000001"}, http.StatusUnauthorized},
		{"expired", testenv.Tenant, alice, m365sim.BotSign{Expired: true}, http.StatusUnauthorized},
		{"not yet valid", testenv.Tenant, alice, m365sim.BotSign{NotYetValid: true}, http.StatusUnauthorized},
		{"alg none", testenv.Tenant, alice, m365sim.BotSign{AlgNone: true}, http.StatusUnauthorized},
		{"serviceUrl mismatch", testenv.Tenant, alice, m365sim.BotSign{ServiceURL: "https://smba.trafficmanager.net/amer/"}, http.StatusUnauthorized},
		{"key not endorsed for msteams", testenv.Tenant, alice, m365sim.BotSign{NoEndorsement: true}, http.StatusForbidden},
		{"tenant with no connected org", strangers, eve, m365sim.BotSign{}, http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := r.say(t, tc.tenant, tc.user, map[string]any{"text": "who is alice"}, tc.opts)
			if status != tc.want {
				t.Fatalf("status %d (%s), want %d", status, body, tc.want)
			}
			if s := string(body); strings.Contains(s, "token") || strings.Contains(s, "kid") || len(s) > 40 {
				t.Errorf("the refusal says too much: %q", s)
			}
			for _, org := range []string{"acme", "globex"} {
				o := r.acme
				if org == "globex" {
					o = r.globex
				}
				if _, _, err := r.convs.Get(t.Context(), o, tc.user); !errors.Is(err, errkind.NotFound) {
					t.Errorf("a refused activity stored a conversation reference in %s: %v", org, err)
				}
			}
			if got := r.replies(t, tc.tenant, tc.user); len(got) != 0 {
				t.Errorf("a refused activity was answered: %v", got)
			}
		})
	}
	// Correctly signed, the same message is answered (the cases above failed for their reason).
	if status, body := r.say(t, testenv.Tenant, alice, map[string]any{"text": "who is alice"}, m365sim.BotSign{}); status != http.StatusOK {
		t.Fatalf("a valid activity: %d %s", status, body)
	}
	if got := r.replies(t, testenv.Tenant, alice); len(got) != 1 || !strings.Contains(got[0], "Analyst") {
		t.Errorf("replies %v, want Alice's card", got)
	}
}

// TestRotatedKeysAreFetched: after the Bot Framework rotates its signing keys, an activity
// signed with the new key is accepted (the unknown kid makes the validator fetch the keys).
func TestRotatedKeysAreFetched(t *testing.T) {
	r := newRig(t)
	alice := r.person(t, testenv.Tenant, &r.acme, "Alice", "Adams", "alice@contoso.example", "Analyst")
	if status, _ := r.say(t, testenv.Tenant, alice, map[string]any{"text": "help"}, m365sim.BotSign{}); status != http.StatusOK {
		t.Fatalf("before rotation: %d", status)
	}
	r.sim.RotateBotKeys()
	r.clock.Advance(61 * time.Second) // keys are fetched again on an unknown kid at most once a minute
	if status, body := r.say(t, testenv.Tenant, alice, map[string]any{"text": "help"}, m365sim.BotSign{}); status != http.StatusOK {
		t.Fatalf("after rotation: %d %s", status, body)
	}
}

// TestInstallAndUninstallKeepTheReference: the install's conversationUpdate stores where the
// person is reached; removing the app marks them gone.
func TestInstallAndUninstallKeepTheReference(t *testing.T) {
	r := newRig(t)
	alice := r.person(t, testenv.Tenant, &r.acme, "Alice", "Adams", "alice@contoso.example", "Analyst")
	add := map[string]any{"type": "conversationUpdate", "membersAdded": []map[string]any{{"id": "28:" + botAppID}}}
	if status, body := r.say(t, testenv.Tenant, alice, add, m365sim.BotSign{}); status != http.StatusOK {
		t.Fatalf("install: %d %s", status, body)
	}
	ref, _, err := r.convs.Get(t.Context(), r.acme, alice)
	if err != nil || ref.State != conversations.Active || ref.ConversationID != r.sim.BotConversation(testenv.Tenant, alice) ||
		ref.ServiceURL != r.sim.BotServiceURL() || !strings.HasPrefix(ref.UserID, "29:") || !ref.FromActivity {
		t.Fatalf("reference after install: %+v %v", ref, err)
	}
	if _, _, err := r.convs.Get(t.Context(), r.globex, alice); !errors.Is(err, errkind.NotFound) {
		t.Errorf("another tenant's org got the reference: %v", err)
	}
	remove := map[string]any{"type": "installationUpdate", "action": "remove"}
	if status, _ := r.say(t, testenv.Tenant, alice, remove, m365sim.BotSign{}); status != http.StatusOK {
		t.Fatalf("uninstall: %d", status)
	}
	if ref, _, err = r.convs.Get(t.Context(), r.acme, alice); err != nil || ref.State != conversations.Uninstalled {
		t.Fatalf("reference after uninstall: %+v %v", ref, err)
	}
	// Unknown activity types are acknowledged and ignored.
	if status, _ := r.say(t, testenv.Tenant, alice, map[string]any{"type": "messageReaction"}, m365sim.BotSign{}); status != http.StatusOK {
		t.Errorf("unknown activity type: %d", status)
	}
}

// TestCommands: the bot's answers come from the asking person's org only.
func TestCommands(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	alice := r.person(t, testenv.Tenant, &r.acme, "Alice", "Adams", "alice@contoso.example", "Analyst")
	r.person(t, testenv.Tenant, &r.acme, "Zoë", "Zimmer", "zoe@contoso.example", "Controller")
	gary := r.person(t, otherTenant, &r.globex, "Gary", "Globex", "gary@globex.example", "Spy")
	aliceID := stakeholderID(alice)
	if err := groupWith(t, r, "finance", aliceID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []changes.Change{
		{ID: "chg-1", Title: "Office move to Harbour Street", Status: changes.InProgress, ImpactedStakeholderIDs: []string{aliceID}, URL: "https://app.leapchange.example/changes/chg-1"},
		{ID: "chg-2", Title: "New expense tool", Status: changes.Planned, ImpactedGroupIDs: []string{"finance"}, Description: "Replaces the spreadsheets."},
		{ID: "chg-3", Title: "Warehouse robots", Status: changes.Planned},
	} {
		if _, _, _, err := r.changes.Put(ctx, r.acme, c, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err := r.changes.Put(ctx, r.globex, changes.Change{ID: "chg-9", Title: "Globex secret merger", Status: changes.Planned}, ""); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, tenant, user, text string
		want, not                []string
	}{
		{"help", testenv.Tenant, alice, "help", []string{"my changes", "who is"}, nil},
		{"unknown input is help", testenv.Tenant, alice, "what is the weather", []string{"my changes"}, nil},
		{"mention markup is stripped", testenv.Tenant, alice, "<at>Leap Change</at> who is zoe", []string{"Controller"}, nil},
		{"who is, accents ignored", testenv.Tenant, alice, "who is Zoe Zimmer", []string{"Zoë Zimmer", "Controller"}, nil},
		{"who is by email", testenv.Tenant, alice, "who is zoe@contoso.example", []string{"Controller"}, nil},
		{"who is: not in my org", testenv.Tenant, alice, "who is gary", []string{"No stakeholder matches"}, []string{"Spy"}},
		{"who is: the other org's own", otherTenant, gary, "who is gary@globex.example", []string{"Spy"}, nil},
		{"who is: cross-org by email", otherTenant, gary, "who is alice@contoso.example", []string{"No stakeholder matches"}, []string{"Analyst"}},
		{"my changes: direct and through a group", testenv.Tenant, alice, "my changes", []string{"Office move", "New expense tool"}, []string{"Warehouse"}},
		{"change by id", testenv.Tenant, alice, "change chg-2", []string{"New expense tool", "Replaces the spreadsheets"}, nil},
		{"change by words", testenv.Tenant, alice, "change warehouse", []string{"Warehouse robots"}, nil},
		{"change: not another org's", otherTenant, gary, "change office move", []string{"No change matches"}, []string{"Harbour"}},
		{"change: another org's id", testenv.Tenant, alice, "change chg-9", []string{"No change matches"}, []string{"merger"}},
		{"my changes: not a stakeholder", otherTenant, r.person(t, otherTenant, nil, "Nora", "None", "nora@globex.example", ""), "my changes", []string{"not a stakeholder"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.replies(t, tc.tenant, tc.user))
			if status, body := r.say(t, tc.tenant, tc.user, map[string]any{"text": tc.text}, m365sim.BotSign{}); status != http.StatusOK {
				t.Fatalf("status %d %s", status, body)
			}
			got := r.replies(t, tc.tenant, tc.user)
			if len(got) == before {
				// Over the conversation's pace: the answer waits in the queue for its slot.
				r.drainJobs(t, r.bot)
				got = r.replies(t, tc.tenant, tc.user)
			}
			if len(got) != before+1 {
				t.Fatalf("%d replies, want one more than %d", len(got), before)
			}
			reply := got[len(got)-1]
			for _, w := range tc.want {
				if !strings.Contains(reply, w) {
					t.Errorf("reply lacks %q: %s", w, reply)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(reply, n) {
					t.Errorf("reply leaks %q: %s", n, reply)
				}
			}
		})
	}
}

// TestRepliesKeepTheConversationPace: a burst of questions is answered at Teams' pace for one
// conversation; the simulated Bot Connector, which enforces the limits, counts no violation.
func TestRepliesKeepTheConversationPace(t *testing.T) {
	r := newRig(t)
	alice := r.person(t, testenv.Tenant, &r.acme, "Alice", "Adams", "alice@contoso.example", "Analyst")
	for range 20 {
		if status, _ := r.say(t, testenv.Tenant, alice, map[string]any{"text": "help"}, m365sim.BotSign{}); status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
	}
	immediate := len(r.replies(t, testenv.Tenant, alice))
	queued := r.drainJobs(t, r.bot)
	if immediate != 7 || queued != 13 || len(r.replies(t, testenv.Tenant, alice)) != 20 {
		t.Errorf("%d answered at once, %d through the queue, %d in all; want 7, 13, 20", immediate, queued, len(r.replies(t, testenv.Tenant, alice)))
	}
	if st := r.sim.BotStats(); st.Violations != 0 || st.Sent != 20 {
		t.Errorf("simulated Bot Connector: %+v, want 20 sent and no violation", st)
	}
}

// TestSlowAnswersGoThroughTheQueue: a command that cannot be answered within the budget is
// queued, and the queued job answers it.
func TestSlowAnswersGoThroughTheQueue(t *testing.T) {
	r := newRig(t)
	alice := r.person(t, testenv.Tenant, &r.acme, "Alice", "Adams", "alice@contoso.example", "Analyst")
	slow := bot.New(r.botConfig(time.Nanosecond))
	r.srv.Config.Handler = slow
	if status, _ := r.say(t, testenv.Tenant, alice, map[string]any{"text": "who is alice"}, m365sim.BotSign{}); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if got := r.replies(t, testenv.Tenant, alice); len(got) != 0 {
		t.Fatalf("answered within a budget of 1 ns: %v", got)
	}
	if n := r.drainJobs(t, slow); n != 1 {
		t.Fatalf("%d bot jobs run, want 1", n)
	}
	if got := r.replies(t, testenv.Tenant, alice); len(got) != 1 || !strings.Contains(got[0], "Analyst") {
		t.Fatalf("replies after the job: %v", got)
	}
}
