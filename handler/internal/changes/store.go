package changes

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Table is the changes table.
const Table = "changes"

// Errors of the store. Validation errors are a fielderr.List.
var (
	ErrNotFound = fmt.Errorf("changes: no such change: %w", errkind.NotFound)
	// ErrStale: Put or Delete named a version (If-Match) the change is not at, or Put said the
	// change must exist ("*") and it does not.
	ErrStale = fmt.Errorf("changes: the change is not at the version named: %w", errkind.Conflict)
)

// Query limits.
const (
	// MaxImpacting is the most changes Impacting returns.
	MaxImpacting = 20
	// MinImpacting: when fewer active changes impact someone, Impacting fills up to this many
	// with the most recently updated completed or cancelled ones.
	MinImpacting = 5
	// MaxSearch is the largest limit Search honours; DefaultSearch is used for limit <= 0.
	MaxSearch     = 50
	DefaultSearch = 10
	// maxQueryWords and maxRowsPerWord bound what one Search reads.
	maxQueryWords  = 8
	maxRowsPerWord = 2000
	// maxGroups bounds the groups Impacting looks through (one query each).
	maxGroups = 200
	// parallel is how many reads a query has in flight.
	parallel = 8
	// maxAttempts bounds the re-reads of Put and Delete when another writer got in between.
	maxAttempts = 5
)

// Store reads and writes change summaries. It is safe for concurrent use.
type Store struct {
	t   *tablestore.Table
	now func() time.Time
}

// NewStore returns the store over s.
func NewStore(s *tablestore.Store) *Store { return &Store{t: s.Table(Table), now: time.Now} }

// WithClock returns a copy of the store that stamps UpdatedAt from now (tests).
func (s *Store) WithClock(now func() time.Time) *Store { return &Store{t: s.t, now: now} }

// record is the stored change row.
type record struct {
	Change
	// Version changes on every Put; index rows carry the version that wrote them. It is the
	// ETag the API shows.
	Version string   `json:"version"`
	Index   []string `json:"indexKeys"`
	// Stale are index rows of earlier versions that did not fit in the write's transaction,
	// deleted after it (and by the next write if that failed).
	Stale []string `json:"staleKeys"`
}

// entry is an index row.
type entry struct {
	ID        string    `json:"id"`
	Version   string    `json:"v"`
	Status    Status    `json:"status"`
	UpdatedAt time.Time `json:"updatedAt"`
	Title     bool      `json:"title,omitempty"` // word rows: the word is in the title
}

func changeKey(id string) string           { return "c-" + id }
func stakeholderKey(sid, id string) string { return "s-" + sid + "|" + id }
func groupKey(gid, id string) string       { return "g-" + gid + "|" + id }
func wordKey(w, id string) string          { return "w-" + tablestore.KeyEscape(w) + "|" + id }

