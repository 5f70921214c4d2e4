package dirsync

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// The group filter's membership closure, stored per org in table ScopeTable so that a run under
// a filter reads what changed (groups/delta) instead of every filter group's members.
//
// Rows (partition = org; ids escaped with tablestore.KeyEscape):
//
//	state                     scopeState: the filter it was built for, the tracked groups (filter
//	                          groups and their nested groups, with their nested-group edges), the
//	                          groups/delta streams' links, the current generation
//	gNNNNNN|p|<user>|<group>  user is a direct member of tracked group (generation NNNNNN); a user
//	                          is in scope exactly when it has such a row, and the filter groups
//	                          containing it are those reaching one of its groups (closure.reach)
//	gNNNNNN|u|<user>          the user's summary: a property per tracked group it was ever a direct
//	                          member of (groupProp), true while the gNNNNNN|p| row exists; written
//	                          by merge in the same batch as the member rows, so that "is the user
//	                          in scope" is a point read (Table Storage's key-range reads cost the
//	                          partition's size on the emulator)
//	mark|<user>               the user's membership changed and the stakeholders may not show it
//	                          yet: the scope phase decides it; the last phase of a real run clears
//	                          the marks (a dry run leaves them, so the next real run sees them)
//
// A rebuild writes a new generation beside the current one and switches to it in one write of
// the state row, so a crash mid-build leaves the old closure whole; old generations are deleted
// afterwards, a page at a time.
const ScopeTable = "syncscope"

const (
	scopeStateKey = "state"
	markPrefix    = "mark|"
	// maxDeltaIDs is Graph's limit of ids in a groups/delta $filter.
	maxDeltaIDs = 50
)

// scopeState is the closure's state row.
type scopeState struct {
	Filter   []string             `json:"filter"`   // sorted filter the current generation was built for
	Gen      int                  `json:"gen"`      // current generation; 0 = no closure
	LastGen  int                  `json:"lastGen"`  // last generation number handed out
	Groups   map[string]groupNode `json:"groups"`   // tracked groups of the current generation
	Missing  []string             `json:"missing"`  // filter groups that do not exist in Entra ID
	Streams  []deltaStream        `json:"streams"`  // groups/delta streams covering Groups
	FullScan bool                 `json:"fullScan"` // rebuilt: the next real run compares every stakeholder
	Garbage  []int                `json:"garbage"`  // generations to delete
	Build    scopeBuild           `json:"build"`    // a rebuild or an extension in progress
	// Shrink: groups left the tracked ones; their rows are being deleted from ShrinkFrom on.
	Shrink     bool   `json:"shrink"`
	ShrinkFrom string `json:"shrinkFrom"`
	// Merge is one round over every tracked group, started at the present ($deltatoken=latest)
	// before a run read the several rounds a build left (one per level of nesting); once they are
	// read it replaces them, so later runs read one round. Overlap is harmless: facts set again.
	Merge   *deltaStream `json:"merge,omitempty"`
	BuiltBy string       `json:"builtBy"` // the run that finished the current generation
	Run     string       `json:"run"`     // the last run whose membership phase completed
	// Summaries: the current generation has the users' summary rows (gNNNNNN|u|); one built
	// before they existed is rebuilt (membership), since inScope reads only them.
	Summaries bool `json:"summaries"`
}

// groupNode is a tracked group.
type groupNode struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Children    []string `json:"children,omitempty"` // direct nested groups
}

// deltaStream is one groups/delta round limited to at most maxDeltaIDs groups.
type deltaStream struct {
	IDs  []string `json:"ids"`
	Link string   `json:"link,omitempty"` // deltaLink of its last complete round
	Next string   `json:"next,omitempty"` // nextLink of the round in progress
	Run  string   `json:"run,omitempty"`  // the run that completed its last round
}

// scopeBuild is a rebuild in progress: a breadth-first walk of the filter groups and the groups
// nested in them, each level read by initial groups/delta rounds (which list every member). An
// extension is the same walk from groups that came in, into the current generation.
type scopeBuild struct {
	Active bool                 `json:"active"`
	Extend bool                 `json:"extend"` // into the current generation (reshape.go)
	Filter []string             `json:"filter"` // the filter it reads for
	Gen    int                  `json:"gen"`
	Queue  []string             `json:"queue,omitempty"` // groups still to read
	Cur    deltaStream          `json:"cur"`             // the round being read (IDs empty: none)
	Done   []deltaStream        `json:"done,omitempty"`
	Groups map[string]groupNode `json:"groups,omitempty"`
	// Summaries: the rebuild writes the summary rows from its first page (see scopeState).
	Summaries bool `json:"summaries,omitempty"`
}

// requested says whether the build has read or queued group id.
func (b *scopeBuild) requested(id string) bool {
	if slices.Contains(b.Queue, id) || slices.Contains(b.Cur.IDs, id) {
		return true
	}
	return slices.ContainsFunc(b.Done, func(d deltaStream) bool { return slices.Contains(d.IDs, id) })
}

