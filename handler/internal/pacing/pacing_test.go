package pacing_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/pacing"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

const tenant = "3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b"

var t0 = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

func ones(n int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = 1
	}
	return r
}

// checkLimits fails when any mailbox's slots are closer than the interval, or any rolling
// 24 hours of one mailbox holds more recipients than the cap.
func checkLimits(t *testing.T, l pacing.Limits, slots []pacing.Slot, recipients map[pacing.Slot]int) {
	t.Helper()
	by := map[string][]pacing.Slot{}
	for _, s := range slots {
		by[s.Mailbox] = append(by[s.Mailbox], s)
	}
	for m, ss := range by {
		slices.SortFunc(ss, func(a, b pacing.Slot) int { return a.At.Compare(b.At) })
		for i := 1; i < len(ss); i++ {
			if gap := ss[i].At.Sub(ss[i-1].At); gap < l.Interval() {
				t.Fatalf("mailbox %s: slots %v and %v are %v apart, under the interval %v", m, ss[i-1].At, ss[i].At, gap, l.Interval())
			}
		}
		for i := range ss {
			n := 0
			for j := i; j < len(ss) && ss[j].At.Sub(ss[i].At) < 24*time.Hour; j++ {
				n += max(recipients[ss[j]], 1)
			}
			if n > l.DailyRecipients {
				t.Fatalf("mailbox %s: %d recipients in the 24 h from %v, over %d", m, n, ss[i].At, l.DailyRecipients)
			}
		}
	}
}

func TestReserve(t *testing.T) {
	store := tablestoretest.Open(t)
	tests := []struct {
		name       string
		limits     pacing.Limits
		mailboxes  []string
		messages   int
		horizon    time.Duration
		wantSlots  int
		wantPerBox map[string]int
		wantLastAt time.Duration // from t0, of the last slot
	}{
		{name: "one mailbox, Exchange rate", limits: pacing.Exchange, mailboxes: []string{"a@x"}, messages: 30, horizon: time.Hour,
			wantSlots: 30, wantPerBox: map[string]int{"a@x": 30}, wantLastAt: 29 * pacing.Exchange.Interval()},
		{name: "pool spreads evenly", limits: pacing.Exchange, mailboxes: []string{"b@x", "c@x", "d@x"}, messages: 30, horizon: time.Hour,
			wantSlots: 30, wantPerBox: map[string]int{"b@x": 10, "c@x": 10, "d@x": 10}, wantLastAt: 9 * pacing.Exchange.Interval()},
		{name: "horizon gives a prefix", limits: pacing.Exchange, mailboxes: []string{"e@x"}, messages: 100, horizon: time.Minute,
			wantSlots: 29, wantPerBox: map[string]int{"e@x": 29}, wantLastAt: 28 * pacing.Exchange.Interval()},
		{name: "daily cap moves to the next free hour", limits: pacing.Limits{PerMinute: 6000, DailyRecipients: 50}, mailboxes: []string{"f@x"},
			messages: 60, horizon: 48 * time.Hour, wantSlots: 60, wantPerBox: map[string]int{"f@x": 60}, wantLastAt: 25*time.Hour + 9*pacing.Limits{PerMinute: 6000}.Interval()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := pacing.New(store, tc.limits)
			if err != nil {
				t.Fatal(err)
			}
			slots, err := p.Reserve(t.Context(), tenant, tc.mailboxes, ones(tc.messages), t0, t0.Add(tc.horizon))
			if err != nil {
				t.Fatal(err)
			}
			if len(slots) != tc.wantSlots {
				t.Fatalf("got %d slots, want %d", len(slots), tc.wantSlots)
			}
			per := map[string]int{}
			for _, s := range slots {
				per[s.Mailbox]++
				if s.At.Before(t0) {
					t.Fatalf("slot %v before notBefore", s.At)
				}
			}
			for m, n := range tc.wantPerBox {
				if per[m] != n {
					t.Errorf("mailbox %s got %d slots, want %d (all: %v)", m, per[m], n, per)
				}
			}
			if got := slots[len(slots)-1].At.Sub(t0); got != tc.wantLastAt {
				t.Errorf("last slot at t0+%v, want t0+%v", got, tc.wantLastAt)
			}
			checkLimits(t, tc.limits, slots, nil)
		})
	}
}

