package m365sim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Delta query.
//
// A delta token is a position in the tenant's ordered change log (plus the query options and
// the epoch, bumped by ResetDelta). The first call walks the current state in creation order
// and ends with a deltaLink at the log position the walk started from; a round replays the
// log range since the token, one item per changed object (properties of all its changes
// OR-ed), so a full walk is O(n) and a round is O(changes).

type roundKey struct {
	groups   bool
	from, to int
	sel      uint64
	ids      string
}

type roundItem struct {
	idx        int32
	mask       uint64
	oldManager int32
	members    []memberDelta // groups: member changes in order, last change per member wins
}

type memberDelta struct {
	ref     memberRef
	removed bool
}

// ResetDelta invalidates every delta and skip token of the tenant: they answer 410 Gone with a
// Location header that starts a new full sync.
func (s *Server) ResetDelta(tenantID string) error {
	t, unlock, err := s.lockTenant(tenantID)
	if err != nil {
		return err
	}
	defer unlock()
	t.epoch++
	t.rounds = nil
	return nil
}

// parseIDFilter parses `id eq 'a' or id eq 'b'` (at most 50 ids).
func parseIDFilter(f string) ([]string, *gresp) {
	if strings.TrimSpace(f) == "" {
		return nil, nil
	}
	var ids []string
	for clause := range strings.SplitSeq(f, " or ") {
		parts := strings.SplitN(strings.TrimSpace(clause), " ", 3)
		if len(parts) != 3 || !strings.EqualFold(parts[0], "id") || !strings.EqualFold(parts[1], "eq") ||
			len(parts[2]) < 2 || parts[2][0] != '\'' || parts[2][len(parts[2])-1] != '\'' {
			r := unsupported("Unsupported Query. Delta query supports only $filter=id eq '{id}' clauses joined by 'or'.")
			return nil, &r
		}
		ids = append(ids, strings.ToLower(parts[2][1:len(parts[2])-1]))
	}
	if len(ids) > 50 {
		r := unsupported(fmt.Sprintf("Unsupported Query. The delta $filter supports at most 50 ids, got %d.", len(ids)))
		return nil, &r
	}
	return ids, nil
}

// startDelta reads the query of a delta call into a state: a fresh initial walk, a decoded
// token, or (for $deltatoken=latest) a ready deltaLink.
func (s *Server) startDelta(r *http.Request, g *gctx, kind string, names []string, def uint64) (st pageState, latest bool, resp *gresp) {
	q := r.URL.Query()
	for _, opt := range []string{"top", "orderby", "expand"} {
		if qget(q, opt) != "" {
			e := unsupported(fmt.Sprintf("The query option $%s is not supported with delta queries.", opt))
			return st, false, &e
		}
	}
	tok := qget(q, "skiptoken")
	if tok == "" {
		tok = qget(q, "deltatoken")
	}
	if tok != "" && tok != "latest" {
		if e := checkQuery(q, "skiptoken", "deltatoken", "select", "filter"); e != nil {
			return st, false, e
		}
		st, resp = decodeState(tok, kind, g)
		return st, false, resp
	}
	if e := checkQuery(q, "select", "filter", "deltatoken"); e != nil {
		return st, false, e
	}
	mask, bad := parseSelect(qget(q, "select"), names, def)
	if bad != "" {
		typ := "User"
		if kind == "groups/delta" {
			typ = "Group"
		}
		e := selectError(bad, typ)
		return st, false, &e
	}
	ids, e := parseIDFilter(qget(q, "filter"))
	if e != nil {
		return st, false, e
	}
	st = pageState{K: kind, T: g.t.id, E: g.t.epoch, To: len(g.t.log), S: mask, Ids: ids, I: g.now.Unix()}
	if tok == "latest" {
		st.P, st.From, st.To = 1, len(g.t.log), 0
		return st, true, nil
	}
	return st, false, nil
}

