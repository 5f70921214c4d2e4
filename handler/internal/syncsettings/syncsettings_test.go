package syncsettings_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

const groupA = "e2c4a6b8-1d3f-4e5a-9b7c-0d2e4f6a8b0c"

func TestValidateNamesEveryBadField(t *testing.T) {
	if err := syncsettings.Defaults().Validate(); err != nil {
		t.Fatalf("defaults are invalid: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*syncsettings.Settings)
		want   []string
	}{
		{"valid filter and group sync", func(s *syncsettings.Settings) { s.GroupFilter, s.GroupSync = []string{groupA}, true }, nil},
		{"unknown strategy", func(s *syncsettings.Settings) { s.MergeStrategy = "newest_wins" }, []string{"mergeStrategy"}},
		{"bad time zone", func(s *syncsettings.Settings) { s.TimeZone = "Mars/Olympus" }, []string{"timeZone"}},
		{"Local is not a zone", func(s *syncsettings.Settings) { s.TimeZone = "Local" }, []string{"timeZone"}},
		{"unknown frequency", func(s *syncsettings.Settings) { s.Frequency = "hourly" }, []string{"frequency"}},
		{"group id not a GUID", func(s *syncsettings.Settings) { s.GroupFilter = []string{"sales"} }, []string{"groupFilter"}},
		{"group listed twice", func(s *syncsettings.Settings) { s.GroupFilter = []string{groupA, groupA} }, []string{"groupFilter"}},
		{"group sync without groups", func(s *syncsettings.Settings) { s.GroupSync = true }, []string{"groupSync"}},
		{"bad group type", func(s *syncsettings.Settings) { s.GroupType = "tribe" }, []string{"groupType"}},
		{"thresholds", func(s *syncsettings.Settings) { s.DeletionThreshold = syncsettings.Threshold{Percent: 0, Count: 0} },
			[]string{"deletionThreshold.percent", "deletionThreshold.count"}},
		{"everything at once", func(s *syncsettings.Settings) { s.MergeStrategy, s.TimeZone, s.Frequency = "x", "y", "z" },
			[]string{"frequency", "timeZone", "mergeStrategy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := syncsettings.Defaults()
			tc.change(&s)
			err := s.Validate()
			var bad syncsettings.Invalid
			errors.As(err, &bad)
			var got []string
			for _, f := range bad {
				got = append(got, f.Field)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("fields = %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

func TestStoreRoundTripAndOrgs(t *testing.T) {
	store := tablestoretest.Open(t)
	st := syncsettings.NewStore(store)
	acme, _ := tablestore.NewOrg("acme")
	v, etag, err := st.Get(t.Context(), acme)
	if err != nil || etag != "" || v.Frequency != syncsettings.Manual {
		t.Fatalf("unsaved settings = %+v %q %v, want defaults", v, etag, err)
	}
	v.Frequency, v.TimeZone, v.GroupFilter = syncsettings.Weekly, "Europe/Berlin", []string{groupA}
	etag, err = st.Put(t.Context(), acme, v, "")
	if err != nil {
		t.Fatal(err)
	}
	bad := v
	bad.TimeZone = "nowhere"
	if _, err := st.Put(t.Context(), acme, bad, etag); err == nil {
		t.Error("invalid settings were stored")
	}
	if _, err := st.Put(t.Context(), acme, v, "W/\"stale\""); !errors.Is(err, tablestore.ErrConflict) {
		t.Errorf("stale ETag: %v, want ErrConflict", err)
	}
	got, _, _ := st.Get(t.Context(), acme)
	if got.Frequency != syncsettings.Weekly || got.TimeZone != "Europe/Berlin" || !slices.Equal(got.GroupFilter, []string{groupA}) {
		t.Errorf("read back %+v", got)
	}
	orgs, err := st.Orgs(t.Context())
	if err != nil || len(orgs) != 1 || orgs[0].String() != "acme" {
		t.Errorf("Orgs = %v, %v", orgs, err)
	}
}
