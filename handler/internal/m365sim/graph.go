package m365sim

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// graphContentType is what Microsoft Graph sends for JSON payloads.
const graphContentType = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"

// gctx is an authenticated Graph call: the tenant selected by the token and the granted roles.
type gctx struct {
	t     *tenant
	appID string
	roles []string
	base  string // scheme://host of the request, for links
	now   time.Time
}

// gresp is a handler's answer; it is written after the state lock is released.
type gresp struct {
	status int
	body   []byte
	err    *gerr
	hdr    map[string]string
}

type gerr struct {
	status        int
	code, message string
}

func errResp(status int, code, msg string) gresp {
	return gresp{err: &gerr{status: status, code: code, message: msg}}
}

func notFound(id string) gresp {
	return errResp(http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", id))
}

func unsupported(msg string) gresp {
	return errResp(http.StatusBadRequest, "Request_UnsupportedQuery", msg)
}

// unhandledQuery marks a request the sim deliberately does not implement (answered 501 and
// counted as unhandled) as opposed to one Graph itself rejects.
func unhandledQuery(msg string) gresp {
	return errResp(http.StatusNotImplemented, "NotImplemented", "m365sim: "+msg)
}

type graphHandler func(r *http.Request, g *gctx) gresp

func isDelta(seg string) bool { return seg == "delta" || seg == "delta()" }

func (s *Server) graphRoute(r *http.Request, segs []string) route {
	if rt, ok := s.mailRoute(r, segs); ok {
		return rt
	}
	if rt, ok := s.teamsRoute(r, segs); ok {
		return rt
	}
	if rt, ok := s.channelMessagesRoute(r, segs); ok {
		return rt
	}
	if rt, ok := s.subscriptionsRoute(r, segs); ok {
		return rt
	}
	if r.Method != http.MethodGet {
		return route{}
	}
	n := len(segs)
	at := func(i int, v string) bool { return i < n && segs[i] == v }
	switch {
	case n == 1 && at(0, "users"):
		return route{"users", s.graph(permUsersRead, s.listUsers)}
	case n == 2 && at(0, "users") && isDelta(segs[1]):
		return route{"users/delta", s.graph(permUsersRead, s.usersDelta)}
	case n == 2 && at(0, "users") && segs[1] != "":
		return route{"user", s.graph(permUsersRead, s.getUser)}
	case n == 3 && at(0, "users") && at(2, "manager"):
		return route{"manager", s.graph(permUsersRead, s.getManager)}
	case n == 1 && at(0, "groups"):
		return route{"groups", s.graph(permMembersRead, s.listGroups)}
	case n == 2 && at(0, "groups") && isDelta(segs[1]):
		return route{"groups/delta", s.graph(permMembersRead, s.groupsDelta)}
	case n == 2 && at(0, "groups") && segs[1] != "":
		return route{"group", s.graph(permMembersRead, s.getGroup)}
	case (n == 3 || n == 4) && at(0, "groups") && (at(2, "members") || at(2, "transitiveMembers")):
		if n == 4 && castName(segs[3]) == "" {
			return route{}
		}
		return route{segs[2], s.graph(permMembersRead, s.listMembers)}
	case n == 1 && at(0, "servicePrincipals"):
		return route{"servicePrincipals", s.graph(permAppsRead, s.listServicePrincipals)}
	case n == 3 && at(0, "servicePrincipals") && at(2, "appRoleAssignments"):
		return route{"appRoleAssignments", s.graph(permAppsRead, s.appRoleAssignments)}
	}
	return route{}
}

// graph authenticates a Graph call, checks the permission, runs h under the state lock and
// writes its answer.
func (s *Server) graph(perms []string, h graphHandler) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) { s.writeGraph(w, r, s.runGraph(r, perms, h)) }
}

