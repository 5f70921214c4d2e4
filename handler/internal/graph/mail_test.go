package graph_test

import (
	"context"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/mailtest"
)

// TestMailConformance runs the mail suite against the real client over the simulated tenant;
// the tests' plain client runs the same suite. A throttled send comes back at once (the
// pipeline re-enqueues it): the transport's in-process retry must not sleep through it.
func TestMailConformance(t *testing.T) {
	mailtest.Conformance(t, func(t *testing.T, sim *m365sim.Server) mailtest.Mailer {
		creds := m365auth.New(m365auth.Config{ClientID: mailtest.ClientID, ClientSecret: mailtest.ClientSecret,
			AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()})
		c, err := graph.New(graph.Config{BaseURL: sim.GraphURL(), Credentials: creds, HTTPClient: sim.HTTPClient(),
			Retry: graph.RetryPolicy{Sleep: func(context.Context, time.Duration) error {
				t.Error("a mail send was retried in-process")
				return nil
			}}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}
