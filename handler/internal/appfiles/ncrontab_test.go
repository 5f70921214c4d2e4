package appfiles

import (
	"testing"
	"time"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestScheduleNext(t *testing.T) {
	for _, tc := range []struct {
		expr, after string
		want        []string // successive occurrences
	}{
		{"0 */15 * * * *", "2025-03-04T09:07:12Z", []string{"2025-03-04T09:15:00Z", "2025-03-04T09:30:00Z", "2025-03-04T09:45:00Z", "2025-03-04T10:00:00Z"}},
		{"0 */15 * * * *", "2025-03-04T09:15:00Z", []string{"2025-03-04T09:30:00Z"}}, // strictly after
		{"0 */10 * * * *", "2025-12-31T23:55:00Z", []string{"2026-01-01T00:00:00Z"}},
		{"*/20 * * * * *", "2025-03-04T09:00:50Z", []string{"2025-03-04T09:01:00Z", "2025-03-04T09:01:20Z"}},
		{"0 30 9 * * 1-5", "2025-03-07T10:00:00Z", []string{"2025-03-10T09:30:00Z", "2025-03-11T09:30:00Z"}}, // Fri → Mon
		{"0 30 9 * * MON-FRI", "2025-03-08T00:00:00Z", []string{"2025-03-10T09:30:00Z"}},
		{"0 0 8,18 * * *", "2025-03-04T09:00:00Z", []string{"2025-03-04T18:00:00Z", "2025-03-05T08:00:00Z"}},
		{"0 0 9-17/4 * * *", "2025-03-04T10:00:00Z", []string{"2025-03-04T13:00:00Z", "2025-03-04T17:00:00Z", "2025-03-05T09:00:00Z"}},
		{"0 0 0 31 * *", "2025-04-01T00:00:00Z", []string{"2025-05-31T00:00:00Z", "2025-07-31T00:00:00Z"}},
		{"0 0 0 29 FEB *", "2025-01-01T00:00:00Z", []string{"2028-02-29T00:00:00Z"}},
		{"0 0 12 1 jan,jul *", "2025-03-04T00:00:00Z", []string{"2025-07-01T12:00:00Z", "2026-01-01T12:00:00Z"}},
		{"0 0 0 * * 0", "2025-03-04T00:00:00Z", []string{"2025-03-09T00:00:00Z"}},
		{"0 0 0 * * 7", "2025-03-04T00:00:00Z", []string{"2025-03-09T00:00:00Z"}},
		{"0 0 0 13 * FRI", "2025-01-01T00:00:00Z", []string{"2025-06-13T00:00:00Z"}}, // AND semantics
		{"5/20 * * * * *", "2025-03-04T09:00:00Z", []string{"2025-03-04T09:00:05Z", "2025-03-04T09:00:25Z", "2025-03-04T09:00:45Z", "2025-03-04T09:01:05Z"}},
		{"00:05:00", "2025-03-04T09:00:03Z", []string{"2025-03-04T09:05:03Z"}},
	} {
		s, err := ParseSchedule(tc.expr)
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", tc.expr, err)
			continue
		}
		at := ts(tc.after)
		for _, w := range tc.want {
			at = s.Next(at)
			if !at.Equal(ts(w)) {
				t.Errorf("%q: next = %s, want %s", tc.expr, at.Format(time.RFC3339), w)
				break
			}
		}
	}
}

func TestScheduleNextConvertsToUTC(t *testing.T) {
	s, _ := ParseSchedule("0 0 9 * * *")
	zone := time.FixedZone("CET", 3600)
	got := s.Next(time.Date(2025, 3, 4, 9, 30, 0, 0, zone)) // 08:30 UTC
	if want := ts("2025-03-04T09:00:00Z"); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("Next = %v, want %v in UTC", got, want)
	}
}

func TestParseScheduleInvalid(t *testing.T) {
	for _, expr := range []string{
		"", "* * * * *", "* * * * * * *", "60 * * * * *", "* 60 * * * *", "* * 24 * * *", "* * * 0 * *",
		"* * * 32 * *", "* * * * 13 *", "* * * * * 8", "*/0 * * * * *", "5-1 * * * * *", "x * * * * *",
		"0 0 0 31 2 *", "0 0 0 * FOO *", "00:00:00",
	} {
		if _, err := ParseSchedule(expr); err == nil {
			t.Errorf("ParseSchedule(%q) succeeded", expr)
		}
	}
}