// writeGraph writes a handler's answer: Graph's error envelope or the body with Graph's
// content type (none for an empty body, as Graph's 202 and 204 answers).
func (s *Server) writeGraph(w http.ResponseWriter, r *http.Request, resp gresp) {
	for k, v := range resp.hdr {
		w.Header().Set(k, v)
	}
	if resp.err != nil {
		if resp.err.status == http.StatusNotImplemented {
			s.unhandled.Add(1)
			s.opts.Logger.WarnContext(r.Context(), resp.err.message, "url", r.URL.String())
		}
		if resp.err.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="`+baseURL(r)+`/common/oauth2/authorize", client_id="`+GraphAppID+`"`)
		}
		s.graphError(w, r, resp.err.status, resp.err.code, resp.err.message)
		return
	}
	if len(resp.body) > 0 {
		w.Header().Set("Content-Type", graphContentType)
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(cmp0(resp.status, http.StatusOK))
	w.Write(resp.body)
}

func cmp0(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func (s *Server) runGraph(r *http.Request, perms []string, h graphHandler) gresp {
	return s.runGraphDenied(r, perms, errResp(http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."), h)
}

// runGraphDenied is runGraph answering denied when the token has none of perms (the Outlook
// workload answers ErrorAccessDenied where the directory answers Authorization_RequestDenied).
func (s *Server) runGraphDenied(r *http.Request, perms []string, denied gresp, h graphHandler) gresp {
	authz := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok || strings.TrimSpace(tok) == "" {
		return errResp(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
	}
	c, err := parseJWT(strings.TrimSpace(tok))
	if err != nil {
		return errResp(http.StatusUnauthorized, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed or the signature is invalid: "+err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	switch {
	case c.Aud != GraphResource && c.Aud != GraphAppID:
		return errResp(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
	case now.Unix() >= c.Exp:
		return errResp(http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
	case now.Unix()+300 < c.Nbf:
		return errResp(http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is not yet valid.")
	case !strings.HasSuffix(c.Iss, "/"+c.Tid+"/v2.0"):
		return errResp(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid issuer.")
	}
	t, ok := s.tenants[c.Tid]
	if !ok {
		return errResp(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure: unknown tenant.")
	}
	s.byTenant[t.id]++
	if !slices.ContainsFunc(perms, func(p string) bool { return slices.Contains(c.Roles, p) }) {
		return denied
	}
	return h(r, &gctx{t: t, appID: c.AppID, roles: c.Roles, base: baseURL(r), now: now})
}

func (s *Server) graphError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	s.graphErrorInner(w, r, status, code, msg, "")
}

func (s *Server) graphErrorInner(w http.ResponseWriter, r *http.Request, status int, code, msg, innerCode string) {
	s.mu.Lock()
	now := s.now().UTC()
	s.mu.Unlock()
	var e enc
	e.open()
	e.key("error")
	e.open()
	e.str("code", code)
	e.str("message", msg)
	e.key("innerError")
	e.open()
	if innerCode != "" {
		e.str("code", innerCode)
	}
	e.str("date", now.Format("2006-01-02T15:04:05"))
	e.str("request-id", w.Header().Get("request-id"))
	e.str("client-request-id", w.Header().Get("client-request-id"))
	e.close()
	e.close()
	e.close()
	w.Header().Set("Content-Type", graphContentType)
	w.WriteHeader(status)
	w.Write(e.b)
}

// --- request helpers -------------------------------------------------------------------------

// checkQuery rejects $-options the handler does not know (501: the sim does not implement them).
func checkQuery(q url.Values, allowed ...string) *gresp {
	for k := range q {
		name := strings.TrimPrefix(k, "$")
		if slices.Contains(allowed, name) {
			continue
		}
		r := unhandledQuery(fmt.Sprintf("query option %q is not implemented on this route", k))
		return &r
	}
	return nil
}

func qget(q url.Values, name string) string {
	if v := q.Get("$" + name); v != "" {
		return v
	}
	return q.Get(name)
}

type prefer struct {
	maxPageSize int
	minimal     bool
}

func parsePrefer(r *http.Request) prefer {
	var p prefer
	for _, h := range r.Header.Values("Prefer") {
		for part := range strings.SplitSeq(h, ",") {
			part = strings.TrimSpace(part)
			if v, ok := strings.CutPrefix(part, "odata.maxpagesize="); ok {
				p.maxPageSize, _ = strconv.Atoi(v)
			}
			if strings.EqualFold(part, "return=minimal") {
				p.minimal = true
			}
		}
	}
	return p
}

func eventual(r *http.Request) bool {
	return strings.EqualFold(strings.TrimSpace(r.Header.Get("ConsistencyLevel")), "eventual")
}

// pageState is the opaque content of $skiptoken / $deltatoken values.
type pageState struct {
	K    string   `json:"k"`           // route kind
	T    string   `json:"t"`           // tenant
	C    int      `json:"c,omitempty"` // cursor
	S    uint64   `json:"s,omitempty"` // $select mask (users or groups)
	S2   uint64   `json:"s2,omitempty"`
	N    int      `json:"n,omitempty"` // page size from $top
	F    string   `json:"f,omitempty"` // $filter / $search text
	G    string   `json:"g,omitempty"` // group id
	X    bool     `json:"x,omitempty"` // $count=true
	Cast string   `json:"cast,omitempty"`
	E    int      `json:"e,omitempty"`  // delta epoch
	P    int      `json:"p,omitempty"`  // delta phase: 0 initial walk, 1 change round
	From int      `json:"fr,omitempty"` // delta log range
	To   int      `json:"to,omitempty"`
	M    int      `json:"m,omitempty"` // member offset inside the group at cursor
	I    int64    `json:"i,omitempty"` // issued (sim clock, unix seconds)
	Ids  []string `json:"ids,omitempty"`
}

func encodeState(p pageState) string {
	b, _ := json.Marshal(p)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeState(tok, kind string, g *gctx) (pageState, *gresp) {
	var p pageState
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || json.Unmarshal(b, &p) != nil || p.K != kind {
		r := errResp(http.StatusBadRequest, "Request_BadRequest", "Invalid or malformed skip token.")
		return p, &r
	}
	if p.T != g.t.id {
		r := errResp(http.StatusBadRequest, "Request_BadRequest", "The skip token was issued for another tenant.")
		return p, &r
	}
	return p, nil
}

// listPage writes a standard collection page.
func listPage(context string, count int, items func(e *enc), next string) []byte {
	return collectionPage(context, func(e *enc) {
		if count >= 0 {
			e.num("@odata.count", count)
		}
		if next != "" {
			e.str("@odata.nextLink", next)
		}
	}, items)
}

// objectList writes a collection page whose value array holds an object per item, as write
// fills it.
func objectList[T any](context string, count int, items []T, write func(e *enc, item T), next string) []byte {
	return listPage(context, count, func(e *enc) {
		for _, it := range items {
			e.elem()
			e.open()
			write(e, it)
			e.close()
		}
	}, next)
}

// pageAt cuts the page of at most size items that starts at offset from; end is where the next
// page starts (len(items) when this page is the last).
func pageAt[T any](items []T, from, size int) (page []T, end int) {
	end = min(from+size, len(items))
	return items[min(from, len(items)):end], end
}

// collectionPage encodes one page of a Graph collection: @odata.context, the annotations that
// annotate writes (count, next or delta link), then the value array that items fills.
func collectionPage(context string, annotate, items func(e *enc)) []byte {
	var e enc
	e.open()
	e.str("@odata.context", context)
	annotate(&e)
	e.key("value")
	e.openArr()
	items(&e)
	e.closeArr()
	e.close()
	return e.b
}

func parseTop(q url.Values) (int, *gresp) {
	v := qget(q, "top")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 999 {
		r := unsupported(fmt.Sprintf("Invalid page size specified: '%s'. Must be between 1 and 999 inclusive.", v))
		return 0, &r
	}
	return n, nil
}

func (s *Server) listPageSize(r *http.Request, top int) int {
	if top > 0 {
		return top
	}
	n := s.pageSize(100)
	if p := parsePrefer(r); p.maxPageSize > 0 && p.maxPageSize < n {
		n = p.maxPageSize
	}
	return n
}

// --- filters -------------------------------------------------------------------------------

type strFilter struct {
	prop, op, val string // op: eq, startswith
	boolVal       *bool
}

// parseFilter accepts the minimal $filter grammar the sim supports: clauses joined by "and",
// each `prop eq 'v'`, `prop eq true|false` or `startswith(prop,'v')`.
func parseFilter(f string, names []string) ([]strFilter, *gresp) {
	var out []strFilter
	if strings.TrimSpace(f) == "" {
		return nil, nil
	}
	bad := func() ([]strFilter, *gresp) {
		r := unsupported("Unsupported Query.")
		return nil, &r
	}
	for clause := range strings.SplitSeq(f, " and ") {
		clause = strings.TrimSpace(clause)
		var sf strFilter
		if rest, ok := strings.CutPrefix(strings.ToLower(clause), "startswith("); ok && strings.HasSuffix(rest, ")") {
			inner := clause[len("startswith(") : len(clause)-1]
			prop, val, ok := strings.Cut(inner, ",")
			if !ok {
				return bad()
			}
			sf = strFilter{prop: strings.TrimSpace(prop), op: "startswith", val: strings.TrimSpace(val)}
		} else {
			parts := strings.SplitN(clause, " ", 3)
			if len(parts) != 3 || !strings.EqualFold(parts[1], "eq") {
				return bad()
			}
			sf = strFilter{prop: parts[0], op: "eq", val: strings.TrimSpace(parts[2])}
		}
		if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, sf.prop) }) {
			return bad()
		}
		switch {
		case len(sf.val) >= 2 && sf.val[0] == '\'' && sf.val[len(sf.val)-1] == '\'':
			sf.val = strings.ReplaceAll(sf.val[1:len(sf.val)-1], "''", "'")
		case sf.op == "eq" && (sf.val == "true" || sf.val == "false"):
			b := sf.val == "true"
			sf.boolVal = &b
		default:
			return bad()
		}
		out = append(out, sf)
	}
	return out, nil
}

// matchesAll reports whether rec passes every filter; field answers its properties (built once,
// and only when there is a filter: a list without $filter allocates nothing per item).
func matchesAll[R any](filters []strFilter, rec R, field func(R) func(prop string) (string, bool, bool)) bool {
	if len(filters) == 0 {
		return true
	}
	get := field(rec)
	for _, f := range filters {
		if !f.match(get) {
			return false
		}
	}
	return true
}

func (f strFilter) match(get func(prop string) (string, bool, bool)) bool {
	s, b, isBool := get(strings.ToLower(f.prop))
	if f.boolVal != nil {
		return isBool && b == *f.boolVal
	}
	if isBool {
		return false
	}
	if f.op == "startswith" {
		return strings.HasPrefix(strings.ToLower(s), strings.ToLower(f.val))
	}
	return strings.EqualFold(s, f.val)
}

// stringField answers a filter's lookups of string properties: the one of names (in any case)
// has the value of vals at its index.
func stringField(names []string, vals ...string) func(prop string) (string, bool, bool) {
	return func(prop string) (string, bool, bool) {
		for i, n := range names {
			if strings.EqualFold(n, prop) {
				return vals[i], false, false
			}
		}
		return "", false, false
	}
}

func userField(u *userRec) func(string) (string, bool, bool) {
	return func(p string) (string, bool, bool) {
		switch p {
		case "id":
			return u.ID, false, false
		case "displayname":
			return u.DisplayName, false, false
		case "givenname":
			return u.GivenName, false, false
		case "surname":
			return u.Surname, false, false
		case "mail":
			return u.Mail, false, false
		case "userprincipalname":
			return u.UserPrincipalName, false, false
		case "department":
			return u.Department, false, false
		case "jobtitle":
			return u.JobTitle, false, false
		case "officelocation":
			return u.OfficeLocation, false, false
		case "employeeid":
			return u.EmployeeID, false, false
		case "accountenabled":
			return "", u.AccountEnabled, true
		}
		return "", false, false
	}
}

func groupField(g *groupRec) func(string) (string, bool, bool) {
	return func(p string) (string, bool, bool) {
		switch p {
		case "id":
			return g.ID, false, false
		case "displayname":
			return g.DisplayName, false, false
		case "description":
			return g.Description, false, false
		case "mail":
			return g.Mail, false, false
		case "mailnickname":
			return g.MailNickname, false, false
		case "mailenabled":
			return "", g.MailEnabled, true
		case "securityenabled":
			return "", g.SecurityEnabled, true
		}
		return "", false, false
	}
}

var userFilterProps = []string{"id", "displayName", "givenName", "surname", "mail", "userPrincipalName", "department", "jobTitle", "officeLocation", "employeeId", "accountEnabled"}
var groupFilterProps = []string{"id", "displayName", "description", "mail", "mailNickname", "mailEnabled", "securityEnabled"}

// --- users and groups ----------------------------------------------------------------------

func selectError(name, typ string) gresp {
	return errResp(http.StatusBadRequest, "Request_BadRequest", fmt.Sprintf("Could not find a property named '%s' on type 'Microsoft.DirectoryServices.%s'.", name, typ))
}

// objectKind is what the users and groups routes differ in.
type objectKind struct {
	coll        string   // collection: path segment, page-state kind and metadata entity set
	typ         string   // the type named in $select errors
	names       []string // property names by mask bit
	defaults    uint64   // the properties answered without $select
	nav         uint64   // the navigation property these routes refuse in $select
	navName     string   // its name
	filterProps []string // the properties $filter accepts
}

var (
	userKind  = objectKind{"users", "User", userPropNames, userDefaultProps, uManager, "manager", userFilterProps}
	groupKind = objectKind{"groups", "Group", groupPropNames, groupDefaultProps, gMembers, "members", groupFilterProps}
)

// selectMask parses the request's $select into a property mask.
func (k objectKind) selectMask(q url.Values) (uint64, *gresp) {
	mask, bad := parseSelect(qget(q, "select"), k.names, k.defaults)
	if bad != "" || mask&k.nav != 0 {
		return 0, new(selectError(cmp.Or(bad, k.navName), k.typ))
	}
	return mask, nil
}

// listStart reads a list request: the state its $skiptoken carries, or for a first page the
// state its query builds (allowed names the query options the route accepts), and the parsed
// $filter.
func (k objectKind) listStart(r *http.Request, g *gctx, allowed ...string) (pageState, []strFilter, *gresp) {
	q := r.URL.Query()
	var st pageState
	if tok := qget(q, "skiptoken"); tok != "" {
		p, e := decodeState(tok, k.coll, g)
		if e != nil {
			return st, nil, e
		}
		st = p
	} else {
		if e := checkQuery(q, allowed...); e != nil {
			return st, nil, e
		}
		mask, e := k.selectMask(q)
		if e != nil {
			return st, nil, e
		}
		top, e := parseTop(q)
		if e != nil {
			return st, nil, e
		}
		st = pageState{K: k.coll, T: g.t.id, S: mask, N: top, F: qget(q, "filter"), G: qget(q, "search"), X: qget(q, "count") == "true"}
		switch {
		case st.G != "" && !eventual(r):
			return st, nil, new(unsupported("Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'"))
		case st.G != "" && !validSearch(st.G):
			return st, nil, new(unsupported("Syntax error: the $search value must be quoted clauses like \"displayName:term\"."))
		case st.X && !eventual(r):
			return st, nil, new(unsupported("$count is not currently supported without the header 'ConsistencyLevel: eventual'."))
		}
	}
	filters, e := parseFilter(st.F, k.filterProps)
	return st, filters, e
}

// activeMatch matches the users or groups that are not deleted and pass every filter.
func activeMatch[R dirObject](filters []strFilter, field func(R) func(string) (string, bool, bool)) func(R) bool {
	return func(r R) bool { return r.status() == stateActive && matchesAll(filters, r, field) }
}

// entityAnswer answers one user or group with the properties in mask.
func entityAnswer[R any](g *gctx, k objectKind, r R, mask uint64, write func(*enc, R, uint64)) gresp {
	ctx := g.base + "/v1.0/$metadata#" + k.coll + "/$entity"
	if mask != k.defaults {
		ctx = g.base + "/v1.0/$metadata#" + k.coll + "(" + selectList(mask, k.names) + ")/$entity"
	}
	var e enc
	e.open()
	e.str("@odata.context", ctx)
	write(&e, r, mask)
	e.close()
	return gresp{body: e.b}
}

func (s *Server) listUsers(r *http.Request, g *gctx) gresp {
	st, filters, e := userKind.listStart(r, g, "select", "top", "filter", "count")
	if e != nil {
		return *e
	}
	return listAnswer(g, st, "users", g.t.users, s.listPageSize(r, st.N), activeMatch(filters, userField), userDefaultProps, userPropNames, writeUser)
}

func (s *Server) getUser(r *http.Request, g *gctx) gresp {
	u, mask, e := userRequest(r, g)
	if e != nil {
		return *e
	}
	return entityAnswer(g, userKind, u, mask, writeUser)
}

// userRequest reads a /users/{id or UPN}[/…] request: the active user it names and the
// properties its $select asks for.
func userRequest(r *http.Request, g *gctx) (*userRec, uint64, *gresp) {
	q := r.URL.Query()
	if e := checkQuery(q, "select"); e != nil {
		return nil, 0, e
	}
	id := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1.0/users/"), "/")[0]
	mask, e := userKind.selectMask(q)
	if e != nil {
		return nil, 0, e
	}
	u := g.t.lookupUser(id)
	if u == nil {
		return nil, 0, new(notFound(id))
	}
	return u, mask, nil
}

// lookupUser finds an active user by object id or UPN.
func (t *tenant) lookupUser(idOrUPN string) *userRec {
	key, _ := url.PathUnescape(idOrUPN)
	key = strings.ToLower(key)
	if i, ok := t.userIDs[key]; ok && t.users[i].state == stateActive {
		return t.users[i]
	}
	if i, ok := t.upns[key]; ok && t.users[i].state == stateActive {
		return t.users[i]
	}
	return nil
}

func (s *Server) getManager(r *http.Request, g *gctx) gresp {
	u, mask, bad := userRequest(r, g)
	if bad != nil {
		return *bad
	}
	mi := g.t.managerIdx(u)
	if mi < 0 || g.t.users[mi].state != stateActive {
		return notFound("manager")
	}
	var e enc
	e.open()
	e.str("@odata.context", g.base+"/v1.0/$metadata#directoryObjects/$entity")
	e.str("@odata.type", "#microsoft.graph.user")
	writeUser(&e, g.t.users[mi], mask)
	e.close()
	return gresp{body: e.b}
}

// --- groups --------------------------------------------------------------------------------

// searchMatch implements $search="displayName:term" (OR of clauses): a word of the property
// starts with the term, case-insensitively (Graph's tokenized search).
// allPrefixes reports whether every term starts some word.
func allPrefixes(terms, words []string) bool {
	for _, t := range terms {
		found := false
		for _, w := range words {
			if strings.HasPrefix(w, t) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// castName is the full name of an OData type cast segment: Graph accepts both
// "microsoft.graph.user" and the alias "graph.user" (the Go SDK sends the latter). "" if unknown.
func castName(seg string) string {
	switch seg {
	case "microsoft.graph.user", "graph.user":
		return "microsoft.graph.user"
	case "microsoft.graph.group", "graph.group":
		return "microsoft.graph.group"
	}
	return ""
}

// searchWords splits text into lower-case words the way $search tokenizes: letters and digits.
func searchWords(v string) []string {
	return strings.FieldsFunc(strings.ToLower(v), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127)
	})
}

// searchMatch reports whether a group matches a $search expression: "prop:words" clauses joined
// by OR, where every word of a clause must start a word of the property (tokenized matching).
func searchMatch(search string, gr *groupRec) bool {
	for clause := range strings.SplitSeq(search, " OR ") {
		clause = strings.Trim(strings.TrimSpace(clause), `"`)
		prop, term, _ := strings.Cut(clause, ":")
		var v string
		switch strings.ToLower(prop) {
		case "displayname":
			v = gr.DisplayName
		case "description":
			v = gr.Description
		case "mail":
			v = gr.Mail
		}
		words := searchWords(v)
		terms := searchWords(term)
		if len(terms) > 0 && allPrefixes(terms, words) {
			return true
		}
	}
	return false
}

