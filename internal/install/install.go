// Package install puts vault-token-renew on an operator's machine the way
// the runbook's manual model does (install -m 0755 to ~/.local/bin), plus
// the systemd user units and an environment file with the Vault client
// settings. It is idempotent: a second run changes nothing and says so; an
// upgrade updates only the env file lines it owns (envfile.go).
package install

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/devvm/vault-token-renew/internal/atomicfile"
	"github.com/devvm/vault-token-renew/internal/envfile"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// Timer is the unit that `systemctl --user enable --now` starts.
const Timer = "vault-token-renew.timer"

// clientVars are the client settings carried into the environment file:
// each VAULT_* setting the tool honours and its BAO_* twin, and
// BAO_TOKEN_PATH, which moves the token file. VAULT_TOKEN and BAO_TOKEN are
// deliberately absent: the token file is the source of truth.
var clientVars = func() []string {
	var out []string
	for _, n := range vaultclient.Names {
		out = append(out, "VAULT_"+n)
	}
	for _, n := range vaultclient.Names {
		out = append(out, "BAO_"+n)
	}
	return append(out, "BAO_TOKEN_PATH")
}()

// Paths are where things go below an install root (normally $HOME).
type Paths struct {
	Binary, UnitDir, EnvFile string
}

// PathsUnder lays the files out below root as the units expect (%h = root).
func PathsUnder(root string) Paths {
	return Paths{
		Binary:  filepath.Join(root, ".local", "bin", "vault-token-renew"),
		UnitDir: filepath.Join(root, ".config", "systemd", "user"),
		EnvFile: envfile.Path(root),
	}
}

// Options is one install.
type Options struct {
	Root   string            // install root, normally $HOME
	Binary []byte            // the built binary
	Units  map[string][]byte // unit file name -> content, from the repo's systemd/
	Getenv func(string) string
	// Systemctl runs `systemctl --user args...`; nil means no user manager.
	Systemctl func(args ...string) error
}

// Report says what an install did.
type Report struct {
	Changed      []string // paths written
	Unchanged    []string // paths already as wanted
	Reloaded     bool     // daemon-reload and enable --now ran
	NoManager    bool     // units changed but there was no user manager
	EnvNeedsAddr bool     // the env file has no VAULT_ADDR nor BAO_ADDR
	// EnvChanges names each env file setting written, as "VAULT_ADDR:
	// updated" or "VTR_HOST: added"; never a value.
	EnvChanges []string
}

// Install writes what differs and reloads systemd only when a unit changed.
func Install(o Options) (Report, error) {
	var r Report
	p := PathsUnder(o.Root)
	// The binary is replaced by rename, so a timer run starting meanwhile
	// executes either the old binary or the new one, never half of one.
	if err := r.put(p.Binary, o.Binary, 0o755); err != nil {
		return r, err
	}
	names := make([]string, 0, len(o.Units))
	for n := range o.Units {
		names = append(names, n)
	}
	sort.Strings(names)
	unitsChanged := false
	for _, n := range names {
		before := len(r.Changed)
		if err := r.put(filepath.Join(p.UnitDir, n), o.Units[n], 0o644); err != nil {
			return r, err
		}
		unitsChanged = unitsChanged || len(r.Changed) > before
	}
	if err := r.putEnv(p.EnvFile, o.Getenv); err != nil {
		return r, err
	}
	if !unitsChanged {
		return r, nil
	}
	if o.Systemctl == nil {
		r.NoManager = true
		return r, nil
	}
	if err := o.Systemctl("daemon-reload"); err != nil {
		return r, fmt.Errorf("systemctl --user daemon-reload: %w", err)
	}
	if err := o.Systemctl("enable", "--now", Timer); err != nil {
		return r, fmt.Errorf("systemctl --user enable --now %s: %w", Timer, err)
	}
	r.Reloaded = true
	return r, nil
}

