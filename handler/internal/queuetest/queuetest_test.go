package queuetest

import (
	"context"
	"errors"
	"slices"
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

func TestPublishBatch(t *testing.T) {
	ctx := t.Context()
	var q Queue
	if err := q.Publish(ctx, queue.Message{Queue: "jobs", ID: "old"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		msgs    []queue.Message
		wantErr bool
		want    []string // ids published, in order, after the call
	}{
		{"empty", nil, false, []string{"old"}},
		{"duplicates inside the batch and of an earlier publish", []queue.Message{{Queue: "jobs", ID: "a"}, {Queue: "jobs", ID: "b"}, {Queue: "jobs", ID: "a"}, {Queue: "jobs", ID: "old"}}, false, []string{"old", "a", "b"}},
		{"an invalid message: nothing accepted", []queue.Message{{Queue: "jobs", ID: "c"}, {Queue: "jobs"}}, true, []string{"old", "a", "b"}},
		{"two queues: nothing accepted", []queue.Message{{Queue: "jobs", ID: "c"}, {Queue: "other", ID: "d"}}, true, []string{"old", "a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := q.PublishBatch(ctx, tc.msgs)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, queue.ErrInvalid)) {
				t.Fatalf("PublishBatch err = %v, want error %v", err, tc.wantErr)
			}
			var got []string
			for _, m := range q.Published() {
				got = append(got, m.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("published %v, want %v", got, tc.want)
			}
		})
	}
	var seqs []int64
	for _, d := range q.Pending() {
		seqs = append(seqs, d.SequenceNumber)
	}
	if !slices.Equal(seqs, []int64{1, 2, 3}) {
		t.Errorf("sequence numbers %v, want 1 2 3", seqs)
	}
}

func TestScheduleAndCancel(t *testing.T) {
	ctx := t.Context()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	now := t0
	q := Queue{Now: func() time.Time { return now }}
	schedule := func(id string, at time.Time) int64 {
		t.Helper()
		seq, err := q.Schedule(ctx, queue.Message{Queue: "mail", ID: id, NotBefore: at})
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	remind := schedule("remind", t0.Add(time.Hour))
	digest := schedule("digest", t0.Add(2*time.Hour))
	soon := schedule("soon", t0.Add(time.Minute))
	if err := q.Publish(ctx, queue.Message{Queue: "mail", ID: "now"}); err != nil {
		t.Fatal(err)
	}
	if !(remind < digest && digest < soon) {
		t.Fatalf("sequence numbers %d %d %d are not increasing", remind, digest, soon)
	}
	if again, _ := q.Schedule(ctx, queue.Message{Queue: "mail", ID: "remind", NotBefore: t0.Add(3 * time.Hour)}); again != remind {
		t.Errorf("Schedule of a duplicate = %d, want the first's %d", again, remind)
	}
	if _, err := q.Schedule(ctx, queue.Message{Queue: "mail", ID: "x"}); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Schedule without NotBefore: %v", err)
	}
	// "now" is delivered; "soon" becomes due.
	d, ok := q.Next(now)
	if !ok || d.ID != "now" || d.SequenceNumber != 4 {
		t.Fatalf("Next = %+v, %v", d, ok)
	}
	now = now.Add(time.Minute)

	pendingIDs := func() []string {
		var ids []string
		for _, d := range q.Pending() {
			ids = append(ids, d.ID)
		}
		return ids
	}
	for _, tc := range []struct {
		name  string
		queue string
		seqs  []int64
		want  []string // pending afterwards
	}{
		{"another queue's numbers are not this one's", "other", []int64{remind}, []string{"remind", "digest", "soon"}},
		{"a scheduled message", "mail", []int64{remind}, []string{"digest", "soon"}},
		{"cancelled, delivered, due and unknown: ignored", "mail", []int64{remind, d.SequenceNumber, soon, 999}, []string{"digest", "soon"}},
		{"none", "mail", nil, []string{"digest", "soon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := q.CancelScheduled(ctx, tc.queue, tc.seqs); err != nil {
				t.Fatal(err)
			}
			if got := pendingIDs(); !slices.Equal(got, tc.want) {
				t.Errorf("pending %v, want %v", got, tc.want)
			}
		})
	}
	// Drain without its own Now uses the queue's clock.
	var order []string
	n, err := q.Drain(ctx, func(_ context.Context, d Delivery) error { order = append(order, d.ID); return nil },
		DrainOptions{Wait: func(_ context.Context, until time.Time) error { now = until; return nil }})
	if err != nil || n != 2 || !slices.Equal(order, []string{"soon", "digest"}) {
		t.Errorf("Drain = %d, %v, order %v", n, err, order)
	}
}
