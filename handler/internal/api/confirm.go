package api

import (
	"errors"
	"net/http"

	"github.com/leapchange/m365/handler/internal/consent"
	"github.com/leapchange/m365/handler/internal/problem"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// confirmRequest is POST /m365/connect/confirm's body: the ticket the consent callback handed
// the web app in its redirect.
type confirmRequest struct {
	Ticket string `json:"ticket"`
}

// confirmConnection completes the connection flow for org. The web app calls it inside the
// session of a signed-in user of org, so the tenant an admin consented in is bound only to the
// org whose user started and finishes the flow, not to whichever org's link the admin opened.
func (s *Server) confirmConnection(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	var req confirmRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Ticket == "" {
		return invalid("ticket", "required: the ticket of the consent callback's redirect")
	}
	out, err := s.d.Consent.Confirm(r.Context(), org, req.Ticket)
	switch {
	case errors.Is(err, consent.ErrBadTicket):
		problem.Write(w, r, problem.New(http.StatusBadRequest, problem.InvalidState,
			"this confirmation ticket is invalid, expired, used already or for another organization: connect Microsoft 365 again"))
		return nil
	case err != nil:
		return err
	case !out.Connected:
		// Recorded on the connection too (GET /m365 shows it with a hint).
		problem.Write(w, r, problem.New(http.StatusConflict, problem.Conflict, out.Reason+": "+out.Detail))
		return nil
	}
	return s.getConnection(w, r, org)
}
