package errkind

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

type hinted struct{ wait time.Duration }

func (h hinted) Error() string                 { return "busy" }
func (h hinted) ErrorKind() Kind               { return Throttled }
func (h hinted) RetryAfterHint() time.Duration { return h.wait }

func TestOfAndPolicy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		kind   Kind
		action Action
	}{
		{"nil", nil, Other, Retry},
		{"plain", errors.New("boom"), Other, Retry},
		{"wrapped sentinel", fmt.Errorf("get x: %w", NotFound), NotFound, GiveUp},
		{"conflict", fmt.Errorf("update: %w", Conflict), Conflict, Retry},
		{"typed error", fmt.Errorf("call: %w", hinted{2 * time.Second}), Throttled, RetryLater},
		{"unavailable", Unavailable, Unavailable, RetryLater},
		{"refused token", fmt.Errorf("token: %w", Unauthorized), Unauthorized, Reauthorize},
		{"missing permission", Forbidden, Forbidden, GiveUp},
		{"expired delta", Resync, Resync, Restart},
		{"bad request", Invalid, Invalid, GiveUp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Of(tc.err); got != tc.kind {
				t.Errorf("Of = %v, want %v", got, tc.kind)
			}
			if got := Policy(tc.err, 1, 5); got != tc.action {
				t.Errorf("Policy = %v, want %v", got, tc.action)
			}
		})
	}
	if Policy(errors.New("boom"), 5, 5) != GiveUp || Policy(Conflict, 5, 5) != GiveUp {
		t.Error("an unclassified failure or a conflict is retried for ever")
	}
	if RetryAfterOf(fmt.Errorf("x: %w", hinted{3 * time.Second})) != 3*time.Second || RetryAfterOf(Unavailable) != 0 {
		t.Error("RetryAfterOf")
	}
}

func TestBackoff(t *testing.T) {
	full := func(d time.Duration) time.Duration { return d - 1 } // the top of the jitter range
	for attempt, want := range map[int]time.Duration{1: 30 * time.Second, 2: time.Minute, 3: 2 * time.Minute, 6: 15 * time.Minute, 100: 15 * time.Minute} {
		if got := Backoff(attempt, 30*time.Second, 15*time.Minute, full); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", attempt, got, want)
		}
	}
	none := func(time.Duration) time.Duration { return 0 }
	if got := Backoff(1, 30*time.Second, 15*time.Minute, none); got != 15*time.Second {
		t.Errorf("the bottom of the jitter range = %v, want half the delay", got)
	}
}

func TestKindNames(t *testing.T) {
	for _, k := range append([]Kind{Other}, Kinds...) {
		if k.String() == "" || k.Error() != k.String() {
			t.Errorf("kind %d has no name", int(k))
		}
	}
}
