package api_test

// The OpenAPI document (openapi.json) against the code: it is well formed, names exactly the
// routes the Server serves, and real answers validate against the schemas it documents.
//
// This is package api_test, not api: the Azurite fixture (setup, TestMain) lives here, and a
// second TestMain in package api would not build. Nothing below needs the Server's internals.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/api"
	"github.com/leapchange/m365/handler/internal/connection"
	"github.com/leapchange/m365/handler/internal/consent"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/tablestoretest"
)

type jsonObj = map[string]any

func loadSpec(t *testing.T) jsonObj {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc jsonObj
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("openapi.json has data after the document")
	}
	return doc
}

// resolve follows a local JSON pointer ("#/components/schemas/Run").
func resolve(doc jsonObj, ref string) (any, error) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("$ref %q is not local", ref)
	}
	var cur any = doc
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(jsonObj)
		if !ok {
			return nil, fmt.Errorf("$ref %q: %q is not in an object", ref, tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("$ref %q: no %q", ref, tok)
		}
	}
	return cur, nil
}

// deref resolves v while it is a {"$ref": …} object.
func deref(t *testing.T, doc jsonObj, v any) jsonObj {
	t.Helper()
	for range 10 {
		m, _ := v.(jsonObj)
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		var err error
		if v, err = resolve(doc, ref); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("$ref chain too long")
	return nil
}

// operations lists the document's operations as "METHOD /path".
func operations(doc jsonObj) map[string]jsonObj {
	ops := map[string]jsonObj{}
	paths, _ := doc["paths"].(jsonObj)
	for p, item := range paths {
		for m, op := range item.(jsonObj) {
			if o, ok := op.(jsonObj); ok && m != "parameters" {
				ops[strings.ToUpper(m)+" "+p] = o
			}
		}
	}
	return ops
}

func TestOpenAPIDocument(t *testing.T) {
	doc := loadSpec(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
	// Every $ref resolves.
	var refs int
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case jsonObj:
			if ref, ok := v["$ref"]; ok {
				refs++
				s, _ := ref.(string)
				if _, err := resolve(doc, s); err != nil {
					t.Errorf("%s: %v", at, err)
				}
			}
			for k, e := range v {
				walk(e, at+"/"+k)
			}
		case []any:
			for i, e := range v {
				walk(e, at+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(doc, "#")
	if refs == 0 {
		t.Error("no $ref at all: the walk is broken")
	}

	// Every error answer is a Problem; planned operations answer 501; the callback needs no key.
	for name, op := range operations(doc) {
		resps, _ := op["responses"].(jsonObj)
		if len(resps) == 0 {
			t.Errorf("%s: no responses", name)
		}
		for code, r := range resps {
			if code >= "400" {
				content, _ := deref(t, doc, r)["content"].(jsonObj)
				pj, _ := content["application/problem+json"].(jsonObj)
				if schema, _ := pj["schema"].(jsonObj); len(content) != 1 || schema["$ref"] != "#/components/schemas/Problem" {
					t.Errorf("%s %s: error answer is not only application/problem+json Problem", name, code)
				}
			}
		}
		if op["x-status"] == "planned" && resps["501"] == nil {
			t.Errorf("%s is planned but documents no 501", name)
		}
		sec, hasSec := op["security"].([]any)
		if strings.HasSuffix(name, " /api/consent/callback") != (hasSec && len(sec) == 0) {
			t.Errorf("%s: security %v: only the consent callback is open", name, op["security"])
		}
	}

	// The Problem type enum is exactly problem.go's Type constants.
	enum := deref(t, doc, deref(t, doc, doc["components"].(jsonObj)["schemas"].(jsonObj)["Problem"])["properties"].(jsonObj)["type"])["enum"]
	var documented []string
	for _, e := range enum.([]any) {
		documented = append(documented, e.(string))
	}
	want := problemTypes(t)
	slices.Sort(documented)
	slices.Sort(want)
	if !slices.Equal(documented, want) {
		t.Errorf("Problem type enum = %v\nproblem.go types  = %v", documented, want)
	}
}

// problemTypes reads the Type constants of problem.go.
func problemTypes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../problem/problem.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Type" {
				continue
			}
			for _, v := range vs.Values {
				if lit, ok := v.(*ast.BasicLit); ok {
					u, _ := strconv.Unquote(lit.Value)
					out = append(out, u)
				}
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found %d problem types in problem.go: the parse is broken", len(out))
	}
	return out
}

// routeTable reads the route table from the source. http.ServeMux cannot list its patterns, so
// the table comes from routes.go's s.route(pattern, map[string]handler{http.MethodX: …}) calls
// and the handler's functions() row of ConsentCallback; TestOpenAPICoversRoutes then checks
// it against the running Server (each path's 405 Allow header), so a route added in some way
// this parse does not see makes that check fail rather than pass quietly.
func routeTable(t *testing.T) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "routes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string][]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "route" {
			return true
		}
		lit, ok1 := call.Args[0].(*ast.BasicLit)
		methods, ok2 := call.Args[1].(*ast.CompositeLit)
		if len(call.Args) != 2 || !ok1 || !ok2 {
			t.Fatalf("%s: a route call this test cannot read", fset.Position(call.Pos()))
		}
		p, _ := strconv.Unquote(lit.Value)
		p = "/api/orgs/{org}" + p
		for _, e := range methods.Elts {
			key, ok := e.(*ast.KeyValueExpr).Key.(*ast.SelectorExpr)
			if !ok || !strings.HasPrefix(key.Sel.Name, "Method") {
				t.Fatalf("%s: a method key this test cannot read", fset.Position(e.Pos()))
			}
			routes[p] = append(routes[p], strings.ToUpper(strings.TrimPrefix(key.Sel.Name, "Method")))
		}
		return true
	})
	if len(routes) < 20 {
		t.Fatalf("read %d routes from routes.go: the parse is broken", len(routes))
	}

	// The consent callback is served by the handler itself (handler/routes.go), not by Server.
	src, err := os.ReadFile("../../routes.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`name: "ConsentCallback", http: "(\w+) (/[^"]+)"`).FindSubmatch(src)
	if m == nil {
		t.Fatal("handler/routes.go has no ConsentCallback row")
	}
	routes[string(m[2])] = []string{string(m[1])}
	return routes
}

func TestOpenAPICoversRoutes(t *testing.T) {
	doc := loadSpec(t)
	table := routeTable(t)

	// The parsed table is what the Server serves: a method it does not know gets 405 with Allow.
	srv := api.New(api.Deps{Logger: slog.New(slog.DiscardHandler)}) // New only builds the mux: no I/O
	for p, methods := range table {
		if !strings.HasPrefix(p, "/api/orgs/") {
			continue
		}
		concrete := regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(strings.Replace(p, "{org}", "org-a", 1), "x")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest("PROPFIND", concrete, nil))
		want := slices.Sorted(slices.Values(methods))
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != strings.Join(want, ", ") {
			t.Errorf("PROPFIND %s = %d Allow %q; routes.go says %v", concrete, w.Code, w.Header().Get("Allow"), want)
		}
	}

	var routed, documented []string
	for p, methods := range table {
		for _, m := range methods {
			routed = append(routed, m+" "+p)
		}
	}
	for name := range operations(doc) {
		documented = append(documented, name)
	}
	sort.Strings(routed)
	sort.Strings(documented)
	for _, r := range routed {
		if !slices.Contains(documented, r) {
			t.Errorf("routed but not documented: %s", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routed, d) {
			t.Errorf("documented but not routed: %s", d)
		}
	}
}

// checkSchema validates v (decoded JSON) against schema, for the subset of JSON Schema the
// document uses; a keyword it does not know is itself an error, so it never passes by ignoring.
func checkSchema(doc jsonObj, schema any, v any, at string) []string {
	s, ok := schema.(jsonObj)
	if !ok {
		return []string{at + ": schema is not an object"}
	}
	if ref, ok := s["$ref"].(string); ok {
		target, err := resolve(doc, ref)
		if err != nil {
			return []string{at + ": " + err.Error()}
		}
		return checkSchema(doc, target, v, at)
	}
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	for k := range s {
		switch k {
		case "type", "required", "properties", "additionalProperties", "items", "enum", "minimum", "maximum", "maxItems", "format",
			"description", "default", "title", "x-status":
		default:
			bad("schema keyword %q is not supported by checkSchema", k)
		}
	}
	if ty, ok := s["type"]; ok {
		var types []string
		switch ty := ty.(type) {
		case string:
			types = []string{ty}
		case []any:
			for _, e := range ty {
				types = append(types, e.(string))
			}
		}
		if !slices.ContainsFunc(types, func(ty string) bool { return isType(v, ty) }) {
			bad("%s is not of type %v", short(v), types)
			return errs
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		bad("%s is not one of %v", short(v), enum)
	}
	switch v := v.(type) {
	case jsonObj:
		props, _ := s["properties"].(jsonObj)
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := v[r.(string)]; !ok {
					bad("required property %q is missing", r)
				}
			}
		}
		for k, e := range v {
			if ps, ok := props[k]; ok {
				errs = append(errs, checkSchema(doc, ps, e, at+"."+k)...)
			} else if s["additionalProperties"] == false {
				bad("property %q is not documented", k)
			}
		}
	case []any:
		if n, ok := s["maxItems"].(float64); ok && float64(len(v)) > n {
			bad("%d items, at most %v", len(v), n)
		}
		if items, ok := s["items"]; ok {
			for i, e := range v {
				errs = append(errs, checkSchema(doc, items, e, at+"["+strconv.Itoa(i)+"]")...)
			}
		}
	case float64:
		if lo, ok := s["minimum"].(float64); ok && v < lo {
			bad("%v < minimum %v", v, lo)
		}
		if hi, ok := s["maximum"].(float64); ok && v > hi {
			bad("%v > maximum %v", v, hi)
		}
	case string:
		switch s["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
				bad("%q is not a date-time", v)
			}
		case "uri":
			if u, err := url.Parse(v); err != nil || !u.IsAbs() {
				bad("%q is not an absolute URI", v)
			}
		}
	}
	return errs
}

func isType(v any, ty string) bool {
	switch ty {
	case "object":
		_, ok := v.(jsonObj)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	case "null":
		return v == nil
	}
	return false
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}

// TestCheckSchema keeps the checker honest: it must fail on what it exists to catch.
func TestCheckSchema(t *testing.T) {
	doc := loadSpec(t)
	run := func(ref string) any { return jsonObj{"$ref": "#/components/schemas/" + ref} }
	good := `{"id":"1klxow0l9apkv-fc96","state":"succeeded","kind":"full","trigger":"manual","dryRun":false,"startedAt":"2026-03-01T09:00:00.001Z",
		"finishedAt":"2026-03-01T09:00:01Z","phase":"","step":2,"total":2,"pages":2,"processed":2,"created":2,"updated":0,"unchanged":0,"conflicts":0,
		"skipped":0,"deactivated":0,"reactivated":0,"linked":0,"invalid":0,"excluded":{"deleted":0,"outOfFilter":0,"disabled":0},"throttled":0,"errorCount":1,"pendingDeactivations":0,"synced":2,"groupsSynced":0,
		"membersAdded":0,"membersRemoved":0,"changes":3,
		"errors":[{"code":"invalid_data","object":"u1","detail":"no mail","hint":"fix it in Entra"}]}`
	for _, tc := range []struct {
		name, schema, json string
		edit               func(jsonObj)
		ok                 bool
	}{
		{"valid run", "Run", good, nil, true},
		{"errors null", "Run", good, func(m jsonObj) { m["errors"] = nil }, true},
		{"no finishedAt", "Run", good, func(m jsonObj) { delete(m, "finishedAt") }, true},
		{"missing id", "Run", good, func(m jsonObj) { delete(m, "id") }, false},
		{"missing errors", "Run", good, func(m jsonObj) { delete(m, "errors") }, false},
		{"step as string", "Run", good, func(m jsonObj) { m["step"] = "2" }, false},
		{"step fractional", "Run", good, func(m jsonObj) { m["step"] = 1.5 }, false},
		{"negative count", "Run", good, func(m jsonObj) { m["created"] = -1.0 }, false},
		{"missing count", "Run", good, func(m jsonObj) { delete(m, "reactivated") }, false},
		{"unknown phase", "Run", good, func(m jsonObj) { m["phase"] = "later" }, false},
		{"held with hold", "Run", good, func(m jsonObj) {
			m["state"] = "held"
			m["hold"] = jsonObj{"deactivations": 1.0, "activeSynced": 2.0, "threshold": "more than 20%"}
		}, true},
		{"hold without threshold", "Run", good, func(m jsonObj) { m["hold"] = jsonObj{"deactivations": 1.0, "activeSynced": 2.0} }, false},
		{"progress percent over 100", "Run", good, func(m jsonObj) {
			m["progress"] = jsonObj{"phase": "users", "processed": 3.0, "total": 2.0, "percent": 150.0}
		}, false},
		{"unknown state", "Run", good, func(m jsonObj) { m["state"] = "done" }, false},
		{"cancelled by someone", "Run", good, func(m jsonObj) { m["state"] = "cancelled"; m["cancelledBy"] = "admin@contoso.example" }, true},
		{"every trigger", "Run", good, func(m jsonObj) { m["trigger"] = "resync" }, true},
		{"unknown trigger", "Run", good, func(m jsonObj) { m["trigger"] = "webhook" }, false},
		{"undocumented field", "Run", good, func(m jsonObj) { m["nextLink"] = "https://graph.example" }, false},
		{"errors not array", "Run", good, func(m jsonObj) { m["errors"] = "none" }, false},
		{"bad run error", "Run", good, func(m jsonObj) { delete(m["errors"].([]any)[0].(jsonObj), "hint") }, false},
		{"bad date", "Run", good, func(m jsonObj) { m["startedAt"] = "yesterday" }, false},
		{"valid problem", "Problem", `{"type":"urn:leapchange:problem:not-found","title":"Not Found","status":404}`, nil, true},
		{"unknown problem type", "Problem", `{"type":"urn:leapchange:problem:oops","title":"Not Found","status":404}`, nil, false},
		{"problem without title", "Problem", `{"type":"urn:leapchange:problem:not-found","status":404}`, nil, false},
		{"field error without message", "Problem", `{"type":"urn:leapchange:problem:invalid-request","title":"Bad Request","status":400,"errors":[{"field":"org"}]}`, nil, false},
		{"connection not object", "Connection", `[]`, nil, false},
	} {
		var v any
		if err := json.Unmarshal([]byte(tc.json), &v); err != nil {
			t.Fatal(err)
		}
		if tc.edit != nil {
			tc.edit(v.(jsonObj))
		}
		errs := checkSchema(doc, run(tc.schema), v, "$")
		if (len(errs) == 0) != tc.ok {
			t.Errorf("%s: errors %v, want ok=%v", tc.name, errs, tc.ok)
		}
	}
	if errs := checkSchema(doc, jsonObj{"type": "string", "pattern": "x"}, "x", "$"); len(errs) == 0 {
		t.Error("an unsupported keyword passed silently")
	}
}

// conformance checks real answers against the document.
type conformance struct {
	t    *testing.T
	doc  jsonObj
	ops  map[string]jsonObj
	seen map[string]bool // "METHOD /path STATUS"
}

// match finds the documented operation of a concrete request path.
func (c *conformance) match(method, path string) (string, jsonObj) {
	for name, op := range c.ops {
		m, tmpl, _ := strings.Cut(name, " ")
		if m != method {
			continue
		}
		re := "^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`) + "$"
		if regexp.MustCompile(re).MatchString(path) {
			return name, op
		}
	}
	return "", nil
}

