package devhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/queue"
)

// TestBatchAndCancelEndpoints drives POST …/batch and POST …/cancel over HTTP, and checks that
// POST …/messages answers the sequence number.
func TestBatchAndCancelEndpoints(t *testing.T) {
	h := startHost(t, nil)
	later := t0.Add(time.Hour).Format(time.RFC3339)

	res, v := publish(t, h, "jobs", `{"messageId":"single","body":"e30=","scheduledEnqueueTime":"`+later+`"}`)
	if res.StatusCode != 201 || v["sequenceNumber"] == nil || v["sequenceNumber"].(float64) <= 0 || v["scheduledEnqueueTime"] == nil {
		t.Fatalf("POST messages: %d %v, want a SendResult with its sequence number", res.StatusCode, v)
	}

	for _, tc := range []struct {
		name, queue, body string
		status            int
		field             string // of the problem, for an error
		dups              []bool // per result, for a success
		scheduled         int    // scheduled messages of jobs afterwards
	}{
		{"two scheduled, a duplicate inside and one of the earlier send", "jobs",
			`[{"messageId":"b1","scheduledEnqueueTime":"` + later + `"},{"messageId":"b2","scheduledEnqueueTime":"` + later + `"},{"messageId":"b1"},{"messageId":"single"}]`,
			201, "", []bool{false, false, true, true}, 3},
		{"all duplicates", "jobs", `[{"messageId":"b2"}]`, 200, "", []bool{true}, 3},
		{"a message without id: nothing enqueued", "jobs", `[{"messageId":"b3","scheduledEnqueueTime":"` + later + `"},{"body":"e30="}]`, 400, "[1].messageId", nil, 3},
		{"an id too long", "jobs", `[{"messageId":"` + strings.Repeat("x", 129) + `"}]`, 400, "[0].messageId", nil, 3},
		{"not an array", "jobs", `{"messageId":"b4"}`, 400, "body", nil, 3},
		{"unknown queue", "no-such-queue", `[{"messageId":"b5"}]`, 404, "queue", nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := postJSON(t, h.URL()+queue.DevHostBatchPath(tc.queue), "", tc.body)
			raw, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d %s, want %d", res.StatusCode, raw, tc.status)
			}
			if tc.field != "" {
				var p struct {
					Errors []struct{ Field string } `json:"errors"`
				}
				if json.Unmarshal(raw, &p); len(p.Errors) != 1 || p.Errors[0].Field != tc.field || res.Header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("problem %s, want one naming %s", raw, tc.field)
				}
			} else {
				var out []queue.DevHostSendResult
				if err := json.Unmarshal(raw, &out); err != nil || len(out) != len(tc.dups) {
					t.Fatalf("answer %s (%v), want %d results", raw, err, len(tc.dups))
				}
				for i, r := range out {
					if r.Duplicate != tc.dups[i] || r.SequenceNumber <= 0 {
						t.Errorf("result %d = %+v, want duplicate %v", i, r, tc.dups[i])
					}
				}
			}
			if c := h.Queues().Counts()["jobs"]; c.Scheduled != tc.scheduled || c.Active+c.Locked != 0 {
				t.Errorf("counts = %+v, want %d scheduled", c, tc.scheduled)
			}
		})
	}

	seq := int64(v["sequenceNumber"].(float64))
	for _, tc := range []struct {
		name, queue, body string
		status, cancelled int
	}{
		{"a scheduled message and an unknown number", "jobs", fmt.Sprintf(`{"sequenceNumbers":[%d,12345]}`, seq), 200, 1},
		{"the same again", "jobs", fmt.Sprintf(`{"sequenceNumbers":[%d]}`, seq), 200, 0},
		{"no numbers", "jobs", `{"sequenceNumbers":[]}`, 200, 0},
		{"bad body", "jobs", `{"sequenceNumbers":"x"}`, 400, 0},
		{"unknown queue", "no-such-queue", `{"sequenceNumbers":[1]}`, 404, 0},
	} {
		t.Run("cancel "+tc.name, func(t *testing.T) {
			res := postJSON(t, h.URL()+queue.DevHostCancelPath(tc.queue), "", tc.body)
			var out queue.DevHostCancelResult
			json.NewDecoder(res.Body).Decode(&out)
			if res.StatusCode != tc.status || (tc.status == 200 && out.Cancelled != tc.cancelled) {
				t.Errorf("cancel: %d %+v, want %d cancelled %d", res.StatusCode, out, tc.status, tc.cancelled)
			}
		})
	}
	if c := h.Queues().Counts()["jobs"]; c.Scheduled != 2 {
		t.Errorf("counts after cancel = %+v, want 2 scheduled", c)
	}
}

