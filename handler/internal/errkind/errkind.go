// Package errkind is the project's one vocabulary of failure kinds (after go-cloud's gcerrors):
// what a caller should do about an error, whichever service it came from. Each adapter —
// tablestore, queue, the Graph client and the sign-in, later the Bot Connector client — maps its
// service's errors into these kinds once; callers branch on the kind with errors.Is or Of, and
// the retry, give-up and re-authorize decisions are taken once, by Policy.
package errkind

import (
	"cmp"
	"errors"
	"fmt"
	"time"
)

// Kind is a kind of failure. A Kind is itself an error, so that an adapter can wrap it
// (fmt.Errorf("…: %w", errkind.NotFound)) and callers can test errors.Is(err, errkind.NotFound).
type Kind int

const (
	Other        Kind = iota // none of the below: treat as a bug or an unknown answer
	NotFound                 // the object is not there (404, a missing entity or queue)
	Conflict                 // exists already, or changed since it was read (ETag): re-read and retry
	Invalid                  // the request was wrong: retrying it does not help
	Forbidden                // a permission or role is missing (403): an admin must grant it
	Unauthorized             // the credentials were refused: the connection needs re-authorization
	Throttled                // asked to slow down (429, 503 busy): retry later, honouring Retry-After
	Unavailable              // network, timeout or 5xx: retry later
	Resync                   // a delta token expired (410, syncStateNotFound): start the round again in full
)

var names = [...]string{
	Other: "other", NotFound: "not_found", Conflict: "conflict", Invalid: "invalid", Forbidden: "forbidden",
	Unauthorized: "unauthorized", Throttled: "throttled", Unavailable: "unavailable", Resync: "resync",
}

// String is the kind's stable name, as logs and run errors show it.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(names) {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return names[k]
}

// Error makes a Kind usable as an error value (a sentinel to wrap and test with errors.Is).
func (k Kind) Error() string { return k.String() }

// Transient reports whether a failure of this kind may pass by itself (throttling, outages):
// worth trying again later. Every other kind is permanent for the request that met it.
func (k Kind) Transient() bool { return k == Throttled || k == Unavailable }

// Kinds lists every kind but Other, in the order Of tests them.
var Kinds = []Kind{NotFound, Conflict, Invalid, Forbidden, Unauthorized, Throttled, Unavailable, Resync}

// Of returns the kind of err: the first kind in its chain, or Other.
func Of(err error) Kind {
	if err == nil {
		return Other
	}
	var k interface{ ErrorKind() Kind }
	if errors.As(err, &k) {
		return k.ErrorKind()
	}
	for _, kind := range Kinds {
		if errors.Is(err, kind) {
			return kind
		}
	}
	return Other
}

// Error is a classified failure of a call to a service (Microsoft Graph, the token endpoint,
// later the Bot Connector). Message never contains a secret or token: it is the service's own
// error text.
type Error struct {
	Kind       Kind
	Service    string // "graph" when empty
	Status     int    // HTTP status, 0 when the request never got an answer
	Code       string // the service's error code, e.g. a Graph code or an AADSTS error
	Message    string
	RequestID  string
	RetryAfter time.Duration
	Err        error // the underlying cause, when there is one
}

func (e *Error) Error() string {
	s := cmp.Or(e.Service, "graph") + ": " + e.Kind.String()
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorKind is the error's kind (see Of).
func (e *Error) ErrorKind() Kind { return e.Kind }

// RetryAfterHint is how long the service asked to wait (see RetryAfterOf).
func (e *Error) RetryAfterHint() time.Duration { return e.RetryAfter }

// Is makes errors.Is(err, errkind.Throttled) true for an Error of that kind.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k != Other && k == e.Kind
}

// RetryAfterOf returns how long the service asked to wait before trying again, when an error in
// err's chain says so (0 otherwise).
func RetryAfterOf(err error) time.Duration {
	var r interface{ RetryAfterHint() time.Duration }
	if errors.As(err, &r) {
		return r.RetryAfterHint()
	}
	return 0
}

// Action is what to do about a failed unit of work (a sync step, a send).
type Action int

const (
	Retry       Action = iota // try the same work again, now (another delivery)
	RetryLater                // put it off: a scheduled retry after a delay
	Reauthorize               // stop; the connection needs an admin to consent again
	Restart                   // start the round again from scratch (expired delta state)
	GiveUp                    // permanent: record the failure and stop
)

// Policy decides, once for every worker, what a failure calls for: transient kinds are put off,
// refused credentials need re-authorization, an expired delta restarts, missing permissions and
// wrong requests are given up. A conflict or an unclassified failure is retried by redelivery
// until delivery (the delivery count) reaches giveUpAfter.
func Policy(err error, delivery, giveUpAfter int) Action {
	switch k := Of(err); {
	case k.Transient():
		return RetryLater
	case k == Unauthorized:
		return Reauthorize
	case k == Resync:
		return Restart
	case (k == Conflict || k == Other) && delivery < giveUpAfter:
		return Retry
	}
	return GiveUp
}

// Backoff is the delay before the attempt-th retry (1-based) of a put-off unit of work: base
// doubling up to limit, with jitter in [d/2, d] drawn by jitter (e.g. rand.N) so that work
// failing together does not retry together.
func Backoff(attempt int, base, limit time.Duration, jitter func(time.Duration) time.Duration) time.Duration {
	d := limit
	if n := max(attempt-1, 0); n < 30 {
		d = min(base<<n, limit)
	}
	return d/2 + jitter(d/2+1)
}