func validSearch(search string) bool {
	for clause := range strings.SplitSeq(search, " OR ") {
		clause = strings.TrimSpace(clause)
		if len(clause) < 2 || clause[0] != '"' || clause[len(clause)-1] != '"' {
			return false
		}
		prop, _, ok := strings.Cut(strings.Trim(clause, `"`), ":")
		if !ok || !slices.Contains([]string{"displayname", "description", "mail"}, strings.ToLower(prop)) {
			return false
		}
	}
	return true
}

func (s *Server) listGroups(r *http.Request, g *gctx) gresp {
	st, filters, e := groupKind.listStart(r, g, "select", "top", "filter", "search", "count")
	if e != nil {
		return *e
	}
	active := activeMatch(filters, groupField)
	match := func(gr *groupRec) bool { return active(gr) && (st.G == "" || searchMatch(st.G, gr)) }
	return listAnswer(g, st, "groups", g.t.groups, s.listPageSize(r, st.N), match, groupDefaultProps, groupPropNames, writeGroup)
}

func (s *Server) getGroup(r *http.Request, g *gctx) gresp {
	q := r.URL.Query()
	if e := checkQuery(q, "select"); e != nil {
		return *e
	}
	id := strings.TrimPrefix(r.URL.Path, "/v1.0/groups/")
	mask, e := groupKind.selectMask(q)
	if e != nil {
		return *e
	}
	gr, ok := g.t.group(id)
	if !ok || gr.state != stateActive {
		return notFound(id)
	}
	return entityAnswer(g, groupKind, gr, mask, writeGroup)
}

