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
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// ending is how a command ended; exitStatus is the one place where an
// ending becomes an exit status, the whole contract with systemd and
// scripts.
type ending int

const (
	endOK     ending = iota // OK, HEALED, a dry run that would succeed, status on our token, a clean sweep
	endFailed               // DRIFT or FAIL: the unit fails and an operator must look
	endUsage                // bad flags, arguments or settings
)

func exitStatus(e ending) int {
	switch e {
	case endOK:
		return 0
	case endUsage:
		return 2
	}
	return 1
}

// usageText is the help, in the words of the operator's CLI (%[1]s is
// vault or bao) and its settings' names (%[2]s is VAULT_ or BAO_).
const usageText = `vault-token-renew keeps the periodic token in the token file alive, and
heals it when a %[1]s login overwrites the file.

Usage:
  vault-token-renew [flags]           one run: renew, heal, or fail loudly
  vault-token-renew status [flags]    report the token in the file; changes nothing
  vault-token-renew sweep [flags]     the walk: every accessor, gently (25/s); --apply revokes
                                      this machine's stale tokens and resumes where it stopped
  vault-token-renew status --brief    one line if the last run failed or is old: a login banner
  vault-token-renew notify            run $VTR_NOTIFY_COMMAND about the last run (OnFailure=)
  vault-token-renew --version

One run:
  our periodic token in the file      renew-self                       OK      exit 0
  foreign token that may mint         re-mint ours, write, sweep stale HEALED  exit 0
  foreign token the server refuses    file untouched                   DRIFT   exit 1
  server unreachable, lookup fails    file untouched                   FAIL    exit 1

The server (Vault or OpenBao) is reached with the client settings %[2]sADDR,
%[2]sCACERT, %[2]sCAPATH, %[2]sCLIENT_CERT, %[2]sCLIENT_KEY, %[2]sNAMESPACE,
%[2]sSKIP_VERIFY, %[2]sTLS_SERVER_NAME, %[2]sCLIENT_TIMEOUT, %[2]sMAX_RETRIES; as the
bao CLI reads them, a BAO_* variable that is set wins over its VAULT_* twin,
even empty. VAULT_TOKEN and BAO_TOKEN are never used: the token file is the
source of truth (--token-file, else VTR_TOKEN_FILE, else BAO_TOKEN_PATH, else
~/.vault-token).

Exit status: 0 OK/HEALED, 1 DRIFT/FAIL (status: foreign or unreadable;
sweep: a revoke failed, the walk stopped early, or --apply while the file
holds a foreign token), 2 usage error.

Every token this tool mints carries meta managed_by=vault-token-renew,
host=<--host> and user=<$USER>, and is recorded in this machine's ledger, so
that a heal retires its stale tokens without walking every token on the
server; a heal never walks. Where the ledger has a gap (a new install, a
lost state file), the walk finds the rest: the walk unit a run starts, or
sweep --apply by hand. A walk (%[1]s token lookups of every accessor) revokes
only tokens with the exact display name that are tagged for this host and
user, or untagged (manual re-mints); another machine's tokens are listed and
never revoked.

Flags:
`

