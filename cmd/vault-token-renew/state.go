package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/renew"
)

// record folds this run into the state file and writes the metrics. Neither
// may change the run's outcome: a problem is a warning, and the run's own
// closing line stands. A missing or unreadable state file is reported once,
// here, and replaced.
func (c *cli) record(log zerolog.Logger, o options, res renew.Result, out outcome) {
	path, prev, err := c.loadState()
	switch {
	case path == "":
		log.Warn().Err(err).Msg("run state not recorded")
		return
	case errors.Is(err, runstate.ErrNoState):
		log.Info().Str("state_file", path).Msg("no run state yet; starting it")
	case err != nil:
		log.Warn().Err(err).Str("state_file", path).Msg("run state unreadable; replacing it")
	}
	st := runstate.Next(prev, c.runOf(o, res, out))
	if err := runstate.Save(path, st); err != nil {
		log.Warn().Err(err).Str("state_file", path).Msg("could not record the run state; status --brief and notify will not see this run")
	}
	if o.metricsFile == "" {
		return
	}
	if err := runstate.WriteMetrics(o.metricsFile, st); err != nil {
		log.Warn().Err(err).Str("metrics_file", o.metricsFile).Msg("could not write the metrics")
	}
}

// runOf is what this run tells the state: our token's accessor and expiry
// where the run learned them (a renewal, also one Vault capped, or a heal).
func (c *cli) runOf(o options, res renew.Result, out outcome) runstate.Run {
	now := c.now()
	r := runstate.Run{Time: now, Outcome: runstate.Outcome(out.kind), Cause: out.cause, Summary: out.summary, Host: o.host}
	switch {
	case res.Action == renew.ActionRenew && res.TTL > 0:
		r.Accessor, r.TokenExpiry = res.Current.Accessor, now.Add(res.TTL)
	case res.Action == renew.ActionHeal && out.kind == string(runstate.Healed):
		r.Accessor, r.TokenExpiry = res.Minted.Accessor, now.Add(res.TTL)
	}
	return r
}

// brief is `status --brief`, the login banner: one line from the state
// file when something needs a look, nothing when all is well. It never
// calls Vault, so it is instant and works while Vault is down, and it
// always exits 0: a banner must not break a login shell.
func (c *cli) brief() int {
	path, st, err := c.loadState()
	if path == "" {
		fmt.Fprintf(c.stdout, "vault-token-renew: %v\n", err)
		return exitOK
	}
	if line := runstate.Banner(st, err, c.now()); line != "" {
		fmt.Fprintln(c.stdout, line)
	}
	return exitOK
}

// notify is what the OnFailure= unit runs: the operator's command, told
// what failed, since when and how often. With no command configured it
// says at warning level that nobody was notified, and succeeds: a notifier
// that fails would only add a second failed unit nobody reads either.
func (c *cli) notify(ctx context.Context, log zerolog.Logger, unit string) int {
	path, st, err := c.loadState()
	if path == "" {
		log.Error().Err(err).Msg("notify: no state to report")
		return exitFail
	}
	if err != nil {
		log.Warn().Err(err).Str("state_file", path).Msg("notify: the run state is unreadable; notifying with what is known")
		st.Summary = fmt.Sprintf("%s failed; its run state is unreadable (%v)", unit, err)
	}
	// systemd tells an OnFailure= unit how the service ended. A run killed,
	// or one that never started, records nothing: the state then still
	// shows the last success, which must not be what the operator is told.
	if result := c.getenv("MONITOR_SERVICE_RESULT"); result != "" && (st.Outcome.Success() || st.Time.IsZero()) {
		st.Outcome, st.Cause = runstate.Fail, "unrecorded"
		st.Summary = fmt.Sprintf("FAIL: %s failed (result=%s, %s=%s) without recording a run; see journalctl --user -u %s",
			unit, result, c.getenv("MONITOR_EXIT_CODE"), c.getenv("MONITOR_EXIT_STATUS"), unit)
	}
	command := c.getenv("VTR_NOTIFY_COMMAND")
	if command == "" {
		log.Warn().Str("unit", unit).Str("outcome", string(st.Outcome)).
			Str("next", "set VTR_NOTIFY_COMMAND in ~/.config/vault-token-renew/env; see the runbook").
			Msg("notify: no VTR_NOTIFY_COMMAND configured; nobody was notified")
		return exitOK
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := runstate.Notify(ctx, command, st, c.environ(), c.stdout, c.stderr); err != nil {
		log.Error().Err(err).Str("unit", unit).Msg("notify: the notify command failed")
		return exitFail
	}
	log.Info().Str("unit", unit).Str("outcome", string(st.Outcome)).Int("runs", st.FailingRuns).Msg("notify: sent")
	return exitOK
}

// loadState finds and reads the run state. path is empty when there is no
// place for it (no HOME); otherwise err is Load's (ErrNoState, ErrCorrupt).
func (c *cli) loadState() (path string, st runstate.State, err error) {
	if path, err = runstate.DefaultPath(c.getenv); err != nil {
		return "", st, err
	}
	st, err = runstate.Load(path)
	return path, st, err
}

// stateOrNil loads the run state for status; a missing or unreadable one is
// shown as such, never an error.
func (c *cli) stateOrNil() (*runstate.State, error) {
	_, st, err := c.loadState()
	if err != nil {
		return nil, err
	}
	return &st, nil
}
