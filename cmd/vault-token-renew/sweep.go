package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
)

// defaultWalkRPS is the walk's rate cap unless VTR_SWEEP_MAX_RPS or
// --max-rps says otherwise: a walk has no deadline, so it can afford to be
// gentle with a Vault a whole team shares (200,000 accessors in about 2h15).
const defaultWalkRPS = 25

// walkStart is whether a run started the walk unit, and why not.
type walkStart struct {
	unit    string // VTR_WALK_UNIT: set by the service, empty for a run by hand
	started bool
	err     error
}

// startWalk starts the walk unit when the run left the ledger with a gap
// and the service named the unit (VTR_WALK_UNIT): without blocking, so the
// run ends now and the walk goes on at its own pace. A walk already under
// way makes this a no-op in systemd. A run by hand only names the command.
func (c *cli) startWalk(ctx context.Context, log zerolog.Logger, gap ledger.Gap) walkStart {
	ws := walkStart{unit: c.getenv("VTR_WALK_UNIT")}
	if gap == ledger.NoGap || ws.unit == "" {
		return ws
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if ws.err = c.startUnit(ctx, ws.unit); ws.err != nil {
		log.Warn().Err(ws.err).Str("unit", ws.unit).Msg("could not start the walk unit")
		return ws
	}
	ws.started = true
	return ws
}

// systemctlStart is `systemctl --user start --no-block unit`.
func systemctlStart(ctx context.Context, unit string) error {
	out, err := exec.CommandContext(ctx, "systemctl", "--user", "start", "--no-block", unit).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl --user start %s: %w: %s", unit, err, limitText(string(out), 300))
	}
	return nil
}

// limitText cuts s to n bytes, saying so.
func limitText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(cut)"
}

// sweepFlags are the walk's flags.
type sweepFlags struct {
	tokenFlags
	paceFlags
	apply bool
	ifGap bool
}

// parseSweep reads the walk's flags.
func (c *cli) parseSweep(args []string) (f sweepFlags, exit int, ok bool) {
	fs := c.newFlags("sweep")
	c.addTokenFlags(fs, &f.tokenFlags)
	rps, err := walkRate(c.getenv)
	f.envErr = errors.Join(f.envErr, err)
	c.addPaceFlags(fs, &f.paceFlags, rps, "cap the walk's requests per second, gentle on a shared Vault (default $VTR_SWEEP_MAX_RPS, else 25; 0: no cap)")
	fs.BoolVar(&f.apply, "apply", false, "revoke the stale tokens, keep the walk's place (a walk cut short resumes) and make the ledger whole (default: only list them)")
	fs.BoolVar(&f.ifGap, "if-gap", false, "walk only when the ledger has a gap or a walk is under way; a stop or a login pauses it without failing (the walk unit's run)")
	if exit, ok = c.parse(fs, args); !ok {
		return f, exit, false
	}
	f.sawTimeout(fs)
	exit, ok = c.check(fs, f.tokenFlags.check, f.paceFlags.check)
	return f, exit, ok
}

