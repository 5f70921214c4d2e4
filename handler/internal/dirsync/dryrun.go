package dirsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sync/errgroup"

	"github.com/leapchange/m365/handler/internal/stakeholder"
	"github.com/leapchange/m365/handler/internal/tablestore"
)

// A dry run writes no stakeholder, so the second listing of a user in its round (Graph lists a
// user again when it changes during the round) would meet the directory as it was, not its
// first listing's would-be write: created twice where the real run creates, then merges. Holding
// the would-be writes in memory would grow with the org in a full round; instead the dry run
// keeps each one in its change log table, a row per user (a shadow), claimed by insert with the
// page's other claims. A user listed once costs part of one batched write and no read; only a
// second listing's claim conflicts, and that user is then decided again against its shadow. A
// user its stakeholder agrees with claims one too (the stakeholder as it is): its next listing
// may differ from it again, and must be decided against it, not the stored one.

// shadow is a dry run's would-be version of one user's stakeholder.
type shadow struct {
	Pass   string `json:"pass"`             // the page that wrote it (see pass)
	Before string `json:"before,omitempty"` // the would-be stakeholder before that page (JSON); "" when the page made it
	After  string `json:"after"`            // the would-be stakeholder after that page (JSON)
}

func shadowKey(runID, userID string) string { return runID + "|u|" + tablestore.KeyEscape(userID) }

// pass names the page (or scope chunk) being applied, the same when a redelivered step applies
// it again: its step number, which only grows over the run. Phase and page number would not do:
// the scope phase applies every chunk at the same page number, and a round restarted in full
// (an expired delta token, a wide filter widening) numbers its pages from 0 again. A redo is
// of one page only, as a dry run saves the run after every users page (see loop).
func (s *stepper) pass() string { return strconv.Itoa(s.run.Step) }

// decided is one user's decision, kept until a dry run has checked it against its shadow.
type decided struct {
	w  *work
	t  tally // what it counted
	wr *write
	ch []Change
	pd []pendingDeactivation
}

func decidedOf(w *work, d decision) decided {
	return decided{w: w, t: d.tally, wr: d.write, ch: d.changes, pd: d.pending}
}

// relisted claims, in a dry run, a shadow for each of the page's would-be writes, and decides
// again the users whose claim meets one an earlier page wrote.
func (s *stepper) relisted(ctx context.Context, ds []decided) error {
	var ops []tablestore.Op
	var at []int // ops[k] claims ds[at[k]]
	for i, d := range ds {
		var after *stakeholder.Stakeholder
		switch {
		case d.w.user.ID == "":
			continue
		case d.wr != nil && !d.wr.seenOnly:
			after = &d.wr.next
		case d.w.cur != nil && d.w.cur.ExternalID == d.w.user.ID:
			after = d.w.cur // written as it is (or only marked seen)
		default:
			continue // no stakeholder of its own: nothing for a later listing to meet
		}
		row, err := shadowOf(s.pass(), nil, after)
		if err != nil {
			return err
		}
		ops = append(ops, tablestore.InsertOp(shadowKey(s.run.ID, d.w.user.ID), row))
		at = append(at, i)
	}
	// A claim that conflicts is a user listed before: decided again, then the claims after it
	// go on in batches (those before its transaction were applied).
	for len(ops) > 0 {
		err := s.e.changes.Batch(ctx, s.org, ops)
		var be *tablestore.BatchError
		if err == nil || !errors.Is(err, tablestore.ErrConflict) || !errors.As(err, &be) {
			return wrap("claim the dry run's shadows", err)
		}
		if be.Failed < 0 {
			return s.claimEach(ctx, ds, ops[be.First:], at[be.First:]) // the service did not say which
		}
		if err := s.redecide(ctx, &ds[at[be.Failed]]); err != nil {
			return err
		}
		ops = append(ops[be.First:be.Failed:be.Failed], ops[be.Failed+1:]...)
		at = append(at[be.First:be.Failed:be.Failed], at[be.Failed+1:]...)
	}
	return nil
}

