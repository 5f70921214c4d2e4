package queuetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/queue"
)

func TestServiceBusSemantics(t *testing.T) {
	ctx := t.Context()
	var q Queue
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	now := t0
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(q.Publish(ctx, queue.Message{Queue: "jobs", ID: "a"}))
	must(q.Publish(ctx, queue.Message{Queue: "jobs", ID: "a"})) // duplicate: dropped
	must(q.Publish(ctx, queue.Message{Queue: "jobs", ID: "later", NotBefore: t0.Add(time.Minute)}))
	must(q.Publish(ctx, queue.Message{Queue: "jobs", ID: "fails"}))
	if got := len(q.Published()); got != 3 {
		t.Fatalf("%d messages accepted, want 3 (the duplicate dropped)", got)
	}
	var order []string
	counts := map[string]int{}
	n, err := q.Drain(ctx, func(_ context.Context, d Delivery) error {
		order = append(order, d.ID)
		counts[d.ID] = d.Count
		if d.ID == "fails" {
			return errors.New("boom")
		}
		return nil
	}, DrainOptions{Now: func() time.Time { return now }, Wait: func(_ context.Context, until time.Time) error { now = until; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2+MaxDeliveries || order[0] != "a" || order[1] != "fails" || counts["fails"] != MaxDeliveries {
		t.Errorf("deliveries %d, order %v, counts %v", n, order, counts)
	}
	if dl := q.DeadLettered(); len(dl) != 1 || dl[0].ID != "fails" || dl[0].Count != MaxDeliveries {
		t.Errorf("dead letters = %+v", dl)
	}
	if counts["later"] != 1 || now.Before(t0.Add(time.Minute)) {
		t.Errorf("the scheduled message was not waited for: now %v, counts %v", now, counts)
	}
}

func TestDrainWithoutWaitRefusesScheduled(t *testing.T) {
	var q Queue
	q.Publish(t.Context(), queue.Message{ID: "later", NotBefore: time.Now().Add(time.Hour)})
	if _, err := q.Drain(t.Context(), func(context.Context, Delivery) error { return nil }, DrainOptions{}); err == nil {
		t.Error("Drain without Wait returned with a scheduled message pending")
	}
	if lost := q.Lose(); len(lost) != 1 || len(q.Pending()) != 0 {
		t.Errorf("Lose = %v, pending after %v", lost, q.Pending())
	}
}
