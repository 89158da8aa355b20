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
	// whose answer was lost: Outcome.Gap says so).
	Complete bool
	// Idle says IfGap found the ledger whole with no walk under way:
	// nothing was walked and Vault was not asked.
	Idle bool
	// Apply says the walk revoked (--apply); without it, it only looked.
	Apply bool
	// Paused says an IfGap walk stopped for a reason that is no failure
	// (a SIGTERM, a login in the file, a run holding the lock): its place
	// is kept, and it ends OK.
	Paused bool
}

// WalkPlan is what a walk will do, said before it acts (restic's forget):
// what it walks, where it resumes, what it revokes and what it keeps.
type WalkPlan struct {
	Apply       bool
	Listed      int // accessors the LIST returned
	Resume      int // of them, looked up by an earlier run of this walk: skipped
	Step        int // accessors looked up between two saves of the place
	MaxRPS      float64
	DisplayName string
	Owner       sweep.Owner
	// Keep are never revoked: the file's token, and the tokens the other
	// token files' ledgers hold.
	Keep []string
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
	// Planned, when set, is told the walk's plan once it has listed, before
	// its first lookup.
	Planned func(WalkPlan)
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
func Walk(ctx context.Context, v Vault, cfg Config, wo WalkOptions) Outcome {
	store := cfg.Ledger
	if store == nil {
		store = &memStore{}
	}
	if !wo.Apply {
		store = &dryStore{LedgerStore: store}
	}
	w := &walker{v: v, cfg: cfg, wo: wo, b: loadLedger(store, cfg.Log), out: Outcome{Path: cfg.Store.String(), Walk: &WalkRun{Apply: wo.Apply}},
		limit: sweep.NewLimiter(cfg.MaxRPS)}
	if wo.Step <= 0 {
		w.wo.Step = stepSize(ctx, cfg.MaxRPS)
	}
	w.run(ctx)
	// The walk's own gap is the ledger's as it left it: a cluster change
	// it found at its start is what it has just walked.
	w.out.Ledger, w.out.Gap = w.b.l, w.b.l.Gap()
	if w.b.unsaved {
		w.out.Gap = ledger.Unsaved
	}
	w.out.Kind = w.kind()
	return w.out
}

// kind is how the walk ended: OK when it reached its end with every
// lookup made (a lookup that failed and then passed at the end's second
// look is no failure), or when an IfGap walk paused; Fail otherwise.
func (w *walker) kind() Kind {
	o := &w.out
	if o.Err != nil && w.wo.IfGap {
		switch o.Cause {
		case failure.CauseForeign, failure.CauseCanceled, failure.CauseLockHeld:
			o.Walk.Paused = true
			return OK
		}
	}
	switch {
	case o.Err != nil, o.Sweep.Count(sweep.Record.Failed) > 0, w.wo.Apply && !o.Walk.Complete && !o.Walk.Idle:
		return Fail
	}
	return OK
}

// walker is one run of a walk.
type walker struct {
	v   Vault
	cfg Config
	wo  WalkOptions
	b   *runLedger
	out Outcome
	tok string // the token the lookups act as: the file's, while it is ours
	// limit paces every step alike, so that together they keep to the cap.
	limit *rate.Limiter
}

// options are a sweep's options for one piece of the walk: judged against
// the file's token (and kept: the other token files' tokens), paced by the
// walk's one limiter; looking up only, until the caller sets Apply.
func (w *walker) options() sweep.Options {
	opts := w.cfg.sweepOptions(w.keep()...)
	opts.Limiter = w.limit
	return opts
}

// keep are the accessors a walk never revokes: the file's token, and the
// tokens the other token files' ledgers hold.
func (w *walker) keep() []string {
	return append([]string{w.out.Current.Accessor}, w.b.store.Spared()...)
}

func (w *walker) run(ctx context.Context) error {
	if w.wo.IfGap && w.b.l.Gap() == ledger.NoGap && w.b.l.Walk == nil {
		w.out.Walk.Idle = true
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
	if w.wo.Planned != nil {
		w.wo.Planned(WalkPlan{Apply: w.wo.Apply, Listed: len(accs), Resume: w.out.Walk.Resumed, Step: w.wo.Step, MaxRPS: w.cfg.MaxRPS,
			DisplayName: w.cfg.Spec.StoredDisplayName(), Owner: w.cfg.Owner(), Keep: w.keep()})
	}
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
	w.out.Walk.Listed = len(accs)
	w.out.Sweep.Listed = len(accs)
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
	w.out.Walk.Resumed = i
	w.cfg.Log.Info().Int("done", w.b.l.Walk.Done).Int("listed", len(accs)).Int("skipped", i).
		Msg("resuming the walk after the place an earlier run reached")
	return accs[i:]
}

// actAs reads the token file and looks its token up when it changed: the
// walk acts as our periodic token, and stops at a foreign one.
func (w *walker) actAs(ctx context.Context) error {
	tok, err := w.cfg.Store.Read(ctx)
	if err != nil {
		return w.fail(failure.StageRead, failure.AskToken, err)
	}
	if tok == w.tok {
		return nil
	}
	cur, err := w.v.LookupSelf(ctx, tok)
	if err != nil {
		return w.fail(failure.StageLookup, failure.AskToken, fmt.Errorf("token in %s: %w", w.cfg.Store, err))
	}
	w.out.Current = cur
	if w.wo.Apply && !decide.IsOurs(cur, w.cfg.Spec) {
		w.out.Cause = failure.CauseForeign
		return w.fail(failure.StageForeign, failure.AskToken, fmt.Errorf("token in %s is dn=%s, not our periodic %s; nothing revoked",
			w.cfg.Store, safetext.Value(cur.DisplayName), w.cfg.Spec.StoredDisplayName()))
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
	opts := w.options()
	base := w.out.Sweep.LookedUp
	if w.cfg.Progress != nil {
		opts.Progress = func(done, _ int) { w.cfg.Progress(w.out.Walk.Resumed+base+done, w.out.Walk.Listed) }
	}
	rep, err := sweep.Run(ctx, w.v.Accessors(w.tok), accs, opts)
	if err != nil {
		return w.cut(err, rep.LookedUp)
	}
	if failed := rep.Where(sweep.DidThis(sweep.LookupFailed)); len(failed) == len(accs) && len(accs) > 1 {
		// Every lookup failed: the token may no longer walk (a policy, a
		// revoked token), or Vault is failing. Stop where the place is.
		return w.fail(failure.StageSweep, failure.AskMore, fmt.Errorf("every lookup of a step failed: %w", failed[0].Err))
	}
	if w.wo.Apply && rep.Count(sweep.Is(sweep.Stale)) > 0 {
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
	lock, err := lockStore(ctx, w.cfg)
	if err != nil {
		return rep, w.fail(failure.StageLock, failure.AskToken, err)
	}
	defer lock.Release()
	if err := w.actAs(ctx); err != nil {
		return rep, err
	}
	stale := sweep.AccessorsOf(rep.Where(sweep.Is(sweep.Stale)))
	opts := w.options()
	opts.Apply = true
	again, err := sweep.Run(ctx, w.v.Accessors(w.tok), stale, opts)
	if err != nil {
		return rep, w.cut(err, 0)
	}
	return merged(rep, again), nil
}

// merged is rep with a later look's records (again) in place of its own
// for the same accessors, and again's others added: the later look says
// what they are now.
func merged(rep, again sweep.Report) sweep.Report {
	out := rep
	out.Records = make([]sweep.Record, 0, len(rep.Records))
	for _, r := range rep.Records {
		if a, ok := again.Record(r.Accessor); ok {
			r = a
		}
		out.Records = append(out.Records, r)
	}
	for _, a := range again.Where(worthKeeping) {
		if _, ok := rep.Record(a.Accessor); !ok {
			out.Records = append(out.Records, a)
		}
	}
	return out
}

// add counts a step into the walk's report: its lookups, and the records of
// this machine's tokens, the other machines', the failed and the vanished
// (the ignored are many on a big Vault, and say nothing).
func (w *walker) add(rep sweep.Report) {
	s := &w.out.Sweep
	s.LookedUp += rep.LookedUp
	s.Records = append(s.Records, rep.Where(worthKeeping)...)
}

func worthKeeping(r sweep.Record) bool { return r.Verdict != sweep.Ignore || r.Did != sweep.LookedUp }

// finish looks up again what failed earlier in this walk (all its runs),
// then ends it: the ledger whole, or the walk still under way with what is
// left unknown.
func (w *walker) finish(ctx context.Context) error {
	if !w.wo.Apply {
		w.out.Walk.Complete = w.out.Sweep.Count(sweep.Record.Failed) == 0
		return nil
	}
	if w.b.l.Walk == nil {
		return w.abandoned()
	}
	if unknown := w.b.l.Walk.Unknown; len(unknown) > 0 {
		if err := w.actAs(ctx); err != nil {
			return err
		}
		rep, err := sweep.Run(ctx, w.v.Accessors(w.tok), slices.Clone(unknown), w.options())
		if err != nil {
			return w.cut(err, 0)
		}
		if rep.Count(sweep.Is(sweep.Stale)) > 0 {
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
	w.out.Walk.Complete = w.b.l.Walk == nil && !w.b.l.WholeSince.IsZero()
	return nil
}

// rechecked puts the end's second look into the walk's report: each
// accessor's record is the second look's (a lookup that failed and then
// passed is no failure of the walk).
func (w *walker) rechecked(rep sweep.Report) {
	w.out.Sweep.Records = merged(w.out.Sweep, rep).Records
}

// cut is a walk stopped before its end (Ctrl-C, SIGTERM, --timeout, the
// rate cap against the deadline): its place stays for the next run.
// partial is how many of the cut step's lookups were made (its next run
// makes them again).
func (w *walker) cut(err error, partial int) error {
	done := min(w.out.Walk.Resumed+w.out.Sweep.LookedUp+partial, w.out.Walk.Listed)
	var ie *sweep.IncompleteError
	if errors.As(err, &ie) {
		ie.Done, ie.Total = done, w.out.Walk.Listed
		ie.Need = sweep.Budget(w.out.Walk.Listed-done, w.cfg.MaxRPS)
	}
	return w.fail(failure.StageSweep, failure.AskMore, err)
}

func (w *walker) fail(stage failure.Stage, ask failure.Ask, err error) error {
	w.out.fail(stage, ask, err)
	return err
}
