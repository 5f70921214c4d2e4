package tablestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/leapchange/m365/handler/internal/errkind"
)

// Kinds of error, from the project's one vocabulary (errkind). Every error the store returns wraps
// at most one of these (test with errors.Is, or errkind.Of) and, when the service answered, the
// *azcore.ResponseError too (errors.As).
var (
	// ErrNotFound: the entity does not exist (Get, Update, Delete).
	ErrNotFound error = errkind.NotFound
	// ErrConflict: Insert of an existing key, or an ETag that no longer matches (the entity changed
	// since it was read). Re-read and try again.
	ErrConflict error = errkind.Conflict
	// ErrThrottled: the service asked us to slow down (429, 503 ServerBusy) even after the client's
	// own retries. Retryable later.
	ErrThrottled error = errkind.Throttled
	// ErrUnavailable: timeouts, network errors and 5xx answers that survived the client's retries.
	// Retryable later.
	ErrUnavailable error = errkind.Unavailable
	// ErrInvalid: a bad org, key, table name, property, value too large, too many properties, or an
	// entity the service rejects as malformed. Retrying does not help.
	ErrInvalid error = errkind.Invalid
	// ErrAuth: the service refused our credentials (401, 403): a role assignment is missing.
	ErrAuth error = errkind.Forbidden
)

// Error is an error from an operation: what was done, the kind (one of the Err* sentinels, or nil when
// the failure fits none), and the cause.
type Error struct {
	Op     string // e.g. "get stakeholders/acme/u1"
	Kind   error  // ErrNotFound, ErrConflict, …; nil if none fits
	Status int    // HTTP status from the service, 0 if it did not answer
	Code   string // Table Storage error code, e.g. "UpdateConditionNotSatisfied"
	Err    error  // the cause
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("tablestore: ")
	b.WriteString(e.Op)
	if e.Kind != nil {
		b.WriteString(": ")
		b.WriteString(e.Kind.Error())
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d %s)", e.Status, e.Code)
	} else if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// translate is the one place where service and transport errors become kinds. failed is set for a
// failed transaction: the index, inside the submitted transaction, of the operation the service
// rejected (-1 if unknown, or not a transaction).
func translate(op string, err error) (_ error, failed int) {
	failed = -1
	if err == nil {
		return nil, failed
	}
	e := &Error{Op: op, Err: err}
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &re):
		e.Status, e.Code = re.StatusCode, re.ErrorCode
		if re.StatusCode == http.StatusAccepted && re.RawResponse != nil {
			// A failed entity group transaction: HTTP 202 whose multipart body holds the failing
			// operation's own status and error.
			e.Status, e.Code, failed = innerBatchError(re.RawResponse)
		}
		e.Kind = classify(e.Status, e.Code)
	case errors.Is(err, context.DeadlineExceeded):
		e.Kind = ErrUnavailable
	case errors.Is(err, context.Canceled):
		// The caller gave up; that is not a kind of store failure.
	default:
		var ne net.Error
		var oe *net.OpError
		if errors.As(err, &ne) || errors.As(err, &oe) {
			e.Kind = ErrUnavailable
		}
	}
	return e, failed
}

// classify maps an HTTP status and Table Storage error code to a kind.
func classify(status int, code string) error {
	switch aztables.TableErrorCode(code) {
	case aztables.EntityNotFound, aztables.ResourceNotFound, aztables.TableNotFound:
		return ErrNotFound
	case aztables.EntityAlreadyExists, aztables.UpdateConditionNotSatisfied:
		return ErrConflict
	case aztables.TableBeingDeleted:
		return ErrUnavailable
	case aztables.EntityTooLarge, aztables.PropertyValueTooLarge, aztables.TooManyProperties,
		aztables.PropertyNameInvalid, aztables.PropertyNameTooLong, aztables.PropertiesNeedValue,
		aztables.InvalidInput, aztables.InvalidValueType, aztables.InvalidDuplicateRow,
		aztables.OutOfRangeInput, aztables.DuplicatePropertiesSpecified, aztables.InvalidXmlDocument:
		return ErrInvalid
	}
	switch code {
	case "ServerBusy":
		return ErrThrottled
	case "OperationTimedOut", "InternalError":
		return ErrUnavailable
	case "AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch", "InsufficientAccountPermissions":
		return ErrAuth
	}
	switch {
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusConflict, status == http.StatusPreconditionFailed:
		return ErrConflict
	case status == http.StatusTooManyRequests:
		return ErrThrottled
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return ErrAuth
	case status == http.StatusRequestTimeout, status >= 500:
		return ErrUnavailable
	case status == http.StatusBadRequest, status == http.StatusRequestEntityTooLarge:
		return ErrInvalid
	}
	return nil
}

var (
	innerStatus = regexp.MustCompile(`(?m)^HTTP/1\.1 (\d{3})`)
	contentID   = regexp.MustCompile(`(?mi)^Content-ID:\s*(\d+)`)
	opIndex     = regexp.MustCompile(`^(\d+):`)
)

// innerBatchError reads the failing operation out of a failed transaction's multipart answer: its
// status, error code and index (from the "<index>:" prefix of the message, else Content-ID, which
// counts from 1).
func innerBatchError(resp *http.Response) (status int, code string, index int) {
	index = -1
	body, err := runtime.Payload(resp)
	if err != nil {
		return resp.StatusCode, "", index
	}
	m := innerStatus.FindSubmatch(body)
	if m == nil {
		return resp.StatusCode, "", index
	}
	status, _ = strconv.Atoi(string(m[1]))
	if m := contentID.FindSubmatch(body); m != nil {
		if n, err := strconv.Atoi(string(m[1])); err == nil {
			index = n - 1
		}
	}
	if i := bytes.Index(body, []byte(`{"odata.error"`)); i >= 0 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message struct {
					Value string `json:"value"`
				} `json:"message"`
			} `json:"odata.error"`
		}
		if json.NewDecoder(bytes.NewReader(body[i:])).Decode(&e) == nil {
			code = e.Error.Code
			if m := opIndex.FindStringSubmatch(e.Error.Message.Value); m != nil {
				if n, err := strconv.Atoi(m[1]); err == nil {
					index = n
				}
			}
		}
	}
	return status, code, index
}

// BatchError reports a failed Batch. Batch splits its operations into consecutive transactions; each
// transaction is atomic, the batch as a whole is not: transactions before the failed one were applied,
// the failed one was not applied at all, and later ones were not attempted.
type BatchError struct {
	Transaction  int // index of the failed transaction, from 0
	Transactions int // how many transactions the batch was split into
	First, End   int // ops[First:End] formed the failed transaction: ops[:First] were applied, ops[First:] were not
	Failed       int // index into ops of the operation the service rejected, or -1 if unknown
	Key          string
	Err          error // the translated cause; errors.Is(batchErr, ErrConflict) etc. see through it
}

func (e *BatchError) Error() string {
	s := fmt.Sprintf("tablestore: batch transaction %d of %d (ops %d..%d) failed, ops before %d applied",
		e.Transaction+1, e.Transactions, e.First, e.End-1, e.First)
	if e.Failed >= 0 {
		s += fmt.Sprintf("; op %d (key %q) was rejected", e.Failed, e.Key)
	}
	return s + ": " + e.Err.Error()
}

func (e *BatchError) Unwrap() error { return e.Err }
