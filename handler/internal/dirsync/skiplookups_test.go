package dirsync_test

import (
	"context"
	"testing"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/stakeholder"
)

// repeatingDir returns its first page's first user again at the end of its second page, as
// changed by change: Graph may list a user twice in one round when it changes meanwhile.
type repeatingDir struct {
	*graphDir
	change func(*entra.User)
	first  *entra.User
	pages  int
}

func (d *repeatingDir) UsersDelta(ctx context.Context, tenant, link string) (entra.UserPage, error) {
	page, err := d.graphDir.UsersDelta(ctx, tenant, link)
	if err != nil || len(page.Users) == 0 {
		return page, err
	}
	d.pages++
	switch d.pages {
	case 1:
		u := page.Users[0]
		d.first = &u
	case 2:
		u := *d.first
		d.change(&u)
		page.Users = append(page.Users, u)
	}
	return page, nil
}

// TestUserListedTwiceInAFullRound: a full round into an empty directory looks nothing up, so a
// user it meets a second time finds its own first write only as a conflict on its derived id;
// it is merged into that stakeholder then, counted once as created and once by the merge, and
// no second stakeholder appears.
func TestUserListedTwiceInAFullRound(t *testing.T) {
	for _, tc := range []struct {
		name          string
		change        func(*entra.User)
		updated, same int
		department    string
	}{
		{"changed meanwhile", func(u *entra.User) { u.Department = "Moved" }, 1, 0, "Moved"},
		{"unchanged", func(*entra.User) {}, 0, 1, "Operations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			e.settings(t, generous)
			ids := e.addUsers(t, "Twice", 80) // two pages of 50
			dir := &repeatingDir{graphDir: e.dir, change: tc.change}
			e.configure(func(c *dirsync.Config) { c.Directory = dir })
			run := e.sync(t)
			wantState(t, run, dirsync.Succeeded)
			if dir.first == nil || dir.pages < 2 {
				t.Fatalf("the directory served %d pages: the repeat was not staged", dir.pages)
			}
			if run.Kind != "full" || run.Processed != 81 || run.Created != 80 || run.Updated != tc.updated || run.Unchanged != tc.same || run.Synced != 80 {
				t.Errorf("run = kind %s, processed %d, created %d, updated %d, unchanged %d, synced %d; want full, 81, 80, %d, %d, 80",
					run.Kind, run.Processed, run.Created, run.Updated, run.Unchanged, run.Synced, tc.updated, tc.same)
			}
			all := e.byExternal(t, e.org)
			if len(all) != len(ids) {
				t.Errorf("%d stakeholders linked, want %d", len(all), len(ids))
			}
			st := all[dir.first.ID]
			if st.ID != stakeholder.SyncedID(dir.first.ID) || st.Department != tc.department || st.Base[stakeholder.Department] != tc.department {
				t.Errorf("repeated user's stakeholder = %s, department %q (base %q); want %s, %q", st.ID, st.Department, st.Base[stakeholder.Department], stakeholder.SyncedID(dir.first.ID), tc.department)
			}
		})
	}
}

// TestAddressTakenDuringAFullRound: a manual stakeholder created while a full round into an
// empty directory runs (which looks up no addresses) takes a user's address just before the
// user's create: the create finds the address taken, and the user is linked to that
// stakeholder as a lookup would have linked it, not reported invalid.
func TestAddressTakenDuringAFullRound(t *testing.T) {
	e := setup(t)
	e.settings(t, generous)
	ids := e.addUsers(t, "Race", 80)
	const addr = "race.n060@contoso.example" // ids[60]'s, on the second page
	var manual stakeholder.Stakeholder
	run := e.syncRacingEdits(t, 1, func(int) { manual = e.manual(t, e.org, "Race", "N060", addr) }, addr)
	if run.Kind != "full" || run.Created != 79 || run.Linked != 1 || run.Invalid != 0 || run.Synced != 80 {
		t.Errorf("run = kind %s, created %d, linked %d, invalid %d, synced %d; want full, 79, 1, 0, 80", run.Kind, run.Created, run.Linked, run.Invalid, run.Synced)
	}
	if all := e.all(t, e.org); len(all) != 80 {
		t.Errorf("%d stakeholders, want 80 (the manual one linked, not duplicated)", len(all))
	}
	st, _ := e.get(t, ids[60])
	if st.ID != manual.ID || st.Source != stakeholder.Entra || st.Influence != "high" || st.LastName != "N060" {
		t.Errorf("user's stakeholder = %+v, want the manual one %s linked with Entra's values", st, manual.ID)
	}
	cs := changesOf(e.changes(t, run.ID), ids[60])
	if len(cs) == 0 || cs[len(cs)-1].StakeholderID != manual.ID || cs[len(cs)-1].Action != dirsync.ActUpdated {
		t.Errorf("log = %+v, want it to end with the link to %s", cs, manual.ID)
	}
}
