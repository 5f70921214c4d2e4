package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/leapchange/m365/handler/internal/org"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// eraseBudget bounds one DELETE of an org; an erasure that needs longer is continued by the next.
const eraseBudget = 2 * time.Minute

// putOrg registers the org, or updates its display name and default time zone.
func (s *Server) putOrg(w http.ResponseWriter, r *http.Request, id tablestore.Org) error {
	if r.ContentLength == 0 {
		return invalid("body", "send the org's displayName and timeZone")
	}
	var reg org.Registration
	if err := decode(r, &reg); err != nil {
		return err
	}
	o, created, err := s.d.Orgs.Register(r.Context(), id, reg)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/api/orgs/"+id.String())
	}
	return writeJSON(w, status, o)
}

// getOrg answers the org, also while it is being erased (state "erasing"), so the web app can
// follow an erasure.
func (s *Server) getOrg(w http.ResponseWriter, r *http.Request, id tablestore.Org) error {
	o, err := s.d.Orgs.Get(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, o)
}

// deleteOrg erases the org and answers what was removed. An interrupted erasure leaves the org
// "erasing" (every other route answers 404); DELETE again continues it.
func (s *Server) deleteOrg(w http.ResponseWriter, r *http.Request, id tablestore.Org) error {
	// A large org takes many transactions: stop well inside the host's HTTP timeout (230 s) and
	// let the caller continue, rather than be cut off without an answer.
	ctx, cancel := context.WithTimeout(r.Context(), eraseBudget)
	defer cancel()
	rep, err := s.d.Orgs.Erase(ctx, id)
	if err != nil && !errors.Is(err, org.ErrNotFound) {
		s.log.ErrorContext(r.Context(), "org erasure interrupted", "org", id.String(), "error", err.Error())
		return errErasureIncomplete
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}