// put writes data to path unless it is already there with mode perm, and
// records which it was.
func (r *Report) put(path string, data []byte, perm fs.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() == perm {
			r.Unchanged = append(r.Unchanged, path)
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	if err := atomicfile.Write(path, data, perm); err != nil {
		var dse *atomicfile.DirSyncError
		if !errors.As(err, &dse) {
			return fmt.Errorf("install %s: %w", path, err)
		}
	}
	r.Changed = append(r.Changed, path)
	return nil
}

// putEnv applies planEnv. A file with nothing to update is not touched at
// all, not even its mode: it is the operator's file.
func (r *Report) putEnv(path string, getenv func(string) string) error {
	env, err := planEnv(path, getenv)
	if err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	r.EnvNeedsAddr = !env.hasAddr
	if env.data == nil {
		r.Unchanged = append(r.Unchanged, path)
		return nil
	}
	if err := r.put(path, env.data, 0o600); err != nil {
		return err
	}
	r.EnvChanges = env.changes
	return nil
}

// UnitsFrom reads every unit in dir (the repo's systemd/): *.service and
// *.timer, templates included, so a unit added there is installed without
// touching the code that installs it.
func UnitsFrom(dir string) (map[string][]byte, error) {
	units := map[string][]byte{}
	for _, pattern := range []string{"*.service", "*.timer"} {
		names, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return nil, fmt.Errorf("list units in %s: %w", dir, err)
		}
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				return nil, fmt.Errorf("read unit: %w", err)
			}
			units[filepath.Base(n)] = b
		}
	}
	if len(units) == 0 {
		return nil, fmt.Errorf("no *.service or *.timer units in %s", dir)
	}
	return units, nil
}

// FromBuild installs the binary at built and the units in unitDir, and
// prints what it did on w: every file written, every env file setting
// changed, whether systemd was reloaded, and the login-banner line to add
// to ~/.bashrc (install never edits it).
func FromBuild(w io.Writer, o Options, built, unitDir, version string) error {
	var err error
	if o.Binary, err = os.ReadFile(built); err != nil {
		return err
	}
	if o.Units, err = UnitsFrom(unitDir); err != nil {
		return err
	}
	r, err := Install(o)
	for _, p := range r.Changed {
		fmt.Fprintf(w, "install: wrote %s\n", p)
	}
	if err != nil {
		return err
	}
	r.print(w, PathsUnder(o.Root), version)
	return nil
}

// BannerLine is the line an operator adds to ~/.bashrc: silent while all
// is well, one line at login when the renewer needs a look.
const BannerLine = `command -v vault-token-renew >/dev/null && vault-token-renew status --brief`

func (r Report) print(w io.Writer, p Paths, version string) {
	for _, c := range r.EnvChanges {
		fmt.Fprintf(w, "install: env file %s: %s\n", p.EnvFile, c)
	}
	switch {
	case len(r.Changed) == 0:
		fmt.Fprintf(w, "install: nothing changed (vault-token-renew %s already installed in %s)\n", version, p.Binary)
	case r.Reloaded:
		fmt.Fprintln(w, "install: reloaded systemd and enabled "+Timer)
	case r.NoManager:
		fmt.Fprintln(w, "install: no systemd user manager here: files installed, the timer was NOT enabled; where one runs:")
		fmt.Fprintln(w, "         systemctl --user daemon-reload && systemctl --user enable --now "+Timer)
	default:
		fmt.Fprintf(w, "install: vault-token-renew %s installed; units unchanged, no reload needed\n", version)
	}
	if r.EnvNeedsAddr {
		fmt.Fprintf(w, "install: warning: no VAULT_ADDR (or BAO_ADDR) in %s; set it there (or re-run with it exported)\n", p.EnvFile)
	}
	fmt.Fprintf(w, "install: for a login banner when a run fails, add this line to ~/.bashrc (install does not edit it):\n    %s\n", BannerLine)
}

// SweepInstalled runs the installed binary's `sweep` on the token file
// below home, as `mage sweepStale` does: a dry run unless apply. It returns
// the binary's exit code (1 when a revoke failed or the walk stopped early).
func SweepInstalled(home string, apply bool, stdout, stderr io.Writer) (int, error) {
	bin := PathsUnder(home).Binary
	if _, err := os.Stat(bin); err != nil {
		return 0, fmt.Errorf("%s is not installed; run: go tool mage install", bin)
	}
	args := []string{"sweep", "--token-file", tokenfile.DefaultPath(home, os.Getenv)}
	if apply {
		args = append(args, "--apply")
	} else {
		fmt.Fprintln(stdout, "sweepStale: dry run; set APPLY=1 to revoke")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}
