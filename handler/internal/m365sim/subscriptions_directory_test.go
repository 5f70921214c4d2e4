package m365sim_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

// dirSim is a sim whose app holds roles in tenantA, with fast webhook retries.
func dirSim(t *testing.T, opts m365sim.Options, roles ...string) (*m365sim.Server, *clock) {
	t.Helper()
	sim, clk := newSim(t, opts)
	if err := sim.Consent(tenantA, clientID, roles...); err != nil {
		t.Fatal(err)
	}
	sim.SetWebhookOptions(m365sim.WebhookOptions{RetryBackoff: time.Millisecond})
	return sim, clk
}

func dirBody(resource, changeType, url string, exp time.Time, extra string) string {
	return fmt.Sprintf(`{"changeType":%q,"resource":%q,"notificationUrl":%q,"expirationDateTime":%q,"clientState":"s3cret"%s}`,
		changeType, resource, url, exp.Format(time.RFC3339Nano), extra)
}

// subscribe creates a subscription and answers its id.
func subscribe(t *testing.T, sim *m365sim.Server, tok, body string) string {
	t.Helper()
	st, _, raw, m := call(t, sim, "POST", tok, "/v1.0/subscriptions", strings.NewReader(body), "Content-Type", "application/json")
	if st != 201 {
		t.Fatalf("create: %d %s", st, raw)
	}
	return m["id"].(string)
}

func TestDirectorySubscriptionCreateRules(t *testing.T) {
	sim, clk := dirSim(t, m365sim.Options{})
	h := newHook(t)
	now := clk.Now()
	lifecycle := fmt.Sprintf(`,"lifecycleNotificationUrl":%q`, h.srv.URL+"/lifecycle")
	for _, tc := range []struct {
		name     string
		roles    []string
		resource string
		change   string
		exp      time.Duration
		extra    string
		status   int
		code     string
	}{
		{"users", []string{"User.Read.All"}, "/users", "updated,deleted", time.Hour, "", 201, ""},
		{"users again, without slash, other case (several per app)", []string{"User.Read.All"}, "Users", "updated", time.Hour, "", 201, ""},
		{"groups with GroupMember.Read.All", []string{"GroupMember.Read.All"}, "/groups", "updated,deleted", time.Hour, "", 201, ""},
		{"groups with Group.Read.All", []string{"Group.Read.All"}, "groups", "deleted", time.Hour, "", 201, ""},
		{"29 days without a lifecycle URL", []string{"User.Read.All"}, "/users", "updated", 41760 * time.Minute, "", 201, ""},
		{"29 days with a lifecycle URL", []string{"User.Read.All"}, "/users", "updated", 41760 * time.Minute, lifecycle, 201, ""},
		{"past 41 760 minutes", []string{"User.Read.All"}, "/users", "updated", 41761 * time.Minute, lifecycle, 400, "InvalidRequest"},
		{"created", []string{"User.Read.All"}, "/users", "created,updated", time.Hour, "", 400, "InvalidRequest"},
		{"created on groups", []string{"Group.Read.All"}, "/groups", "created", time.Hour, "", 400, "InvalidRequest"},
		{"resource data", []string{"User.Read.All"}, "/users", "updated", time.Hour, `,"includeResourceData":true`, 400, "InvalidRequest"},
		{"users without User.Read.All", []string{"GroupMember.Read.All"}, "/users", "updated", time.Hour, "", 403, "ExtensionError"},
		{"groups without a group role", []string{"User.Read.All"}, "/groups", "updated", time.Hour, "", 403, "ExtensionError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := sim.Consent(tenantA, clientID, tc.roles...); err != nil {
				t.Fatal(err)
			}
			tok := token(t, sim, tenantA)
			body := dirBody(tc.resource, tc.change, h.srv.URL, now.Add(tc.exp), tc.extra)
			st, _, raw, m := call(t, sim, "POST", tok, "/v1.0/subscriptions", strings.NewReader(body), "Content-Type", "application/json")
			if st != tc.status || errorCode(m) != tc.code {
				t.Fatalf("status %d %s, want %d %s: %s", st, errorCode(m), tc.status, tc.code, raw)
			}
			if st == 201 && (m["resource"] != tc.resource || m["changeType"] != tc.change) {
				t.Errorf("answer %s", raw)
			}
		})
	}
	if n := len(sim.Subscriptions(tenantA)); n != 6 {
		t.Errorf("%d subscriptions, want 6", n)
	}
}

