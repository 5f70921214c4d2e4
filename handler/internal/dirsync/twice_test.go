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
