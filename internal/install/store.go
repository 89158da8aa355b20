package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/devvm/vault-token-renew/internal/envfile"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/tokenstore"
)

// owner is an install that keeps a token somewhere: a profile, or the
// install without one ("" as profile).
type owner struct {
	profile string
	envFile string
}

func (o owner) String() string {
	if o.profile == "" {
		return "the install without a profile (" + o.envFile + ")"
	}
	return fmt.Sprintf("profile %q (%s)", o.profile, o.envFile)
}

// storeOf resolves where an install whose env file holds settings keeps
// its token, as its units' runs resolve it (tokenstore.Resolve): the
// environment a unit gets is that file's, with HOME. A token helper's
// lock is in the one state directory of the machine (the binary keeps one
// lock per store, whichever profile runs); two helper stores are one when
// their helper and address are (tokenstore.Slot), whatever the namespace.
func storeOf(root string, settings map[string]string) (tokenstore.Choice, error) {
	getenv := func(k string) string {
		if k == "HOME" {
			return root
		}
		return settings[k]
	}
	s := vaultclient.ReadSettings(func(k string) (string, bool) { v, ok := settings[k]; return v, ok })
	return tokenstore.Resolve(tokenstore.Where{Getenv: getenv, Bao: s.Bao, Addr: s.Get("ADDR"), Namespace: s.Get("NAMESPACE"),
		LockDir: filepath.Join(root, ".local", "state", "vault-token-renew")})
}

// storeKey is a store's Slot, compared as the binary compares two setups'
// stores (runstate.LedgerKey: links followed, made absolute); a relative
// path is taken from the home, a user unit's working directory.
// A file not written yet is known by its directory's real path: two
// profiles must not be set up on one file through a link either.
func storeKey(root string, s tokenstore.Store) string {
	return tokenstore.Slot(s, func(k string) string {
		if !filepath.IsAbs(k) {
			k = filepath.Join(root, k)
		}
		if _, err := os.Lstat(k); err != nil {
			if dir, err := filepath.EvalSymlinks(filepath.Dir(k)); err == nil {
				k = filepath.Join(dir, filepath.Base(k))
			}
		}
		return runstate.LedgerKey(k)
	})
}

// otherOwners are the installs on this machine other than self: every
// profile with an env file (a profile's uninstall keeps it, as the
// operator's), and the install without a profile when its units are in
// place or its env file is there: the binary counts it by the env file, and
// would refuse at every run (cause=store-conflict) what install let through.
func otherOwners(root string, self owner) ([]owner, error) {
	var out []owner
	names, err := profileEnvNames(root)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n != self.profile {
			out = append(out, owner{profile: n, envFile: ProfileEnvFile(root, n)})
		}
	}
	if self.profile != "" && plainInstalled(root) {
		out = append(out, owner{envFile: PathsUnder(root).EnvFile})
	}
	return out, nil
}

// profileEnvNames are the profiles that have an env file (NAME.env with a
// valid NAME) in the env file directory below root, sorted.
func profileEnvNames(root string) ([]string, error) {
	dir := filepath.Dir(PathsUnder(root).EnvFile)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), ".env")
		if ok && !e.IsDir() && CheckProfile(n) == nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// plainInstalled: the install without a profile has its units, or its env
// file, below root.
func plainInstalled(root string) bool {
	p := PathsUnder(root)
	for _, f := range []string{filepath.Join(p.UnitDir, "vault-token-renew.service"), filepath.Join(p.UnitDir, Timer), p.EnvFile} {
		if _, err := os.Stat(f); err == nil {
			return true
		}
	}
	return false
}

// refuseSharedStore is nil when no other install keeps its token where
// self's settings say self keeps it (mine). Two installs on one store
// renew, heal and sweep one token with two ledgers, two locks and two
// sets of tags: each takes the other's heal for a login to undo.
func refuseSharedStore(root string, self owner, mine tokenstore.Choice) error {
	others, err := otherOwners(root, self)
	if err != nil {
		return err
	}
	want := storeKey(root, mine.Store)
	for _, o := range others {
		settings, err := envfile.Read(o.envFile)
		if err != nil {
			return fmt.Errorf("read %s: %w", o.envFile, err)
		}
		theirs, err := storeOf(root, settings)
		if err != nil {
			return fmt.Errorf("%s: cannot tell where %s keeps its token (%w); fix that first, so that install can check that the two do not share one", self, o, err)
		}
		if storeKey(root, theirs.Store) == want {
			return sharedStoreError(self, o, mine)
		}
	}
	return nil
}

// sharedStoreError names both installs, the store, and the ways out.
func sharedStoreError(self, other owner, store tokenstore.Choice) error {
	way := "give each profile its own token file: VTR_TOKEN_FILE (or BAO_TOKEN_PATH for bao) in " + self.envFile
	if _, ok := store.Store.(tokenstore.Helper); ok {
		way = "use a token helper that keeps a token per Vault address, with each profile on its own VAULT_ADDR (two namespaces of one Vault share its token), or give each profile its own token file: VTR_TOKEN_FILE in " + self.envFile
	}
	gone := fmt.Sprintf("; if profile %q is no longer used, PROFILE=%s go tool mage uninstall and remove %s (uninstall keeps it)", other.profile, other.profile, other.envFile)
	if other.profile == "" {
		gone = "; if the install without a profile is to become this profile, go tool mage uninstall and move " + other.envFile + " aside first (see the runbook, Several Vaults)"
	}
	return fmt.Errorf("install refused: %s would keep its token in the same store as %s: %s (from %s); two installs on one store would each undo the other's token. To fix, %s (set it in the installing shell, or edit the file), then install again%s",
		self, other, store.Store, store.Why, way, gone)
}
