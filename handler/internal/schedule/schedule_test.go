package schedule_test

import (
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/schedule"
	"github.com/leapchange/m365/handler/internal/syncsettings"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func settings(f syncsettings.Frequency, zone string) syncsettings.Settings {
	s := syncsettings.Defaults()
	s.Frequency, s.TimeZone = f, zone
	return s
}

const (
	daily  = syncsettings.Daily
	twice  = syncsettings.TwiceDaily
	weekly = syncsettings.Weekly
	manual = syncsettings.Manual
)

func TestNextAndLatest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		freq       syncsettings.Frequency
		zone       string
		at         string // instant, RFC 3339
		next, last string // "" = no slot
	}{
		// Europe/Berlin: CET +01 / CEST +02, 2026-03-29 02:00 → 03:00, 2026-10-25 03:00 → 02:00.
		{"berlin spring forward", daily, "Europe/Berlin", "2026-03-28T05:00:00Z", "2026-03-29T04:00:00Z", "2026-03-28T05:00:00Z"},
		{"berlin during spring gap", daily, "Europe/Berlin", "2026-03-29T01:30:00Z", "2026-03-29T04:00:00Z", "2026-03-28T05:00:00Z"},
		{"berlin fall back", daily, "Europe/Berlin", "2026-10-24T04:00:00Z", "2026-10-25T05:00:00Z", "2026-10-24T04:00:00Z"},
		{"berlin in doubled hour", twice, "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-25T05:00:00Z", "2026-10-24T16:00:00Z"},
		// America/New_York: EST -05 / EDT -04, 2026-03-08 and 2026-11-01.
		{"new york spring forward", daily, "America/New_York", "2026-03-07T11:00:00Z", "2026-03-08T10:00:00Z", "2026-03-07T11:00:00Z"},
		{"new york fall back", daily, "America/New_York", "2026-10-31T10:00:00Z", "2026-11-01T11:00:00Z", "2026-10-31T10:00:00Z"},
		{"new york twice daily before evening", twice, "America/New_York", "2026-06-01T21:59:59Z", "2026-06-01T22:00:00Z", "2026-06-01T10:00:00Z"},
		{"new york twice daily at evening", twice, "America/New_York", "2026-06-01T22:00:00Z", "2026-06-02T10:00:00Z", "2026-06-01T22:00:00Z"},
		{"new york twice daily over fall back", twice, "America/New_York", "2026-10-31T22:00:00Z", "2026-11-01T11:00:00Z", "2026-10-31T22:00:00Z"},
		// Australia/Lord_Howe: +10:30 / +11 (30-minute DST), 2026-04-05 02:00 → 01:30, 2026-10-04 02:00 → 02:30.
		{"lord howe dst ends", daily, "Australia/Lord_Howe", "2026-04-03T19:00:00Z", "2026-04-04T19:30:00Z", "2026-04-03T19:00:00Z"},
		{"lord howe dst starts", daily, "Australia/Lord_Howe", "2026-10-02T19:30:00Z", "2026-10-03T19:00:00Z", "2026-10-02T19:30:00Z"},
		// Weekly, Monday 2026-11-30 06:00 local, east of UTC: Asia/Tokyo +09 → Sunday 21:00 UTC.
		{"tokyo sunday just before", weekly, "Asia/Tokyo", "2026-11-29T20:59:59Z", "2026-11-29T21:00:00Z", "2026-11-22T21:00:00Z"},
		{"tokyo monday slot", weekly, "Asia/Tokyo", "2026-11-29T21:00:00Z", "2026-12-06T21:00:00Z", "2026-11-29T21:00:00Z"},
		{"tokyo local monday midnight", weekly, "Asia/Tokyo", "2026-11-29T15:00:00Z", "2026-11-29T21:00:00Z", "2026-11-22T21:00:00Z"},
		// Auckland +13 in November: Monday 06:00 = Sunday 17:00 UTC, while it is still Sunday in UTC.
		{"auckland monday is sunday in utc", weekly, "Pacific/Auckland", "2026-11-29T17:00:00Z", "2026-12-06T17:00:00Z", "2026-11-29T17:00:00Z"},
		// West of UTC: Pacific/Honolulu -10 → Monday 16:00 UTC; UTC Monday morning is still Sunday there.
		{"honolulu utc monday local sunday", weekly, "Pacific/Honolulu", "2026-11-30T09:59:00Z", "2026-11-30T16:00:00Z", "2026-11-23T16:00:00Z"},
		{"honolulu local monday 05:59", weekly, "Pacific/Honolulu", "2026-11-30T15:59:00Z", "2026-11-30T16:00:00Z", "2026-11-23T16:00:00Z"},
		{"honolulu local tuesday", weekly, "Pacific/Honolulu", "2026-12-01T10:00:00Z", "2026-12-07T16:00:00Z", "2026-11-30T16:00:00Z"},
		// Los Angeles, weekly across fall back: Monday 2026-11-02 06:00 PST = 14:00 UTC; the Monday before is PDT.
		{"los angeles weekly over fall back", weekly, "America/Los_Angeles", "2026-10-27T00:00:00Z", "2026-11-02T14:00:00Z", "2026-10-26T13:00:00Z"},
		// Antarctica/Casey jumped +08 → +11 at 06:00 local on 2018-10-07: 06:00 is normalized to 09:00 +11.
		{"casey 06:00 in a gap", daily, "Antarctica/Casey", "2018-10-06T00:00:00Z", "2018-10-06T22:00:00Z", "2018-10-05T22:00:00Z"},
		// Pacific/Apia skipped 2011-12-30 (-10 → +14): that day has no slot; the next is Dec 31 06:00 +14.
		{"apia skipped day", daily, "Pacific/Apia", "2011-12-30T06:00:00Z", "2011-12-30T16:00:00Z", "2011-12-29T16:00:00Z"},
		{"apia skipped day twice daily", twice, "Pacific/Apia", "2011-12-31T05:00:00Z", "2011-12-31T16:00:00Z", "2011-12-31T04:00:00Z"},
		// No slots.
		{"manual", manual, "Europe/Berlin", "2026-06-01T12:00:00Z", "", ""},
		{"unknown frequency", "hourly", "Europe/Berlin", "2026-06-01T12:00:00Z", "", ""},
		{"bad zone", daily, "Mars/Olympus_Mons", "2026-06-01T12:00:00Z", "", ""},
		{"empty zone", daily, "", "2026-06-01T12:00:00Z", "", ""},
		{"host zone", daily, "Local", "2026-06-01T12:00:00Z", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, at := settings(tc.freq, tc.zone), utc(tc.at)
			check := func(fn string, got time.Time, ok bool, want string) {
				t.Helper()
				switch {
				case want == "" && ok:
					t.Errorf("%s(%s) = %s, want no slot", fn, tc.at, got.UTC().Format(time.RFC3339))
				case want != "" && (!ok || !got.Equal(utc(want))):
					t.Errorf("%s(%s) = %s, %v; want %s", fn, tc.at, got.UTC().Format(time.RFC3339), ok, want)
				case ok && got.Location().String() != tc.zone:
					t.Errorf("%s(%s) is in %s, want the org's zone %s", fn, tc.at, got.Location(), tc.zone)
				}
			}
			next, ok := schedule.Next(s, at)
			check("Next", next, ok, tc.next)
			last, ok := schedule.Latest(s, at)
			check("Latest", last, ok, tc.last)
		})
	}
}

