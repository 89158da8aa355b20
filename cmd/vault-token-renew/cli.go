package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// Exit codes, the whole contract with systemd and scripts.
const (
	exitOK    = 0 // OK, HEALED, or a dry run that would succeed
	exitFail  = 1 // DRIFT or FAIL: the unit fails and an operator must look
	exitUsage = 2 // bad flags or arguments
)

const usageText = `vault-token-renew keeps the periodic Vault token in the token file alive,
and heals it when a vault login overwrites the file.

Usage:
  vault-token-renew [flags]           one run: renew, heal, or fail loudly
  vault-token-renew status [flags]    report the token in the file; changes nothing
  vault-token-renew sweep [flags]     list stale periodic tokens; revoke them with --apply
  vault-token-renew --version

One run:
  our periodic token in the file      renew-self                       OK      exit 0
  foreign token that may mint         re-mint ours, write, sweep stale HEALED  exit 0
  foreign token Vault refuses         file untouched                   DRIFT   exit 1
  Vault unreachable, lookup fails     file untouched                   FAIL    exit 1

Vault is reached with the standard VAULT_* settings (VAULT_ADDR, VAULT_CACERT,
VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_NAMESPACE, VAULT_SKIP_VERIFY).
VAULT_TOKEN is never used: the token file is the source of truth.

Exit status: 0 OK/HEALED, 1 DRIFT/FAIL (status: foreign or unreadable;
sweep: a revoke failed), 2 usage error.

Flags:
`

type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func newCLI(stdout, stderr io.Writer, getenv func(string) string) *cli {
	return &cli{stdout: stdout, stderr: stderr, getenv: getenv}
}

// options are the flags every subcommand shares.
type options struct {
	tokenFile   string
	displayName string
	policies    policyList
	period      time.Duration
	logFormat   string
	timeout     time.Duration
	lockWait    time.Duration
	concurrency int
	maxRPS      float64
	// per subcommand
	dryRun  bool
	json    bool
	apply   bool
	version bool
}

type policyList struct {
	vals    []string
	changed bool
}

func (p *policyList) String() string { return strings.Join(p.vals, ",") }
func (p *policyList) Set(v string) error {
	if !p.changed {
		p.vals, p.changed = nil, true
	}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			p.vals = append(p.vals, s)
		}
	}
	return nil
}

func (c *cli) flags(name string, o *options) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	home := c.getenv("HOME")
	def := ""
	if home != "" {
		def = filepath.Join(home, ".vault-token")
	}
	o.policies = policyList{vals: []string{"vault-admin", "sops-admin"}}
	fs.StringVar(&o.tokenFile, "token-file", def, "the token file to manage")
	fs.StringVar(&o.displayName, "display-name", "devvm-wizard", "display name of the periodic token (Vault stores it as token-<name>)")
	fs.Var(&o.policies, "policy", "policy of the periodic token; repeat for several")
	fs.DurationVar(&o.period, "period", 768*time.Hour, "period of the periodic token")
	fs.StringVar(&o.logFormat, "log-format", "auto", "log format: auto, console, plain or json")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on the run after this long")
	fs.DurationVar(&o.lockWait, "lock-wait", time.Minute, "how long to wait for another run's lock")
	fs.IntVar(&o.concurrency, "concurrency", sweep.DefaultConcurrency, "accessor lookups in flight during a sweep")
	fs.Float64Var(&o.maxRPS, "max-rps", 0, "cap a sweep's requests per second to spare a shared Vault (0: no cap)")
	switch name {
	case "vault-token-renew":
		fs.BoolVar(&o.dryRun, "dry-run", false, "say what this run would do; change nothing in Vault or on disk")
		fs.BoolVar(&o.version, "version", false, "print the version and exit")
	case "status":
		fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	case "sweep":
		fs.BoolVar(&o.apply, "apply", false, "revoke the stale tokens (default: only list them)")
	}
	fs.Usage = func() {
		fmt.Fprint(c.stderr, usageText)
		fs.PrintDefaults()
	}
	return fs
}