// parseMemberSelect parses $select for directory objects (user and group properties).
func parseMemberSelect(v string) (um, gm uint64, bad string) {
	if strings.TrimSpace(v) == "" {
		return userDefaultProps, groupDefaultProps, ""
	}
	um, gm = 1, 1
	for p := range strings.SplitSeq(v, ",") {
		p = strings.TrimSpace(p)
		ui := slices.IndexFunc(userPropNames, func(n string) bool { return strings.EqualFold(n, p) })
		gi := slices.IndexFunc(groupPropNames, func(n string) bool { return strings.EqualFold(n, p) })
		if (ui < 0 && gi < 0) || p == "manager" || p == "members" {
			return 0, 0, p
		}
		if ui >= 0 {
			um |= 1 << ui
		}
		if gi >= 0 {
			gm |= 1 << gi
		}
	}
	return um, gm, ""
}

func (s *Server) listMembers(r *http.Request, g *gctx) gresp {
	segs := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1.0/"), "/")
	kind := segs[2]
	cast := ""
	if len(segs) == 4 {
		cast = castName(segs[3])
	}
	q := r.URL.Query()
	var st pageState
	if tok := qget(q, "skiptoken"); tok != "" {
		p, e := decodeState(tok, kind, g)
		if e != nil {
			return *e
		}
		st = p
	} else {
		if e := checkQuery(q, "select", "top", "count"); e != nil {
			return *e
		}
		um, gm, bad := parseMemberSelect(qget(q, "select"))
		if bad != "" {
			return selectError(bad, "DirectoryObject")
		}
		top, e := parseTop(q)
		if e != nil {
			return *e
		}
		st = pageState{K: kind, T: g.t.id, S: um, S2: gm, N: top, G: segs[1], X: qget(q, "count") == "true", Cast: cast}
		if (cast != "" || st.X) && (!eventual(r) || !st.X) {
			return unsupported("This query (an OData cast or $count on a directory-object collection) is an advanced query: it requires the header 'ConsistencyLevel: eventual' and $count=true.")
		}
	}
	if st.G != segs[1] || st.Cast != cast {
		return errResp(http.StatusBadRequest, "Request_BadRequest", "The skip token does not belong to this collection.")
	}
	gr, ok := g.t.group(st.G)
	if !ok || gr.state != stateActive {
		return notFound(st.G)
	}
	var all []memberRef
	if kind == "transitiveMembers" {
		all = g.t.transitiveMembers(gr)
	} else {
		for _, m := range gr.members {
			if m.isGroup && g.t.groups[m.idx].state == stateActive || !m.isGroup && g.t.users[m.idx].state == stateActive {
				all = append(all, m)
			}
		}
	}
	if cast != "" {
		wantGroup := cast == "microsoft.graph.group"
		all = slices.DeleteFunc(slices.Clone(all), func(m memberRef) bool { return m.isGroup != wantGroup })
	}
	size := s.listPageSize(r, st.N)
	page, end := pageAt(all, st.C, size)
	next := ""
	if end < len(all) {
		ns := st
		ns.C = end
		path := "/v1.0/groups/" + gr.ID + "/" + kind
		if cast != "" {
			path += "/" + cast
		}
		next = g.base + path + "?$skiptoken=" + encodeState(ns)
	}
	ctx := g.base + "/v1.0/$metadata#directoryObjects"
	switch cast {
	case "microsoft.graph.user":
		ctx = g.base + "/v1.0/$metadata#users"
	case "microsoft.graph.group":
		ctx = g.base + "/v1.0/$metadata#groups"
	}
	count := -1
	if st.X {
		count = len(all)
	}
	return gresp{body: objectList(ctx, count, page, func(e *enc, m memberRef) {
		if m.isGroup {
			e.str("@odata.type", "#microsoft.graph.group")
			writeGroup(e, g.t.groups[m.idx], st.S2)
		} else {
			e.str("@odata.type", "#microsoft.graph.user")
			writeUser(e, g.t.users[m.idx], st.S)
		}
	}, next)}
}

