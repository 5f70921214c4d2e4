package devhost

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/appfiles"
)

// timer is the state of one timer function (the in-memory schedule monitor).
type timer struct {
	fn       *appfiles.Function
	binding  *appfiles.Binding
	schedule *appfiles.Schedule
	monitor  bool

	mu          sync.Mutex // serializes runs: one timer never overlaps itself
	last        time.Time  // last scheduled occurrence that ran (zero: none yet)
	lastUpdated time.Time
}

func (h *Host) timers() []*timer {
	if h.timerList != nil {
		return h.timerList
	}
	for _, f := range h.app.Functions {
		t := f.Trigger()
		if f.Disabled || t == nil || !t.Is(appfiles.TypeTimerTrigger, "") {
			continue
		}
		s, err := appfiles.ParseSchedule(t.Schedule)
		if err != nil {
			continue // Validate has reported it
		}
		monitor := s.MinInterval() >= time.Minute // the host's default for useMonitor
		if t.UseMonitor != nil {
			monitor = *t.UseMonitor
		}
		h.timerList = append(h.timerList, &timer{fn: f, binding: t, schedule: s, monitor: monitor})
	}
	return h.timerList
}

func (h *Host) timerFor(name string) *timer {
	for _, t := range h.timers() {
		if t.fn.Name == name {
			return t
		}
	}
	return nil
}

// startTimers starts one loop per timer function. The schedule base is read from the clock here,
// synchronously, so a test that advances a fake clock after Start sees the next occurrence.
func (h *Host) startTimers(ctx context.Context) {
	now := h.clock.Now().UTC()
	for _, t := range h.timers() {
		h.work.Add(1)
		go func() {
			defer h.work.Done()
			if t.binding.RunOnStartup {
				h.fireTimer(t, false)
			}
			h.timerLoop(ctx, t, now)
		}()
	}
}

func (h *Host) timerLoop(ctx context.Context, t *timer, base time.Time) {
	next := t.schedule.Next(base)
	for !next.IsZero() {
		if wait := next.Sub(h.clock.Now()); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-h.clock.After(wait):
				continue // re-check the clock
			}
		}
		if ctx.Err() != nil {
			return
		}
		// Past due: the clock is already beyond the following occurrence, so runs were missed.
		// Like the host, run once for the latest occurrence and flag it.
		now := h.clock.Now().UTC()
		following, pastDue := t.schedule.Next(next), false
		for !following.IsZero() && !now.Before(following) {
			next, following, pastDue = following, t.schedule.Next(following), true
		}
		h.fireTimerAt(t, next, pastDue)
		next = following
	}
}

// fireTimer runs a timer function now (runOnStartup, admin API).
func (h *Host) fireTimer(t *timer, pastDue bool) {
	if t == nil {
		return
	}
	h.fireTimerAt(t, h.clock.Now().UTC(), pastDue)
}

func (h *Host) fireTimerAt(t *timer, occurrence time.Time, pastDue bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h.closing.Load() {
		return
	}
	h.active.Add(1)
	defer h.active.Done()
	now := h.clock.Now().UTC()
	var status *scheduleStatus
	if t.monitor {
		status = &scheduleStatus{Last: t.last, Next: occurrence, LastUpdated: t.lastUpdated}
		if t.last.IsZero() {
			status.LastUpdated = now
		}
	}
	payload := timerPayload(t.fn.Name, t.binding, status, pastDue, now)
	res, err := h.invokeJSON(context.Background(), t.fn.Name, payload)
	t.last, t.lastUpdated = occurrence, now
	if err != nil {
		return // a failed timer run is not retried; the next one happens on schedule
	}
	h.applyOutputs(t.fn, res)
}

// startConsumers starts maxConcurrentCalls consumers per Service Bus trigger function.
func (h *Host) startConsumers(ctx context.Context) {
	n := h.app.MaxConcurrentCalls()
	if h.cfg.MaxConcurrentCalls > 0 {
		n = h.cfg.MaxConcurrentCalls
	}
	for _, f := range h.app.Functions {
		t := f.Trigger()
		if f.Disabled || t == nil || !t.Is(appfiles.TypeServiceBusTrigger, "") {
			continue
		}
		for range n {
			h.work.Add(1)
			go func() {
				defer h.work.Done()
				h.consume(ctx, f, t)
			}()
		}
	}
}

func (h *Host) consume(ctx context.Context, f *appfiles.Function, t *appfiles.Binding) {
	for {
		d, err := h.queues.Receive(ctx, t.QueueName)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				h.log.Error("receive", "queue", t.QueueName, "err", err)
			}
			return
		}
		h.deliver(f, t, d)
	}
}

// deliver invokes f for one locked message and settles it: complete on success (after sending the
// outputs), abandon on failure.
func (h *Host) deliver(f *appfiles.Function, t *appfiles.Binding, d *Delivery) {
	h.active.Add(1)
	defer h.active.Done()
	payload := serviceBusPayload(f.Name, t, d, h.namespace(), h.clock.Now())
	res, err := h.invokeJSON(context.Background(), f.Name, payload)
	if err != nil {
		if aerr := h.queues.Abandon(d, err.Error()); aerr != nil {
			h.log.Warn("abandon", "queue", d.Queue, "err", aerr)
		}
		return
	}
	h.applyOutputs(f, res)
	if err := h.queues.Complete(d); err != nil {
		h.log.Warn("complete", "queue", d.Queue, "err", err)
	}
}

// namespace is the Client.FullyQualifiedNamespace shown in Service Bus metadata.
func (h *Host) namespace() string {
	if v := h.settings["ServiceBusConnection__fullyQualifiedNamespace"]; v != "" {
		return v
	}
	if v := h.settings["ServiceBusConnection"]; strings.Contains(v, "Endpoint=sb://") {
		rest := v[strings.Index(v, "Endpoint=sb://")+len("Endpoint=sb://"):]
		return strings.TrimRight(strings.SplitN(rest, ";", 2)[0], "/")
	}
	return "devhost.servicebus.local"
}