func newVersion() string {
	b := make([]byte, 10)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// etag is the HTTP form of a version.
func etag(version string) string { return `"` + version + `"` }

// matches reports whether an If-Match value names version ("*" names any).
func matches(ifMatch, version string) bool {
	return ifMatch == "*" || ifMatch == etag(version) || ifMatch == "W/"+etag(version)
}

// rows are the index rows of r, by key.
func rows(r record) (keys []string, values map[string]entry) {
	values = map[string]entry{}
	e := entry{ID: r.ID, Version: r.Version, Status: r.Status, UpdatedAt: r.UpdatedAt}
	add := func(k string, e entry) {
		keys = append(keys, k)
		values[k] = e
	}
	for _, sid := range r.ImpactedStakeholderIDs {
		add(stakeholderKey(sid, r.ID), e)
	}
	for _, gid := range r.ImpactedGroupIDs {
		add(groupKey(gid, r.ID), e)
	}
	ws, inTitle := indexWords(r.Change)
	for _, w := range ws {
		we := e
		we.Title = inTitle[w]
		add(wordKey(w, r.ID), we)
	}
	return keys, values
}

// Get returns the change and its ETag (a quoted version). A missing change, or an id no change
// can have, is ErrNotFound.
func (s *Store) Get(ctx context.Context, org tablestore.Org, id string) (Change, string, error) {
	r, _, err := s.get(ctx, org, id)
	if err != nil {
		return Change{}, "", err
	}
	return r.Change, etag(r.Version), nil
}

func (s *Store) get(ctx context.Context, org tablestore.Org, id string) (record, tablestore.ETag, error) {
	if !ValidID(id) {
		return record{}, "", ErrNotFound
	}
	r, tag, err := tablestore.Get[record](ctx, s.t, org, changeKey(id))
	if errors.Is(err, tablestore.ErrNotFound) {
		return record{}, "", ErrNotFound
	}
	if err != nil {
		return record{}, "", err
	}
	if r.ImpactedGroupIDs == nil {
		r.ImpactedGroupIDs = []string{}
	}
	if r.ImpactedStakeholderIDs == nil {
		r.ImpactedStakeholderIDs = []string{}
	}
	return r, tag, nil
}

// Put creates or replaces the change c.ID of org, with its index rows, in one transaction, and
// returns it as stored (normalised, UpdatedAt set), its ETag and whether it was created. Invalid
// input is a fielderr.List and nothing is written.
//
// ifMatch "" writes whatever is stored; "*" requires the change to exist; an ETag from Get or Put
// requires the change to be at that version. Otherwise the answer is ErrStale.
//
// When the old and new index rows together do not fit in one transaction (a change whose
// impacted ids and words all changed), the rows the new version no longer has are deleted right
// after it; until then readers ignore them (their version is not the change's).
func (s *Store) Put(ctx context.Context, org tablestore.Org, c Change, ifMatch string) (Change, string, bool, error) {
	if err := c.Normalize(); err != nil {
		return Change{}, "", false, err
	}
	deferDeletes := false
	for attempt := 1; ; attempt++ {
		cur, tag, err := s.get(ctx, org, c.ID)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Change{}, "", false, err
		}
		if ifMatch != "" && (!exists || !matches(ifMatch, cur.Version)) {
			return Change{}, "", false, ErrStale
		}
		c.UpdatedAt = s.now().UTC().Truncate(time.Microsecond) // Table Storage keeps 100 ns: what Put answers, Get reads
		r := record{Change: c, Version: newVersion()}
		keys, values := rows(r)
		r.Index = keys
		var gone []string
		for _, k := range cur.Index {
			if _, ok := values[k]; !ok {
				gone = append(gone, k)
			}
		}
		r.Stale = []string{}
		for _, k := range cur.Stale {
			if _, ok := values[k]; !ok && !slices.Contains(gone, k) {
				r.Stale = append(r.Stale, k)
			}
		}
		inline := !deferDeletes && 1+len(keys)+len(gone) <= 100
		if !inline {
			r.Stale = append(r.Stale, gone...)
		}
		ops := make([]tablestore.Op, 0, 1+len(keys)+len(gone))
		if exists {
			ops = append(ops, tablestore.UpdateOp(changeKey(c.ID), r, tag, tablestore.Replace))
		} else {
			ops = append(ops, tablestore.InsertOp(changeKey(c.ID), r))
		}
		for _, k := range keys {
			ops = append(ops, tablestore.UpsertOp(k, values[k], tablestore.Replace))
		}
		if inline {
			for _, k := range gone {
				ops = append(ops, tablestore.DeleteOp(k, tablestore.ETagAny))
			}
		}
		err = s.t.Batch(ctx, org, ops)
		var be *tablestore.BatchError
		switch {
		case err == nil:
			if len(r.Stale) > 0 {
				s.cleanup(ctx, org, c.ID, r.Stale)
			}
			return r.Change, etag(r.Version), !exists, nil
		case errors.Is(err, tablestore.ErrNotFound) && attempt < maxAttempts:
			// The change was deleted since it was read (op 0), or an index row to delete was
			// gone already: read again, and leave the deletions to cleanup.
			if !errors.As(err, &be) || be.Failed != 0 {
				deferDeletes = true
			}
		case errors.Is(err, tablestore.ErrConflict) && attempt < maxAttempts:
			// Another writer got in between: read again.
		default:
			return Change{}, "", false, err
		}
	}
}

