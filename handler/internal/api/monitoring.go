package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/leapchange/m365/handler/internal/monitoring"
	"github.com/leapchange/m365/handler/internal/problem"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// monitor is channel monitoring as the API drives it.
type monitor interface {
	View(ctx context.Context, org tablestore.Org) (monitoring.View, tablestore.ETag, error)
	Save(ctx context.Context, org tablestore.Org, s monitoring.Settings, etag tablestore.ETag) (monitoring.Settings, monitoring.Report, error)
}

func (s *Server) getMonitoring(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	v, etag, err := s.d.Monitoring.View(r.Context(), org)
	if err != nil {
		return err
	}
	if etag != "" {
		w.Header().Set("ETag", string(etag))
	}
	return writeJSON(w, http.StatusOK, v)
}

// putMonitoring replaces the monitoring settings (If-Match, when sent, must match), checks the
// channels in Graph and reconciles the subscriptions; the answer is the view after it. A
// subscription Graph refuses does not undo the settings: the view shows its error and the
// renewer tries again.
func (s *Server) putMonitoring(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	ctx := r.Context()
	_, etag, err := s.d.Monitoring.View(ctx, org)
	if err != nil {
		return err
	}
	m := r.Header.Get("If-Match")
	if m != "" && m != "*" && m != string(etag) {
		return errPrecondition
	}
	if m == "" || m == "*" {
		etag = "" // no condition asked for: a save in between is not a conflict
	}
	if r.ContentLength == 0 {
		return invalid("body", "send the monitoring settings")
	}
	var in monitoring.Settings
	if err := decode(r, &in); err != nil {
		return err
	}
	_, rep, err := s.d.Monitoring.Save(ctx, org, in, etag)
	var nr *monitoring.NotReady
	switch {
	case errors.As(err, &nr):
		return problemError{problem.New(http.StatusConflict, problem.NotReady, nr.Reason)}
	case errors.Is(err, tablestore.ErrConflict):
		return errPrecondition
	case err != nil && rep.Failed > 0:
		// Saved; some subscriptions failed and say why in the view.
	case err != nil:
		return channelsProblem(err, "the channels")
	}
	v, newETag, err := s.d.Monitoring.View(ctx, org)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", string(newETag))
	return writeJSON(w, http.StatusOK, struct {
		monitoring.View
		Reconciled monitoring.Report `json:"reconciled"`
	}{v, rep})
}
