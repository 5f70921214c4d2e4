package api_test

// Tests of the settings, group search, dry run, run detail, approval, stakeholder and group
// endpoints, over Azurite through the same fixture as api_test.go.

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

const (
	orgA            = "/api/orgs/org-a"
	notFoundType    = "urn:leapchange:problem:not-found"
	conflictType    = "urn:leapchange:problem:conflict"
	preconditionTyp = "urn:leapchange:problem:precondition-failed"
	unknownGroup    = "0f0f0f0f-1111-4222-8333-444455556666" // well formed, not in the tenant
	staleTag        = `W/"datetime'2020-01-01T00%3A00%3A00.0000000Z'"`
)

// doH is do with a JSON body (when there is one) and request headers as name/value pairs.
func (f *fixture) doH(t *testing.T, method, path, body string, header ...string) answer {
	t.Helper()
	return send(t, jsonRequest(t, method, f.srv.URL+path, body, header...))
}

// jsonRequest is a request to url with a JSON body (when there is one) and headers as
// name/value pairs.
func jsonRequest(t *testing.T, method, url, body string, header ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

// fieldMessages maps each field a 400 problem names to its messages, joined.
func fieldMessages(a answer) map[string]string {
	out := map[string]string{}
	errs, _ := a.body["errors"].([]any)
	for _, e := range errs {
		m, _ := e.(map[string]any)
		f, _ := m["field"].(string)
		msg, _ := m["message"].(string)
		out[f] += msg + ";"
	}
	return out
}

func list(v any) []any { l, _ := v.([]any); return l }

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

// ids are the "id" values of a list of objects.
func ids(v any) []string {
	var out []string
	for _, e := range list(v) {
		out = append(out, obj(e)["id"].(string))
	}
	return out
}

func TestSettings(t *testing.T) {
	f := setup(t)
	const path = base + "/settings"

	a := f.do(t, "GET", path, "", "")
	th := obj(a.body["deletionThreshold"])
	if a.status != 200 || a.header.Get("ETag") != "" || a.body["frequency"] != "manual" || a.body["timeZone"] != "UTC" ||
		a.body["mergeStrategy"] != "entra_wins" || len(list(a.body["groupFilter"])) != 0 || a.body["groupFilter"] == nil ||
		a.body["groupSync"] != false || a.body["groupType"] != "custom" || th["percent"] != 20.0 || th["count"] != 500.0 {
		t.Fatalf("GET defaults = %d ETag %q %s", a.status, a.header.Get("ETag"), a.raw)
	}

	// Every bad field named in one 400, the unknown group too; nothing saved.
	a = f.do(t, "PUT", path, "application/json",
		`{"mergeStrategy":"newest","timeZone":"Mars/Olympus","groupFilter":["not-a-guid","`+unknownGroup+`"]}`)
	wantProblem(t, a, 400, invalidType, "mergeStrategy")
	msgs := fieldMessages(a)
	for _, field := range []string{"mergeStrategy", "timeZone", "groupFilter"} {
		if msgs[field] == "" {
			t.Errorf("400 %s does not name %s", a.raw, field)
		}
	}
	if !strings.Contains(msgs["groupFilter"], "not-a-guid") || !strings.Contains(msgs["groupFilter"], unknownGroup) {
		t.Errorf("groupFilter messages %q: want both the malformed and the unknown id named", msgs["groupFilter"])
	}
	if len(msgs) != 3 {
		t.Errorf("named fields %v, want exactly mergeStrategy, timeZone, groupFilter", msgs)
	}
	// An unknown group alone is a 400 naming groupFilter and the id.
	a = f.do(t, "PUT", path, "application/json", `{"groupFilter":["`+unknownGroup+`"]}`)
	wantProblem(t, a, 400, invalidType, "groupFilter")
	if !strings.Contains(fieldMessages(a)["groupFilter"], unknownGroup) {
		t.Errorf("unknown group 400 = %s, want the id named", a.raw)
	}
	wantProblem(t, f.do(t, "PUT", path, "application/json", `{"groupSync":true}`), 400, invalidType, "groupSync")
	wantProblem(t, f.do(t, "PUT", path, "application/json", `{"deletionThreshold":{"percent":0,"count":0}}`), 400, invalidType, "deletionThreshold.percent")
	wantProblem(t, f.do(t, "PUT", path, "application/json", `{"frequency":"hourly","extra":1}`), 400, invalidType, "body")
	wantProblem(t, f.do(t, "PUT", path, "", ""), 400, invalidType, "body")
	// Before the first save there is no ETag: any If-Match but * is stale.
	wantProblem(t, f.doH(t, "PUT", path, `{"frequency":"daily"}`, "If-Match", staleTag), 412, preconditionTyp, "")
	if a := f.do(t, "GET", path, "", ""); a.body["frequency"] != "manual" || a.header.Get("ETag") != "" {
		t.Fatalf("rejected PUTs wrote: %s", a.raw)
	}

	a = f.do(t, "PUT", path, "application/json",
		`{"frequency":"twice_daily","timeZone":"Europe/London","mergeStrategy":"skip_conflicts","groupFilter":["`+knownGroup+`"],"groupSync":true,"groupType":"functional","deletionThreshold":{"percent":5,"count":10}}`)
	etag := a.header.Get("ETag")
	if a.status != 200 || etag == "" || a.body["frequency"] != "twice_daily" || a.body["timeZone"] != "Europe/London" ||
		a.body["mergeStrategy"] != "skip_conflicts" || !slices.Equal(ids2(a.body["groupFilter"]), []string{knownGroup}) ||
		a.body["groupSync"] != true || a.body["groupType"] != "functional" || obj(a.body["deletionThreshold"])["percent"] != 5.0 ||
		a.body["updatedAt"] == nil {
		t.Fatalf("PUT valid = %d ETag %q %s", a.status, etag, a.raw)
	}
	got := f.do(t, "GET", path, "", "")
	if got.header.Get("ETag") != etag || got.body["frequency"] != "twice_daily" || obj(got.body["deletionThreshold"])["count"] != 10.0 {
		t.Errorf("GET after PUT = ETag %q %s, want ETag %q and the saved settings", got.header.Get("ETag"), got.raw, etag)
	}
	// Absent fields keep their value; a stale If-Match changes nothing, the right one saves.
	wantProblem(t, f.doH(t, "PUT", path, `{"frequency":"weekly"}`, "If-Match", staleTag), 412, preconditionTyp, "")
	a = f.doH(t, "PUT", path, `{"frequency":"weekly"}`, "If-Match", etag)
	if a.status != 200 || a.body["frequency"] != "weekly" || a.body["timeZone"] != "Europe/London" || a.header.Get("ETag") == etag {
		t.Fatalf("PUT with If-Match = %d %s", a.status, a.raw)
	}
	wantProblem(t, f.doH(t, "PUT", path, `{"frequency":"daily"}`, "If-Match", etag), 412, preconditionTyp, "")
	if got := f.do(t, "GET", path, "", ""); got.body["frequency"] != "weekly" {
		t.Errorf("after a stale PUT: %s", got.raw)
	}
	// Status reports the frequency and the next slot of a connected org.
	st := f.do(t, "GET", base+"/status", "", "")
	if st.body["frequency"] != "weekly" || st.body["nextScheduledSync"] != "2026-03-02T06:00:00Z" || st.body["errors"] != 0.0 {
		t.Errorf("status = %s", st.raw)
	}
}

func ids2(v any) []string {
	var out []string
	for _, e := range list(v) {
		out = append(out, e.(string))
	}
	return out
}

func TestGroupSearch(t *testing.T) {
	f := setup(t)
	a := f.do(t, "GET", base+"/groups?search=champ&limit=5", "", "")
	groups := list(a.body["groups"])
	if a.status != 200 || len(groups) != 1 || obj(groups[0])["id"] != knownGroup || obj(groups[0])["displayName"] != "Change champions" {
		t.Fatalf("search champ = %d %s", a.status, a.raw)
	}
	if a := f.do(t, "GET", base+"/groups?search=finance", "", ""); a.status != 200 || a.body["groups"] == nil || len(list(a.body["groups"])) != 0 {
		t.Errorf("search finance = %d %s, want an empty list", a.status, a.raw)
	}
	wantProblem(t, f.do(t, "GET", base+"/groups?limit=0", "", ""), 400, invalidType, "limit")
	wantProblem(t, f.do(t, "GET", base+"/groups?search="+strings.Repeat("x", 121), "", ""), 400, invalidType, "search")
	wantProblem(t, f.do(t, "GET", "/api/orgs/org-b/m365/groups", "", ""), 409, "urn:leapchange:problem:not-connected", "")
}

func TestDryRun(t *testing.T) {
	f := setup(t)
	a := f.do(t, "POST", base+"/sync", "application/json", `{"dryRun":true}`)
	id, _ := a.body["runId"].(string)
	if a.status != 202 || id == "" || a.body["dryRun"] != true || a.body["started"] != true {
		t.Fatalf("POST dry run = %d %s", a.status, a.raw)
	}
	drain(t, f.q, f.eng)
	if sk := f.do(t, "GET", orgA+"/stakeholders", "", ""); sk.status != 200 || len(list(sk.body["stakeholders"])) != 0 {
		t.Fatalf("stakeholders after a dry run = %d %s, want none", sk.status, sk.raw)
	}
	run := f.do(t, "GET", base+"/sync/runs/"+id, "", "")
	log := list(run.body["changeLog"])
	if run.body["state"] != "succeeded" || run.body["dryRun"] != true || run.body["created"] != 2.0 || len(log) != 2 ||
		obj(log[0])["action"] != "created" || obj(log[1])["externalId"] != "u2" {
		t.Errorf("dry run = %s, want succeeded with 2 would-be creations logged", run.raw)
	}
	// A preview is not a sync: status shows no last sync, and a real run is full (no delta link kept).
	st := f.do(t, "GET", base+"/status", "", "")
	if st.body["lastRun"] != nil || st.body["lastSync"] != nil || st.body["recordsSynced"] != 0.0 {
		t.Errorf("status after a dry run = %s", st.raw)
	}
	first := f.do(t, "POST", base+"/sync", "", "")
	if first.body["dryRun"] != false || first.body["started"] != true || first.body["runId"] == id {
		t.Fatalf("POST sync after the dry run = %s", first.raw)
	}
	drain(t, f.q, f.eng)
	if r := f.do(t, "GET", base+"/sync/runs/"+first.body["runId"].(string), "", ""); r.body["kind"] != "full" || r.body["created"] != 2.0 {
		t.Errorf("first real run after a dry run = %s, want full with 2 created", r.raw)
	}
}

func TestRunChangeLogPaging(t *testing.T) {
	f := setup(t)
	id := f.do(t, "POST", base+"/sync", "", "").body["runId"].(string)
	drain(t, f.q, f.eng)
	path := base + "/sync/runs/" + id

	all := f.do(t, "GET", path, "", "")
	if all.status != 200 || all.body["changes"] != 2.0 || len(list(all.body["changeLog"])) != 2 || all.body["nextChangesAfter"] != nil {
		t.Fatalf("run = %s, want 2 changes on one page", all.raw)
	}
	p1 := f.do(t, "GET", path+"?changesLimit=1", "", "")
	l1 := list(p1.body["changeLog"])
	if len(l1) != 1 || obj(l1[0])["seq"] != 1.0 || obj(l1[0])["externalId"] != "u1" || p1.body["nextChangesAfter"] != 1.0 {
		t.Fatalf("page 1 = %s", p1.raw)
	}
	p2 := f.do(t, "GET", path+"?changesLimit=1&changesAfter=1", "", "")
	l2 := list(p2.body["changeLog"])
	if len(l2) != 1 || obj(l2[0])["seq"] != 2.0 || obj(l2[0])["externalId"] != "u2" || obj(l2[0])["action"] != "created" || p2.body["nextChangesAfter"] != 2.0 {
		t.Fatalf("page 2 = %s", p2.raw)
	}
	p3 := f.do(t, "GET", path+"?changesLimit=1&changesAfter=2", "", "")
	if p3.status != 200 || p3.body["changeLog"] == nil || len(list(p3.body["changeLog"])) != 0 || p3.body["nextChangesAfter"] != nil {
		t.Errorf("page 3 = %s, want an empty changeLog and no nextChangesAfter", p3.raw)
	}
	wantProblem(t, f.do(t, "GET", path+"?changesLimit=1001", "", ""), 400, invalidType, "changesLimit")
	wantProblem(t, f.do(t, "GET", path+"?changesAfter=-1", "", ""), 400, invalidType, "changesAfter")
}

// TestApproveAndGroups holds a run with the deletion guard (a group filter leaves one of two
// synced users out: 50% > 20%), approves it, and reads the groups the run mirrored.
func TestApproveAndGroups(t *testing.T) {
	f := setup(t)
	if g := f.do(t, "GET", orgA+"/groups", "", ""); g.status != 200 || g.body["groups"] == nil || len(list(g.body["groups"])) != 0 {
		t.Fatalf("groups before any sync = %d %s, want an empty list", g.status, g.raw)
	}
	wantProblem(t, f.do(t, "GET", orgA+"/groups/nosuch/members", "", ""), 404, notFoundType, "")

	first := f.do(t, "POST", base+"/sync", "", "").body["runId"].(string)
	drain(t, f.q, f.eng)
	a := f.do(t, "POST", base+"/sync/runs/"+first+"/approve", "application/json", `{"approvedBy":"ada"}`)
	wantProblem(t, a, 409, conflictType, "")
	wantProblem(t, f.do(t, "POST", base+"/sync/runs/1klxow0l9apkv-fc96/approve", "", ""), 404, notFoundType, "")

	if a := f.do(t, "PUT", base+"/settings", "application/json", `{"groupFilter":["`+knownGroup+`"],"groupSync":true}`); a.status != 200 {
		t.Fatalf("PUT settings = %d %s", a.status, a.raw)
	}
	held := f.do(t, "POST", base+"/sync", "", "").body["runId"].(string)
	drain(t, f.q, f.eng)
	run := f.do(t, "GET", base+"/sync/runs/"+held, "", "")
	hold := obj(run.body["hold"])
	if run.body["state"] != "held" || hold["deactivations"] != 1.0 || hold["activeSynced"] != 2.0 || run.body["pendingDeactivations"] != 1.0 {
		t.Fatalf("second run = %s, want held for 1 of 2 deactivations", run.raw)
	}
	if st := f.do(t, "GET", base+"/status", "", ""); obj(st.body["running"])["id"] != held || obj(st.body["running"])["state"] != "held" {
		t.Errorf("status while held = %s", st.raw)
	}
	if again := f.do(t, "POST", base+"/sync", "", ""); again.body["runId"] != held || again.body["started"] != false {
		t.Errorf("POST sync while held = %s, want the held run, not started", again.raw)
	}
	wantProblem(t, f.do(t, "POST", base+"/sync/runs/"+held+"/approve", "application/json", `{"approvedBy":"`+strings.Repeat("a", 201)+`"}`), 400, invalidType, "approvedBy")

	a = f.do(t, "POST", base+"/sync/runs/"+held+"/approve", "application/json", `{"approvedBy":"admin@contoso.example"}`)
	if a.status != 200 || a.body["id"] != held || a.body["state"] != "running" || obj(a.body["hold"])["approvedBy"] != "admin@contoso.example" {
		t.Fatalf("approve = %d %s", a.status, a.raw)
	}
	wantProblem(t, f.do(t, "POST", base+"/sync/runs/"+held+"/approve", "", ""), 409, conflictType, "")
	drain(t, f.q, f.eng)
	run = f.do(t, "GET", base+"/sync/runs/"+held, "", "")
	if run.body["state"] != "succeeded" || run.body["deactivated"] != 1.0 || run.body["groupsSynced"] != 1.0 || run.body["membersAdded"] != 1.0 {
		t.Fatalf("approved run = %s", run.raw)
	}

	// u2 left the filter: inactive; the active filter finds each side.
	inactive := f.do(t, "GET", orgA+"/stakeholders?active=false", "", "")
	il := list(inactive.body["stakeholders"])
	if len(il) != 1 || obj(il[0])["externalId"] != "u2" || obj(il[0])["deactivatedReason"] != "out_of_filter" {
		t.Errorf("active=false = %s, want only u2, out of filter", inactive.raw)
	}
	active := f.do(t, "GET", orgA+"/stakeholders?active=true", "", "")
	if al := list(active.body["stakeholders"]); len(al) != 1 || obj(al[0])["externalId"] != "u1" {
		t.Errorf("active=true = %s, want only u1", active.raw)
	}

	groups := f.do(t, "GET", orgA+"/groups", "", "")
	gl := list(groups.body["groups"])
	if len(gl) != 1 || obj(gl[0])["name"] != "Change champions" || obj(gl[0])["externalId"] != knownGroup ||
		obj(gl[0])["source"] != "entra" || obj(gl[0])["type"] != "custom" {
		t.Fatalf("groups = %s, want the mirrored Change champions", groups.raw)
	}
	gid := obj(gl[0])["id"].(string)
	m := f.do(t, "GET", orgA+"/groups/"+gid+"/members", "", "")
	ml := list(m.body["members"])
	if m.status != 200 || obj(m.body["group"])["id"] != gid || len(ml) != 1 || obj(ml[0])["name"] != "Ada Lovelace" ||
		obj(ml[0])["email"] != "ada@contoso.example" || obj(ml[0])["active"] != true || obj(ml[0])["source"] != "entra" {
		t.Errorf("members = %d %s, want Ada", m.status, m.raw)
	}
	// Another org sees none of it.
	if g := f.do(t, "GET", "/api/orgs/org-b/groups", "", ""); len(list(g.body["groups"])) != 0 {
		t.Errorf("org-b groups = %s", g.raw)
	}
	wantProblem(t, f.do(t, "GET", "/api/orgs/org-b/groups/"+gid+"/members", "", ""), 404, notFoundType, "")
}

func TestStakeholderCRUD(t *testing.T) {
	f := setup(t)
	const sk = orgA + "/stakeholders"

	a := f.do(t, "POST", sk, "application/json", `{"firstName":"  ","email":"grace at navy"}`)
	wantProblem(t, a, 400, invalidType, "firstName")
	wantProblem(t, a, 400, invalidType, "email")
	wantProblem(t, f.do(t, "POST", sk, "application/json", `{"firstName":"`+strings.Repeat("g", 257)+`"}`), 400, invalidType, "firstName")
	wantProblem(t, f.do(t, "POST", sk, "application/json", `{"firstName":"Grace","source":"entra"}`), 400, invalidType, "body")
	wantProblem(t, f.do(t, "POST", sk, "", ""), 400, invalidType, "body")

	a = f.do(t, "POST", sk, "application/json", `{"firstName":"Grace","lastName":"Hopper","email":"grace@navy.example","influence":"high"}`)
	id, _ := a.body["id"].(string)
	etag := a.header.Get("ETag")
	if a.status != 201 || id == "" || etag == "" || a.header.Get("Location") != sk+"/"+id || a.body["source"] != "manual" ||
		a.body["active"] != true || a.body["influence"] != "high" || a.body["email"] != "grace@navy.example" {
		t.Fatalf("POST = %d %v %s", a.status, a.header, a.raw)
	}
	// The email is taken, in any case.
	wantProblem(t, f.do(t, "POST", sk, "application/json", `{"firstName":"Other","email":"Grace@Navy.example"}`), 400, invalidType, "email")
	other := f.do(t, "POST", sk, "application/json", `{"lastName":"Lovelace","email":"ada@engine.example"}`)
	if other.status != 201 {
		t.Fatalf("POST second = %d %s", other.status, other.raw)
	}

	got := f.do(t, "GET", sk+"/"+id, "", "")
	if got.status != 200 || got.header.Get("ETag") != etag || got.body["lastName"] != "Hopper" || got.body["base"] != nil || got.body["seenRun"] != nil {
		t.Fatalf("GET = %d ETag %q %s, want ETag %q", got.status, got.header.Get("ETag"), got.raw, etag)
	}

	body := `{"firstName":"Grace","lastName":"Hopper","email":"grace@navy.example","role":"Rear Admiral"}`
	wantProblem(t, f.doH(t, "PUT", sk+"/"+id, body), 428, preconditionTyp, "")
	wantProblem(t, f.doH(t, "PUT", sk+"/"+id, body, "If-Match", staleTag), 412, preconditionTyp, "")
	wantProblem(t, f.doH(t, "PUT", sk+"/"+id, `{"firstName":""}`, "If-Match", etag), 400, invalidType, "firstName")
	// An address another stakeholder holds is a bad email, not a stale ETag.
	wantProblem(t, f.doH(t, "PUT", sk+"/"+id, `{"firstName":"Grace","email":"ada@engine.example"}`, "If-Match", etag), 400, invalidType, "email")
	a = f.doH(t, "PUT", sk+"/"+id, body, "If-Match", etag)
	newTag := a.header.Get("ETag")
	if a.status != 200 || newTag == "" || newTag == etag || a.body["role"] != "Rear Admiral" || a.body["influence"] != "" {
		t.Fatalf("PUT = %d ETag %q %s", a.status, newTag, a.raw)
	}
	if got := f.do(t, "GET", sk+"/"+id, "", ""); got.header.Get("ETag") != newTag || got.body["role"] != "Rear Admiral" {
		t.Errorf("GET after PUT = %s", got.raw)
	}
	wantProblem(t, f.doH(t, "PUT", sk+"/"+id, body, "If-Match", etag), 412, preconditionTyp, "") // the old one is stale now
	wantProblem(t, f.doH(t, "PUT", sk+"/nosuch", body, "If-Match", "*"), 404, notFoundType, "")

	wantProblem(t, f.doH(t, "DELETE", sk+"/"+id, "", "If-Match", etag), 412, preconditionTyp, "")
	wantProblem(t, f.doH(t, "DELETE", sk+"/"+id, "", "If-Match", "garbage"), 412, preconditionTyp, "")
	if a := f.doH(t, "DELETE", sk+"/"+id, "", "If-Match", newTag); a.status != 204 || a.raw != "" {
		t.Fatalf("DELETE = %d %s", a.status, a.raw)
	}
	wantProblem(t, f.do(t, "GET", sk+"/"+id, "", ""), 404, notFoundType, "")
	wantProblem(t, f.do(t, "DELETE", sk+"/"+id, "", ""), 404, notFoundType, "")
	// Its email is free again.
	if a := f.do(t, "POST", sk, "application/json", `{"firstName":"Grace","email":"grace@navy.example"}`); a.status != 201 {
		t.Errorf("POST with the deleted stakeholder's email = %d %s", a.status, a.raw)
	}
	if a := f.do(t, "DELETE", sk+"/"+other.body["id"].(string), "", ""); a.status != 204 {
		t.Errorf("DELETE without If-Match = %d %s", a.status, a.raw)
	}
}

func TestStakeholderListAndSynced(t *testing.T) {
	f := setup(t)
	const sk = orgA + "/stakeholders"
	f.do(t, "POST", base+"/sync", "", "")
	drain(t, f.q, f.eng)
	var manual []string
	for _, name := range []string{"Grace", "Edsger", "Barbara"} {
		a := f.do(t, "POST", sk, "application/json", `{"firstName":"`+name+`"}`)
		if a.status != 201 {
			t.Fatalf("POST %s = %d %s", name, a.status, a.raw)
		}
		manual = append(manual, a.body["id"].(string))
	}

	all := f.do(t, "GET", sk, "", "")
	allIDs := ids(all.body["stakeholders"])
	if all.status != 200 || len(allIDs) != 5 || !slices.IsSorted(allIDs) || all.body["next"] != "" {
		t.Fatalf("list = %s, want 5 in id order and no next", all.raw)
	}
	// Pages of 2 walk the same ids.
	var walked []string
	after := ""
	for range 5 {
		p := f.do(t, "GET", sk+"?limit=2&after="+after, "", "")
		page := ids(p.body["stakeholders"])
		if p.status != 200 || len(page) > 2 {
			t.Fatalf("page after %q = %s", after, p.raw)
		}
		walked = append(walked, page...)
		after, _ = p.body["next"].(string)
		if after == "" {
			break
		}
		if after != page[len(page)-1] {
			t.Errorf("next = %q, want the last id of the page %v", after, page)
		}
	}
	if !slices.Equal(walked, allIDs) {
		t.Errorf("pages walked %v, want %v", walked, allIDs)
	}

	m := f.do(t, "GET", sk+"?source=manual", "", "")
	mIDs := ids(m.body["stakeholders"])
	slices.Sort(manual)
	if !slices.Equal(mIDs, manual) {
		t.Errorf("source=manual = %v, want %v", mIDs, manual)
	}
	e := f.do(t, "GET", sk+"?source=entra&active=true", "", "")
	el := list(e.body["stakeholders"])
	if len(el) != 2 {
		t.Fatalf("source=entra = %s, want the 2 synced", e.raw)
	}
	for _, s := range el {
		if obj(s)["source"] != "entra" || obj(s)["externalId"] == nil || obj(s)["base"] != nil || obj(s)["seenRun"] != nil {
			t.Errorf("synced stakeholder view %v: want source entra, externalId, no sync internals", s)
		}
	}
	if n := f.do(t, "GET", sk+"?active=false", "", ""); len(list(n.body["stakeholders"])) != 0 {
		t.Errorf("active=false = %s, want none", n.raw)
	}
	wantProblem(t, f.do(t, "GET", sk+"?source=ldap", "", ""), 400, invalidType, "source")
	wantProblem(t, f.do(t, "GET", sk+"?active=maybe", "", ""), 400, invalidType, "active")
	wantProblem(t, f.do(t, "GET", sk+"?limit=1001", "", ""), 400, invalidType, "limit")
	wantProblem(t, f.do(t, "GET", sk+"?after=a/b", "", ""), 400, invalidType, "after")

	// A synced stakeholder cannot be deleted here, and stays.
	synced := obj(el[0])["id"].(string)
	wantProblem(t, f.do(t, "DELETE", sk+"/"+synced, "", ""), 409, conflictType, "")
	if g := f.do(t, "GET", sk+"/"+synced, "", ""); g.status != 200 || g.body["active"] != true {
		t.Errorf("synced stakeholder after DELETE = %d %s", g.status, g.raw)
	}
}

func TestStakeholderOrgIsolation(t *testing.T) {
	f := setup(t)
	a := f.do(t, "POST", orgA+"/stakeholders", "application/json", `{"firstName":"Grace","email":"grace@navy.example"}`)
	id := a.body["id"].(string)
	const b = "/api/orgs/org-b/stakeholders/"
	wantProblem(t, f.do(t, "GET", b+id, "", ""), 404, notFoundType, "")
	wantProblem(t, f.doH(t, "PUT", b+id, `{"firstName":"Mallory"}`, "If-Match", "*"), 404, notFoundType, "")
	wantProblem(t, f.do(t, "DELETE", b+id, "", ""), 404, notFoundType, "")
	if l := f.do(t, "GET", "/api/orgs/org-b/stakeholders", "", ""); l.status != 200 || len(list(l.body["stakeholders"])) != 0 {
		t.Errorf("org-b list = %d %s", l.status, l.raw)
	}
	// Emails are unique per org, not across orgs.
	if c := f.do(t, "POST", "/api/orgs/org-b/stakeholders", "application/json", `{"firstName":"Grace","email":"grace@navy.example"}`); c.status != 201 {
		t.Errorf("org-b POST with org-a's email = %d %s", c.status, c.raw)
	}
	if g := f.do(t, "GET", orgA+"/stakeholders/"+id, "", ""); g.status != 200 || g.body["firstName"] != "Grace" {
		t.Errorf("org-a stakeholder after org-b's attempts = %d %s", g.status, g.raw)
	}
}
