package renew

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"

	"golang.org/x/time/rate"

	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// WalkRun is what one run of a walk did.
type WalkRun struct {
	// Resumed is how many listed accessors an earlier run of this walk,
	// cut short, had looked up already: this run began after them.
	Resumed int
	// Listed is how many accessors this run's LIST returned.
	Listed int
	// Complete says the walk reached its end: every accessor looked up
	// and, with apply, the ledger whole (but for a create sent meanwhile
	// whose answer was lost: Result.Gap says so).
	Complete bool
	// Idle says IfGap found the ledger whole with no walk under way:
	// nothing was walked and Vault was not asked.
	Idle bool
}

// WalkOptions say what a walk may do.
type WalkOptions struct {
	// Apply revokes this machine's stale tokens, keeps the walk's place in
	// the ledger (a walk cut short resumes from it) and makes the ledger
	// whole at the end. Without it the walk only reports, from the start.
	Apply bool
	// IfGap walks only when the ledger has a gap or a walk is under way:
	// the walk unit's run, started by every run that finds a gap.
	IfGap bool
	// Step is how many accessors are looked up between two saves of the
	// place; 0 picks one from Config.MaxRPS (about ten seconds' worth).
	Step int
}

// stepSize is about ten seconds of lookups at maxRPS, between 20 and 1000,
// and no more than a quarter of what fits before ctx's deadline (a
// --timeout): a kill loses at most one step, and a short --timeout still
// moves the place.
func stepSize(ctx context.Context, maxRPS float64) int {
	if maxRPS <= 0 {
		return 1000
	}
	n := min(max(int(maxRPS*10), 20), 1000)
	if dl, ok := ctx.Deadline(); ok {
		n = max(min(n, int(maxRPS*time.Until(dl).Seconds()/4)), 20)
	}
	return n
}

// Walk is `vault-token-renew sweep`: it lists every accessor and looks each
// up, the one way to find this machine's tokens that no ledger knows (made
// before the ledger began, or by a create whose answer was lost). It is
// the walk of its own that a heal never starts: under systemd the walk
// unit runs it at the rate cap, with no overall deadline.
//
// It goes in steps over the sorted list. After each step the place is
// saved in the ledger, so a walk cut short resumes there. Lookups act as
// the token in the file without the run lock; each step's revokes take the
// lock and judge again against the file as it is then, so that a heal or a
// manual re-mint made meanwhile is never revoked. A foreign token in the
// file stops the walk (the heal it calls for comes first).
func Walk(ctx context.Context, v Vault, cfg Config, wo WalkOptions) (Result, error) {
	w := &walker{v: v, cfg: cfg, wo: wo, b: openBook(cfg, wo.Apply), res: Result{Path: cfg.TokenFile, Walk: &WalkRun{}},
		limit: sweep.NewLimiter(cfg.MaxRPS)}
	if wo.Step <= 0 {
		w.wo.Step = stepSize(ctx, cfg.MaxRPS)
	}
	err := w.run(ctx)
	// The walk's own gap is the ledger's as it left it: a cluster change
	// it found at its start is what it has just walked.
	w.res.Ledger, w.res.Gap = w.b.l, w.b.l.Gap()
	if w.b.unsaved {
		w.res.Gap = ledger.Unsaved
	}
	return w.res, err
}

// walker is one run of a walk.
type walker struct {
	v   Vault
	cfg Config
	wo  WalkOptions
	b   *book
	res Result
	tok string // the token the lookups act as: the file's, while it is ours
	// limit paces every step alike, so that together they keep to the cap.
	limit *rate.Limiter
}

// options are a sweep's options for one piece of the walk: accs, judged
// against the file's token (and kept: the other token files' tokens),
// paced by the walk's one limiter.
func (w *walker) options(apply bool, accs []string) sweep.Options {
	keep := []string{w.res.Current.Accessor}
	if w.cfg.Ledger != nil {
		keep = append(keep, w.cfg.Ledger.Spared()...)
	}
	opts := w.cfg.sweepOptions(apply, keep...)
	opts.Only, opts.Limiter = accs, w.limit
	return opts
}

