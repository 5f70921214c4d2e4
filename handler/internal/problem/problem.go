// Package problem writes HTTP errors as RFC 9457 problem details (application/problem+json) with
// stable type URIs, so the web app can branch on the type and show the detail.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Type is a stable problem type URI. The web app keys on these; never rename one.
type Type string

const (
	Invalid        Type = "urn:leapchange:problem:invalid-request" // 400: bad input, see errors[]
	Unauthorized   Type = "urn:leapchange:problem:unauthorized"    // 401
	Forbidden      Type = "urn:leapchange:problem:forbidden"       // 403
	NotFound       Type = "urn:leapchange:problem:not-found"       // 404
	MethodNotAllow Type = "urn:leapchange:problem:method-not-allowed"
	Conflict       Type = "urn:leapchange:problem:conflict"              // 409: exists, or already running
	NotConnected   Type = "urn:leapchange:problem:not-connected"         // 409: the org has no Microsoft 365 connection
	NotReady       Type = "urn:leapchange:problem:channel-not-ready"     // 409: a channel is not set up (mailbox, permission)
	InvalidState   Type = "urn:leapchange:problem:invalid-consent-state" // 400: forged, expired, reused or missing state
	Precondition   Type = "urn:leapchange:problem:precondition-failed"   // 412: stale If-Match
	TooLarge       Type = "urn:leapchange:problem:payload-too-large"
	Unsupported    Type = "urn:leapchange:problem:unsupported-media-type"
	Unavailable    Type = "urn:leapchange:problem:temporarily-unavailable" // 503, retry later
	NotImplemented Type = "urn:leapchange:problem:not-implemented"         // 501: feature not built yet
	Internal       Type = "urn:leapchange:problem:internal"                // 500
)

// FieldError names one invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Problem is one problem details document.
type Problem struct {
	Type     Type         `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
	// MissingPermissions names the Graph application permissions a tenant has not granted.
	MissingPermissions []string `json:"missingPermissions,omitempty"`
	// RetryAfter, when set, is sent as the Retry-After header (whole seconds, rounded up).
	RetryAfter time.Duration `json:"-"`
}

// New builds a problem whose title is the standard text of status.
func New(status int, typ Type, detail string) Problem {
	return Problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail}
}

// InvalidFields is a 400 naming every bad field.
func InvalidFields(errs ...FieldError) Problem {
	p := New(http.StatusBadRequest, Invalid, "the request has invalid fields")
	if len(errs) == 1 {
		p.Detail = errs[0].Field + ": " + errs[0].Message
	}
	p.Errors = errs
	return p
}

// Write sends p for request r (whose path becomes the instance when none is set).
func Write(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if p.RetryAfter > 0 {
		secs := int((p.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
