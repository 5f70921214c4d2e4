package m365sim_test

import (
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

// walk follows nextLinks to the deltaLink and returns every item and the page count.
func walk(t *testing.T, sim *m365sim.Server, tok, url string, hdr ...string) (items []map[string]any, deltaLink string, pages int) {
	t.Helper()
	items, pages = follow(t, sim, tok, url, hdr, func(body map[string]any) string {
		next, hasNext := body["@odata.nextLink"].(string)
		dl, hasDelta := body["@odata.deltaLink"].(string)
		if hasNext == hasDelta {
			t.Fatalf("page must have exactly one of nextLink/deltaLink: %v", body)
		}
		deltaLink = dl
		return next
	})
	return items, deltaLink, pages
}

func TestUsersDelta(t *testing.T) {
	sim, clk := newSim(t, m365sim.Options{PageSize: 7})
	if err := sim.Generate(tenantA, m365sim.GenSpec{Users: 50, Groups: 5, Depth: 1, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	tok := token(t, sim, tenantA)
	sel := "/v1.0/users/delta?$select=id,displayName,jobTitle,department,accountEnabled,manager"
	items, link, pages := walk(t, sim, tok, sel)
	if len(items) != 50 || pages != 8 {
		t.Fatalf("full walk: %d items in %d pages", len(items), pages)
	}
	// full walk equals state
	want := map[string]bool{}
	for _, u := range sim.Users(tenantA) {
		want[u.ID] = true
	}
	for _, it := range items {
		if !want[it["id"].(string)] || it["givenName"] != nil {
			t.Fatalf("unexpected item %v", it)
		}
	}
	if _, ok := items[1]["manager@delta"]; !ok {
		t.Errorf("manager@delta missing: %v", items[1])
	}

	us := sim.Users(tenantA)
	sim.UpdateUser(tenantA, us[1].ID, func(u *m365sim.User) { u.JobTitle = "Site director" })
	sim.UpdateUser(tenantA, us[2].ID, func(u *m365sim.User) { u.GivenName = "Unselected" }) // not selected: not reported
	sim.SoftDeleteUser(tenantA, us[3].ID)
	sim.HardDeleteUser(tenantA, us[4].ID)
	sim.SetAccountEnabled(tenantA, us[5].ID, false)
	sim.UpdateUser(tenantA, us[6].ID, func(u *m365sim.User) { u.ManagerID = "" })
	added, _ := sim.AddUser(tenantA, m365sim.User{DisplayName: "New Person", AccountEnabled: true})

	round, link2, _ := walk(t, sim, tok, link, "Prefer", "return=minimal")
	got := map[string]map[string]any{}
	for _, it := range round {
		got[it["id"].(string)] = it
	}
	if len(got) != 6 {
		t.Fatalf("round has %d objects, want 6: %v", len(got), round)
	}
	check := func(id string, ok func(map[string]any) bool) {
		t.Helper()
		if it := got[id]; it == nil || !ok(it) {
			t.Errorf("item %s = %v", id, got[id])
		}
	}
	check(us[1].ID, func(m map[string]any) bool { return m["jobTitle"] == "Site director" && len(m) == 2 })
	check(us[3].ID, func(m map[string]any) bool { return m["@removed"].(map[string]any)["reason"] == "changed" })
	check(us[4].ID, func(m map[string]any) bool { return m["@removed"].(map[string]any)["reason"] == "deleted" })
	check(us[5].ID, func(m map[string]any) bool { return m["accountEnabled"] == false && len(m) == 2 })
	check(us[6].ID, func(m map[string]any) bool {
		md := m["manager@delta"].([]any)
		return len(md) == 1 && md[0].(map[string]any)["@removed"] != nil && md[0].(map[string]any)["@odata.type"] == "#microsoft.graph.user"
	})
	check(added.ID, func(m map[string]any) bool { return m["displayName"] == "New Person" && m["department"] == nil })

	// restore reappears as a full object; no changes -> empty round
	sim.RestoreUser(tenantA, us[3].ID)
	round, link3, _ := walk(t, sim, tok, link2, "Prefer", "return=minimal")
	if len(round) != 1 || round[0]["displayName"] == nil {
		t.Errorf("restore round %v", round)
	}
	if round, _, _ = walk(t, sim, tok, link3); len(round) != 0 {
		t.Errorf("empty round %v", round)
	}

	// $deltatoken=latest: only a deltaLink
	st, _, body := get(t, sim, tok, "/v1.0/users/delta?$deltatoken=latest&$select=id")
	if st != 200 || len(body["value"].([]any)) != 0 || body["@odata.deltaLink"] == nil {
		t.Errorf("latest: %d %v", st, body)
	}
	// $top is rejected like Graph
	if st, _, body := get(t, sim, tok, "/v1.0/users/delta?$top=5"); st != 400 || errCode(body) != "Request_UnsupportedQuery" {
		t.Errorf("$top: %d %v", st, body)
	}

	// expiry
	clk.Advance(8 * 24 * time.Hour)
	tok = token(t, sim, tenantA)
	if st, _, body := get(t, sim, tok, link3); st != 400 || errCode(body) != "syncStateNotFound" {
		t.Errorf("expired: %d %v", st, body)
	}
	// reset: 410 with a Location that restarts the sync
	_, fresh, _ := walk(t, sim, tok, sel)
	sim.ResetDelta(tenantA)
	st, h, _ := get(t, sim, tok, fresh)
	if st != 410 || !strings.Contains(h.Get("Location"), "/v1.0/users/delta?$skiptoken=") {
		t.Fatalf("reset: %d %v", st, h)
	}
	if items, _, _ := walk(t, sim, tok, h.Get("Location")); len(items) != len(sim.Users(tenantA)) {
		t.Errorf("restart walk: %d items", len(items))
	}
}

func TestGroupsDeltaMembers(t *testing.T) {
	sim, _ := newSim(t, m365sim.Options{MemberLinksPerPage: 10})
	big, _ := sim.AddGroup(tenantA, m365sim.Group{DisplayName: "Change champions - EMEA", Description: "People who relay change news locally"})
	small, _ := sim.AddGroup(tenantA, m365sim.Group{DisplayName: "Small"})
	other, _ := sim.AddGroup(tenantA, m365sim.Group{DisplayName: "Not selected"})
	var ids []string
	for i := range 25 {
		u, _ := sim.AddUser(tenantA, m365sim.User{DisplayName: "U" + string(rune('a'+i)), AccountEnabled: true})
		ids = append(ids, u.ID)
		sim.AddMember(tenantA, big.ID, u.ID)
	}
	sim.AddMember(tenantA, big.ID, small.ID)
	sim.AddMember(tenantA, small.ID, ids[0])
	sim.AddMember(tenantA, other.ID, ids[1])
	tok := token(t, sim, tenantA)
	q := "/v1.0/groups/delta?$select=displayName,description,members&$filter=id%20eq%20'" + big.ID + "'%20or%20id%20eq%20'" + small.ID + "'"
	items, link, pages := walk(t, sim, tok, q)
	if pages != 3 {
		t.Errorf("pages = %d, want 3 (27 links, 10 per page)", pages)
	}
	members := map[string][]string{}
	for _, it := range items {
		if it["displayName"] == nil {
			t.Errorf("repeated group lacks properties: %v", it)
		}
		for _, m := range it["members@delta"].([]any) {
			mm := m.(map[string]any)
			members[it["id"].(string)] = append(members[it["id"].(string)], mm["@odata.type"].(string)+":"+mm["id"].(string))
		}
	}
	if len(members[big.ID]) != 26 || len(members[small.ID]) != 1 || members[other.ID] != nil {
		t.Fatalf("members %v", members)
	}
	if !slices.Contains(members[big.ID], "#microsoft.graph.group:"+small.ID) {
		t.Errorf("nested group link missing")
	}
	sim.RemoveMember(tenantA, big.ID, ids[2])
	sim.RenameGroup(tenantA, small.ID, "Small renamed")
	sim.AddMember(tenantA, other.ID, ids[3]) // filtered out
	round, _, _ := walk(t, sim, tok, link, "Prefer", "return=minimal")
	if len(round) != 2 {
		t.Fatalf("round %v", round)
	}
	for _, it := range round {
		switch it["id"] {
		case big.ID:
			md := it["members@delta"].([]any)
			if len(md) != 1 || md[0].(map[string]any)["@removed"].(map[string]any)["reason"] != "deleted" || it["displayName"] != nil {
				t.Errorf("big %v", it)
			}
		case small.ID:
			if it["displayName"] != "Small renamed" || it["members@delta"] != nil {
				t.Errorf("small %v", it)
			}
		}
	}
	sim.DeleteGroup(tenantA, small.ID)
	round, _, _ = walk(t, sim, tok, link)
	var removed bool
	for _, it := range round {
		if it["id"] == small.ID && it["@removed"].(map[string]any)["reason"] == "deleted" {
			removed = true
		}
	}
	if !removed {
		t.Errorf("deleted group not reported: %v", round)
	}
}

func TestTransitiveMembers(t *testing.T) {
	sim, _ := newSim(t, m365sim.Options{})
	a, _ := sim.AddGroup(tenantA, m365sim.Group{DisplayName: "A"})
	b, _ := sim.AddGroup(tenantA, m365sim.Group{DisplayName: "B"})
	c, _ := sim.AddGroup(tenantA, m365sim.Group{DisplayName: "C"})
	sim.AddMember(tenantA, a.ID, b.ID)
	sim.AddMember(tenantA, b.ID, c.ID)
	sim.AddMember(tenantA, c.ID, a.ID) // cycle
	var want []string
	for i := range 150 {
		u, _ := sim.AddUser(tenantA, m365sim.User{DisplayName: "user", AccountEnabled: true})
		sim.AddMember(tenantA, []string{a.ID, b.ID, c.ID}[i%3], u.ID)
		if i%3 == 1 {
			sim.AddMember(tenantA, c.ID, u.ID) // duplicate path
		}
		want = append(want, u.ID)
	}
	tok := token(t, sim, tenantA)
	items, pages := listAll(t, sim, tok, "/v1.0/groups/"+a.ID+"/transitiveMembers/microsoft.graph.user?$count=true&$select=id,displayName", "ConsistencyLevel", "eventual")
	var got []string
	for _, it := range items {
		if it["@odata.type"] != "#microsoft.graph.user" {
			t.Fatalf("cast leaked %v", it)
		}
		got = append(got, it["id"].(string))
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) || pages != 2 {
		t.Errorf("got %d users in %d pages, want %d in 2", len(got), pages, len(want))
	}
	if st, _, body := get(t, sim, tok, "/v1.0/groups/"+a.ID+"/transitiveMembers/microsoft.graph.user"); st != 400 || errCode(body) != "Request_UnsupportedQuery" {
		t.Errorf("cast without eventual: %d %v", st, body)
	}
	all, _ := listAll(t, sim, tok, "/v1.0/groups/"+a.ID+"/transitiveMembers")
	if len(all) != 152 { // 150 users + B + C
		t.Errorf("transitiveMembers = %d", len(all))
	}
	direct, _ := listAll(t, sim, tok, "/v1.0/groups/"+a.ID+"/members")
	if len(direct) != 51 {
		t.Errorf("members = %d", len(direct))
	}
}

func listAll(t *testing.T, sim *m365sim.Server, tok, url string, hdr ...string) (items []map[string]any, pages int) {
	t.Helper()
	return follow(t, sim, tok, url, hdr, func(body map[string]any) string {
		next, _ := body["@odata.nextLink"].(string)
		return next
	})
}

// follow GETs url, then the link that next finds in each page until it finds none, and returns
// every item and the page count.
func follow(t *testing.T, sim *m365sim.Server, tok, url string, hdr []string, next func(body map[string]any) string) (items []map[string]any, pages int) {
	t.Helper()
	for url != "" {
		st, _, body := get(t, sim, tok, url, hdr...)
		if st != 200 {
			t.Fatalf("GET %s: %d %v", url, st, body)
		}
		pages++
		for _, v := range body["value"].([]any) {
			items = append(items, v.(map[string]any))
		}
		url = next(body)
	}
	return items, pages
}