// TestHandlerPublisherBatchScheduleCancel uses the handler's devhost publisher (package queue)
// against a real stand-in: batches (duplicates, splitting over several requests, all or nothing),
// Schedule and CancelScheduled, also of a message already delivered.
func TestHandlerPublisherBatchScheduleCancel(t *testing.T) {
	h := startHost(t, nil)
	var batchBodies []int64 // sizes of the batch requests
	pub, err := queue.NewDevHost(h.URL(), &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if strings.HasSuffix(r.URL.Path, "/batch") {
			batchBodies = append(batchBodies, r.ContentLength)
		}
		return http.DefaultTransport.RoundTrip(r)
	})})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	later := t0.Add(time.Hour)
	msg := func(id string, size int) queue.Message {
		return queue.Message{Queue: "jobs", ID: id, Body: []byte(strings.Repeat("x", size)), ContentType: "text/plain", NotBefore: later}
	}
	scheduled := func() int { return h.Queues().Counts()["jobs"].Scheduled }

	// 24 messages of 250 kB are about 8 MB of JSON: the publisher needs several requests of at
	// most DevHostMaxBatchBytes, and every message arrives once.
	big := make([]queue.Message, 24)
	for i := range big {
		big[i] = msg(fmt.Sprintf("big-%02d", i), 250<<10)
	}
	for _, tc := range []struct {
		name          string
		msgs          []queue.Message
		wantErr       error
		wantScheduled int
		wantRequests  int // batch requests; -1: more than one
	}{
		{"empty is a no-op", nil, nil, 0, 0},
		{"duplicates inside the batch", []queue.Message{msg("a", 10), msg("b", 10), msg("a", 10)}, nil, 2, 1},
		{"again: all duplicates", []queue.Message{msg("b", 10), msg("a", 10)}, nil, 2, 1},
		{"split over several requests", big, nil, 26, -1},
		{"an invalid message: nothing sent", []queue.Message{msg("c", 10), {Queue: "jobs", Body: []byte("no id")}}, queue.ErrInvalid, 26, 0},
		{"two queues: nothing sent", []queue.Message{msg("c", 10), {Queue: "done", ID: "d"}}, queue.ErrInvalid, 26, 0},
		{"a message over the size limit: nothing sent", []queue.Message{msg("c", 10), msg("huge", 300<<10)}, queue.ErrInvalid, 26, 0},
		{"unknown queue", []queue.Message{{Queue: "no-such-queue", ID: "e"}}, queue.ErrNotFound, 26, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			batchBodies = nil
			err := pub.PublishBatch(ctx, tc.msgs)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("PublishBatch err = %v, want %v", err, tc.wantErr)
			}
			if got := scheduled(); got != tc.wantScheduled {
				t.Errorf("%d scheduled, want %d", got, tc.wantScheduled)
			}
			if n := len(batchBodies); tc.wantRequests >= 0 && n != tc.wantRequests || tc.wantRequests < 0 && n < 2 {
				t.Errorf("%d batch requests, want %d (-1: several)", n, tc.wantRequests)
			}
			for _, size := range batchBodies {
				if size > queue.DevHostMaxBatchBytes {
					t.Errorf("a batch request of %d bytes, over the %d limit", size, queue.DevHostMaxBatchBytes)
				}
			}
		})
	}

	// Schedule answers distinct sequence numbers; a duplicate answers the first's.
	s1, err := pub.Schedule(ctx, msg("s1", 10))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := pub.Schedule(ctx, msg("s2", 10))
	if err != nil || s2 <= s1 {
		t.Fatalf("second Schedule = %d, %v; want a number after %d", s2, err, s1)
	}
	if again, err := pub.Schedule(ctx, msg("s1", 10)); err != nil || again != s1 {
		t.Errorf("Schedule of a duplicate = %d, %v; want %d", again, err, s1)
	}
	noTime := msg("s3", 10)
	noTime.NotBefore = time.Time{}
	if _, err := pub.Schedule(ctx, noTime); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Schedule without NotBefore: %v, want ErrInvalid", err)
	}

	// A message scheduled for now is delivered at once; cancelling it afterwards is not an error.
	now := msg("now", 10)
	now.NotBefore = t0
	sNow, err := pub.Schedule(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	h.fake.next(t, "/Worker")
	waitFor(t, "completion", func() bool { return h.Queues().Counts()["jobs"].Completed == 1 })

	for _, tc := range []struct {
		name    string
		q       string
		seqs    []int64
		wantErr error
		want    int // scheduled afterwards
	}{
		{"one scheduled", "jobs", []int64{s1}, nil, 27},
		{"cancelled already, delivered already, unknown, and one scheduled", "jobs", []int64{s1, sNow, 99999, s2}, nil, 26},
		{"none", "jobs", nil, nil, 26},
		{"unknown queue", "no-such-queue", []int64{1}, queue.ErrNotFound, 26},
		{"no queue", "", []int64{1}, queue.ErrInvalid, 26},
	} {
		t.Run("cancel "+tc.name, func(t *testing.T) {
			err := pub.CancelScheduled(ctx, tc.q, tc.seqs)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("CancelScheduled err = %v, want %v", err, tc.wantErr)
			}
			if got := scheduled(); got != tc.want {
				t.Errorf("%d scheduled, want %d", got, tc.want)
			}
		})
	}

	// The scheduled messages are delivered when the fake clock reaches their time; the cancelled
	// ones never are.
	h.clock.Advance(time.Hour)
	waitFor(t, "every scheduled message", func() bool { return h.Queues().Counts()["jobs"].Completed == 1+26 })
	if c := h.Queues().Counts()["jobs"]; c.Deliveries != 27 || c.Scheduled != 0 {
		t.Errorf("counts = %+v", c)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
