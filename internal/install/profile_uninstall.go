package install

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// UninstallProfile removes the instances of the profile o.Profile: its
// timer and path unit are disabled and its walk stopped (a walk keeps its
// place) before its drop-ins go. Its env file and run state are the
// operator's and stay, as Uninstall keeps those of the install without a
// profile; so do the template units and the binary, which other profiles
// (or the install without one) run. PROFILE=all removes every profile's
// instances, then the templates, then all that Uninstall removes.
func UninstallProfile(o Options) (Report, error) {
	r := Report{Profile: o.Profile}
	names := []string{o.Profile}
	var err error
	if o.Profile == ProfileAll {
		names, err = installedProfiles(o.Root)
	} else {
		err = checkInstalled(o.Root, o.Profile)
	}
	if err != nil {
		return r, err
	}
	p := PathsUnder(o.Root)
	r.NoManager = o.Systemctl == nil
	for _, n := range names {
		if err := r.uninstallInstance(o, p, Profile(n)); err != nil {
			return r, err
		}
		r.Profiles = append(r.Profiles, n)
	}
	if o.Profile != ProfileAll {
		return r, r.reloadAfter(o)
	}
	return r, r.uninstallTheRest(o, p)
}

// checkInstalled is nil for a profile uninstall can remove: a valid name
// that installedProfiles finds. A typo would otherwise be reported as
// removed while the profile meant runs on.
func checkInstalled(root, name string) error {
	if err := CheckProfile(name); err != nil {
		return err
	}
	installed, err := installedProfiles(root)
	if err != nil || slices.Contains(installed, name) {
		return err
	}
	have := "none is"
	switch len(installed) {
	case 0:
	case 1:
		have = installed[0] + " is"
	default:
		have = strings.Join(installed, ", ") + " are"
	}
	return fmt.Errorf("PROFILE=%s: no such profile here (no %s, no instance of its units); %s installed; nothing was done", name, ProfileEnvFile(root, name), have)
}

// uninstallTheRest is the end of PROFILE=all: the templates (every
// instance is gone by now), then Uninstall, which, with no template left,
// removes the notifier and the binary too.
func (r *Report) uninstallTheRest(o Options, p Paths) error {
	plain, profile := splitUnits(o.Units)
	var templates []string
	for n := range profile {
		if n != NotifyUnit {
			templates = append(templates, filepath.Join(p.UnitDir, n))
		}
	}
	sort.Strings(templates)
	if err := r.remove(templates); err != nil {
		return err
	}
	rest, err := Uninstall(Options{Root: o.Root, Units: plain, Systemctl: o.Systemctl})
	r.Changed = append(r.Changed, rest.Changed...)
	r.Kept, r.Reloaded = rest.Kept, rest.Reloaded
	return err
}

// uninstallInstance disables the profile's timer and path unit and stops
// its walk (each only when its template is installed: systemd cannot
// disable an instance of a unit it does not have), then removes its
// drop-ins.
func (r *Report) uninstallInstance(o Options, p Paths, prof Profile) error {
	if o.Systemctl != nil {
		for _, c := range []struct {
			template string
			args     []string
		}{
			{"vault-token-renew@.timer", []string{"disable", "--now", prof.Timer()}},
			{"vault-token-renew@.path", []string{"disable", "--now", prof.PathUnit()}},
			{"vault-token-renew-sweep@.service", []string{"stop", prof.WalkUnit()}},
		} {
			if _, err := os.Stat(filepath.Join(p.UnitDir, c.template)); err != nil {
				continue
			}
			if err := o.Systemctl(c.args...); err != nil {
				return fmt.Errorf("systemctl --user %s: %w", strings.Join(c.args, " "), err)
			}
		}
	}
	var files []string
	for _, d := range append([]string{prof.pathDropIn()}, prof.notifyDropIns()...) {
		files = append(files, filepath.Join(p.UnitDir, d), filepath.Join(p.UnitDir, filepath.Dir(d)))
	}
	return r.remove(files)
}

// reloadAfter makes systemd forget the removed drop-ins.
func (r *Report) reloadAfter(o Options) error {
	if o.Systemctl == nil {
		return nil
	}
	if err := o.Systemctl("daemon-reload"); err != nil {
		return fmt.Errorf("systemctl --user daemon-reload: %w", err)
	}
	r.Reloaded = true
	return nil
}

// installedProfiles are the profiles below root, for PROFILE=all: those
// with an env file, and those with an instance enabled or a drop-in of
// install's (an env file removed by hand leaves those behind), sorted.
func installedProfiles(root string) ([]string, error) {
	names, err := profileEnvNames(root)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	unitDir := PathsUnder(root).UnitDir
	for _, pattern := range []string{"*.wants/vault-token-renew@*.timer", "*.wants/vault-token-renew@*.path", "vault-token-renew@*.path.d", "vault-token-renew-notify@vault-token-renew@*.service.d"} {
		found, _ := filepath.Glob(filepath.Join(unitDir, pattern))
		for _, f := range found {
			n := strings.TrimPrefix(filepath.Base(f), "vault-token-renew-notify@")
			n = strings.TrimPrefix(n, "vault-token-renew@")
			n = n[:strings.IndexByte(n+".", '.')]
			if CheckProfile(n) == nil && !seen[n] {
				seen[n], names = true, append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// printUninstallProfile says what the uninstall of o.Profile did and kept.
func (r Report) printUninstallProfile(w io.Writer, o Options) {
	if o.Profile == ProfileAll && len(r.Profiles) == 0 {
		fmt.Fprintln(w, "uninstall: no profile found")
	}
	for _, n := range r.Profiles {
		prof := Profile(n)
		if r.NoManager {
			fmt.Fprintf(w, "uninstall: no systemd user manager here: nothing was disabled; where one runs: systemctl --user disable --now %s %s\n", prof.Timer(), prof.PathUnit())
		} else {
			fmt.Fprintf(w, "uninstall: profile %s: disabled %s and %s, stopped %s\n", n, prof.Timer(), prof.PathUnit(), prof.WalkUnit())
		}
		env := ProfileEnvFile(o.Root, n)
		fmt.Fprintf(w, "uninstall: kept profile %s's env file %s and its run state (vault-token-renew/profiles/%s/ in ~/.local/state, or $XDG_STATE_HOME); while %s is there, install refuses another profile on the same token store; remove them by hand if they are no longer wanted\n", n, env, n, filepath.Base(env))
	}
	for _, k := range r.Kept {
		fmt.Fprintf(w, "uninstall: kept %s\n", k)
	}
	if o.Profile != ProfileAll {
		fmt.Fprintln(w, "uninstall: kept the template units, the notifier and the binary: other profiles (or the install without one) run them; PROFILE=all go tool mage uninstall removes everything")
		return
	}
	fmt.Fprintf(w, "uninstall: PROFILE=all: also removed the install without a profile where it was there (%s, %s, disabled first), the template units, the notifier and the binary; kept every env file (%s and NAME.env beside it), the run state and the token files\n", Timer, PathUnit, PathsUnder(o.Root).EnvFile)
}
