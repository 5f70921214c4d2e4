// Package directorytest checks that a reader of a tenant's directory (the Graph client, or a
// stand-in for it in tests) honours the contract stakeholder sync relies on, against the
// simulated tenant (m365sim). Every implementation runs the same suite, so a test double cannot
// drift from the real client: paging and delta rounds, field mapping, and the failure kinds
// (errkind) a sync acts on.
//
// The package does not import the Graph SDK: the real client's test and the stand-in's test each
// call Run with a constructor.
package directorytest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// The app the suite registers in every simulated tenant it sets up; open builds its credentials
// from these.
const (
	ClientID     = "0c1d2e3f-4a5b-4c6d-8e7f-90a1b2c3d4e5"
	ClientSecret = "directorytest-secret"
)

// Tenant is the id of the tenant the suite fills and passes to open.
const Tenant = "7e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"

// Directory is what stakeholder sync reads from a tenant (the dirsync engine's directory
// interface). Its contract, which Run enforces:
//
//   - UsersDelta fetches one page of a users/delta round: an empty link starts a full round,
//     otherwise link is a NextLink or DeltaLink of an earlier page, used unchanged. Exactly one of
//     NextLink and DeltaLink is set. A full round returns every user of the tenant once, with
//     its selected fields and manager; a round from a DeltaLink returns exactly the users changed
//     since, deleted ones with Removed set (SoftDeleted or HardDeleted). A link the tenant no
//     longer honours (reset or expired delta state) fails with kind errkind.Resync.
//   - User returns one active user with its fields and manager (ManagerID "" when it has none).
//   - Group returns one group's id, name and description (no member changes).
//   - TransitiveUserIDs returns the ids of a group's active users, nested groups expanded, each
//     once, every page followed.
//   - GroupsDelta fetches one page of a groups/delta round, as UsersDelta does for users, each
//     group with its direct member changes (users and nested groups; Removed for a member that
//     left); ids, when given, limits a new round to those groups. A new round lists every
//     member of each group; a deleted group comes with Removed set. The group filter's stored
//     closure follows it.
//   - A missing user or group fails with errkind.NotFound. Every failure answer of Graph is an
//     *errkind.Error with the answer's status, Graph code and Retry-After, of the kind graphkind
//     gives it (403 Forbidden, 429/503/504 Throttled, 5xx Unavailable, 401 and a refused sign-in
//     Unauthorized, 400 Invalid, 404 NotFound, 410 or an expired delta state Resync).
//     Throttled answers are counted in the context's entra.RequestStats. A request cut short
//     by a cancelled context fails with an error that is context.Canceled.
type Directory interface {
	UsersDelta(ctx context.Context, tenantID, link string) (entra.UserPage, error)
	User(ctx context.Context, tenantID, id string) (entra.User, error)
	Group(ctx context.Context, tenantID, id string) (entra.Group, error)
	TransitiveUserIDs(ctx context.Context, tenantID, groupID string) ([]string, error)
	GroupsDelta(ctx context.Context, tenantID, link string, ids []string) (entra.GroupPage, error)
}

// UserCounter is an optional capability: CountUsers returns the number of users of the tenant
// (deleted ones excluded). Run checks it when the Directory has it.
type UserCounter interface {
	CountUsers(ctx context.Context, tenantID string) (int, error)
}

// GroupsDeltaReader is the Directory's groups/delta alone (see Directory).
type GroupsDeltaReader interface {
	GroupsDelta(ctx context.Context, tenantID, link string, ids []string) (entra.GroupPage, error)
}

// PageSize is the page size of the simulated tenant, small so that every listing has several
// pages.
const PageSize = 3

