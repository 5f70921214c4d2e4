package api

import (
	"net/http"
	"time"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/problem"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	problem.Write(w, r, problem.New(http.StatusNotFound, problem.NotFound, "no such API path"))
}

// runView is a run as the web app sees it.
type runView struct {
	dirsync.Run
	NextLink string `json:"nextLink,omitempty"` // shadows the checkpoint: never shown
}

func view(r dirsync.Run) runView { return runView{Run: r} }

type startRequest struct {
	DryRun bool `json:"dryRun"`
}

func (s *Server) startSync(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	var req startRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.DryRun {
		problem.Write(w, r, problem.New(http.StatusNotImplemented, problem.NotImplemented, "dry run is not implemented yet"))
		return nil
	}
	run, started, err := s.sync.Start(r.Context(), org, "manual")
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/orgs/"+org.String()+"/m365/sync/runs/"+run.ID)
	return writeJSON(w, http.StatusAccepted, map[string]any{"runId": run.ID, "started": started, "state": run.State})
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	limit, err := intParam(r, "limit", 20, 1, 100)
	if err != nil {
		return err
	}
	runs, err := s.sync.Runs(r.Context(), org, limit)
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

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	run, _, err := s.sync.Run(r.Context(), org, r.PathValue("runId"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, view(run))
}

type statusView struct {
	Connection  string     `json:"connection"`
	TenantID    string     `json:"tenantId,omitempty"`
	LastSync    *time.Time `json:"lastSync,omitempty"`
	LastRun     *runView   `json:"lastRun,omitempty"`
	Running     *runView   `json:"running,omitempty"`
	RecordsSync int        `json:"recordsSynced"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	conn, _, err := s.conns.Get(r.Context(), org)
	if err != nil {
		return err
	}
	out := statusView{Connection: string(conn.Status), TenantID: conn.TenantID}
	runs, err := s.sync.Runs(r.Context(), org, 10)
	if err != nil {
		return err
	}
	for _, run := range runs {
		v := view(run)
		switch {
		case run.State == dirsync.Running && out.Running == nil:
			out.Running = &v
		case run.State != dirsync.Running && out.LastRun == nil:
			out.LastRun = &v
			if run.State == dirsync.Succeeded {
				t := run.FinishedAt
				out.LastSync = &t
				out.RecordsSync = run.Written
			}
		}
	}
	return writeJSON(w, http.StatusOK, out)
}
