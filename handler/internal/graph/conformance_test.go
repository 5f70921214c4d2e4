package graph_test

import (
	"context"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/directorytest"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
)

var (
	_ directorytest.Directory         = (*graph.Client)(nil)
	_ directorytest.UserCounter       = (*graph.Client)(nil)
	_ directorytest.GroupsDeltaReader = (*graph.Client)(nil)
)

// TestDirectoryConformance runs the directory suite against the real client over the simulated
// tenant; dirsync's stand-in runs the same suite.
func TestDirectoryConformance(t *testing.T) {
	directorytest.Run(t, func(t *testing.T, sim *m365sim.Server, _ string) directorytest.Directory {
		creds := m365auth.New(m365auth.Config{ClientID: directorytest.ClientID, ClientSecret: directorytest.ClientSecret,
			AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()})
		c, err := graph.New(graph.Config{BaseURL: sim.GraphURL(), Credentials: creds, HTTPClient: sim.HTTPClient(),
			Retry: graph.RetryPolicy{Sleep: func(context.Context, time.Duration) error { return nil }}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}