// Run runs the suite. For each check it starts a simulated tenant (Tenant, with ClientID consented
// for User.Read.All and GroupMember.Read.All, and a small directory of users and nested groups)
// and calls open for a Directory over it that has not sent a request yet. A Directory that
// retries throttled answers must not sleep for real: the suite injects faults that never pass.
func Run(t *testing.T, open func(t *testing.T, sim *m365sim.Server, tenant string) Directory) {
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"FullRoundReturnsEveryUserOnce", fullRound},
		{"DeltaRoundReturnsOnlyChanges", deltaRound},
		{"DeltaRoundWithoutChangesIsEmpty", emptyDeltaRound},
		{"ResetDeltaLinkIsResync", resetDelta},
		{"ResetNextLinkIsResync", resetNextLink},
		{"ExpiredDeltaLinkIsResync", expiredDelta},
		{"User", user},
		{"UnknownUserIsNotFound", unknownUser},
		{"Group", group},
		{"UnknownGroupIsNotFound", unknownGroup},
		{"TransitiveUsersOfNestedGroups", transitive},
		{"UnknownGroupMembersIsNotFound", unknownGroupMembers},
		{"FaultsAreClassified", faults},
		{"ThrottlingIsCounted", throttlingCounted},
		{"MissingPermissionIsForbidden", missingPermission},
		{"RefusedSecretIsUnauthorized", refusedSecret},
		{"TenantsAreApart", tenantsApart},
		{"CancelledContext", cancelled},
		{"CountUsers", countUsers},
		{"GroupsDelta", groupsDelta},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.dir = open(t, f.sim, Tenant)
			c.fn(t, f)
		})
	}
}

// fixture is one simulated tenant with its directory and the implementation under test.
type fixture struct {
	sim *m365sim.Server
	dir Directory

	ada, grace, alan, noManager string   // named users (Alan's account is disabled)
	others                      []string // more users
	everyone, eng, platform     string   // Everyone ⊃ {all users}; Eng ⊃ {Ada, Grace, Platform}; Platform ⊃ {Grace, Alan}
	empty                       string   // a group without members
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	// Access tokens outlive the clock jumps of ExpiredDeltaLinkIsResync.
	sim := testenv.StartSim(t, m365sim.Options{PageSize: PageSize, TokenLifetime: 30 * 24 * time.Hour})
	t.Cleanup(func() { // before the close
		if n := sim.Unhandled(); n != 0 {
			t.Errorf("the implementation sent %d requests the simulated tenant does not know", n)
		}
	})
	sim.RegisterApp(ClientID, ClientSecret)
	sim.AddTenant(Tenant, "contoso.example")
	must(t, sim.Consent(Tenant, ClientID, "User.Read.All", "GroupMember.Read.All"))

	f := &fixture{sim: sim}
	f.ada = f.addUser(t, person{GivenName: "Ada", Surname: "Lovelace", Department: "Engineering", JobTitle: "Director",
		OfficeLocation: "London", MobilePhone: "+44 20 7946 0001", BusinessPhones: []string{"+44 20 7946 0100", "+44 20 7946 0101"}})
	f.grace = f.addUser(t, person{GivenName: "Grace", Surname: "Hopper", Department: "Engineering", JobTitle: "Engineer", ManagerID: f.ada})
	f.alan = f.addUser(t, person{GivenName: "Alan", Surname: "Turing", Department: "Research", OfficeLocation: "Manchester", ManagerID: f.ada, Disabled: true})
	f.noManager = f.addUser(t, person{GivenName: "Edsger", Surname: "Dijkstra", NoMail: true}) // no mail, no manager
	for i := range 6 {
		f.others = append(f.others, f.addUser(t, person{GivenName: "User", Surname: fmt.Sprintf("N%02d", i), Department: "Operations",
			JobTitle: "Analyst", ManagerID: f.grace}))
	}
	f.platform = f.addGroup(t, "Platform", f.grace, f.alan)
	f.eng = f.addGroup(t, "Engineering", f.ada, f.grace, f.platform)
	f.everyone = f.addGroup(t, "Everyone", f.users(t)...)
	must(t, sim.AddMember(Tenant, f.everyone, f.eng))
	f.empty = f.addGroup(t, "Empty")
	return f
}

// person is a user to add: its display name, UPN and mail are derived from its name.
type person struct {
	GivenName, Surname, Department, JobTitle, OfficeLocation, MobilePhone, ManagerID string
	BusinessPhones                                                                   []string
	NoMail, Disabled                                                                 bool
}