func (w *walker) run(ctx context.Context) error {
	if w.wo.IfGap && w.b.l.Gap() == ledger.NoGap && w.b.l.Walk == nil {
		w.res.Walk.Idle = true
		return nil
	}
	if err := w.actAs(ctx); err != nil {
		return err
	}
	if w.wo.Apply {
		if w.b.checkVault(ctx, w.v); w.b.unknown {
			return w.fail(failure.StageSweep, failure.AskMore, errors.New("vault did not say which cluster it is (sys/health): a walk's place cannot be kept for it"))
		}
	}
	started := w.cfg.now()
	accs, err := w.v.Accessors(w.tok).List(ctx)
	if err != nil {
		return w.fail(failure.StageSweep, failure.AskMore, err)
	}
	slices.Sort(accs) // Vault's are; the place relies on it
	rest := w.begin(started, accs)
	for len(rest) > 0 {
		n := min(w.wo.Step, len(rest))
		if err := w.step(ctx, rest[:n], rest[n-1]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return w.finish(ctx)
}

// begin starts the walk, or resumes the one under way after its place,
// and returns the accessors still to look up.
func (w *walker) begin(started time.Time, accs []string) []string {
	w.res.Walk.Listed = len(accs)
	w.res.Sweep.Listed = len(accs)
	if !w.wo.Apply {
		return accs
	}
	w.b.update(func(l ledger.Ledger) ledger.Ledger { return l.WalkFrom(started, len(accs)) })
	cursor := w.b.l.Walk.Cursor
	if cursor == "" {
		return accs
	}
	i := sort.SearchStrings(accs, cursor)
	if i < len(accs) && accs[i] == cursor {
		i++
	}
	w.res.Walk.Resumed = i
	w.cfg.Log.Info().Int("done", w.b.l.Walk.Done).Int("listed", len(accs)).Int("skipped", i).
		Msg("resuming the walk after the place an earlier run reached")
	return accs[i:]
}

// actAs reads the token file and looks its token up when it changed: the
// walk acts as our periodic token, and stops at a foreign one.
func (w *walker) actAs(ctx context.Context) error {
	tok, err := tokenfile.Read(w.cfg.TokenFile)
	if err != nil {
		return w.fail(failure.StageRead, failure.AskToken, err)
	}
	if tok == w.tok {
		return nil
	}
	cur, err := w.v.LookupSelf(ctx, tok)
	if err != nil {
		return w.fail(failure.StageLookup, failure.AskToken, fmt.Errorf("token in %s: %w", w.cfg.TokenFile, err))
	}
	w.res.Current = cur
	if w.wo.Apply && !decide.IsOurs(cur, w.cfg.Spec) {
		w.res.Cause = failure.CauseForeign
		return w.fail(failure.StageForeign, failure.AskToken, fmt.Errorf("token in %s is dn=%s, not our periodic %s; nothing revoked",
			w.cfg.TokenFile, safetext.Value(cur.DisplayName), w.cfg.Spec.StoredDisplayName()))
	}
	w.tok = tok
	return nil
}

// step looks up accs, revokes the stale among them, and saves the place
// (last) with what was found. A step cut short saves nothing: the next run
// does it again.
func (w *walker) step(ctx context.Context, accs []string, last string) error {
	if err := w.actAs(ctx); err != nil {
		return err
	}
	opts := w.options(false, accs)
	base := w.res.Sweep.LookedUp
	if w.cfg.Progress != nil {
		opts.Progress = func(done, _ int) { w.cfg.Progress(w.res.Walk.Resumed+base+done, w.res.Walk.Listed) }
	}
	rep, err := sweep.Run(ctx, w.v.Accessors(w.tok), opts)
	if err != nil {
		return w.cut(err, rep.LookedUp)
	}
	if len(rep.Failed) == len(accs) && len(accs) > 1 {
		// Every lookup failed: the token may no longer walk (a policy, a
		// revoked token), or Vault is failing. Stop where the place is.
		return w.fail(failure.StageSweep, failure.AskMore, fmt.Errorf("every lookup of a step failed: %w", rep.Failed[0].Err))
	}
	if w.wo.Apply && len(rep.Stale) > 0 {
		if rep, err = w.revoke(ctx, rep); err != nil {
			return err
		}
	}
	w.add(rep)
	if w.wo.Apply {
		w.b.update(func(l ledger.Ledger) ledger.Ledger { return l.Step(last, rep, w.cfg.now()) })
		if w.b.l.Walk == nil {
			return w.abandoned()
		}
	}
	return nil
}

// abandoned: a run started the ledger anew while the walk went on (it
// found another cluster behind the address): this walk's place means
// nothing there, and it stops.
func (w *walker) abandoned() error {
	return w.fail(failure.StageSweep, failure.AskToken, errors.New("the ledger began anew while the walk ran (a run found another vault cluster); start the walk again"))
}

// revoke revokes a step's stale tokens under the run lock, judged again
// against the token file as it is now: a heal or a manual re-mint written
// since the step's lookups is kept, never revoked.
func (w *walker) revoke(ctx context.Context, rep sweep.Report) (sweep.Report, error) {
	lctx, cancel := context.WithTimeout(ctx, w.cfg.LockWait)
	lock, err := tokenfile.Acquire(lctx, w.cfg.TokenFile)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return rep, w.fail(failure.StageLock, failure.AskToken, err)
	}
	defer lock.Release()
	if err := w.actAs(ctx); err != nil {
		return rep, err
	}
	stale := make([]string, len(rep.Stale))
	for i, t := range rep.Stale {
		stale[i] = t.Accessor
	}
	again, err := sweep.Run(ctx, w.v.Accessors(w.tok), w.options(true, stale))
	if err != nil {
		return rep, w.cut(err, 0)
	}
	rep.Stale, rep.Revoked = again.Stale, again.Revoked
	rep.Kept = append(rep.Kept, again.Kept...)
	rep.Other = append(rep.Other, again.Other...)
	rep.Vanished = append(rep.Vanished, again.Vanished...)
	rep.Failed = append(rep.Failed, again.Failed...)
	return rep, nil
}

// add counts a step into the run's report.
func (w *walker) add(rep sweep.Report) {
	s := &w.res.Sweep
	s.LookedUp += rep.LookedUp
	s.Stale = append(s.Stale, rep.Stale...)
	s.Kept = append(s.Kept, rep.Kept...)
	s.Other = append(s.Other, rep.Other...)
	s.Revoked = append(s.Revoked, rep.Revoked...)
	s.Vanished = append(s.Vanished, rep.Vanished...)
	s.Failed = append(s.Failed, rep.Failed...)
}

// finish looks up again what failed earlier in this walk (all its runs),
// then ends it: the ledger whole, or the walk still under way with what is
// left unknown.
func (w *walker) finish(ctx context.Context) error {
	if !w.wo.Apply {
		w.res.Walk.Complete = len(w.res.Sweep.Failed) == 0
		return nil
	}
	if w.b.l.Walk == nil {
		return w.abandoned()
	}
	if unknown := w.b.l.Walk.Unknown; len(unknown) > 0 {
		if err := w.actAs(ctx); err != nil {
			return err
		}
		rep, err := sweep.Run(ctx, w.v.Accessors(w.tok), w.options(false, slices.Clone(unknown)))
		if err != nil {
			return w.cut(err, 0)
		}
		if len(rep.Stale) > 0 {
			if rep, err = w.revoke(ctx, rep); err != nil {
				return err
			}
		}
		w.b.update(func(l ledger.Ledger) ledger.Ledger { return l.Recheck(rep, w.cfg.now()) })
		w.rechecked(rep)
	}
	if w.b.l.Walk == nil {
		return w.abandoned()
	}
	w.b.update(func(l ledger.Ledger) ledger.Ledger { return l.Finish(w.cfg.now()) })
	w.res.Walk.Complete = w.b.l.Walk == nil && !w.b.l.WholeSince.IsZero()
	return nil
}

// rechecked counts the end's second look into the run's report: what it
// found and revoked, and, of the failures, only those that failed again
// (with every revoke that failed).
func (w *walker) rechecked(rep sweep.Report) {
	s := &w.res.Sweep
	s.Failed = slices.DeleteFunc(s.Failed, func(f sweep.Failure) bool { return f.Op == sweep.OpLookup })
	s.Failed = append(s.Failed, rep.Failed...)
	s.Stale, s.Kept = append(s.Stale, rep.Stale...), append(s.Kept, rep.Kept...)
	s.Other, s.Revoked = append(s.Other, rep.Other...), append(s.Revoked, rep.Revoked...)
	s.Vanished = append(s.Vanished, rep.Vanished...)
}

// cut is a walk stopped before its end (Ctrl-C, SIGTERM, --timeout, the
// rate cap against the deadline): its place stays for the next run.
// partial is how many of the cut step's lookups were made (its next run
// makes them again).
func (w *walker) cut(err error, partial int) error {
	done := min(w.res.Walk.Resumed+w.res.Sweep.LookedUp+partial, w.res.Walk.Listed)
	var ie *sweep.IncompleteError
	if errors.As(err, &ie) {
		ie.Done, ie.Total = done, w.res.Walk.Listed
		ie.Need = sweep.Budget(w.res.Walk.Listed-done, w.cfg.MaxRPS)
	}
	return w.fail(failure.StageSweep, failure.AskMore, err)
}

func (w *walker) fail(stage failure.Stage, ask failure.Ask, err error) error {
	_, err = w.res.fail(stage, ask, err)
	return err
}
