package main

// The mail benchmark (scripts/bench.sh mail): one batch of N personalised mails to a stakeholder
// group, through the real outbound pipeline, the real Graph client and a pool of M sender
// mailboxes of a simulated tenant in another process whose Exchange limits are scaled up (the
// same limits the pipeline paces to). Workers take messages from an in-process queue with
// Service Bus semantics (the host stand-in's), scheduled enqueue included, as the Functions
// host's MailSender instances would.
//
// It measures:
//   - accept_s: POST-equivalent accept of the batch (expansion, N delivery rows, dispatch
//     queued), against accept_floor_s: writing N plain entities in the same ≤100-entity
//     transactions, same concurrency, into a fresh table (accept_ratio = accept_s/accept_floor_s).
//   - rate_ratio: mails accepted by the simulated tenant per second, between its first and last,
//     over the pool's limit (M × per-minute / 60). The pacer keeps 5 % under the limit, so 0.95
//     is the ceiling.
//   - lost (recipients with no mail or a delivery not sent), duplicated (recipients mailed more
//     than once), limit_violations (sends the simulated tenant refused for a limit): all 0.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/devhost"
	"github.com/leapchange/m365/handler/internal/mailsettings"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/pacing"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// MailResult is the mail benchmark's JSON line.
type MailResult struct {
	Bench      string `json:"bench"`
	Recipients int    `json:"recipients"`
	Mailboxes  int    `json:"mailboxes"`
	PerMinute  int    `json:"per_minute_per_mailbox"`
	outboundFigures
	PeakConcurrency int     `json:"peak_concurrency_per_mailbox"`
	Workers         int     `json:"workers"`
	TableTx         int64   `json:"table_transactions"`
	PeakRSSMB       float64 `json:"peak_rss_mb"`
}

// outboundFigures are the outbound benchmarks' contract figures, which mean the same in the
// mail and the Teams result lines and stand at the same place in both: accept against its
// floor, the send rate against the limit, and what was lost or duplicated.
type outboundFigures struct {
	AcceptS         float64 `json:"accept_s"`
	AcceptFloorS    float64 `json:"accept_floor_s"`
	AcceptRatio     float64 `json:"accept_ratio"`
	SendS           float64 `json:"send_s"`
	RatePerS        float64 `json:"rate_per_s"`
	LimitPerS       float64 `json:"limit_per_s"`
	RateRatio       float64 `json:"rate_ratio"`
	Sent            int     `json:"sent"`
	Lost            int     `json:"lost"`
	Duplicated      int     `json:"duplicated"`
	LimitViolations int64   `json:"limit_violations"`
}

type mailOptions struct {
	target
	recipients, mailboxes int
	perMinute, workers    int
}

func runMail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o mailOptions
	fs := o.flagSet("bench mail", stderr)
	fs.IntVar(&o.recipients, "recipients", 0, "recipients of the batch (required)")
	fs.IntVar(&o.mailboxes, "mailboxes", 4, "sender mailboxes in the pool")
	fs.IntVar(&o.perMinute, "per-minute", 0, "mails per minute per mailbox, as the simulated tenant enforces (required)")
	fs.IntVar(&o.workers, "workers", 32, "concurrent MailSender invocations (the host's maxConcurrentCalls)")
	if err := o.parse(fs, args); err != nil {
		return err
	}
	if o.recipients <= 0 || o.mailboxes <= 0 || o.perMinute <= 0 || o.workers <= 0 {
		return fmt.Errorf("%w: -recipients and -per-minute are required; -recipients, -mailboxes, -per-minute and -workers must be positive", errUsage)
	}
	return measure(ctx, &o.target, stdout, mailBench, o)
}

