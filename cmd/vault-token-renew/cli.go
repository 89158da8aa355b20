package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/envfile"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
	"github.com/devvm/vault-token-renew/tokenstore"
)

// exitUsage is the exit status of a usage error: bad flags, arguments or
// settings. Every other ending is a renew.Kind (exitStatus).
const exitUsage = 2

// exitStatus is the one place where how a command ended becomes an exit
// status, the whole contract with systemd and scripts: 0 for OK and
// HEALED (a dry run that would succeed, status on our token, a clean
// walk), 1 for DRIFT and FAIL (the unit fails and an operator must look).
func exitStatus(k renew.Kind) int {
	if k.Success() {
		return 0
	}
	return 1
}

// usageText is the help, in the words of the operator's CLI (%[1]s is
// vault or bao) and its settings' names (%[2]s is VAULT_ or BAO_).
const usageText = `vault-token-renew keeps the periodic token alive where the %[1]s CLI keeps
it (a token file or a token helper), and heals it when a %[1]s login
overwrites it.

Usage:
  vault-token-renew [flags]           one run: renew, heal, or fail loudly
  vault-token-renew status [flags]    report the token in the store; changes nothing (with
                                      profiles and no --profile: a row per profile)
  vault-token-renew sweep [flags]     the walk: every accessor, gently (25/s); --apply revokes
                                      this machine's stale tokens and resumes where it stopped
  vault-token-renew status --brief    one line if the last run failed or is old: a login banner
  vault-token-renew notify            run $VTR_NOTIFY_COMMAND about the last run (OnFailure=)
  vault-token-renew --version

  --profile NAME (or VTR_PROFILE) selects one of several Vaults or namespaces
  on this machine: its settings in ~/.config/vault-token-renew/NAME.env win
  over the shell's, and its state, ledger and lock are its own.

One run:
  our periodic token in the file      renew-self                       OK      exit 0
  foreign token that may mint         re-mint ours, write, sweep stale HEALED  exit 0
  foreign token the server refuses    file untouched                   DRIFT   exit 1
  server unreachable, lookup fails    file untouched                   FAIL    exit 1

The server (Vault or OpenBao) is reached with the client settings %[2]sADDR,
%[2]sCACERT, %[2]sCAPATH, %[2]sCLIENT_CERT, %[2]sCLIENT_KEY, %[2]sNAMESPACE,
%[2]sSKIP_VERIFY, %[2]sTLS_SERVER_NAME, %[2]sCLIENT_TIMEOUT, %[2]sMAX_RETRIES; as the
bao CLI reads them, a BAO_* variable that is set wins over its VAULT_* twin,
even empty. VAULT_TOKEN and BAO_TOKEN are never used: the token is kept
where the CLI keeps it (--token-file, else VTR_TOKEN_FILE, else the
token_helper of the CLI's config file, else BAO_TOKEN_PATH, else
~/.vault-token).

Exit status: 0 OK/HEALED, 1 DRIFT/FAIL (status: foreign or unreadable;
sweep: a revoke failed, the walk stopped early, or --apply while the file
holds a foreign token), 2 usage error.

Every token this tool mints carries meta managed_by=vault-token-renew,
host=<--host> and user=<$USER> (and profile=<NAME> for a profile), and is
recorded in this machine's ledger, so that a heal retires its stale tokens
without walking every token on the server; a heal never walks. Where the ledger has a gap (a new install, a
lost state file), the walk finds the rest: the walk unit a run starts, or
sweep --apply by hand. A walk (%[1]s token lookups of every accessor) revokes
only tokens with the exact display name that are tagged for this host and
user (and profile), or untagged (manual re-mints); another machine's or
another profile's tokens are listed and never revoked.

Flags:
`

type cli struct {
	stdout, stderr io.Writer
	lookup         func(string) (string, bool) // the environment, presence and all (BAO_* wins even empty)
	getenv         func(string) string
	lookPath       func(string) (string, error) // is vault, is bao on PATH
	environ        func() []string              // the notify command's base environment
	now            func() time.Time
	sleep          func(context.Context, time.Duration) error // renew.RunWaiting's pause
	startUnit      func(context.Context, string) error        // starts the walk unit
	// profile is the profile selected (--profile, VTR_PROFILE), and
	// profileFile its env file; "" for none.
	profile, profileFile string
}