// Delete removes the change and its index rows in one transaction. A missing change is not an
// error (deleting twice is harmless); ifMatch, when not "" or "*", must name its version
// (ErrStale otherwise).
func (s *Store) Delete(ctx context.Context, org tablestore.Org, id, ifMatch string) error {
	if !ValidID(id) {
		return nil
	}
	deferDeletes := false
	for attempt := 1; ; attempt++ {
		cur, tag, err := s.get(ctx, org, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if ifMatch != "" && !matches(ifMatch, cur.Version) {
			return ErrStale
		}
		ops := []tablestore.Op{tablestore.DeleteOp(changeKey(id), tag)}
		later := cur.Stale
		if deferDeletes {
			later = append(later, cur.Index...)
		} else {
			for _, k := range cur.Index {
				ops = append(ops, tablestore.DeleteOp(k, tablestore.ETagAny))
			}
		}
		err = s.t.Batch(ctx, org, ops)
		var be *tablestore.BatchError
		switch {
		case err == nil:
			if len(later) > 0 {
				s.cleanup(ctx, org, id, later)
			}
			return nil
		case errors.Is(err, tablestore.ErrNotFound) && attempt < maxAttempts:
			if !errors.As(err, &be) || be.Failed != 0 {
				deferDeletes = true // an index row was gone already
			}
		case errors.Is(err, tablestore.ErrConflict) && attempt < maxAttempts:
		default:
			return err
		}
	}
}

// cleanup deletes index rows of change id that its current version does not list, best effort
// (a failure leaves them to the next write; readers ignore them meanwhile). Each row is read
// before the change, and deleted only if unchanged since: a write that lists the row again
// between the two reads changes its ETag, and the delete fails harmlessly.
func (s *Store) cleanup(ctx context.Context, org tablestore.Org, id string, keys []string) {
	tags := map[string]tablestore.ETag{}
	for _, k := range keys {
		if _, tag, err := tablestore.Get[entry](ctx, s.t, org, k); err == nil {
			tags[k] = tag
		} else if !errors.Is(err, tablestore.ErrNotFound) {
			return
		}
	}
	cur, tag, err := s.get(ctx, org, id)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return
	}
	for k, t := range tags {
		if slices.Contains(cur.Index, k) {
			continue
		}
		if err := s.t.Delete(ctx, org, k, t); err != nil && !errors.Is(err, tablestore.ErrNotFound) && !errors.Is(err, tablestore.ErrConflict) {
			return
		}
	}
	if exists && len(cur.Stale) > 0 {
		left := slices.DeleteFunc(slices.Clone(cur.Stale), func(k string) bool { return slices.Contains(keys, k) })
		cur.Stale = left
		_, _ = s.t.Update(ctx, org, changeKey(id), cur, tag, tablestore.Replace) // a conflict leaves them listed: harmless
	}
}

// candidate is a change an index names, with what the index says of it.
type candidate struct {
	entry
	versions []string // the versions of the rows that named it (one, unless a row is stale)
	matched  int      // Search: query words it matched
	inTitle  int      // Search: of which in the title
	exact    int      // Search: of which whole words
}

func (c *candidate) add(e entry) {
	if !slices.Contains(c.versions, e.Version) {
		c.versions = append(c.versions, e.Version)
	}
	if e.UpdatedAt.After(c.UpdatedAt) {
		c.Status, c.UpdatedAt = e.Status, e.UpdatedAt
	}
}

