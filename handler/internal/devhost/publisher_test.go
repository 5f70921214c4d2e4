package devhost

import (
	"errors"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/queue"
)

// TestHandlerPublisher publishes with the handler's own devhost publisher (package queue), the way
// the handler does locally, and checks delivery, duplicate handling and invalid input.
func TestHandlerPublisher(t *testing.T) {
	h := startHost(t, nil)
	pub, err := queue.NewDevHost(h.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := queue.Message{ID: "job-1", Queue: "jobs", Body: []byte(`{"org":"acme"}`), ContentType: "application/json", Properties: map[string]string{"kind": "full"}}
	for range 2 { // the second publish is a duplicate: accepted, delivered once
		if err := pub.Publish(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	h.fake.next(t, "/Worker")
	waitFor(t, "completion", func() bool { return h.Queues().Counts()["jobs"].Completed == 1 })
	if c := h.Queues().Counts()["jobs"]; c.Deliveries != 1 {
		t.Fatalf("counts = %+v, want one delivery", c)
	}

	later := m
	later.ID, later.NotBefore = "job-2", t0.Add(time.Hour)
	if err := pub.Publish(t.Context(), later); err != nil {
		t.Fatal(err)
	}
	if c := h.Queues().Counts()["jobs"]; c.Scheduled != 1 {
		t.Fatalf("counts = %+v, want one scheduled", c)
	}

	bad := m
	bad.Queue = "no-such-queue"
	if err := pub.Publish(t.Context(), bad); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("unknown queue: %v, want ErrNotFound", err)
	}
}
