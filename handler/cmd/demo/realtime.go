package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
)

// realTimeTimeout is how long the demo waits for a change made in Entra to reach Leap Change:
// the debounce (REALTIME_DEBOUNCE, 15 s by default) and a delta round take well under it.
const realTimeTimeout = 90 * time.Second

// realTimeStatus is the realTime object of GET /m365/status.
type realTimeStatus struct {
	Enabled       bool `json:"enabled"`
	Healthy       bool `json:"healthy"`
	Subscriptions []struct {
		Resource string    `json:"resource"`
		Expires  time.Time `json:"expires"`
		Healthy  bool      `json:"healthy"`
	} `json:"subscriptions"`
	LastNotification *time.Time `json:"lastNotification"`
	Pending          bool       `json:"pending"`
	Waiting          string     `json:"waiting"`
	LastRunID        string     `json:"lastRunId"`
	LastError        string     `json:"lastError"`
}

func (c *client) realTimeStatus(ctx context.Context) (realTimeStatus, error) {
	var st struct {
		RealTime *realTimeStatus `json:"realTime"`
	}
	if err := c.do(ctx, "GET", "/m365/status", nil, &st); err != nil {
		return realTimeStatus{}, err
	}
	if st.RealTime == nil {
		return realTimeStatus{}, errors.New("GET /m365/status has no realTime object")
	}
	return *st.RealTime, nil
}