// memberRow is a gNNNNNN|p|<user>|<group> row.
type memberRow struct {
	User  string `json:"user"`
	Group string `json:"group"`
}

// markRow is a mark|<user> row.
type markRow struct {
	User string `json:"user"`
}

func genPrefix(gen int) string { return fmt.Sprintf("g%06d|", gen) }
func userPrefix(gen int, user string) string {
	return genPrefix(gen) + "p|" + tablestore.KeyEscape(user) + "|"
}
func memberKey(gen int, user, group string) string {
	return userPrefix(gen, user) + tablestore.KeyEscape(group)
}
func markKey(user string) string { return markPrefix + tablestore.KeyEscape(user) }

// summaryKey is the gNNNNNN|u|<user> row; "u|" keeps it out of the genPrefix(gen)+"p|" ranges.
func summaryKey(gen int, user string) string {
	return genPrefix(gen) + "u|" + tablestore.KeyEscape(user)
}

// summaryUser is the summary row's property naming its user (not a group flag: groupProp names
// start with "m").
const summaryUser = "user"

// groupProp is the summary row's property for group: "m" and the group id without its dashes for
// a GUID (Entra's ids), else "m_" and the id in hex, so that any id makes a property name and no
// two ids share one.
func groupProp(group string) string {
	if isGUID(group) {
		return "m" + strings.ReplaceAll(group, "-", "")
	}
	return "m_" + hex.EncodeToString([]byte(group))
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// summaries collects the changes of a batch to the users' summary rows: user -> group -> whether
// the user is now a direct member.
type summaries map[string]map[string]bool

func (s summaries) set(user, group string, member bool) {
	if s[user] == nil {
		s[user] = map[string]bool{}
	}
	s[user][group] = member
}

// ops are the merge-upserts that write the changes into generation gen, one per user (a key
// twice would split the batch's transaction), in user order.
func (s summaries) ops(gen int) []tablestore.Op {
	users := make([]string, 0, len(s))
	for u := range s {
		users = append(users, u)
	}
	slices.Sort(users)
	ops := make([]tablestore.Op, 0, len(users))
	for _, u := range users {
		v := make(map[string]any, len(s[u])+1)
		v[summaryUser] = u
		for g, member := range s[u] {
			v[groupProp(g)] = member
		}
		ops = append(ops, tablestore.UpsertOp(summaryKey(gen, u), v, tablestore.Merge))
	}
	return ops
}

// closure reads and writes an org's stored closure.
type closure struct {
	t   *tablestore.Table
	org tablestore.Org
}

func (e *Engine) closureOf(org tablestore.Org) closure {
	return closure{t: e.cfg.Store.Table(ScopeTable), org: org}
}

// state reads the state row; a missing one is the zero state (no closure).
func (c closure) state(ctx context.Context) (scopeState, error) {
	st, _, err := tablestore.Get[scopeState](ctx, c.t, c.org, scopeStateKey)
	if errors.Is(err, tablestore.ErrNotFound) {
		return scopeState{}, nil
	}
	if err != nil {
		return scopeState{}, fmt.Errorf("read scope state: %w", err)
	}
	return st, nil
}

// save writes the state row. One run per org at a time writes it, so no ETag is needed; a
// redelivered step writes what its first delivery wrote.
func (c closure) save(ctx context.Context, st scopeState) error {
	if _, err := c.t.Upsert(ctx, c.org, scopeStateKey, st, tablestore.Replace); err != nil {
		return fmt.Errorf("save scope state: %w", err)
	}
	return nil
}

// parents returns the tracked groups user is a direct member of in generation gen; none means
// the user is out of scope.
func (c closure) parents(ctx context.Context, gen int, user string) ([]string, error) {
	var out []string
	for row, err := range tablestore.Query[memberRow](ctx, c.t, c.org, tablestore.QueryOptions{KeyPrefix: userPrefix(gen, user)}) {
		if err != nil {
			return nil, fmt.Errorf("read scope of %s: %w", user, err)
		}
		out = append(out, row.Value.Group)
	}
	return out, nil
}

// inScope says for each of users whether it is in scope: a point read of its summary row each, a
// few at a time. A user is in scope when the row exists and a group property is true.
func (c closure) inScope(ctx context.Context, gen int, users []string) (map[string]bool, error) {
	return readSummaries(ctx, c, gen, users, func(row map[string]any) bool {
		for name, v := range row {
			if b, ok := v.(bool); ok && b && name != summaryUser {
				return true
			}
		}
		return false
	})
}

// readSummaries point-reads users' summary rows in generation gen, a few at a time, and maps
// each user to what of makes of its row (nil when there is none).
func readSummaries[T any](ctx context.Context, c closure, gen int, users []string, of func(row map[string]any) T) (map[string]T, error) {
	out := make(map[string]T, len(users))
	var mu sync.Mutex
	err := concurrently(len(users), func(i int) error {
		row, _, err := tablestore.Get[map[string]any](ctx, c.t, c.org, summaryKey(gen, users[i]))
		if err != nil && !errors.Is(err, tablestore.ErrNotFound) {
			return fmt.Errorf("read scope of %s: %w", users[i], err)
		}
		v := of(row)
		mu.Lock()
		out[users[i]] = v
		mu.Unlock()
		return nil
	})
	return out, err
}

// deleteRange deletes up to one page (1000) of rows whose key starts with prefix; more says some
// may remain.
func (c closure) deleteRange(ctx context.Context, prefix string) (more bool, err error) {
	var ops []tablestore.Op
	for row, err := range tablestore.Query[struct{}](ctx, c.t, c.org, tablestore.QueryOptions{KeyPrefix: prefix, Select: []string{"user"}}) {
		if err != nil {
			return false, fmt.Errorf("list %s rows: %w", prefix, err)
		}
		ops = append(ops, tablestore.DeleteOp(row.Key, tablestore.ETagAny))
		if len(ops) == tablestore.MaxPageSize {
			break
		}
	}
	if err := c.t.Batch(ctx, c.org, ops); err != nil {
		return false, fmt.Errorf("delete %s rows: %w", prefix, err)
	}
	return len(ops) == tablestore.MaxPageSize, nil
}

// reach maps each tracked group to the filter groups that contain it, itself included when it is
// one: a user directly in group g is in the closure of each of reach[g].
func reach(groups map[string]groupNode, filter []string) map[string][]string {
	out := map[string][]string{}
	for _, f := range filter {
		seen := map[string]bool{}
		stack := []string{f}
		for len(stack) > 0 {
			g := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[g] {
				continue // nesting may loop
			}
			seen[g] = true
			if _, ok := groups[g]; !ok {
				continue
			}
			out[g] = append(out[g], f)
			stack = append(stack, groups[g].Children...)
		}
	}
	return out
}

// sortedFilter is the filter in the order the state keeps it.
func sortedFilter(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// scopeConcurrency is how many closure reads run at once.
const scopeConcurrency = 16

// concurrently runs fn for 0..n-1, at most scopeConcurrency at once; the first error wins.
func concurrently(n int, fn func(i int) error) error {
	var g errgroup.Group
	g.SetLimit(scopeConcurrency)
	for i := range n {
		g.Go(func() error { return fn(i) })
	}
	return g.Wait()
}

// userGroups is a user in scope with the tracked groups it is directly in.
type userGroups struct {
	User   string
	Groups []string
}

// afterUser is the first key after every generation-gen row of user: no key character sorts
// between '|', which ends the user's part, and '}'.
func afterUser(gen int, user string) string {
	return genPrefix(gen) + "p|" + tablestore.KeyEscape(user) + "}"
}

// memberChunk reads up to limit users in scope after user after ("" from the first), with their
// groups, in key order; more says users remain. A user's rows come together, so a chunk never
// splits one.
func (c closure) memberChunk(ctx context.Context, gen int, after string, limit int) (chunk []userGroups, more bool, err error) {
	q := tablestore.QueryOptions{KeyPrefix: genPrefix(gen) + "p|"}
	if after != "" {
		q.From = afterUser(gen, after)
	}
	for row, err := range tablestore.Query[memberRow](ctx, c.t, c.org, q) {
		if err != nil {
			return nil, false, fmt.Errorf("read scope: %w", err)
		}
		r := row.Value
		if n := len(chunk); n > 0 && chunk[n-1].User == r.User {
			chunk[n-1].Groups = append(chunk[n-1].Groups, r.Group)
			continue
		}
		if len(chunk) == limit {
			return chunk, true, nil
		}
		chunk = append(chunk, userGroups{User: r.User, Groups: []string{r.Group}})
	}
	return chunk, false, nil
}

// summaryFlags reads users' summary rows (a point read each, a few at a time): user → tracked
// group → whether the user is directly in it now. A group the user was never directly in during
// generation gen is absent, so its membership rows of a mirror made in gen cannot involve it.
func (c closure) summaryFlags(ctx context.Context, gen int, users []string, groups map[string]groupNode) (map[string]map[string]bool, error) {
	byProp := make(map[string]string, len(groups))
	for g := range groups {
		byProp[groupProp(g)] = g
	}
	return readSummaries(ctx, c, gen, users, func(row map[string]any) map[string]bool {
		flags := map[string]bool{}
		for name, v := range row {
			if b, ok := v.(bool); ok && byProp[name] != "" {
				flags[byProp[name]] = b
			}
		}
		return flags
	})
}

// markPage returns up to limit marked users after mark key after ("" from the first), with the
// last key read.
func (c closure) markPage(ctx context.Context, after string, limit int) (users []string, last string, err error) {
	q := tablestore.QueryOptions{KeyPrefix: markPrefix, PageSize: limit}
	if after != "" {
		q.From = after + " " // after it: no key character sorts below a space
	}
	for row, err := range tablestore.Query[markRow](ctx, c.t, c.org, q) {
		if err != nil {
			return nil, "", fmt.Errorf("read scope marks: %w", err)
		}
		users, last = append(users, row.Value.User), row.Key
		if len(users) == limit {
			break
		}
	}
	return users, last, nil
}
