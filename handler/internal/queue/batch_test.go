package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// budgetBatch is a batch with a byte budget, the way azservicebus.MessageBatch refuses a message
// (ErrMessageTooLarge) that would take it over the link's maximum batch size.
type budgetBatch struct {
	budget, used int
	items        []int
}

func TestPackBatches(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		sizes   []int
		budget  int
		addErr  int // index whose add fails (-1: none)
		want    [][]int
		wantErr error
	}{
		{"empty", nil, 10, -1, nil, nil},
		{"all in one", []int{3, 3, 3}, 10, -1, [][]int{{0, 1, 2}}, nil},
		{"exactly the budget", []int{5, 5}, 10, -1, [][]int{{0, 1}}, nil},
		{"a new batch whenever one is full", []int{4, 4, 4, 9, 1, 10}, 10, -1, [][]int{{0, 1}, {2}, {3, 4}, {5}}, nil},
		{"order kept: a small message does not jump ahead", []int{6, 6, 1}, 10, -1, [][]int{{0}, {1, 2}}, nil},
		{"too large for an empty batch", []int{1, 11, 1}, 10, -1, nil, ErrInvalid},
		{"too large first", []int{11}, 10, -1, nil, ErrInvalid},
		{"another add error ends the packing", []int{1, 1, 1}, 10, 1, nil, boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items := make([]int, len(tc.sizes))
			for i := range items {
				items[i] = i
			}
			made := 0
			got, err := packBatches(items,
				func() (*budgetBatch, error) { made++; return &budgetBatch{budget: tc.budget}, nil },
				func(b *budgetBatch, i int) (bool, error) {
					if i == tc.addErr {
						return false, boom
					}
					if b.used+tc.sizes[i] > b.budget {
						return false, nil
					}
					b.used += tc.sizes[i]
					b.items = append(b.items, i)
					return true, nil
				})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || got != nil {
					t.Fatalf("packBatches = %v, %v; want no batches and %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var gotIdx [][]int
			for _, b := range got {
				gotIdx = append(gotIdx, b.items)
			}
			if !slices.EqualFunc(gotIdx, tc.want, slices.Equal) {
				t.Errorf("batches = %v, want %v", gotIdx, tc.want)
			}
			if made != len(tc.want) {
				t.Errorf("%d batches made, want %d (no empty batch left over)", made, len(tc.want))
			}
		})
	}
}

func TestValidateBatch(t *testing.T) {
	ok := Message{Queue: OutboundMail, ID: "m-1"}
	for _, tc := range []struct {
		name string
		msgs []Message
		want error
	}{
		{"valid", []Message{ok, {Queue: OutboundMail, ID: "m-2", NotBefore: time.Now()}}, nil},
		{"no id", []Message{ok, {Queue: OutboundMail}}, ErrInvalid},
		{"body too big", []Message{ok, {Queue: OutboundMail, ID: "big", Body: make([]byte, maxBody+1)}}, ErrInvalid},
		{"two queues", []Message{ok, {Queue: OutboundTeams, ID: "t-1"}}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := validateBatch(tc.msgs); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("validateBatch = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestJSONBatch checks the DevHost publisher's request packing: each request is a JSON array of
// DevHostMessage within the byte budget, and every message is in exactly one, in order.
func TestJSONBatch(t *testing.T) {
	var msgs []Message
	for i := range 40 {
		msgs = append(msgs, Message{Queue: OutboundMail, ID: fmt.Sprintf("m-%02d", i), Body: []byte(strings.Repeat("x", 100+i*10)), NotBefore: time.Date(2026, 12, 2, 8, 0, i, 0, time.UTC)})
	}
	const budget = 2000
	batches, err := packBatches(msgs, func() (*jsonBatch, error) { return newJSONBatch(budget), nil }, (*jsonBatch).add)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) < 3 {
		t.Fatalf("%d requests, want the 40 messages split over several", len(batches))
	}
	var ids []string
	for _, b := range batches {
		raw := b.bytes()
		if len(raw) > budget {
			t.Errorf("request of %d bytes, over the %d budget", len(raw), budget)
		}
		var got []DevHostMessage
		if err := json.Unmarshal(raw, &got); err != nil || len(got) != b.n {
			t.Fatalf("request %s: %v (%d messages, want %d)", raw, err, len(got), b.n)
		}
		for _, m := range got {
			ids = append(ids, m.MessageID)
			if m.ScheduledEnqueueTime == nil {
				t.Errorf("%s lost its NotBefore", m.MessageID)
			}
		}
	}
	if len(ids) != 40 || !slices.IsSorted(ids) {
		t.Errorf("ids across the requests = %v", ids)
	}
	if _, err := packBatches([]Message{{ID: "huge", Body: make([]byte, budget)}}, func() (*jsonBatch, error) { return newJSONBatch(budget), nil }, (*jsonBatch).add); !errors.Is(err, ErrInvalid) {
		t.Errorf("a message over the budget: %v, want ErrInvalid", err)
	}
}

// TestServiceBusValidatesBeforeAnyIO checks that the Service Bus publisher refuses invalid input
// before it opens a link: the namespace here does not exist, so any I/O would fail otherwise.
func TestServiceBusValidatesBeforeAnyIO(t *testing.T) {
	p, err := Open(Connection{ConnectionString: "Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=s3cret"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(t.Context()) })
	ctx := t.Context()
	at := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		call func() error
		want error // nil: succeeds without I/O
	}{
		{"empty batch", func() error { return p.PublishBatch(ctx, nil) }, nil},
		{"batch with an invalid message", func() error {
			return p.PublishBatch(ctx, []Message{{Queue: OutboundMail, ID: "ok"}, {Queue: OutboundMail}})
		}, ErrInvalid},
		{"batch over two queues", func() error {
			return p.PublishBatch(ctx, []Message{{Queue: OutboundMail, ID: "a"}, {Queue: OutboundTeams, ID: "b"}})
		}, ErrInvalid},
		{"schedule without NotBefore", func() error { _, err := p.Schedule(ctx, Message{Queue: OutboundMail, ID: "a"}); return err }, ErrInvalid},
		{"schedule without id", func() error { _, err := p.Schedule(ctx, Message{Queue: OutboundMail, NotBefore: at}); return err }, ErrInvalid},
		{"cancel nothing", func() error { return p.CancelScheduled(ctx, OutboundMail, nil) }, nil},
		{"cancel without queue", func() error { return p.CancelScheduled(ctx, "", []int64{1}) }, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestNotScheduled pins the mapping of Service Bus's answer to cancelling a sequence number that
// is not scheduled (see ServiceBus.CancelScheduled).
func TestNotScheduled(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&azservicebus.Error{Code: azservicebus.CodeNotFound}, true}, // management 404, com.microsoft:message-not-found
		{fmt.Errorf("wrapped: %w", &azservicebus.Error{Code: azservicebus.CodeNotFound}), true},
		{errors.New("rpc: failed, status code 400 and description: The scheduled message with SequenceNumber = 7 is already being cancelled."), true},
		{&azservicebus.Error{Code: azservicebus.CodeUnauthorizedAccess}, false},
		{&azservicebus.Error{Code: azservicebus.CodeConnectionLost}, false},
		{errors.New("amqp:not-found: the messaging entity could not be found"), false},
	} {
		if got := notScheduled(tc.err); got != tc.want {
			t.Errorf("notScheduled(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
