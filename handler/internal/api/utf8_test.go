package api

import "testing"

func TestFieldAt(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"{\"a\":\"x\xff\"}", "a"},
		{"{\"a\":1,\"b\":\"\xff\"}", "b"},
		{"{\"a\":{\"b\":[1,{\"c\":\"\xff\"}]}}", "a.b[1].c"},
		{"{\"a\":[\"ok\",\"\xff\"],\"b\":\"ok\"}", "a[1]"},
		{"{\"a\":{\"x\":1},\"b\":[\"\xff\"]}", "b[0]"},
		{"{\"\xff\":1}", "body"},
		{"[\"\xff\"]", "[0]"},
		{"\"\xff\"", "body"},
		{"{\"a\":\"\xff", "body"}, // not JSON either
	} {
		if got := fieldAt([]byte(tc.doc), firstInvalidUTF8([]byte(tc.doc))); got != tc.want {
			t.Errorf("fieldAt(%q) = %q, want %q", tc.doc, got, tc.want)
		}
	}
}

func TestFirstLoneSurrogate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int // -1: none
	}{
		{`{"a":"plain"}`, -1},
		{`{"a":"\ud83d\ude00 pair"}`, -1},
		{`{"a":"\u00e9 \n \\ud800 escaped backslash"}`, -1},
		{`{"a":"Jos\ud800"}`, 9},
		{`{"a":"\udc00 low first"}`, 6},
		{`{"a":"\ud800\u0041 high then no low"}`, 6},
		{`{"a":"x\uD800"}`, 7},
		{`{"a":"\ud83d\ude00","b":"\udfff"}`, 25},
	} {
		got := firstLoneSurrogate([]byte(tc.in))
		if tc.want < 0 {
			tc.want = len(tc.in)
		}
		if got != tc.want {
			t.Errorf("firstLoneSurrogate(%s) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
