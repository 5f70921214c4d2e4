package m365sim_test

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

func TestFaults(t *testing.T) {
	sim, _ := newSim(t, m365sim.Options{})
	tok := token(t, sim, tenantA)
	sim.AddFault(m365sim.FaultRule{Method: "GET", PathPrefix: "/v1.0/users/delta", Times: 1, Status: 429, RetryAfter: 1500 * time.Millisecond})
	sim.AddFault(m365sim.FaultRule{Path: regexp.MustCompile(`^/v1\.0/groups$`), Times: 2, Status: 503})

	st, h, body := get(t, sim, tok, "/v1.0/users/delta")
	if st != 429 || h.Get("Retry-After") != "1.5" || errCode(body) != "TooManyRequests" {
		t.Fatalf("429: %d %v %v", st, h, body)
	}
	if st, _, _ := get(t, sim, tok, "/v1.0/users/delta"); st != 200 {
		t.Errorf("after Times=1: %d", st)
	}
	for range 2 {
		if st, _, body := get(t, sim, tok, "/v1.0/groups"); st != 503 || errCode(body) != "ServiceUnavailable" {
			t.Errorf("503: %d %v", st, body)
		}
	}
	if st, _, _ := get(t, sim, tok, "/v1.0/groups"); st != 200 {
		t.Errorf("after Times=2: %d", st)
	}

	// Fault hook: delay only, then the normal answer.
	sim.Fault = func(r *http.Request) *m365sim.Fault {
		if r.URL.Path == "/v1.0/users" {
			return &m365sim.Fault{Delay: 50 * time.Millisecond}
		}
		return nil
	}
	start := time.Now()
	if st, _, _ := get(t, sim, tok, "/v1.0/users"); st != 200 || time.Since(start) < 50*time.Millisecond {
		t.Errorf("delay: %d after %v", st, time.Since(start))
	}
	sim.Fault = nil
	sim.AddFault(m365sim.FaultRule{PathPrefix: "/v1.0/users/", Status: 403})
	if st, _, body := get(t, sim, tok, "/v1.0/users/x"); st != 403 || errCode(body) != "Authorization_RequestDenied" {
		t.Errorf("403: %d %v", st, body)
	}
	sim.ClearFaults()
	if st, _, _ := get(t, sim, tok, "/v1.0/users/x"); st != 404 {
		t.Errorf("after ClearFaults: %d", st)
	}
	s := sim.Stats()
	if s.Faults != 4 || s.Routes["users/delta"] != 2 || s.Routes["groups"] != 3 || s.Routes["token"] != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestGenerate(t *testing.T) {
	gen := func(n, groups int) (*m365sim.Server, time.Duration) {
		sim := m365sim.New(m365sim.Options{})
		sim.AddTenant(tenantA, "fabrikam.example")
		start := time.Now()
		if err := sim.Generate(tenantA, m365sim.GenSpec{Users: n, Groups: groups, Depth: 3, Seed: 42, InvalidUsers: 5}); err != nil {
			t.Fatal(err)
		}
		return sim, time.Since(start)
	}
	a, _ := gen(500, 20)
	b, _ := gen(500, 20)
	ua, ub := a.Users(tenantA), b.Users(tenantA)
	for i := range ua {
		if ua[i].ID != ub[i].ID || ua[i].DisplayName != ub[i].DisplayName || ua[i].ManagerID != ub[i].ManagerID {
			t.Fatalf("not deterministic at %d: %+v vs %+v", i, ua[i], ub[i])
		}
	}
	if ga, gb := a.Groups(tenantA), b.Groups(tenantA); len(ga) != 20 || ga[7].ID != gb[7].ID {
		t.Fatalf("groups differ")
	}
	if u := ua[len(ua)-1]; u.GivenName != "" || u.Mail != "" {
		t.Errorf("invalid user has a complete profile: %+v", u)
	}

	// How fast generation is belongs to the benchmarks; here only that 100 000 users come out.
	big, d := gen(100_000, 1000)
	if n := len(big.Users(tenantA)); n != 100_000 {
		t.Errorf("generated %d users, want 100000", n)
	}
	t.Logf("generated 100k users / 1000 groups in %v", d)
	if n, err := big.MutateRandom(tenantA, 0.01, 1); err != nil || n != 1000 {
		t.Errorf("MutateRandom = %d, %v", n, err)
	}
}

// TestFullDelta100k walks users/delta over 100 000 users (page size 200) and then a 1% round.
func TestFullDelta100k(t *testing.T) {
	if testing.Short() {
		t.Skip("large")
	}
	sim, _ := newSim(t, m365sim.Options{})
	sim.Generate(tenantA, m365sim.GenSpec{Users: 100_000, Groups: 1000, Depth: 2, Seed: 1})
	tok := token(t, sim, tenantA)
	start := time.Now()
	items, link, pages := walk(t, sim, tok, "/v1.0/users/delta?$select=id,displayName,givenName,surname,mail,userPrincipalName,jobTitle,department,accountEnabled,manager")
	full := time.Since(start)
	if len(items) != 100_000 || pages != 500 {
		t.Fatalf("%d items in %d pages", len(items), pages)
	}
	n, _ := sim.MutateRandom(tenantA, 0.01, 2)
	start = time.Now()
	round, _, _ := walk(t, sim, tok, link, "Prefer", "return=minimal")
	t.Logf("full walk %v (%d pages); 1%% round (%d users changed) %d items in %v; stats %+v", full, pages, n, len(round), time.Since(start), sim.Stats())
	if len(round) == 0 || len(round) > n {
		t.Errorf("round items = %d for %d changed users", len(round), n)
	}
}