// TestSlotsAreLocalAndOrdered walks two years every 97 minutes in zones with and without DST and
// checks the invariants: Latest ≤ t < Next, slots are at the local slot hours on the right weekday,
// and Next of the latest slot is the next one (no slot skipped or repeated across transitions).
func TestSlotsAreLocalAndOrdered(t *testing.T) {
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
		"Pacific/Chatham", "America/St_Johns", "Pacific/Kiritimati", "Pacific/Pago_Pago"}
	for _, zone := range zones {
		for _, f := range []syncsettings.Frequency{daily, twice, weekly} {
			s := settings(f, zone)
			for at := utc("2025-12-20T00:00:00Z"); at.Before(utc("2027-12-31T00:00:00Z")); at = at.Add(97 * time.Minute) {
				last, ok1 := schedule.Latest(s, at)
				next, ok2 := schedule.Next(s, at)
				if !ok1 || !ok2 || last.After(at) || !next.After(at) {
					t.Fatalf("%s %s at %s: Latest %s %v, Next %s %v", zone, f, at, last, ok1, next, ok2)
				}
				if n, _ := schedule.Next(s, last); !n.Equal(next) {
					t.Fatalf("%s %s at %s: Next(Latest) = %s, Next = %s", zone, f, at, n, next)
				}
				for _, slot := range []time.Time{last, next} {
					h := slot.Hour()
					if slot.Minute() != 0 || (h != 6 && (h != 18 || f != twice)) || (f == weekly && slot.Weekday() != time.Monday) {
						t.Fatalf("%s %s: slot %s is not a %s slot", zone, f, slot, f)
					}
				}
			}
		}
	}
}