// brief reduces a notification to "changeType resource [members@delta]" for comparisons.
func brief(n map[string]any) string {
	s := fmt.Sprint(n["changeType"], " ", n["resource"])
	rd, _ := n["resourceData"].(map[string]any)
	if md, ok := rd["members@delta"].([]any); ok {
		for _, e := range md {
			m := e.(map[string]any)
			_, removed := m["@removed"]
			s += fmt.Sprintf(" member %v removed=%v", m["id"], removed)
		}
	}
	return s
}

func briefs(ns []map[string]any) []string {
	var out []string
	for _, n := range ns {
		out = append(out, brief(n))
	}
	slices.Sort(out)
	return out
}

func TestDirectoryNotifications(t *testing.T) {
	sim, clk := dirSim(t, m365sim.Options{}, "User.Read.All", "GroupMember.Read.All")
	tok := token(t, sim, tenantA)
	users, usersUpdated, grps := newHook(t), newHook(t), newHook(t)
	exp := clk.Now().Add(time.Hour)
	usersID := subscribe(t, sim, tok, dirBody("/users", "updated,deleted", users.srv.URL+"/notify?org=acme", exp, ""))
	subscribe(t, sim, tok, dirBody("/users", "updated", usersUpdated.srv.URL, exp, ""))
	subscribe(t, sim, tok, dirBody("/groups", "updated,deleted", grps.srv.URL, exp, ""))

	u, err := sim.AddUser(tenantA, m365sim.User{DisplayName: "Ines", UserPrincipalName: "ines@fabrikam.example", AccountEnabled: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := sim.AddGroup(tenantA, m365sim.Group{DisplayName: "Finance"})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		do   func() error
	}{
		{"update", func() error { return sim.UpdateUser(tenantA, u.ID, func(x *m365sim.User) { x.JobTitle = "CFO" }) }},
		{"disable", func() error { return sim.SetAccountEnabled(tenantA, u.ID, false) }},
		{"soft delete", func() error { return sim.SoftDeleteUser(tenantA, u.ID) }},
		{"restore", func() error { return sim.RestoreUser(tenantA, u.ID) }},
		{"add member", func() error { return sim.AddMember(tenantA, g.ID, u.ID) }},
		{"remove member", func() error { return sim.RemoveMember(tenantA, g.ID, u.ID) }},
		{"rename", func() error { return sim.RenameGroup(tenantA, g.ID, "Finance EMEA") }},
		{"add member again", func() error { return sim.AddMember(tenantA, g.ID, u.ID) }},
		{"hard delete", func() error { return sim.HardDeleteUser(tenantA, u.ID) }},
		{"delete group", func() error { return sim.DeleteGroup(tenantA, g.ID) }},
		{"other tenant", func() error { _, err := sim.AddUser(tenantB, m365sim.User{DisplayName: "Tom"}); return err }},
	} {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
	}
	wait(t, sim)

	ures, gres := "Users/"+u.ID, "Groups/"+g.ID
	upd := []string{"updated " + ures, "updated " + ures, "updated " + ures, "updated " + ures, "updated " + ures} // add, update, disable, soft delete, restore
	for _, tc := range []struct {
		name string
		h    *hook
		want []string
	}{
		{"users updated,deleted", users, append(slices.Clone(upd), "deleted "+ures)},
		{"users updated only: no hard delete", usersUpdated, upd},
		{"groups", grps, []string{
			"updated " + gres, // created
			"updated " + gres + " member " + u.ID + " removed=false",
			"updated " + gres + " member " + u.ID + " removed=true",
			"updated " + gres, // renamed
			"updated " + gres + " member " + u.ID + " removed=false",
			"updated " + gres + " member " + u.ID + " removed=true", // the hard delete removes the member
			"deleted " + gres,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if got := briefs(tc.h.notifications()); !slices.Equal(got, want) {
				t.Errorf("notifications\n%q\nwant\n%q", got, want)
			}
		})
	}

	// The documented shape, with clientState and tenantId.
	n := users.notifications()[0]
	rd := n["resourceData"].(map[string]any)
	if n["subscriptionId"] != usersID || n["clientState"] != "s3cret" || n["tenantId"] != tenantA || n["subscriptionExpirationDateTime"] == nil ||
		n["resource"] != ures || rd["@odata.type"] != "#Microsoft.Graph.User" || rd["@odata.id"] != ures || rd["id"] != u.ID ||
		rd["organizationId"] != tenantA || rd["members@delta"] != nil || n["encryptedContent"] != nil {
		t.Errorf("user notification %v", n)
	}
	for _, n := range grps.notifications() {
		rd := n["resourceData"].(map[string]any)
		if rd["@odata.type"] != "#Microsoft.Graph.Group" || rd["@odata.id"] != gres || rd["id"] != g.ID || rd["organizationId"] != tenantA {
			t.Errorf("group notification %v", n)
		}
	}
	if st := sim.WebhookStats(); st.Delivered != 18 || st.Failed != 0 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDirectorySubscriptionLifecycle(t *testing.T) {
	sim, clk := dirSim(t, m365sim.Options{Admin: true}, "User.Read.All")
	tok := token(t, sim, tenantA)
	h, lh := newHook(t), newHook(t)
	lifecycle := fmt.Sprintf(`,"lifecycleNotificationUrl":%q`, lh.srv.URL)
	id := subscribe(t, sim, tok, dirBody("/users", "updated,deleted", h.srv.URL, clk.Now().Add(24*time.Hour), lifecycle))

	for _, event := range []string{"reauthorizationRequired", "missed"} {
		if err := sim.FireLifecycle(id, event); err != nil {
			t.Fatal(err)
		}
	}
	if !sim.Subscriptions(tenantA)[0].ReauthorizationRequired {
		t.Error("not marked for reauthorization")
	}
	if st, _, raw, _ := call(t, sim, "POST", tok, "/v1.0/subscriptions/"+id+"/reauthorize", nil); st != 204 {
		t.Errorf("reauthorize: %d %s", st, raw)
	}
	// Renewal follows the directory lifetime (more than the 4 320 minutes of channel messages).
	renew := func(d time.Duration) int {
		body := fmt.Sprintf(`{"expirationDateTime":%q}`, clk.Now().Add(d).Format(time.RFC3339))
		st, _, _, _ := call(t, sim, "PATCH", tok, "/v1.0/subscriptions/"+id, strings.NewReader(body))
		return st
	}
	if st := renew(20 * 24 * time.Hour); st != 200 {
		t.Errorf("renew for 20 days: %d", st)
	}
	if st := renew(30 * 24 * time.Hour); st != 400 {
		t.Errorf("renew for 30 days: %d", st)
	}
	// subscriptionRemoved through the admin API: the subscription is gone, changes notify nobody.
	if st := admin(t, sim, "POST", "/_sim/subscriptions/"+id+"/lifecycle", `{"event":"subscriptionRemoved"}`, nil); st != 204 {
		t.Fatalf("admin lifecycle: %d", st)
	}
	if _, err := sim.AddUser(tenantA, m365sim.User{DisplayName: "Ines"}); err != nil {
		t.Fatal(err)
	}
	wait(t, sim)
	var events []string
	for _, n := range lh.notifications() {
		if n["subscriptionId"] != id || n["clientState"] != "s3cret" || n["tenantId"] != tenantA {
			t.Errorf("lifecycle notification %v", n)
		}
		events = append(events, fmt.Sprint(n["lifecycleEvent"]))
	}
	slices.Sort(events)
	if want := []string{"missed", "reauthorizationRequired", "subscriptionRemoved"}; !slices.Equal(events, want) {
		t.Errorf("lifecycle events %v, want %v", events, want)
	}
	if got := h.notifications(); len(got) != 0 {
		t.Errorf("a removed subscription was notified: %v", got)
	}
	if len(sim.Subscriptions(tenantA)) != 0 {
		t.Error("subscription still listed")
	}
}

// Subscriptions that expired or that Graph removed get nothing.
func TestDirectorySubscriptionGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		gone func(t *testing.T, sim *m365sim.Server, clk *clock, id string)
	}{
		{"expired", func(t *testing.T, _ *m365sim.Server, clk *clock, _ string) { clk.Advance(2 * time.Hour) }},
		{"removed", func(t *testing.T, sim *m365sim.Server, _ *clock, id string) {
			if err := sim.RemoveSubscription(id); err != nil {
				t.Fatal(err)
			}
		}},
		{"removed by the admin API", func(t *testing.T, sim *m365sim.Server, _ *clock, id string) {
			if st := admin(t, sim, "DELETE", "/_sim/subscriptions/"+id, "", nil); st != 204 {
				t.Fatalf("admin DELETE: %d", st)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, clk := dirSim(t, m365sim.Options{Admin: true}, "User.Read.All", "GroupMember.Read.All")
			h := newHook(t)
			id := subscribe(t, sim, token(t, sim, tenantA), dirBody("/users", "updated,deleted", h.srv.URL, clk.Now().Add(time.Hour), ""))
			tc.gone(t, sim, clk, id)
			// A change through the admin API (PATCH /_sim/tenants/{t}/users) as well as the Go API.
			u, err := sim.AddUser(tenantA, m365sim.User{DisplayName: "Ines"})
			if err != nil {
				t.Fatal(err)
			}
			if st := admin(t, sim, "PATCH", "/_sim/tenants/"+tenantA+"/users/"+u.ID, `{"jobTitle":"CFO"}`, nil); st != 204 {
				t.Fatalf("admin PATCH: %d", st)
			}
			wait(t, sim)
			if got := h.notifications(); len(got) != 0 {
				t.Errorf("notified: %v", got)
			}
			if len(sim.Subscriptions(tenantA)) != 0 {
				t.Error("subscription still listed")
			}
			if err := sim.RemoveSubscription(id); err == nil {
				t.Error("removing a gone subscription succeeded")
			}
		})
	}
}

// Changes through the admin API notify like the Go API.
func TestDirectoryNotificationsFromAdminAPI(t *testing.T) {
	sim, clk := dirSim(t, m365sim.Options{Admin: true}, "User.Read.All", "GroupMember.Read.All")
	h := newHook(t)
	subscribe(t, sim, token(t, sim, tenantA), dirBody("/users", "updated,deleted", h.srv.URL, clk.Now().Add(time.Hour), ""))
	var u m365sim.User
	if st := admin(t, sim, "POST", "/_sim/tenants/"+tenantA+"/users", `{"displayName":"Ines"}`, &u); st != 200 {
		t.Fatalf("admin POST user: %d", st)
	}
	if st := admin(t, sim, "DELETE", "/_sim/tenants/"+tenantA+"/users/"+u.ID+"?permanent=true", "", nil); st != 204 {
		t.Fatalf("admin DELETE user: %d", st)
	}
	wait(t, sim)
	got := briefs(h.notifications())
	if want := []string{"deleted Users/" + u.ID, "updated Users/" + u.ID}; !slices.Equal(got, want) {
		t.Errorf("notifications %q, want %q", got, want)
	}
}

// MutateRandom (the benchmarks' drift) notifies exactly the users users/delta reports changed.
func TestDirectoryNotificationsFromMutateRandom(t *testing.T) {
	sim, clk := dirSim(t, m365sim.Options{}, "User.Read.All")
	tok := token(t, sim, tenantA)
	for i := range 40 {
		if _, err := sim.AddUser(tenantA, m365sim.User{DisplayName: fmt.Sprint("user ", i), AccountEnabled: true}); err != nil {
			t.Fatal(err)
		}
	}
	// Every property MutateRandom changes (users/delta reports only changes to selected ones).
	_, link, _ := walk(t, sim, tok, "/v1.0/users/delta?$select=displayName,jobTitle,department,officeLocation,mobilePhone,accountEnabled,manager")
	h := newHook(t)
	subscribe(t, sim, tok, dirBody("/users", "updated,deleted", h.srv.URL, clk.Now().Add(time.Hour), ""))
	if n, err := sim.MutateRandom(tenantA, 0.5, 7); err != nil || n == 0 {
		t.Fatalf("MutateRandom: %d, %v", n, err)
	}
	wait(t, sim)
	items, _, _ := walk(t, sim, tok, link)
	var want, got []string
	for _, it := range items {
		want = append(want, "Users/"+fmt.Sprint(it["id"]))
	}
	for _, n := range h.notifications() {
		if r := fmt.Sprint(n["resource"]); !slices.Contains(got, r) {
			got = append(got, r)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("notified %d users %q\ndelta reports %d %q", len(got), got, len(want), want)
	}
}

// With WebhookOptions.Batch notifications for one URL share POSTs, Batch at most.
func TestDirectoryNotificationsBatched(t *testing.T) {
	sim, clk := dirSim(t, m365sim.Options{}, "User.Read.All")
	h := newHook(t)
	subscribe(t, sim, token(t, sim, tenantA), dirBody("/users", "updated", h.srv.URL, clk.Now().Add(time.Hour), ""))
	// A long window: batches go when full, so 250 changes make exactly 5 POSTs.
	sim.SetWebhookOptions(m365sim.WebhookOptions{RetryBackoff: time.Millisecond, Batch: 50, BatchWindow: time.Minute})
	for i := range 250 {
		if _, err := sim.AddUser(tenantA, m365sim.User{DisplayName: fmt.Sprint("user ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	wait(t, sim)
	cs := h.collections()
	seen := map[string]bool{}
	for _, c := range cs {
		vs := values(c)
		if len(vs) != 50 {
			t.Errorf("a POST carried %d notifications, want 50", len(vs))
		}
		for _, n := range vs {
			seen[fmt.Sprint(n["resource"])] = true
		}
	}
	if len(cs) != 5 || len(seen) != 250 {
		t.Errorf("%d POSTs carried %d distinct users, want 5 and 250", len(cs), len(seen))
	}
	if st := sim.WebhookStats(); st.Delivered != 250 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
	// A short window posts a partial batch.
	sim.SetWebhookOptions(m365sim.WebhookOptions{RetryBackoff: time.Millisecond, Batch: 50, BatchWindow: time.Millisecond})
	if _, err := sim.AddUser(tenantA, m365sim.User{DisplayName: "one more"}); err != nil {
		t.Fatal(err)
	}
	wait(t, sim)
	if cs := h.collections(); len(cs) != 6 || len(values(cs[5])) != 1 {
		t.Errorf("%d POSTs after one more change", len(cs))
	}
}

func TestGraphRequestsPerTenant(t *testing.T) {
	sim, _ := dirSim(t, m365sim.Options{}, "User.Read.All")
	tok := token(t, sim, tenantA)
	sim.ResetStats()
	for range 3 {
		if st, _, _ := get(t, sim, tok, "/v1.0/users"); st != 200 {
			t.Fatalf("GET /users: %d", st)
		}
	}
	get(t, sim, tok, "/v1.0/groups") // 403: no group role, still a request of the tenant
	if n := sim.GraphRequests(tenantA); n != 4 {
		t.Errorf("GraphRequests(tenantA) = %d, want 4", n)
	}
	if st := sim.Stats(); st.GraphByTenant[tenantA] != 4 || st.GraphByTenant[tenantB] != 0 {
		t.Errorf("Stats.GraphByTenant = %v", st.GraphByTenant)
	}
	sim.ResetStats()
	if n := sim.GraphRequests(tenantA); n != 0 {
		t.Errorf("after ResetStats: %d", n)
	}
}