// addUser adds a user to the tenant and returns its id.
func (f *fixture) addUser(t *testing.T, u person) string {
	t.Helper()
	upn := strings.ToLower(u.GivenName+"."+u.Surname) + "@contoso.example"
	mail := upn
	if u.NoMail {
		mail = ""
	}
	got, err := f.sim.AddUser(Tenant, m365sim.User{GivenName: u.GivenName, Surname: u.Surname, DisplayName: u.GivenName + " " + u.Surname,
		Mail: mail, UserPrincipalName: upn, MobilePhone: u.MobilePhone, BusinessPhones: u.BusinessPhones, Department: u.Department,
		JobTitle: u.JobTitle, OfficeLocation: u.OfficeLocation, ManagerID: u.ManagerID, AccountEnabled: !u.Disabled})
	must(t, err)
	return got.ID
}

func (f *fixture) addGroup(t *testing.T, name string, members ...string) string {
	t.Helper()
	g, err := f.sim.AddGroup(Tenant, m365sim.Group{DisplayName: name, Description: name + " group", SecurityEnabled: true})
	must(t, err)
	for _, m := range members {
		must(t, f.sim.AddMember(Tenant, g.ID, m))
	}
	return g.ID
}

// users returns the ids of the tenant's users.
func (f *fixture) users(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, u := range f.sim.Users(Tenant) {
		ids = append(ids, u.ID)
	}
	return ids
}

// want is the entra.User the tenant's user id must map to.
func (f *fixture) want(t *testing.T, id string) entra.User {
	t.Helper()
	u, ok := f.sim.User(Tenant, id)
	if !ok {
		t.Fatalf("the simulated tenant has no user %s", id)
	}
	return entra.User{ID: u.ID, DisplayName: u.DisplayName, GivenName: u.GivenName, Surname: u.Surname, Mail: u.Mail,
		UserPrincipalName: u.UserPrincipalName, MobilePhone: u.MobilePhone, BusinessPhones: u.BusinessPhones,
		Department: u.Department, JobTitle: u.JobTitle, OfficeLocation: u.OfficeLocation, ManagerID: u.ManagerID,
		AccountEnabled: u.AccountEnabled}
}

