package bot_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/cards"
	"github.com/leapchange/m365/handler/internal/conversations"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// survey sends a survey invitation in Teams to the people (who have opened the app) and
// returns its batch and the activity ids of their cards.
func (r *rig) survey(t *testing.T, people ...string) (string, map[string]string) {
	t.Helper()
	var ids []string
	for _, oid := range people {
		ref := conversations.Ref{AADObjectID: oid, UserID: r.sim.BotUserID(testenv.Tenant, oid), TenantID: testenv.Tenant,
			ServiceURL: r.sim.BotServiceURL(), ConversationID: r.sim.BotConversation(testenv.Tenant, oid)}
		if _, err := r.convs.Seen(t.Context(), r.acme, ref, true, r.clock.Now()); err != nil {
			t.Fatal(err)
		}
		// The person has the app: a message from them tells the simulated Teams so.
		if status, _ := r.say(t, testenv.Tenant, oid, map[string]any{"type": "installationUpdate", "action": "add"}, m365sim.BotSign{}); status != 200 {
			t.Fatalf("install: %d", status)
		}
		ids = append(ids, stakeholderID(oid))
	}
	rec, err := r.p.Accept(t.Context(), r.acme, outbound.Request{StakeholderIDs: ids, Channels: []string{outbound.Teams}, Kind: "survey_invitation",
		Content: outbound.Content{Subject: "Office move survey", Text: "Tell us how ready you are.",
			Survey: &outbound.Survey{URL: "https://survey.leapchange.example/s/7", Question: "Are you ready?", Choices: []string{"Yes", "Not yet"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, ok := r.env.Queue.Next(r.clock.Now())
		if !ok {
			break
		}
		var err error
		if d.Queue == queue.OutboundTeams {
			err = r.p.HandleTeams(t.Context(), d.Body, d.Count)
		} else {
			err = r.p.HandleMail(t.Context(), d.Body, d.Count) // dispatch steps
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	activities := map[string]string{}
	for _, oid := range people {
		posted := r.sim.BotPosted(r.sim.BotConversation(testenv.Tenant, oid))
		if len(posted) == 0 {
			t.Fatalf("no card posted to %s", oid)
		}
		activities[oid] = posted[len(posted)-1].ActivityID
	}
	return rec.Batch.ID, activities
}

// TestCardActions: an Action.Execute answer is recorded and answered with the updated card; an
// Action.Submit answer is recorded and the card updated in place; someone else's card, a choice
// that is not the survey's and a foreign action are refused without recording anything.
func TestCardActions(t *testing.T) {
	r := newRig(t)
	ivy := r.person(t, testenv.Tenant, &r.acme, "Ivy", "Ito", "ivy@contoso.example", "Analyst")
	jon := r.person(t, testenv.Tenant, &r.acme, "Jon", "Jones", "jon@contoso.example", "Clerk")
	batch, activities := r.survey(t, ivy, jon)
	execute := func(verb string, d cards.Data) map[string]any {
		d.Kind = cards.DataKind
		return map[string]any{"type": "invoke", "name": "adaptiveCard/action", "replyToId": activities[ivy],
			"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": verb, "data": d}, "trigger": "manual"}}
	}
	cases := []struct {
		name     string
		user     string
		activity map[string]any
		status   int
		want     string
	}{
		{"someone else's card", jon, execute(cards.VerbSurveyAnswer, cards.Data{Verb: cards.VerbSurveyAnswer, Batch: batch, Index: 0, Choice: "Yes"}), http.StatusForbidden, "someone else"},
		{"not a choice", ivy, execute(cards.VerbSurveyAnswer, cards.Data{Verb: cards.VerbSurveyAnswer, Batch: batch, Index: 0, Choice: "Maybe"}), http.StatusBadRequest, "not one of"},
		{"not Action.Execute", ivy, map[string]any{"type": "invoke", "name": "adaptiveCard/action",
			"value": map[string]any{"action": map[string]any{"type": "Action.Submit"}}}, http.StatusBadRequest, "NotSupported"},
		{"a foreign action", ivy, map[string]any{"type": "invoke", "name": "adaptiveCard/action",
			"value": map[string]any{"action": map[string]any{"type": "Action.Execute", "verb": "x", "data": map[string]any{"a": 1}}}}, http.StatusBadRequest, "not one of Leap Change"},
		{"an unknown batch", ivy, execute(cards.VerbSurveyAnswer, cards.Data{Verb: cards.VerbSurveyAnswer, Batch: "bffffffffffff00000000", Index: 0, Choice: "Yes"}), http.StatusOK, "no longer available"},
		{"the recipient answers", ivy, execute(cards.VerbSurveyAnswer, cards.Data{Verb: cards.VerbSurveyAnswer, Batch: batch, Index: 0, Choice: "Not yet"}), http.StatusOK, "answered “Not yet”"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := r.say(t, testenv.Tenant, tc.user, tc.activity, m365sim.BotSign{})
			if status != tc.status || !strings.Contains(string(body), tc.want) {
				t.Fatalf("%d %s, want %d with %q", status, body, tc.status, tc.want)
			}
			ir := decodeInvoke(t, body)
			if ir.StatusCode != status {
				t.Errorf("statusCode %d in a %d answer", ir.StatusCode, status)
			}
		})
	}
	got, err := r.p.Responses(t.Context(), r.acme, batch)
	if err != nil || len(got) != 1 || got["Not yet"] != 1 {
		t.Fatalf("responses after the invokes: %v %v", got, err)
	}
	// Action.Submit (older clients): Jon answers; his card is updated in place.
	submit := map[string]any{"replyToId": activities[jon], "value": cards.Data{Kind: cards.DataKind, Verb: cards.VerbSurveyAnswer, Batch: batch, Index: 1, Choice: "Yes"}}
	if status, body := r.say(t, testenv.Tenant, jon, submit, m365sim.BotSign{}); status != http.StatusOK {
		t.Fatalf("submit: %d %s", status, body)
	}
	got, _ = r.p.Responses(t.Context(), r.acme, batch)
	if got["Yes"] != 1 || got["Not yet"] != 1 {
		t.Errorf("responses after the submit: %v", got)
	}
	var updated bool
	for _, p := range r.sim.BotPosted(r.sim.BotConversation(testenv.Tenant, jon)) {
		if p.Op == "update" && p.ActivityID == activities[jon] && strings.Contains(string(p.Activity), "answered “Yes”") {
			updated = true
		}
	}
	if !updated {
		t.Error("Jon's card was not updated in place")
	}
	rows, _, err := r.p.Deliveries(t.Context(), r.acme, batch, outbound.RowsOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rows)
	if !strings.Contains(string(b), `"response":"Not yet"`) || !strings.Contains(string(b), `"response":"Yes"`) {
		t.Errorf("delivery rows %s", b)
	}
}
