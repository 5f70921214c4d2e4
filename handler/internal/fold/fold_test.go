package fold_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/fold"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"Zoë":          "zoe",
		"STRASSE":      "strasse",
		"Straße":       "strasse",
		"Çağrı Öz":     "cagrı oz", // dotless ı has no accent to drop
		"Ångström":     "angstrom",
		"plain":        "plain",
		"":             "",
		"Crème Brûlée": "creme brulee",
	} {
		if got := fold.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPieces(t *testing.T) {
	join := func(s string) string {
		var b strings.Builder
		for _, p := range fold.Pieces(s) {
			b.WriteString(p)
		}
		return b.String()
	}
	for in, want := range map[string]string{
		"Zoë":               "zoe",
		"Straße / STRASSE":  "strasse / strasse",
		"Crème Brûlée":      "creme brulee",
		"ＡＢＣ ﬁle x²":        "abc file x2",
		"IĞDIR Iğdır ığdır": "igdir igdir igdir",
		"İstanbul":          "istanbul",
		"ガス カス ｶﾞｽ":         "ガス カス ガス", // voicing marks are part of kana
		"東京":                "東京",
		"한국어":               "한국어",      // syllables stay composed
		"ไม่":               "ไม่",      // Thai marks kept
		"हिंदी":             "हिंदी",    // Devanagari marks kept
		"con\u00adtract":    "contract", // soft hyphen
		"❤️ a\u200db":       "❤ ab",
		"a\u200bb":          "a b",
		"Ελλάδα":            "ελλαδα",
		"Ёлка":              "елка",
		"":                  "",
		"a\xffb":            "a\ufffdb",
	} {
		if got := join(in); got != want {
			t.Errorf("Pieces(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPiecesOffsets(t *testing.T) {
	s := "Ab é東x"
	var offs []int
	for off := range fold.Pieces(s) {
		offs = append(offs, off)
	}
	if want := []int{0, 1, 2, 3, 5, 8}; !slices.Equal(offs, want) {
		t.Errorf("offsets %v, want %v", offs, want)
	}
}
