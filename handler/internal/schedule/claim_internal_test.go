package schedule

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

type countStarter struct{ n int }

func (c *countStarter) Start(context.Context, tablestore.Org, dirsync.StartOptions) (dirsync.Run, bool, error) {
	c.n++
	return dirsync.Run{ID: "r"}, true, nil
}

type failingSettings struct {
	SettingsReader
	bad string
}

func (f failingSettings) Get(ctx context.Context, org tablestore.Org) (syncsettings.Settings, tablestore.ETag, error) {
	if org.String() == f.bad {
		return syncsettings.Settings{}, "", tablestore.ErrUnavailable
	}
	return f.SettingsReader.Get(ctx, org)
}

// TestClaims checks that a fresh claim left by another invocation keeps this one away, and that an
// abandoned one (its claimant died before recording the start) is taken over after ClaimLease.
// It also checks that an org whose settings cannot be read fails alone.
func TestClaims(t *testing.T) {
	store := tablestoretest.Open(t)
	settings := syncsettings.NewStore(store)
	for _, name := range []string{"acme", "broken"} {
		org, _ := tablestore.NewOrg(name)
		s := syncsettings.Defaults()
		s.Frequency = syncsettings.Daily
		if _, err := settings.Put(t.Context(), org, s, ""); err != nil {
			t.Fatal(err)
		}
	}
	acme, _ := tablestore.NewOrg("acme")
	slot := time.Date(2026, 6, 1, 6, 0, 0, 0, time.UTC)
	claimedAt := slot.Add(time.Minute)
	if _, err := store.Table(Table).Insert(t.Context(), acme, rowKey, state{Claim: slot, ClaimedAt: claimedAt}); err != nil {
		t.Fatal(err)
	}

	var now time.Time
	starter := &countStarter{}
	s, err := New(Config{Orgs: settings.Orgs, Settings: failingSettings{settings, "broken"}, Starter: starter, Store: store,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	now = claimedAt.Add(ClaimLease - time.Second)
	res, err := s.Run(t.Context())
	if err != nil || len(res.Started) != 0 || len(res.Skipped) != 1 || res.Skipped[0].Reason != Claimed || starter.n != 0 {
		t.Fatalf("fresh claim: %+v, %v, %d starts; want acme skipped as claimed", res, err, starter.n)
	}
	if len(res.Failed) != 1 || res.Failed[0].Org.String() != "broken" || !errors.Is(res.Failed[0], tablestore.ErrUnavailable) {
		t.Errorf("Failed = %v, want broken with ErrUnavailable", res.Failed)
	}
	now = claimedAt.Add(ClaimLease)
	res, err = s.Run(t.Context())
	if err != nil || len(res.Started) != 1 || !res.Started[0].Slot.Equal(slot) || starter.n != 1 {
		t.Fatalf("abandoned claim: %+v, %v, %d starts; want acme started for %s", res, err, starter.n, slot)
	}
	st, _, err := tablestore.Get[state](t.Context(), store.Table(Table), acme, rowKey)
	if err != nil || !st.Served.Equal(slot) || !st.Claim.IsZero() || st.RunID != "r" {
		t.Errorf("state after start = %+v, %v; want served %s by r, no claim", st, err, slot)
	}
}

func TestRunFailsWhenOrgsCannotBeListed(t *testing.T) {
	store := tablestoretest.Open(t)
	s, err := New(Config{
		Orgs:     func(context.Context) ([]tablestore.Org, error) { return nil, tablestore.ErrThrottled },
		Settings: syncsettings.NewStore(store), Starter: &countStarter{}, Store: store,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(t.Context()); !errors.Is(err, tablestore.ErrThrottled) {
		t.Errorf("Run = %v, want ErrThrottled", err)
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New(Config{}) succeeded, want an error naming the missing fields")
	}
}
