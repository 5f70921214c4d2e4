package m365sim

import (
	"cmp"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Fault is an injected answer. Status 0 with a Delay only slows the request down and then
// serves it normally.
type Fault struct {
	Status int
	// Code is the Graph error code (default by status: TooManyRequests, ServiceUnavailable,
	// Authorization_RequestDenied, Request_ResourceNotFound, ...). Message overrides the text.
	Code, Message string
	// RetryAfter is sent as a Retry-After header in (fractional) seconds, e.g. "1.5".
	RetryAfter time.Duration
	// Delay is waited before answering.
	Delay time.Duration
}

// FaultRule injects a Fault into matching requests.
type FaultRule struct {
	Method     string         `json:"method,omitempty"`     // "" matches any method
	PathPrefix string         `json:"pathPrefix,omitempty"` // e.g. "/v1.0/users/delta"
	Path       *regexp.Regexp `json:"-"`                    // alternative to PathPrefix
	PathRegexp string         `json:"pathRegexp,omitempty"` // Path as text (admin API)
	Times      int            `json:"times,omitempty"`      // 0: forever; n: the next n matches
	Status     int            `json:"status,omitempty"`
	Code       string         `json:"code,omitempty"`
	Message    string         `json:"message,omitempty"`
	RetryAfter time.Duration  `json:"-"`
	Delay      time.Duration  `json:"-"`
}

type faultRule struct {
	FaultRule
	left int // remaining matches when Times > 0
}

// AddFault adds a rule; rules are tried in the order added, after the Fault hook.
func (s *Server) AddFault(rule FaultRule) error {
	s.init()
	if rule.Path == nil && rule.PathRegexp != "" {
		re, err := regexp.Compile(rule.PathRegexp)
		if err != nil {
			return err
		}
		rule.Path = re
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, &faultRule{FaultRule: rule, left: rule.Times})
	return nil
}

// ClearFaults removes every rule (not the Fault hook).
func (s *Server) ClearFaults() {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = nil
}

func (s *Server) fault(r *http.Request) *Fault {
	if s.Fault != nil {
		if f := s.Fault(r); f != nil {
			return f
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, fr := range s.rules {
		if fr.Method != "" && !strings.EqualFold(fr.Method, r.Method) {
			continue
		}
		if fr.PathPrefix != "" && !strings.HasPrefix(r.URL.Path, fr.PathPrefix) {
			continue
		}
		if fr.Path != nil && !fr.Path.MatchString(r.URL.Path) {
			continue
		}
		if fr.Times > 0 {
			fr.left--
			if fr.left <= 0 {
				s.rules = append(s.rules[:i:i], s.rules[i+1:]...)
			}
		}
		return &Fault{Status: fr.Status, Code: fr.Code, Message: fr.Message, RetryAfter: fr.RetryAfter, Delay: fr.Delay}
	}
	return nil
}

var faultDefaults = map[int][2]string{
	400: {"BadRequest", "Bad request."},
	401: {"InvalidAuthenticationToken", "Access token validation failure."},
	403: {"Authorization_RequestDenied", "Insufficient privileges to complete the operation."},
	404: {"Request_ResourceNotFound", "Resource does not exist or one of its queried reference-property objects are not present."},
	409: {"Conflict", "Conflict."},
	429: {"TooManyRequests", "Request limit reached for this application and tenant."},
	500: {"InternalServerError", "An internal server error occurred."},
	502: {"BadGateway", "Bad gateway."},
	503: {"ServiceUnavailable", "The service is temporarily unavailable. Please retry later."},
	504: {"GatewayTimeout", "The gateway did not receive a timely response."},
}

func (s *Server) writeFault(w http.ResponseWriter, r *http.Request, f *Fault) {
	if strings.HasPrefix(r.URL.Path, "/bot/") { // the Bot Connector answers in its own format
		s.botFault(w, f)
		return
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatFloat(f.RetryAfter.Seconds(), 'f', -1, 64))
	}
	def := faultDefaults[f.Status]
	code, msg := cmp.Or(f.Code, def[0]), cmp.Or(f.Message, def[1])
	if code == "" {
		code = http.StatusText(f.Status)
	}
	if !strings.HasPrefix(r.URL.Path, "/v1.0/") { // identity endpoints answer in Entra's format
		errCode := "temporarily_unavailable"
		if f.Status < 429 {
			errCode = "invalid_request"
		}
		s.entraError(w, r, f.Status, errCode, 90033, msg)
		return
	}
	if f.Status == http.StatusTooManyRequests {
		w.Header().Set("x-ms-throttle-scope", "Tenant_Application/ReadWrite/"+"sim")
	}
	s.graphErrorInner(w, r, f.Status, code, msg, strconv.Itoa(f.Status))
}
