package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// messenger is the outbound pipeline as the API drives it.
type messenger interface {
	Accept(ctx context.Context, org tablestore.Org, r outbound.Request) (outbound.Receipt, error)
	Cancel(ctx context.Context, org tablestore.Org, id string) (outbound.Cancellation, error)
	Progress(ctx context.Context, org tablestore.Org, b outbound.Batch) (outbound.Progress, error)
	Forecast(ctx context.Context, org tablestore.Org, b outbound.Batch) (time.Time, error)
	Deliveries(ctx context.Context, org tablestore.Org, batch string, o outbound.RowsOptions) ([]outbound.Delivery, string, error)
	Responses(ctx context.Context, org tablestore.Org, batch string) (map[string]int, error)
	Store() *outbound.Store
}

// messageInput is POST /messages.
type messageInput struct {
	Recipients struct {
		StakeholderIDs []string `json:"stakeholderIds"`
		GroupIDs       []string `json:"groupIds"`
	} `json:"recipients"`
	Channels       []string  `json:"channels"`
	Subject        string    `json:"subject"`
	Text           string    `json:"text"`
	HTML           string    `json:"html"`
	Kind           string    `json:"kind"`
	CampaignID     string    `json:"campaignId"`
	ScheduleAt     time.Time `json:"scheduleAt,omitzero"`
	IdempotencyKey string    `json:"idempotencyKey"`
	Survey         *struct {
		URL      string   `json:"url"`
		Question string   `json:"question"`
		Choices  []string `json:"choices"`
	} `json:"survey"`
}

// batchView is a batch as the API shows it.
type batchView struct {
	ID                 string                  `json:"batchId"`
	Kind               string                  `json:"kind"`
	CampaignID         string                  `json:"campaignId,omitempty"`
	Channels           []string                `json:"channels"`
	Subject            string                  `json:"subject"`
	State              string                  `json:"state"`
	Recipients         int                     `json:"recipients"`
	Deliveries         int                     `json:"deliveries"`
	Senders            []string                `json:"senders,omitempty"`
	ScheduleAt         time.Time               `json:"scheduleAt,omitzero"`
	IdempotencyKey     string                  `json:"idempotencyKey"`
	CreatedAt          time.Time               `json:"createdAt"`
	CancelledAt        time.Time               `json:"cancelledAt,omitzero"`
	SettledAt          time.Time               `json:"settledAt,omitzero"`
	Counts             map[outbound.Status]int `json:"counts,omitempty"`
	ExpectedCompletion time.Time               `json:"expectedCompletion,omitzero"`
	NextDueAt          time.Time               `json:"nextDueAt,omitzero"`
	Survey             *surveyView             `json:"survey,omitempty"`
}

type surveyView struct {
	URL      string   `json:"url,omitempty"`
	Question string   `json:"question,omitempty"`
	Choices  []string `json:"choices,omitempty"`
}

