package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/mailsettings"
	"github.com/leapchange/m365/handler/internal/problem"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

func (s *Server) getMailSettings(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	v, etag, err := s.d.MailSettings.Get(r.Context(), org)
	if err != nil && !errors.Is(err, mailsettings.ErrNotSet) {
		return err
	}
	if etag != "" {
		w.Header().Set("ETag", string(etag))
	}
	return writeJSON(w, http.StatusOK, v)
}

// putMailSettings replaces the mail settings. Every address is checked for form, then every
// sender against the tenant: it must be a user there with a mailbox. If-Match, when sent, must
// match.
func (s *Server) putMailSettings(w http.ResponseWriter, r *http.Request, org tablestore.Org) error {
	ctx := r.Context()
	_, etag, err := s.d.MailSettings.Get(ctx, org)
	if err != nil && !errors.Is(err, mailsettings.ErrNotSet) {
		return err
	}
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != string(etag) {
		return errPrecondition
	}
	if r.ContentLength == 0 {
		return invalid("body", "send the mail settings document")
	}
	var v mailsettings.Settings
	if err := decode(r, &v); err != nil {
		return err
	}
	if err := v.Normalize(); err != nil {
		return err
	}
	tenant, err := s.tenantOf(ctx, org)
	if err != nil {
		return err
	}
	var bad []problem.FieldError
	for i, m := range v.Senders {
		u, err := s.d.Mailboxes.Mailbox(ctx, tenant, m)
		field := fmt.Sprintf("senders[%d]", i)
		switch k := errkind.Of(err); {
		case err == nil && u.Mail == "":
			bad = append(bad, problem.FieldError{Field: field, Message: m + " is a user of the tenant without a mailbox"})
		case err == nil:
		case k == errkind.NotFound, k == errkind.Invalid:
			bad = append(bad, problem.FieldError{Field: field, Message: "no user " + m + " in the tenant: use the mailbox's user principal name"})
		case k == errkind.Forbidden, k == errkind.Unauthorized:
			p := problem.New(http.StatusConflict, problem.Forbidden, "the tenant refused reading users: grant User.Read.All and re-authorize")
			problem.Write(w, r, p)
			return nil
		default:
			return fmt.Errorf("%w: %w", entraUnavailable, err)
		}
	}
	if len(bad) > 0 {
		return badRequest{bad}
	}
	v.UpdatedAt = s.d.Now().UTC()
	newETag, err := s.d.MailSettings.Put(ctx, org, v, etag)
	if errors.Is(err, errkind.Conflict) {
		return errPrecondition
	}
	if err != nil {
		return err
	}
	w.Header().Set("ETag", string(newETag))
	return writeJSON(w, http.StatusOK, v)
}
