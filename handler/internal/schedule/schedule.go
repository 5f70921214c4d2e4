// Package schedule decides when scheduled stakeholder syncs are due and starts them.
//
// # Slots
//
// An org's sync settings name a frequency and an IANA time zone. The slots of a frequency are
// wall-clock times in that zone:
//
//   - manual: none
//   - daily: 06:00 every day
//   - twice_daily: 06:00 and 18:00 every day
//   - weekly: 06:00 every Monday
//
// A slot is built with time.Date in the org's zone, so it follows daylight saving time: 06:00 in
// Berlin is 05:00 UTC in winter and 04:00 UTC in summer. Wall times that do not exist or exist
// twice are what time.Date makes of them:
//
//   - A wall time inside a gap (clocks jump forward over it) is normalized forward by the length
//     of the gap: Antarctica/Casey jumped from +08 to +11 at 06:00 on 2018-10-07, so that day's
//     slot is 09:00 +11, which is the same instant as 06:00 +08.
//   - A wall time inside an overlap (clocks fall back over it) is one instant, the one time.Date
//     picks; the slot fires once, never twice. No zone in the tz database has had 06:00 or 18:00
//     inside an overlap since 1970: transitions happen at night.
//   - A calendar day that a zone skipped entirely (Pacific/Apia, 2011-12-30) has no slot of its
//     own: time.Date lands on a neighbouring day's slot, and duplicates are harmless because Next
//     and Latest look at instants, not at days.
package schedule

import (
	"sync"
	"time"

	// Go reads zone data from the host's /usr/share/zoneinfo, which an Azure Functions host (or a
	// minimal container) may lack; then every zone but UTC would be "bad" and no org's schedule
	// would ever fire. Embedding the tz database (about 450 kB) makes LoadLocation work everywhere.
	_ "time/tzdata"

	"github.com/leapchange/m365/handler/internal/syncsettings"
)

// SlotHour is the local hour of the morning slot; twice_daily adds EveningHour.
const (
	SlotHour    = 6
	EveningHour = 18
)

// window is how many days on either side of an instant are searched for slots: a week for
// weekly, plus a day a zone may have skipped, plus a day for the zone's offset from UTC.
const window = 9

// Location returns the zone of s, or false when it is not a usable IANA name ("" and "Local"
// included: they would mean UTC or the host's zone, not the org's).
func Location(s syncsettings.Settings) (*time.Location, bool) {
	if s.TimeZone == "" || s.TimeZone == "Local" {
		return nil, false
	}
	if loc, ok := zones.Load(s.TimeZone); ok {
		return loc.(*time.Location), true
	}
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return nil, false
	}
	zones.Store(s.TimeZone, loc)
	return loc, true
}

// zones caches loaded zones by name: LoadLocation reads and parses zone data on every call.
var zones sync.Map

// hours returns the local slot hours of f on weekday wd, nil for none (manual or unknown).
func hours(f syncsettings.Frequency, wd time.Weekday) []int {
	switch f {
	case syncsettings.Daily:
		return []int{SlotHour}
	case syncsettings.TwiceDaily:
		return []int{SlotHour, EveningHour}
	case syncsettings.Weekly:
		if wd == time.Monday {
			return []int{SlotHour}
		}
	}
	return nil
}

// slots calls yield with every slot of s on the local calendar days within window days of t.
// It reports false when s has no slots (manual, unknown frequency, bad zone).
func slots(s syncsettings.Settings, t time.Time, yield func(time.Time)) bool {
	loc, ok := Location(s)
	if !ok || hours(s.Frequency, time.Monday) == nil {
		return false
	}
	l := t.In(loc)
	for d := -window; d <= window; d++ {
		// Noon of the day is never in a gap, so its weekday is the day's weekday.
		day := time.Date(l.Year(), l.Month(), l.Day()+d, 12, 0, 0, 0, loc)
		for _, h := range hours(s.Frequency, day.Weekday()) {
			yield(time.Date(day.Year(), day.Month(), day.Day(), h, 0, 0, 0, loc))
		}
	}
	return true
}

// Next returns the first slot of s strictly after after, in s's zone. It returns false for
// manual, an unknown frequency or a bad zone.
func Next(s syncsettings.Settings, after time.Time) (time.Time, bool) {
	var best time.Time
	found := false
	ok := slots(s, after, func(t time.Time) {
		if t.After(after) && (!found || t.Before(best)) {
			best, found = t, true
		}
	})
	return best, ok && found
}

// Latest returns the latest slot of s at or before now, in s's zone. It returns false for
// manual, an unknown frequency or a bad zone.
func Latest(s syncsettings.Settings, now time.Time) (time.Time, bool) {
	var best time.Time
	found := false
	ok := slots(s, now, func(t time.Time) {
		if !t.After(now) && (!found || t.After(best)) {
			best, found = t, true
		}
	})
	return best, ok && found
}
