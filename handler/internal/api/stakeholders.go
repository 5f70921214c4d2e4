package api

import (
	"errors"
	"net/http"
	"net/mail"
	"strconv"
	"strings"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// stakeholderInput is what the web app may write: the synced fields (edits of synced
// stakeholders are Leap Change-side changes the next sync merges) and the Leap-only fields.
type stakeholderInput struct {
	FirstName    string `json:"firstName"`
	LastName     string `json:"lastName"`
	Email        string `json:"email"`
	Phone        string `json:"phone"`
	Department   string `json:"department"`
	Role         string `json:"role"`
	Location     string `json:"location"`
	Influence    string `json:"influence"`
	SupportLevel string `json:"supportLevel"`
	Interest     string `json:"interest"`
}

// maxFieldLen bounds each text field (Table Storage allows far more; people do not need it).
const maxFieldLen = 256

func (in *stakeholderInput) validate() error {
	var fields []fieldProblem
	for name, v := range map[string]string{"firstName": in.FirstName, "lastName": in.LastName, "email": in.Email, "phone": in.Phone,
		"department": in.Department, "role": in.Role, "location": in.Location, "influence": in.Influence, "supportLevel": in.SupportLevel, "interest": in.Interest} {
		if len(v) > maxFieldLen {
			fields = append(fields, fieldProblem{name, "at most 256 characters"})
		}
	}
	in.FirstName, in.LastName, in.Email = strings.TrimSpace(in.FirstName), strings.TrimSpace(in.LastName), strings.TrimSpace(in.Email)
	if in.FirstName == "" && in.LastName == "" {
		fields = append(fields, fieldProblem{"firstName", "a stakeholder needs a first or last name"})
	}
	if in.Email != "" {
		if a, err := mail.ParseAddress(in.Email); err != nil || a.Address != in.Email {
			fields = append(fields, fieldProblem{"email", "not an email address"})
		}
	}
	return fieldsError(fields)
}

func (in stakeholderInput) apply(st *stakeholder.Stakeholder) {
	st.FirstName, st.LastName, st.Email, st.Phone = in.FirstName, in.LastName, in.Email, in.Phone
	st.Department, st.Role, st.Location = in.Department, in.Role, in.Location
	st.Influence, st.SupportLevel, st.Interest = in.Influence, in.SupportLevel, in.Interest
}

func (s *Server) listStakeholders(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	o := stakeholder.ListOptions{After: q.Get("after"), Limit: limit, Source: q.Get("source")}
	if o.Source != "" && o.Source != stakeholder.Manual && o.Source != stakeholder.Entra {
		return invalid("source", "manual or entra")
	}
	if a := q.Get("active"); a != "" {
		b, err := strconv.ParseBool(a)
		if err != nil {
			return invalid("active", "true or false")
		}
		o.Active = &b
	}
	if o.After != "" && tablestore.CheckKey(o.After) != nil {
		return invalid("after", "not a stakeholder id")
	}
	list, next, err := s.d.Stakeholders.List(r.Context(), org, o)
	if err != nil {
		return err
	}
	if list == nil {
		list = []stakeholder.Stakeholder{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"stakeholders": views(list), "next": next})
}

// stakeholderView hides sync internals.
type stakeholderView struct {
	stakeholder.Stakeholder
	Base    any    `json:"base,omitempty"`
	SeenRun string `json:"seenRun,omitempty"`
}

func views(list []stakeholder.Stakeholder) []stakeholderView {
	out := make([]stakeholderView, len(list))
	for i, st := range list {
		out[i] = stakeholderView{Stakeholder: st}
	}
	return out
}

func (s *Server) createStakeholder(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	var in stakeholderInput
	if r.ContentLength == 0 {
		return invalid("body", "send the stakeholder")
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if err := in.validate(); err != nil {
		return err
	}
	now := s.d.Now().UTC()
	st := stakeholder.Stakeholder{ID: stakeholder.NewID(), Source: stakeholder.Manual, Active: true, CreatedAt: now, UpdatedAt: now}
	in.apply(&st)
	etag, err := s.d.Stakeholders.Save(r.Context(), org, st, nil, "")
	if err != nil {
		return err
	}
	w.Header().Set("ETag", string(etag))
	w.Header().Set("Location", "/api/orgs/"+org.String()+"/stakeholders/"+st.ID)
	return writeJSON(w, http.StatusCreated, stakeholderView{Stakeholder: st})
}

func (s *Server) getStakeholder(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	st, etag, err := s.d.Stakeholders.Get(r.Context(), org, r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", string(etag))
	return writeJSON(w, http.StatusOK, stakeholderView{Stakeholder: st})
}

// putStakeholder replaces the editable fields. If-Match is required: two admins editing the
// same stakeholder must not overwrite each other, and neither may overwrite a sync's change.
func (s *Server) putStakeholder(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" {
		return errNeedIfMatch
	}
	var in stakeholderInput
	if err := decode(r, &in); err != nil {
		return err
	}
	if err := in.validate(); err != nil {
		return err
	}
	cur, etag, err := s.d.Stakeholders.Get(r.Context(), org, r.PathValue("id"))
	if err != nil {
		return err
	}
	if ifMatch != "*" && ifMatch != string(etag) {
		return errPrecondition
	}
	next := cur
	in.apply(&next)
	next.UpdatedAt = s.d.Now().UTC()
	newETag, err := s.d.Stakeholders.Save(r.Context(), org, next, &cur, etag)
	if errors.Is(err, tablestore.ErrConflict) && !errors.Is(err, stakeholder.ErrEmailInUse) {
		return errPrecondition // a taken email is a conflict too, but a 400 naming email
	}
	if err != nil {
		return err
	}
	w.Header().Set("ETag", string(newETag))
	return writeJSON(w, http.StatusOK, stakeholderView{Stakeholder: next})
}

func (s *Server) deleteStakeholder(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	_, current, err := s.d.Stakeholders.Get(r.Context(), org, r.PathValue("id"))
	if err != nil {
		return err
	}
	// If-Match is compared here, as for PUT: whatever the client sends, a mismatch is a 412.
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != string(current) {
		return errPrecondition
	}
	err = s.d.Stakeholders.Delete(r.Context(), org, r.PathValue("id"), current)
	if errors.Is(err, tablestore.ErrConflict) {
		return errPrecondition
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	groups, err := s.d.Groups.List(r.Context(), org)
	if err != nil {
		return err
	}
	if groups == nil {
		groups = []stakeholder.Group{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"groups": groups})
}

func (s *Server) groupMembers(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	g, _, err := s.d.Groups.Get(r.Context(), org, r.PathValue("id"))
	if err != nil {
		return err
	}
	ms, err := s.d.Groups.MemberIDs(r.Context(), org, g.ID)
	if err != nil {
		return err
	}
	type member struct {
		StakeholderID string `json:"stakeholderId"`
		Name          string `json:"name"`
		Email         string `json:"email"`
		Active        bool   `json:"active"`
		Source        string `json:"source"`
	}
	out := make([]member, 0, len(ms))
	for _, m := range ms {
		st, _, err := s.d.Stakeholders.Get(r.Context(), org, m.StakeholderID)
		if errors.Is(err, stakeholder.ErrNotFound) {
			continue // removed since; the next sync drops the membership
		}
		if err != nil {
			return err
		}
		out = append(out, member{st.ID, strings.TrimSpace(st.FirstName + " " + st.LastName), st.Email, st.Active, m.Source})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"group": g, "members": out})
}