func newCLI(stdout, stderr io.Writer, lookup func(string) (string, bool)) *cli {
	getenv := func(k string) string { v, _ := lookup(k); return v }
	return &cli{stdout: stdout, stderr: stderr, lookup: lookup, getenv: withEnvFile(getenv), lookPath: exec.LookPath,
		environ: os.Environ, now: time.Now, sleep: sleepCtx, startUnit: systemctlStart}
}

// settings are the client settings, resolved as the bao CLI does.
func (c *cli) settings() vaultclient.Settings { return vaultclient.ReadSettings(c.lookup) }

// vaultCLI is the command the operator types, for every hint and the help:
// bao when the settings come from BAO_* (or bao is on PATH and vault is
// not), vault otherwise.
func (c *cli) vaultCLI(s vaultclient.Settings) string {
	if s.Bao {
		return "bao"
	}
	_, vaultErr := c.lookPath("vault")
	if _, baoErr := c.lookPath("bao"); baoErr == nil && vaultErr != nil {
		return "bao"
	}
	return "vault"
}

// withEnvFile answers the tool's own VTR_* settings from the environment
// and, failing that, from the env file the units read
// (~/.config/vault-token-renew/env). A run typed in a shell then tags and
// judges tokens as the timer's run does: a machine whose VTR_HOST pins its
// name must never sweep or mint under the kernel's hostname by hand. The
// VAULT_* and BAO_* client settings stay the shell's own, as the CLIs'
// are.
func withEnvFile(getenv func(string) string) func(string) string {
	return envfile.Overlay(func() string { return getenv("HOME") }, getenv)
}

// tokenFlags are the flags of every subcommand that acts on the token:
// which file, which token is ours, how to log, how long to take.
type tokenFlags struct {
	tokenFile   string // --token-file, when given: it wins over the CLI's own store
	fallback    string // the token file the CLI would use without a token helper, for lines said before the store is found
	displayName string
	policies    policyList
	period      time.Duration
	host        string
	logFormat   string
	timeout     time.Duration
	timeoutSet  bool  // --timeout was given (a walk has no deadline otherwise)
	envErr      error // a setting from the env file that does not parse
}

// paceFlags are the flags of the subcommands that take the run lock and
// look accessors up: the run and the walk.
type paceFlags struct {
	lockWait    time.Duration
	concurrency int
	maxRPS      float64
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

// newFlags is a subcommand's flag set, with the help text.
func (c *cli) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		cliName := c.vaultCLI(c.settings())
		prefix := "VAULT_"
		if cliName == "bao" {
			prefix = "BAO_"
		}
		fmt.Fprintf(c.stderr, usageText, cliName, prefix)
		fs.PrintDefaults()
	}
	return fs
}

// addTokenFlags registers the flags of every subcommand that acts on the token.
func (c *cli) addTokenFlags(fs *flag.FlagSet, t *tokenFlags) {
	t.fallback = tokenfile.DefaultPath(c.getenv("HOME"), c.getenv)
	t.policies = policyList{vals: []string{"vault-admin", "sops-admin"}}
	if v := c.getenv("VTR_POLICIES"); v != "" {
		t.policies.Set(v)
		t.policies.changed = false // a --policy replaces them
	}
	dn := c.getenv("VTR_DISPLAY_NAME")
	if dn == "" {
		dn = "devvm-wizard"
	}
	period, err := c.envDuration("VTR_PERIOD")
	if period == 0 {
		period = 768 * time.Hour
	}
	t.envErr = errors.Join(t.envErr, err)
	fs.StringVar(&t.tokenFile, "token-file", "", "the token file to manage (default: where the CLI keeps the token: $VTR_TOKEN_FILE, else the token_helper of the CLI's config file (~/.vault, ~/.bao), else $BAO_TOKEN_PATH, else ~/.vault-token)")
	fs.StringVar(&t.host, "host", c.hostname(), "this machine's name, tagged on the tokens it mints (default: $VTR_HOST, else the hostname)")
	fs.StringVar(&t.displayName, "display-name", dn, "display name of the periodic token (Vault stores it as token-<name>; default $VTR_DISPLAY_NAME, else devvm-wizard)")
	fs.Var(&t.policies, "policy", "policy of the periodic token; repeat for several (default $VTR_POLICIES, comma-separated, else vault-admin,sops-admin)")
	fs.DurationVar(&t.period, "period", period, "period of the periodic token (default $VTR_PERIOD, else 768h)")
	fs.StringVar(&t.logFormat, "log-format", "auto", "log format: auto, console, plain or json")
	fs.DurationVar(&t.timeout, "timeout", 2*time.Minute, "give up on the run after this long (sweep: no limit unless given)")
	fs.String("profile", c.profile, "the profile: its settings are in ~/.config/vault-token-renew/NAME.env (default $VTR_PROFILE; none: the one env file)")
}

