package entra_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/leapchange/m365/handler/internal/entra"
)

func TestKindOfSeesThroughWrapping(t *testing.T) {
	cause := errors.New("dial tcp: refused")
	err := fmt.Errorf("sync page 3: %w", &entra.Error{Kind: entra.KindResync, Status: 410, Code: "resyncRequired", Err: cause})
	if got := entra.KindOf(err); got != entra.KindResync {
		t.Errorf("KindOf = %v, want resync", got)
	}
	if !errors.Is(err, cause) {
		t.Error("the cause is lost")
	}
	if got := entra.KindOf(errors.New("plain")); got != entra.KindOther {
		t.Errorf("KindOf(plain) = %v, want other", got)
	}
	if want := "graph: resync (HTTP 410) resyncRequired"; errors.Unwrap(err).Error() != want {
		t.Errorf("Error() = %q, want %q", errors.Unwrap(err).Error(), want)
	}
}
