package api

import (
	"net/http"
	"time"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/consent"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// connectionView is GET /m365.
type connectionView struct {
	Status             connection.Status `json:"status"`
	TenantID           string            `json:"tenantId,omitempty"`
	GrantedPermissions []string          `json:"grantedPermissions"`
	MissingPermissions []string          `json:"missingPermissions"`
	RequiredPermisions []permissionView  `json:"requiredPermissions"`
	ConnectedAt        *time.Time        `json:"connectedAt,omitempty"`
	UpdatedAt          *time.Time        `json:"updatedAt,omitempty"`
	LastError          string            `json:"lastError,omitempty"`
	Hint               string            `json:"hint,omitempty"`
	NeedsReauthorize   bool              `json:"needsReauthorization"`
}

type permissionView struct {
	Name      string `json:"name"`
	NeededFor string `json:"neededFor"`
}

func (s *Server) getConnection(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	rec, _, err := s.d.Connections.Get(r.Context(), org)
	if err != nil {
		return err
	}
	v := connectionView{
		Status: rec.Status, TenantID: rec.TenantID, LastError: rec.LastError, Hint: rec.ErrorHint,
		GrantedPermissions: nonNil(rec.Granted), MissingPermissions: nonNil(rec.Missing),
		NeedsReauthorize: rec.Status == connection.NeedsReauthorization,
	}
	for _, p := range consent.Required {
		v.RequiredPermisions = append(v.RequiredPermisions, permissionView{p.Name, p.NeededFor})
	}
	if !rec.ConnectedAt.IsZero() {
		v.ConnectedAt = &rec.ConnectedAt
	}
	if !rec.UpdatedAt.IsZero() {
		v.UpdatedAt = &rec.UpdatedAt
	}
	return writeJSON(w, http.StatusOK, v)
}

// connectRequest is POST /m365/connect's body: it has no fields. (Sharing a tenant between
// orgs is an operator setting, M365_SHARED_TENANTS, not something an org can ask for.)
type connectRequest struct{}

func (s *Server) connect(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	var req connectRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	u, expires, err := s.d.Consent.Begin(r.Context(), org)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"consentUrl": u, "expiresAt": expires})
}

func (s *Server) disconnect(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	if err := s.d.Consent.Disconnect(r.Context(), org); err != nil {
		return err
	}
	// Graph would go on notifying us of a tenant we no longer sync.
	s.reconcileRealTime(r.Context(), org, syncsettings.Settings{}, syncsettings.Settings{}, true)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