// --- service principals ----------------------------------------------------------------------

func (s *Server) listServicePrincipals(r *http.Request, g *gctx) gresp {
	q := r.URL.Query()
	if e := checkQuery(q, "filter", "select"); e != nil {
		return *e
	}
	f := qget(q, "filter")
	rest, ok := strings.CutPrefix(f, "appId eq '")
	if !ok || !strings.HasSuffix(rest, "'") {
		return unhandledQuery("servicePrincipals is implemented only with $filter=appId eq '{appId}'")
	}
	appID := strings.ToLower(strings.TrimSuffix(rest, "'"))
	type sp struct{ id, appID, name string }
	var found []sp
	if appID == GraphAppID {
		found = append(found, sp{g.t.graphSP, GraphAppID, "Microsoft Graph"})
	} else if _, ok := g.t.consents[appID]; ok {
		name := appID
		if a, ok := s.apps[appID]; ok {
			name = a.name
		}
		found = append(found, sp{spObjectID(g.t.id, appID), appID, name})
	}
	return gresp{body: objectList(g.base+"/v1.0/$metadata#servicePrincipals", -1, found, func(e *enc, p sp) {
		e.str("id", p.id)
		e.null("deletedDateTime")
		e.boolean("accountEnabled", true)
		e.str("appDisplayName", p.name)
		e.str("appId", p.appID)
		e.str("displayName", p.name)
		e.str("servicePrincipalType", "Application")
		e.strs("servicePrincipalNames", []string{p.appID})
	}, "")}
}

