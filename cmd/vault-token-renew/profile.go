package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/devvm/vault-token-renew/internal/envfile"
	"github.com/devvm/vault-token-renew/internal/runstate"
)

// A profile is one Vault (or namespace) of several on this machine: its
// settings are in ~/.config/vault-token-renew/NAME.env, and it has a state,
// a ledger, a lock and tokens (tagged profile=NAME) of its own. No profile
// is the one env file and state of a single-Vault machine, as before
// profiles.

// profilePath is NAME's env file below home.
func profilePath(home, name string) string {
	return filepath.Join(filepath.Dir(envfile.Path(home)), name+".env")
}

// profileArg is the --profile of args (--profile NAME, --profile=NAME,
// -profile ...), read before the flags are parsed: the profile's settings
// are every flag's defaults.
func profileArg(args []string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		name, rest, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "profile" {
			continue
		}
		if strings.Contains(a, "=") {
			return rest, true
		}
		if i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// useProfile selects the profile of args, else VTR_PROFILE: its env file's
// settings then win over the shell's (a run typed with --profile prod
// talks to prod with prod's store whatever the shell's VAULT_ADDR says),
// as the unit gives them (EnvironmentFile=), and VTR_PROFILE names it for
// every reader (the state's place, the notifier). No profile leaves c as
// it is.
func (c *cli) useProfile(args []string) error {
	name, given := profileArg(args)
	if !given {
		name = c.getenv("VTR_PROFILE")
	}
	if name == "" {
		return nil
	}
	if !runstate.ProfileName.MatchString(name) {
		return fmt.Errorf("profile %q: a profile is named with lower-case letters, digits, - and _ (at most 31), as a systemd instance", name)
	}
	home := c.getenv("HOME")
	if home == "" {
		return errors.New("HOME is not set: a profile's settings are in ~/.config/vault-token-renew/NAME.env")
	}
	path := profilePath(home, name)
	settings, err := envfile.Read(path)
	switch {
	case err != nil:
		return fmt.Errorf("profile %s: %w", name, err)
	case settings == nil:
		return fmt.Errorf("profile %s: %s does not exist; create it (VAULT_ADDR=… and the profile's other settings), or install the profile: PROFILE=%s go tool mage install", name, path, name)
	}
	settings["VTR_PROFILE"] = name
	base := c.lookup
	c.lookup = func(k string) (string, bool) {
		if v, ok := settings[k]; ok {
			return v, true
		}
		return base(k)
	}
	c.getenv = func(k string) string { v, _ := c.lookup(k); return v }
	c.profile, c.profileFile = name, path
	return nil
}

// profiles are the profiles set up below home: each NAME.env beside the
// env file, sorted.
func profiles(home string) []string {
	entries, _ := os.ReadDir(filepath.Dir(envfile.Path(home)))
	var out []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".env"); ok && runstate.ProfileName.MatchString(name) && !e.IsDir() {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// unitProfile is the profile a unit of this tool serves: the instance of
// vault-token-renew@NAME.service, vault-token-renew-sweep@NAME.service or
// vault-token-renew@NAME.path ("" for the no-profile units).
func unitProfile(unit string) string {
	for _, t := range []string{"vault-token-renew@", "vault-token-renew-sweep@"} {
		if rest, ok := strings.CutPrefix(unit, t); ok {
			name, _, _ := strings.Cut(rest, ".")
			if runstate.ProfileName.MatchString(name) {
				return name
			}
		}
	}
	return ""
}
