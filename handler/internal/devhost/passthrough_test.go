package devhost

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestTooLargeAnswerPassesThrough sends bodies the handler refuses unread: the caller must get the
// handler's 413 problem, not a 502 or a broken connection, however large the body.
func TestTooLargeAnswerPassesThrough(t *testing.T) {
	h, _, err := processHost(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		size    int
		chunked bool
	}{{2 << 20, false}, {64 << 20, false}, {2 << 20, true}, {64 << 20, true}} {
		size := tc.size
		var in io.Reader = bytes.NewReader(make([]byte, size))
		if tc.chunked {
			in = io.MultiReader(in) // no length: sent chunked
		}
		req, _ := http.NewRequestWithContext(t.Context(), "POST", h.URL()+"/api/orgs/acme/big", in)
		req.Header.Set("x-functions-key", "dev")
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%d bytes (chunked %v): %v", size, tc.chunked, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(string(body), "payload-too-large") {
			t.Errorf("%d bytes (chunked %v): %d %s %q, want the handler's 413 problem", size, tc.chunked, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
	}
	// The host still serves afterwards.
	if _, err := getInfo(t, h); err != nil {
		t.Errorf("after the refused bodies: %v", err)
	}
}