func (s *Server) appRoleAssignments(r *http.Request, g *gctx) gresp {
	q := r.URL.Query()
	if e := checkQuery(q); e != nil {
		return *e
	}
	id := strings.ToLower(strings.Split(strings.TrimPrefix(r.URL.Path, "/v1.0/servicePrincipals/"), "/")[0])
	var clientID string
	for c := range g.t.consents {
		if spObjectID(g.t.id, c) == id {
			clientID = c
		}
	}
	if clientID == "" && id != g.t.graphSP {
		return notFound(id)
	}
	roles := g.t.consents[clientID]
	name := clientID
	if a, ok := s.apps[clientID]; ok {
		name = a.name
	}
	created := g.t.consentAt[clientID].UTC().Format("2006-01-02T15:04:05.0000000Z")
	return gresp{body: objectList(g.base+"/v1.0/$metadata#servicePrincipals('"+id+"')/appRoleAssignments", -1, roles, func(e *enc, role string) {
		e.str("id", base64.RawURLEncoding.EncodeToString([]byte(uuidFrom(id, role))[:24]))
		e.null("deletedDateTime")
		e.str("appRoleId", Roles[role])
		e.str("createdDateTime", created)
		e.str("principalDisplayName", name)
		e.str("principalId", id)
		e.str("principalType", "ServicePrincipal")
		e.str("resourceDisplayName", "Microsoft Graph")
		e.str("resourceId", g.t.graphSP)
	}, "")}
}

