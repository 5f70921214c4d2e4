package mailtest_test

import (
	"testing"

	"github.com/leapchange/m365/handler/internal/m365auth"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/mailtest"
)

// TestConformance checks the plain client against the suite the real Graph client passes too.
func TestConformance(t *testing.T) {
	mailtest.Conformance(t, func(t *testing.T, sim *m365sim.Server) mailtest.Mailer {
		return &mailtest.Client{Base: sim.GraphURL(), HTTP: sim.HTTPClient(), Creds: m365auth.New(m365auth.Config{
			ClientID: mailtest.ClientID, ClientSecret: mailtest.ClientSecret, AuthorityHost: sim.URL() + "/", HTTPClient: sim.HTTPClient()})}
	})
}