// addPaceFlags registers the run lock's wait and a sweep's pace; maxRPS is
// --max-rps's default (none for a run's retiring, the walk's cap for a walk).
func (c *cli) addPaceFlags(fs *flag.FlagSet, p *paceFlags, maxRPS float64, rpsHelp string) {
	fs.DurationVar(&p.lockWait, "lock-wait", time.Minute, "how long to wait for another run's lock")
	fs.IntVar(&p.concurrency, "concurrency", sweep.DefaultConcurrency, fmt.Sprintf("accessor lookups in flight during a sweep (at most %d)", sweep.MaxConcurrency))
	fs.Float64Var(&p.maxRPS, "max-rps", maxRPS, rpsHelp)
}

// parse parses args into fs; ok is false when the process ends now, with
// exit (help: 0; a usage error: 2, said by the flag set).
func (c *cli) parse(fs *flag.FlagSet, args []string) (exit int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return exitUsage, false
	}
	return 0, true
}

// check runs a parsed fs's checks, after the one every subcommand has (no
// arguments); ok is false after a usage error, said.
func (c *cli) check(fs *flag.FlagSet, checks ...func() error) (exit int, ok bool) {
	noArgs := func() error {
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q; see --help", fs.Arg(0))
		}
		return nil
	}
	for _, check := range append([]func() error{noArgs}, checks...) {
		if err := check(); err != nil {
			c.usageError(err)
			return exitUsage, false
		}
	}
	return 0, true
}

// printVersion is --version.
func (c *cli) printVersion() { fmt.Fprintln(c.stdout, "vault-token-renew", versionString()) }

// subcommands besides the one run.
var subcommands = []string{"status", "sweep", "notify"}

// run parses the command line, runs one subcommand and returns its exit
// status.
func (c *cli) run(ctx context.Context, args []string) int {
	if err := c.useProfile(args); err != nil {
		c.usageError(err)
		return exitUsage
	}
	name := "vault-token-renew"
	if len(args) > 0 && slices.Contains(subcommands, args[0]) {
		name, args = args[0], args[1:]
	}
	switch name {
	case "status":
		return c.statusCmd(ctx, args)
	case "sweep":
		return c.sweepCmd(ctx, args)
	case "notify":
		return c.notifyCmd(ctx, args)
	}
	return c.runCmd(ctx, args)
}

// logger is the one logger of a command; nil after a usage error, said.
func (c *cli) logger(format string) *zerolog.Logger {
	log, err := newLogger(c.stderr, format, c.getenv)
	if err != nil {
		c.usageError(err)
		return nil
	}
	return &log
}

