package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
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
sweep: a revoke failed, the walk stopped early, or --apply while the file
holds a foreign token), 2 usage error.

Every token this tool mints carries meta managed_by=vault-token-renew,
host=<--host> and user=<$USER>. A sweep revokes only tokens with the exact
display name that are tagged for this host and user, or untagged (manual
re-mints); another machine's tokens are listed and never revoked.

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
	host        string
	timeoutSet  bool // --timeout was given (sweep has no deadline otherwise)
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
	fs.StringVar(&o.host, "host", c.hostname(), "this machine's name, tagged on the tokens it mints (default: $VTR_HOST, else the hostname)")
	fs.StringVar(&o.displayName, "display-name", "devvm-wizard", "display name of the periodic token (Vault stores it as token-<name>)")
	fs.Var(&o.policies, "policy", "policy of the periodic token; repeat for several")
	fs.DurationVar(&o.period, "period", 768*time.Hour, "period of the periodic token")
	fs.StringVar(&o.logFormat, "log-format", "auto", "log format: auto, console, plain or json")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on the run after this long (sweep: no limit unless given)")
	fs.DurationVar(&o.lockWait, "lock-wait", time.Minute, "how long to wait for another run's lock")
	fs.IntVar(&o.concurrency, "concurrency", sweep.DefaultConcurrency, fmt.Sprintf("accessor lookups in flight during a sweep (at most %d)", sweep.MaxConcurrency))
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
	fs.Visit(func(f *flag.Flag) { o.timeoutSet = o.timeoutSet || f.Name == "timeout" })
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
	timeout := o.timeout
	if name == "sweep" && !o.timeoutSet {
		timeout = 0 // run by hand: Ctrl-C stops it, and --max-rps sets its pace
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cfg := renew.Config{
		TokenFile:   o.tokenFile,
		Spec:        renew.Spec{DisplayName: o.displayName, Policies: o.policies.vals, Period: o.period, Host: o.host, User: c.username()},
		DryRun:      o.dryRun,
		Concurrency: o.concurrency,
		MaxRPS:      o.maxRPS,
		LockWait:    o.lockWait,
		Log:         log,
	}
	rep := reporter{log: log, addr: vc.Address(), cfg: cfg, timeout: timeout}
	switch name {
	case "status":
		return c.status(ctx, vc, rep, o.json)
	case "sweep":
		return c.sweep(ctx, vc, rep, o.apply)
	}
	res, err := renew.Run(ctx, vc, cfg)
	return rep.report(res, err).code
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
	case o.period < renew.MinTTL:
		return fmt.Errorf("--period %s is too short: the daily timer needs at least %s (a day plus its randomized delay)", o.period, renew.MinTTL)
	case o.timeout <= 0 || o.lockWait <= 0:
		return errors.New("--timeout and --lock-wait must be positive")
	case o.concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case o.concurrency > sweep.MaxConcurrency:
		return fmt.Errorf("--concurrency %d is above %d: more lookups in flight do not make a sweep faster, they only slow a shared Vault for everyone else", o.concurrency, sweep.MaxConcurrency)
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
