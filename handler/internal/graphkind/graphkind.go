// Package graphkind maps Microsoft Graph's error answers to failure kinds (errkind): the one
// classification the Graph client uses and any stand-in for it in tests shares, without
// importing the Graph SDK.
package graphkind

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// Of is the kind of a Graph answer with status and Graph error code.
func Of(status int, code string) errkind.Kind {
	switch {
	case status == http.StatusGone, code == "syncStateNotFound", code == "resyncRequired", code == "syncStateInvalid":
		return errkind.Resync
	case status == http.StatusTooManyRequests:
		return errkind.Throttled
	case status == http.StatusUnauthorized:
		return errkind.Unauthorized
	case status == http.StatusForbidden:
		return errkind.Forbidden
	case status == http.StatusNotFound:
		return errkind.NotFound
	case status == http.StatusBadRequest:
		return errkind.Invalid
	case status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
		return errkind.Throttled // Graph's documented "slow down" besides 429
	case status >= 500:
		return errkind.Unavailable
	}
	return errkind.Other
}

// FromAnswer classifies a raw Graph error answer: its status, its Retry-After (seconds, possibly
// fractional) and the code and message of its JSON error body.
func FromAnswer(status int, header http.Header, body []byte) *errkind.Error {
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &env)
	e := &errkind.Error{Kind: Of(status, env.Error.Code), Status: status, Code: env.Error.Code, Message: env.Error.Message}
	if s, err := strconv.ParseFloat(header.Get("Retry-After"), 64); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s * float64(time.Second))
	}
	return e
}
