package graph

import "net/http"

// NewRetryTransportForTest exposes the throttling transport to the external tests.
func NewRetryTransportForTest(next http.RoundTripper, p RetryPolicy) http.RoundTripper {
	return newRetryTransport(next, p.withDefaults(), nil)
}