func viewOf(b outbound.Batch) batchView {
	v := batchView{ID: b.ID, Kind: b.Kind, CampaignID: b.CampaignID, Channels: b.Channels, Subject: b.Subject, State: b.State,
		Recipients: b.Recipients, Deliveries: b.Rows, Senders: b.Senders, ScheduleAt: b.ScheduleAt, IdempotencyKey: b.IdempotencyKey,
		CreatedAt: b.CreatedAt, CancelledAt: b.CancelledAt, SettledAt: b.SettledAt}
	if b.SurveyURL != "" || len(b.SurveyChoices) > 0 {
		v.Survey = &surveyView{URL: b.SurveyURL, Question: b.SurveyQuestion, Choices: b.SurveyChoices}
	}
	return v
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	var in messageInput
	if r.ContentLength == 0 {
		return invalid("body", "send the message document")
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if h := r.Header.Get("Idempotency-Key"); h != "" {
		if in.IdempotencyKey != "" && in.IdempotencyKey != h {
			return invalid("idempotencyKey", "differs from the Idempotency-Key header")
		}
		in.IdempotencyKey = h
	}
	req := outbound.Request{
		StakeholderIDs: in.Recipients.StakeholderIDs, GroupIDs: in.Recipients.GroupIDs, Channels: in.Channels,
		Content: outbound.Content{Subject: in.Subject, Text: in.Text, HTML: in.HTML},
		Kind:    in.Kind, CampaignID: in.CampaignID, ScheduleAt: in.ScheduleAt, IdempotencyKey: in.IdempotencyKey,
	}
	if in.Survey != nil {
		req.Survey = &outbound.Survey{URL: in.Survey.URL, Question: in.Survey.Question, Choices: in.Survey.Choices}
	}
	rec, err := s.d.Messages.Accept(r.Context(), org, req)
	if err != nil {
		return messageProblem(err)
	}
	// The batch is committed: from here on the answer is 2xx whatever else fails, so a client
	// never retries into a second send. A new batch's counts come from the receipt (no scan).
	v := viewOf(rec.Batch)
	if rec.Created {
		skipped := 0
		for _, n := range rec.Skipped {
			skipped += n
		}
		v.Counts = map[outbound.Status]int{outbound.Scheduled: rec.Batch.Rows - skipped, outbound.Skipped: skipped}
		if p, err := s.d.Messages.Forecast(r.Context(), org, rec.Batch); err == nil {
			v.ExpectedCompletion = p
		}
	} else if p, err := s.d.Messages.Progress(r.Context(), org, rec.Batch); err == nil {
		v.Counts, v.ExpectedCompletion, v.NextDueAt = p.Counts, p.ExpectedCompletion, p.NextDueAt
	}
	w.Header().Set("Location", "/api/orgs/"+org.String()+"/messages/"+rec.Batch.ID)
	status := http.StatusAccepted
	if !rec.Created {
		status = http.StatusOK // the idempotency key's batch, as it stands: nothing new is sent
	}
	return writeJSON(w, status, struct {
		batchView
		Created bool           `json:"created"`
		Skipped map[string]int `json:"skipped"`
	}{v, rec.Created, skippedOrEmpty(rec.Skipped)})
}

func skippedOrEmpty(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

func (s *Server) listMessages(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	limit, err := intParam(r, "limit", 50, 1, 200)
	if err != nil {
		return err
	}
	after := r.URL.Query().Get("after")
	if after != "" && !outbound.ValidBatchID(after) {
		return invalid("after", "not a batch id")
	}
	list, next, err := s.d.Messages.Store().Batches(r.Context(), org, after, limit)
	if err != nil {
		return err
	}
	out := make([]batchView, len(list))
	for i, b := range list {
		out[i] = viewOf(b)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"batches": out, "next": next})
}

func (s *Server) batch(r *http.Request, org tablestore.Org) (outbound.Batch, error) {
	b, _, err := s.d.Messages.Store().Batch(r.Context(), org, r.PathValue("batchId"))
	return b, err
}

// deliveryView is one recipient's delivery.
type deliveryView struct {
	ID            string          `json:"id"`
	StakeholderID string          `json:"stakeholderId"`
	Channel       string          `json:"channel"`
	Address       string          `json:"address,omitempty"`
	Status        outbound.Status `json:"status"`
	Reason        string          `json:"reason,omitempty"`
	Hint          string          `json:"hint,omitempty"`
	Detail        string          `json:"detail,omitempty"`
	Attempts      int             `json:"attempts"`
	Mailbox       string          `json:"mailbox,omitempty"`
	DueAt         time.Time       `json:"dueAt,omitzero"`
	SentAt        time.Time       `json:"sentAt,omitzero"`
	Verified      bool            `json:"verifiedInSentItems,omitempty"`
	Resent        bool            `json:"resentUnverified,omitempty"`
	Response      string          `json:"response,omitempty"`
	RespondedAt   time.Time       `json:"respondedAt,omitzero"`
}

func (s *Server) getMessage(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	status := outbound.Status(q.Get("status"))
	if status != "" && !slices.Contains(statusNames(), string(status)) {
		return invalid("status", fmt.Sprintf("one of %v", statusNames()))
	}
	b, err := s.batch(r, org)
	if err != nil {
		return err
	}
	p, err := s.d.Messages.Progress(r.Context(), org, b)
	if err != nil {
		return err
	}
	rows, next, err := s.d.Messages.Deliveries(r.Context(), org, b.ID, outbound.RowsOptions{Status: status, After: q.Get("after"), Limit: limit})
	if errors.Is(err, outbound.ErrBadCursor) {
		return invalid("after", "not a delivery id")
	}
	if err != nil {
		return err
	}
	if b, err = s.batch(r, org); err != nil { // Progress may have settled it
		return err
	}
	v := viewOf(b)
	v.Counts, v.ExpectedCompletion, v.NextDueAt = p.Counts, p.ExpectedCompletion, p.NextDueAt
	out := make([]deliveryView, len(rows))
	for i, d := range rows {
		out[i] = deliveryView{ID: d.ID(), StakeholderID: d.StakeholderID, Channel: d.Channel, Address: d.Address, Status: d.Status,
			Reason: d.Reason, Hint: d.Hint, Detail: d.Detail, Attempts: d.Attempts, Mailbox: d.Mailbox, DueAt: d.DueAt, SentAt: d.SentAt,
			Verified: d.Verified, Resent: d.Resent, Response: d.Response, RespondedAt: d.RespondedAt}
	}
	responses, err := s.d.Messages.Responses(r.Context(), org, b.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct {
		batchView
		Text       string         `json:"text,omitempty"`
		HTML       string         `json:"html,omitempty"`
		Responses  map[string]int `json:"responses"`
		Deliveries []deliveryView `json:"deliveryRows"`
		Next       string         `json:"next"`
	}{v, b.Text, b.HTML, responses, out, next})
}

func statusNames() []string {
	out := make([]string, len(outbound.Statuses))
	for i, s := range outbound.Statuses {
		out[i] = string(s)
	}
	return out
}

func (s *Server) cancelMessage(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	c, err := s.d.Messages.Cancel(r.Context(), org, r.PathValue("batchId"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct {
		BatchID string `json:"batchId"`
		State   string `json:"state"`
		outbound.Cancellation
	}{c.Batch.ID, c.Batch.State, c})
}

func messageProblem(err error) error {
	if msg, ok := outbound.NotReady(err); ok {
		return notReady(msg)
	}
	if errors.Is(err, outbound.ErrKeyReused) {
		return keyReused{}
	}
	return err
}

// notReady is a 409: the org cannot send on a channel yet, and why.
type notReady string

func (n notReady) Error() string { return string(n) }

// keyReused is a 409: the idempotency key already named another message.
type keyReused struct{}

func (keyReused) Error() string {
	return "this idempotency key was used for a different message: use a new key for a new message"
}
