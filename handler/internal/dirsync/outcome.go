package dirsync

// outcome is the column of the run a processed user is counted in. Every processed user is
// counted in exactly one (see Run.Unaccounted): by applyUsers when it is excluded or invalid,
// else by decide; a write that fails afterwards moves it to another column (notWritten takes
// the first count back).
type outcome int

const (
	outCreated outcome = iota
	outUpdated
	outUnchanged
	outReactivated
	outSkipped
	outInvalid
	outDeleted     // excluded: deleted in Entra ID
	outOutOfFilter // excluded: outside the group filter
	outDisabled    // excluded: disabled in Entra ID and never a stakeholder
)

// tally is what one processed user adds to the run: its outcome, and the counters kept beside
// the columns, which are no outcome of their own.
type tally struct {
	outcome  outcome
	conflict bool // changed on both sides (resolved by the strategy, or skipped)
	linked   bool // an existing stakeholder matched by address, linked to its Entra user
}

// add adds t to r n times: 1 counts it, -1 takes it back.
func (t tally) add(r *Run, n int) {
	switch t.outcome {
	case outCreated:
		r.Created += n
	case outUpdated:
		r.Updated += n
	case outUnchanged:
		r.Unchanged += n
	case outReactivated:
		r.Reactivated += n
	case outSkipped:
		r.Skipped += n
	case outInvalid:
		r.Invalid += n
	case outDeleted:
		r.Excluded.Deleted += n
	case outOutOfFilter:
		r.Excluded.OutOfFilter += n
	case outDisabled:
		r.Excluded.Disabled += n
	}
	if t.conflict {
		r.Conflicts += n
	}
	if t.linked {
		r.Linked += n
	}
}

// undo takes t back from r, for a write that never happened.
func (t tally) undo(r *Run) { t.add(r, -1) }

// count counts one processed user in the step's run.
func (s *stepper) count(t tally) { t.add(&s.run, 1) }
