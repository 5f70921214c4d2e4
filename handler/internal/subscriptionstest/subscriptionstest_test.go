package subscriptionstest_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/subscriptions"
	"github.com/leapchange/m365/handler/internal/subscriptionstest"
)

func TestGraphAnswersAsGraphDoes(t *testing.T) {
	ctx := t.Context()
	g := &subscriptionstest.Graph{Check: func(tenantID string, s subscriptions.Request) error {
		if tenantID != "t1" {
			return subscriptionstest.Invalid("wrong tenant")
		}
		return nil
	}}
	create := func(resource string) (subscriptions.Request, error) {
		return g.CreateSubscription(ctx, "t1", subscriptions.Request{Resource: resource})
	}

	users, err := create("/users")
	if err != nil || users.ID == "" {
		t.Fatalf("create /users = %+v, %v", users, err)
	}
	if _, err := g.CreateSubscription(ctx, "t2", subscriptions.Request{Resource: "/groups"}); errkind.Of(err) != errkind.Invalid {
		t.Errorf("Check's refusal: err = %v, want Invalid", err)
	}
	if _, err := create("/users"); errkind.Of(err) != errkind.Conflict {
		t.Errorf("a second /users: err = %v, want Conflict", err)
	}
	refusal := errors.New("forbidden")
	g.Refuse("/groups", refusal)
	if _, err := create("/groups"); !errors.Is(err, refusal) {
		t.Errorf("refused resource: err = %v", err)
	}
	g.Refuse("", refusal)
	g.Refuse("/groups", nil)
	if _, err := create("/groups"); !errors.Is(err, refusal) {
		t.Errorf("every resource refused: err = %v", err)
	}
	g.Heal()
	groups, err := create("/groups")
	if err != nil || groups.ID == users.ID {
		t.Fatalf("create /groups after Heal = %+v, %v", groups, err)
	}
	if got := g.Live(); !slices.Equal(got, []string{"/groups", "/users"}) {
		t.Errorf("Live = %v", got)
	}

	exp := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	if got, err := g.RenewSubscription(ctx, "t1", users.ID, exp); err != nil || !got.Equal(exp) {
		t.Errorf("renew = %v, %v", got, err)
	}
	g.FailRenewals(refusal)
	if _, err := g.RenewSubscription(ctx, "t1", users.ID, exp); !errors.Is(err, refusal) {
		t.Errorf("failing renewal: err = %v", err)
	}
	if err := g.ReauthorizeSubscription(ctx, "t1", users.ID); err != nil || g.Reauthorizations() != 1 {
		t.Errorf("reauthorize = %v, count %d", err, g.Reauthorizations())
	}

	g.Lose("/users")
	if got := g.Live(); !slices.Equal(got, []string{"/groups"}) {
		t.Errorf("Live after Lose(/users) = %v", got)
	}
	for name, err := range map[string]error{
		"renew lost":       func() error { _, err := g.RenewSubscription(ctx, "t1", users.ID, exp); return err }(),
		"reauthorize lost": g.ReauthorizeSubscription(ctx, "t1", users.ID),
		"delete lost":      g.DeleteSubscription(ctx, "t1", users.ID),
	} {
		if errkind.Of(err) != errkind.NotFound {
			t.Errorf("%s: err = %v, want NotFound", name, err)
		}
	}
	if err := g.DeleteSubscription(ctx, "t1", groups.ID); err != nil || len(g.Live()) != 0 {
		t.Errorf("delete = %v, live %v", err, g.Live())
	}
}
