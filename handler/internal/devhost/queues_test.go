package devhost

import (
	"context"
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 4, 9, 14, 0, 0, time.UTC)

func receiveNow(t *testing.T, q *Queues, name string) *Delivery {
	t.Helper()
	d, _, _, err := q.tryReceive(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestQueuesDuplicateDetection(t *testing.T) {
	clk := newFakeClock(t0)
	q := NewQueues(clk, QueueOptions{DuplicateWindow: 10 * time.Minute}, "jobs")
	first, err := q.Send("jobs", Message{MessageID: "m1", Body: []byte("a")})
	if err != nil || first.Duplicate {
		t.Fatalf("first send = %+v, %v", first, err)
	}
	dup, err := q.Send("jobs", Message{MessageID: "m1", Body: []byte("b")})
	if err != nil || !dup.Duplicate || dup.SequenceNumber != first.SequenceNumber {
		t.Fatalf("duplicate send = %+v, %v; want the first outcome with Duplicate", dup, err)
	}
	if c := q.Counts()["jobs"]; c.Active != 1 {
		t.Fatalf("active = %d, want 1", c.Active)
	}
	clk.Advance(10*time.Minute + time.Second) // outside the window: a new message
	again, _ := q.Send("jobs", Message{MessageID: "m1"})
	if again.Duplicate || again.SequenceNumber == first.SequenceNumber {
		t.Fatalf("send after the window = %+v, want a new message", again)
	}
	if _, err := q.Send("nope", Message{MessageID: "x"}); !errors.Is(err, ErrUnknownQueue) {
		t.Errorf("unknown queue: %v", err)
	}
	if _, err := q.Send("jobs", Message{}); err == nil {
		t.Error("missing message id accepted")
	}
}

func TestQueuesFIFOAndScheduled(t *testing.T) {
	clk := newFakeClock(t0)
	q := NewQueues(clk, QueueOptions{}, "jobs")
	q.Send("jobs", Message{MessageID: "later", ScheduledEnqueueTime: t0.Add(5 * time.Minute)})
	q.Send("jobs", Message{MessageID: "a"})
	q.Send("jobs", Message{MessageID: "b"})
	if c := q.Counts()["jobs"]; c.Scheduled != 1 || c.Active != 2 {
		t.Fatalf("counts = %+v", c)
	}
	for _, want := range []string{"a", "b"} {
		if d := receiveNow(t, q, "jobs"); d == nil || d.MessageID != want {
			t.Fatalf("received %+v, want %s", d, want)
		}
	}
	if d, wait, _, _ := q.tryReceive("jobs"); d != nil || wait != 5*time.Minute {
		t.Fatalf("before the scheduled time: %+v, wait %v", d, wait)
	}
	// A blocked Receive wakes when the fake clock reaches the scheduled time.
	got := make(chan *Delivery, 1)
	go func() {
		d, _ := q.Receive(context.Background(), "jobs")
		got <- d
	}()
	clk.Advance(5 * time.Minute)
	select {
	case d := <-got:
		if d.MessageID != "later" || !d.EnqueuedTime.Equal(t0.Add(5*time.Minute)) {
			t.Fatalf("got %+v", d)
		}
	case <-time.After(time.Minute):
		t.Fatal("scheduled message not delivered")
	}
}

func TestQueuesAbandonAndDeadLetter(t *testing.T) {
	clk := newFakeClock(t0)
	q := NewQueues(clk, QueueOptions{MaxDeliveryCount: 3}, "jobs")
	q.Send("jobs", Message{MessageID: "poison", Body: []byte("x")})
	for i := 1; i <= 3; i++ {
		d := receiveNow(t, q, "jobs")
		if d == nil || d.DeliveryCount != i {
			t.Fatalf("delivery %d: %+v", i, d)
		}
		if c := q.Counts()["jobs"]; c.Locked != 1 || c.Active != 0 {
			t.Fatalf("while locked: %+v", c)
		}
		if receiveNow(t, q, "jobs") != nil {
			t.Fatal("a locked message was delivered twice")
		}
		if err := q.Abandon(d, "status 500"); err != nil {
			t.Fatal(err)
		}
	}
	if d := receiveNow(t, q, "jobs"); d != nil {
		t.Fatalf("delivered after max delivery count: %+v", d)
	}
	dl, _ := q.DeadLetters("jobs")
	if len(dl) != 1 || dl[0].DeadLetterReason != "MaxDeliveryCountExceeded" || dl[0].LastError != "status 500" || dl[0].DeliveryCount != 3 {
		t.Fatalf("dead letters = %+v", dl)
	}
	c := q.Counts()["jobs"]
	if c.DeadLettered != 1 || c.Deliveries != 3 || c.Failures != 3 || c.Active != 0 {
		t.Fatalf("counts = %+v", c)
	}
}

func TestQueuesCompleteAndLockExpiry(t *testing.T) {
	clk := newFakeClock(t0)
	q := NewQueues(clk, QueueOptions{LockDuration: time.Minute, MaxDeliveryCount: 2}, "jobs")
	q.Send("jobs", Message{MessageID: "m"})
	d1 := receiveNow(t, q, "jobs")
	clk.Advance(time.Minute) // lock expires unsettled
	d2 := receiveNow(t, q, "jobs")
	if d2 == nil || d2.DeliveryCount != 2 {
		t.Fatalf("redelivery after lock expiry = %+v", d2)
	}
	if err := q.Complete(d1); !errors.Is(err, ErrLockLost) {
		t.Fatalf("complete with a stale lock: %v", err)
	}
	if err := q.Complete(d2); err != nil {
		t.Fatal(err)
	}
	if c := q.Counts()["jobs"]; c.Completed != 1 || c.Active+c.Locked != 0 {
		t.Fatalf("counts = %+v", c)
	}
	// Lock expiry on the last allowed delivery dead-letters.
	q.Send("jobs", Message{MessageID: "n"})
	receiveNow(t, q, "jobs")
	clk.Advance(time.Minute)
	receiveNow(t, q, "jobs")
	clk.Advance(time.Minute)
	if d := receiveNow(t, q, "jobs"); d != nil {
		t.Fatalf("delivered a third time: %+v", d)
	}
	if dl, _ := q.DeadLetters("jobs"); len(dl) != 1 || dl[0].LastError != "lock expired" {
		t.Fatalf("dead letters = %+v", dl)
	}
}

func TestQueuesTimeToLive(t *testing.T) {
	clk := newFakeClock(t0)
	q := NewQueues(clk, QueueOptions{TimeToLive: time.Hour}, "jobs")
	q.Send("jobs", Message{MessageID: "old"})
	clk.Advance(time.Hour)
	if d := receiveNow(t, q, "jobs"); d != nil {
		t.Fatalf("expired message delivered: %+v", d)
	}
	if c := q.Counts()["jobs"]; c.Expired != 1 {
		t.Fatalf("counts = %+v", c)
	}
}

func TestQueuesSendBatch(t *testing.T) {
	clk := newFakeClock(t0)
	q := NewQueues(clk, QueueOptions{}, "jobs")
	before, _ := q.Send("jobs", Message{MessageID: "old"})
	for _, tc := range []struct {
		name      string
		msgs      []Message
		wantErr   bool
		wantDup   []bool // per message
		wantAdded int    // messages enqueued by this batch
	}{
		{"fresh and scheduled", []Message{{MessageID: "a"}, {MessageID: "b", ScheduledEnqueueTime: t0.Add(time.Hour)}}, false, []bool{false, false}, 2},
		{"duplicate inside the batch and of an earlier send", []Message{{MessageID: "c"}, {MessageID: "c"}, {MessageID: "old"}}, false, []bool{false, true, true}, 1},
		{"a message without id: nothing enqueued", []Message{{MessageID: "d"}, {}}, true, nil, 0},
		{"empty", nil, false, []bool{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := storedCount(q, "jobs")
			res, err := q.SendBatch("jobs", tc.msgs)
			if (err != nil) != tc.wantErr {
				t.Fatalf("SendBatch err = %v, want error %v", err, tc.wantErr)
			}
			if got := storedCount(q, "jobs") - n; got != tc.wantAdded {
				t.Errorf("%d messages enqueued, want %d", got, tc.wantAdded)
			}
			if err != nil {
				return
			}
			if len(res) != len(tc.msgs) {
				t.Fatalf("%d results for %d messages", len(res), len(tc.msgs))
			}
			for i, r := range res {
				if r.Duplicate != tc.wantDup[i] || r.MessageID != tc.msgs[i].MessageID {
					t.Errorf("result %d = %+v, want duplicate %v", i, r, tc.wantDup[i])
				}
				if r.MessageID == "old" && r.SequenceNumber != before.SequenceNumber {
					t.Errorf("duplicate of an earlier send answers seq %d, want the first's %d", r.SequenceNumber, before.SequenceNumber)
				}
			}
		})
	}
	if _, err := q.SendBatch("nope", []Message{{MessageID: "x"}}); !errors.Is(err, ErrUnknownQueue) {
		t.Errorf("unknown queue: %v", err)
	}
}

// storedCount counts the messages of a queue whatever their state.
func storedCount(q *Queues, name string) int {
	c := q.Counts()[name]
	return c.Active + c.Scheduled + c.Locked
}

func TestQueuesCancel(t *testing.T) {
	clk := newFakeClock(t0)
	q := NewQueues(clk, QueueOptions{}, "jobs")
	send := func(id string, at time.Time) int64 {
		t.Helper()
		r, err := q.Send("jobs", Message{MessageID: id, ScheduledEnqueueTime: at})
		if err != nil {
			t.Fatal(err)
		}
		return r.SequenceNumber
	}
	later := send("later", t0.Add(time.Hour))
	later2 := send("later2", t0.Add(2*time.Hour))
	now := send("now", time.Time{})
	locked := send("locked", time.Time{})
	due := send("due", t0.Add(time.Minute))
	if d := receiveNow(t, q, "jobs"); d == nil || d.MessageID != "now" {
		t.Fatalf("received %+v", d)
	}
	if d := receiveNow(t, q, "jobs"); d == nil || d.MessageID != "locked" {
		t.Fatalf("received %+v", d)
	}
	clk.Advance(time.Minute) // "due" becomes active; "now" and "locked" stay locked

	for _, tc := range []struct {
		name string
		seqs []int64
		want int
	}{
		{"still scheduled", []int64{later}, 1},
		{"already cancelled", []int64{later}, 0},
		{"active (the scheduled time passed), locked, unknown", []int64{due, now, locked, 999}, 0},
		{"a mix", []int64{due, later2, 999}, 1},
		{"none", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := q.Cancel("jobs", tc.seqs)
			if err != nil || n != tc.want {
				t.Errorf("Cancel(%v) = %d, %v; want %d", tc.seqs, n, err, tc.want)
			}
		})
	}
	if c := q.Counts()["jobs"]; c.Scheduled != 0 || c.Active != 1 || c.Locked != 2 {
		t.Errorf("counts after cancelling = %+v", c)
	}
	// A cancelled id stays in the duplicate detection history, as on Service Bus.
	if r, _ := q.Send("jobs", Message{MessageID: "later"}); !r.Duplicate {
		t.Errorf("resend of a cancelled id = %+v, want a duplicate", r)
	}
	if _, err := q.Cancel("nope", []int64{1}); !errors.Is(err, ErrUnknownQueue) {
		t.Errorf("unknown queue: %v", err)
	}
}
