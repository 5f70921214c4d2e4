package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/leapchange/m365/handler/internal/changes"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// changeStore holds the change summaries the web app publishes (changes.Store).
type changeStore interface {
	Get(ctx context.Context, org tablestore.Org, id string) (changes.Change, string, error)
	Put(ctx context.Context, org tablestore.Org, c changes.Change, ifMatch string) (changes.Change, string, bool, error)
	Delete(ctx context.Context, org tablestore.Org, id, ifMatch string) error
}

// changeInput is PUT /changes/{changeId}: a change as GET shows it, so a read can be written
// back; id, when sent, must be the path's, and updatedAt is ignored (the store sets it).
type changeInput struct {
	ID                     string          `json:"id"`
	Title                  string          `json:"title"`
	Status                 changes.Status  `json:"status"`
	Description            string          `json:"description"`
	ImpactedGroupIDs       []string        `json:"impactedGroupIds"`
	ImpactedStakeholderIDs []string        `json:"impactedStakeholderIds"`
	Owner                  changes.Owner   `json:"owner"`
	StartDate              string          `json:"startDate"`
	EndDate                string          `json:"endDate"`
	URL                    string          `json:"url"`
	UpdatedAt              json.RawMessage `json:"updatedAt"`
}

// changeID is the path's change id, or a 400 naming changeId.
func changeID(r *http.Request) (string, error) {
	id := r.PathValue("changeId")
	if !changes.ValidID(id) {
		return "", invalid("changeId", fmt.Sprintf("1 to %d letters, digits, '.', '_' or '-'", changes.MaxIDLen))
	}
	return id, nil
}

// putChange creates (201) or replaces (200) a change summary. If-Match is optional: when sent,
// the change must be at that version ("*": must exist), else 412.
func (s *Server) putChange(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	id, err := changeID(r)
	if err != nil {
		return err
	}
	if r.ContentLength == 0 {
		return invalid("body", "send the change")
	}
	var in changeInput
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.ID != "" && in.ID != id {
		return invalid("id", "differs from the path's changeId")
	}
	c := changes.Change{ID: id, Title: in.Title, Status: in.Status, Description: in.Description,
		ImpactedGroupIDs: in.ImpactedGroupIDs, ImpactedStakeholderIDs: in.ImpactedStakeholderIDs, Owner: in.Owner,
		StartDate: in.StartDate, EndDate: in.EndDate, URL: in.URL}
	saved, etag, created, err := s.d.Changes.Put(r.Context(), org, c, r.Header.Get("If-Match"))
	if errors.Is(err, changes.ErrStale) {
		return errPrecondition
	}
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/api/orgs/"+org.String()+"/changes/"+id)
	}
	return writeJSON(w, status, saved)
}

func (s *Server) getChange(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	id, err := changeID(r)
	if err != nil {
		return err
	}
	c, etag, err := s.d.Changes.Get(r.Context(), org, id)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag)
	return writeJSON(w, http.StatusOK, c)
}

// deleteChange deletes a change summary; deleting one that is not there is a 204 too. A stale
// If-Match is 412.
func (s *Server) deleteChange(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	id, err := changeID(r)
	if err != nil {
		return err
	}
	err = s.d.Changes.Delete(r.Context(), org, id, r.Header.Get("If-Match"))
	if errors.Is(err, changes.ErrStale) {
		return errPrecondition
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
