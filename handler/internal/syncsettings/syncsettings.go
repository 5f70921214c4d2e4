// Package syncsettings holds each org's stakeholder sync settings: schedule, time zone, merge
// strategy, group filter, group sync and deletion guard, validated as a whole.
package syncsettings

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/leapchange/m365/handler/internal/fielderr"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Frequency is how often scheduled syncs run.
type Frequency string

const (
	Manual     Frequency = "manual"
	Daily      Frequency = "daily"       // 06:00
	TwiceDaily Frequency = "twice_daily" // 06:00 and 18:00
	Weekly     Frequency = "weekly"      // Monday 06:00
)

// Strategy resolves a field changed both in Entra and in Leap Change since the last sync.
type Strategy string

const (
	EntraWins     Strategy = "entra_wins"
	LeapWins      Strategy = "leap_wins"
	SkipConflicts Strategy = "skip_conflicts"
)

// Group types of stakeholder groups.
var GroupTypes = []string{"functional", "geographic", "hierarchical", "custom"}

// Threshold is the deletion guard: a run that would deactivate more than Percent % of the org's
// synced active stakeholders, or more than Count of them, is held for approval.
type Threshold struct {
	Percent int `json:"percent"`
	Count   int `json:"count"`
}

// Settings are an org's sync settings.
type Settings struct {
	Frequency     Frequency `json:"frequency"`
	TimeZone      string    `json:"timeZone"`
	MergeStrategy Strategy  `json:"mergeStrategy"`
	// GroupFilter limits sync to members (nested included) of these Entra groups; empty = all users.
	GroupFilter []string `json:"groupFilter"`
	// GroupSync mirrors the filter groups as stakeholder groups of GroupType.
	GroupSync         bool      `json:"groupSync"`
	GroupType         string    `json:"groupType"`
	DeletionThreshold Threshold `json:"deletionThreshold"`
	// RealTime subscribes to Entra user (and, with a group filter, group) change notifications
	// so changes reach stakeholders within a minute; the scheduled rounds stay as the safety net.
	RealTime  bool      `json:"realTime"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	// ScheduleUpdatedAt is when frequency or time zone last changed: a slot that passed before
	// it is not caught up (the schedule did not exist yet). Other edits do not move it.
	ScheduleUpdatedAt time.Time `json:"scheduleUpdatedAt,omitzero"`
}

// Defaults are the settings of an org that never saved any.
func Defaults() Settings {
	return Settings{Frequency: Manual, TimeZone: "UTC", MergeStrategy: EntraWins, GroupFilter: []string{},
		GroupType: "custom", DeletionThreshold: Threshold{Percent: 20, Count: 500}}
}

// FieldError names one invalid setting.
type FieldError = fielderr.Field

// Invalid is every problem of a settings document.
type Invalid = fielderr.List

// MaxGroups bounds the group filter (Graph's delta $filter takes 50 ids).
const MaxGroups = 50

var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Validate checks s alone (group existence is checked by the caller against Entra) and returns
// Invalid naming every bad field.
func (s Settings) Validate() error {
	var bad Invalid
	add := func(f, m string) { bad = append(bad, FieldError{Field: f, Message: m}) }
	switch s.Frequency {
	case Manual, Daily, TwiceDaily, Weekly:
	default:
		add("frequency", fmt.Sprintf("unknown frequency %q (manual, daily, twice_daily, weekly)", s.Frequency))
	}
	if _, err := time.LoadLocation(s.TimeZone); err != nil || s.TimeZone == "" || s.TimeZone == "Local" {
		add("timeZone", fmt.Sprintf("unknown IANA time zone %q", s.TimeZone))
	}
	switch s.MergeStrategy {
	case EntraWins, LeapWins, SkipConflicts:
	default:
		add("mergeStrategy", fmt.Sprintf("unknown strategy %q (entra_wins, leap_wins, skip_conflicts)", s.MergeStrategy))
	}
	if len(s.GroupFilter) > MaxGroups {
		add("groupFilter", fmt.Sprintf("at most %d groups", MaxGroups))
	}
	seen := map[string]bool{}
	for _, id := range s.GroupFilter {
		if !guid.MatchString(id) {
			add("groupFilter", fmt.Sprintf("%q is not an Entra group id", id))
		} else if seen[id] {
			add("groupFilter", fmt.Sprintf("%s is listed twice", id))
		}
		seen[id] = true
	}
	if s.GroupSync && len(s.GroupFilter) == 0 {
		add("groupSync", "group sync mirrors the selected groups: select at least one in groupFilter")
	}
	valid := false
	for _, t := range GroupTypes {
		valid = valid || t == s.GroupType
	}
	if !valid {
		add("groupType", fmt.Sprintf("unknown group type %q (functional, geographic, hierarchical, custom)", s.GroupType))
	}
	if p := s.DeletionThreshold.Percent; p < 1 || p > 100 {
		add("deletionThreshold.percent", "must be from 1 to 100")
	}
	if c := s.DeletionThreshold.Count; c < 1 {
		add("deletionThreshold.count", "must be at least 1")
	}
	if len(bad) > 0 {
		return bad
	}
	return nil
}

// Store reads and writes settings (table "syncsettings", one row per org).
type Store struct{ t *tablestore.Table }

// Table is the settings table.
const Table = "syncsettings"

const rowKey = "m365"

// NewStore returns a Store over s.
func NewStore(s *tablestore.Store) *Store { return &Store{t: s.Table(Table)} }

// Get returns org's settings (Defaults when none were saved) and their ETag ("" when none).
func (s *Store) Get(ctx context.Context, org tablestore.Org) (Settings, tablestore.ETag, error) {
	v, etag, err := tablestore.Get[Settings](ctx, s.t, org, rowKey)
	if errors.Is(err, tablestore.ErrNotFound) {
		return Defaults(), "", nil
	}
	if v.GroupFilter == nil {
		v.GroupFilter = []string{}
	}
	return v, etag, err
}

// Put validates and stores v; etag "" creates, otherwise it must match (tablestore.ErrConflict).
func (s *Store) Put(ctx context.Context, org tablestore.Org, v Settings, etag tablestore.ETag) (tablestore.ETag, error) {
	if err := v.Validate(); err != nil {
		return "", err
	}
	return s.t.Save(ctx, org, rowKey, v, etag)
}

// Orgs lists every org that saved settings, for the scheduler.
func (s *Store) Orgs(ctx context.Context) ([]tablestore.Org, error) {
	return s.t.Partitions(ctx)
}
