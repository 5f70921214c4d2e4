package testenv_test

import (
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestClockNeverGoesBack(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	c := testenv.NewClock(t0)
	c.Advance(time.Minute)
	c.Set(t0) // back: ignored
	if got := c.Now(); !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("Now = %v, want %v", got, t0.Add(time.Minute))
	}
}

// Ticking gives every reading its own time, step after the one before, even to concurrent readers.
func TestTickingReadingsAreDistinct(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	now := testenv.Ticking(t0, time.Millisecond)
	const readers, reads = 4, 50
	var mu sync.Mutex
	seen := map[time.Time]bool{}
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for range reads {
				at := now()
				mu.Lock()
				seen[at] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != readers*reads {
		t.Fatalf("%d distinct readings of %d", len(seen), readers*reads)
	}
	if last := now(); !last.Equal(t0.Add((readers*reads + 1) * time.Millisecond)) {
		t.Errorf("next reading %v, want %v", last, t0.Add((readers*reads+1)*time.Millisecond))
	}
}
