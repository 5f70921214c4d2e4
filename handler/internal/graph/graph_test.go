package graph_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/testenv"
)

const (
	tenantID = "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b"
	clientID = "6d0a4f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
	secret   = "sim-secret"
)

// newTenant starts a simulated tenant with n generated users, consented with roles.
func newTenant(t *testing.T, n int, roles ...string) *m365sim.Server {
	t.Helper()
	sim := testenv.StartSim(t, m365sim.Options{PageSize: 50})
	sim.RegisterApp(clientID, secret)
	sim.AddTenant(tenantID, "fabrikam.example")
	if err := sim.Consent(tenantID, clientID, roles...); err != nil {
		t.Fatal(err)
	}
	if err := sim.Generate(tenantID, m365sim.GenSpec{Users: n, Groups: 5, Depth: 1, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	return sim
}

func newClient(t *testing.T, sim *m365sim.Server, secretValue string) *graph.Client {
	t.Helper()
	creds := m365auth.New(m365auth.Config{ClientID: clientID, ClientSecret: secretValue, AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()})
	c, err := graph.New(graph.Config{BaseURL: sim.GraphURL(), Credentials: creds, HTTPClient: sim.HTTPClient(),
		Retry: graph.RetryPolicy{Sleep: func(context.Context, time.Duration) error { return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// walk follows a users/delta round to its deltaLink.
func walk(t *testing.T, c *graph.Client, link string) (map[string]entra.User, string) {
	t.Helper()
	got := map[string]entra.User{}
	for range 1000 {
		page, err := c.UsersDelta(t.Context(), tenantID, link)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Users {
			got[u.ID] = u
		}
		if page.DeltaLink != "" {
			return got, page.DeltaLink
		}
		link = page.NextLink
	}
	t.Fatal("delta round never ended")
	return nil, ""
}

func TestUsersDeltaThroughTheSDK(t *testing.T) {
	sim := newTenant(t, 120, "User.Read.All", "GroupMember.Read.All")
	c := newClient(t, sim, secret)

	got, deltaLink := walk(t, c, "")
	want := sim.Users(tenantID)
	if len(got) != len(want) {
		t.Fatalf("full round returned %d users, tenant has %d", len(got), len(want))
	}
	for _, w := range want {
		g := got[w.ID]
		if g.UserPrincipalName != w.UserPrincipalName || g.GivenName != w.GivenName || g.Department != w.Department || g.AccountEnabled != w.AccountEnabled || g.ManagerID != w.ManagerID {
			t.Fatalf("user %s = %+v, want %+v", w.ID, g, w)
		}
	}
	if sim.Unhandled() != 0 {
		t.Errorf("%d requests the simulated tenant does not know", sim.Unhandled())
	}

	// Changes between rounds come back in the next delta round, and only they.
	victim, renamed := want[0].ID, want[1].ID
	if err := sim.SoftDeleteUser(tenantID, victim); err != nil {
		t.Fatal(err)
	}
	if err := sim.UpdateUser(tenantID, renamed, func(u *m365sim.User) { u.JobTitle = "Site director" }); err != nil {
		t.Fatal(err)
	}
	changed, _ := walk(t, c, deltaLink)
	if len(changed) != 2 || changed[victim].Removed != entra.SoftDeleted || changed[renamed].JobTitle != "Site director" {
		t.Errorf("delta round = %+v, want the soft delete and the new job title", changed)
	}
}

func TestGroupsDeltaMembers(t *testing.T) {
	sim := newTenant(t, 30, "User.Read.All", "GroupMember.Read.All")
	c := newClient(t, sim, secret)
	members := map[string]int{}
	link := ""
	for {
		page, err := c.GroupsDelta(t.Context(), tenantID, link, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range page.Groups {
			members[g.ID] += len(g.Members)
		}
		if page.DeltaLink != "" {
			break
		}
		link = page.NextLink
	}
	for _, g := range sim.Groups(tenantID) {
		direct, err := sim.Members(tenantID, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if members[g.ID] != len(direct) {
			t.Errorf("group %s: %d members@delta, %d direct members", g.DisplayName, members[g.ID], len(direct))
		}
	}
}

// $deltatoken=latest starts a round at the present over the groups asked for: the first read of
// its link brings only what changed since, in those groups.
func TestGroupsDeltaLatest(t *testing.T) {
	sim := newTenant(t, 30, "User.Read.All", "GroupMember.Read.All")
	c := newClient(t, sim, secret)
	groups := sim.Groups(tenantID)
	if len(groups) < 2 {
		t.Fatalf("the tenant has %d groups", len(groups))
	}
	watched, other := groups[0].ID, groups[1].ID
	link, err := c.GroupsDeltaLatest(t.Context(), tenantID, []string{watched})
	if err != nil || link == "" {
		t.Fatalf("GroupsDeltaLatest = %q, %v", link, err)
	}
	user := sim.Users(tenantID)[0].ID
	for _, g := range []string{watched, other} {
		_ = sim.RemoveMember(tenantID, g, user) // it may be a member already
		if err := sim.AddMember(tenantID, g, user); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.GroupsDelta(t.Context(), tenantID, link, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Groups) != 1 || page.Groups[0].ID != watched || page.DeltaLink == "" {
		t.Fatalf("first read = %+v; want only the watched group's change and a deltaLink", page)
	}
	if m := page.Groups[0].Members; len(m) == 0 || m[len(m)-1].ID != user || m[len(m)-1].Removed {
		t.Errorf("members@delta = %+v; want the user added last", m)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	for _, tc := range []struct {
		name   string
		roles  []string
		secret string
		fault  *m365sim.FaultRule
		reset  bool
		want   errkind.Kind
	}{
		{name: "missing permission", roles: []string{"GroupMember.Read.All"}, secret: secret, want: errkind.Forbidden},
		{name: "revoked secret", roles: []string{"User.Read.All"}, secret: "wrong", want: errkind.Unauthorized},
		{name: "429 storm", roles: []string{"User.Read.All"}, secret: secret, fault: &m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 429, RetryAfter: 1500 * time.Millisecond}, want: errkind.Throttled},
		{name: "5xx", roles: []string{"User.Read.All"}, secret: secret, fault: &m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 500}, want: errkind.Unavailable},
		{name: "404", roles: []string{"User.Read.All"}, secret: secret, fault: &m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 404}, want: errkind.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := newTenant(t, 5, tc.roles...)
			if tc.fault != nil {
				if err := sim.AddFault(*tc.fault); err != nil {
					t.Fatal(err)
				}
			}
			_, err := newClient(t, sim, tc.secret).UsersDelta(t.Context(), tenantID, "")
			if got := errkind.Of(err); got != tc.want {
				t.Errorf("kind = %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

func TestExpiredDeltaTokenMeansResync(t *testing.T) {
	sim := newTenant(t, 5, "User.Read.All")
	c := newClient(t, sim, secret)
	_, deltaLink := walk(t, c, "")
	if err := sim.ResetDelta(tenantID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UsersDelta(t.Context(), tenantID, deltaLink); errkind.Of(err) != errkind.Resync {
		t.Errorf("after a reset: %v, want resync", err)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"3.75", 3750 * time.Millisecond, true},
		{"2", 2 * time.Second, true},
		{"Wed, 25 Nov 2026 10:00:05 GMT", 5 * time.Second, true},
		{"", 0, false},
		{"soon", 0, false},
		{"-1", 0, false},
	} {
		got, ok := graph.RetryAfter(http.Header{"Retry-After": {tc.in}}, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RetryAfter(%q) = %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCheckAccess(t *testing.T) {
	sim := newTenant(t, 3, "User.Read.All")
	got, err := newClient(t, sim, secret).CheckAccess(t.Context(), tenantID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["User.Read.All"] != true || got["GroupMember.Read.All"] != false {
		t.Errorf("CheckAccess = %v, want User.Read.All allowed and GroupMember.Read.All refused", got)
	}
}

func TestGroupReads(t *testing.T) {
	sim := newTenant(t, 60, "User.Read.All", "GroupMember.Read.All")
	c := newClient(t, sim, secret)
	all := sim.Groups(tenantID)

	found, err := c.SearchGroups(t.Context(), tenantID, all[0].DisplayName, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) == 0 || found[0].DisplayName != all[0].DisplayName {
		t.Errorf("SearchGroups(%q) = %+v", all[0].DisplayName, found)
	}
	if first, err := c.SearchGroups(t.Context(), tenantID, "", 3); err != nil || len(first) != 3 {
		t.Errorf("SearchGroups(\"\", 3) = %d groups, %v", len(first), err)
	}
	if g, err := c.Group(t.Context(), tenantID, all[1].ID); err != nil || g.DisplayName != all[1].DisplayName {
		t.Errorf("Group = %+v, %v", g, err)
	}
	if _, err := c.Group(t.Context(), tenantID, "00000000-0000-4000-8000-000000000000"); errkind.Of(err) != errkind.NotFound {
		t.Errorf("missing group: %v, want not_found", err)
	}
	for _, g := range all {
		want, _ := sim.TransitiveUserIDs(tenantID, g.ID)
		got, err := c.TransitiveUserIDs(t.Context(), tenantID, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("group %s: %d transitive users, want %d", g.DisplayName, len(got), len(want))
		}
	}
	u := sim.Users(tenantID)[5]
	got, err := c.User(t.Context(), tenantID, u.ID)
	if err != nil || got.UserPrincipalName != u.UserPrincipalName || got.ManagerID != u.ManagerID {
		t.Errorf("User = %+v, %v; want %s with manager %s", got, err, u.UserPrincipalName, u.ManagerID)
	}
	if sim.Unhandled() != 0 {
		t.Errorf("%d unhandled requests", sim.Unhandled())
	}
}

func TestCountUsers(t *testing.T) {
	sim := newTenant(t, 37, "User.Read.All")
	if n, err := newClient(t, sim, secret).CountUsers(t.Context(), tenantID); err != nil || n != 37 {
		t.Errorf("CountUsers = %d, %v; want 37", n, err)
	}
}
