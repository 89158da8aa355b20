package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/runstate"
)

// brief is `status --brief`, the login banner: one line from the state
// file when something needs a look, nothing when all is well. It never
// calls Vault, so it is instant and works while Vault is down, and it
// always ends OK: a banner must not break a login shell.
func (c *cli) brief() ending {
	path, st, err := c.loadState()
	if path == "" {
		fmt.Fprintf(c.stdout, "vault-token-renew: %v\n", err)
		return endOK
	}
	if line := runstate.Banner(st, err, c.now()); line != "" {
		fmt.Fprintln(c.stdout, line)
	}
	return endOK
}

// notify is what the OnFailure= unit runs: the operator's command, told
// what failed, since when and how often. With no command configured it
// says at warning level that nobody was notified, and succeeds: a notifier
// that fails would only add a second failed unit nobody reads either.
func (c *cli) notify(ctx context.Context, log zerolog.Logger, unit string) ending {
	path, st, err := c.loadState()
	if path == "" {
		log.Error().Err(err).Msg("notify: no state to report")
		return endFailed
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
	// The walk unit keeps its own ending: the last run's says nothing of
	// it. A walk that ended with its closing line recorded it; one killed
	// (MemoryMax, SIGKILL) did not, and systemd's result says so.
	if strings.Contains(unit, "sweep") {
		result := c.getenv("MONITOR_SERVICE_RESULT")
		st.Outcome, st.Cause = runstate.Fail, "walk-failed"
		switch {
		case st.LastWalk != nil && st.LastWalk.Failed && (result == "" || result == "exit-code"):
			st.Summary = st.LastWalk.Summary
		default:
			st.Summary = fmt.Sprintf("FAIL: %s failed (result=%s) without recording how the walk ended; it keeps its place; see journalctl --user -u %s", unit, result, unit)
		}
	}
	// Heal on login's path unit fails when the token file changes more
	// often than its trigger limit: the state says nothing of that.
	if strings.HasSuffix(unit, ".path") {
		st.Outcome, st.Cause = runstate.Fail, "path-unit-failed"
		st.Summary = fmt.Sprintf("FAIL: %s stopped watching the token file (too many changes in a minute: does something rewrite it in a loop?); see systemctl --user status %s, then systemctl --user reset-failed %s && systemctl --user start %s",
			unit, unit, unit, unit)
	}
	command := c.getenv("VTR_NOTIFY_COMMAND")
	if command == "" {
		log.Warn().Str("unit", unit).Str("outcome", string(st.Outcome)).
			Str("next", "set VTR_NOTIFY_COMMAND in ~/.config/vault-token-renew/env; see the runbook").
			Msg("notify: no VTR_NOTIFY_COMMAND configured; nobody was notified")
		return endOK
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := runstate.Notify(ctx, command, st, c.environ(), c.stdout, c.stderr); err != nil {
		log.Error().Err(err).Str("unit", unit).Msg("notify: the notify command failed")
		return endFailed
	}
	log.Info().Str("unit", unit).Str("outcome", string(st.Outcome)).Int("runs", st.FailingRuns).Msg("notify: sent")
	return endOK
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