type cli struct {
	stdout, stderr io.Writer
	lookup         func(string) (string, bool) // the environment, presence and all (BAO_* wins even empty)
	getenv         func(string) string
	lookPath       func(string) (string, error) // is vault, is bao on PATH
	environ        func() []string              // the notify command's base environment
	now            func() time.Time
	sleep          func(context.Context, time.Duration) error // runWaiting's pause
	startUnit      func(context.Context, string) error        // starts the walk unit
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
	host        string
	timeoutSet  bool // --timeout was given (sweep has no deadline otherwise)
	metricsFile string
	envErr      error // a setting from the env file that does not parse
	// per subcommand
	dryRun          bool
	waitUnreachable time.Duration
	settle          time.Duration
	json            bool
	brief           bool
	apply           bool
	ifGap           bool
	unit            string
	version         bool
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
	def := tokenfile.DefaultPath(c.getenv("HOME"), c.getenv)
	o.policies = policyList{vals: []string{"vault-admin", "sops-admin"}}
	fs.StringVar(&o.tokenFile, "token-file", def, "the token file to manage (default: $VTR_TOKEN_FILE, else $BAO_TOKEN_PATH, else ~/.vault-token)")
	fs.StringVar(&o.host, "host", c.hostname(), "this machine's name, tagged on the tokens it mints (default: $VTR_HOST, else the hostname)")
	fs.StringVar(&o.displayName, "display-name", "devvm-wizard", "display name of the periodic token (Vault stores it as token-<name>)")
	fs.Var(&o.policies, "policy", "policy of the periodic token; repeat for several")
	fs.DurationVar(&o.period, "period", 768*time.Hour, "period of the periodic token")
	fs.StringVar(&o.logFormat, "log-format", "auto", "log format: auto, console, plain or json")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on the run after this long (sweep: no limit unless given)")
	fs.DurationVar(&o.lockWait, "lock-wait", time.Minute, "how long to wait for another run's lock")
	fs.IntVar(&o.concurrency, "concurrency", sweep.DefaultConcurrency, fmt.Sprintf("accessor lookups in flight during a sweep (at most %d)", sweep.MaxConcurrency))
	if name != "sweep" {
		fs.Float64Var(&o.maxRPS, "max-rps", 0, "cap the requests per second of a sweep of the ledger's tokens (0: no cap)")
	}
	switch name {
	case "vault-token-renew":
		fs.BoolVar(&o.dryRun, "dry-run", false, "say what this run would do; change nothing in Vault or on disk")
		fs.BoolVar(&o.version, "version", false, "print the version and exit")
		fs.StringVar(&o.metricsFile, "metrics-file", c.getenv("VTR_METRICS_FILE"), "write node_exporter textfile metrics here after each run (default $VTR_METRICS_FILE; empty: none)")
		wait, werr := envDuration("VTR_WAIT_UNREACHABLE", c.getenv)
		settle, serr := envDuration("VTR_SETTLE", c.getenv)
		o.envErr = errors.Join(werr, serr)
		fs.DurationVar(&o.waitUnreachable, "wait-unreachable", wait,
			"keep retrying this long while vault cannot be reached at all, before failing (default $VTR_WAIT_UNREACHABLE; the unit sets 10m)")
		fs.DurationVar(&o.settle, "settle", settle,
			"first wait until the token file has not changed for this long, at most 5 times as long (default $VTR_SETTLE; the unit sets 2s, for heal on login)")
	case "status":
		fs.BoolVar(&o.json, "json", false, "print the report as JSON")
		fs.BoolVar(&o.brief, "brief", false, "one line from the state file only, nothing when all is well: a login banner")
	case "notify":
		fs.StringVar(&o.unit, "unit", "vault-token-renew", "the unit that failed (OnFailure= passes it)")
	case "sweep":
		fs.BoolVar(&o.apply, "apply", false, "revoke the stale tokens, keep the walk's place (a walk cut short resumes) and make the ledger whole (default: only list them)")
		fs.BoolVar(&o.ifGap, "if-gap", false, "walk only when the ledger has a gap or a walk is under way; a stop or a login pauses it without failing (the walk unit's run)")
		rps, err := walkRate(c.getenv)
		o.envErr = err
		fs.Float64Var(&o.maxRPS, "max-rps", rps, "cap the walk's requests per second, gentle on a shared Vault (default $VTR_SWEEP_MAX_RPS, else 25; 0: no cap)")
	}
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

// subcommands besides the one run.
var subcommands = []string{"status", "sweep", "notify"}

// run parses the command line, runs one subcommand and returns its exit
// status.
func (c *cli) run(ctx context.Context, args []string) int {
	return exitStatus(c.dispatch(ctx, args))
}

func (c *cli) dispatch(ctx context.Context, args []string) ending {
	name, o, end, ok := c.parse(args)
	if !ok {
		return end
	}
	log, err := newLogger(c.stderr, o.logFormat, c.getenv)
	if err != nil {
		c.usageError(err)
		return endUsage
	}
	switch {
	case name == "status" && o.brief:
		return c.brief() // the login banner: the state file only, no Vault
	case name == "notify":
		if err := c.trustEnvFile(); err != nil {
			log.Error().Str("error", err.Error()).Str("cause", failure.CauseUnsafeEnvFile.String()).Str("next", unsafeEnvHint(err)).
				Msg("notify: the env file is not safe to trust; the notify command was not run")
			return endFailed
		}
		return c.notify(ctx, log, o.unit)
	}
	cfg := c.config(o, log)
	settings := c.settings()
	rps, _ := walkRate(c.getenv)
	rep := reporter{cfg: cfg, timeout: o.timeout, cli: c.vaultCLI(settings), walkRPS: rps}
	refuse := func(stage failure.Stage, cause failure.Cause, err error) ending {
		line := rep.report(renew.Result{Stage: stage, Cause: cause, Path: cfg.TokenFile}, err)
		// An env file not to be trusted may have chosen where the state
		// and the metrics go: nothing is written then, only said.
		if name == "vault-token-renew" && !o.dryRun && cause != failure.CauseUnsafeEnvFile {
			c.record(log, o, renew.Result{}, line)
		}
		line.print(log)
		return line.end
	}
	if err := c.trustEnvFile(); err != nil {
		return refuse(failure.StageEnvFile, failure.CauseUnsafeEnvFile, err)
	}
	vc, err := vaultclient.FromSettings(settings)
	if err != nil {
		return refuse(failure.StageSettings, failure.CauseSettings, err)
	}
	rep.addr, rep.cfg.CreateRetries = vc.Address(), vc.MaxRetries()
	switch name {
	case "status":
		ctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		return c.status(ctx, vc, rep, log, o.json)
	case "sweep":
		return c.sweepTimed(ctx, vc, rep, log, o)
	}
	return c.oneRun(ctx, vc, rep, log, o)
}

// trustEnvFile checks the env file the units read, as OpenSSH checks its
// own: under systemd its settings are in the environment already, so the
// file is checked whatever a value came from.
func (c *cli) trustEnvFile() error {
	home := c.getenv("HOME")
	if home == "" {
		return nil
	}
	if err := envfile.Check(envfile.Path(home)); err != nil {
		return fmt.Errorf("%w: %w", failure.ErrUnsafeEnvFile, err)
	}
	return nil
}

// config is a run's settings from the flags.
func (c *cli) config(o options, log zerolog.Logger) renew.Config {
	return renew.Config{
		TokenFile:   o.tokenFile,
		Spec:        decide.Spec{DisplayName: o.displayName, Policies: o.policies.vals, Period: o.period, Host: o.host, User: c.username()},
		DryRun:      o.dryRun,
		Concurrency: o.concurrency,
		MaxRPS:      o.maxRPS,
		LockWait:    o.lockWait,
		Log:         log,
		Now:         c.now,
	}
}

// parse reads the subcommand and its flags; ok is false when the process
// should end right away (help, version, a usage error).
func (c *cli) parse(args []string) (name string, o options, end ending, ok bool) {
	name = "vault-token-renew"
	if len(args) > 0 && slices.Contains(subcommands, args[0]) {
		name, args = args[0], args[1:]
	}
	fs := c.flags(name, &o)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return name, o, endOK, false
		}
		return name, o, endUsage, false
	}
	fs.Visit(func(f *flag.Flag) { o.timeoutSet = o.timeoutSet || f.Name == "timeout" })
	if o.version {
		fmt.Fprintln(c.stdout, "vault-token-renew", versionString())
		return name, o, endOK, false
	}
	if err := o.check(fs); err != nil {
		c.usageError(err)
		return name, o, endUsage, false
	}
	return name, o, endOK, true
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