// connect checks the env file, builds the API client from the settings
// and finds where the CLI keeps the token (tokenstore.Resolve); when any of
// them cannot be trusted or used, it returns the closing line that says so
// instead. It names the address and the store in rep's words.
func (c *cli) connect(t tokenFlags, rep *reporter) (*vaultclient.Client, tokenstore.Choice, *closing) {
	refuse := func(stage failure.Stage, cause failure.Cause, err error) *closing {
		line := rep.report(renew.Outcome{Stage: stage, Cause: cause, Err: err, Kind: renew.Fail, Path: rep.path})
		return &line
	}
	if err := c.trustEnvFile(); err != nil {
		return nil, tokenstore.Choice{}, refuse(failure.StageEnvFile, failure.CauseUnsafeEnvFile, err)
	}
	vc, err := vaultclient.FromSettings(c.settings())
	if err != nil {
		return nil, tokenstore.Choice{}, refuse(failure.StageSettings, failure.CauseSettings, err)
	}
	rep.addr = vc.Address()
	choice, err := tokenstore.Resolve(c.where(t, vc))
	if err != nil {
		return nil, choice, refuse(failure.StageStore, failure.CauseTokenHelper, err)
	}
	rep.path, rep.store, rep.loginWrites = choice.Store.String(), choice.Store, choice.LoginWrites
	return vc, choice, nil
}

// session is a token command's start: its logger, the words of its
// closing lines, the API client and the store.
type session struct {
	log    zerolog.Logger
	rep    reporter
	vc     *vaultclient.Client
	choice tokenstore.Choice
}

// begin is what every command on the token does first, once its flags are
// parsed. A nil session is a usage error, said (a bad --log-format); a
// closing line is why the command ends here (an env file not to trust,
// settings that build no client, a store that cannot be used).
func (c *cli) begin(t tokenFlags) (*session, *closing) {
	log := c.logger(t.logFormat)
	if log == nil {
		return nil, nil
	}
	s := &session{log: *log, rep: c.reporter(t)}
	var refused *closing
	s.vc, s.choice, refused = c.connect(t, &s.rep)
	return s, refused
}

// where is what the store is found from: the flags, the environment, the
// operator's CLI, and the address and namespace a token helper is told.
func (c *cli) where(t tokenFlags, vc *vaultclient.Client) tokenstore.Where {
	lockDir := os.TempDir()
	if d, err := runstate.Dir(c.getenv); err == nil {
		lockDir = d // one lock per store, whichever profile runs
	}
	addr := c.settings().Get("ADDR")
	if addr == "" {
		addr = vc.Address()
	}
	return tokenstore.Where{Getenv: c.getenv, Bao: c.vaultCLI(c.settings()) == "bao", Flag: t.tokenFile,
		Addr: addr, Namespace: vc.Namespace(), Env: c.helperEnv(), LockDir: lockDir}
}

// helperEnv is a token helper's environment before its address: the CLI's
// (this process's), but never the environment's token.
func (c *cli) helperEnv() []string {
	var env []string
	for _, kv := range c.environ() {
		if !strings.HasPrefix(kv, "VAULT_TOKEN=") && !strings.HasPrefix(kv, "BAO_TOKEN=") {
			env = append(env, kv)
		}
	}
	return env
}

// reporter is the closing lines' words for the token flags t.
func (c *cli) reporter(t tokenFlags) reporter {
	rps, _ := walkRate(c.getenv)
	path := t.tokenFile
	if path == "" {
		path = t.fallback
	}
	return reporter{spec: c.spec(t), path: path, timeout: t.timeout, cli: c.vaultCLI(c.settings()), walkRPS: rps, profile: c.profile}
}

// trustEnvFile checks the env file the units read, as OpenSSH checks its
// own: under systemd its settings are in the environment already, so the
// file is checked whatever a value came from.
func (c *cli) trustEnvFile() error {
	home := c.getenv("HOME")
	if home == "" {
		return nil
	}
	file := envfile.Path(home)
	if c.profileFile != "" {
		file = c.profileFile // a profile's settings are all in its own file
	}
	if err := envfile.Check(file); err != nil {
		return fmt.Errorf("%w: %w", failure.ErrUnsafeEnvFile, err)
	}
	return nil
}

// spec is the periodic token the flags describe, and this machine.
func (c *cli) spec(t tokenFlags) decide.Spec {
	return decide.Spec{DisplayName: t.displayName, Policies: t.policies.vals, Period: t.period, Host: t.host, User: c.username(), Profile: c.profile}
}