// listAnswer is one page of /users or /groups: the matching items from the state's cursor,
// the nextLink to the rest, the context URL naming the $select, and $count when asked.
func listAnswer[T any](g *gctx, st pageState, coll string, items []T, size int, match func(T) bool,
	defaults uint64, names []string, write func(*enc, T, uint64)) gresp {
	page, i, count := filterPage(items, st.C, size, match, st.X)
	next := ""
	if i < len(items) {
		ns := st
		ns.C = i
		next = g.base + "/v1.0/" + coll + "?$skiptoken=" + encodeState(ns)
	}
	ctx := g.base + "/v1.0/$metadata#" + coll
	if st.S != defaults {
		ctx += "(" + selectList(st.S, names) + ")"
	}
	return gresp{body: objectList(ctx, count, page, func(e *enc, it T) { write(e, it, st.S) }, next)}
}

// filterPage returns up to size items that match, starting at index from; the index the next page
// starts at (len(items) when there is none, so a last page is never empty); and, when counting
// ($count=true), how many items match in all, else -1.
func filterPage[T any](items []T, from, size int, match func(T) bool, counting bool) (page []T, next, count int) {
	i := from
	for ; i < len(items) && len(page) < size; i++ {
		if match(items[i]) {
			page = append(page, items[i])
		}
	}
	for i < len(items) && !match(items[i]) {
		i++
	}
	count = -1
	if counting {
		count = 0
		for _, it := range items {
			if match(it) {
				count++
			}
		}
	}
	return page, i, count
}
