package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// conflictResolver is the slice of the sync engine that keeps open "skip conflicts" conflicts.
// The engine has it; a syncer without it serves no conflicts (501).
type conflictResolver interface {
	Conflicts(ctx context.Context, org tablestore.Org, after string, limit int) ([]dirsync.OpenConflict, string, error)
	OpenConflictCount(ctx context.Context, org tablestore.Org) (int, error)
	ResolveConflict(ctx context.Context, org tablestore.Org, id string, r dirsync.Resolution, ifMatch tablestore.ETag) (dirsync.Resolved, error)
}

func (s *Server) conflicts() (conflictResolver, bool) {
	c, ok := s.d.Sync.(conflictResolver)
	return c, ok
}

// conflictView is one open conflict as the web app sees it.
type conflictView struct {
	StakeholderID string                      `json:"stakeholderId"`
	ExternalID    string                      `json:"externalId"`
	Name          string                      `json:"name"`
	Since         time.Time                   `json:"since"`
	LastSeen      time.Time                   `json:"lastSeen"`
	RunID         string                      `json:"runId"`
	ETag          string                      `json:"etag"`
	Fields        []stakeholder.ConflictField `json:"fields"`
}

// listConflicts answers GET /m365/conflicts: the open conflicts, a page at a time.
func (s *Server) listConflicts(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	cs, ok := s.conflicts()
	if !ok {
		return notImplemented("sync conflicts")(w, r, org)
	}
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	after := r.URL.Query().Get("after")
	if after != "" && tablestore.CheckKey("c-"+after) != nil {
		return invalid("after", "not a stakeholder id")
	}
	list, next, err := cs.Conflicts(r.Context(), org, after, limit)
	if err != nil {
		return err
	}
	out := make([]conflictView, len(list))
	for i, c := range list {
		out[i] = conflictView{StakeholderID: c.StakeholderID, ExternalID: c.ExternalID, Name: c.Name, Since: c.Since,
			LastSeen: c.UpdatedAt, RunID: c.RunID, ETag: string(c.ETag), Fields: c.Fields}
		if out[i].Fields == nil {
			out[i].Fields = []stakeholder.ConflictField{}
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"conflicts": out, "next": next})
}

// resolveInput is the body of a resolution: a choice for the whole record, per field, or both
// (per field first).
type resolveInput struct {
	Choice string            `json:"choice"`
	Fields map[string]string `json:"fields"`
}

// resolveConflict answers POST /m365/conflicts/{stakeholderId}/resolve. If-Match (the
// stakeholder's ETag, as listed with the conflict) is required: the admin decided on the values
// they saw, and neither a Leap Change edit nor a sync since may be overwritten.
func (s *Server) resolveConflict(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	cs, ok := s.conflicts()
	if !ok {
		return notImplemented("sync conflicts")(w, r, org)
	}
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" {
		return errNeedIfMatch
	}
	var in resolveInput
	if r.ContentLength == 0 {
		return invalid("body", `send {"choice": "entra" | "leap"} or {"fields": {"<field>": "entra" | "leap"}}`)
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	var bad []fieldProblem
	okChoice := func(c string) bool { return c == dirsync.TakeEntra || c == dirsync.KeepLeap }
	if in.Choice != "" && !okChoice(in.Choice) {
		bad = append(bad, fieldProblem{"choice", `"entra" or "leap"`})
	}
	for f, c := range in.Fields {
		switch {
		case !slices.Contains(stakeholder.SyncedFields, f):
			bad = append(bad, fieldProblem{"fields." + f, "not a synced field"})
		case !okChoice(c):
			bad = append(bad, fieldProblem{"fields." + f, `"entra" or "leap"`})
		}
	}
	if in.Choice == "" && len(in.Fields) == 0 {
		bad = append(bad, fieldProblem{"choice", `send a choice ("entra" or "leap") for the record or for each field`})
	}
	if err := fieldsError(bad); err != nil {
		return err
	}
	res, err := cs.ResolveConflict(r.Context(), org, r.PathValue("stakeholderId"), dirsync.Resolution{Choice: in.Choice, Fields: in.Fields}, tablestore.ETag(ifMatch))
	var unresolved *dirsync.UnresolvedError
	switch {
	case errors.As(err, &unresolved):
		// Changed since the admin read it (else If-Match would have failed) or too few choices.
		ps := make([]fieldProblem, len(unresolved.Fields))
		for i, f := range unresolved.Fields {
			ps[i] = fieldProblem{"fields." + f, "in conflict: choose \"entra\" or \"leap\""}
		}
		return fieldsError(ps)
	case errors.Is(err, stakeholder.ErrNoConflict):
		return errors.Join(stakeholder.ErrNotFound, err) // 404: no open conflict for this stakeholder
	case errors.Is(err, tablestore.ErrConflict) && !errors.Is(err, stakeholder.ErrEmailInUse):
		return errPrecondition
	case err != nil:
		return err
	}
	fields := res.Fields
	if fields == nil {
		fields = []dirsync.FieldChange{}
	}
	w.Header().Set("ETag", string(res.ETag))
	return writeJSON(w, http.StatusOK, map[string]any{"stakeholder": stakeholderView{Stakeholder: res.Stakeholder}, "fields": fields})
}
