package install

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/devvm/vault-token-renew/internal/envfile"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/tokenstore"
)

// A profile is one Vault (or namespace) of several on one machine: its
// own env file (~/.config/vault-token-renew/NAME.env), state, ledger and
// lock, and its own instances of the template units (vault-token-renew@NAME.*).

// ProfileAll is PROFILE=all, for uninstall only: every profile, and the
// install without one.
const ProfileAll = "all"

// NotifyUnit is the notifier template, shared by the install without a
// profile and every profile.
const NotifyUnit = "vault-token-renew-notify@.service"

// CheckProfile is nil for a name a profile may have. "all" is PROFILE=all.
func CheckProfile(name string) error {
	if name == ProfileAll {
		return errors.New(`PROFILE=all means every profile (uninstall only); a profile cannot be named "all"`)
	}
	if !runstate.ProfileName.MatchString(name) { // the binary's own rule
		return fmt.Errorf("PROFILE=%q: a profile name is 1 to 31 of a-z, 0-9, _ and -, starting with a letter or a digit", name)
	}
	return nil
}

// Profile is a profile's name, and the names of its units.
type Profile string

func (p Profile) Timer() string    { return "vault-token-renew@" + string(p) + ".timer" }
func (p Profile) Service() string  { return "vault-token-renew@" + string(p) + ".service" }
func (p Profile) PathUnit() string { return "vault-token-renew@" + string(p) + ".path" }
func (p Profile) WalkUnit() string { return "vault-token-renew-sweep@" + string(p) + ".service" }

// pathDropIn points the profile's path unit at its token file.
func (p Profile) pathDropIn() string { return p.PathUnit() + ".d/token-file.conf" }

// notifyDropIns give the notifier of each of the profile's units that has
// OnFailure= (its instance is that unit's name: %N, or %n for the path
// unit) the profile's env file and VTR_PROFILE, in place of the env file
// of the install without a profile, which the template reads.
func (p Profile) notifyDropIns() []string {
	var out []string
	for _, failing := range []string{"vault-token-renew@" + string(p), "vault-token-renew-sweep@" + string(p), p.PathUnit()} {
		out = append(out, "vault-token-renew-notify@"+failing+".service.d/profile.conf")
	}
	return out
}

// ProfileEnvFile is the profile's env file below root, where its units
// read it (%E/vault-token-renew/NAME.env, %E being ~/.config).
func ProfileEnvFile(root, name string) string {
	return filepath.Join(filepath.Dir(PathsUnder(root).EnvFile), name+".env")
}

// isTemplate: a unit of the profiles (its name has an @) rather than of
// the install without one; the notifier is both.
func isTemplate(name string) bool { return strings.Contains(name, "@") }

// splitUnits parts the repo's units: those of the install without a
// profile (no @, and the notifier), and those of a profile (every
// template, the notifier too).
func splitUnits(all map[string][]byte) (plain, profile map[string][]byte) {
	plain, profile = map[string][]byte{}, map[string][]byte{}
	for n, b := range all {
		if !isTemplate(n) || n == NotifyUnit {
			plain[n] = b
		}
		if isTemplate(n) {
			profile[n] = b
		}
	}
	return plain, profile
}

// profileTemplatesInstalled: a profile's template units are in unitDir,
// so the binary and the notifier are not the install-without-profile's
// alone.
func profileTemplatesInstalled(unitDir string) bool {
	m, _ := filepath.Glob(filepath.Join(unitDir, "vault-token-renew@.*"))
	return len(m) > 0
}

// profileHeader opens a new profile env file, above the usual header.
func profileHeader(name string) string {
	return fmt.Sprintf("# Profile %s: read by its units (vault-token-renew@%s.service, .timer, .path,\n# vault-token-renew-sweep@%s.service), which set VTR_PROFILE=%s.\n# `PROFILE=%s go tool mage install` also writes VAULT_CONFIG_PATH, BAO_CONFIG_PATH,\n# VTR_DISPLAY_NAME, VTR_POLICIES, VTR_PERIOD and VTR_METRICS_FILE when set there.\n", name, name, name, name, name)
}

// planProfileEnv is planEnv for the profile's env file, and the settings
// the file will hold: install checks where they keep the token before it
// writes anything.
func planProfileEnv(path, name string, getenv func(string) string) (envEdit, map[string]string, error) {
	e, err := planEnvOwning(path, getenv, profileOwned)
	if err != nil {
		return e, nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		e.data = append([]byte(profileHeader(name)), e.data...)
	}
	settings, err := plannedSettings(path, e)
	if err != nil {
		return e, nil, err
	}
	if v, ok := settings["VTR_PROFILE"]; ok && v != name {
		return e, nil, fmt.Errorf("%s sets VTR_PROFILE=%s, which would override the unit's VTR_PROFILE=%s: remove that line", path, v, name)
	}
	return e, settings, nil
}

