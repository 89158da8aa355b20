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
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/devvm/vault-token-renew/internal/atomicfile"
	"github.com/devvm/vault-token-renew/internal/envfile"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// Timer is the unit that `systemctl --user enable --now` starts.
const Timer = "vault-token-renew.timer"

// PathUnit is heal on login: installed always, enabled only when the
// operator opts in (HEAL_ON_LOGIN=1).
const PathUnit = "vault-token-renew.path"

// WalkUnit is the walk of its own: install starts it once, and a run that
// leaves the ledger with a gap starts it again.
const WalkUnit = "vault-token-renew-sweep.service"

// dropIn is where install points PathUnit at a token file elsewhere.
const dropIn = PathUnit + ".d/token-file.conf"

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
	// HealOnLogin is the operator's choice for PathUnit: "1" enables it,
	// "0" disables it, "" keeps whichever they made before.
	HealOnLogin string
	// Profile is PROFILE: "" is the install without a profile, a name is
	// that profile's instances (InstallProfile), "all" (uninstall only)
	// every profile and the install without one.
	Profile string
}

// Report says what an install did.
type Report struct {
	Changed      []string // paths written
	Unchanged    []string // paths already as wanted
	Reloaded     bool     // daemon-reload and enable --now ran
	NoManager    bool     // units changed but there was no user manager
	EnvNeedsAddr bool     // the env file has no VAULT_ADDR nor BAO_ADDR
	WalkStarted  bool     // the walk unit was started (it walks only if the ledger has a gap)
	// EnvChanges names each env file setting written, as "VAULT_ADDR:
	// updated" or "VTR_HOST: added"; never a value.
	EnvChanges []string
	// HealOnLogin is what became of PathUnit: "enabled", "disabled", or ""
	// (left as the operator had it); Watches is the token file it watches.
	HealOnLogin, Watches string
	// Profile is the profile installed or removed; Store is where its token
	// is kept, and why.
	Profile, Store string
	// Kept names what an uninstall left because the profiles use it;
	// Profiles are the profiles an uninstall removed.
	Kept, Profiles []string
}

// Install writes what differs and reloads systemd only when a unit changed.
// It is the install without a profile: of o.Units it installs those
// without @ and the notifier, and it refuses, before it writes anything,
// to keep its token where a profile keeps one.
func Install(o Options) (Report, error) {
	var r Report
	p := PathsUnder(o.Root)
	o.Units, _ = splitUnits(o.Units) // a profile's templates are InstallProfile's
	if _, _, err := healOnLogin(o.HealOnLogin, PathUnit); err != nil {
		return r, err
	}
	env, watch, err := planPlain(o.Root, p, o.Getenv)
	if err != nil {
		return r, err
	}
	// The binary is replaced by rename, so a timer run starting meanwhile
	// executes either the old binary or the new one, never half of one.
	if err := r.put(p.Binary, o.Binary, 0o755); err != nil {
		return r, err
	}
	unitsChanged, err := r.putUnits(p.UnitDir, o.Units)
	if err != nil {
		return r, err
	}
	if err := r.applyEnv(p.EnvFile, env); err != nil {
		return r, err
	}
	changed, err := r.putWatch(filepath.Join(p.UnitDir, dropIn), watch, filepath.Join(o.Root, ".vault-token"))
	if err != nil {
		return r, err
	}
	unitsChanged = unitsChanged || changed
	if o.Systemctl == nil {
		r.NoManager = unitsChanged || o.HealOnLogin != ""
		if o.HealOnLogin != "" {
			r.HealOnLogin = "NOT changed (no systemd user manager here)"
		}
		return r, nil
	}
	if unitsChanged {
		if err := r.reload(o.Systemctl); err != nil {
			return r, err
		}
	}
	if err := r.chooseHealOnLogin(o); err != nil {
		return r, err
	}
	return r, r.startWalk(o)
}

// startWalk starts the walk unit once, without waiting for it: on a new
// install it finds the tokens minted before the ledger began (manual
// re-mints, an older version's heals); with a whole ledger it does nothing.
func (r *Report) startWalk(o Options) error {
	if _, ok := o.Units[WalkUnit]; !ok {
		return nil
	}
	if err := o.Systemctl("start", "--no-block", WalkUnit); err != nil {
		return fmt.Errorf("systemctl --user start --no-block %s: %w", WalkUnit, err)
	}
	r.WalkStarted = true
	return nil
}

// reload makes systemd read the changed units, keeps the timer on, and
// restarts heal on login if it runs, so that it watches what the new
// units say.
func (r *Report) reload(systemctl func(args ...string) error) error {
	for _, args := range [][]string{{"daemon-reload"}, {"enable", "--now", Timer}, {"try-restart", PathUnit}} {
		if err := systemctl(args...); err != nil {
			return fmt.Errorf("systemctl --user %s: %w", strings.Join(args, " "), err)
		}
	}
	r.Reloaded = true
	return nil
}

