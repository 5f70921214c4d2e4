package dirsync_test

import (
	"testing"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// TestFullRoundKeepsUsersWhoseWriteFails: a live user whose update cannot be written (its new
// address belongs to a manual stakeholder) is reported, not taken for deleted by a full round.
func TestFullRoundKeepsUsersWhoseWriteFails(t *testing.T) {
	e := setup(t)
	e.settings(t, generous)
	u := e.addUser(t, "Ann", "Alpha")
	e.addUser(t, "Bob", "Beta")
	wantState(t, e.sync(t), dirsync.Succeeded)
	e.manual(t, e.org, "Manual", "Holder", "new.addr@contoso.example")
	e.updateUser(t, u, func(x *m365sim.User) { x.Mail = "new.addr@contoso.example" })
	must(t, e.sim.ResetDelta(testenv.Tenant))
	run := e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	if run.Kind != "full" || run.Deactivated != 0 {
		t.Errorf("run kind %s deactivated %d, want a full round deactivating nobody", run.Kind, run.Deactivated)
	}
	if st, _ := e.get(t, u); !st.Active {
		t.Errorf("live user deactivated (reason %q)", st.DeactivatedReason)
	}
	if run.ErrorCount == 0 {
		t.Errorf("the failed write was not reported: %+v", run.Errors)
	}
}

// TestSameMailInOnePage: two new users with one address in the same page give one stakeholder
// and an invalid_data error, never two stakeholders behind one email index row.
func TestSameMailInOnePage(t *testing.T) {
	e := setup(t)
	e.settings(t, generous)
	same := func(x *m365sim.User) { x.Mail = "shared@contoso.example" }
	e.addUser(t, "Cat", "One", same)
	e.addUser(t, "Cat", "Two", same)
	run := e.sync(t)
	wantState(t, run, dirsync.Succeeded)
	n := 0
	for _, s := range e.all(t, e.org) {
		if stakeholder.NormalizeEmail(s.Email) == "shared@contoso.example" {
			n++
		}
	}
	if n != 1 || run.Created != 1 || run.Invalid != 1 {
		t.Errorf("%d stakeholders hold the address; created %d invalid %d errors %+v", n, run.Created, run.Invalid, run.Errors)
	}
}
