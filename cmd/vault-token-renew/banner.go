package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/renew"
)

// brief is `status --brief`, the login banner: one line from the state
// file when something needs a look, nothing when all is well. It never
// calls Vault, so it is instant and works while Vault is down, and it ends
// OK, whatever the state or its absence: a banner must not break a login
// shell. (Bad flags are a usage error, exit 2, as everywhere.)
func (c *cli) brief() int {
	path, st, err := c.loadState()
	if path == "" {
		fmt.Fprintf(c.stdout, "vault-token-renew: %v\n", err)
		return exitStatus(renew.OK)
	}
	home := c.getenv("HOME")
	all := profiles(home)
	if c.profile != "" || len(all) == 0 || !errors.Is(err, runstate.ErrNoState) {
		// The selected profile's line, or the no-profile setup's, unless
		// it never ran on a machine set up with profiles only.
		if line := runstate.BannerFor(c.profile, st, err, c.now()); line != "" {
			fmt.Fprintln(c.stdout, line)
		}
	}
	if c.profile != "" {
		return exitStatus(renew.OK)
	}
	for _, p := range all { // one line per profile that needs a look
		pst, perr := runstate.Load(c.profileStatePath(p))
		if line := runstate.BannerFor(p, pst, perr, c.now()); line != "" {
			fmt.Fprintln(c.stdout, line)
		}
	}
	return exitStatus(renew.OK)
}

// notifyCmd is what the OnFailure= unit runs: the operator's command, told
// what failed, since when and how often (runstate.ForNotify). With no
// command configured it says at warning level that nobody was notified, and
// succeeds: a notifier that fails would only add a second failed unit
// nobody reads either.
func (c *cli) notifyCmd(ctx context.Context, args []string) int {
	fs := c.newFlags("notify")
	var logFormat, unit string
	fs.StringVar(&logFormat, "log-format", "auto", "log format: auto, console, plain or json")
	fs.StringVar(&unit, "unit", "vault-token-renew", "the unit that failed (OnFailure= passes it)")
	fs.String("profile", c.profile, "the profile whose unit failed (default: the unit's instance, vault-token-renew@NAME, else $VTR_PROFILE)")
	if exit, ok := c.parse(fs, args); !ok {
		return exit
	}
	if exit, ok := c.check(fs); !ok {
		return exit
	}
	if name := unitProfile(unit); c.profile == "" && name != "" {
		// The notifier is told the unit, not the profile: a profile's
		// unit is an instance of a template, named after it.
		if err := c.useProfile([]string{"--profile", name}); err != nil {
			c.usageError(err)
			return exitUsage
		}
	}
	log := c.logger(logFormat)
	if log == nil {
		return exitUsage
	}
	return exitStatus(c.notify(ctx, *log, unit))
}

func (c *cli) notify(ctx context.Context, log zerolog.Logger, unit string) renew.Kind {
	if err := c.trustEnvFile(); err != nil {
		log.Error().Str("error", err.Error()).Str("cause", failure.CauseUnsafeEnvFile.String()).Str("next", unsafeEnvHint(err)).
			Msg("notify: the env file is not safe to trust; the notify command was not run")
		return renew.Fail
	}
	path, st, err := c.loadState()
	if path == "" {
		log.Error().Err(err).Msg("notify: no state to report")
		return renew.Fail
	}
	if err != nil {
		log.Warn().Err(err).Str("state_file", path).Msg("notify: the run state is unreadable; notifying with what is known")
	}
	st = runstate.ForNotify(st, err, unit, runstate.Monitor{Result: c.getenv("MONITOR_SERVICE_RESULT"),
		ExitCode: c.getenv("MONITOR_EXIT_CODE"), ExitStatus: c.getenv("MONITOR_EXIT_STATUS")})
	command := c.getenv("VTR_NOTIFY_COMMAND")
	if command == "" {
		log.Warn().Str("unit", unit).Str("outcome", string(st.Outcome)).
			Str("next", "set VTR_NOTIFY_COMMAND in ~/.config/vault-token-renew/env; see the runbook").
			Msg("notify: no VTR_NOTIFY_COMMAND configured; nobody was notified")
		return renew.OK
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := runstate.Notify(ctx, command, st, c.environ(), c.stdout, c.stderr); err != nil {
		log.Error().Err(err).Str("unit", unit).Msg("notify: the notify command failed")
		return renew.Fail
	}
	log.Info().Str("unit", unit).Str("outcome", string(st.Outcome)).Int("runs", st.FailingRuns).Msg("notify: sent")
	return renew.OK
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
