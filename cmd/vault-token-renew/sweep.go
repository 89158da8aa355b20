package main

import (
	"context"
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
func (c *cli) startWalk(ctx context.Context, log zerolog.Logger, gap bool) walkStart {
	ws := walkStart{unit: c.getenv("VTR_WALK_UNIT")}
	if !gap || ws.unit == "" {
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

// sweepTimed runs sweep with --timeout only when one was given: a walk has
// no overall deadline (it resumes where it stopped), and Ctrl-C stops it.
func (c *cli) sweepTimed(ctx context.Context, vc *vaultclient.Client, rep reporter, log zerolog.Logger, o options) ending {
	if !o.timeoutSet {
		rep.timeout = 0
		return c.sweep(ctx, vc, rep, log, o)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return c.sweep(ctx, vc, rep, log, o)
}

// sweep is `vault-token-renew sweep`: renew.Walk lists and looks up every
// accessor; this prints the table, the failures and the closing line, and
// records how the walk ended.
func (c *cli) sweep(ctx context.Context, vc *vaultclient.Client, rep reporter, log zerolog.Logger, o options) ending {
	cfg := rep.cfg
	cfg.Ledger = c.ledgerStore(log, cfg.TokenFile, o.apply)
	if store, ok := cfg.Ledger.(runstate.LedgerStore); ok && o.apply {
		cfg.Ledger = &metricsOnSave{LedgerStore: store, file: c.getenv("VTR_METRICS_FILE"), now: c.now}
	}
	cfg.Progress = c.progress(log)
	res, err := renew.Walk(ctx, vc, cfg, renew.WalkOptions{Apply: o.apply, IfGap: o.ifGap})
	if !res.Walk.Idle && res.Sweep.LookedUp > 0 {
		c.printSweep(res.Sweep, o.apply, res.Current.Accessor)
	}
	for _, f := range res.Sweep.Failed {
		log.Warn().Err(f.Err).Str("accessor", f.Accessor).Msg("could not " + string(f.Op) + " accessor")
	}
	line := rep.report(res, err)
	switch {
	case err == nil:
		line = sweepSummary(cfg, res, o.apply)
	case o.ifGap && (res.Cause == failure.CauseForeign || res.Cause == failure.CauseCanceled || res.Cause == failure.CauseLockHeld):
		line = walkPaused(res, err)
	}
	if o.apply {
		c.recordWalk(log, res, line)
	}
	line.print(log)
	return line.end
}

// walkPaused is the walk unit's closing line when it stops for a reason
// that is no failure: systemctl stop or a shutdown (SIGTERM), or a login
// in the token file (the heal it calls for comes first). The place is
// kept, and the next run that finds the gap starts the walk again.
func walkPaused(res renew.Result, err error) closing {
	c := closing{end: endOK, level: zerolog.InfoLevel}
	why := "stopped (SIGTERM or Ctrl-C)"
	switch res.Cause {
	case failure.CauseForeign:
		why = "the token file holds a foreign token: the heal comes first"
	case failure.CauseLockHeld:
		why = "a run held the lock longer than --lock-wait: it comes first"
	}
	done := res.Walk.Resumed + res.Sweep.LookedUp
	c.msg = fmt.Sprintf("sweep: walk paused after %d of %d accessors: %s; it resumes from there when a run next starts it", done, res.Walk.Listed, why)
	c.num("done", done).num("listed", res.Walk.Listed).err(err)
	return c
}

// sweepSummary is a finished walk's closing line, in Judge's words.
func sweepSummary(cfg renew.Config, res renew.Result, apply bool) closing {
	sw := res.Sweep
	c := closing{end: endOK, level: zerolog.InfoLevel}
	if res.Walk.Idle {
		c.msg = "sweep: the ledger is complete since " + stamp(res.Ledger.WholeSince) + "; nothing to walk"
		return c
	}
	// A lookup that failed and then passed at the end's second look is no
	// failure of the walk: what failed is what is still failed.
	if len(sw.Failed) > 0 || (apply && !res.Walk.Complete) {
		c.end, c.level = endFailed, zerolog.ErrorLevel
	}
	verb, n := "would revoke", len(sw.Stale)
	if apply {
		verb, n = "revoked", len(sw.Revoked)
	}
	resumed := ""
	if res.Walk.Resumed > 0 {
		resumed = fmt.Sprintf(", resumed after %d an earlier run looked up", res.Walk.Resumed)
	}
	c.msg = fmt.Sprintf("sweep: %s %d stale %s, kept %d, %d other machines', %d failed (walked %d accessors%s)",
		verb, n, cfg.Spec.StoredDisplayName(), len(sw.Kept), len(sw.Other), len(sw.Failed), sw.LookedUp, resumed)
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
		num("failed", len(sw.Failed)).num("vanished", len(sw.Vanished)).num("other_machines", len(sw.Other))
	return c
}

// recordWalk keeps how the walk ended in the run state, for status and
// the walk unit's notifier, and writes the metrics.
func (c *cli) recordWalk(log zerolog.Logger, res renew.Result, line closing) {
	path, err := runstate.DefaultPath(c.getenv)
	if err != nil {
		return
	}
	w := runstate.WalkEnd{Time: c.now(), Summary: safetext.Text(line.msg), Failed: line.end != endOK, Idle: res.Walk.Idle}
	st, err := runstate.Update(path, func(prev runstate.State) runstate.State { prev.LastWalk = &w; return prev })
	if err != nil {
		log.Warn().Err(err).Str("state_file", path).Msg("could not record how the walk ended")
		return
	}
	if file := c.getenv("VTR_METRICS_FILE"); file != "" {
		if err := runstate.WriteMetrics(file, st); err != nil {
			log.Warn().Err(err).Str("metrics_file", file).Msg("could not write the metrics")
		}
	}
}

// metricsOnSave writes the metrics after a walk saves its place, at most
// every half minute, so that they show how far a walk of hours has got.
type metricsOnSave struct {
	runstate.LedgerStore
	file string
	now  func() time.Time
	last time.Time
}

func (m *metricsOnSave) Fold(fn func(ledger.Ledger) ledger.Ledger) (ledger.Ledger, error) {
	l, err := m.LedgerStore.Fold(fn)
	if err != nil || m.file == "" || m.now().Sub(m.last) < 30*time.Second {
		return l, err
	}
	m.last = m.now()
	if st, err := runstate.Load(m.LedgerStore.Path); err == nil {
		_ = runstate.WriteMetrics(m.file, st) // the walk's end writes them again, and says if it cannot
	}
	return l, nil
}

// printSweep is the table of every token with our display name, with the
// verdict's word as its action.
func (c *cli) printSweep(rep sweep.Report, apply bool, current string) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCESSOR\tDISPLAY NAME\tHOST\tUSER\tCREATED\tTTL\tACTION")
	revoked := map[string]bool{}
	for _, a := range rep.Revoked {
		revoked[a] = true
	}
	failed := map[string]bool{}
	for _, f := range rep.Failed {
		failed[f.Accessor] = true
	}
	row := func(t sweep.Token, action string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safetext.Value(t.Accessor), safetext.Value(t.DisplayName),
			orDash(safetext.Value(t.Host)), orDash(safetext.Value(t.User)),
			t.CreationTime.Format(time.RFC3339), fmtDur(t.TTL), action)
	}
	for _, t := range rep.Kept {
		action := sweep.Keep.String()
		if t.Accessor == current {
			action += " (the token in the file)"
		}
		row(t, action)
	}
	for _, t := range rep.Other {
		row(t, sweep.Other.String()+" (host="+safetext.Value(t.Host)+"): never revoked")
	}
	for _, t := range rep.Stale {
		switch {
		case !apply:
			row(t, sweep.Stale.String()+": would revoke")
		case revoked[t.Accessor]:
			row(t, sweep.Stale.String()+": revoked")
		case failed[t.Accessor]:
			row(t, sweep.Stale.String()+": revoke FAILED")
		default:
			row(t, sweep.Stale.String()+": not revoked")
		}
	}
	tw.Flush()
}
