package botframework_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/leapchange/m365/handler/internal/botframework"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/testenv"
)

const (
	customerTenant = "11111111-2222-3333-4444-555555555555"
	botTenant      = "99999999-8888-7777-6666-555555555555"
	botAppID       = "b7e0c3d1-2f4a-4b5c-9d6e-7f8091a2b3c4"
	botSecret      = "bot-s3cret"
	userID         = "a41f7c02-9d3e-4b18-8c6a-2e5f0b9d7a13"
)

// newSim starts a simulated tenant with the customer tenant, a user and the bot registered in
// its home tenant, its endpoint at endpoint ("" for none).
func newSim(t *testing.T, clk *testenv.Clock, endpoint string) *m365sim.Server {
	t.Helper()
	sim := testenv.StartSim(t, m365sim.Options{Clock: clk.Now})
	sim.AddTenant(customerTenant, "contoso.example")
	if _, err := sim.AddUser(customerTenant, m365sim.User{ID: userID, DisplayName: "Ines Okafor", UserPrincipalName: "ines@contoso.example", AccountEnabled: true}); err != nil {
		t.Fatal(err)
	}
	sim.RegisterBot(botAppID, botTenant, botSecret, endpoint)
	return sim
}

// endpoint is the bot's messaging endpoint: it validates each activity and answers 200, 401
// or 403, keeping the last error and the header it came with.
type endpoint struct {
	srv *httptest.Server
	v   *botframework.Validator

	mu      sync.Mutex
	lastErr error
	lastHdr string
	got     []botframework.Activity
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a botframework.Activity
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			http.Error(w, "bad activity", http.StatusBadRequest)
			return
		}
		err := e.v.Validate(r.Context(), r.Header.Get("Authorization"), a)
		e.mu.Lock()
		e.lastErr, e.lastHdr = err, r.Header.Get("Authorization")
		if err == nil {
			e.got = append(e.got, a)
		}
		e.mu.Unlock()
		switch {
		case err == nil:
			w.WriteHeader(http.StatusOK)
		case errors.Is(err, errkind.Forbidden):
			w.WriteHeader(http.StatusForbidden)
		default:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) last() (error, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastErr, e.lastHdr
}

func (e *endpoint) activities() []botframework.Activity {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]botframework.Activity(nil), e.got...)
}

func simHost(sim *m365sim.Server) string { return strings.TrimPrefix(sim.URL(), "https://") }
