package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/problem"
	"github.com/leapchange/m365/handler/internal/realtime"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	problem.Write(w, r, problem.New(http.StatusNotFound, problem.NotFound, "no such API path"))
}

// runView is a run as the web app sees it. It lists what is shown, field by field, so the
// engine's checkpoint state (Graph links, cursors, resume marks) can never leak into an answer.
type runView struct {
	ID                   string             `json:"id"`
	State                dirsync.State      `json:"state"`
	Kind                 string             `json:"kind"`
	Trigger              string             `json:"trigger"`
	DryRun               bool               `json:"dryRun"`
	StartedAt            time.Time          `json:"startedAt"`
	FinishedAt           time.Time          `json:"finishedAt,omitzero"`
	CancelledBy          string             `json:"cancelledBy,omitempty"`
	Phase                string             `json:"phase"`
	Step                 int                `json:"step"`
	Total                int                `json:"total"`
	Pages                int                `json:"pages"`
	Processed            int                `json:"processed"`
	Created              int                `json:"created"`
	Updated              int                `json:"updated"`
	Unchanged            int                `json:"unchanged"`
	Conflicts            int                `json:"conflicts"`
	Skipped              int                `json:"skipped"`
	Deactivated          int                `json:"deactivated"`
	Reactivated          int                `json:"reactivated"`
	Linked               int                `json:"linked"`
	Invalid              int                `json:"invalid"`
	Excluded             dirsync.Excluded   `json:"excluded"`
	Throttled            int                `json:"throttled"`
	Retried              int                `json:"retried"`
	WaitedSeconds        float64            `json:"waitedSeconds"`
	Rescheduled          int                `json:"rescheduled"`
	Recoveries           int                `json:"recoveries"`
	Deliveries           int                `json:"deliveries,omitempty"`
	Heartbeat            time.Time          `json:"heartbeat,omitzero"`
	NotBefore            time.Time          `json:"notBefore,omitzero"`
	ErrorCount           int                `json:"errorCount"`
	PendingDeactivations int                `json:"pendingDeactivations"`
	Synced               int                `json:"synced"`
	GroupsSynced         int                `json:"groupsSynced"`
	MembersAdded         int                `json:"membersAdded"`
	MembersRemoved       int                `json:"membersRemoved"`
	Hold                 *dirsync.Hold      `json:"hold,omitempty"`
	Errors               []dirsync.RunError `json:"errors"`
	LastError            string             `json:"lastError,omitempty"`
	Changes              int                `json:"changes"`
	Progress             *progress          `json:"progress,omitempty"`
}

// progress is a running run's progress bar: processed of total (total 0 = unknown).
type progress struct {
	Phase     string `json:"phase"`
	Processed int    `json:"processed"`
	Total     int    `json:"total"`
	Percent   *int   `json:"percent,omitempty"`
}

func view(r dirsync.Run) runView {
	v := runView{
		ID: r.ID, State: r.State, Kind: r.Kind, Trigger: r.Trigger, DryRun: r.DryRun, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, CancelledBy: r.CancelledBy,
		Phase: r.Phase, Step: r.Step, Total: r.Total, Pages: r.Pages, Processed: r.Processed,
		Created: r.Created, Updated: r.Updated, Unchanged: r.Unchanged, Conflicts: r.Conflicts, Skipped: r.Skipped,
		Deactivated: r.Deactivated, Reactivated: r.Reactivated, Linked: r.Linked, Invalid: r.Invalid, Excluded: r.Excluded, Throttled: r.Throttled,
		Retried: r.Retried, WaitedSeconds: r.WaitedSeconds, Rescheduled: r.Rescheduled, Recoveries: r.Recoveries, Deliveries: r.Deliveries, Heartbeat: r.Heartbeat, NotBefore: r.NotBefore,
		ErrorCount: r.ErrorCount, PendingDeactivations: r.PendingDeactivations, Synced: r.Synced,
		GroupsSynced: r.GroupsSynced, MembersAdded: r.MembersAdded, MembersRemoved: r.MembersRemoved,
		Hold: r.Hold, Errors: r.Errors, LastError: r.LastError, Changes: r.Changes,
	}
	if r.State == dirsync.Running {
		p := &progress{Phase: r.Phase, Processed: r.Processed, Total: max(r.Total, r.Processed)}
		if r.Total > 0 {
			pct := min(100, r.Processed*100/r.Total)
			p.Percent = &pct
		}
		v.Progress = p
	}
	return v
}

type startRequest struct {
	DryRun bool `json:"dryRun"`
}

func (s *Server) startSync(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	var req startRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	run, started, err := s.d.Sync.Start(r.Context(), org, dirsync.StartOptions{Trigger: "manual", DryRun: req.DryRun})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/orgs/"+org.String()+"/m365/sync/runs/"+run.ID)
	return writeJSON(w, http.StatusAccepted, map[string]any{"runId": run.ID, "started": started, "state": run.State, "dryRun": run.DryRun})
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	limit, err := intParam(r, "limit", 20, 1, 100)
	if err != nil {
		return err
	}
	runs, err := s.d.Sync.Runs(r.Context(), org, limit)
	if err != nil {
		return err
	}
	out := make([]runView, len(runs))
	for i, run := range runs {
		run.Errors = nil // the list is a summary; the detail has the errors
		out[i] = view(run)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"runs": out})
}

