package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/envfile"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/tokenstore"
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

// profileLookup is profile name's settings as its unit gets them: its env
// file, over the user manager's HOME and XDG directories only (never this
// shell's VAULT_ADDR).
func (c *cli) profileLookup(home, name string) func(string) (string, bool) {
	settings, _ := envfile.Read(profilePath(home, name))
	if name == "" {
		settings, _ = envfile.Read(envfile.Path(home))
	}
	return func(k string) (string, bool) {
		if v, ok := settings[k]; ok {
			return v, true
		}
		switch k {
		case "HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME":
			return c.lookup(k)
		}
		return "", false
	}
}

// storeOf is where profile name (the no-profile setup for "") keeps its
// token, found as its own runs find it; no Vault is asked.
func (c *cli) storeOf(home, name string) (tokenstore.Store, error) {
	lookup := c.profileLookup(home, name)
	getenv := func(k string) string { v, _ := lookup(k); return v }
	s := vaultclient.ReadSettings(lookup)
	if name != "" {
		base := getenv
		getenv = func(k string) string {
			if k == "VTR_PROFILE" {
				return name
			}
			return base(k)
		}
	}
	lockDir := os.TempDir()
	if d, err := runstate.Dir(getenv); err == nil {
		lockDir = d
	}
	ch, err := tokenstore.Resolve(tokenstore.Where{Getenv: getenv, Bao: s.Bao, Addr: s.Get("ADDR"), Namespace: s.Get("NAMESPACE"),
		Env: c.helperEnv(), LockDir: lockDir})
	return ch.Store, err
}

// others are the setups beside this run's: every profile but its own,
// and the no-profile setup when its env file is there.
func (c *cli) others(home string) []string {
	var out []string
	if _, err := os.Stat(envfile.Path(home)); err == nil && c.profile != "" {
		out = append(out, "")
	}
	for _, p := range profiles(home) {
		if p != c.profile {
			out = append(out, p)
		}
	}
	return out
}

// sharing is the other setup whose store is store: two setups on one
// store fight over one token. ok is false when there is none.
func (c *cli) sharing(store tokenstore.Store) (name string, ok bool) {
	home := c.getenv("HOME")
	mine := slot(store)
	for _, o := range c.others(home) {
		if s, err := c.storeOf(home, o); err == nil && slot(s) == mine {
			return o, true
		}
	}
	return "", false
}

// slot is the token a store holds (tokenstore.Slot), with paths compared
// as the state file keys them.
func slot(s tokenstore.Store) string { return tokenstore.Slot(s, runstate.LedgerKey) }

// shared is the closing line of a run (or a walk) whose store another
// setup uses too; nil when none does. It acts on nothing: whichever of the
// two ran, it would renew, heal or retire the other's token.
func (c *cli) shared(rep reporter, store tokenstore.Store) *closing {
	other, ok := c.sharing(store)
	if !ok {
		return nil
	}
	err := fmt.Errorf("the token store %s is also %s's: two setups on one store fight over one token", store, setupName(other))
	line := rep.report(renew.Outcome{Stage: failure.StageStore, Cause: failure.CauseStoreConflict, Err: err, Kind: renew.Fail, Path: store.String()})
	return &line
}

// setupName is a profile's name in words, or the no-profile setup's.
func setupName(profile string) string {
	if profile == "" {
		return "the no-profile setup (~/.config/vault-token-renew/env)"
	}
	return "profile " + profile
}

// whoseToken is the other setup whose store holds the token this run's
// store holds (read locally, from each store; no token goes to any Vault),
// and that setup's address: a login to another Vault written where this
// profile keeps its token. ok is false when none does.
func (c *cli) whoseToken(ctx context.Context, store tokenstore.Store) (name, addr string, ok bool) {
	mine, err := store.Read(ctx)
	if err != nil {
		return "", "", false
	}
	home, own := c.getenv("HOME"), slot(store)
	for _, o := range c.others(home) {
		s, err := c.storeOf(home, o)
		if err != nil || slot(s) == own {
			continue
		}
		if theirs, err := s.Read(ctx); err == nil && theirs == mine {
			return o, vaultclient.ReadSettings(c.profileLookup(home, o)).Get("ADDR"), true
		}
	}
	return "", "", false
}

// profileStatePath is profile name's state file.
func (c *cli) profileStatePath(name string) string {
	p, _ := runstate.DefaultPath(func(k string) string {
		if k == "VTR_PROFILE" {
			return name
		}
		return c.getenv(k)
	})
	return p
}