// TestReserveContinuesWhereTheLastLeftOff: a second reservation never reuses a slot.
func TestReserveContinuesWhereTheLastLeftOff(t *testing.T) {
	p, err := pacing.New(tablestoretest.Open(t), pacing.Exchange)
	if err != nil {
		t.Fatal(err)
	}
	first, err := p.Reserve(t.Context(), tenant, []string{"a@x"}, ones(5), t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.Reserve(t.Context(), tenant, []string{"A@X"}, ones(5), t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := first[4].At.Add(pacing.Exchange.Interval()); !second[0].At.Equal(want) {
		t.Fatalf("second reservation starts at %v, want %v (after the first's last slot)", second[0].At, want)
	}
}

// TestConcurrentReservationsNeverShareASlot runs reservations of several workers at once, as
// scaled-out MailSender instances do, and checks the union keeps the limits.
func TestConcurrentReservationsNeverShareASlot(t *testing.T) {
	limits := pacing.Limits{PerMinute: 600, DailyRecipients: 10_000}
	p, err := pacing.New(tablestoretest.Open(t), limits)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		all []pacing.Slot
		wg  sync.WaitGroup
	)
	for range 6 {
		wg.Go(func() {
			for range 5 {
				slots, err := p.Reserve(t.Context(), tenant, []string{"a@x", "b@x"}, ones(7), t0, t0.Add(time.Hour))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				all = append(all, slots...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(all) != 6*5*7 {
		t.Fatalf("got %d slots, want %d", len(all), 6*5*7)
	}
	checkLimits(t, limits, all, nil)
}

func TestReserveRefuses(t *testing.T) {
	p, err := pacing.New(tablestoretest.Open(t), pacing.Limits{PerMinute: 30, DailyRecipients: 100})
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"no mailbox": func() error {
			_, err := p.Reserve(t.Context(), tenant, nil, ones(1), t0, t0.Add(time.Hour))
			return err
		},
		"message over the daily cap": func() error {
			_, err := p.Reserve(t.Context(), tenant, []string{"a@x"}, []int{101}, t0, t0.Add(time.Hour))
			return err
		},
	} {
		if err := call(); !errors.Is(err, errkind.Invalid) {
			t.Errorf("%s: got %v, want an Invalid error", name, err)
		}
	}
	if _, err := pacing.New(nil, pacing.Limits{}); err == nil {
		t.Error("zero limits accepted")
	}
}

func TestEstimateAndParse(t *testing.T) {
	l := pacing.Exchange
	if got := l.Estimate(t0, 0, 1); !got.Equal(t0) {
		t.Errorf("nothing left: %v, want now", got)
	}
	// 10 000 recipients from one mailbox: one day's cap, 9 999 intervals after the first.
	if got, want := l.Estimate(t0, 10_000, 1), t0.Add(9_999*l.Interval()); !got.Equal(want) {
		t.Errorf("10 000 from one mailbox: %v, want %v", got, want)
	}
	// 20 000: the second 10 000 wait for the next day.
	if got := l.Estimate(t0, 20_000, 1); got.Sub(t0) < 24*time.Hour {
		t.Errorf("20 000 from one mailbox finish in %v, want over a day", got.Sub(t0))
	}
	if got, err := pacing.ParseLimits(" 30/10000"); err != nil || got != pacing.Exchange {
		t.Errorf("ParseLimits: %v %v", got, err)
	}
	for _, bad := range []string{"", "30", "0/10", "x/y", "30/-1"} {
		if _, err := pacing.ParseLimits(bad); err == nil {
			t.Errorf("ParseLimits(%q) accepted", bad)
		}
	}
}
