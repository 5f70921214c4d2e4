package dirsync

import (
	"strings"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
)

// mergeResult is the three-way merge of one stakeholder with its Entra user.
type mergeResult struct {
	values    stakeholder.Values          // the stakeholder's synced fields after the merge
	base      stakeholder.Values          // the new base: Entra's values
	fields    []FieldChange               // fields whose value changes, and conflicts
	conflicts []stakeholder.ConflictField // the fields changed on both sides, with all three values
	conflict  bool                        // some field changed on both sides to different values
	skip      bool                        // skip conflicts: leave the record untouched
}

// merge decides each synced field from its base (the last value synced from Entra), Entra's
// value now, and Leap Change's value now: changed only in Entra → Entra's; changed only in Leap
// Change → kept; changed on both sides to different values → a conflict the strategy resolves;
// changed on both sides to the same value → that value. Without a base (a stakeholder linked for
// the first time, or a field never synced) an empty Leap value takes Entra's, an equal one is
// fine, and a different one is a conflict.
func merge(cur stakeholder.Values, base stakeholder.Values, entra stakeholder.Values, strategy syncsettings.Strategy) mergeResult {
	return mergeWith(cur, base, entra, func(string) syncsettings.Strategy { return strategy })
}

// mergeWith is merge with a strategy per conflicting field: the admin resolving an open
// conflict may take Entra's value for one field and keep Leap Change's for another.
func mergeWith(cur stakeholder.Values, base stakeholder.Values, entra stakeholder.Values, strategy func(field string) syncsettings.Strategy) mergeResult {
	res := mergeResult{values: stakeholder.Values{}, base: stakeholder.Values{}}
	for _, f := range stakeholder.SyncedFields {
		e, l := entra[f], cur[f]
		b, hasBase := base[f]
		res.base[f] = e
		var v string
		conflict := false
		switch {
		case e == l:
			v = e
		case f == stakeholder.Email && strings.EqualFold(e, l):
			v = e // addresses differing only in case are the same address
		case !hasBase && l == "":
			v = e
		case !hasBase:
			conflict = true
		case e == b: // only Leap Change changed it
			v = l
		case l == b: // only Entra changed it
			v = e
		default:
			conflict = true
		}
		if conflict {
			res.conflict = true
			switch strategy(f) {
			case syncsettings.LeapWins:
				v = l
			case syncsettings.SkipConflicts:
				res.skip = true
				v = l
			default: // Entra wins
				v = e
			}
			// All three values go to the change log, whichever side wins: the losing one is
			// recorded nowhere else.
			var bp *string
			if hasBase {
				bp = &b
			}
			res.fields = append(res.fields, FieldChange{Field: f, Old: l, New: v, Base: bp, Entra: e, Leap: l, Conflict: true})
			res.conflicts = append(res.conflicts, stakeholder.ConflictField{Field: f, Base: bp, Entra: e, Leap: l})
		} else if v != l {
			res.fields = append(res.fields, FieldChange{Field: f, Old: l, New: v})
		}
		res.values[f] = v
	}
	if res.skip {
		// The record stays as it is, base included: the open conflict (see conflicts.go) keeps
		// Entra's values until the conflict is resolved.
		res.values, res.base = cur, base
		for i := range res.fields {
			res.fields[i].New = res.fields[i].Old
		}
	}
	return res
}
