package main

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/tokenfile"
	"github.com/devvm/vault-token-renew/tokenstore"
)

// runFlags are the one run's flags.
type runFlags struct {
	tokenFlags
	paceFlags
	dryRun          bool
	version         bool
	metricsFile     string
	waitUnreachable time.Duration
	settle          time.Duration
}

func (r *runFlags) check() error {
	if r.waitUnreachable < 0 || r.settle < 0 {
		return errors.New("--wait-unreachable and --settle must not be negative")
	}
	return nil
}

// parseRun reads the one run's flags.
func (c *cli) parseRun(args []string) (f runFlags, exit int, ok bool) {
	fs := c.newFlags("vault-token-renew")
	c.addTokenFlags(fs, &f.tokenFlags)
	c.addPaceFlags(fs, &f.paceFlags, 0, "cap the requests per second of a sweep of the ledger's tokens (0: no cap)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "say what this run would do; change nothing in Vault or on disk")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.StringVar(&f.metricsFile, "metrics-file", c.getenv("VTR_METRICS_FILE"), "write node_exporter textfile metrics here after each run (default $VTR_METRICS_FILE; empty: none)")
	wait, werr := c.envDuration("VTR_WAIT_UNREACHABLE")
	settle, serr := c.envDuration("VTR_SETTLE")
	f.envErr = errors.Join(f.envErr, werr, serr)
	fs.DurationVar(&f.waitUnreachable, "wait-unreachable", wait,
		"keep retrying this long while vault cannot be reached at all, before failing (default $VTR_WAIT_UNREACHABLE; the unit sets 10m)")
	fs.DurationVar(&f.settle, "settle", settle,
		"first wait until the token file has not changed for this long, at most 5 times as long (default $VTR_SETTLE; the unit sets 2s, for heal on login)")
	if exit, ok = c.parse(fs, args); !ok {
		return f, exit, false
	}
	if f.version {
		c.printVersion()
		return f, 0, false
	}
	exit, ok = c.check(fs, f.tokenFlags.check, f.paceFlags.check, f.check)
	return f, exit, ok
}

// runCmd is what the timer runs: renew, heal or fail, then record the run
// and print its closing line, last.
func (c *cli) runCmd(ctx context.Context, args []string) int {
	f, exit, ok := c.parseRun(args)
	if !ok {
		return exit
	}
	s, refused := c.begin(f.tokenFlags)
	switch {
	case s == nil:
		return exitUsage
	case refused != nil:
		// An env file not to be trusted may have chosen where the state and
		// the metrics go: nothing is written then, only said.
		if !f.dryRun && refused.cause != failure.CauseUnsafeEnvFile {
			c.record(s.log, f, renew.Outcome{Kind: renew.Fail, Cause: refused.cause}, *refused)
		}
		refused.print(s.log)
		return exitStatus(refused.kind)
	}
	if line := c.shared(s.rep, s.choice.Store); line != nil {
		line.print(s.log) // nothing recorded: the state may be the other setup's too
		return exitStatus(line.kind)
	}
	cfg := c.config(f.tokenFlags, f.paceFlags, s.vc, s.choice.Store, s.log)
	cfg.DryRun = f.dryRun
	store, note, path, err := runstate.OpenLedger(c.getenv, s.choice.Store.Key())
	if store != nil {
		cfg.Ledger = store // a dry run reads it, and saves nothing
	}
	if !f.dryRun {
		sayLedger(s.log, note, path, err)
		if file, ok := s.choice.Store.(tokenstore.File); ok && f.settle > 0 {
			tokenfile.Settle(ctx, file.Path, f.settle, 5*f.settle) // a login may still be writing it
		}
	}
	o := renew.RunWaiting(ctx, s.vc, cfg, renew.Waiting{For: f.waitUnreachable, Timeout: f.timeout, Now: c.now, Sleep: c.sleep})
	if o.Err == nil && !f.dryRun {
		s.rep.walk = c.startWalk(ctx, s.log, o.Gap)
	}
	if o.Cause == failure.CauseTokenDenied {
		s.rep.tokenOf.name, s.rep.tokenOf.addr, s.rep.tokenOf.found = c.whoseToken(ctx, s.choice.Store)
	}
	line := s.rep.report(o)
	if !f.dryRun {
		c.record(s.log, f, o, line)
	}
	line.print(s.log)
	return exitStatus(line.kind)
}

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// sayLedger says once what is wrong with the state file, if anything,
// before a run that writes it: the closing line stays the run's last.
func sayLedger(log zerolog.Logger, note runstate.LedgerNote, path string, err error) {
	switch note {
	case runstate.LedgerNoPlace:
		log.Warn().Err(err).Msg("no place for the run state: the ledger of this machine's tokens is not kept, so a heal retires no stale token and only a walk (sweep --apply) finds them")
	case runstate.LedgerNew:
		log.Info().Str("state_file", path).Msg("no run state yet; starting it")
	case runstate.LedgerUnreadable:
		log.Warn().Err(err).Str("state_file", path).Msg("run state unreadable; replacing it")
	}
}

// record folds this run into the state file and writes the metrics, before
// the closing line is printed (runstate.Record). Neither may change the
// run's outcome: a problem is a warning, and the closing line stands.
func (c *cli) record(log zerolog.Logger, f runFlags, o renew.Outcome, line closing) {
	path, err := runstate.DefaultPath(c.getenv)
	if err != nil {
		log.Warn().Err(err).Msg("run state not recorded")
		return
	}
	run := runstate.RunOf(o, line.msg, line.reason, f.host, c.now())
	run.Profile = c.profile
	stateErr, metricsErr := runstate.Record(path, f.metricsFile, run)
	if stateErr != nil {
		log.Warn().Err(stateErr).Str("state_file", path).Msg("could not record the run state; status --brief and notify will not see this run")
	}
	if metricsErr != nil {
		log.Warn().Err(metricsErr).Str("metrics_file", f.metricsFile).Msg("could not write the metrics")
	}
}
