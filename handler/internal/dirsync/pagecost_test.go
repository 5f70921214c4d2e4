package dirsync_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/queuetest"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// rowCounter carries Table Storage requests and counts the rows they read: one per point read
// found, and each row of a query page.
type rowCounter struct {
	base interface {
		Do(*http.Request) (*http.Response, error)
	}
	rows atomic.Int64
}

func (c *rowCounter) Do(r *http.Request) (*http.Response, error) {
	resp, err := c.base.Do(r)
	if err != nil || r.Method != http.MethodGet || resp.StatusCode != http.StatusOK || strings.HasPrefix(r.URL.Path, "/devstoreaccount1/Tables") {
		return resp, err
	}
	if strings.HasSuffix(r.URL.Path, ")") && strings.Contains(r.URL.Path, "RowKey=") {
		c.rows.Add(1) // a point read
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var page struct {
		Value []json.RawMessage `json:"value"`
	}
	if json.Unmarshal(body, &page) == nil {
		c.rows.Add(int64(len(page.Value)))
	}
	return resp, nil
}

// countedEnv is an engine over a fresh tenant (page size pageSize) and store, one page or chunk
// per step, whose Table Storage requests go through a rowCounter.
func countedEnv(t *testing.T, pageSize int, org string) (*env, *rowCounter) {
	t.Helper()
	counter := &rowCounter{base: http.DefaultClient}
	k := &killer{base: counter}
	rig := testenv.New(t, testenv.Options{Sim: m365sim.Options{PageSize: pageSize}, StoreTransport: k})
	k.prefix = rig.Store.Prefix()
	e := newEngine(t, rig.Sim, rig.Store, k, tablestoretest.Org(t, org))
	e.configure(onePagePerStep)
	return e, counter
}

// stepRows is the most rows one step of a phase read, and all its steps together.
type stepRows struct{ max, total int64 }

// TestStepReadsFollowThePageNotTheOrg syncs the same kind of tenant at two sizes, one page or
// chunk per step, and counts the rows each step reads from Table Storage: a step of any phase
// but unseen reads what its page needs, the same at both sizes; the unseen phase (one streamed
// pass of a full round) reads each synced stakeholder about once in all. A step that loaded the
// org's whole index (as every step once did) fails it at the larger size.
func TestStepReadsFollowThePageNotTheOrg(t *testing.T) {
	rounds := []struct {
		name    string
		prepare func(t *testing.T, e *env, users []m365sim.User)
		kind    string
	}{
		{"full round into an empty directory", func(*testing.T, *env, []m365sim.User) {}, "full"},
		{"delta round after changes", func(t *testing.T, e *env, users []m365sim.User) {
			for i := range 60 { // more than a page at both sizes
				e.updateUser(t, users[i].ID, func(u *m365sim.User) { u.Department = "Moved" })
			}
		}, "delta"},
		{"full round over the synced directory", func(t *testing.T, e *env, users []m365sim.User) {
			must(t, e.sim.HardDeleteUser(testenv.Tenant, users[1].ID))
			must(t, e.sim.ResetDelta(testenv.Tenant))
		}, "full"},
	}
	sizes := []int{120, 480}
	got := map[int][]map[string]stepRows{} // size → round → phase → rows
	for _, n := range sizes {
		e, counter := countedEnv(t, 40, fmt.Sprintf("org-%d", n))
		must(t, e.sim.Generate(testenv.Tenant, m365sim.GenSpec{Users: n, Groups: 2, Seed: 5}))
		e.settings(t, generous)
		users := e.sim.Users(testenv.Tenant)
		for _, r := range rounds {
			r.prepare(t, e, users)
			run := e.startOpts(t, dirsync.StartOptions{Trigger: "manual"})
			phases := map[string]stepRows{}
			_, err := e.q.Drain(t.Context(), func(ctx context.Context, d queuetest.Delivery) error {
				cur := e.run(t, run.ID) // read before counting
				before := counter.rows.Load()
				err := e.eng.Step(ctx, d.Body, d.Count)
				read := counter.rows.Load() - before
				p := phases[cur.Phase]
				p.max, p.total = max(p.max, read), p.total+read
				phases[cur.Phase] = p
				return err
			}, queuetest.DrainOptions{Now: e.clock.Now, MaxDeliveries: 1000, FailOnDeadLetter: true,
				Wait: func(_ context.Context, until time.Time) error { e.clock.advanceTo(until); return nil }})
			must(t, err)
			done := e.run(t, run.ID)
			wantState(t, done, dirsync.Succeeded)
			if done.Kind != r.kind {
				t.Fatalf("%d users, %s: a %s round, want %s", n, r.name, done.Kind, r.kind)
			}
			got[n] = append(got[n], phases)
		}
	}
	small, large := sizes[0], sizes[1]
	// A page's reads: its users' stakeholders and what a step reads anyway (the run, its marker,
	// the settings, the connection, open conflicts); slack for the few rows that vary.
	const slack = 10
	for i, r := range rounds {
		for phase, l := range got[large][i] {
			s := got[small][i][phase]
			switch {
			case phase == dirsync.PhaseUnseen:
				if l.total > int64(large)+slack {
					t.Errorf("%s, %d users: the unseen phase read %d rows, want each synced stakeholder about once (<= %d)", r.name, large, l.total, large+slack)
				}
			case l.max > s.max+slack:
				t.Errorf("%s, phase %s: a step read up to %d rows at %d users but %d at %d users: its reads grow with the org", r.name, phase, l.max, large, s.max, small)
			}
		}
	}
	if t.Failed() || testing.Verbose() {
		for _, n := range sizes {
			t.Logf("%d users: rows read per step by round and phase (max, total): %v", n, got[n])
		}
	}
}
