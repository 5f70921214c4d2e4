// Package api serves the Leap Change web app's API under /api/orgs/{org}/ (openapi.json; the
// paths are contract): JSON in and out, errors as problem+json with stable types, every org's
// data reached only through its validated partition.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/leapchange/m365/handler/internal/fielderr"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/consent"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/mailsettings"
	"github.com/leapchange/m365/handler/internal/org"
	"github.com/leapchange/m365/handler/internal/outbound"
	"github.com/leapchange/m365/handler/internal/problem"
	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/syncsettings"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// syncer is the slice of the sync engine the API drives.
type syncer interface {
	Start(ctx context.Context, org tablestore.Org, opts dirsync.StartOptions) (dirsync.Run, bool, error)
	Run(ctx context.Context, org tablestore.Org, id string) (dirsync.Run, tablestore.ETag, error)
	Runs(ctx context.Context, org tablestore.Org, limit int) ([]dirsync.Run, error)
	Approve(ctx context.Context, org tablestore.Org, id, approvedBy string) (dirsync.Run, error)
	Changes(ctx context.Context, org tablestore.Org, runID string, after, limit int) ([]dirsync.Change, error)
}

// connections reads connection records.
type connections interface {
	Get(ctx context.Context, org tablestore.Org) (connection.Record, tablestore.ETag, error)
	Tenant(ctx context.Context, org tablestore.Org) (string, error)
}

// consenter runs the admin-consent connection flow.
type consenter interface {
	Begin(ctx context.Context, org tablestore.Org) (string, time.Time, error)
	Confirm(ctx context.Context, org tablestore.Org, ticket string) (consent.Outcome, error)
	Disconnect(ctx context.Context, org tablestore.Org) error
}

// settingsStore reads and writes sync settings.
type settingsStore interface {
	Get(ctx context.Context, org tablestore.Org) (syncsettings.Settings, tablestore.ETag, error)
	Put(ctx context.Context, org tablestore.Org, v syncsettings.Settings, etag tablestore.ETag) (tablestore.ETag, error)
}

// mailSettingsStore reads and writes mail settings.
type mailSettingsStore interface {
	Get(ctx context.Context, org tablestore.Org) (mailsettings.Settings, tablestore.ETag, error)
	Put(ctx context.Context, org tablestore.Org, v mailsettings.Settings, etag tablestore.ETag) (tablestore.ETag, error)
}

// mailboxDirectory looks up a sender mailbox in the tenant.
type mailboxDirectory interface {
	Mailbox(ctx context.Context, tenantID, address string) (entra.User, error)
}

// groupDirectory finds Entra groups for the group filter.
type groupDirectory interface {
	SearchGroups(ctx context.Context, tenantID, query string, limit int) ([]entra.Group, error)
	Group(ctx context.Context, tenantID, id string) (entra.Group, error)
}

// orgRegistry is the org registry: every route but the org's own asks Active first.
type orgRegistry interface {
	Active(ctx context.Context, id tablestore.Org) (org.Org, error)
	Get(ctx context.Context, id tablestore.Org) (org.Org, error)
	Register(ctx context.Context, id tablestore.Org, reg org.Registration) (org.Org, bool, error)
	Erase(ctx context.Context, id tablestore.Org) (org.Report, error)
}

// Deps are what the API serves from.
type Deps struct {
	Orgs         orgRegistry
	Sync         syncer
	Connections  connections
	Consent      consenter
	Settings     settingsStore
	Directory    groupDirectory
	Stakeholders *stakeholder.Store
	Groups       *stakeholder.Groups
	// NextSync is the schedule: the next slot after a time for the settings (schedule.Next).
	NextSync func(syncsettings.Settings, time.Time) (time.Time, bool)
	// Messages is the outbound pipeline; MailSettings and Mailboxes the mail set-up.
	Messages     messenger
	MailSettings mailSettingsStore
	Mailboxes    mailboxDirectory
	Changes      changeStore // the change summaries the web app publishes (changes.Store)
	// Teams: connecting (TeamsConnector), the connection records, the tenant's teams.
	TeamsConnector teamsConnector
	TeamsRecords   teamsRecords
	TeamsDirectory teamsDirectory
	Insights       insightStore // captured channel insights (insights.Store)
	// Monitoring is channel monitoring (settings, subscriptions' health).
	Monitoring monitor
	// RealTime is real-time stakeholder sync (its subscriptions and status); optional.
	RealTime realTimeSync
	Logger   *slog.Logger
	Now      func() time.Time
}

