package invoke_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/leapchange/m365/handler/internal/invoke"
)

// FuzzDecode checks that no payload, however odd, panics a decoder.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := invoke.ParseRequest(body)
		if err != nil {
			return
		}
		_, _ = req.Timer("timer")
		_, _ = req.Message("msg", invoke.BinaryData)
		_, _ = req.Message("msg", invoke.StringData)
		_, _ = req.HTTPRequest(context.Background(), "req")
		_ = req.Sys()
	})
}
