package appfiles

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a timer trigger schedule: a six-field NCRONTAB expression
// "{second} {minute} {hour} {day} {month} {day-of-week}", or a TimeSpan "hh:mm:ss" interval (the
// form App Service plans accept). Times are UTC.
//
// Each field accepts '*', a value, a list "a,b,c", a range "a-b", and steps "*/n", "a-b/n" or
// "a/n" (from a to the field's maximum). Months accept JAN–DEC and days of week SUN–SAT (0 = Sunday,
// 7 is also Sunday), case-insensitively. As in NCrontab (the library the host uses), a time must
// match both the day-of-month and the day-of-week fields; classic cron ORs them when both are
// restricted, NCrontab does not.
type Schedule struct {
	Expr     string
	Interval time.Duration // > 0 for the TimeSpan form

	sec, min, hour, day, month, dow uint64 // bit sets
}

type field struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i
}

var fields = [6]field{
	{name: "second", min: 0, max: 59},
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{name: "day-of-week", min: 0, max: 7, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}

// ParseSchedule parses a timer schedule. Five-field (minute-first) cron expressions are rejected:
// the Functions host requires the seconds field.
func ParseSchedule(expr string) (*Schedule, error) {
	s := &Schedule{Expr: expr}
	f := strings.Fields(expr)
	if len(f) == 1 && strings.Count(expr, ":") == 2 {
		d, err := ParseTimeSpan(f[0])
		if err != nil {
			return nil, err
		}
		if d <= 0 {
			return nil, fmt.Errorf("schedule %q: interval must be positive", expr)
		}
		s.Interval = d
		return s, nil
	}
	if len(f) != 6 {
		return nil, fmt.Errorf("schedule %q: want 6 fields {second} {minute} {hour} {day} {month} {day-of-week}, got %d", expr, len(f))
	}
	sets := [6]*uint64{&s.sec, &s.min, &s.hour, &s.day, &s.month, &s.dow}
	for i, text := range f {
		bits, err := fields[i].parse(text)
		if err != nil {
			return nil, fmt.Errorf("schedule %q: %s field: %w", expr, fields[i].name, err)
		}
		*sets[i] = bits
	}
	if s.dow&(1<<7) != 0 {
		s.dow |= 1 // 7 = Sunday
	}
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("schedule %q never fires", expr)
	}
	return s, nil
}

func (fd field) value(s string) (int, error) {
	for i, n := range fd.names {
		if strings.EqualFold(s, n) {
			return fd.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", s)
	}
	if v < fd.min || v > fd.max {
		return 0, fmt.Errorf("value %d out of range %d-%d", v, fd.min, fd.max)
	}
	return v, nil
}

func (fd field) parse(text string) (uint64, error) {
	var bits uint64
	for _, part := range strings.Split(text, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("bad step %q", stepText)
			}
			step = n
		}
		lo, hi := fd.min, fd.max
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = fd.value(a); err != nil {
				return 0, err
			}
			if hi, err = fd.value(b); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("range %q is backwards", rng)
			}
		default:
			v, err := fd.value(rng)
			if err != nil {
				return 0, err
			}
			lo = v
			if !hasStep {
				hi = v
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << v
		}
	}
	return bits, nil
}

func has(set uint64, v int) bool { return set&(1<<v) != 0 }

// Next returns the first time strictly after after (in UTC, whole seconds) the schedule fires, or
// the zero time if it never does within five years. For the TimeSpan form it is after + Interval.
func (s *Schedule) Next(after time.Time) time.Time {
	after = after.UTC()
	if s.Interval > 0 {
		return after.Add(s.Interval)
	}
	t := after.Truncate(time.Second).Add(time.Second)
	limit := t.AddDate(5, 0, 0)
	for t.Before(limit) {
		y, mo, d := t.Date()
		switch {
		case !has(s.month, int(mo)):
			t = time.Date(y, mo+1, 1, 0, 0, 0, 0, time.UTC)
		case !has(s.day, d) || !has(s.dow, int(t.Weekday())):
			t = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
		case !has(s.hour, t.Hour()):
			t = t.Truncate(time.Hour).Add(time.Hour)
		case !has(s.min, t.Minute()):
			t = t.Truncate(time.Minute).Add(time.Minute)
		case !has(s.sec, t.Second()):
			t = t.Add(time.Second)
		default:
			return t
		}
	}
	return time.Time{}
}

// MinInterval estimates the shortest gap between two firings over the next week from a fixed point;
// the host uses such a check to decide the default of useMonitor (off below one minute).
func (s *Schedule) MinInterval() time.Duration {
	if s.Interval > 0 {
		return s.Interval
	}
	t := s.Next(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	best := time.Duration(1<<63 - 1)
	for i := 0; i < 200 && !t.IsZero(); i++ {
		n := s.Next(t)
		if n.IsZero() {
			break
		}
		best = min(best, n.Sub(t))
		t = n
	}
	return best
}