// checkUser compares a mapped user with the one wanted; nil and empty phone lists are the same.
func checkUser(t *testing.T, what string, got, want entra.User) {
	t.Helper()
	if len(got.BusinessPhones) == 0 && len(want.BusinessPhones) == 0 {
		got.BusinessPhones, want.BusinessPhones = nil, nil
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// walk follows a users/delta round from link to its deltaLink, checking the page links, and
// returns the users in the order returned.
func walk(t *testing.T, f *fixture, link string) ([]entra.User, string) {
	t.Helper()
	var all []entra.User
	for range 1000 {
		page, err := f.dir.UsersDelta(t.Context(), Tenant, link)
		if err != nil {
			t.Fatalf("UsersDelta: %v", err)
		}
		if (page.NextLink == "") == (page.DeltaLink == "") {
			t.Fatalf("UsersDelta page: NextLink %q, DeltaLink %q; want exactly one", page.NextLink, page.DeltaLink)
		}
		all = append(all, page.Users...)
		if page.DeltaLink != "" {
			return all, page.DeltaLink
		}
		link = page.NextLink
	}
	t.Fatal("UsersDelta: the round never ends")
	return nil, ""
}

// byID indexes users by id, failing on a user returned twice.
func byID(t *testing.T, users []entra.User) map[string]entra.User {
	t.Helper()
	out := map[string]entra.User{}
	for _, u := range users {
		if _, dup := out[u.ID]; dup {
			t.Errorf("user %s returned twice in one round", u.ID)
		}
		out[u.ID] = u
	}
	return out
}

func fullRound(t *testing.T, f *fixture) {
	users, _ := walk(t, f, "")
	got := byID(t, users)
	ids := f.users(t)
	if len(got) != len(ids) {
		t.Errorf("full round returned %d users, the tenant has %d", len(got), len(ids))
	}
	for _, id := range ids {
		u, ok := got[id]
		if !ok {
			t.Errorf("full round: user %s missing", id)
			continue
		}
		checkUser(t, "full round user "+id, u, f.want(t, id))
	}
}

func deltaRound(t *testing.T, f *fixture) {
	_, link := walk(t, f, "")

	retitled, softDeleted, hardDeleted, newManager, lostManager := f.grace, f.others[0], f.others[1], f.others[2], f.alan
	must(t, f.sim.UpdateUser(Tenant, retitled, func(u *m365sim.User) { u.JobTitle, u.MobilePhone = "Rear admiral", "+1 202 555 0100" }))
	must(t, f.sim.SetAccountEnabled(Tenant, f.others[3], false))
	must(t, f.sim.SoftDeleteUser(Tenant, softDeleted))
	must(t, f.sim.HardDeleteUser(Tenant, hardDeleted))
	must(t, f.sim.UpdateUser(Tenant, newManager, func(u *m365sim.User) { u.ManagerID = f.ada }))
	must(t, f.sim.UpdateUser(Tenant, lostManager, func(u *m365sim.User) { u.ManagerID = "" }))
	added := f.addUser(t, person{GivenName: "Barbara", Surname: "Liskov", Department: "Research", ManagerID: f.ada})

	users, _ := walk(t, f, link)
	got := byID(t, users)
	want := []string{retitled, f.others[3], softDeleted, hardDeleted, newManager, lostManager, added}
	if !slices.Equal(sorted(slices.Collect(maps.Keys(got))), sorted(want)) {
		t.Errorf("delta round returned users %v, want exactly the changed ones %v", sorted(slices.Collect(maps.Keys(got))), sorted(want))
	}
	for _, id := range []string{retitled, f.others[3], newManager, lostManager, added} {
		checkUser(t, "changed user "+id, got[id], f.want(t, id))
	}
	if r := got[softDeleted].Removed; r != entra.SoftDeleted {
		t.Errorf("soft-deleted user: Removed = %q, want %q", r, entra.SoftDeleted)
	}
	if r := got[hardDeleted].Removed; r != entra.HardDeleted {
		t.Errorf("hard-deleted user: Removed = %q, want %q", r, entra.HardDeleted)
	}
}

func emptyDeltaRound(t *testing.T, f *fixture) {
	_, link := walk(t, f, "")
	users, next := walk(t, f, link)
	if len(users) != 0 {
		t.Errorf("a round without changes returned %d users: %+v", len(users), users)
	}
	if next == "" {
		t.Error("a round without changes returned no deltaLink")
	}
}

// wantKind checks that err is an *errkind.Error (a service's failure, as callers tell it from the
// store's) of kind want.
func wantKind(t *testing.T, what string, err error, want errkind.Kind) *errkind.Error {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want kind %v", what, want)
		return nil
	}
	var e *errkind.Error
	if !errors.As(err, &e) {
		t.Errorf("%s: %v (%T) is not an *errkind.Error, want kind %v", what, err, err, want)
		return nil
	}
	if got := errkind.Of(err); got != want || !errors.Is(err, want) {
		t.Errorf("%s: kind %v (%v), want %v", what, got, err, want)
	}
	return e
}

func resetDelta(t *testing.T, f *fixture) {
	_, link := walk(t, f, "")
	must(t, f.sim.ResetDelta(Tenant))
	_, err := f.dir.UsersDelta(t.Context(), Tenant, link)
	wantKind(t, "deltaLink after a reset", err, errkind.Resync)
	// A new full round works.
	users, _ := walk(t, f, "")
	if len(users) != len(f.users(t)) {
		t.Errorf("full round after a reset returned %d users, want %d", len(users), len(f.users(t)))
	}
}

func resetNextLink(t *testing.T, f *fixture) {
	page, err := f.dir.UsersDelta(t.Context(), Tenant, "")
	must(t, err)
	if page.NextLink == "" {
		t.Fatalf("first page of %d users has no nextLink (page size %d)", len(f.users(t)), PageSize)
	}
	must(t, f.sim.ResetDelta(Tenant))
	_, err = f.dir.UsersDelta(t.Context(), Tenant, page.NextLink)
	wantKind(t, "nextLink after a reset", err, errkind.Resync)
}

func expiredDelta(t *testing.T, f *fixture) {
	_, link := walk(t, f, "")
	f.sim.AdvanceClock(8 * 24 * time.Hour) // past the 7-day delta token lifetime
	_, err := f.dir.UsersDelta(t.Context(), Tenant, link)
	wantKind(t, "expired deltaLink", err, errkind.Resync)
}

func user(t *testing.T, f *fixture) {
	for _, id := range f.users(t) {
		u, err := f.dir.User(t.Context(), Tenant, id)
		if err != nil {
			t.Errorf("User(%s): %v", id, err)
			continue
		}
		checkUser(t, "User("+id+")", u, f.want(t, id))
	}
}

func unknownUser(t *testing.T, f *fixture) {
	must(t, f.sim.SoftDeleteUser(Tenant, f.others[0]))
	must(t, f.sim.HardDeleteUser(Tenant, f.others[1]))
	for what, id := range map[string]string{
		"unknown":      "00000000-0000-4000-8000-000000000001",
		"soft-deleted": f.others[0],
		"hard-deleted": f.others[1],
	} {
		_, err := f.dir.User(t.Context(), Tenant, id)
		wantKind(t, "User("+what+")", err, errkind.NotFound)
	}
	// A user whose manager is deleted has none.
	must(t, f.sim.SoftDeleteUser(Tenant, f.grace)) // the manager of the other users
	u, err := f.dir.User(t.Context(), Tenant, f.others[2])
	must(t, err)
	if u.ManagerID != "" {
		t.Errorf("User with a deleted manager: ManagerID = %q, want none", u.ManagerID)
	}
}

func group(t *testing.T, f *fixture) {
	for _, g := range f.sim.Groups(Tenant) {
		got, err := f.dir.Group(t.Context(), Tenant, g.ID)
		if err != nil {
			t.Errorf("Group(%s): %v", g.DisplayName, err)
			continue
		}
		want := entra.Group{ID: g.ID, DisplayName: g.DisplayName, Description: g.Description}
		if got.ID != want.ID || got.DisplayName != want.DisplayName || got.Description != want.Description ||
			len(got.Members) != 0 || got.Removed != entra.NotRemoved {
			t.Errorf("Group(%s) = %+v, want %+v", g.DisplayName, got, want)
		}
	}
}

func unknownGroup(t *testing.T, f *fixture) {
	must(t, f.sim.DeleteGroup(Tenant, f.platform))
	for what, id := range map[string]string{"unknown": "00000000-0000-4000-8000-000000000002", "deleted": f.platform} {
		_, err := f.dir.Group(t.Context(), Tenant, id)
		wantKind(t, "Group("+what+")", err, errkind.NotFound)
	}
}

func transitive(t *testing.T, f *fixture) {
	must(t, f.sim.SoftDeleteUser(Tenant, f.others[5])) // deleted users are no members
	for name, c := range map[string]struct {
		id   string
		want []string
	}{
		"Platform":    {f.platform, []string{f.grace, f.alan}},
		"Engineering": {f.eng, []string{f.ada, f.grace, f.alan}}, // Platform expanded, Grace once
		"Everyone":    {f.everyone, f.users(t)},                  // more than a page; Engineering adds no one twice
		"Empty":       {f.empty, nil},
	} {
		got, err := f.dir.TransitiveUserIDs(t.Context(), Tenant, c.id)
		if err != nil {
			t.Errorf("TransitiveUserIDs(%s): %v", name, err)
			continue
		}
		if len(got) != len(c.want) || !slices.Equal(sorted(got), sorted(c.want)) {
			t.Errorf("TransitiveUserIDs(%s) = %v, want each of %v once", name, sorted(got), sorted(c.want))
		}
	}
}

func unknownGroupMembers(t *testing.T, f *fixture) {
	_, err := f.dir.TransitiveUserIDs(t.Context(), Tenant, "00000000-0000-4000-8000-000000000003")
	wantKind(t, "TransitiveUserIDs(unknown group)", err, errkind.NotFound)
}

// calls are the Directory's methods, each one request path in the simulated tenant.
func calls(f *fixture) map[string]func(ctx context.Context) error {
	return map[string]func(ctx context.Context) error{
		"UsersDelta": func(ctx context.Context) error { _, err := f.dir.UsersDelta(ctx, Tenant, ""); return err },
		"User":       func(ctx context.Context) error { _, err := f.dir.User(ctx, Tenant, f.grace); return err },
		"Group":      func(ctx context.Context) error { _, err := f.dir.Group(ctx, Tenant, f.eng); return err },
		"TransitiveUserIDs": func(ctx context.Context) error {
			_, err := f.dir.TransitiveUserIDs(ctx, Tenant, f.eng)
			return err
		},
	}
}

func faults(t *testing.T, f *fixture) {
	for _, c := range []struct {
		status     int
		code       string
		retryAfter time.Duration
		want       errkind.Kind
	}{
		{status: 400, want: errkind.Invalid},
		{status: 400, code: "syncStateNotFound", want: errkind.Resync},
		{status: 401, want: errkind.Unauthorized},
		{status: 403, want: errkind.Forbidden},
		{status: 404, want: errkind.NotFound},
		{status: 410, code: "resyncRequired", want: errkind.Resync},
		{status: 429, retryAfter: 1500 * time.Millisecond, want: errkind.Throttled},
		{status: 429, want: errkind.Throttled},
		{status: 500, want: errkind.Unavailable},
		{status: 502, want: errkind.Unavailable},
		{status: 503, want: errkind.Throttled},
		{status: 503, retryAfter: 2 * time.Second, want: errkind.Throttled},
		{status: 504, want: errkind.Throttled},
	} {
		name := fmt.Sprintf("%d%s", c.status, c.code)
		if c.retryAfter > 0 {
			name += "RetryAfter" + c.retryAfter.String()
		}
		t.Run(name, func(t *testing.T) {
			for method, call := range calls(f) {
				f.sim.ClearFaults()
				// Every answer of Graph fails, whatever a client retries; the token endpoint is not faulted.
				must(t, f.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/", Status: c.status, Code: c.code, RetryAfter: c.retryAfter}))
				e := wantKind(t, method, call(t.Context()), c.want)
				if e == nil {
					continue
				}
				if e.Status != c.status {
					t.Errorf("%s: Status = %d, want %d", method, e.Status, c.status)
				}
				if c.code != "" && e.Code != c.code {
					t.Errorf("%s: Code = %q, want %q", method, e.Code, c.code)
				}
				if e.Code == "" {
					t.Errorf("%s: no Graph error code in %v", method, e)
				}
				if got := errkind.RetryAfterOf(e); got != c.retryAfter {
					t.Errorf("%s: RetryAfter = %v, want %v", method, got, c.retryAfter)
				}
			}
			f.sim.ClearFaults()
		})
	}
}

func throttlingCounted(t *testing.T, f *fixture) {
	must(t, f.sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/", Status: 429, RetryAfter: time.Second}))
	for method, call := range calls(f) {
		var stats entra.RequestStats
		err := call(entra.WithRequestStats(t.Context(), &stats))
		wantKind(t, method, err, errkind.Throttled)
		if n := stats.Snapshot().Throttled; n < 1 {
			t.Errorf("%s: %d throttled answers counted in the context's RequestStats, want at least 1", method, n)
		}
	}
}

func missingPermission(t *testing.T, f *fixture) {
	const usersOnly, groupsOnly = "9a0b1c2d-3e4f-4a5b-8c6d-7e8f90a1b2c3", "8f9e0d1c-2b3a-4c5d-9e6f-a0b1c2d3e4f5"
	f.sim.AddTenant(usersOnly, "users-only.example")
	must(t, f.sim.Consent(usersOnly, ClientID, "User.Read.All"))
	f.sim.AddTenant(groupsOnly, "groups-only.example")
	must(t, f.sim.Consent(groupsOnly, ClientID, "GroupMember.Read.All"))
	// The ids do not matter: the permission is checked first.
	id := "00000000-0000-4000-8000-000000000004"
	_, err := f.dir.UsersDelta(t.Context(), groupsOnly, "")
	wantKind(t, "UsersDelta without User.Read.All", err, errkind.Forbidden)
	_, err = f.dir.User(t.Context(), groupsOnly, id)
	wantKind(t, "User without User.Read.All", err, errkind.Forbidden)
	_, err = f.dir.Group(t.Context(), usersOnly, id)
	wantKind(t, "Group without GroupMember.Read.All", err, errkind.Forbidden)
	_, err = f.dir.TransitiveUserIDs(t.Context(), usersOnly, id)
	wantKind(t, "TransitiveUserIDs without GroupMember.Read.All", err, errkind.Forbidden)
}

func refusedSecret(t *testing.T, f *fixture) {
	f.sim.RevokeSecret(ClientID, ClientSecret)
	for method, call := range calls(f) {
		wantKind(t, method+" with a revoked secret", call(t.Context()), errkind.Unauthorized)
	}
}

func tenantsApart(t *testing.T, f *fixture) {
	const other = "5d6e7f80-91a2-4b3c-8d4e-5f60718293a4"
	f.sim.AddTenant(other, "fabrikam.example")
	must(t, f.sim.Consent(other, ClientID, "User.Read.All", "GroupMember.Read.All"))
	theirs, err := f.sim.AddUser(other, m365sim.User{GivenName: "Only", Surname: "There", DisplayName: "Only There",
		UserPrincipalName: "only.there@fabrikam.example", AccountEnabled: true})
	must(t, err)

	page, err := f.dir.UsersDelta(t.Context(), other, "")
	must(t, err)
	if len(page.Users) != 1 || page.Users[0].ID != theirs.ID || page.DeltaLink == "" {
		t.Errorf("UsersDelta(other tenant) = %+v, want only its one user", page)
	}
	_, err = f.dir.User(t.Context(), other, f.grace)
	wantKind(t, "User of another tenant", err, errkind.NotFound)
	_, err = f.dir.Group(t.Context(), other, f.eng)
	wantKind(t, "Group of another tenant", err, errkind.NotFound)
	if _, err := f.dir.User(t.Context(), Tenant, f.grace); err != nil {
		t.Errorf("User in the first tenant after the other: %v", err)
	}
}

func cancelled(t *testing.T, f *fixture) {
	// Signed in first: a sign-in cut short is the credentials' to classify (m365auth), the same
	// for every implementation.
	if _, err := f.dir.Group(t.Context(), Tenant, f.eng); err != nil {
		t.Fatal(err)
	}
	for method, call := range calls(f) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := call(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", method, err)
		}
	}
}

func countUsers(t *testing.T, f *fixture) {
	c, ok := f.dir.(UserCounter)
	if !ok {
		t.Skipf("%T has no CountUsers (optional)", f.dir)
	}
	must(t, f.sim.SoftDeleteUser(Tenant, f.others[0]))
	n, err := c.CountUsers(t.Context(), Tenant)
	must(t, err)
	if want := len(f.users(t)); n != want {
		t.Errorf("CountUsers = %d, want %d", n, want)
	}
}

// groupRound follows a groups/delta round and merges each group's pages (a group with many
// member changes may span pages).
func groupRound(t *testing.T, d GroupsDeltaReader, link string, ids []string) (map[string]entra.Group, string) {
	t.Helper()
	out := map[string]entra.Group{}
	for range 1000 {
		page, err := d.GroupsDelta(t.Context(), Tenant, link, ids)
		if err != nil {
			t.Fatalf("GroupsDelta: %v", err)
		}
		if (page.NextLink == "") == (page.DeltaLink == "") {
			t.Fatalf("GroupsDelta page: NextLink %q, DeltaLink %q; want exactly one", page.NextLink, page.DeltaLink)
		}
		for _, g := range page.Groups {
			if prev, ok := out[g.ID]; ok {
				g.Members = append(prev.Members, g.Members...)
			}
			out[g.ID] = g
		}
		if page.DeltaLink != "" {
			return out, page.DeltaLink
		}
		link = page.NextLink
	}
	t.Fatal("GroupsDelta: the round never ends")
	return nil, ""
}

func memberKeys(ms []entra.MemberChange) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s group=%v removed=%v", m.ID, m.IsGroup, m.Removed))
	}
	return sorted(out)
}

