package fold_test

import (
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
