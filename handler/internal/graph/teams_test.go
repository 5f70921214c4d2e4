package graph_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/testenv"
)

const manifestID = "0f3c5a7e-2b4d-4c6e-8f10-213243546576"

// teamsTenant starts a simulated tenant with five teams, the app published (linked to the
// client, as a bot's manifest is) and two users, consented with roles; pages of two items.
func teamsTenant(t *testing.T, roles ...string) (*m365sim.Server, []m365sim.User) {
	t.Helper()
	sim := testenv.StartSim(t, m365sim.Options{PageSize: 2})
	t.Cleanup(func() {
		if n := sim.Unhandled(); n != 0 {
			t.Errorf("%d requests the simulated tenant does not know", n)
		}
	})
	sim.RegisterApp(clientID, secret)
	sim.AddTenant(tenantID, "fabrikam.example")
	if err := sim.Consent(tenantID, clientID, roles...); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Finance", "Field Ops", "Sales", "finance – Berlin", "O'Brien's team"} {
		if _, err := sim.AddTeam(tenantID, m365sim.Team{DisplayName: name}, m365sim.Channel{DisplayName: "Budget", MembershipType: "private"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sim.AddTeamsApp(tenantID, m365sim.TeamsApp{ExternalID: manifestID, AzureADAppID: clientID}); err != nil {
		t.Fatal(err)
	}
	var us []m365sim.User
	for _, upn := range []string{"ines@fabrikam.example", "tom@fabrikam.example"} {
		u, err := sim.AddUser(tenantID, m365sim.User{DisplayName: upn, UserPrincipalName: upn, AccountEnabled: true})
		if err != nil {
			t.Fatal(err)
		}
		us = append(us, u)
	}
	return sim, us
}

func TestTeamsPagesAndSearch(t *testing.T) {
	sim, _ := teamsTenant(t, "Team.ReadBasic.All")
	c := newClient(t, sim, secret)
	for i := range graph.TeamsPageSize { // more than a page
		if _, err := sim.AddTeam(tenantID, m365sim.Team{DisplayName: fmt.Sprintf("Project %02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	token := ""
	pages := 0
	for ; ; pages++ {
		page, next, err := c.Teams(t.Context(), tenantID, "", token)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > graph.TeamsPageSize || pages > 5 {
			t.Fatalf("page of %d teams, page %d", len(page), pages)
		}
		for _, tm := range page {
			names = append(names, tm.DisplayName)
		}
		if next == "" {
			break
		}
		token = next
	}
	var want []string
	for _, tm := range sim.TeamsOf(tenantID) {
		want = append(want, tm.DisplayName)
	}
	if !slices.Equal(names, want) || pages != 1 {
		t.Errorf("teams = %v in %d pages, want %v in 2", names, pages+1, want)
	}

	for search, want := range map[string][]string{
		"fin":       {"Finance", "finance – Berlin"}, // case-insensitive prefix
		"Finance –": {"finance – Berlin"},
		"O'Brien":   {"O'Brien's team"}, // the quote is escaped
		"nothing":   nil,
	} {
		var got []string
		token := ""
		for {
			page, next, err := c.Teams(t.Context(), tenantID, search, token)
			if err != nil {
				t.Fatalf("search %q: %v", search, err)
			}
			for _, tm := range page {
				got = append(got, tm.DisplayName)
			}
			if next == "" {
				break
			}
			token = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("search %q = %v, want %v", search, got, want)
		}
	}

	if _, _, err := c.Teams(t.Context(), tenantID, "", "not a token!"); errkind.Of(err) != errkind.Invalid {
		t.Errorf("a bad page token: %v, want invalid", err)
	}
}

func TestTeamsChannels(t *testing.T) {
	sim, _ := teamsTenant(t, "Channel.ReadBasic.All")
	c := newClient(t, sim, secret)
	team := sim.TeamsOf(tenantID)[0]
	got, err := c.Channels(t.Context(), tenantID, team.ID)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sim.ChannelsOf(tenantID, team.ID)
	if len(got) != len(want) || got[0].DisplayName != "General" || got[0].MembershipType != "standard" ||
		got[1].ID != want[1].ID || got[1].MembershipType != "private" {
		t.Errorf("Channels = %+v, want %+v", got, want)
	}
	if _, err := c.Channels(t.Context(), tenantID, "00000000-0000-4000-8000-000000000000"); errkind.Of(err) != errkind.NotFound {
		t.Errorf("unknown team: %v, want not_found", err)
	}
}

func TestTeamsPermissionMissing(t *testing.T) {
	sim, us := teamsTenant(t, "User.Read.All")
	c := newClient(t, sim, secret)
	app := sim.TeamsApps(tenantID)[0]
	calls := map[string]func() error{
		"Teams": func() error { _, _, err := c.Teams(t.Context(), tenantID, "", ""); return err },
		"Channels": func() error {
			_, err := c.Channels(t.Context(), tenantID, sim.TeamsOf(tenantID)[0].ID)
			return err
		},
		"AppCatalogID":     func() error { _, err := c.AppCatalogID(t.Context(), tenantID, manifestID); return err },
		"InstallApp":       func() error { _, err := c.InstallApp(t.Context(), tenantID, us[0].ID, app.ID); return err },
		"InstalledAppID":   func() error { _, err := c.InstalledAppID(t.Context(), tenantID, us[0].ID, app.ID); return err },
		"InstallationChat": func() error { _, err := c.InstallationChat(t.Context(), tenantID, us[0].ID, "eA=="); return err },
	}
	for name, call := range calls {
		err := call()
		var e *errkind.Error
		if errkind.Of(err) != errkind.Forbidden || !errors.As(err, &e) || e.Status != 403 {
			t.Errorf("%s without its permission: %v, want forbidden (403)", name, err)
		}
	}
}

func TestAppCatalogID(t *testing.T) {
	sim, _ := teamsTenant(t, "AppCatalog.Read.All")
	c := newClient(t, sim, secret)
	id, err := c.AppCatalogID(t.Context(), tenantID, manifestID)
	if err != nil || id != sim.TeamsApps(tenantID)[0].ID {
		t.Errorf("AppCatalogID = %q, %v; want %q", id, err, sim.TeamsApps(tenantID)[0].ID)
	}
	if _, err := c.AppCatalogID(t.Context(), tenantID, "9e9e9e9e-0000-4000-8000-000000000000"); errkind.Of(err) != errkind.NotFound {
		t.Errorf("absent app: %v, want not_found", err)
	}
}

func TestInstallAppIsIdempotent(t *testing.T) {
	sim, us := teamsTenant(t, "TeamsAppInstallation.ReadWriteSelfForUser.All")
	c := newClient(t, sim, secret)
	app := sim.TeamsApps(tenantID)[0]
	ines := us[0]

	if _, err := c.InstalledAppID(t.Context(), tenantID, ines.ID, app.ID); errkind.Of(err) != errkind.NotFound {
		t.Errorf("before installing: %v, want not_found", err)
	}
	id, err := c.InstallApp(t.Context(), tenantID, ines.ID, app.ID)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.InstallApp(t.Context(), tenantID, ines.ID, app.ID) // 409 → the existing installation
	if err != nil || again != id {
		t.Errorf("second InstallApp = %q, %v; want %q", again, err, id)
	}
	if got, err := c.InstalledAppID(t.Context(), tenantID, ines.ID, app.ID); err != nil || got != id {
		t.Errorf("InstalledAppID = %q, %v; want %q", got, err, id)
	}
	// Installed by the user in Teams already: same answer.
	tomInst, err := sim.InstallTeamsApp(tenantID, us[1].ID, app.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.InstallApp(t.Context(), tenantID, us[1].UserPrincipalName, app.ID); err != nil || got != tomInst {
		t.Errorf("InstallApp for a user who installed it = %q, %v; want %q", got, err, tomInst)
	}
	in := sim.Installations(tenantID, ines.ID)
	if len(in) != 1 || in[0].ID != id {
		t.Fatalf("installations = %+v", in)
	}
	chat, err := c.InstallationChat(t.Context(), tenantID, ines.ID, id)
	if err != nil || chat != in[0].ChatID || chat != m365sim.PersonalChatID(ines.ID, clientID) {
		t.Errorf("InstallationChat = %q, %v; want %q", chat, err, in[0].ChatID)
	}

	for name, tc := range map[string]struct {
		user, app string
		want      errkind.Kind
	}{
		"unknown user": {"00000000-0000-4000-8000-000000000000", app.ID, errkind.NotFound},
		"unknown app":  {ines.ID, "11111111-2222-4333-8444-555555555555", errkind.NotFound},
	} {
		if _, err := c.InstallApp(t.Context(), tenantID, tc.user, tc.app); errkind.Of(err) != tc.want {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := c.InstallationChat(t.Context(), tenantID, ines.ID, "bm90IGFuIGluc3RhbGxhdGlvbg=="); errkind.Of(err) != errkind.NotFound {
		t.Errorf("chat of an unknown installation: %v, want not_found", err)
	}

	// The Self permission installs only this app.
	other, err := sim.AddTeamsApp(tenantID, m365sim.TeamsApp{ExternalID: "another-manifest", AzureADAppID: "99999999-8888-4777-8666-555555555555"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.InstallApp(t.Context(), tenantID, ines.ID, other.ID); errkind.Of(err) != errkind.Forbidden {
		t.Errorf("installing another app: %v, want forbidden", err)
	}
}

func TestCheckTeamsAccess(t *testing.T) {
	for _, tc := range []struct {
		roles []string
		want  map[string]bool
	}{
		{graph.TeamsPermissions, map[string]bool{"Team.ReadBasic.All": true, "Channel.ReadBasic.All": true, "AppCatalog.Read.All": true, "TeamsAppInstallation.ReadWriteSelfForUser.All": true}},
		{[]string{"Team.ReadBasic.All"}, map[string]bool{"Team.ReadBasic.All": true, "Channel.ReadBasic.All": false, "AppCatalog.Read.All": false, "TeamsAppInstallation.ReadWriteSelfForUser.All": false}},
		{[]string{"User.Read.All"}, map[string]bool{"Team.ReadBasic.All": false, "AppCatalog.Read.All": false, "TeamsAppInstallation.ReadWriteSelfForUser.All": false}},
	} {
		sim, _ := teamsTenant(t, tc.roles...)
		got, err := newClient(t, sim, secret).CheckTeamsAccess(t.Context(), tenantID)
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("roles %v: CheckTeamsAccess = %v, %v; want %v", tc.roles, got, err, tc.want)
		}
	}
}