// scan reads the index rows under each prefix, in parallel, and calls visit (serially) for each.
func (s *Store) scan(ctx context.Context, org tablestore.Org, prefixes []string, maxRows int, visit func(i int, key string, e entry)) error {
	type result struct {
		keys    []string
		entries []entry
		err     error
	}
	results := make([]result, len(prefixes))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, p := range prefixes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			res := &results[i]
			for row, err := range tablestore.Query[entry](ctx, s.t, org, tablestore.QueryOptions{KeyPrefix: p}) {
				if err != nil {
					res.err = err
					return
				}
				res.keys, res.entries = append(res.keys, row.Key), append(res.entries, row.Value)
				if len(res.keys) == maxRows {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, res := range results {
		if res.err != nil {
			return res.err
		}
		for j, k := range res.keys {
			visit(i, k, res.entries[j])
		}
	}
	return nil
}

// fetch reads the changes of cands, in parallel, keeping those whose version an index row had
// (a change deleted or rewritten since is dropped), in the order of cands, until want are kept.
func (s *Store) fetch(ctx context.Context, org tablestore.Org, cands []*candidate, want int, skip string) ([]Change, error) {
	var out []Change
	for len(cands) > 0 && len(out) < want {
		n := min(len(cands), parallel, max(want-len(out), 1)*2)
		batch := cands[:n]
		cands = cands[n:]
		got := make([]*record, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, c := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, _, err := s.get(ctx, org, c.ID)
				if err == nil && slices.Contains(c.versions, r.Version) {
					got[i] = &r
				} else if !errors.Is(err, ErrNotFound) {
					errs[i] = err
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		for _, r := range got {
			if r != nil && r.ID != skip && len(out) < want {
				out = append(out, r.Change)
			}
		}
	}
	return out, nil
}

// byRelevance orders changes for the bot: active before closed, then by status (in progress,
// planned, on hold, completed, cancelled), then most recently updated, then by id.
func byRelevance(a, b Change) int {
	return cmp.Or(
		cmp.Compare(a.Status.rank(), b.Status.rank()),
		b.UpdatedAt.Compare(a.UpdatedAt),
		strings.Compare(a.ID, b.ID))
}

// Impacting returns the changes that impact the stakeholder directly or through any of
// groupIDs (the groups they belong to), most relevant first (see byRelevance): the active ones
// (in progress, planned, on hold), at most MaxImpacting; when fewer than MinImpacting are active,
// the most recently updated completed or cancelled ones fill up to MinImpacting. It reads one
// index prefix per stakeholder and group (ids that cannot be ids are ignored; at most 200
// groups) and then only the changes it returns.
func (s *Store) Impacting(ctx context.Context, org tablestore.Org, stakeholderID string, groupIDs []string) ([]Change, error) {
	var prefixes []string
	if ValidID(stakeholderID) {
		prefixes = append(prefixes, stakeholderKey(stakeholderID, ""))
	}
	for _, g := range groupIDs {
		if p := groupKey(g, ""); ValidID(g) && !slices.Contains(prefixes, p) && len(prefixes) <= maxGroups {
			prefixes = append(prefixes, p)
		}
	}
	byID := map[string]*candidate{}
	err := s.scan(ctx, org, prefixes, 0, func(_ int, _ string, e entry) {
		c, ok := byID[e.ID]
		if !ok {
			c = &candidate{entry: e}
			byID[e.ID] = c
		}
		c.add(e)
	})
	if err != nil {
		return nil, err
	}
	var active, closed []*candidate
	for _, c := range byID {
		if c.Status.Active() {
			active = append(active, c)
		} else {
			closed = append(closed, c)
		}
	}
	rank := func(a, b *candidate) int {
		return byRelevance(Change{ID: a.ID, Status: a.Status, UpdatedAt: a.UpdatedAt}, Change{ID: b.ID, Status: b.Status, UpdatedAt: b.UpdatedAt})
	}
	slices.SortFunc(active, rank)
	slices.SortFunc(closed, func(a, b *candidate) int {
		return cmp.Or(b.UpdatedAt.Compare(a.UpdatedAt), strings.Compare(a.ID, b.ID))
	})
	out, err := s.fetch(ctx, org, active, MaxImpacting, "")
	if err != nil {
		return nil, err
	}
	// A change the index called active may have been closed since (and the other way round):
	// order by what the changes say now.
	out = slices.DeleteFunc(out, func(c Change) bool { return !c.Status.Active() })
	if len(out) < MinImpacting {
		more, err := s.fetch(ctx, org, closed, MinImpacting-len(out), "")
		if err != nil {
			return nil, err
		}
		for _, c := range more {
			if !c.Status.Active() {
				out = append(out, c)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Change) int {
		if a.Status.Active() != b.Status.Active() {
			if a.Status.Active() {
				return -1
			}
			return 1
		}
		if !a.Status.Active() {
			return cmp.Or(b.UpdatedAt.Compare(a.UpdatedAt), strings.Compare(a.ID, b.ID))
		}
		return byRelevance(a, b)
	})
	return out, nil
}

// Search finds changes for the bot's "change <id or words>", at most limit (DefaultSearch for
// limit <= 0, at most MaxSearch): the change whose id is the query, exactly, first; then changes
// whose indexed words (see the package doc) match the query's words, case and accents ignored.
// A query word of three or more characters also matches the words it begins ("migr" finds
// "migration"); shorter ones match whole words. Changes matching more of the query's words come
// first, then those matching in the title, matching whole words, then by relevance (byRelevance).
func (s *Store) Search(ctx context.Context, org tablestore.Org, query string, limit int) ([]Change, error) {
	if limit <= 0 {
		limit = DefaultSearch
	}
	limit = min(limit, MaxSearch)
	var out []Change
	query = strings.TrimSpace(query)
	if ValidID(query) {
		r, _, err := s.get(ctx, org, query)
		switch {
		case err == nil:
			out = append(out, r.Change)
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	qws := words(query)
	if len(qws) > maxQueryWords {
		qws = qws[:maxQueryWords]
	}
	prefixes := make([]string, len(qws))
	for i, w := range qws {
		prefixes[i] = "w-" + tablestore.KeyEscape(w)
		if len([]rune(w)) < 3 {
			prefixes[i] += "|"
		}
	}
	byID := map[string]*candidate{}
	seen := map[string]bool{} // id + "|" + query word index
	err := s.scan(ctx, org, prefixes, maxRowsPerWord, func(i int, key string, e entry) {
		c, ok := byID[e.ID]
		if !ok {
			c = &candidate{entry: e}
			byID[e.ID] = c
		}
		c.add(e)
		if k := fmt.Sprint(e.ID, "|", i); !seen[k] {
			seen[k] = true
			c.matched++
			if e.Title {
				c.inTitle++
			}
			if strings.HasPrefix(key, prefixes[i]+"|") || strings.HasSuffix(prefixes[i], "|") {
				c.exact++
			}
		}
	})
	if err != nil {
		return nil, err
	}
	cands := make([]*candidate, 0, len(byID))
	for _, c := range byID {
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b *candidate) int {
		return cmp.Or(
			cmp.Compare(b.matched, a.matched),
			cmp.Compare(b.inTitle, a.inTitle),
			cmp.Compare(b.exact, a.exact),
			byRelevance(Change{ID: a.ID, Status: a.Status, UpdatedAt: a.UpdatedAt}, Change{ID: b.ID, Status: b.Status, UpdatedAt: b.UpdatedAt}))
	})
	var skip string
	if len(out) > 0 {
		skip = out[0].ID
	}
	more, err := s.fetch(ctx, org, cands, limit-len(out), skip)
	if err != nil {
		return nil, err
	}
	return append(out, more...), nil
}