// claimEach claims shadows one at a time (see relisted).
func (s *stepper) claimEach(ctx context.Context, ds []decided, ops []tablestore.Op, at []int) error {
	for k, op := range ops {
		err := s.e.changes.Batch(ctx, s.org, []tablestore.Op{op})
		if errors.Is(err, tablestore.ErrConflict) {
			err = s.redecide(ctx, &ds[at[k]])
		}
		if err != nil {
			return wrap("claim the dry run's shadow", err)
		}
	}
	return nil
}

// redecide decides a user again against the shadow an earlier page left (see prior), as the
// real run would meet that page's write, and moves the shadow on.
func (s *stepper) redecide(ctx context.Context, d *decided) error {
	prior, err := s.prior(ctx, d.w.user.ID)
	if err != nil {
		return err
	}
	if prior != nil {
		d.t.undo(&s.run)
		w := *d.w
		w.id, w.cur, w.etag = prior.ID, prior, ""
		*d = decidedOf(&w, s.decision(&w))
	}
	after := prior
	if d.wr != nil && !d.wr.seenOnly {
		after = &d.wr.next
	}
	row, err := shadowOf(s.pass(), prior, after)
	if err != nil {
		return err
	}
	return s.e.changes.Batch(ctx, s.org, []tablestore.Op{tablestore.UpsertOp(shadowKey(s.run.ID, d.w.user.ID), row, tablestore.Replace)})
}

// prior is the would-be stakeholder of a user as the page being applied finds it: the shadow
// an earlier page left (nil without one). A shadow this page left itself (a redelivered step)
// stands for what was before it.
func (s *stepper) prior(ctx context.Context, userID string) (*stakeholder.Stakeholder, error) {
	sh, _, err := tablestore.Get[shadow](ctx, s.e.changes, s.org, shadowKey(s.run.ID, userID))
	if errors.Is(err, tablestore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the shadow of %s: %w", userID, err)
	}
	was := sh.After
	if sh.Pass == s.pass() {
		was = sh.Before
	}
	if was == "" {
		return nil, nil
	}
	var st stakeholder.Stakeholder
	if err := json.Unmarshal([]byte(was), &st); err != nil {
		return nil, fmt.Errorf("decode the shadow of %s: %w", userID, err)
	}
	return &st, nil
}

// disabledSeen sorts, in a dry run, the page's disabled users that match no stakeholder: one its
// round would have created on an earlier page (a shadow) is merged as the real run merges it
// (which deactivates it), the others stay out. A point read each: disabled users only.
func (s *stepper) disabledSeen(ctx context.Context, disabled []*work) (items, out []*work, err error) {
	if !s.run.DryRun {
		return nil, disabled, nil
	}
	priors, err := readShadows(disabled, func(w *work) (*stakeholder.Stakeholder, error) { return s.prior(ctx, w.user.ID) })
	for i, w := range disabled {
		if p := priors[i]; p != nil {
			w.id, w.cur = p.ID, p
			items = append(items, w)
		} else {
			out = append(out, w)
		}
	}
	return items, out, err
}

// readShadows runs read for each work, a few at a time.
func readShadows(ws []*work, read func(*work) (*stakeholder.Stakeholder, error)) ([]*stakeholder.Stakeholder, error) {
	out := make([]*stakeholder.Stakeholder, len(ws))
	var g errgroup.Group
	g.SetLimit(16)
	for i, w := range ws {
		g.Go(func() (err error) {
			out[i], err = read(w)
			return err
		})
	}
	return out, g.Wait()
}

func shadowOf(pass string, before, after *stakeholder.Stakeholder) (shadow, error) {
	sh := shadow{Pass: pass}
	for _, v := range []struct {
		st  *stakeholder.Stakeholder
		out *string
	}{{before, &sh.Before}, {after, &sh.After}} {
		if v.st == nil {
			continue
		}
		b, err := json.Marshal(v.st)
		if err != nil {
			return shadow{}, fmt.Errorf("encode a dry run's shadow: %w", err)
		}
		*v.out = string(b)
	}
	return sh, nil
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
