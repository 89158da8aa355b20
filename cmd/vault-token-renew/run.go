package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// oneRun is what the timer runs: renew, heal or fail, then record the run
// and print its closing line, last.
func (c *cli) oneRun(ctx context.Context, vc *vaultclient.Client, rep reporter, log zerolog.Logger, o options) ending {
	cfg := rep.cfg
	cfg.Ledger = c.ledgerStore(log, cfg.TokenFile, !o.dryRun)
	if o.settle > 0 && !o.dryRun {
		tokenfile.Settle(ctx, cfg.TokenFile, o.settle, 5*o.settle) // a login may still be writing it
	}
	res, err := c.runWaiting(ctx, o, log, func(ctx context.Context) (renew.Result, error) { return renew.Run(ctx, vc, cfg) })
	if err == nil && !o.dryRun {
		rep.walk = c.startWalk(ctx, log, res.Gap != ledger.NoGap)
	}
	line := rep.report(res, err)
	if !o.dryRun {
		c.record(log, o, res, line)
	}
	line.print(log)
	return line.end
}

// Retries have one owner per stage, so that waits never multiply:
//   - one request: the API client (VAULT_MAX_RETRIES, 2 by default) retries
//     a 429, a 5xx or a dropped connection after a second or so; it owns
//     every call but the create;
//   - the create: renew, writing each attempt ahead in the ledger (the
//     adapter turns the client's retries off for it), as often as
//     VAULT_MAX_RETRIES says;
//   - a Vault that cannot be reached at all before anything was done:
//     runWaiting, between whole attempts, for --wait-unreachable (minutes,
//     where a boot brings the network up late). Each attempt, the client's
//     retries in it included, is bounded by --timeout.
//
// The worst case is therefore worstWait: the unit's TimeoutStartSec=
// must be above it.

// worstWait is the longest a run can take: waiting for an unreachable Vault
// until the wait is up, then one last attempt of a whole --timeout.
func worstWait(o options) time.Duration { return o.waitUnreachable + o.timeout }

// runWaiting is one run, tried again while Vault cannot be reached at all
// and nothing has been done yet, for up to --wait-unreachable: a run the
// timer fires at boot may find the network not up for a minute, and a
// failed unit for that would be an alarm nobody should have to read. No
// other cause is retried: DRIFT and a refused or dead token fail at once.
func (c *cli) runWaiting(ctx context.Context, o options, log zerolog.Logger, try func(context.Context) (renew.Result, error)) (renew.Result, error) {
	giveUp := c.now().Add(o.waitUnreachable)
	pause := 5 * time.Second
	for {
		rctx, cancel := context.WithTimeout(ctx, o.timeout)
		res, err := try(rctx)
		cancel()
		if res.Stage != failure.StageLookup || res.Cause != failure.CauseUnreachable || !c.now().Add(pause).Before(giveUp) {
			return res, err
		}
		log.Info().Err(err).Str("retry_in", fmtDur(pause)).Str("until", giveUp.Format(time.RFC3339)).
			Msg("vault unreachable; waiting for it (--wait-unreachable) before failing")
		if werr := c.sleep(ctx, pause); werr != nil {
			res.Cause = failure.CauseCanceled
			return res, fmt.Errorf("while waiting for vault: %w (%w)", werr, err)
		}
		pause = min(2*pause, 15*time.Second)
	}
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

// ledgerStore is the run state's ledger of tokenFile for renew. Where it will be
// written, it first says once what is wrong with the state file, if
// anything, before the run: the closing line stays the run's last.
func (c *cli) ledgerStore(log zerolog.Logger, tokenFile string, writing bool) renew.LedgerStore {
	path, err := runstate.DefaultPath(c.getenv)
	if err != nil {
		if writing {
			log.Warn().Err(err).Msg("no place for the run state: the ledger of this machine's tokens is not kept, so a heal retires no stale token and only a walk (sweep --apply) finds them")
		}
		return nil
	}
	if _, err := runstate.Load(path); writing {
		switch {
		case errors.Is(err, runstate.ErrNoState):
			log.Info().Str("state_file", path).Msg("no run state yet; starting it")
		case err != nil:
			log.Warn().Err(err).Str("state_file", path).Msg("run state unreadable; replacing it")
		}
	}
	return runstate.LedgerStore{Path: path, File: tokenFile}
}

// record folds this run into the state file and writes the metrics, before
// the closing line is printed. Neither may change the run's outcome: a
// problem is a warning, and the closing line stands.
func (c *cli) record(log zerolog.Logger, o options, res renew.Result, line closing) {
	path, err := runstate.DefaultPath(c.getenv)
	if err != nil {
		log.Warn().Err(err).Msg("run state not recorded")
		return
	}
	st, err := runstate.Update(path, func(prev runstate.State) runstate.State { return runstate.Next(prev, c.runOf(o, res, line)) })
	if err != nil {
		log.Warn().Err(err).Str("state_file", path).Msg("could not record the run state; status --brief and notify will not see this run")
		return
	}
	if o.metricsFile == "" {
		return
	}
	if err := runstate.WriteMetrics(o.metricsFile, st); err != nil {
		log.Warn().Err(err).Str("metrics_file", o.metricsFile).Msg("could not write the metrics")
	}
}

// runOf is what this run tells the state: its outcome, cause and reason as
// data, and our token's accessor and expiry where the run learned them (a
// renewal, also one Vault capped, or a heal).
func (c *cli) runOf(o options, res renew.Result, line closing) runstate.Run {
	now := c.now()
	r := runstate.Run{Time: now, Outcome: line.outcome, Summary: line.msg, Reason: line.reason, Host: o.host}
	if !line.outcome.Success() {
		r.Cause = line.cause.String()
	}
	switch {
	case res.Action == renew.ActionRenew && res.TTL > 0:
		r.Accessor, r.TokenExpiry = res.Current.Accessor, now.Add(res.TTL)
	case line.outcome == runstate.Healed:
		r.Accessor, r.TokenExpiry = res.New.Accessor, now.Add(res.TTL)
	}
	return r
}
