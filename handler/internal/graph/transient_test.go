package graph_test

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/entra"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/graph"
	"github.com/leapchange/m365/handler/internal/m365sim"
)

// Every transient kind is retried in-process, with a back-off, and counted on the caller's stats;
// a permanent answer is not retried.
func TestRetryTransientFailures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      func(w http.ResponseWriter)
		retried   bool
		throttled int
		method    string          // default GET
		waits     []time.Duration // the exact waits, when set
	}{
		{"500", func(w http.ResponseWriter) { w.WriteHeader(500) }, true, 0, "", nil},
		{"502", func(w http.ResponseWriter) { w.WriteHeader(502) }, true, 0, "", nil},
		{"503 with Retry-After", func(w http.ResponseWriter) { w.Header().Set("Retry-After", "2"); w.WriteHeader(503) }, true, 2, "", nil},
		{"429", func(w http.ResponseWriter) { w.Header().Set("Retry-After", "0.5"); w.WriteHeader(429) }, true, 2, "", nil},
		{"connection reset", func(w http.ResponseWriter) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.(*net.TCPConn).SetLinger(0) // an RST, not a clean close
			conn.Close()
		}, true, 0, "", nil},
		{"429 with Retry-After 0 still waits", func(w http.ResponseWriter) { w.Header().Set("Retry-After", "0"); w.WriteHeader(429) }, true, 2, "", nil},
		{"500 on a POST is not sent twice", func(w http.ResponseWriter) { w.WriteHeader(500) }, false, 0, "POST", nil},
		{"429 on a POST is retried (not processed)", func(w http.ResponseWriter) { w.Header().Set("Retry-After", "1"); w.WriteHeader(429) }, true, 2, "POST", nil},
		{name: "fractional Retry-After is honoured exactly", fail: func(w http.ResponseWriter) { w.Header().Set("Retry-After", "1.5"); w.WriteHeader(429) },
			retried: true, throttled: 2, waits: []time.Duration{1500 * time.Millisecond, 1500 * time.Millisecond}},
		{"400 is permanent", func(w http.ResponseWriter) { w.WriteHeader(400) }, false, 0, "", nil},
		{"404 is permanent", func(w http.ResponseWriter) { w.WriteHeader(404) }, false, 0, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) < 3 {
					tc.fail(w)
					return
				}
				w.Write([]byte("ok"))
			}))
			t.Cleanup(srv.Close)
			var waits []time.Duration
			rt := graph.NewRetryTransportForTest(http.DefaultTransport, graph.RetryPolicy{Sleep: func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				return nil
			}})
			stats := new(entra.RequestStats)
			method := cmp.Or(tc.method, "GET")
			req, _ := http.NewRequestWithContext(entra.WithRequestStats(t.Context(), stats), method, srv.URL, nil)
			resp, err := (&http.Client{Transport: rt}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := stats.Snapshot()
			if !tc.retried {
				if resp.StatusCode == 200 || calls.Load() != 1 || got.Retried != 0 {
					t.Errorf("status %d after %d calls, %d retries; want the failure answered at once", resp.StatusCode, calls.Load(), got.Retried)
				}
				return
			}
			if resp.StatusCode != 200 || len(waits) != 2 || got.Retried != 2 || got.Throttled != tc.throttled {
				t.Errorf("status %d after waits %v, stats %+v; want 200 after two retries, %d throttled", resp.StatusCode, waits, got, tc.throttled)
			}
			if tc.waits != nil && !slices.Equal(waits, tc.waits) {
				t.Errorf("waits %v, want %v", waits, tc.waits)
			}
			var sum time.Duration
			for _, w := range waits {
				if w <= 0 {
					t.Errorf("retried without waiting: %v", waits)
				}
				sum += w
			}
			if got.Waited != sum {
				t.Errorf("stats waited %v, slept %v", got.Waited, sum)
			}
		})
	}
}

// A transport error's text names the request URL; its $skiptoken must not reach the error.
func TestTransportErrorsCarryNoQuery(t *testing.T) {
	sim := newTenant(t, 5, "User.Read.All")
	c := newClient(t, sim, secret)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	link := sim.GraphURL() + "/users/delta?$skiptoken=SECRETSKIP"
	link = strings.Replace(link, strings.TrimPrefix(strings.TrimPrefix(sim.URL(), "http://"), "https://"), addr, 1)
	stats := new(entra.RequestStats)
	_, err = c.UsersDelta(entra.WithRequestStats(t.Context(), stats), tenantID, link)
	if err == nil {
		t.Fatal("no error from a closed port")
	}
	if errkind.Of(err) != errkind.Unavailable {
		t.Errorf("kind = %v, want unavailable", errkind.Of(err))
	}
	if strings.Contains(err.Error(), "SECRETSKIP") || strings.Contains(err.Error(), "skiptoken") {
		t.Errorf("error carries the query: %v", err)
	}
	if got := stats.Snapshot().Retried; got == 0 {
		t.Errorf("a refused connection was not retried")
	}
}

// A 429 waited out inside the transport is still counted on the request's stats.
func TestThrottlingWaitedOutIsCounted(t *testing.T) {
	sim := newTenant(t, 5, "User.Read.All")
	if err := sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Status: 429, RetryAfter: 1500 * time.Millisecond, Times: 2}); err != nil {
		t.Fatal(err)
	}
	stats := new(entra.RequestStats)
	if _, err := newClient(t, sim, secret).UsersDelta(entra.WithRequestStats(t.Context(), stats), tenantID, ""); err != nil {
		t.Fatal(err)
	}
	if got, want := stats.Snapshot(), (entra.Snapshot{Throttled: 2, Retried: 2, Waited: 3 * time.Second}); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

// A request that times out names no query either, and is a transient failure.
func TestTimeoutCarriesNoQuery(t *testing.T) {
	sim := newTenant(t, 5, "User.Read.All")
	c := newClient(t, sim, secret)
	if _, err := c.UsersDelta(t.Context(), tenantID, ""); err != nil { // a token, before the slow answers
		t.Fatal(err)
	}
	if err := sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/delta", Delay: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := c.UsersDelta(ctx, tenantID, sim.GraphURL()+"/users/delta?$skiptoken=SECRETSKIP")
	if err == nil || strings.Contains(err.Error(), "SECRETSKIP") {
		t.Errorf("err = %v; want a timeout without the query", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || errkind.Of(err) != errkind.Unavailable {
		t.Errorf("err = %v (kind %v); want unavailable, still a deadline", err, errkind.Of(err))
	}
}