// envDuration reads a duration setting from the env file; a bad one is a
// usage error (check), never silently replaced by a default.
func envDuration(name string, getenv func(string) string) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q in the environment file: want a duration such as 10m", name, v)
	}
	return d, nil
}

func (o *options) check(fs *flag.FlagSet) error {
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q; see --help", fs.Arg(0))
	case o.envErr != nil:
		return o.envErr
	case o.tokenFile == "":
		return errors.New("HOME is not set: pass --token-file (or set BAO_TOKEN_PATH)")
	case o.displayName == "":
		return errors.New("--display-name must not be empty")
	case len(o.policies.vals) == 0:
		return errors.New("--policy: at least one policy is needed")
	case o.period < decide.MinTTL:
		return fmt.Errorf("--period %s is too short: the daily timer needs at least %s (a day plus its randomized delay)", o.period, decide.MinTTL)
	case o.timeout <= 0 || o.lockWait <= 0:
		return errors.New("--timeout and --lock-wait must be positive")
	case o.concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case o.concurrency > sweep.MaxConcurrency:
		return fmt.Errorf("--concurrency %d is above %d: more lookups in flight do not make a sweep faster, they only slow a shared Vault for everyone else", o.concurrency, sweep.MaxConcurrency)
	case o.waitUnreachable < 0 || o.settle < 0:
		return errors.New("--wait-unreachable and --settle must not be negative")
	case o.host == "":
		return errors.New("--host must not be empty: it tags the tokens this machine mints")
	case o.maxRPS < 0:
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