func (c *conformance) check(method, target string, resp *http.Response, raw []byte) {
	t := c.t
	t.Helper()
	u, _ := url.Parse(target)
	name, op := c.match(method, u.Path)
	if op == nil {
		t.Errorf("%s %s: no documented operation", method, u.Path)
		return
	}
	code := strconv.Itoa(resp.StatusCode)
	c.seen[name+" "+code] = true
	r, ok := op["responses"].(jsonObj)[code]
	if !ok {
		t.Errorf("%s answered %s, which is not documented: %s", name, code, raw)
		return
	}
	rs := deref(t, c.doc, r)
	headers, _ := rs["headers"].(jsonObj)
	for h, hv := range headers {
		if hv.(jsonObj)["required"] == true && resp.Header.Get(h) == "" {
			t.Errorf("%s %s: no %s header", name, code, h)
		}
	}
	content, _ := rs["content"].(jsonObj)
	if len(content) == 0 {
		if len(raw) != 0 {
			t.Errorf("%s %s: documented without a body, got %s", name, code, raw)
		}
		return
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	media, ok := content[mt].(jsonObj)
	if !ok {
		t.Errorf("%s %s: Content-Type %q is not documented", name, code, mt)
		return
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Errorf("%s %s: body is not JSON: %v", name, code, err)
		return
	}
	for _, e := range checkSchema(c.doc, media["schema"], v, "$") {
		t.Errorf("%s %s: %s\nbody: %s", name, code, e, raw)
	}
}

// call makes one request to base+target, with header name/value pairs, and checks the answer;
// it returns the decoded body.
func (c *conformance) call(base, method, target, body string, header ...string) (*http.Response, jsonObj) {
	t := c.t
	t.Helper()
	req := jsonRequest(t, method, base+target, body, header...)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	c.check(method, target, resp, raw)
	var m jsonObj
	_ = json.Unmarshal(raw, &m)
	return resp, m
}

// staleETag is an ETag of Table Storage's form that matches nothing.
const staleETag = `W/"datetime'2020-01-01T00%3A00%3A00.0000000Z'"`

func TestOpenAPIResponses(t *testing.T) {
	doc := loadSpec(t)
	c := &conformance{t: t, doc: doc, ops: operations(doc), seen: map[string]bool{}}
	f := setup(t)
	srv := f.srv.URL
	const a, fresh = "/api/orgs/org-a/m365", "/api/orgs/org-new/m365"

	// The org registry: register, update, read, erase; an unknown org is a 404 everywhere.
	c.call(srv, "PUT", "/api/orgs/acme", `{"displayName":"Acme","timeZone":"Europe/Paris"}`)                  // 201
	c.call(srv, "PUT", "/api/orgs/acme", `{"displayName":"Acme Ltd","timeZone":"Europe/Paris"}`)              // 200
	c.call(srv, "PUT", "/api/orgs/acme", `{"displayName":"","timeZone":"Mars/Base"}`)                         // 400
	c.call(srv, "GET", "/api/orgs/acme", "")                                                                  // 200
	c.call(srv, "DELETE", "/api/orgs/acme", "")                                                               // 200 report
	c.call(srv, "GET", "/api/orgs/acme", "")                                                                  // 404
	c.call(srv, "GET", "/api/orgs/acme/m365", "")                                                             // 404 unregistered
	c.call(srv, "GET", "/api/orgs/%2e%2e/m365", "")                                                           // 400 org
	c.call(srv, "GET", fresh, "")                                                                             // disconnected, never bound
	c.call(srv, "POST", fresh+"/connect", `{"allowSharedTenant":true}`)                                       // 400: sharing is an operator setting
	c.call(srv, "POST", fresh+"/connect", `{}`)                                                               // pending
	c.call(srv, "POST", fresh+"/connect/confirm", `{"ticket":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`) // 400 invalid ticket
	c.call(srv, "GET", fresh, "")                                                                             // pending
	c.call(srv, "GET", a, "")                                                                                 // connected
	c.call(srv, "GET", a+"/status", "")                                                                       // no runs yet
	resp, started := c.call(srv, "POST", a+"/sync", "")                                                       // 202
	id, _ := started["runId"].(string)
	if resp.StatusCode != http.StatusAccepted || id == "" {
		t.Fatalf("POST sync = %d %v", resp.StatusCode, started)
	}
	c.call(srv, "POST", a+"/sync", `{"dryRun":false}`) // 202, started false
	c.call(srv, "GET", a+"/sync/runs/"+id, "")         // running
	c.call(srv, "GET", a+"/status", "")                // running
	drain(t, f.q, f.eng)
	c.call(srv, "GET", a+"/sync/runs/"+id, "") // succeeded
	// Cancel: a finished run is 409, an unknown one 404, a bad body 400; a running dry run is
	// cancelled (a dry run, so the status answers below still show the real runs).
	c.call(srv, "POST", a+"/sync/runs/"+id+"/cancel", "")             // 409 succeeded
	c.call(srv, "POST", a+"/sync/runs/1klxow0l9apkv-fc96/cancel", "") // 404
	_, preview := c.call(srv, "POST", a+"/sync", `{"dryRun":true}`)   // 202
	previewID, _ := preview["runId"].(string)
	c.call(srv, "POST", a+"/sync/runs/"+previewID+"/cancel", `{"cancelledBy":1}`)                       // 400
	c.call(srv, "POST", a+"/sync/runs/"+previewID+"/cancel", `{"cancelledBy":"admin@contoso.example"}`) // 200
	c.call(srv, "GET", a+"/sync/runs/"+previewID, "")                                                   // cancelled, cancelledBy
	// Settings: defaults, invalid, stale, then a group filter with group sync.
	c.call(srv, "GET", a+"/settings", "")                                                                         // defaults, no ETag
	c.call(srv, "PUT", a+"/settings", `{"mergeStrategy":"newest","timeZone":"Mars/Base","groupFilter":["nope"]}`) // 400
	c.call(srv, "PUT", a+"/settings", `{"frequency":"daily"}`, "If-Match", staleETag)                             // 412
	c.call(srv, "GET", a+"/groups?search=change&limit=5", "")
	c.call(srv, "GET", fresh+"/groups", "") // 409 not connected
	c.call(srv, "GET", a+"/groups?limit=0", "")

	c.call(srv, "POST", a+"/sync", "")  // a second run, left running
	c.call(srv, "GET", a+"/status", "") // lastRun, running, lastSync
	c.call(srv, "GET", a+"/sync/runs", "")
	c.call(srv, "GET", a+"/sync/runs?limit=1", "")
	resp, _ = c.call(srv, "PUT", a+"/settings", `{"frequency":"daily","timeZone":"Europe/London","groupFilter":["`+knownGroup+`"],"groupSync":true}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT settings = %d", resp.StatusCode)
	}
	c.call(srv, "GET", a+"/settings", "") // saved, with ETag
	drain(t, f.q, f.eng)                  // u2 is out of the filter: 1 of 2 deactivations is over the guard's 20%
	runs, _ := f.eng.Runs(t.Context(), tablestoretest.Org(t, "org-a"), 1)
	if len(runs) != 1 || runs[0].State != "held" {
		t.Fatalf("the second run is %+v, want held by the deletion guard", runs)
	}
	held := runs[0].ID
	c.call(srv, "GET", a+"/status", "")                                                            // running: the held run, with its hold
	c.call(srv, "GET", a+"/sync/runs/"+held, "")                                                   // held, with changes
	c.call(srv, "POST", a+"/sync/runs/"+held+"/approve", `{"approvedBy":"admin@contoso.example"}`) // 200
	c.call(srv, "POST", a+"/sync/runs/"+held+"/approve", "")                                       // 409 not held
	c.call(srv, "POST", a+"/sync/runs/1klxow0l9apkv-fc96/approve", "")                             // 404
	drain(t, f.q, f.eng)                                                                           // deactivates u2, mirrors the group
	c.call(srv, "GET", a+"/sync/runs/"+held+"?changesLimit=1", "")                                 // succeeded, nextChangesAfter
	c.call(srv, "GET", a+"/sync/runs/"+held+"?changesLimit=0", "")                                 // 400

	// A dry run.
	_, dry := c.call(srv, "POST", a+"/sync", `{"dryRun":true}`) // 202
	c.call(srv, "GET", a+"/status", "")
	drain(t, f.q, f.eng)
	c.call(srv, "GET", a+"/sync/runs/"+dry["runId"].(string), "")

	// Stakeholder groups.
	_, groups := c.call(srv, "GET", "/api/orgs/org-a/groups", "")
	gl, _ := groups["groups"].([]any)
	if len(gl) != 1 {
		t.Fatalf("groups after a group sync = %v, want the mirrored group", groups)
	}
	c.call(srv, "GET", "/api/orgs/org-a/groups/"+gl[0].(jsonObj)["id"].(string)+"/members", "")
	c.call(srv, "GET", "/api/orgs/org-a/groups/nosuch/members", "") // 404

	// The stakeholder directory.
	const sk = "/api/orgs/org-a/stakeholders"
	_, list := c.call(srv, "GET", sk+"?limit=1", "")
	c.call(srv, "GET", sk+"?after="+url.QueryEscape(list["next"].(string))+"&source=entra&active=false", "")
	c.call(srv, "GET", sk+"?source=ldap", "")                                                                                             // 400
	resp, made := c.call(srv, "POST", sk, `{"firstName":"Grace","lastName":"Hopper","email":"grace@contoso.example","influence":"high"}`) // 201
	mid, _ := made["id"].(string)
	if resp.StatusCode != http.StatusCreated || mid == "" {
		t.Fatalf("POST stakeholder = %d %v", resp.StatusCode, made)
	}
	c.call(srv, "POST", sk, `{"email":"not an address"}`) // 400
	resp, _ = c.call(srv, "GET", sk+"/"+mid, "")
	etag := resp.Header.Get("ETag")
	c.call(srv, "GET", sk+"/nosuch", "")                                                         // 404
	c.call(srv, "PUT", sk+"/"+mid, `{"firstName":"Grace","role":"Admiral"}`)                     // 428
	c.call(srv, "PUT", sk+"/"+mid, `{"firstName":"Grace","role":"Admiral"}`, "If-Match", etag)   // 200
	c.call(srv, "PUT", sk+"/"+mid, `{"firstName":"Grace","role":"Commodore"}`, "If-Match", etag) // 412
	c.call(srv, "PUT", sk+"/nosuch", `{"firstName":"Grace"}`, "If-Match", etag)                  // 404
	c.call(srv, "DELETE", sk+"/"+mid, "", "If-Match", etag)                                      // 412
	c.call(srv, "DELETE", sk+"/"+list["stakeholders"].([]any)[0].(jsonObj)["id"].(string), "")   // 409 synced
	c.call(srv, "DELETE", sk+"/"+mid, "")                                                        // 204

	checkConflictAnswers(t, c, f, srv) // open sync conflicts

	// Error answers.
	c.call(srv, "POST", "/api/orgs/org-b/m365/sync", "")      // 409 not-connected
	c.call(srv, "GET", a+"/sync/runs/1klxow0l9apkv-fc96", "") // 404
	c.call(srv, "GET", a+"/sync/runs?limit=0", "")            // 400
	c.call(srv, "POST", a+"/connect", `{"allowShared":true}`) // 400
	c.call(srv, "GET", "/api/orgs/it's/m365", "")             // 400 org
	c.call(srv, "DELETE", a, "")                              // 204
	c.call(srv, "GET", a, "")                                 // disconnected, tenant kept

	// The consent callback: a bad state is a 400 problem, without a redirect.
	store := tablestoretest.Open(t)
	flow := consent.New(consent.Config{Store: store, Connections: connection.NewStore(store), ClientID: "6d0a4f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6",
		PublicBaseURL: "https://leap.example.net", LeapAppURL: "https://app.leap.example.net/settings", Key: []byte("0123456789abcdef0123456789abcdef")})
	cb := httptest.NewServer(flow.Callback())
	t.Cleanup(cb.Close)
	c.call(cb.URL, "GET", "/api/consent/callback?state=forged&tenant=x&admin_consent=True", "")

	// The confirm step's answers. A ticket comes only from a real sign-in (the consent package
	// tests that flow end to end), so a stand-in consenter gives each outcome here.
	stub := httptest.NewServer(api.New(api.Deps{Orgs: everyOrg{}, Connections: connectedStub{}, Consent: confirmStub{}}))
	t.Cleanup(stub.Close)
	c.call(stub.URL, "POST", "/api/orgs/org-a/m365/connect/confirm", `{"ticket":"good"}`)   // 200
	c.call(stub.URL, "POST", "/api/orgs/org-a/m365/connect/confirm", `{"ticket":"in-use"}`) // 409
	c.call(stub.URL, "POST", "/api/orgs/org-a/m365/connect/confirm", `{}`)                  // 400 no ticket

	// Messages and mail settings, on a fixture with the simulated tenant and the pipeline.
	mf := setupMail(t, false)
	const m = "/api/orgs/org-m"
	c.call(mf.srv.URL, "GET", m+"/m365/settings/mail", "")                                                                                                                 // 200, no senders
	c.call(mf.srv.URL, "POST", m+"/messages", `{"recipients":{"stakeholderIds":["`+mf.people[0]+`"]},"channels":["mail"],"kind":"notification","subject":"s","text":"t"}`) // 409 not ready
	c.call(mf.srv.URL, "PUT", m+"/m365/settings/mail", `{"senders":["ghost@contoso.example"]}`)                                                                            // 400
	c.call(mf.srv.URL, "PUT", m+"/m365/settings/mail", `{"senders":["notify@contoso.example"]}`)                                                                           // 200
	c.call(mf.srv.URL, "PUT", m+"/m365/settings/mail", `{"senders":["notify@contoso.example"]}`, "If-Match", staleETag)                                                    // 412
	send := `{"recipients":{"stakeholderIds":["` + strings.Join(mf.people, `","`) + `","gone"]},"channels":["mail"],"kind":"notification","subject":"s","text":"t","idempotencyKey":"k1"}`
	_, accepted := c.call(mf.srv.URL, "POST", m+"/messages", send)     // 202
	c.call(mf.srv.URL, "POST", m+"/messages", send)                    // 200, the same batch
	c.call(mf.srv.URL, "POST", m+"/messages", `{"channels":["mail"]}`) // 400
	batch, _ := accepted["batchId"].(string)
	c.call(mf.srv.URL, "GET", m+"/messages", "")                          // 200
	c.call(mf.srv.URL, "GET", m+"/messages?limit=x", "")                  // 400
	c.call(mf.srv.URL, "GET", m+"/messages/"+batch+"?limit=2", "")        // 200
	c.call(mf.srv.URL, "GET", m+"/messages/"+batch+"?status=nope", "")    // 400
	c.call(mf.srv.URL, "GET", m+"/messages/bffffffffffff00000000", "")    // 404
	c.call(mf.srv.URL, "DELETE", m+"/messages/"+batch, "")                // 200
	c.call(mf.srv.URL, "DELETE", m+"/messages/bffffffffffff00000000", "") // 404

	// Change summaries, on a fixture with the change store.
	cf := setupChanges(t)
	const ch = "/api/orgs/org-a/changes/"
	resp, _ = c.call(cf.srv.URL, "PUT", ch+"CH-1", changeBody) // 201
	changeTag := resp.Header.Get("ETag")
	c.call(cf.srv.URL, "PUT", ch+"CH-1", changeBody, "If-Match", changeTag) // 200
	c.call(cf.srv.URL, "PUT", ch+"CH-1", changeBody, "If-Match", changeTag) // 412
	c.call(cf.srv.URL, "PUT", ch+"CH-1", `{"title":"","status":"planned"}`) // 400
	c.call(cf.srv.URL, "PUT", "/api/orgs/org-z/changes/CH-1", changeBody)   // 404 unknown org
	c.call(cf.srv.URL, "GET", ch+"CH-1", "")                                // 200
	c.call(cf.srv.URL, "GET", ch+"nosuch", "")                              // 404
	c.call(cf.srv.URL, "DELETE", ch+"CH-1", "", "If-Match", staleETag)      // 412
	c.call(cf.srv.URL, "DELETE", ch+"CH-1", "")                             // 204
	c.call(cf.srv.URL, "DELETE", ch+"bad~id", "")                           // 400

	// A survey invitation: the survey on the batch, its answers counted.
	survey := `{"recipients":{"stakeholderIds":["` + mf.people[0] + `"]},"channels":["mail"],"kind":"survey_invitation","subject":"s","text":"t",` +
		`"survey":{"url":"https://forms.example/s/1","question":"Ready?","choices":["Yes","No"]}}`
	_, invited := c.call(mf.srv.URL, "POST", m+"/messages", survey)                                                                                           // 202
	c.call(mf.srv.URL, "GET", m+"/messages/"+invited["batchId"].(string), "")                                                                                 // 200 with survey, responses
	c.call(mf.srv.URL, "POST", m+"/messages", strings.Replace(survey, `"question":"Ready?",`, "", 1))                                                         // 400 survey.question
	c.call(mf.srv.URL, "POST", m+"/messages", `{"recipients":{"stakeholderIds":["`+mf.people[0]+`"]},"channels":["teams"],"kind":"notification","text":"t"}`) // 409 Teams not connected

	// Teams, over the Teams connector with the tenant stood in for (teams_test.go).
	tf := setupTeams(t)
	c.call(tf.srv.URL, "GET", teamsOrg+"/teams", "")                                                             // 200 disconnected
	c.call(tf.srv.URL, "POST", teamsOrg+"/teams/connect", `{"defaultChannels":[{"teamId":"","channelId":"x"}]}`) // 400
	c.call(tf.srv.URL, "POST", teamsOffline+"/teams/connect", "")                                                // 409 no Microsoft 365 connection
	tf.tenant.reset(func(s *tenantState) { s.granted = []string{"Team.ReadBasic.All"} })
	c.call(tf.srv.URL, "POST", teamsOrg+"/teams/connect", "") // 409 missingPermissions
	tf.tenant.reset(func(s *tenantState) { s.fail["Roles"] = &errkind.Error{Kind: errkind.Unavailable, Status: 503} })
	c.call(tf.srv.URL, "POST", teamsOrg+"/teams/connect", "") // 502
	tf.tenant.reset(nil)
	c.call(tf.srv.URL, "POST", teamsOrg+"/teams/connect", `{"defaultChannels":[{"teamId":"`+teamOps+`","channelId":"`+chanGeneral+`"}]}`) // 200
	c.call(tf.srv.URL, "POST", teamsOrg+"/teams/connect", "")                                                                             // 200, no channels
	c.call(tf.srv.URL, "GET", teamsOrg+"/teams", "")                                                                                      // 200 connected
	c.call(tf.srv.URL, "GET", teamsOrg+"/teams/channels?search=op", "")                                                                   // 200
	c.call(tf.srv.URL, "GET", teamsOrg+"/teams/channels?search="+strings.Repeat("x", 101), "")                                            // 400
	c.call(tf.srv.URL, "GET", teamsOffline+"/teams/channels", "")                                                                         // 409 not-connected
	tf.tenant.reset(func(s *tenantState) { s.fail["Teams"] = &errkind.Error{Kind: errkind.Forbidden, Status: 403} })
	c.call(tf.srv.URL, "GET", teamsOrg+"/teams/channels", "") // 409 missingPermissions
	tf.tenant.reset(func(s *tenantState) { s.fail["Channels"] = &errkind.Error{Kind: errkind.Unavailable, Status: 504} })
	c.call(tf.srv.URL, "GET", teamsOrg+"/teams/channels", "") // 502
	c.call(tf.srv.URL, "DELETE", teamsOrg+"/teams", "")       // 204
	c.call(tf.srv.URL, "GET", teamsOrg+"/teams", "")          // 200 disconnected, record kept
	c.call(tf.srv.URL, "GET", "/api/orgs/org-z/teams", "")    // 404 unknown org

	// Channel insights (insights_test.go): a page with a cursor, its next page, filters, bad input.
	inf := setupInsights(t)
	_, page := c.call(inf.srv.URL, "GET", insightsPath+"?limit=2", "") // 200
	c.call(inf.srv.URL, "GET", insightsPath+"?limit=2&after="+url.QueryEscape(page["next"].(string)), "")
	c.call(inf.srv.URL, "GET", insightsPath+"?channel="+url.QueryEscape(insightTeam+"|"+insightChanA)+"&keyword=migration&text=caf&from=2026-03-01T09:00:00Z&to=2026-03-02T00:00:00Z", "")
	c.call(inf.srv.URL, "GET", insightsPath+"?from=yesterday", "") // 400
	c.call(inf.srv.URL, "GET", "/api/orgs/org-z/insights", "")     // 404 unknown org

	// Channel monitoring (monitoring_test.go): a real Monitor, Microsoft stood in for.
	mon := setupMonitoring(t)
	const mp = teamsOrg + "/teams/monitoring"
	monBody := monitoringBody(true, monitorChannel(teamOps, chanGeneral), monitorChannel(teamOps, chanAlerts))
	c.call(mon.srv.URL, "GET", mp, "")                                    // 200, never configured
	c.call(mon.srv.URL, "GET", "/api/orgs/org-z/teams/monitoring", "")    // 404 unknown org
	c.call(mon.srv.URL, "PUT", mp, `{"enabled":true,"keywords":[" "]}`)   // 400
	c.call(mon.srv.URL, "PUT", mp, monBody, "If-Match", staleETag)        // 412
	c.call(mon.srv.URL, "PUT", teamsOffline+"/teams/monitoring", monBody) // 409 Teams not connected
	c.call(mon.srv.URL, "PUT", "/api/orgs/org-z/teams/monitoring", monBody)
	mon.tenant.reset(func(s *tenantState) { s.fail["ChannelNames"] = &errkind.Error{Kind: errkind.Forbidden, Status: 403} })
	c.call(mon.srv.URL, "PUT", mp, monBody) // 409 missingPermissions
	mon.tenant.reset(func(s *tenantState) { s.fail["ChannelNames"] = &errkind.Error{Kind: errkind.Unauthorized, Status: 401} })
	c.call(mon.srv.URL, "PUT", mp, monBody) // 409 not-connected
	mon.tenant.reset(func(s *tenantState) { s.fail["ChannelNames"] = &errkind.Error{Kind: errkind.Unavailable, Status: 503} })
	c.call(mon.srv.URL, "PUT", mp, monBody) // 502
	mon.tenant.reset(nil)
	mon.graph.Refuse(resource(teamOps, chanAlerts), &errkind.Error{Kind: errkind.Forbidden, Status: 403})
	resp, _ = c.call(mon.srv.URL, "PUT", mp, monBody) // 200, one subscription refused: status.lastError
	c.call(mon.srv.URL, "GET", mp, "")                // 200 with ETag, subscriptions, status
	mon.graph.Heal()
	mon.clock.Advance(48 * time.Hour)
	mon.graph.FailRenewals(&errkind.Error{Kind: errkind.Unavailable, Status: 503})
	c.call(mon.srv.URL, "PUT", mp, monBody, "If-Match", resp.Header.Get("ETag")) // 200, a renewal failed: the subscription's lastError
	mon.graph.Heal()
	c.call(mon.srv.URL, "PUT", mp, `{"enabled":false}`) // 200, subscriptions deleted

	// Every implemented operation was seen answering its success status.
	for name, op := range c.ops {
		if op["x-status"] == "planned" || strings.HasSuffix(name, "/api/consent/callback") {
			continue
		}
		var ok2xx bool
		for code := range op["responses"].(jsonObj) {
			if strings.HasPrefix(code, "2") && c.seen[name+" "+code] {
				ok2xx = true
			}
		}
		if !ok2xx {
			t.Errorf("%s: no success answer checked", name)
		}
	}
	for _, want := range []string{"PUT /api/orgs/{org} 201", "PUT /api/orgs/{org} 200", "PUT /api/orgs/{org} 400",
		"GET /api/orgs/{org} 404", "GET /api/orgs/{org}/m365 404", "DELETE /api/orgs/{org} 200",
		"POST /api/orgs/{org}/m365/sync 409", "GET /api/orgs/{org}/m365/sync/runs/{runId} 404",
		"GET /api/orgs/{org}/insights 200", "GET /api/orgs/{org}/insights 400", "GET /api/orgs/{org}/insights 404", "GET /api/consent/callback 400",
		"PUT /api/orgs/{org}/m365/settings 400", "PUT /api/orgs/{org}/m365/settings 412", "GET /api/orgs/{org}/m365/groups 409",
		"POST /api/orgs/{org}/m365/sync/runs/{runId}/approve 409", "POST /api/orgs/{org}/m365/sync/runs/{runId}/approve 404",
		"POST /api/orgs/{org}/m365/sync/runs/{runId}/cancel 409", "POST /api/orgs/{org}/m365/sync/runs/{runId}/cancel 404",
		"POST /api/orgs/{org}/m365/sync/runs/{runId}/cancel 400",
		"POST /api/orgs/{org}/stakeholders 400", "GET /api/orgs/{org}/stakeholders/{id} 404",
		"PUT /api/orgs/{org}/stakeholders/{id} 428", "PUT /api/orgs/{org}/stakeholders/{id} 412", "PUT /api/orgs/{org}/stakeholders/{id} 404",
		"DELETE /api/orgs/{org}/stakeholders/{id} 409", "DELETE /api/orgs/{org}/stakeholders/{id} 412",
		"GET /api/orgs/{org}/groups/{id}/members 404",
		"POST /api/orgs/{org}/messages 202", "POST /api/orgs/{org}/messages 200", "POST /api/orgs/{org}/messages 409", "POST /api/orgs/{org}/messages 400",
		"GET /api/orgs/{org}/messages/{batchId} 404", "PUT /api/orgs/{org}/m365/settings/mail 400", "PUT /api/orgs/{org}/m365/settings/mail 412",
		"DELETE /api/orgs/{org}/messages/{batchId} 200",
		"PUT /api/orgs/{org}/changes/{changeId} 201", "PUT /api/orgs/{org}/changes/{changeId} 200", "PUT /api/orgs/{org}/changes/{changeId} 412",
		"PUT /api/orgs/{org}/changes/{changeId} 400", "PUT /api/orgs/{org}/changes/{changeId} 404", "GET /api/orgs/{org}/changes/{changeId} 404",
		"DELETE /api/orgs/{org}/changes/{changeId} 204", "DELETE /api/orgs/{org}/changes/{changeId} 412", "DELETE /api/orgs/{org}/changes/{changeId} 400",
		"POST /api/orgs/{org}/teams/connect 200", "POST /api/orgs/{org}/teams/connect 400", "POST /api/orgs/{org}/teams/connect 409",
		"POST /api/orgs/{org}/teams/connect 502", "GET /api/orgs/{org}/teams 200", "GET /api/orgs/{org}/teams 404", "DELETE /api/orgs/{org}/teams 204",
		"GET /api/orgs/{org}/teams/channels 200", "GET /api/orgs/{org}/teams/channels 400", "GET /api/orgs/{org}/teams/channels 409",
		"GET /api/orgs/{org}/teams/channels 502",
		"GET /api/orgs/{org}/teams/monitoring 200", "GET /api/orgs/{org}/teams/monitoring 404", "PUT /api/orgs/{org}/teams/monitoring 200",
		"PUT /api/orgs/{org}/teams/monitoring 400", "PUT /api/orgs/{org}/teams/monitoring 404", "PUT /api/orgs/{org}/teams/monitoring 409",
		"PUT /api/orgs/{org}/teams/monitoring 412", "PUT /api/orgs/{org}/teams/monitoring 502"} {
		if !c.seen[want] {
			t.Errorf("not checked: %s", want)
		}
	}
}

// confirmStub is a consenter whose Confirm answers by ticket: "good" connects, "in-use" is
// refused, anything else is not a ticket.
type confirmStub struct{}

func (confirmStub) Begin(context.Context, tablestore.Org) (string, time.Time, error) {
	return "", time.Time{}, errors.New("not in this test")
}
func (confirmStub) Disconnect(context.Context, tablestore.Org) error { return nil }
func (confirmStub) Confirm(_ context.Context, org tablestore.Org, ticket string) (consent.Outcome, error) {
	switch ticket {
	case "good":
		return consent.Outcome{Org: org, Connected: true}, nil
	case "in-use":
		return consent.Outcome{Org: org, Reason: "tenant_in_use", Detail: "this Microsoft 365 tenant is already connected to another Leap Change organization"}, nil
	}
	return consent.Outcome{}, consent.ErrBadTicket
}

// connectedStub is a connection store with every org connected.
type connectedStub struct{}

func (connectedStub) Get(context.Context, tablestore.Org) (connection.Record, tablestore.ETag, error) {
	return connection.Record{Status: connection.Connected, TenantID: "11111111-2222-3333-4444-555555555555", Granted: []string{"User.Read.All"}, Missing: []string{"GroupMember.Read.All", "Mail.Send"}}, "", nil
}
func (connectedStub) Tenant(context.Context, tablestore.Org) (string, error) {
	return "11111111-2222-3333-4444-555555555555", nil
}
