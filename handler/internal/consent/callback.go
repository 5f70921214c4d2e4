package consent

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/leapchange/m365/handler/internal/problem"
)

// Callback serves ConsentCallback, both legs: after admin consent it sends the admin on to sign
// in; after the sign-in it sends them back to the web app, with a one-time ticket to confirm
// (m365=confirm, ticket) or a failure (m365=error, reason). A bad state gets a 400 problem and
// no redirect: nothing in such a request can be trusted, not even which org it is about.
func (f *Flow) Callback() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		out, err := f.Complete(r.Context(), r.URL.Query())
		switch {
		case errors.Is(err, ErrBadState):
			problem.Write(w, r, problem.New(http.StatusBadRequest, problem.InvalidState,
				"this consent link is invalid, expired or used already: start connecting Microsoft 365 again from Leap Change"))
			return
		case err != nil:
			f.cfg.Logger.ErrorContext(r.Context(), "consent callback failed", "error", err.Error())
			p := problem.New(http.StatusServiceUnavailable, problem.Unavailable, "the connection could not be recorded; start connecting again in a minute")
			problem.Write(w, r, p)
			return
		}
		if out.Next != "" {
			http.Redirect(w, r, out.Next, http.StatusFound) // on to the administrator's sign-in
			return
		}
		http.Redirect(w, r, f.backToApp(out), http.StatusFound)
	})
}

// backToApp is LEAP_APP_URL with the outcome added to its query.
func (f *Flow) backToApp(out Outcome) string {
	u, err := url.Parse(f.cfg.LeapAppURL)
	if err != nil {
		return f.cfg.LeapAppURL
	}
	q := u.Query()
	q.Set("org", out.Org.String())
	if out.Ticket != "" {
		// Nothing is bound yet: the web app confirms the ticket for its signed-in user's org.
		q.Set("m365", "confirm")
		q.Set("ticket", out.Ticket)
		if len(out.Missing) > 0 {
			q.Set("missing", strings.Join(out.Missing, ","))
		}
	} else {
		q.Set("m365", "error")
		q.Set("reason", out.Reason)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