// realTime turns real-time stakeholder sync on through the API, shows its subscriptions' health,
// then renames one user and moves another to a different department in the simulated tenant,
// and follows both stakeholders until the change reaches them: the tenant notifies the webhook,
// the org is marked dirty, and after the debounce a delta round with trigger "notification"
// updates them. It prints each stakeholder as it changes with the seconds it took, the run that
// did it and the status's last notification, and reports whether everything ended as expected.
// A change that has not arrived within realTimeTimeout fails the demo.
//
// settings is the org's sync settings document as the demo last saved it: it is saved again
// with realTime on, and keeps it for the demo's later changes of the settings.
func realTime(ctx context.Context, api *client, sim *m365sim.Server, settings map[string]any, out io.Writer) (bool, error) {
	settings["realTime"] = true
	delete(settings, "updatedAt")
	delete(settings, "updatedAt")
	if err := api.do(ctx, "PUT", "/m365/settings", settings, &settings); err != nil {
		return false, err
	}
	status, err := api.realTimeStatus(ctx)
	if err != nil {
		return false, err
	}
	var subs []string
	for _, s := range status.Subscriptions {
		subs = append(subs, fmt.Sprintf("%s (expires %s, healthy %v)", s.Resource, s.Expires.Format(time.RFC3339), s.Healthy))
	}
	fmt.Fprintf(out, "real-time sync on (PUT /m365/settings {realTime: true}): enabled %v, healthy %v; %d subscription(s) in the tenant: %s\n",
		status.Enabled, status.Healthy, len(status.Subscriptions), strings.Join(subs, ", "))
	if !status.Enabled || !status.Healthy {
		return false, fmt.Errorf("real-time sync is not healthy after it was turned on (last error %q)", status.LastError)
	}

	// Two synced, active users: one is renamed, the other moves to another department.
	type watched struct {
		user          m365sim.User
		id            string // the stakeholder's id
		what          string // the change, as printed
		field, before string
		want          string
		done          bool
	}
	var picked []*watched
	for _, u := range sim.Users(tenantID)[2:] {
		if len(picked) == 2 {
			break
		}
		if !u.AccountEnabled || u.GivenName == "" || u.Surname == "" || u.Department == "" {
			continue
		}
		id, err := api.findSynced(ctx, u.ID)
		if err != nil {
			continue
		}
		var st stakeholderView
		if err := api.do(ctx, "GET", "/stakeholders/"+id, nil, &st); err != nil {
			return false, err
		}
		if st.Active {
			picked = append(picked, &watched{user: u, id: id})
		}
	}
	if len(picked) < 2 {
		return false, errors.New("fewer than two active synced users to change")
	}
	renamed, moved := picked[0], picked[1]
	newSurname := renamed.user.Surname + "-Okafor"
	renamed.field, renamed.before, renamed.want = "lastName", renamed.user.Surname, newSurname
	renamed.what = fmt.Sprintf("%s renamed to %s %s", renamed.user.DisplayName, renamed.user.GivenName, newSurname)
	newDept := "Finance"
	if moved.user.Department == newDept {
		newDept = "Logistics"
	}
	moved.field, moved.before, moved.want = "department", moved.user.Department, newDept
	moved.what = fmt.Sprintf("%s moved from %s to %s", moved.user.DisplayName, moved.user.Department, newDept)

	changedAt := time.Now()
	if err := sim.UpdateUser(tenantID, renamed.user.ID, func(u *m365sim.User) {
		u.Surname = newSurname
		u.DisplayName = u.GivenName + " " + newSurname
	}); err != nil {
		return false, err
	}
	if err := sim.UpdateUser(tenantID, moved.user.ID, func(u *m365sim.User) { u.Department = newDept }); err != nil {
		return false, err
	}
	fmt.Fprintf(out, "%s in Entra: %s; %s (no sync started: the tenant notifies the webhook)\n", changedAt.Format("15:04:05.0"), renamed.what, moved.what)

	// Each stakeholder as it changes, polled as the web app would show it.
	deadline := changedAt.Add(realTimeTimeout)
	for left := len(picked); left > 0; {
		for _, w := range picked {
			if w.done {
				continue
			}
			var st stakeholderView
			if err := api.do(ctx, "GET", "/stakeholders/"+w.id, nil, &st); err != nil {
				return false, err
			}
			got := st.LastName
			if w.field == "department" {
				got = st.Department
			}
			if got == w.want {
				w.done, left = true, left-1
				fmt.Fprintf(out, "%s stakeholder %s %s: %s %q → %q, %.1fs after the change in Entra\n",
					time.Now().Format("15:04:05.0"), st.FirstName, st.LastName, w.field, w.before, got, time.Since(changedAt).Seconds())
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			var missing []string
			for _, w := range picked {
				if !w.done {
					missing = append(missing, w.what)
				}
			}
			st, _ := api.realTimeStatus(ctx)
			return false, fmt.Errorf("real-time sync: %s did not reach Leap Change within %v (status: pending %v, waiting %q, last run %q, last error %q)",
				strings.Join(missing, " and "), realTimeTimeout, st.Pending, st.Waiting, st.LastRunID, st.LastError)
		}
		if err := pause(ctx, 250*time.Millisecond); err != nil {
			return false, err
		}
	}

	// The run that did it, once it has ended.
	status, err = api.realTimeStatus(ctx)
	if err != nil {
		return false, err
	}
	if status.LastRunID == "" {
		return false, errors.New("the stakeholders changed, but the real-time status names no run")
	}
	var run runView
	for {
		if err := api.do(ctx, "GET", "/m365/sync/runs/"+status.LastRunID, nil, &run); err != nil {
			return false, err
		}
		if run.State != "running" {
			break
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("real-time sync: run %s still running after %v", run.ID, realTimeTimeout)
		}
		if err := pause(ctx, 250*time.Millisecond); err != nil {
			return false, err
		}
	}
	fmt.Fprintf(out, "the run that did it, trigger %s:\n", run.Trigger)
	if err := printRun(out, run); err != nil {
		return false, err
	}
	if err := printChanges(ctx, api, out, run.ID, 4); err != nil {
		return false, err
	}
	if status, err = api.realTimeStatus(ctx); err != nil {
		return false, err
	}
	last := "none"
	if status.LastNotification != nil {
		last = fmt.Sprintf("%s (%.1fs after the change)", status.LastNotification.Format(time.RFC3339Nano), status.LastNotification.Sub(changedAt).Seconds())
	}
	fmt.Fprintf(out, "status: realTime healthy %v, last notification %s, pending %v, last run %s\n", status.Healthy, last, status.Pending, status.LastRunID)
	ok := run.Trigger == "notification" && run.State == "succeeded" && status.Healthy && status.LastNotification != nil
	return ok, nil
}

// stakeholderView is the part of a stakeholder the real-time step follows.
type stakeholderView struct {
	FirstName  string `json:"firstName"`
	LastName   string `json:"lastName"`
	Department string `json:"department"`
	Active     bool   `json:"active"`
}
