package dirsync

import (
	"fmt"
	"testing"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
)

// TestMergeEveryStrategyAndSide covers each strategy × (field changed in Entra only / Leap only
// / both / neither), plus both sides agreeing and first links without a base.
func TestMergeEveryStrategyAndSide(t *testing.T) {
	const base, entraV, leapV = "Analyst", "Director", "Consultant"
	for _, strategy := range []syncsettings.Strategy{syncsettings.EntraWins, syncsettings.LeapWins, syncsettings.SkipConflicts} {
		for _, tc := range []struct {
			side                     string
			entra, leap              string
			noBase                   bool
			want                     string
			wantConflict, wantChange bool
		}{
			{side: "neither", entra: base, leap: base, want: base},
			{side: "entra only", entra: entraV, leap: base, want: entraV, wantChange: true},
			{side: "leap only", entra: base, leap: leapV, want: leapV},
			{side: "both, same value", entra: entraV, leap: entraV, want: entraV},
			{side: "both", entra: entraV, leap: leapV, wantConflict: true, want: map[syncsettings.Strategy]string{
				syncsettings.EntraWins: entraV, syncsettings.LeapWins: leapV, syncsettings.SkipConflicts: leapV}[strategy]},
			{side: "first link, leap empty", entra: entraV, leap: "", noBase: true, want: entraV, wantChange: true},
			{side: "first link, equal", entra: entraV, leap: entraV, noBase: true, want: entraV},
			{side: "first link, different", entra: entraV, leap: leapV, noBase: true, wantConflict: true, want: map[syncsettings.Strategy]string{
				syncsettings.EntraWins: entraV, syncsettings.LeapWins: leapV, syncsettings.SkipConflicts: leapV}[strategy]},
		} {
			t.Run(fmt.Sprintf("%s/%s", strategy, tc.side), func(t *testing.T) {
				entra := stakeholder.Values{stakeholder.FirstName: "Ines", stakeholder.Role: tc.entra}
				cur := stakeholder.Values{stakeholder.FirstName: "Ines", stakeholder.Role: tc.leap}
				b := stakeholder.Values{stakeholder.FirstName: "Ines", stakeholder.Role: base}
				if tc.noBase {
					b = nil
				}
				got := merge(cur, b, entra, strategy)
				if got.values[stakeholder.Role] != tc.want || got.conflict != tc.wantConflict {
					t.Fatalf("role = %q conflict %v, want %q conflict %v", got.values[stakeholder.Role], got.conflict, tc.want, tc.wantConflict)
				}
				if got.values[stakeholder.FirstName] != "Ines" {
					t.Errorf("an untouched field changed: %q", got.values[stakeholder.FirstName])
				}
				skip := strategy == syncsettings.SkipConflicts && tc.wantConflict
				if got.skip != skip {
					t.Errorf("skip = %v, want %v", got.skip, skip)
				}
				switch {
				case skip && got.base[stakeholder.Role] != b[stakeholder.Role]:
					t.Errorf("a skipped record's base moved to %q", got.base[stakeholder.Role])
				case !skip && got.base[stakeholder.Role] != tc.entra:
					t.Errorf("base = %q, want Entra's %q", got.base[stakeholder.Role], tc.entra)
				}
				changed := len(got.fields) > 0 && !got.fields[0].Conflict
				if changed != tc.wantChange {
					t.Errorf("fields = %+v, want a plain change: %v", got.fields, tc.wantChange)
				}
				if tc.wantConflict && (len(got.fields) != 1 || got.fields[0].Leap != tc.leap || !got.fields[0].Conflict) {
					t.Errorf("conflict not reported with both sides: %+v", got.fields)
				}
				// Every conflict records all three values, whichever side wins.
				if tc.wantConflict {
					f := got.fields[0]
					if f.Entra != tc.entra || (f.Base == nil) != tc.noBase || (f.Base != nil && *f.Base != base) {
						t.Errorf("conflict = %+v (base %v), want base %q (none: %v) and Entra %q", f, f.Base, base, tc.noBase, tc.entra)
					}
					if len(got.conflicts) != 1 || got.conflicts[0].Entra != tc.entra || got.conflicts[0].Leap != tc.leap {
						t.Errorf("open conflict fields = %+v", got.conflicts)
					}
				}
			})
		}
	}
}