// runDetail is one run with a page of its per-record changes.
type runDetail struct {
	runView
	ChangeLog    []dirsync.Change `json:"changeLog"`
	ChangesAfter int              `json:"nextChangesAfter,omitempty"` // pass as changesAfter for the next page
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	after, err := intParam(r, "changesAfter", 0, 0, 1<<30)
	if err != nil {
		return err
	}
	limit, err := intParam(r, "changesLimit", 100, 1, 1000)
	if err != nil {
		return err
	}
	run, _, err := s.d.Sync.Run(r.Context(), org, r.PathValue("runId"))
	if err != nil {
		return err
	}
	changes, err := s.d.Sync.Changes(r.Context(), org, run.ID, after, limit)
	if err != nil {
		return err
	}
	d := runDetail{runView: view(run), ChangeLog: changes}
	if d.ChangeLog == nil {
		d.ChangeLog = []dirsync.Change{}
	}
	if len(changes) == limit {
		d.ChangesAfter = changes[len(changes)-1].Seq
	}
	return writeJSON(w, http.StatusOK, d)
}

type approveRequest struct {
	ApprovedBy string `json:"approvedBy"`
}

func (s *Server) approveRun(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	var req approveRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.ApprovedBy) > 200 {
		return invalid("approvedBy", "at most 200 characters")
	}
	run, err := s.d.Sync.Approve(r.Context(), org, r.PathValue("runId"), req.ApprovedBy)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, view(run))
}

type cancelRequest struct {
	CancelledBy string `json:"cancelledBy"`
}

// canceller is what the sync engine also offers (dirsync.Engine): cancelling a run.
type canceller interface {
	Cancel(ctx context.Context, org tablestore.Org, id, by string) (dirsync.Run, error)
}

// cancelRun stops a running or held run for good and frees the org for the next one. A run
// that is over already is a 409 naming its state, so cancelling twice is a 409 the second time.
func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	var req cancelRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if utf8.RuneCountInString(req.CancelledBy) > dirsync.MaxCancelledBy {
		return invalid("cancelledBy", fmt.Sprintf("at most %d characters", dirsync.MaxCancelledBy))
	}
	c, ok := s.d.Sync.(canceller)
	if !ok {
		return problemError{problem.New(http.StatusNotImplemented, problem.NotImplemented, "this sync engine cannot cancel runs")}
	}
	run, err := c.Cancel(r.Context(), org, r.PathValue("runId"), req.CancelledBy)
	if errors.Is(err, dirsync.ErrNotCancellable) {
		// Answered here, not in problemFor: the detail names the run's state, which only the
		// run returned with the error has.
		return problemError{problem.New(http.StatusConflict, problem.Conflict,
			fmt.Sprintf("the run is %s: only a running or held run can be cancelled", run.State))}
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, view(run))
}

type statusView struct {
	Connection    string     `json:"connection"`
	TenantID      string     `json:"tenantId,omitempty"`
	LastSync      *time.Time `json:"lastSync,omitempty"`
	RecordsSynced int        `json:"recordsSynced"`
	Errors        int        `json:"errors"`
	LastRun       *runView   `json:"lastRun,omitempty"`
	Running       *runView   `json:"running,omitempty"`
	Frequency     string     `json:"frequency"`
	NextSync      *time.Time `json:"nextScheduledSync,omitempty"`
	OpenConflicts int        `json:"openConflicts"` // skipped conflicts waiting for an admin (GET /m365/conflicts)
	// RealTime is real-time sync: on or off, its subscriptions' health, the last notification.
	RealTime *realtime.Status `json:"realTime,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	ctx := r.Context()
	conn, _, err := s.d.Connections.Get(ctx, org)
	if err != nil {
		return err
	}
	out := statusView{Connection: string(conn.Status), TenantID: conn.TenantID}
	runs, err := s.d.Sync.Runs(ctx, org, 20)
	if err != nil {
		return err
	}
	for _, run := range runs {
		if run.DryRun {
			continue // previews are not syncs
		}
		v := view(run)
		switch {
		case (run.State == dirsync.Running || run.State == dirsync.Held) && out.Running == nil:
			out.Running = &v
		case run.State != dirsync.Running && run.State != dirsync.Held && out.LastRun == nil:
			out.LastRun = &v
			out.Errors = run.ErrorCount
		}
		if run.State == dirsync.Succeeded && out.LastSync == nil {
			t := run.FinishedAt
			out.LastSync = &t
			out.RecordsSynced = run.Synced
		}
	}
	if err := s.fillSchedule(ctx, org, conn, &out); err != nil {
		return err
	}
	if cs, ok := s.conflicts(); ok {
		if out.OpenConflicts, err = cs.OpenConflictCount(ctx, org); err != nil {
			return err
		}
	}
	if s.d.RealTime != nil {
		rt, err := s.d.RealTime.Status(ctx, org)
		if err != nil {
			return err
		}
		out.RealTime = &rt
	}
	return writeJSON(w, http.StatusOK, out)
}

// fillSchedule adds the frequency and, for a connected org on a schedule, the next slot.
func (s *Server) fillSchedule(ctx context.Context, org tablestore.Org, conn connection.Record, out *statusView) error {
	if s.d.Settings == nil {
		return nil
	}
	st, _, err := s.d.Settings.Get(ctx, org)
	if err != nil {
		return err
	}
	out.Frequency = string(st.Frequency)
	if conn.Status == connection.Connected && s.d.NextSync != nil {
		if next, ok := s.d.NextSync(st, s.d.Now()); ok {
			out.NextSync = &next
		}
	}
	return nil
}

// tenantOf is the org's connected tenant; not connected is a 409 problem.
func (s *Server) tenantOf(ctx context.Context, org tablestore.Org) (string, error) {
	tenant, err := s.d.Connections.Tenant(ctx, org)
	if errors.Is(err, connection.ErrNotConnected) {
		return "", err
	}
	return tenant, err
}