func groupsDelta(t *testing.T, f *fixture) {
	d := f.dir
	got, link := groupRound(t, d, "", nil)
	groups := f.sim.Groups(Tenant)
	if len(got) != len(groups) {
		t.Errorf("full groups round returned %d groups, the tenant has %d", len(got), len(groups))
	}
	for _, g := range groups {
		members, err := f.sim.Members(Tenant, g.ID)
		must(t, err)
		var want []entra.MemberChange
		for _, m := range members {
			want = append(want, entra.MemberChange{ID: m.ID, IsGroup: m.IsGroup})
		}
		r := got[g.ID]
		if r.DisplayName != g.DisplayName || r.Description != g.Description || r.Removed != entra.NotRemoved {
			t.Errorf("group %s = %+v", g.DisplayName, r)
		}
		if !slices.Equal(memberKeys(r.Members), memberKeys(want)) {
			t.Errorf("group %s members = %v, want %v", g.DisplayName, memberKeys(r.Members), memberKeys(want))
		}
	}

	must(t, f.sim.RenameGroup(Tenant, f.empty, "Still empty"))
	must(t, f.sim.RemoveMember(Tenant, f.platform, f.alan))
	must(t, f.sim.AddMember(Tenant, f.platform, f.noManager))
	must(t, f.sim.DeleteGroup(Tenant, f.eng)) // also leaves Everyone
	changed, _ := groupRound(t, d, link, nil)
	wantIDs := []string{f.empty, f.platform, f.eng, f.everyone}
	if !slices.Equal(sorted(slices.Collect(maps.Keys(changed))), sorted(wantIDs)) {
		t.Errorf("groups delta round returned %v, want exactly the changed groups %v", sorted(slices.Collect(maps.Keys(changed))), sorted(wantIDs))
	}
	if g := changed[f.empty]; g.DisplayName != "Still empty" {
		t.Errorf("renamed group = %+v", g)
	}
	if g := changed[f.eng]; g.Removed != entra.HardDeleted {
		t.Errorf("deleted group: Removed = %q, want %q", g.Removed, entra.HardDeleted)
	}
	wantPlatform := []entra.MemberChange{{ID: f.alan, Removed: true}, {ID: f.noManager}}
	if g := changed[f.platform]; !slices.Equal(memberKeys(g.Members), memberKeys(wantPlatform)) {
		t.Errorf("Platform member changes = %v, want %v", memberKeys(g.Members), memberKeys(wantPlatform))
	}
	wantEveryone := []entra.MemberChange{{ID: f.eng, IsGroup: true, Removed: true}}
	if g := changed[f.everyone]; !slices.Equal(memberKeys(g.Members), memberKeys(wantEveryone)) {
		t.Errorf("Everyone member changes = %v, want %v", memberKeys(g.Members), memberKeys(wantEveryone))
	}

	// A new round limited to some groups returns only them.
	only, _ := groupRound(t, d, "", []string{f.platform, f.empty})
	if !slices.Equal(sorted(slices.Collect(maps.Keys(only))), sorted([]string{f.platform, f.empty})) {
		t.Errorf("groups round filtered to 2 ids returned %v", sorted(slices.Collect(maps.Keys(only))))
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
