package dirsync_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/stakeholder"
)

// relistDir lists the user target again at the end of each of the pages after the one listing
// it, changed by changes[0], then also by changes[1], and so on (each time such a page is
// fetched: a step may fetch it ahead and the next step again, and a page fetched again from the
// round's start has another link, so it is also known by its first user). Graph lists a user
// again in one round when it changes during the round.
type relistDir struct {
	*graphDir
	target  string
	changes []func(*entra.User)

	mu     sync.Mutex
	first  *entra.User
	at     map[string]int // page link → how many changes the repeat on that page has
	byHead map[string]int // the same by the page's first user
	listed int
}

func (d *relistDir) UsersDelta(ctx context.Context, tenant, link string) (entra.UserPage, error) {
	page, err := d.graphDir.UsersDelta(ctx, tenant, link)
	if err != nil {
		return page, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.at[link]
	if !ok && len(page.Users) > 0 {
		n, ok = d.byHead[page.Users[0].ID]
	}
	if ok {
		d.byHead[page.Users[0].ID] = n
		u := *d.first
		for _, c := range d.changes[:n] {
			c(&u)
		}
		page.Users = append(page.Users, u)
		d.listed = max(d.listed, n)
		if n < len(d.changes) && page.NextLink != "" {
			d.at[page.NextLink] = n + 1
		}
	}
	for _, u := range page.Users {
		if u.ID == d.target && d.first == nil && page.NextLink != "" {
			d.first, d.at, d.byHead = &u, map[string]int{page.NextLink: 1}, map[string]int{}
		}
	}
	return page, nil
}

// relisting makes the engine's directory list target again in its next round: changed by
// changes[0] on the page after the one listing it, and so on.
func (e *env) relisting(target string, changes ...func(*entra.User)) *relistDir {
	d := &relistDir{graphDir: e.dir, target: target, changes: changes}
	e.configure(func(c *dirsync.Config) { c.Directory = d })
	return d
}

// stager is a staged directory: staged fails the test unless the round it served met the
// repeats it was to stage.
type stager interface{ staged(t *testing.T) }

// runStaged runs a whole round (e.sync or e.dryRun) over dir, already configured, and checks
// that it succeeded with its repeats staged.
func runStaged(t *testing.T, dir stager, round func(*testing.T) dirsync.Run) dirsync.Run {
	t.Helper()
	run := round(t)
	wantState(t, run, dirsync.Succeeded)
	dir.staged(t)
	return run
}

func (d *relistDir) staged(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.listed != len(d.changes) {
		t.Fatalf("user %s was listed again with %d of %d changes: the repeats were not staged", d.target, d.listed, len(d.changes))
	}
}

// newAddress moves a user to another mail address and UPN.
func newAddress(u *entra.User) {
	u.Mail = "moved." + u.Mail
	u.UserPrincipalName = "moved." + u.UserPrincipalName
}

// TestLinkedUserListedTwiceWithNewAddress: a user linked by address to a manual stakeholder in
// the first round, and listed again in the same round with another address, finds that
// stakeholder through its link (its Entra index row), not by the address it no longer has: no
// second stakeholder is created, and the manual one takes the new address.
func TestLinkedUserListedTwiceWithNewAddress(t *testing.T) {
	e := setup(t)
	e.settings(t, generous)
	ids := e.addUsers(t, "Twice", 80)
	manual := e.manual(t, e.org, "Twice", "N000", "twice.n000@contoso.example")
	run := runStaged(t, e.relisting(ids[0], newAddress), e.sync)
	if run.Kind != "full" || run.Processed != 81 || run.Created != 79 || run.Linked != 1 || run.Updated != 2 || run.Invalid != 0 {
		t.Errorf("run = kind %s, processed %d, created %d, linked %d, updated %d, invalid %d; want full, 81, 79, 1, 2, 0",
			run.Kind, run.Processed, run.Created, run.Linked, run.Updated, run.Invalid)
	}
	if all := e.all(t, e.org); len(all) != 80 {
		t.Errorf("%d stakeholders, want 80 (the manual one linked, not duplicated)", len(all))
	}
	st := e.byExternal(t, e.org)[ids[0]]
	if st.ID != manual.ID || st.Email != "moved.twice.n000@contoso.example" || st.Influence != "high" {
		t.Errorf("user's stakeholder = %s, email %q, influence %q; want the manual one %s with the new address", st.ID, st.Email, st.Influence, manual.ID)
	}
	owners, err := e.shs.ByEmails(t.Context(), e.org, []string{"twice.n000@contoso.example", "moved.twice.n000@contoso.example"})
	must(t, err)
	if len(owners) != 1 || owners["moved.twice.n000@contoso.example"] != manual.ID {
		t.Errorf("email index = %v, want only the new address, on %s", owners, manual.ID)
	}
}

// TestUserListedTwiceWithNewAddressInAFullRound: the skip-lookups shortcut (a full round into
// an empty directory) meets a user a second time under another address: the create conflicts
// on the derived id and is merged into the first write, which moves the address (no second
// stakeholder, no stale email index row).
func TestUserListedTwiceWithNewAddressInAFullRound(t *testing.T) {
	e := setup(t)
	e.settings(t, generous)
	ids := e.addUsers(t, "Twice", 80)
	run := runStaged(t, e.relisting(ids[0], newAddress), e.sync)
	if run.Processed != 81 || run.Created != 80 || run.Updated != 1 || run.Invalid != 0 || run.Synced != 80 {
		t.Errorf("run = processed %d, created %d, updated %d, invalid %d, synced %d; want 81, 80, 1, 0, 80",
			run.Processed, run.Created, run.Updated, run.Invalid, run.Synced)
	}
	if all := e.all(t, e.org); len(all) != 80 {
		t.Errorf("%d stakeholders, want 80", len(all))
	}
	st := e.byExternal(t, e.org)[ids[0]]
	if st.ID != stakeholder.SyncedID(ids[0]) || !strings.HasPrefix(st.Email, "moved.") {
		t.Errorf("user's stakeholder = %s, email %q; want %s with the new address", st.ID, st.Email, stakeholder.SyncedID(ids[0]))
	}
	owners, err := e.shs.ByEmails(t.Context(), e.org, []string{"twice.n000@contoso.example"})
	must(t, err)
	if len(owners) != 0 {
		t.Errorf("old address still indexed: %v", owners)
	}
}

// TestUserDisabledWhileAFullRoundRuns: a full round into an empty directory creates a user's
// stakeholder, then lists the user again, disabled meanwhile. The second listing has no write
// of its own to meet the first one by (a disabled user is never created), yet the stakeholder
// must be deactivated as a lookup would have it be, and a dry run must say so too.
func TestUserDisabledWhileAFullRoundRuns(t *testing.T) {
	e := setup(t)
	e.settings(t, generous)
	ids := e.addUsers(t, "Twice", 80)
	disable := func(u *entra.User) { u.AccountEnabled = false }

	dry := runStaged(t, e.relisting(ids[0], disable), e.dryRun)
	run := runStaged(t, e.relisting(ids[0], disable), e.sync)
	if run.Created != 80 || run.Excluded.Disabled != 0 || run.Deactivated != 1 {
		t.Errorf("run = created %d, excluded disabled %d, deactivated %d; want 80, 0, 1", run.Created, run.Excluded.Disabled, run.Deactivated)
	}
	if st := e.byExternal(t, e.org)[ids[0]]; st.Active || st.DeactivatedReason != "disabled" {
		t.Errorf("disabled user's stakeholder: active %v, reason %q; want deactivated as disabled", st.Active, st.DeactivatedReason)
	}
	if dry.PendingDeactivations != 1 || countsOf(dry) != countsOf(run) {
		t.Errorf("dry run: %d pending deactivations, counts %+v; want 1, the real run's %+v", dry.PendingDeactivations, countsOf(dry), countsOf(run))
	}
}

// TestDisabledUserLookupsInAFirstRound: a first full round looks each disabled user up, since
// the round may have created its stakeholder when it listed the user before. With nobody
// linked by address that stakeholder can only be at the user's derived id: one point read per
// disabled user, not two. Once the round has linked a user by address, the index row is read
// too, and a user linked so and listed again disabled is deactivated.
func TestDisabledUserLookupsInAFirstRound(t *testing.T) {
	t.Run("nobody linked by address", func(t *testing.T) {
		e := setup(t)
		e.settings(t, generous)
		ids := e.addUsers(t, "Off", 80)
		for _, id := range []string{ids[3], ids[40], ids[70]} {
			e.updateUser(t, id, func(u *m365sim.User) { u.AccountEnabled = false })
		}
		var reads atomic.Int32
		run := e.syncWatching(t, func(r *http.Request, _ []byte) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, stakeholder.Table+"(") && strings.Contains(r.URL.Path, "RowKey=") {
				reads.Add(1)
			}
		})
		wantState(t, run, dirsync.Succeeded)
		if run.Created != 77 || run.Excluded.Disabled != 3 {
			t.Errorf("run = created %d, excluded disabled %d; want 77, 3", run.Created, run.Excluded.Disabled)
		}
		if n := reads.Load(); n != 3 {
			t.Errorf("%d point reads of stakeholder rows, want 3 (one per disabled user)", n)
		}
	})
	t.Run("linked by address, then listed disabled", func(t *testing.T) {
		e := setup(t)
		e.settings(t, generous)
		ids := e.addUsers(t, "Twice", 80)
		manual := e.manual(t, e.org, "Twice", "N000", "twice.n000@contoso.example")
		run := runStaged(t, e.relisting(ids[0], func(u *entra.User) { u.AccountEnabled = false }), e.sync)
		if run.Linked != 1 || run.Deactivated != 1 {
			t.Errorf("run = linked %d, deactivated %d; want 1, 1", run.Linked, run.Deactivated)
		}
		if st, _ := e.get(t, ids[0]); st.ID != manual.ID || st.Active || st.DeactivatedReason != "disabled" {
			t.Errorf("user's stakeholder = %s, active %v, reason %q; want %s deactivated as disabled", st.ID, st.Active, st.DeactivatedReason, manual.ID)
		}
	})
}