// openDelta starts a users/delta or groups/delta answer (coll is "users" or "groups"): the
// request's state, the @odata.context of its pages and the deltaLink that continues from a log
// position. done, when not nil, is the whole answer: an error, or the empty page that answers
// $deltatoken=latest.
func (s *Server) openDelta(r *http.Request, g *gctx, coll string, names []string, def uint64) (st pageState, ctx string, deltaLink func(from int) string, done *gresp) {
	path := "/v1.0/" + coll + "/delta"
	st, latest, e := s.startDelta(r, g, coll+"/delta", names, def)
	if e != nil {
		return st, "", nil, e
	}
	if e := s.checkToken(g, st, path); e != nil {
		return st, "", nil, e
	}
	ctx = g.base + "/v1.0/$metadata#" + coll
	deltaLink = func(from int) string {
		return g.base + path + "?$deltatoken=" + encodeState(pageState{K: st.K, T: st.T, E: st.E, P: 1, From: from, S: st.S, Ids: st.Ids, I: g.now.Unix()})
	}
	if latest {
		return st, ctx, deltaLink, &gresp{body: deltaPage(ctx, "", deltaLink(st.From), func(*enc) {})}
	}
	return st, ctx, deltaLink, nil
}

// checkToken applies ResetDelta (410) and expiry (syncStateNotFound).
func (s *Server) checkToken(g *gctx, st pageState, path string) *gresp {
	if st.E != g.t.epoch {
		fresh := pageState{K: st.K, T: st.T, E: g.t.epoch, To: len(g.t.log), S: st.S, Ids: st.Ids, I: g.now.Unix()}
		r := errResp(http.StatusGone, "resyncRequired", "Resync required. The delta token is no longer valid; replace any local copies and restart the sync from the Location header.")
		r.hdr = map[string]string{"Location": g.base + path + "?$skiptoken=" + encodeState(fresh)}
		return &r
	}
	if g.now.Sub(time.Unix(st.I, 0)) > s.opts.DeltaTokenTTL {
		r := errResp(http.StatusBadRequest, "syncStateNotFound", "The sync state was not found: the delta token has expired. Restart the sync without a token.")
		return &r
	}
	return nil
}

func deltaPage(context, next, delta string, items func(e *enc)) []byte {
	return collectionPage(context, func(e *enc) {
		if next != "" {
			e.str("@odata.nextLink", next)
		} else {
			e.str("@odata.deltaLink", delta)
		}
	}, items)
}

func (s *Server) deltaPageSize(r *http.Request) int {
	n := s.pageSize(200)
	if p := parsePrefer(r); p.maxPageSize > 0 && p.maxPageSize < n {
		n = p.maxPageSize
	}
	return n
}

// round computes (and caches) the items of a change round.
func (t *tenant) round(groups bool, from, to int, sel uint64, ids []string) []roundItem {
	key := roundKey{groups: groups, from: from, to: to, sel: sel, ids: strings.Join(ids, ",")}
	if it, ok := t.rounds[key]; ok {
		return it
	}
	pos := map[int32]int{}
	var items []roundItem
	for _, c := range t.log[min(from, len(t.log)):min(to, len(t.log))] {
		if c.group != groups {
			continue
		}
		i, ok := pos[c.idx]
		if !ok {
			i = len(items)
			pos[c.idx] = i
			items = append(items, roundItem{idx: c.idx, oldManager: c.oldManager})
		}
		it := &items[i]
		if it.mask&uManager == 0 && c.mask&uManager != 0 && !groups {
			it.oldManager = c.oldManager
		}
		it.mask |= c.mask
		if groups && c.mask == gMembers {
			j := slices.IndexFunc(it.members, func(m memberDelta) bool { return m.ref == c.member })
			if j >= 0 {
				it.members = slices.Delete(it.members, j, j+1)
			}
			it.members = append(it.members, memberDelta{ref: c.member, removed: c.removed})
		}
	}
	items = slices.DeleteFunc(items, func(it roundItem) bool {
		var oid string
		if groups {
			oid = t.groups[it.idx].ID
		} else {
			oid = t.users[it.idx].ID
		}
		if len(ids) > 0 && !slices.Contains(ids, strings.ToLower(oid)) {
			return true
		}
		return it.mask&sel == 0
	})
	if t.rounds == nil || len(t.rounds) > 32 {
		t.rounds = map[roundKey][]roundItem{}
	}
	t.rounds[key] = items
	return items
}