// chooseHealOnLogin applies the operator's HEAL_ON_LOGIN (checked before
// install wrote anything), and nothing when it is not set: an upgrade
// keeps whichever they chose.
func (r *Report) chooseHealOnLogin(o Options) error {
	args, did, err := healOnLogin(o.HealOnLogin, PathUnit)
	if err != nil || args == nil {
		return err
	}
	r.HealOnLogin = did
	if err := o.Systemctl(args...); err != nil {
		return fmt.Errorf("systemctl --user %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// healOnLogin is the systemctl call HEAL_ON_LOGIN asks of the path unit
// unit, and what install then says it did; none when it is unset.
func healOnLogin(choice, unit string) (args []string, did string, err error) {
	switch choice {
	case "":
		return nil, "", nil
	case "1":
		return []string{"enable", "--now", unit}, "enabled", nil
	case "0":
		return []string{"disable", "--now", unit}, "disabled", nil
	}
	return nil, "", fmt.Errorf("HEAL_ON_LOGIN=%q: want 1 (enable heal on login) or 0 (disable it)", choice)
}

// planPlain plans the env file of the install without a profile and the
// token file its heal on login watches, and refuses, before install writes
// anything, a token file no unit can watch, or a store a profile uses
// (cause=store-conflict at every run otherwise).
func planPlain(root string, p Paths, getenv func(string) string) (envEdit, string, error) {
	env, err := planEnv(p.EnvFile, getenv)
	if err != nil {
		return env, "", fmt.Errorf("install %s: %w", p.EnvFile, err)
	}
	settings, err := plannedSettings(p.EnvFile, env)
	if err != nil {
		return env, "", err
	}
	watch, err := watchPath(root, tokenfile.DefaultPath(root, func(k string) string { return settings[k] }))
	if err != nil {
		return env, "", err
	}
	names, err := profileEnvNames(root)
	if err != nil || len(names) == 0 {
		return env, watch, err
	}
	store, err := storeOf(root, settings)
	if err != nil {
		return env, "", fmt.Errorf("where the install without a profile keeps its token: %w", err)
	}
	return env, watch, refuseSharedStore(root, owner{envFile: p.EnvFile}, store)
}

// watchPath is the token file heal on login watches, as PathChanged= must
// have it: a relative path is the home's (a user unit's working directory,
// where the run reads it), and ., // and a trailing / are cleaned away; ""
// stays "" (a token helper's store has no file). What systemd would drop
// from a unit file, leaving the path unit with no path and failing to
// load, is refused: a .. component (systemd wants a normalised path, and
// cleaning .. away is not where a link leads), a line break, invalid
// UTF-8, spaces at either end, a trailing backslash (a continuation).
func watchPath(root, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	why := ""
	switch {
	case strings.ContainsAny(path, "\n\r"):
		why = "a line break"
	case !utf8.ValidString(path):
		why = "bytes that are not UTF-8"
	case strings.TrimSpace(path) != path:
		why = "spaces at an end"
	case strings.HasSuffix(path, "\\"):
		why = "a trailing backslash"
	case slices.Contains(strings.Split(filepath.ToSlash(path), "/"), ".."):
		why = "a .. component"
	}
	if why != "" {
		return "", fmt.Errorf("heal on login cannot watch the token file %q: a path with %s cannot go in a unit file's PathChanged=; name the file plainly (VTR_TOKEN_FILE or BAO_TOKEN_PATH)", path, why)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(root, path)
	}
	return filepath.Clean(path), nil
}

// putWatch writes the drop-in at path that makes a path unit watch the
// file watch, or removes it when watch is the unit's own default (or ""
// for none: a token helper's store has no file); Watches says which.
func (r *Report) putWatch(path, watch, def string) (bool, error) {
	if watch == def || watch == "" {
		r.Watches = "%h/.vault-token"
		if watch == "" {
			r.Watches = ""
		}
		err := os.Remove(path)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("remove %s: %w", path, err)
		}
		os.Remove(filepath.Dir(path))
		r.Changed = append(r.Changed, path+" (removed)")
		return true, nil
	}
	r.Watches = watch
	before := len(r.Changed)
	// watch is watchPath's: absolute, one line; a % would be a specifier.
	body := "# Written by `go tool mage install`: heal on login watches the token file\n# the env file names (VTR_TOKEN_FILE or BAO_TOKEN_PATH).\n[Path]\nPathChanged=\nPathChanged=" + strings.ReplaceAll(watch, "%", "%%") + "\n"
	err := r.put(path, []byte(body), 0o644)
	return len(r.Changed) > before, err
}

// Uninstall stops and removes what Install put in place: the timer and
// heal on login are disabled first (a unit file removed while enabled
// would leave a dangling, enabled unit), then the units, the drop-in and
// the binary go. The env file and the run state are the operator's, and
// stay; Report.Changed names what was removed. While a profile's templates
// are installed, the binary and the notifier they use stay too
// (Report.Kept).
func Uninstall(o Options) (Report, error) {
	var r Report
	p := PathsUnder(o.Root)
	o.Units, _ = splitUnits(o.Units) // the profiles' templates go with PROFILE=all
	if o.Systemctl != nil {
		for _, u := range []string{Timer, PathUnit, WalkUnit} {
			if _, err := os.Stat(filepath.Join(p.UnitDir, u)); err != nil {
				continue // not installed (an older version, a second uninstall): nothing to disable
			}
			verb := []string{"disable", "--now", u}
			if u == WalkUnit {
				verb = []string{"stop", u} // never enabled; a walk under way keeps its place
			}
			if err := o.Systemctl(verb...); err != nil {
				return r, fmt.Errorf("systemctl --user %s: %w", strings.Join(verb, " "), err)
			}
		}
	} else {
		r.NoManager = true
	}
	// The profiles run the same binary, and their units fail into the same
	// notifier: while their templates are installed, both stay.
	shared := profileTemplatesInstalled(p.UnitDir)
	var gone []string
	for n := range o.Units {
		if shared && n == NotifyUnit {
			r.Kept = append(r.Kept, filepath.Join(p.UnitDir, n))
			continue
		}
		gone = append(gone, filepath.Join(p.UnitDir, n))
	}
	sort.Strings(gone)
	gone = append(gone, filepath.Join(p.UnitDir, dropIn), filepath.Join(p.UnitDir, PathUnit+".d"))
	if shared {
		r.Kept = append(r.Kept, p.Binary)
	} else {
		gone = append(gone, p.Binary)
	}
	if err := r.remove(gone); err != nil {
		return r, err
	}
	if o.Systemctl != nil {
		if err := o.Systemctl("daemon-reload"); err != nil {
			return r, fmt.Errorf("systemctl --user daemon-reload: %w", err)
		}
		r.Reloaded = true
	}
	return r, nil
}

// remove removes each file (or empty directory) that is there, and
// records it.
func (r *Report) remove(files []string) error {
	for _, f := range files {
		err := os.Remove(f)
		if err == nil {
			r.Changed = append(r.Changed, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", f, err)
		}
	}
	return nil
}

// putUnits writes each unit into unitDir, in name order, and reports
// whether one changed (systemd then needs a reload).
func (r *Report) putUnits(unitDir string, units map[string][]byte) (bool, error) {
	names := make([]string, 0, len(units))
	for n := range units {
		names = append(names, n)
	}
	sort.Strings(names)
	changed := false
	for _, n := range names {
		before := len(r.Changed)
		if err := r.put(filepath.Join(unitDir, n), units[n], 0o644); err != nil {
			return false, err
		}
		changed = changed || len(r.Changed) > before
	}
	return changed, nil
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

// applyEnv writes what planEnv planned. A file with nothing to update is
// not touched at all, but for its mode when others may read or write it
// (privateEnv): it is the operator's file.
func (r *Report) applyEnv(path string, env envEdit) error {
	r.EnvNeedsAddr = !env.hasAddr
	if env.data == nil {
		r.Unchanged = append(r.Unchanged, path)
		return r.privateEnv(path)
	}
	if err := r.put(path, env.data, 0o600); err != nil {
		return err
	}
	r.EnvChanges = env.changes
	return nil
}

// privateEnv makes an env file that group or others may write (or read:
// it may hold a webhook's secret URL) private again, and its directory
// unwritable by others: the tool refuses to trust it otherwise.
func (r *Report) privateEnv(path string) error {
	for _, f := range []struct {
		path string
		mode fs.FileMode
		mask fs.FileMode
	}{{path, 0o600, 0o077}, {filepath.Dir(path), 0o700, 0o022}} {
		fi, err := os.Stat(f.path)
		if err != nil || fi.Mode().Perm()&f.mask == 0 {
			continue
		}
		if err := os.Chmod(f.path, f.mode); err != nil {
			return fmt.Errorf("install: make %s private: %w", f.path, err)
		}
		r.EnvChanges = append(r.EnvChanges, fmt.Sprintf("mode of %s: %04o, made %04o", f.path, fi.Mode().Perm(), f.mode))
	}
	return nil
}

// UnitsFrom reads every unit in dir (the repo's systemd/): *.service,
// *.timer and *.path, templates included, so a unit added there is
// installed without touching the code that installs it.
func UnitsFrom(dir string) (map[string][]byte, error) {
	units := map[string][]byte{}
	for _, pattern := range []string{"*.service", "*.timer", "*.path"} {
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
		return nil, fmt.Errorf("no *.service, *.timer or *.path units in %s", dir)
	}
	return units, nil
}

// withUnits runs act (Install, Uninstall) with the units in unitDir and
// prints, after verb, every file it changed, also when it failed midway.
// The install without a profile gets the units without @ (and the
// notifier), a profile the templates, PROFILE=all every unit.
func withUnits(w io.Writer, o Options, unitDir, verb string, act func(Options) (Report, error)) (Report, error) {
	all, err := UnitsFrom(unitDir)
	if err != nil {
		return Report{}, err
	}
	plain, profile := splitUnits(all)
	switch o.Profile {
	case "":
		o.Units = plain
	case ProfileAll:
		o.Units = all
	default:
		o.Units = profile
	}
	r, err := act(o)
	for _, p := range r.Changed {
		fmt.Fprintf(w, "%s %s\n", verb, p)
	}
	return r, err
}

// UninstallUnits is `mage uninstall`: Uninstall with the units in unitDir
// (the repo's systemd/), printing what it removed and what it kept.
func UninstallUnits(w io.Writer, o Options, unitDir string) error {
	if o.Profile != "" {
		r, err := withUnits(w, o, unitDir, "uninstall: removed", UninstallProfile)
		if err == nil {
			r.printUninstallProfile(w, o)
		}
		return err
	}
	r, err := withUnits(w, o, unitDir, "uninstall: removed", Uninstall)
	if err != nil {
		return err
	}
	for _, k := range r.Kept {
		fmt.Fprintf(w, "uninstall: kept %s: the profiles use it (PROFILE=all go tool mage uninstall removes everything)\n", k)
	}
	if r.NoManager {
		fmt.Fprintf(w, "uninstall: no systemd user manager here: nothing was disabled; where one runs: systemctl --user disable --now %s %s\n", Timer, PathUnit)
	} else {
		fmt.Fprintf(w, "uninstall: disabled %s and %s, reloaded systemd\n", Timer, PathUnit)
	}
	fmt.Fprintf(w, "uninstall: kept the env file %s, the run state and the token file; remove them by hand if they are no longer wanted\n", PathsUnder(o.Root).EnvFile)
	return nil
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
	if o.Profile != "" {
		r, err := withUnits(w, o, unitDir, "install: wrote", InstallProfile)
		if err == nil {
			r.printProfile(w, o.Root, version)
		}
		return err
	}
	r, err := withUnits(w, o, unitDir, "install: wrote", Install)
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
	switch {
	case r.HealOnLogin != "":
		fmt.Fprintf(w, "install: heal on login (%s) %s; it watches %s\n", PathUnit, r.HealOnLogin, r.Watches)
	default:
		fmt.Fprintf(w, "install: heal on login (%s) left as it was (HEAL_ON_LOGIN=1 enables it, HEAL_ON_LOGIN=0 disables it); it watches %s\n", PathUnit, r.Watches)
	}
	if r.WalkStarted {
		fmt.Fprintf(w, "install: started the walk (%s): while the ledger has a gap it looks up every accessor at its rate cap (VTR_SWEEP_MAX_RPS, default 25/s) to find stale tokens no ledger knows; follow it with journalctl --user -u %s\n", WalkUnit, WalkUnit)
	}
	if r.EnvNeedsAddr {
		fmt.Fprintf(w, "install: warning: no VAULT_ADDR (or BAO_ADDR) in %s; set it there (or re-run with it exported)\n", p.EnvFile)
	}
	fmt.Fprintf(w, "install: for a login banner when a run fails, add this line to ~/.bashrc (install does not edit it):\n    %s\n", BannerLine)
}

// SweepInstalled runs the installed binary's `sweep` on the token below
// home, as `mage sweepStale` does: a dry run unless apply; for profile,
// when it is not "", that profile's (--profile). It returns the binary's
// exit code (1 when a revoke failed or the walk stopped early).
func SweepInstalled(home string, apply bool, profile string, stdout, stderr io.Writer) (int, error) {
	bin := PathsUnder(home).Binary
	if _, err := os.Stat(bin); err != nil {
		return 0, fmt.Errorf("%s is not installed; run: go tool mage install", bin)
	}
	// The binary finds the store as a run does (VTR_TOKEN_FILE, the CLI's
	// token_helper, BAO_TOKEN_PATH, ~/.vault-token), below home.
	args := []string{"sweep"}
	if profile != "" {
		args = append(args, "--profile", profile)
	}
	if apply {
		args = append(args, "--apply")
	} else {
		fmt.Fprintln(stdout, "sweepStale: dry run; set APPLY=1 to revoke")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}
