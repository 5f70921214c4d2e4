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