// --- users/delta ---------------------------------------------------------------------------

func (s *Server) usersDelta(r *http.Request, g *gctx) gresp {
	const path = "/v1.0/users/delta"
	st, ctx, deltaLink, done := s.openDelta(r, g, "users", userPropNames, userDefaultProps)
	if done != nil {
		return *done
	}
	size := s.deltaPageSize(r)
	minimal := parsePrefer(r).minimal
	t := g.t
	wantMgr := st.S&uManager != 0

	writeManager := func(e *enc, u *userRec, old int32, onlyIfChanged bool) {
		cur := t.managerIdx(u)
		e.key("manager@delta")
		e.openArr()
		switch {
		case cur >= 0:
			e.elem()
			e.open()
			e.str("@odata.type", "#microsoft.graph.user")
			e.str("id", t.users[cur].ID)
			e.close()
		case onlyIfChanged && old >= 0:
			e.elem()
			e.open()
			e.str("@odata.type", "#microsoft.graph.user")
			e.str("id", t.users[old].ID)
			e.removed("deleted")
			e.close()
		}
		e.closeArr()
	}

	if st.P == 0 { // initial walk
		if st.S != userDefaultProps {
			ctx += "(" + selectList(st.S, userPropNames) + ")"
		}
		match := func(u *userRec) bool {
			return u.state == stateActive && (len(st.Ids) == 0 || slices.Contains(st.Ids, strings.ToLower(u.ID)))
		}
		page, i, _ := filterPage(t.users, st.C, size, match, false)
		next := ""
		if i < len(t.users) {
			ns := st
			ns.C = i
			next = g.base + path + "?$skiptoken=" + encodeState(ns)
		}
		return gresp{body: deltaPage(ctx, next, deltaLink(st.To), func(e *enc) {
			for _, u := range page {
				e.elem()
				e.open()
				writeUser(e, u, st.S)
				if wantMgr && t.managerIdx(u) >= 0 {
					writeManager(e, u, -1, false)
				}
				e.close()
			}
		})}
	}

	if st.To == 0 && st.C == 0 { // first page of a round: fix its end
		st.To = len(t.log)
	}
	items := t.round(false, st.From, st.To, st.S, st.Ids)
	page, end := pageAt(items, st.C, size)
	next := ""
	if end < len(items) {
		ns := st
		ns.C = end
		next = g.base + path + "?$skiptoken=" + encodeState(ns)
	}
	return gresp{body: deltaPage(ctx, next, deltaLink(st.To), func(e *enc) {
		for _, it := range page {
			u := t.users[it.idx]
			e.elem()
			e.open()
			switch u.state {
			case stateGone:
				e.str("id", u.ID)
				e.removed("deleted")
			case stateSoftDeleted:
				e.str("id", u.ID)
				e.removed("changed")
			default:
				mask := st.S
				full := it.mask == userAllProps
				if minimal && !full {
					mask = it.mask&st.S | uID
				}
				writeUser(e, u, mask)
				if wantMgr && (mask&uManager != 0) {
					if full || !minimal {
						if t.managerIdx(u) >= 0 {
							writeManager(e, u, -1, false)
						}
					} else {
						writeManager(e, u, it.oldManager, true)
					}
				}
			}
			e.close()
		}
	})}
}

// --- groups/delta --------------------------------------------------------------------------

