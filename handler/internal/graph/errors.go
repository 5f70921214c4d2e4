package graph

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/graphkind"
	"github.com/leapchange/m365/handler/internal/m365auth"
)

// classify is the one place SDK and transport errors become entra errors.
func classify(op string, err error) error {
	// A transport error names the request URL, with its $skiptoken or $deltatoken: strip it here,
	// where every Graph error is formatted, so no run record, answer or log ever shows one.
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = entra.RedactURLs(ue.URL)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The caller's deadline or the client's timeout: Graph did not answer in time, which is
		// transient; errors.Is still sees the deadline.
		return &errkind.Error{Kind: errkind.Unavailable, Message: op + ": timed out: " + entra.RedactURLs(err.Error()), Err: err}
	}
	var authErr *azidentity.AuthenticationFailedError
	if errors.As(err, &authErr) {
		return m365auth.Classify(err)
	}
	var odata *odataerrors.ODataError
	if !errors.As(err, &odata) {
		return &errkind.Error{Kind: errkind.Unavailable, Message: op + ": " + entra.RedactURLs(err.Error()), Err: err}
	}
	e := &errkind.Error{Status: odata.ResponseStatusCode, Err: err, Message: op}
	if main := odata.GetErrorEscaped(); main != nil {
		e.Code = deref(main.GetCode())
		if msg := deref(main.GetMessage()); msg != "" {
			e.Message = op + ": " + entra.RedactURLs(msg)
		}
		if inner := main.GetInnerError(); inner != nil {
			e.RequestID = deref(inner.GetRequestId())
		}
	}
	if h := odata.ResponseHeaders; h != nil {
		if v := h.Get("Retry-After"); len(v) > 0 {
			e.RetryAfter, _ = RetryAfter(http.Header{"Retry-After": v}, time.Now())
		}
	}
	e.Kind = graphkind.Of(e.Status, e.Code)
	return e
}