// config is a run's (or a walk's) settings: the flags, and the create's
// retries from the API client's own (VAULT_MAX_RETRIES).
func (c *cli) config(t tokenFlags, p paceFlags, vc *vaultclient.Client, store tokenstore.Store, log zerolog.Logger) renew.Config {
	return renew.Config{
		Store:         store,
		Spec:          c.spec(t),
		Concurrency:   p.concurrency,
		MaxRPS:        p.maxRPS,
		LockWait:      p.lockWait,
		Log:           log,
		Now:           c.now,
		CreateRetries: vc.MaxRetries(),
	}
}

// usageError says what is wrong with the command line or the env file. A
// unit with a bad setting fails on it, so under systemd it goes to the
// journal at error priority, where journalctl -p err shows it.
func (c *cli) usageError(err error) {
	prefix := ""
	if toJournal(c.stderr, c.getenv("JOURNAL_STREAM")) {
		prefix = syslogPriority("error")
	}
	fmt.Fprintf(c.stderr, "%svault-token-renew: %v\n", prefix, err)
}

// walkRate is the walk's rate cap by default: VTR_SWEEP_MAX_RPS, else
// defaultWalkRPS.
func walkRate(getenv func(string) string) (float64, error) {
	v := getenv("VTR_SWEEP_MAX_RPS")
	if v == "" {
		return defaultWalkRPS, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return defaultWalkRPS, fmt.Errorf("VTR_SWEEP_MAX_RPS=%q: want a number of requests per second, 0 for no cap", v)
	}
	return f, nil
}

// envDuration reads a duration setting of the tool's own; a bad one is a
// usage error (check), never silently replaced by a default.
func (c *cli) envDuration(name string) (time.Duration, error) {
	v := c.getenv(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q %s: want a duration such as 10m", name, v, c.origin(name))
	}
	return d, nil
}

// origin says where a VTR_* setting came from: the process environment
// (a shell, or the unit, which reads the env file itself), or the env file
// a run by hand reads.
func (c *cli) origin(name string) string {
	if v, ok := c.lookup(name); ok && v != "" {
		return "in the environment"
	}
	return "in the environment file (" + envfile.Path("~") + ")"
}

// sawTimeout notes whether --timeout was given (a walk has no deadline
// otherwise).
func (t *tokenFlags) sawTimeout(fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) { t.timeoutSet = t.timeoutSet || f.Name == "timeout" })
}

// check is what every token-acting subcommand requires of its flags.
func (t *tokenFlags) check() error {
	switch {
	case t.envErr != nil:
		return t.envErr
	case t.tokenFile == "" && t.fallback == "":
		return errors.New("HOME is not set: pass --token-file (or set BAO_TOKEN_PATH)")
	case t.displayName == "":
		return errors.New("--display-name must not be empty")
	case len(t.policies.vals) == 0:
		return errors.New("--policy: at least one policy is needed")
	case t.period < decide.MinTTL:
		return fmt.Errorf("--period %s is too short: the daily timer needs at least %s (a day plus its randomized delay)", t.period, decide.MinTTL)
	case t.timeout <= 0:
		return errors.New("--timeout must be positive")
	case t.host == "":
		return errors.New("--host must not be empty: it tags the tokens this machine mints")
	}
	return nil
}

// check is what the run and the walk require of their pace.
func (p *paceFlags) check() error {
	switch {
	case p.lockWait <= 0:
		return errors.New("--lock-wait must be positive")
	case p.concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case p.concurrency > sweep.MaxConcurrency:
		return fmt.Errorf("--concurrency %d is above %d: more lookups in flight do not make a sweep faster, they only slow a shared Vault for everyone else", p.concurrency, sweep.MaxConcurrency)
	case p.maxRPS < 0:
		return errors.New("--max-rps must not be negative")
	}
	return nil
}

// hostname is this machine's name for the tokens it mints: $VTR_HOST (the
// env file's override), else the kernel's hostname.
func (c *cli) hostname() string {
	if h := c.getenv("VTR_HOST"); h != "" {
		return h
	}
	h, _ := os.Hostname()
	return h
}

// username is the local user tagged on minted tokens.
func (c *cli) username() string {
	if u := c.getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
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