func mailBench(ctx context.Context, o mailOptions) (MailResult, error) {
	res := MailResult{Bench: "mail", Recipients: o.recipients, Mailboxes: o.mailboxes, PerMinute: o.perMinute, Workers: o.workers}
	logf := o.logf
	hc, err := httpClient(o.caFile)
	if err != nil {
		return res, err
	}
	store, err := tablestore.Open(ctx, tablestore.Config{ConnectionString: o.tables, Prefix: fmt.Sprintf("mb%d", time.Now().UnixNano()%1e9)})
	if err != nil {
		return res, err
	}
	defer store.DropTables(context.WithoutCancel(ctx))
	orgKey, _ := tablestore.NewOrg(org)

	// The sender pool: users of the tenant, added through the simulated tenant's admin API.
	senders := make([]string, o.mailboxes)
	for i := range senders {
		senders[i] = fmt.Sprintf("notify%d@bench.example", i+1)
		u := map[string]any{"displayName": "Notifications", "mail": senders[i], "userPrincipalName": senders[i], "accountEnabled": true}
		if err := simAdmin(ctx, hc, "POST", o.simURL+"/_sim/tenants/"+o.tenant+"/users", u, nil); err != nil {
			return res, fmt.Errorf("adding sender %s: %w", senders[i], err)
		}
	}
	if err := simAdmin(ctx, hc, "DELETE", o.simURL+"/_sim/mail/stats", nil, nil); err != nil {
		return res, err
	}
	// Outlook's 10 000 requests per 10 minutes per mailbox never binds at Exchange's 30 mails a
	// minute; at the scaled rate it would, and the pacer does not model it: switch it off.
	var simLimits map[string]any
	if err := simAdmin(ctx, hc, "GET", o.simURL+"/_sim/mail/limits", nil, &simLimits); err != nil {
		return res, err
	}
	simLimits["requestsPer10Min"] = -1
	if err := simAdmin(ctx, hc, "PUT", o.simURL+"/_sim/mail/limits", simLimits, nil); err != nil {
		return res, err
	}
	conns := connection.NewStore(store)
	if _, err := conns.Put(ctx, orgKey, connection.Record{Status: connection.Connected, TenantID: o.tenant, Granted: []string{"Mail.Send"}}, ""); err != nil {
		return res, err
	}
	ms := mailsettings.NewStore(store)
	if _, err := ms.Put(ctx, orgKey, mailsettings.Settings{Senders: senders}, ""); err != nil {
		return res, err
	}
	logf("writing %d stakeholders and their group", o.recipients)
	now := time.Now().UTC()
	recipients := make([]stakeholder.Stakeholder, o.recipients)
	for i := range recipients {
		recipients[i] = stakeholder.Stakeholder{ID: fmt.Sprintf("r%07d", i), FirstName: fmt.Sprintf("R%d", i), LastName: "Bench",
			Email: fmt.Sprintf("r%07d@fabrikam.example", i), Source: stakeholder.Manual, Active: true, CreatedAt: now, UpdatedAt: now}
	}
	people, groups, err := writeEveryone(ctx, store, orgKey, recipients, now)
	if err != nil {
		return res, err
	}

	gc, err := o.graphClient(hc)
	if err != nil {
		return res, err
	}
	limits := pacing.Limits{PerMinute: o.perMinute, DailyRecipients: 1 << 30}
	pacer, err := pacing.New(store, limits)
	if err != nil {
		return res, err
	}
	queues := devhost.NewQueues(nil, devhost.QueueOptions{}, queue.OutboundMail, queue.OutboundTeams)
	pub := &inProcess{q: queues}
	p := outbound.New(outbound.Config{Store: store, Queue: pub, Stakeholders: people, Groups: groups, Connections: conns,
		MailSettings: ms, Pacer: pacer, Mailer: gc})

	tx0 := store.Stats().Requests
	rec, acceptS, err := acceptBatch(ctx, p, orgKey, outbound.Mail,
		outbound.Content{Subject: "{{firstName}}, the expense tool changes on Monday", HTML: "<p>Hello {{firstName}},</p><p>The <b>new expense tool</b> goes live on Monday.</p>"}, logf)
	if err != nil {
		return res, err
	}
	res.AcceptS = acceptS
	logf("accepted %d recipients in %.2fs; sending through %d mailboxes at %d/min each", rec.Batch.Recipients, res.AcceptS, o.mailboxes, o.perMinute)

	// Workers: receive, invoke MailSender, settle — the Functions host's part.
	sendStart := time.Now()
	w := startWorkers(ctx, queues, logf)
	w.run(queue.OutboundMail, "MailSender", o.workers, p.HandleMail)
	// Watch the simulated tenant's count (cheap) rather than scanning the batch's rows (at 50 000
	// rows a scan every few seconds would compete with the workers for Azurite); the batch view
	// is read at the end, or once a minute in case deliveries fail.
	lastScan := time.Now()
	prog, err := w.watchBatch(ctx, p, orgKey, rec.Batch.ID, func() (bool, error) {
		var st struct {
			Accepted int64 `json:"accepted"`
		}
		if err := simAdmin(ctx, hc, "GET", o.simURL+"/_sim/mail/stats", nil, &st); err != nil {
			return false, err
		}
		logf("%5.1fs %d mails accepted by the simulated tenant (worker errors %d)", time.Since(sendStart).Seconds(), st.Accepted, w.failures.Load())
		if int(st.Accepted) >= rec.Batch.Recipients || time.Since(lastScan) > time.Minute {
			lastScan = time.Now()
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return res, err
	}
	res.SendS = secs(time.Since(sendStart))
	res.TableTx = store.Stats().Requests - tx0
	res.PeakRSSMB = peakRSSMB()
	res.Sent = prog.Counts[outbound.Sent]

	// What the simulated tenant saw.
	var mails []struct {
		To     []string  `json:"to"`
		SentAt time.Time `json:"sentAt"`
	}
	if err := simAdmin(ctx, hc, "GET", o.simURL+"/_sim/tenants/"+o.tenant+"/mail", nil, &mails); err != nil {
		return res, err
	}
	var stats struct {
		Violations      int64 `json:"violations"`
		PeakConcurrency int   `json:"peakConcurrency"`
	}
	if err := simAdmin(ctx, hc, "GET", o.simURL+"/_sim/mail/stats", nil, &stats); err != nil {
		return res, err
	}
	per := map[string]int{}
	var times []time.Time
	for _, m := range mails {
		times = append(times, m.SentAt)
		for _, to := range m.To {
			per[to]++
		}
	}
	for i := range o.recipients {
		switch n := per[fmt.Sprintf("r%07d@fabrikam.example", i)]; {
		case n == 0:
			res.Lost++
		case n > 1:
			res.Duplicated++
		}
	}
	res.Lost = max(res.Lost, o.recipients-res.Sent)
	res.LimitViolations, res.PeakConcurrency = stats.Violations, stats.PeakConcurrency
	res.LimitPerS = round3(float64(o.mailboxes*o.perMinute) / 60)
	res.RatePerS, res.RateRatio = sendRate(times, res.LimitPerS)

	if res.AcceptFloorS, res.AcceptRatio, err = acceptFloorRatio(ctx, store, rec.Batch.Rows, res.AcceptS, logf); err != nil {
		return res, err
	}
	return res, nil
}

// writeEveryone writes the recipients and the group "everyone" of all of them, to which the
// benchmark's batch goes.
func writeEveryone(ctx context.Context, store *tablestore.Store, orgKey tablestore.Org, recipients []stakeholder.Stakeholder, now time.Time) (*stakeholder.Store, *stakeholder.Groups, error) {
	people, groups := stakeholder.NewStore(store), stakeholder.NewGroups(store)
	ids := make([]string, len(recipients))
	var ops []tablestore.Op
	for i, st := range recipients {
		ids[i] = st.ID
		ops = append(ops, stakeholder.Ops(st, nil, "")...)
	}
	if err := people.Apply(ctx, orgKey, ops); err != nil {
		return nil, nil, err
	}
	if err := groups.Put(ctx, orgKey, stakeholder.Group{ID: "everyone", Name: "Everyone", Type: "custom", Source: stakeholder.Manual, Active: true}); err != nil {
		return nil, nil, err
	}
	if _, _, err := groups.SetMembers(ctx, orgKey, "everyone", ids, stakeholder.Manual, now); err != nil {
		return nil, nil, err
	}
	return people, groups, nil
}

// acceptBatch accepts the benchmark's batch, one notification to the group "everyone" on
// channel, and times it (accept_s).
func acceptBatch(ctx context.Context, p *outbound.Pipeline, orgKey tablestore.Org, channel string, content outbound.Content, logf func(string, ...any)) (outbound.Receipt, float64, error) {
	logf("accepting the batch")
	start := time.Now()
	rec, err := p.Accept(ctx, orgKey, outbound.Request{GroupIDs: []string{"everyone"}, Channels: []string{channel}, Kind: "notification", Content: content})
	return rec, secs(time.Since(start)), err
}

// sendRate sorts times (when the simulated tenant took each message) and returns the rate
// between the first and the last, a second, and its ratio to limit; zeros for fewer than two.
func sendRate(times []time.Time, limit float64) (rate, ratio float64) {
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	if len(times) < 2 {
		return 0, 0
	}
	span := times[len(times)-1].Sub(times[0]).Seconds()
	rate = round3(float64(len(times)-1) / span)
	return rate, round3(rate / limit)
}

// acceptFloorRatio measures the accept floor of rows delivery rows (accept_floor_s) and
// returns it with accept's ratio to it (accept_ratio).
func acceptFloorRatio(ctx context.Context, store *tablestore.Store, rows int, acceptS float64, logf func(string, ...any)) (floorS, ratio float64, err error) {
	logf("floor: %d plain entities in ≤100-entity transactions", rows)
	d, err := acceptFloor(ctx, store, rows)
	if err != nil {
		return 0, 0, err
	}
	floorS = secs(d)
	if d > 0 {
		ratio = round3(acceptS / floorS)
	}
	return floorS, ratio, nil
}

// acceptFloor writes n small entities into a fresh table in the transactions and concurrency
// accept uses: what writing the rows costs with no pipeline at all.
func acceptFloor(ctx context.Context, store *tablestore.Store, n int) (time.Duration, error) {
	t := store.Table("mailfloor")
	part, _ := tablestore.NewOrg(org)
	type row struct {
		Batch, Channel, StakeholderID, Address, FirstName, LastName, Status string
		Index                                                               int
	}
	ops := make([]tablestore.Op, n)
	for i := range ops {
		ops[i] = tablestore.UpsertOp(fmt.Sprintf("b0000|%07d|m", i), row{Batch: "b0000", Channel: "mail", StakeholderID: fmt.Sprintf("r%07d", i),
			Address: fmt.Sprintf("r%07d@fabrikam.example", i), FirstName: "R", LastName: "Bench", Status: "scheduled", Index: i}, tablestore.Replace)
	}
	if err := t.Batch(ctx, part, ops[:1]); err != nil { // create the table outside the timing
		return 0, err
	}
	start := time.Now()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	var first error
	var mu sync.Mutex
	for s := 0; s < n; s += 100 {
		chunk := ops[s:min(s+100, n)]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := t.Batch(ctx, part, chunk); err != nil {
				mu.Lock()
				first = errors.Join(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return time.Since(start), first
}

// inProcess publishes to the host stand-in's queues in this process.
type inProcess struct{ q *devhost.Queues }

func toDevhost(m queue.Message) devhost.Message {
	return devhost.Message{MessageID: m.ID, Body: m.Body, ContentType: m.ContentType, Subject: m.Subject,
		ApplicationProperties: m.Properties, ScheduledEnqueueTime: m.NotBefore}
}

func (p *inProcess) Publish(_ context.Context, m queue.Message) error {
	_, err := p.q.Send(m.Queue, toDevhost(m))
	return err
}

func (p *inProcess) PublishBatch(_ context.Context, msgs []queue.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]devhost.Message, len(msgs))
	for i, m := range msgs {
		out[i] = toDevhost(m)
	}
	_, err := p.q.SendBatch(msgs[0].Queue, out)
	return err
}

func (p *inProcess) Schedule(_ context.Context, m queue.Message) (int64, error) {
	r, err := p.q.Send(m.Queue, toDevhost(m))
	return r.SequenceNumber, err
}

func (p *inProcess) CancelScheduled(_ context.Context, q string, seqs []int64) error {
	_, err := p.q.Cancel(q, seqs)
	return err
}

// simAdmin calls the simulated tenant's admin API.
func simAdmin(ctx context.Context, hc *http.Client, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// batchProgress reads a batch's counts (one scan of its rows), logs them, and says whether
// every delivery is final.
func batchProgress(ctx context.Context, p *outbound.Pipeline, org tablestore.Org, id string, logf func(string, ...any)) (outbound.Progress, bool, error) {
	b, _, err := p.Store().Batch(ctx, org, id)
	if err != nil {
		return outbound.Progress{}, false, err
	}
	prog, err := p.Progress(ctx, org, b)
	if err != nil {
		return prog, false, err
	}
	if prog.Counts[outbound.Scheduled]+prog.Counts[outbound.Queued]+prog.Counts[outbound.Sending] == 0 {
		return prog, true, nil
	}
	logf("batch: sent %d, queued %d, scheduled %d, failed %d", prog.Counts[outbound.Sent], prog.Counts[outbound.Queued],
		prog.Counts[outbound.Scheduled], prog.Counts[outbound.Failed])
	return prog, false, nil
}

// workers are the Functions host's part in a benchmark: receive a message, invoke the
// function, settle it (abandoned on failure, so the queue redelivers).
type workers struct {
	ctx      context.Context
	stop     context.CancelFunc
	wg       sync.WaitGroup
	failures atomic.Int64
	queues   *devhost.Queues
	logf     func(string, ...any)
}

func startWorkers(ctx context.Context, queues *devhost.Queues, logf func(string, ...any)) *workers {
	wctx, stop := context.WithCancel(ctx)
	return &workers{ctx: wctx, stop: stop, queues: queues, logf: logf}
}

// run starts n workers of function fn on queue name.
func (w *workers) run(name, fn string, n int, handle func(context.Context, []byte, int) error) {
	for range n {
		w.wg.Go(func() {
			for {
				d, err := w.queues.Receive(w.ctx, name)
				if err != nil {
					return
				}
				if err := handle(w.ctx, d.Body, d.DeliveryCount); err != nil {
					if w.failures.Add(1) <= 5 && w.ctx.Err() == nil {
						w.logf("%s failed (redelivered): %v", fn, err)
					}
					_ = w.queues.Abandon(d, err.Error())
					continue
				}
				_ = w.queues.Complete(d)
			}
		})
	}
}

// watchBatch lets the workers send until every delivery of the batch is final, then stops them
// (waiting for them only then: on an error the benchmark gives up). Every 5 seconds
// tenantCount reads and logs the simulated tenant's count, and says whether the batch's rows
// are worth a scan (a scan competes with the workers for Azurite).
func (w *workers) watchBatch(ctx context.Context, p *outbound.Pipeline, orgKey tablestore.Org, batchID string, tenantCount func() (scan bool, err error)) (outbound.Progress, error) {
	for {
		scan, err := tenantCount()
		if err != nil {
			w.stop()
			return outbound.Progress{}, err
		}
		if scan {
			prog, done, err := batchProgress(ctx, p, orgKey, batchID, w.logf)
			if err != nil {
				w.stop()
				return prog, err
			}
			if done {
				w.wait()
				return prog, nil
			}
		}
		select {
		case <-ctx.Done():
			w.stop()
			return outbound.Progress{}, ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

// wait stops the workers and waits for them.
func (w *workers) wait() {
	w.stop()
	w.wg.Wait()
}
