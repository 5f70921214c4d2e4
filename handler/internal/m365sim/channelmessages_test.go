package m365sim_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

func TestChannelMessageRoutes(t *testing.T) {
	sim, clk, team, channel := subSim(t, "Team.ReadBasic.All", "ChannelMessage.Read.All")
	tok := token(t, sim, tenantA)
	base := "/v1.0/teams/" + team + "/channels/" + url.PathEscape(channel) + "/messages"
	var ids []string
	for i := range 5 {
		id, err := sim.PostChannelMessage(tenantA, team, channel, m365sim.ChannelMessageInput{AuthorID: "u1", AuthorName: "Ines", Content: fmt.Sprintf("m%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		clk.Advance(time.Minute)
	}
	since := clk.Now()
	clk.Advance(time.Minute)
	reply, _ := sim.PostChannelReply(tenantA, team, channel, ids[0], m365sim.ChannelMessageInput{AuthorID: "u2", Content: "re"})
	sim.EditChannelMessage(tenantA, team, channel, ids[3], "m3 edited")

	st, _, m := get(t, sim, tok, base+"/"+ids[3])
	body, _ := m["body"].(map[string]any)
	if st != 200 || m["id"] != ids[3] || body["content"] != "m3 edited" || m["lastEditedDateTime"] == nil || m["webUrl"] == nil {
		t.Errorf("GET message: %d %v", st, m)
	}
	if st, _, m := get(t, sim, tok, base+"/"+ids[0]+"/replies/"+reply); st != 200 || m["replyToId"] != ids[0] {
		t.Errorf("GET reply: %d %v", st, m)
	}
	if st, _, _ := get(t, sim, tok, base+"/"+reply); st != 404 {
		t.Errorf("GET a reply as a root message: %d", st)
	}
	if st, _, _ := get(t, sim, tok, base+"?$top=51"); st != 400 {
		t.Errorf("$top=51: %d", st)
	}

	// List: pages of $top, newest first, every root once.
	seen := map[string]bool{}
	link := base + "?$top=2&$expand=replies"
	for link != "" {
		st, _, m := get(t, sim, tok, link)
		if st != 200 || len(values(m)) > 2 {
			t.Fatalf("GET %s: %d %v", link, st, m)
		}
		for _, v := range values(m) {
			seen[v["id"].(string)] = true
			if v["id"] == ids[0] && len(v["replies"].([]any)) != 1 {
				t.Errorf("replies not expanded: %v", v)
			}
		}
		link, _ = m["@odata.nextLink"].(string)
	}
	if len(seen) != 5 {
		t.Errorf("listed %d roots", len(seen))
	}

	// Delta since a time: the chains changed after it (the replied-to and the edited), in pages,
	// then a deltaLink that returns only later changes.
	q := url.Values{"$filter": {"lastModifiedDateTime gt " + since.UTC().Format(time.RFC3339Nano)}, "$top": {"1"}, "$expand": {"replies"}}
	link, delta := base+"/delta?"+q.Encode(), ""
	var changed []string
	for link != "" {
		st, _, m := get(t, sim, tok, link)
		if st != 200 {
			t.Fatalf("delta: %d %v", st, m)
		}
		for _, v := range values(m) {
			changed = append(changed, v["id"].(string))
		}
		link, _ = m["@odata.nextLink"].(string)
		delta, _ = m["@odata.deltaLink"].(string)
	}
	if strings.Join(changed, ",") != ids[0]+","+ids[3] {
		t.Errorf("delta = %v, want %s,%s", changed, ids[0], ids[3])
	}
	clk.Advance(time.Minute)
	sim.DeleteChannelMessage(tenantA, team, channel, ids[4])
	st, _, m = get(t, sim, tok, delta)
	if vs := values(m); st != 200 || len(vs) != 1 || vs[0]["id"] != ids[4] || vs[0]["deletedDateTime"] == nil {
		t.Errorf("next delta round: %d %v", st, m)
	}

	// An app without protected-API approval reads with RSC only.
	sim.RequireProtectedAPIApproval(clientID)
	if st, _, m := get(t, sim, tok, base); st != 403 || !strings.Contains(fmt.Sprint(m), "Protected API") {
		t.Errorf("unapproved app: %d %v", st, m)
	}
	sim.GrantRSC(tenantA, team, clientID)
	if st, _, _ := get(t, sim, tok, base); st != 200 {
		t.Errorf("unapproved app with RSC: %d", st)
	}
}
