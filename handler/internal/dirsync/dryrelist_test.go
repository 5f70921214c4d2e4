package dirsync_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
)

// counts are the columns of a run a dry run must predict.
type counts struct {
	Processed, Created, Updated, Unchanged, Reactivated, Skipped, Invalid, Conflicts, Linked, Disabled int
}

func countsOf(r dirsync.Run) counts {
	return counts{r.Processed, r.Created, r.Updated, r.Unchanged, r.Reactivated, r.Skipped, r.Invalid, r.Conflicts, r.Linked, r.Excluded.Disabled}
}

// TestDryRunOfUserListedTwice: a dry run writes nothing, so the second listing of a user in
// its round cannot find the stakeholder its first listing would have written; it must still
// count the user as the real run of the same round does (created once, then merged), and log
// one creation.
func TestDryRunOfUserListedTwice(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, e *env) (target string) // the directory before the round
		change  func(*entra.User)
	}{
		{"full round into an empty directory, changed meanwhile", emptyDirectory, func(u *entra.User) { u.Department = "Moved" }},
		{"full round into an empty directory, unchanged", emptyDirectory, func(*entra.User) {}},
		{"full round into an empty directory, address changed", emptyDirectory, newAddress},
		{"full round, linked by address, address changed", manualForFirst, newAddress},
		{"full round, linked by address, changed meanwhile", manualForFirst, func(u *entra.User) { u.JobTitle = "Lead" }},
		{"delta round, new user changed meanwhile", newUsersAfterSync, func(u *entra.User) { u.Department = "Moved" }},
		{"delta round, new user's address changed", newUsersAfterSync, newAddress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			e.settings(t, generous)
			target := tc.prepare(t, e)

			dry := runStaged(t, e.relisting(target, tc.change), e.dryRun)
			real := runStaged(t, e.relisting(target, tc.change), e.sync)
			if dry.Kind != real.Kind {
				t.Fatalf("dry run kind %s, real run kind %s", dry.Kind, real.Kind)
			}
			if got, want := countsOf(dry), countsOf(real); got != want {
				t.Errorf("dry run counts %+v\nreal run counts %+v", got, want)
			}
			if created := actions(changesOf(e.changes(t, dry.ID), target))[dirsync.ActCreated]; created > 1 {
				t.Errorf("dry run logs the user's creation %d times", created)
			}
			e.byExternal(t, e.org) // fails on a duplicate
		})
	}
}

// emptyDirectory: 80 users (two pages), no stakeholders; the first user is listed twice.
func emptyDirectory(t *testing.T, e *env) string {
	return e.addUsers(t, "Twice", 80)[0]
}

// manualForFirst: as emptyDirectory, with a manual stakeholder holding the first user's address.
func manualForFirst(t *testing.T, e *env) string {
	ids := e.addUsers(t, "Twice", 80)
	e.manual(t, e.org, "Twice", "N000", "twice.n000@contoso.example")
	return ids[0]
}

// newUsersAfterSync: 10 users synced, then 80 new ones, the first of them listed twice.
func newUsersAfterSync(t *testing.T, e *env) string {
	e.addUsers(t, "Early", 10)
	wantState(t, e.sync(t), dirsync.Succeeded)
	return e.addUsers(t, "Late", 80)[0]
}

func actions(cs []dirsync.Change) map[string]int {
	out := map[string]int{}
	for _, c := range cs {
		out[c.Action]++
	}
	return out
}

// TestDryRunRedoesARelistingPage: a dry run's page that listed a user again is put off after
// its shadows were written (its change log could not be stored) and done again: the redo
// decides against the shadow as the page found it, not against the page's own first attempt,
// so the counts still match the real run's.
func TestDryRunRedoesARelistingPage(t *testing.T) {
	e := setup(t)
	e.settings(t, generous)
	target := emptyDirectory(t, e)
	change := func(u *entra.User) { u.Department = "Moved" }

	e.configure(func(c *dirsync.Config) {
		onePagePerStep(c)
		c.Directory = &relistDir{graphDir: e.dir, target: target, changes: []func(*entra.User){change}}
	})
	var busy atomic.Bool
	e.kill.setFail(func(r *http.Request, body []byte) bool {
		return busy.Load() && strings.HasSuffix(r.URL.Path, "$batch") && bytes.Contains(body, []byte(dirsync.ChangesTable)) &&
			bytes.Contains(body, []byte(`"seq"`)) && bytes.Contains(body, []byte(target))
	})
	dry := e.startOpts(t, dirsync.StartOptions{Trigger: "manual", DryRun: true})
	e.deliverOne(t) // page 1
	busy.Store(true)
	e.deliverOne(t) // page 2, with the repeat: its change log fails, the step is put off
	busy.Store(false)
	e.drain(t)
	got := accounted(t, e.run(t, dry.ID))
	wantState(t, got, dirsync.Succeeded)
	if got.Rescheduled != 1 {
		t.Fatalf("dry run rescheduled %d times, want 1: the redo was not staged", got.Rescheduled)
	}

	e.wantDryAsReal(t, got, target, e.relisting(target, change))
}

// wantDryAsReal runs the real round over dir (configured) and checks that dry, the finished
// dry run of the same round, counted what it did and logged target's creation once.
func (e *env) wantDryAsReal(t *testing.T, dry dirsync.Run, target string, dir stager) {
	t.Helper()
	real := runStaged(t, dir, e.sync)
	if g, w := countsOf(dry), countsOf(real); g != w {
		t.Errorf("dry run counts %+v\nreal run counts %+v", g, w)
	}
	if created := actions(changesOf(e.changes(t, dry.ID), target))[dirsync.ActCreated]; created != 1 {
		t.Errorf("dry run logs the user's creation %d times, want 1", created)
	}
}