// run parses the command line, runs one subcommand and returns its exit code.
func (c *cli) run(ctx context.Context, args []string) int {
	name := "vault-token-renew"
	if len(args) > 0 && (args[0] == "status" || args[0] == "sweep") {
		name, args = args[0], args[1:]
	}
	var o options
	fs := c.flags(name, &o)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if o.version {
		fmt.Fprintln(c.stdout, "vault-token-renew", versionString())
		return exitOK
	}
	if err := o.check(fs); err != nil {
		fmt.Fprintf(c.stderr, "vault-token-renew: %v\n", err)
		return exitUsage
	}
	log, err := newLogger(c.stderr, o.logFormat, c.getenv)
	if err != nil {
		fmt.Fprintf(c.stderr, "vault-token-renew: %v\n", err)
		return exitUsage
	}
	vc, err := vaultclient.FromEnv()
	if err != nil {
		log.Error().Err(err).Str("next", "fix the VAULT_* variables in the environment file").Msg("FAIL: vault client settings")
		return exitFail
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	cfg := renew.Config{
		TokenFile:   o.tokenFile,
		Spec:        renew.Spec{DisplayName: o.displayName, Policies: o.policies.vals, Period: o.period},
		DryRun:      o.dryRun,
		Concurrency: o.concurrency,
		MaxRPS:      o.maxRPS,
		LockWait:    o.lockWait,
		Log:         log,
	}
	switch name {
	case "status":
		return c.status(ctx, vc, cfg, o.json, log)
	case "sweep":
		return c.sweep(ctx, vc, cfg, o.apply, log)
	}
	res, err := renew.Run(ctx, vc, cfg)
	return report(log, vc.Address(), cfg, res, err)
}

func (o *options) check(fs *flag.FlagSet) error {
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q; see --help", fs.Arg(0))
	case o.tokenFile == "":
		return errors.New("HOME is not set: pass --token-file")
	case o.displayName == "":
		return errors.New("--display-name must not be empty")
	case len(o.policies.vals) == 0:
		return errors.New("--policy: at least one policy is needed")
	case o.period < time.Minute:
		return fmt.Errorf("--period %s is too short for a daily renewal", o.period)
	case o.timeout <= 0 || o.lockWait <= 0:
		return errors.New("--timeout and --lock-wait must be positive")
	case o.concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case o.maxRPS < 0:
		return errors.New("--max-rps must not be negative")
	}
	return nil
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// report logs the run's one closing line and maps the outcome to an exit
// code: the single place where outcomes become exit statuses.
func report(log zerolog.Logger, addr string, cfg renew.Config, res renew.Result, err error) int {
	dry := ""
	if res.DryRun {
		dry = " (dry run: nothing changed)"
	}
	switch {
	case err == nil && res.DryRun && res.Action == renew.ActionRenew:
		log.Info().Str("accessor", res.Current.Accessor).Dur("ttl", res.TTL).Msg("OK: would renew periodic token" + dry)
		return exitOK
	case err == nil && res.DryRun && res.Action == renew.ActionHeal:
		log.Info().Str("foreign_accessor", res.Current.Accessor).Int("would_revoke", len(res.Sweep.Matched)).
			Msgf("OK: would heal: re-mint %s from foreign dn=%s and revoke %d stale%s", cfg.Spec.StoredDisplayName(), res.Current.DisplayName, len(res.Sweep.Matched), dry)
		return exitOK
	case err == nil && res.Action == renew.ActionRenew:
		log.Info().Str("accessor", res.Current.Accessor).Str("ttl", fmtDur(res.TTL)).Str("period", fmtDur(res.Current.Period)).
			Msg("OK: renewed periodic token")
		return exitOK
	case err == nil && res.Action == renew.ActionHeal:
		ev := log.Info().Str("accessor", res.Minted.Accessor).Str("foreign_accessor", res.Current.Accessor).
			Str("ttl", fmtDur(res.TTL)).Str("path", res.Path)
		if n := len(res.Sweep.Failed); n > 0 {
			ev = log.Warn().Str("accessor", res.Minted.Accessor).Str("foreign_accessor", res.Current.Accessor).
				Int("sweep_failed", n).Str("next", "run: vault-token-renew sweep")
		}
		ev.Msgf("HEALED: re-minted from foreign dn=%s (revoked %d stale)", res.Current.DisplayName, len(res.Sweep.Revoked))
		return exitOK
	case errors.Is(err, renew.ErrHealDenied):
		log.Error().Str("accessor", res.Current.Accessor).Str("display_name", res.Current.DisplayName).Str("path", res.Path).
			Str("vault_said", res.Refusal).
			Str("next", "find what wrote the token (vault token lookup -accessor "+res.Current.Accessor+"), then restore the periodic token; see the runbook's manual re-mint").
			Msgf("DRIFT: foreign token dn=%s in the token file; %s%s", res.Current.DisplayName, renew.ErrHealDenied, dry)
		return exitFail
	}
	log.Error().Err(err).Str("stage", res.Stage).Str("cause", res.Cause.String()).Str("path", res.Path).
		Str("next", hint(addr, cfg, res, err)).Msgf("FAIL: %s%s", stageWords(res.Stage), dry)
	return exitFail
}

func stageWords(stage string) string {
	switch stage {
	case "lock":
		return "could not take the run lock"
	case "read":
		return "could not read the token file"
	case "lookup":
		return "could not look up the token in the file"
	case "renew":
		return "could not renew the periodic token"
	case "create":
		return "could not mint a periodic token"
	case "check":
		return "the minted token did not pass its check; the token file is unchanged"
	case "write":
		return "could not write the token file; the old file is unchanged"
	case "capabilities":
		return "could not ask vault what the foreign token may do"
	}
	return "run failed"
}

// remint is the runbook's manual recovery, for a dead token with no
// admin-capable token to heal from.
func remint(cfg renew.Config) string {
	var p []string
	for _, pol := range cfg.Spec.Policies {
		p = append(p, "-policy="+pol)
	}
	return fmt.Sprintf("(umask 077; vault token create -orphan -period=%s %s -display-name=%s -field=token > %s)",
		fmtDur(cfg.Spec.Period), strings.Join(p, " "), cfg.Spec.DisplayName, cfg.TokenFile)
}

// hint says what to do next about a failure.
func hint(addr string, cfg renew.Config, res renew.Result, err error) string {
	switch {
	case res.Stage == "lock":
		return "another vault-token-renew run holds the lock; wait for it (pgrep -a vault-token-renew) and run again"
	case errors.Is(err, tokenfile.ErrMissing), errors.Is(err, tokenfile.ErrEmpty):
		return "log in (vault login -method=oidc) and run again to heal, or mint the periodic token by hand: " + remint(cfg)
	case res.Stage == "read":
		return "check the token file's owner and permissions"
	case errors.Is(err, renew.ErrMintRejected):
		return "vault minted a token unlike the one asked for; check the token store's limits and the policies, then run again"
	case res.Stage == "write":
		return "check the token file's directory: permissions, free space, read-only mount"
	}
	switch res.Cause {
	case renew.CauseTokenDenied:
		return "the token in the file is dead or revoked and cannot heal itself; log in (vault login -method=oidc) and run again, or re-mint by hand: " + remint(cfg)
	case renew.CauseSealed:
		return "vault at " + addr + " is sealed or has no active node; unseal it (vault operator unseal) and run again"
	case renew.CauseUnreachable:
		return "cannot reach vault at " + addr + "; check VAULT_ADDR in the environment file and vault status"
	case renew.CauseServer:
		return "vault at " + addr + " answered with a server error; check its logs and run again"
	case renew.CauseTimeout:
		return "the run timed out; check vault status, or raise --timeout"
	}
	return "run again with --log-format=console for detail; see the runbook"
}

func fmtDur(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