// sweepCmd is `vault-token-renew sweep`: renew.Walk lists and looks up
// every accessor; this prints its plan, the table, the failures and the
// closing line, and records how the walk ended. It has a deadline only
// when --timeout was given: a walk resumes where it stopped, and Ctrl-C
// stops it.
func (c *cli) sweepCmd(ctx context.Context, args []string) int {
	f, exit, ok := c.parseSweep(args)
	if !ok {
		return exit
	}
	s, refused := c.begin(f.tokenFlags)
	if s == nil {
		return exitUsage
	}
	log, rep, vc, choice := &s.log, s.rep, s.vc, s.choice
	rep.maxRPS = f.maxRPS
	if refused == nil {
		refused = c.shared(rep, choice.Store)
	}
	if refused != nil {
		refused.print(*log)
		return exitStatus(refused.kind)
	}
	if !f.timeoutSet {
		rep.timeout = 0
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	line := c.sweep(ctx, vc, c.config(f.tokenFlags, f.paceFlags, vc, choice.Store, *log), rep, *log, f)
	line.print(*log)
	return exitStatus(line.kind)
}

// sweep walks, prints the plan before the first lookup and the table after
// the last, and returns the closing line.
func (c *cli) sweep(ctx context.Context, vc *vaultclient.Client, cfg renew.Config, rep reporter, log zerolog.Logger, f sweepFlags) closing {
	store, note, path, err := runstate.OpenLedger(c.getenv, cfg.Store.Key())
	if f.apply {
		sayLedger(log, note, path, err)
	}
	switch {
	case store == nil:
	case f.apply:
		cfg.Ledger = &metricsOnSave{LedgerStore: store, path: store.Path, file: c.getenv("VTR_METRICS_FILE"), now: c.now}
	default:
		cfg.Ledger = store // read only: a walk without --apply saves nothing
	}
	cfg.Progress = c.progress(log)
	o := renew.Walk(ctx, vc, cfg, renew.WalkOptions{Apply: f.apply, IfGap: f.ifGap, Planned: func(p renew.WalkPlan) { printWalkPlan(log, p) }})
	if !o.Walk.Idle && o.Sweep.LookedUp > 0 {
		c.printSweep(o)
	}
	for _, r := range o.Sweep.Where(sweep.Record.Failed) {
		log.Warn().Err(r.Err).Str("accessor", r.Accessor).Msg("could not " + opOf(r) + " accessor")
	}
	line := rep.report(o)
	switch {
	case o.Walk.Paused:
		line = walkPaused(o)
	case o.Err == nil:
		line = sweepSummary(cfg, o)
	}
	if f.apply {
		c.recordWalk(log, o, line)
	}
	return line
}

// opOf is what a failed record's sweep tried: lookup or revoke.
func opOf(r sweep.Record) string {
	if r.Did == sweep.RevokeFailed {
		return sweep.OpRevoke.String()
	}
	return sweep.OpLookup.String()
}

// printWalkPlan says what the walk will do before it does it.
func printWalkPlan(log zerolog.Logger, p renew.WalkPlan) {
	verb := "list (dry run: nothing is revoked)"
	if p.Apply {
		verb = "revoke"
	}
	rate := "no rate cap"
	if p.MaxRPS > 0 {
		rate = fmt.Sprintf("--max-rps %g", p.MaxRPS)
	}
	log.Info().Int("listed", p.Listed).Int("resume_after", p.Resume).Int("step", p.Step).Int("kept", len(p.Keep)).
		Msg(fmt.Sprintf("the walk's plan: look up %d of %d accessors (%d done by an earlier run), at %s; %s this machine's stale %s (host=%s user=%s, or untagged); keep the token in the file and the %d the other token files' ledgers hold; never revoke another machine's",
			p.Listed-p.Resume, p.Listed, p.Resume, rate, verb, p.DisplayName, safetext.Value(p.Owner.Host), safetext.Value(p.Owner.User), len(p.Keep)-1))
}

// walkPaused is the walk unit's closing line when it stops for a reason
// that is no failure: systemctl stop or a shutdown (SIGTERM), or a login
// in the token file (the heal it calls for comes first). The place is
// kept, and the next run that finds the gap starts the walk again.
func walkPaused(res renew.Outcome) closing {
	c := closing{kind: renew.OK, level: zerolog.InfoLevel}
	why := "stopped (SIGTERM or Ctrl-C)"
	switch res.Cause {
	case failure.CauseForeign:
		why = "the token file holds a foreign token: the heal comes first"
	case failure.CauseLockHeld:
		why = "a run held the lock longer than --lock-wait: it comes first"
	}
	done := res.Walk.Resumed + res.Sweep.LookedUp
	c.msg = fmt.Sprintf("sweep: walk paused after %d of %d accessors: %s; it resumes from there when a run next starts it", done, res.Walk.Listed, why)
	c.num("done", done).num("listed", res.Walk.Listed).err(res.Err)
	return c
}

// sweepSummary is a finished walk's closing line, in Judge's words.
func sweepSummary(cfg renew.Config, res renew.Outcome) closing {
	sw, apply := res.Sweep, res.Walk.Apply
	c := closing{kind: res.Kind, level: zerolog.InfoLevel}
	if res.Walk.Idle {
		c.msg = "sweep: the ledger is complete since " + stamp(res.Ledger.WholeSince) + "; nothing to walk"
		return c
	}
	if !res.Kind.Success() {
		c.level = zerolog.ErrorLevel
	}
	verb, n := "would revoke", sw.Count(sweep.Is(sweep.Stale))
	if apply {
		verb, n = "revoked", sw.Count(sweep.DidThis(sweep.Revoked))
	}
	resumed := ""
	if res.Walk.Resumed > 0 {
		resumed = fmt.Sprintf(", resumed after %d an earlier run looked up", res.Walk.Resumed)
	}
	c.msg = fmt.Sprintf("sweep: %s %d stale %s, kept %d, %d other machines', %d failed (walked %d accessors%s)",
		verb, n, cfg.Spec.StoredDisplayName(), sw.Count(sweep.Is(sweep.Keep)), sw.Count(sweep.Is(sweep.Other)), sw.Count(sweep.Record.Failed), sw.LookedUp, resumed)
	switch {
	case apply && res.Walk.Complete && res.Gap == ledger.NoGap:
		c.msg += "; the ledger is complete again"
	case apply && res.Walk.Complete:
		c.msg += "; the ledger still has a gap: " + mayRemain(res.Gap) + " (a create sent while the walk ran, or in the " + fmtDur(ledger.CreateGrace) + " before it, may have minted after its list); a run after that starts another walk"
		c.level = zerolog.WarnLevel
	case apply:
		c.msg += "; some lookups failed: the walk keeps them and looks them up again when it next runs"
	case n > 0:
		c.msg += "; dry run: nothing was revoked; run again with --apply to revoke"
	}
	c.num("listed", res.Walk.Listed).num("looked_up", sw.LookedUp).num("resumed_after", res.Walk.Resumed).
		num("failed", sw.Count(sweep.Record.Failed)).num("vanished", sw.Count(sweep.DidThis(sweep.Vanished))).num("other_machines", sw.Count(sweep.Is(sweep.Other)))
	return c
}

// recordWalk keeps how the walk ended in the run state, for status and
// the walk unit's notifier, and writes the metrics (runstate.RecordWalk).
func (c *cli) recordWalk(log zerolog.Logger, o renew.Outcome, line closing) {
	path, err := runstate.DefaultPath(c.getenv)
	if err != nil {
		return
	}
	file := c.getenv("VTR_METRICS_FILE")
	w := runstate.WalkEnd{Time: c.now(), Summary: safetext.Text(line.msg), Failed: !line.kind.Success(), Idle: o.Walk.Idle}
	stateErr, metricsErr := runstate.RecordWalk(path, file, w)
	if stateErr != nil {
		log.Warn().Err(stateErr).Str("state_file", path).Msg("could not record how the walk ended")
	}
	if metricsErr != nil {
		log.Warn().Err(metricsErr).Str("metrics_file", file).Msg("could not write the metrics")
	}
}

// metricsOnSave writes the metrics after a walk saves its place, at most
// every half minute, so that they show how far a walk of hours has got.
type metricsOnSave struct {
	renew.LedgerStore
	path string // the state file
	file string // the metrics file
	now  func() time.Time
	last time.Time
}

func (m *metricsOnSave) Fold(fn func(ledger.Ledger) ledger.Ledger) (ledger.Ledger, error) {
	l, err := m.LedgerStore.Fold(fn)
	if err != nil || m.file == "" || m.now().Sub(m.last) < 30*time.Second {
		return l, err
	}
	m.last = m.now()
	if st, err := runstate.Load(m.path); err == nil {
		_ = runstate.WriteMetrics(m.file, st) // the walk's end writes them again, and says if it cannot
	}
	return l, nil
}

// printSweep is the table of every token with our display name, with the
// verdict's word and what was done as its action.
func (c *cli) printSweep(o renew.Outcome) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCESSOR\tDISPLAY NAME\tHOST\tUSER\tCREATED\tTTL\tACTION")
	for _, v := range []sweep.Verdict{sweep.Keep, sweep.Other, sweep.Stale} {
		for _, r := range o.Sweep.Where(sweep.Is(v)) {
			t := r.Token
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safetext.Value(r.Accessor), safetext.Value(t.DisplayName),
				orDash(safetext.Value(t.Host)), orDash(safetext.Value(t.User)),
				t.CreationTime.Format(time.RFC3339), fmtDur(t.TTL), action(r, o.Walk.Apply, o.Current.Accessor))
		}
	}
	tw.Flush()
}

// action is a table row's last column: the verdict's word and what was
// done, as the record says (revoked tells a walk that revoked from one
// that only looked).
func action(r sweep.Record, revoked bool, current string) string {
	switch {
	case r.Verdict == sweep.Keep && r.Accessor == current:
		return sweep.Keep.String() + " (the token in the file)"
	case r.Verdict == sweep.Keep:
		return sweep.Keep.String()
	case r.Verdict == sweep.Other:
		return sweep.Other.String() + " (host=" + safetext.Value(r.Token.Host) + "): never revoked"
	case !revoked:
		return sweep.Stale.String() + ": would revoke"
	case r.Did == sweep.Revoked:
		return sweep.Stale.String() + ": revoked"
	case r.Did == sweep.RevokeFailed:
		return sweep.Stale.String() + ": revoke FAILED"
	}
	return sweep.Stale.String() + ": not revoked"
}
