package entra_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
)

func TestRedactURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{`Get "https://graph.microsoft.com/v1.0/users/delta?$skiptoken=SECRET": dial tcp: reset`, `Get "https://graph.microsoft.com/v1.0/users/delta": dial tcp: reset`},
		{"a http://h/p?$deltatoken=X#f and HTTPS://h2/q?x=1", "a http://h/p and HTTPS://h2/q"},
		{"https://h/p", "https://h/p"},
		{"end https://h/p?", "end https://h/p"},
	} {
		if got := entra.RedactURLs(tc.in); got != tc.want {
			t.Errorf("RedactURLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRequestStatsNilSafe(t *testing.T) {
	var s *entra.RequestStats
	s.Throttled()
	s.Retried(time.Second)
	if got := s.Snapshot(); got != (entra.Snapshot{}) {
		t.Errorf("nil stats = %+v", got)
	}
	s = new(entra.RequestStats)
	ctx := entra.WithRequestStats(context.Background(), s)
	entra.RequestStatsFrom(ctx).Throttled()
	entra.RequestStatsFrom(ctx).Retried(1500 * time.Millisecond)
	if got, want := s.Snapshot(), (entra.Snapshot{Throttled: 1, Retried: 1, Waited: 1500 * time.Millisecond}); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

func TestRedacted(t *testing.T) {
	cause := errors.New(`Post "https://acct.table.core.windows.net/t?$filter=x&sig=SECRET": reset`)
	err := entra.Redacted(fmt.Errorf("save: %w", cause))
	if got := err.Error(); got != `save: Post "https://acct.table.core.windows.net/t": reset` {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(err, cause) {
		t.Error("the cause is lost")
	}
	if entra.Redacted(nil) != nil {
		t.Error("Redacted(nil) != nil")
	}
}

// TestRedactURLsAfterNonASCII: offsets found in a lower-cased copy drift where the text holds
// bytes whose lower case is longer (invalid UTF-8, 'İ'); the query must go all the same.
func TestRedactURLsAfterNonASCII(t *testing.T) {
	for _, prefix := range []string{strings.Repeat("İ", 60) + " ", strings.Repeat("\xff", 30) + " ", "user İlker: ", ""} {
		s := prefix + `Get "HTTPS://graph.microsoft.com/v1.0/users/delta?$deltatoken=SECRET": EOF`
		got := entra.RedactURLs(s)
		if strings.Contains(got, "SECRET") || !strings.Contains(got, "HTTPS://graph.microsoft.com/v1.0/users/delta") {
			t.Errorf("RedactURLs(%q) = %q", s, got)
		}
	}
}
