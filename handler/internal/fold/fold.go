// Package fold is the matching form of text for searches people type: accents removed (NFD,
// then combining marks dropped) and case folded (Unicode full folding: "Straße" and "STRASSE"
// agree, "Zoë" matches "zoe").
package fold

import (
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// String returns s in its matching form.
func String(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC, cases.Fold())
	out, _, err := transform.String(t, s)
	if err != nil {
		return strings.ToLower(s)
	}
	return out
}
