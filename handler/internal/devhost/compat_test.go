package devhost

import (
	"os"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/invoke"
)

// TestGoldensDecodeWithInvoke checks that the payloads devhost sends decode with the handler's own
// wire package, so the stand-in and the handler agree on the host's format.
func TestGoldensDecodeWithInvoke(t *testing.T) {
	read := func(name string) invoke.Request {
		b, err := os.ReadFile("testdata/golden/" + name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := invoke.ParseRequest(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	bin := read("servicebus-binary.json")
	body, err := invoke.UnwrapBinary(bin.Data["msg"])
	if err != nil || string(body) != `{"org":"acme","runId":"r-77"}` {
		t.Errorf("binary body = %q, %v", body, err)
	}
	if n, ok := bin.MetaInt("DeliveryCount"); !ok || n != 1 {
		t.Errorf("DeliveryCount = %d, %v", n, ok)
	}
	if id := bin.MetaString("MessageId"); id != "b41c0e9a55f04c3e8f0e6f1d2a3b4c5d" {
		t.Errorf("MessageId = %q", id)
	}
	if tm, ok := bin.MetaTime("EnqueuedTime"); !ok || !tm.Equal(t0) {
		t.Errorf("EnqueuedTime = %v, %v", tm, ok)
	}
	if s := bin.Sys(); s.MethodName != "Worker" || !s.UtcNow.Equal(t0) {
		t.Errorf("sys = %+v", s)
	}

	str := read("servicebus-string.json")
	sb, err := invoke.Unwrap(str.Data["msg"])
	if err != nil || string(sb) != `{"org":"acme","runId":"r-77","attempt":2,"MessageId":"from-body","nested":{"x":1}}` {
		t.Errorf("string body = %q, %v", sb, err)
	}
	if org := str.MetaString("org"); org != "acme" {
		t.Errorf("promoted org = %q", org)
	}

	tm := read("timer-second.json")
	if s := tm.Sys(); s.MethodName != "Tick" || !s.UtcNow.Equal(t0.Add(16*time.Minute)) {
		t.Errorf("timer sys = %+v", s)
	}
}