func (s *Server) groupsDelta(r *http.Request, g *gctx) gresp {
	const path = "/v1.0/groups/delta"
	st, ctx, deltaLink, done := s.openDelta(r, g, "groups", groupPropNames, groupDefaultProps)
	if done != nil {
		return *done
	}
	t := g.t
	size := s.deltaPageSize(r)
	linksPer := s.opts.MemberLinksPerPage
	minimal := parsePrefer(r).minimal
	wantMembers := st.S&gMembers != 0

	// Build the page's work list: (group, member links, prop mask, removed reason).
	type entry struct {
		gr     *groupRec
		links  []memberDelta
		mask   uint64
		reason string
	}
	var list func(i int) (entry, bool)
	var n int
	if st.P == 0 {
		if st.S != groupDefaultProps {
			ctx += "(" + selectList(st.S, groupPropNames) + ")"
		}
		var idxs []int32
		for _, gr := range t.groups {
			if gr.state == stateActive && (len(st.Ids) == 0 || slices.Contains(st.Ids, strings.ToLower(gr.ID))) {
				idxs = append(idxs, gr.idx)
			}
		}
		// cursor C counts positions in idxs
		n = len(idxs)
		list = func(i int) (entry, bool) {
			gr := t.groups[idxs[i]]
			return entry{gr: gr, links: currentLinks(gr), mask: st.S}, true
		}
	} else {
		if st.To == 0 && st.C == 0 {
			st.To = len(t.log)
		}
		items := t.round(true, st.From, st.To, st.S, st.Ids)
		n = len(items)
		list = func(i int) (entry, bool) {
			it := items[i]
			gr := t.groups[it.idx]
			if gr.state == stateGone {
				return entry{gr: gr, reason: "deleted"}, true
			}
			full := it.mask == groupAllProps
			en := entry{gr: gr, mask: st.S}
			if minimal && !full {
				en.mask = it.mask&st.S | gID
			}
			if full {
				en.links = currentLinks(gr)
			} else {
				en.links = it.members
			}
			return en, true
		}
	}

	type out struct {
		en    entry
		links []memberDelta
	}
	var page []out
	c, m, links := st.C, st.M, 0
	for c < n && len(page) < size {
		en, _ := list(c)
		remaining := 0
		if wantMembers && en.reason == "" {
			remaining = len(en.links) - m
		}
		if remaining > 0 && links >= linksPer {
			break
		}
		take := min(remaining, linksPer-links)
		var sl []memberDelta
		if take > 0 {
			sl = en.links[m : m+take]
		}
		page = append(page, out{en: en, links: sl})
		links += take
		if take < remaining {
			m += take
			break
		}
		c, m = c+1, 0
	}
	next := ""
	if c < n {
		ns := st
		ns.C, ns.M = c, m
		next = g.base + path + "?$skiptoken=" + encodeState(ns)
	}
	return gresp{body: deltaPage(ctx, next, deltaLink(st.To), func(e *enc) {
		for _, o := range page {
			e.elem()
			e.open()
			if o.en.reason != "" {
				e.str("id", o.en.gr.ID)
				e.removed(o.en.reason)
				e.close()
				continue
			}
			writeGroup(e, o.en.gr, o.en.mask)
			if wantMembers && (o.en.mask&gMembers != 0 || len(o.links) > 0) {
				e.key("members@delta")
				e.openArr()
				for _, l := range o.links {
					e.elem()
					e.open()
					if l.ref.isGroup {
						e.str("@odata.type", "#microsoft.graph.group")
					} else {
						e.str("@odata.type", "#microsoft.graph.user")
					}
					e.str("id", t.memberID(l.ref))
					if l.removed {
						e.removed("deleted")
					}
					e.close()
				}
				e.closeArr()
			}
			e.close()
		}
	})}
}

// currentLinks lists a group's direct members as member links (soft-deleted users included:
// Entra keeps their memberships).
func currentLinks(gr *groupRec) []memberDelta {
	out := make([]memberDelta, len(gr.members))
	for i, m := range gr.members {
		out[i] = memberDelta{ref: m}
	}
	return out
}
