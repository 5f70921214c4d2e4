package appfiles

import (
	"maps"
	"testing"
)

func TestRouteMatch(t *testing.T) {
	for _, tc := range []struct {
		tmpl, path string
		want       map[string]string // nil: no match
	}{
		{"orgs/{org}/{*rest}", "orgs/acme/m365", map[string]string{"org": "acme", "rest": "m365"}},
		{"orgs/{org}/{*rest}", "orgs/acme/m365/sync/runs/r1", map[string]string{"org": "acme", "rest": "m365/sync/runs/r1"}},
		{"orgs/{org}/{*rest}", "orgs/acme", map[string]string{"org": "acme", "rest": ""}},
		{"orgs/{org}/{*rest}", "ORGS/acme/x/", map[string]string{"org": "acme", "rest": "x"}},
		{"orgs/{org}/{*rest}", "orgs", nil},
		{"orgs/{org}/{*rest}", "other/acme/x", nil},
		{"orgs/{org}/{*rest}", "orgs/a%20b/x", map[string]string{"org": "a b", "rest": "x"}},
		{"consent/callback", "consent/callback", map[string]string{}},
		{"consent/callback", "consent/callback/x", nil},
		{"consent/callback", "consent", nil},
		{"items/{id:int}", "items/42", map[string]string{"id": "42"}},
		{"items/{id:int}", "items/x", nil},
		{"items/{id:int:min(10)}", "items/9", nil},
		{"items/{id:range(1,5)}", "items/5", map[string]string{"id": "5"}},
		{"items/{id:guid}", "items/5c1d7e2a-0000-4000-8000-00000000a001", map[string]string{"id": "5c1d7e2a-0000-4000-8000-00000000a001"}},
		{"items/{id:alpha:maxlength(3)}", "items/abcd", nil},
		{"items/{id?}", "items", map[string]string{}},
		{"items/{id?}", "items/7", map[string]string{"id": "7"}},
		{"items/{id:int?}", "items", map[string]string{}},
		{"items/{id:regex(^a+$)}", "items/aaa", map[string]string{"id": "aaa"}},
		{"", "", map[string]string{}},
	} {
		r, err := ParseRoute(tc.tmpl)
		if err != nil {
			t.Errorf("ParseRoute(%q): %v", tc.tmpl, err)
			continue
		}
		got, ok := r.Match(tc.path)
		if ok != (tc.want != nil) || !maps.Equal(got, tc.want) {
			t.Errorf("%q.Match(%q) = %v, %v; want %v", tc.tmpl, tc.path, got, ok, tc.want)
		}
	}
}

func TestParseRouteErrors(t *testing.T) {
	for _, tmpl := range []string{
		"a/{*rest}/b", "a/{x}/{x}", "a/{x?}/b", "a/{id:nope}", "a/{id:min(x)}", "a/{1x}", "a/x{y}", "a//b", "a/{id=3}", "a/{*x?}",
	} {
		if _, err := ParseRoute(tmpl); err == nil {
			t.Errorf("ParseRoute(%q) succeeded", tmpl)
		}
	}
}