// plannedSettings are the settings the env file at path holds once e is
// written, read as EnvironmentFile= reads them.
func plannedSettings(path string, e envEdit) (map[string]string, error) {
	if e.data == nil {
		settings, err := envfile.Read(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return settings, nil
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(e.data), "\n") {
		if k, v, ok := envfile.Assignment(line); ok {
			settings[k] = envfile.Unquote(v)
		}
	}
	return settings, nil
}

// InstallProfile installs and enables the profile o.Profile: the binary,
// the template units, its env file (as Install writes the env file of the
// install without a profile), the drop-ins that point its path unit at its
// token file and its notifier at its env file; then it enables its timer,
// applies HEAL_ON_LOGIN to its path unit and starts its walk once. It
// refuses, before it writes anything, a profile that would keep its token
// in another install's store.
func InstallProfile(o Options) (Report, error) {
	r := Report{Profile: o.Profile}
	if err := CheckProfile(o.Profile); err != nil {
		return r, err
	}
	if _, _, err := healOnLogin(o.HealOnLogin, ""); err != nil {
		return r, err
	}
	prof, p := Profile(o.Profile), PathsUnder(o.Root)
	_, o.Units = splitUnits(o.Units) // the templates and the notifier
	envPath := ProfileEnvFile(o.Root, o.Profile)
	env, settings, err := planProfileEnv(envPath, o.Profile, o.Getenv)
	if err != nil {
		return r, fmt.Errorf("install %s: %w", envPath, err)
	}
	store, err := storeOf(o.Root, settings)
	if err != nil {
		return r, fmt.Errorf("profile %q: where its token is kept: %w", o.Profile, err)
	}
	if err := refuseSharedStore(o.Root, owner{o.Profile, envPath}, store); err != nil {
		return r, err
	}
	watch := ""
	if f, ok := store.Store.(tokenstore.File); ok {
		if watch, err = watchPath(o.Root, f.Path); err != nil {
			return r, fmt.Errorf("profile %q: %w", o.Profile, err)
		}
	}
	r.Store = store.Store.String() + " (" + store.Why + ")"
	unitsChanged, err := r.putProfileFiles(o, p, envPath, env)
	if err != nil {
		return r, err
	}
	changed, err := r.putProfileDropIns(o.Root, p, prof, watch)
	if err != nil {
		return r, err
	}
	unitsChanged = unitsChanged || changed
	if o.Systemctl == nil {
		r.NoManager = true
		if o.HealOnLogin != "" {
			r.HealOnLogin = "NOT changed (no systemd user manager here)"
		}
		return r, nil
	}
	return r, r.enableProfile(o, prof, unitsChanged, store)
}

// putProfileFiles writes the binary, the units and the env file, and
// reports whether a unit changed.
func (r *Report) putProfileFiles(o Options, p Paths, envPath string, env envEdit) (bool, error) {
	if err := r.put(p.Binary, o.Binary, 0o755); err != nil {
		return false, err
	}
	unitsChanged, err := r.putUnits(p.UnitDir, o.Units)
	if err != nil {
		return false, err
	}
	return unitsChanged, r.applyEnv(envPath, env)
}

// putProfileDropIns points the profile's path unit at its token file,
// watch ("" for a token helper: heal on login is not offered there), and
// its notifier at its env file; it reports whether a unit file changed.
func (r *Report) putProfileDropIns(root string, p Paths, prof Profile, watch string) (bool, error) {
	changed, err := r.putWatch(filepath.Join(p.UnitDir, prof.pathDropIn()), watch, filepath.Join(root, ".vault-token"))
	if err != nil {
		return false, err
	}
	for _, d := range prof.notifyDropIns() {
		body := fmt.Sprintf("# Written by `PROFILE=%[1]s go tool mage install`: when a unit of profile %[1]s\n# fails, the notifier reads %[1]s's env file (its VTR_NOTIFY_COMMAND) and\n# state, not those of the install without a profile. Optional here: when\n# the run failed for want of that file, the notifier still starts, and\n# its line names the missing file.\n[Service]\nEnvironmentFile=\nEnvironmentFile=-%%E/vault-token-renew/%[1]s.env\nEnvironment=VTR_PROFILE=%[1]s\n", prof)
		before := len(r.Changed)
		if err := r.put(filepath.Join(p.UnitDir, d), []byte(body), 0o644); err != nil {
			return false, err
		}
		changed = changed || len(r.Changed) > before
	}
	return changed, nil
}

// enableProfile reloads systemd when a unit changed (restarting a running
// path unit, so that it watches what its drop-in now says), enables the
// profile's timer (a new profile's template may be unchanged), applies
// HEAL_ON_LOGIN and starts the walk once.
func (r *Report) enableProfile(o Options, prof Profile, unitsChanged bool, store tokenstore.Choice) error {
	calls := [][]string{{"enable", "--now", prof.Timer()}}
	if unitsChanged {
		calls = append([][]string{{"daemon-reload"}, {"try-restart", prof.PathUnit()}}, calls...)
		r.Reloaded = true
	}
	if heal := r.profileHealOnLogin(o.HealOnLogin, prof, store); heal != nil {
		calls = append(calls, heal)
	}
	calls = append(calls, []string{"start", "--no-block", prof.WalkUnit()})
	for _, args := range calls {
		if err := o.Systemctl(args...); err != nil {
			return fmt.Errorf("systemctl --user %s: %w", strings.Join(args, " "), err)
		}
	}
	r.WalkStarted = true
	return nil
}

// profileHealOnLogin is the systemctl call HEAL_ON_LOGIN (checked by
// InstallProfile) asks of the profile's path unit: nil when it is unset
// (an upgrade keeps the choice). A token kept by a helper has no file to
// watch: the path unit is disabled whatever was asked, or one enabled while
// the profile kept a file would go on watching the template's
// %h/.vault-token.
func (r *Report) profileHealOnLogin(choice string, prof Profile, store tokenstore.Choice) []string {
	args, did, _ := healOnLogin(choice, prof.PathUnit())
	if _, ok := store.Store.(tokenstore.File); !ok {
		args, did = []string{"disable", "--now", prof.PathUnit()}, "disabled"
		if choice == "1" {
			did = "NOT enabled"
		}
	}
	if args != nil {
		r.HealOnLogin = did
	}
	return args
}

// printProfile says what InstallProfile did, as print does for the
// install without a profile.
func (r Report) printProfile(w io.Writer, root, version string) {
	prof, p := Profile(r.Profile), PathsUnder(root)
	env := ProfileEnvFile(root, r.Profile)
	for _, c := range r.EnvChanges {
		fmt.Fprintf(w, "install: env file %s: %s\n", env, c)
	}
	fmt.Fprintf(w, "install: profile %s keeps its token in %s\n", r.Profile, r.Store)
	switch {
	case r.NoManager:
		fmt.Fprintln(w, "install: no systemd user manager here: files installed, the timer was NOT enabled; where one runs:")
		fmt.Fprintln(w, "         systemctl --user daemon-reload && systemctl --user enable --now "+prof.Timer())
	case len(r.Changed) == 0:
		fmt.Fprintf(w, "install: nothing changed (vault-token-renew %s already installed in %s); %s is enabled\n", version, p.Binary, prof.Timer())
	case r.Reloaded:
		fmt.Fprintln(w, "install: reloaded systemd and enabled "+prof.Timer())
	default:
		fmt.Fprintf(w, "install: vault-token-renew %s installed; units unchanged, no reload needed; %s is enabled\n", version, prof.Timer())
	}
	r.printProfileHeal(w, prof)
	if r.WalkStarted {
		fmt.Fprintf(w, "install: started the walk (%s): while the profile's ledger has a gap it looks up every accessor at its rate cap (VTR_SWEEP_MAX_RPS, default 25/s); follow it with journalctl --user -u %s\n", prof.WalkUnit(), prof.WalkUnit())
	}
	if r.EnvNeedsAddr {
		fmt.Fprintf(w, "install: warning: no VAULT_ADDR (or BAO_ADDR) in %s; set it there (or re-run with it exported)\n", env)
	}
	fmt.Fprintf(w, "install: for a login banner when a run of profile %s fails, add this line to ~/.bashrc (install does not edit it):\n    command -v vault-token-renew >/dev/null && VTR_PROFILE=%s vault-token-renew status --brief\n", r.Profile, r.Profile)
}

// printProfileHeal says what became of the profile's heal on login.
func (r Report) printProfileHeal(w io.Writer, prof Profile) {
	switch {
	case r.Watches == "":
		ignored, off := "", ""
		if r.HealOnLogin == "NOT enabled" {
			ignored = "HEAL_ON_LOGIN=1 ignored: "
		}
		if r.HealOnLogin == "disabled" || r.HealOnLogin == "NOT enabled" {
			off = " (disabled)"
		}
		fmt.Fprintf(w, "install: %sheal on login (%s) is not offered for profile %s%s: its token is kept by a token helper, which has no file to watch; the daily run heals it\n", ignored, prof.PathUnit(), r.Profile, off)
	case r.HealOnLogin != "":
		fmt.Fprintf(w, "install: heal on login (%s) %s; it watches %s\n", prof.PathUnit(), r.HealOnLogin, r.Watches)
	default:
		fmt.Fprintf(w, "install: heal on login (%s) left as it was (HEAL_ON_LOGIN=1 enables it, HEAL_ON_LOGIN=0 disables it); it watches %s\n", prof.PathUnit(), r.Watches)
	}
}