// Server is the API.
type Server struct {
	d   Deps
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the API handler. It does no I/O.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Server{d: d, log: d.Logger, mux: http.NewServeMux()}
	s.routes()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handler is an endpoint: it gets the validated org and answers or returns an error that
// problemFor turns into problem+json.
type handler func(w http.ResponseWriter, r *http.Request, org tablestore.Org) error

// route registers the methods of one path pattern; other methods get a 405 problem. HEAD is
// served by GET (net/http drops the body). A declared body over the limit is refused before
// anything is read or looked up. Every path but the org's own ("") answers 404 for an org that
// is not registered (or is being erased) before its handler can read or write anything.
func (s *Server) route(pattern string, methods map[string]handler) {
	allow := make([]string, 0, len(methods))
	for m := range methods {
		allow = append(allow, m)
	}
	slices.Sort(allow) // map order is random; the Allow header should not be
	s.mux.HandleFunc("/api/orgs/{org}"+pattern, func(w http.ResponseWriter, r *http.Request) {
		h, ok := methods[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = methods[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			problem.Write(w, r, problem.New(http.StatusMethodNotAllowed, problem.MethodNotAllow, r.Method+" is not supported here"))
			return
		}
		if r.ContentLength > maxBody {
			problem.Write(w, r, problem.New(http.StatusRequestEntityTooLarge, problem.TooLarge, fmt.Sprintf("the body is over %d bytes", maxBody)))
			return
		}
		id, err := org.ParseID(r.PathValue("org"))
		if err == nil && escapedOrg(r) != id.String() {
			// The path named the org with escapes (org-%61 for org-a): two spellings of one org
			// would let a rule keyed on the raw path (a gateway's, a proxy's) be bypassed.
			err = invalid("org", "must be written without percent-escapes")
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if pattern != "" {
			if _, err := s.d.Orgs.Active(r.Context(), id); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		if err := h(w, r, id); err != nil {
			s.fail(w, r, err)
		}
	})
}

// escapedOrg is the org segment of the request's path as it was sent, escapes and all.
func escapedOrg(r *http.Request) string {
	rest, _ := strings.CutPrefix(r.URL.EscapedPath(), "/api/orgs/")
	seg, _, _ := strings.Cut(rest, "/")
	return seg
}

// notImplemented answers for a contract path whose feature lands with a later issue.
func notImplemented(feature string) handler {
	return func(w http.ResponseWriter, r *http.Request, _ tablestore.Org) error {
		problem.Write(w, r, problem.New(http.StatusNotImplemented, problem.NotImplemented, feature+" is not implemented yet"))
		return nil
	}
}

// fail writes err as a problem, logging what the caller does not see.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	p := problemFor(err)
	if p.Status >= 500 {
		s.log.ErrorContext(r.Context(), "api request failed", "path", r.URL.Path, "error", err.Error())
	}
	problem.Write(w, r, p)
}

// badRequest is an input error naming its field.
type badRequest struct{ fields []problem.FieldError }

func (b badRequest) Error() string { return fmt.Sprintf("bad request: %v", b.fields) }

type fieldProblem struct{ field, msg string }

// fieldsError is a badRequest naming every problem, or nil.
func fieldsError(ps []fieldProblem) error {
	if len(ps) == 0 {
		return nil
	}
	fields := make([]problem.FieldError, len(ps))
	for i, p := range ps {
		fields[i] = problem.FieldError{Field: p.field, Message: p.msg}
	}
	return badRequest{fields}
}

func invalid(field, msg string) error {
	return badRequest{[]problem.FieldError{{Field: field, Message: msg}}}
}

// problemFor is the one place errors become HTTP answers.
func problemFor(err error) problem.Problem {
	var br badRequest
	var bad fielderr.List
	var nr notReady
	var pe problemError
	switch {
	case errors.As(err, &pe):
		return pe.p
	case errors.As(err, &br):
		return problem.InvalidFields(br.fields...)
	case errors.As(err, &nr):
		return problem.New(http.StatusConflict, problem.NotReady, string(nr))
	case errors.As(err, &keyReused{}):
		return problem.New(http.StatusConflict, problem.Conflict, keyReused{}.Error())
	case errors.Is(err, outbound.ErrBatchNotFound):
		return problem.New(http.StatusNotFound, problem.NotFound, "no such message batch")
	case errors.As(err, &bad):
		fields := make([]problem.FieldError, len(bad))
		for i, f := range bad {
			fields[i] = problem.FieldError{Field: f.Field, Message: f.Message}
		}
		return problem.InvalidFields(fields...)
	case errors.Is(err, errTooLarge):
		return problem.New(http.StatusRequestEntityTooLarge, problem.TooLarge, fmt.Sprintf("the body is over %d bytes", maxBody))
	case errors.Is(err, org.ErrNotFound):
		return problem.New(http.StatusNotFound, problem.NotFound, "no such org: register it first with PUT /api/orgs/{org}")
	case errors.Is(err, org.ErrErasing):
		return problem.New(http.StatusNotFound, problem.NotFound, "this org is being erased: DELETE /api/orgs/{org} again to finish")
	case errors.Is(err, errErasureIncomplete):
		p := problem.New(http.StatusServiceUnavailable, problem.Unavailable, "the erasure was interrupted; the org stays erasing: DELETE again to continue")
		p.RetryAfter = 5e9
		return p
	case errors.Is(err, searchRefused):
		return problem.InvalidFields(problem.FieldError{Field: "search", Message: "Microsoft Graph cannot search for this text: use words of letters and digits"})
	case errors.Is(err, connection.ErrNotConnected):
		return problem.New(http.StatusConflict, problem.NotConnected, "the org is not connected to Microsoft 365: connect it first")
	case errors.Is(err, stakeholder.ErrEmailInUse):
		return problem.InvalidFields(problem.FieldError{Field: "email", Message: "another stakeholder has this email"})
	case errors.Is(err, stakeholder.ErrSynced):
		return problem.New(http.StatusConflict, problem.Conflict, "this stakeholder is synced from Entra ID: deactivate or delete the user there")
	case errors.Is(err, dirsync.ErrNotHeld):
		return problem.New(http.StatusConflict, problem.Conflict, "the run is not waiting for approval")
	case errors.Is(err, errPrecondition):
		return problem.New(http.StatusPreconditionFailed, problem.Precondition, "the resource changed since it was read (ETag mismatch): reload and retry")
	case errors.Is(err, errNeedIfMatch):
		return problem.New(http.StatusPreconditionRequired, problem.Precondition, "send If-Match with the ETag you read, so no one's change is overwritten")
	case errors.Is(err, entraUnavailable):
		p := problem.New(http.StatusBadGateway, problem.Unavailable, "Microsoft Graph did not answer; retry shortly")
		return p
	case errors.Is(err, dirsync.ErrRunNotFound), errors.Is(err, tablestore.ErrNotFound), errors.Is(err, stakeholder.ErrNotFound):
		return problem.New(http.StatusNotFound, problem.NotFound, "no such resource")
	case errors.Is(err, tablestore.ErrConflict):
		return problem.New(http.StatusConflict, problem.Conflict, "changed by someone else; reload and retry")
	case errors.Is(err, tablestore.ErrInvalid):
		return problem.New(http.StatusBadRequest, problem.Invalid, "the request names something that cannot be stored or looked up")
	case errors.Is(err, tablestore.ErrThrottled), errors.Is(err, tablestore.ErrUnavailable):
		p := problem.New(http.StatusServiceUnavailable, problem.Unavailable, "storage is busy; retry shortly")
		p.RetryAfter = 5e9
		return p
	}
	return problem.New(http.StatusInternalServerError, problem.Internal, "internal error")
}

// Errors the handlers return for problemFor.
var (
	errPrecondition  = errors.New("api: If-Match does not match")
	errNeedIfMatch   = errors.New("api: If-Match required")
	entraUnavailable = errors.New("api: Microsoft Graph unavailable")
	// searchRefused: Graph answered 400 to the user's own search text.
	searchRefused        = errors.New("api: Microsoft Graph refused the search text")
	errTooLarge          = errors.New("api: body too large")
	errErasureIncomplete = errors.New("api: org erasure interrupted")
)

// maxBody bounds API request bodies: a send to the most stakeholders by id (outbound's 50 000)
// is about 2 MB.
const maxBody = 4 << 20

// decode reads an optional JSON body into v, rejecting unknown fields and trailing data.
func decode(r *http.Request, v any) error {
	if r.ContentLength == 0 && r.Header.Get("Transfer-Encoding") == "" {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			return invalid("Content-Type", "must be application/json")
		}
	}
	if r.ContentLength > maxBody {
		return errTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return invalid("body", "could not be read")
	}
	if len(data) > maxBody {
		return errTooLarge
	}
	if len(data) == 0 {
		return nil
	}
	// encoding/json replaces invalid UTF-8 by U+FFFD without a word: a name stored that way is
	// silently corrupted, so refuse it and say where.
	if !utf8.Valid(data) {
		return invalid(fieldAt(data, firstInvalidUTF8(data)), "is not valid UTF-8")
	}
	// The same corruption comes through escapes: a lone surrogate (\ud800) decodes to U+FFFD.
	if off := firstLoneSurrogate(data); off < len(data) {
		return invalid(fieldAt(data, off), "holds a lone UTF-16 surrogate escape, which is not a character")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("body", "not valid JSON for this request: "+err.Error())
	}
	if dec.More() {
		return invalid("body", "has data after the JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// intParam reads an optional integer query parameter within [lo, hi].
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, invalid(name, fmt.Sprintf("must be an integer from %d to %d", lo, hi))
	}
	return n, nil
}
