package api

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/problem"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	v, etag, err := s.d.Settings.Get(r.Context(), org)
	if err != nil {
		return err
	}
	if etag != "" {
		w.Header().Set("ETag", string(etag))
	}
	return writeJSON(w, http.StatusOK, v)
}

// putSettings replaces the settings. Every field is validated (all problems named at once);
// group ids must exist in the org's tenant. If-Match, when sent, must match.
func (s *Server) putSettings(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	ctx := r.Context()
	cur, etag, err := s.d.Settings.Get(ctx, org)
	if err != nil {
		return err
	}
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != string(etag) {
		return errPrecondition
	}
	v := cur
	if r.ContentLength == 0 {
		return invalid("body", "send the settings document")
	}
	if err := decode(r, &v); err != nil {
		return err
	}
	if v.GroupFilter == nil {
		v.GroupFilter = []string{}
	}
	v.UpdatedAt = s.d.Now().UTC()
	v.ScheduleUpdatedAt = cur.ScheduleUpdatedAt
	if v.Frequency != cur.Frequency || v.TimeZone != cur.TimeZone || v.ScheduleUpdatedAt.IsZero() {
		v.ScheduleUpdatedAt = v.UpdatedAt
	}
	if err := s.validateSettings(r, org, v, cur); err != nil {
		return err
	}
	newETag, err := s.d.Settings.Put(ctx, org, v, etag)
	if errors.Is(err, tablestore.ErrConflict) {
		return errPrecondition
	}
	if err != nil {
		return err
	}
	s.reconcileRealTime(ctx, org, cur, v, false)
	w.Header().Set("ETag", string(newETag))
	return writeJSON(w, http.StatusOK, v)
}

// validateSettings names every problem of v in one 400: its own fields, and the group ids new to
// the filter that do not exist in the tenant, even when other fields are bad too. When the
// tenant cannot be asked, the field problems found so far are the answer.
func (s *Server) validateSettings(r *http.Request, org tablestore.Org, v, cur syncsettings.Settings) error {
	var fields []problem.FieldError
	if err := v.Validate(); err != nil {
		var bad syncsettings.Invalid
		if !errors.As(err, &bad) {
			return err
		}
		for _, f := range bad {
			fields = append(fields, problem.FieldError{Field: f.Field, Message: f.Message})
		}
	}
	if len(v.GroupFilter) > syncsettings.MaxGroups {
		return badRequest{fields} // named already; not worth a lookup per id
	}
	var wellFormed []string
	for _, id := range v.GroupFilter {
		if guid.MatchString(id) && !slices.Contains(wellFormed, id) {
			wellFormed = append(wellFormed, id)
		}
	}
	err := s.checkGroups(r, org, wellFormed, cur.GroupFilter)
	var br badRequest
	switch {
	case errors.As(err, &br):
		fields = append(fields, br.fields...)
	case err != nil && len(fields) == 0:
		return err
	}
	if len(fields) > 0 {
		return badRequest{fields}
	}
	return nil
}

// guid is an Entra object id (syncsettings.Validate names the ids that are not).
var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkGroups confirms that groups newly added to the filter exist in the tenant.
func (s *Server) checkGroups(r *http.Request, org tablestore.Org, ids, before []string) error {
	var added []string
	for _, id := range ids {
		if !slices.Contains(before, id) {
			added = append(added, id)
		}
	}
	if len(added) == 0 {
		return nil
	}
	tenant, err := s.tenantOf(r.Context(), org)
	if err != nil {
		return err
	}
	var unknown []string
	for _, id := range added {
		_, err := s.d.Directory.Group(r.Context(), tenant, id)
		switch errkind.Of(err) {
		case errkind.Other:
			if err != nil {
				return err
			}
		case errkind.NotFound, errkind.Invalid:
			unknown = append(unknown, id)
		default:
			return fmt.Errorf("%w: %w", entraUnavailable, err)
		}
	}
	if len(unknown) > 0 {
		return invalid("groupFilter", "unknown Entra group ids: "+strings.Join(unknown, ", "))
	}
	return nil
}

// searchGroups serves the "Configure Groups" picker.
func (s *Server) searchGroups(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	q := strings.TrimSpace(r.URL.Query().Get("search"))
	if !utf8.ValidString(q) {
		return invalid("search", "is not valid UTF-8")
	}
	if len(q) > 120 {
		return invalid("search", "at most 120 characters")
	}
	limit, err := intParam(r, "limit", 25, 1, 100)
	if err != nil {
		return err
	}
	tenant, err := s.tenantOf(r.Context(), org)
	if err != nil {
		return err
	}
	groups, err := s.d.Directory.SearchGroups(r.Context(), tenant, q, limit)
	if err != nil {
		k := errkind.Of(err)
		if k == errkind.Forbidden || k == errkind.Unauthorized {
			p := problem.New(http.StatusConflict, problem.Forbidden, "the tenant refused listing groups: grant GroupMember.Read.All and re-authorize")
			problem.Write(w, r, p)
			return nil
		}
		if k == errkind.Invalid {
			// Our request is fixed but for the user's text: Graph's 400 is about what they typed.
			return fmt.Errorf("%w: %w", searchRefused, err)
		}
		return fmt.Errorf("%w: %w", entraUnavailable, err)
	}
	type groupView struct {
		ID          string `json:"id"`
		DisplayName string `json:"displayName"`
		Description string `json:"description"`
	}
	out := make([]groupView, len(groups))
	for i, g := range groups {
		out[i] = groupView{g.ID, g.DisplayName, g.Description}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"groups": out})
}
