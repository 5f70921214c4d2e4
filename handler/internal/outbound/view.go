package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Progress is a batch's counts per status and its expected completion.
type Progress struct {
	Counts map[Status]int `json:"counts"`
	// ExpectedCompletion forecasts when the last delivery goes, from the slots already reserved
	// and the sender pool's limits for the rest; zero once nothing is left to go.
	ExpectedCompletion time.Time `json:"expectedCompletion,omitzero"`
	// NextDueAt is when the next queued delivery is due.
	NextDueAt time.Time `json:"nextDueAt,omitzero"`
}

// Progress counts a batch's deliveries (one streamed pass over its rows, status and due time
// only) and forecasts its completion. A batch found with every delivery final is settled.
func (p *Pipeline) Progress(ctx context.Context, org tablestore.Org, b Batch) (Progress, error) {
	out := Progress{Counts: map[Status]int{}}
	for _, s := range Statuses {
		out.Counts[s] = 0
	}
	if b.FinalCounts != "" && json.Unmarshal([]byte(b.FinalCounts), &out.Counts) == nil {
		return out, nil
	}
	now := p.now()
	var lastDue time.Time
	waiting, waitingTeams := 0, 0 // deliveries not dispatched yet, by channel
	for row, err := range p.store.rows(ctx, org, b.ID, 0, "", "status", "dueAt", "channel") {
		if err != nil {
			return out, err
		}
		d := row.Value
		out.Counts[d.Status]++
		switch d.Status {
		case Queued, Sending:
			if d.DueAt.After(lastDue) {
				lastDue = d.DueAt
			}
			if out.NextDueAt.IsZero() || d.DueAt.Before(out.NextDueAt) {
				out.NextDueAt = d.DueAt
			}
		case Scheduled:
			if d.Channel == Mail {
				waiting++
			} else {
				waitingTeams++
			}
		}
	}
	open := out.Counts[Scheduled] + out.Counts[Queued] + out.Counts[Sending]
	if open > 0 {
		from := later(lastDue, now)
		if !b.ScheduleAt.IsZero() && b.ScheduleAt.After(from) {
			from = b.ScheduleAt
		}
		out.ExpectedCompletion = from
		if p.cfg.Pacer != nil && waiting > 0 {
			out.ExpectedCompletion = p.cfg.Pacer.Limits().Estimate(from, waiting, max(len(b.Senders), 1))
		}
		if p.cfg.Teams.Pacer != nil && waitingTeams > 0 {
			out.ExpectedCompletion = later(out.ExpectedCompletion, p.cfg.Teams.Pacer.Limits().Estimate(from, waitingTeams, 1))
		}
	} else if b.State == Dispatched || b.State == CancelState || b.State == Settled {
		if err := p.settle(ctx, org, b.ID, out.Counts); err != nil {
			return out, err
		}
	}
	return out, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// RowsOptions select a page of a batch's deliveries.
type RowsOptions struct {
	Status Status // "" for all
	After  string // the delivery id ("<index>-<channel>") to continue after; "" from the start
	Limit  int
}

// Deliveries returns a page of a batch's deliveries in recipient order and the delivery id to
// continue after ("" at the end). An After that is not a delivery id is ErrBadCursor.
func (p *Pipeline) Deliveries(ctx context.Context, org tablestore.Org, batch string, o RowsOptions) ([]Delivery, string, error) {
	q := tablestore.QueryOptions{KeyPrefix: batch + "|", PageSize: min(o.Limit, tablestore.MaxPageSize)}
	if o.Status != "" {
		q.Filter = "status eq " + tablestore.Quote(string(o.Status))
	}
	if o.After != "" {
		index, channel, ok := parseDeliveryID(o.After)
		if !ok {
			return nil, "", ErrBadCursor
		}
		q.From = deliveryKey(batch, index, channel) + "\x00"
	}
	var out []Delivery
	for row, err := range tablestore.Query[Delivery](ctx, p.store.deliveries, org, q) {
		if err != nil {
			return nil, "", err
		}
		out = append(out, row.Value)
		if len(out) == o.Limit {
			return out, row.Value.ID(), nil
		}
	}
	return out, "", nil
}

// ErrBadCursor: a page cursor that is not a delivery id.
var ErrBadCursor = errors.New("outbound: not a delivery id")

// settle marks a batch whose deliveries are all final as settled (keeping its final counts when
// known) and takes it off the open index.
func (p *Pipeline) settle(ctx context.Context, org tablestore.Org, id string, counts map[Status]int) error {
	b, etag, err := p.store.Batch(ctx, org, id)
	if err != nil {
		return err
	}
	changed := false
	if b.State != Settled && b.State != CancelState {
		b.State, changed = Settled, true
	}
	if b.SettledAt.IsZero() {
		b.SettledAt, changed = p.now(), true
	}
	if counts != nil && b.FinalCounts == "" {
		raw, _ := json.Marshal(counts)
		b.FinalCounts, changed = string(raw), true
	}
	if changed {
		b.UpdatedAt = p.now()
		if _, err := p.store.putBatch(ctx, org, b, etag); err != nil && !errors.Is(err, errkind.Conflict) {
			return err // a conflict is another reader settling it at the same moment
		}
	}
	return p.store.markClosed(ctx, org, id)
}

// Forecast is when a batch just accepted should be done: every mail delivery still to go, spread
// over its pool from its start (no scan: for the accept's answer).
func (p *Pipeline) Forecast(_ context.Context, _ tablestore.Org, b Batch) (time.Time, error) {
	from := later(b.ScheduleAt, p.now())
	if p.cfg.Pacer == nil || !slices.Contains(b.Channels, Mail) {
		return from, nil
	}
	return p.cfg.Pacer.Limits().Estimate(from, b.Recipients, max(len(b.Senders), 1)), nil
}

// Responses tallies what recipients answered on their cards (a survey choice, or
// "acknowledged"), reading only the rows that have an answer. Answers keep coming after a batch
// has settled, so they are never frozen with its counts.
func (p *Pipeline) Responses(ctx context.Context, org tablestore.Org, batch string) (map[string]int, error) {
	out := map[string]int{}
	for row, err := range p.store.rows(ctx, org, batch, 0, "response gt ''", "response") {
		if err != nil {
			return nil, err
		}
		out[row.Value.Response]++
	}
	return out, nil
}
