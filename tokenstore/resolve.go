package tokenstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl"
)

// Choice is the store a run uses, and why: status says both.
type Choice struct {
	Store Store
	Why   string
	// LoginWrites says the CLI's own login (vault login, bao login) in
	// this environment keeps its token in Store: a helper, or the CLI's
	// token file. It is false for a --token-file or VTR_TOKEN_FILE that is
	// not where the CLI writes, and for BAO_TOKEN_PATH under the vault CLI:
	// a login for such a store is `login -token-only` into the file.
	LoginWrites bool
}

// Where is what the choice is made from.
type Where struct {
	Getenv func(string) string // the environment (and, for VTR_*, the env file)
	// Bao says the operator's CLI is bao: its config file is looked for
	// first (BAO_CONFIG_PATH, ~/.bao).
	Bao bool
	// Flag is --token-file, when it was given.
	Flag string
	// Addr and Namespace are what a helper is told (VAULT_ADDR and
	// VAULT_NAMESPACE, or BAO_*, in its environment).
	Addr, Namespace string
	// Env is a helper's environment before those: the process's, with no
	// VAULT_TOKEN or BAO_TOKEN.
	Env []string
	// LockDir is where a helper store's run lock goes (the state directory).
	LockDir string
}

// ErrConfig: the CLI's config file names a token helper that cannot be
// used, or does not parse; the CLI itself would fail on it too.
var ErrConfig = errors.New("the CLI's config file cannot be used")

// Resolve finds the store the operator's CLI uses, as the CLI does: an
// explicit --token-file or VTR_TOKEN_FILE first (the tool's own settings),
// then the token_helper of the CLI's config file (vault: VAULT_CONFIG_PATH,
// else ~/.vault; bao: BAO_CONFIG_PATH, else VAULT_CONFIG_PATH, else ~/.bao),
// then BAO_TOKEN_PATH, then ~/.vault-token.
func Resolve(w Where) (Choice, error) {
	switch {
	case w.Flag != "":
		return Choice{File{w.Flag}, "--token-file", w.loginWrites(w.Flag)}, nil
	case w.Getenv("VTR_TOKEN_FILE") != "":
		return Choice{File{w.Getenv("VTR_TOKEN_FILE")}, "VTR_TOKEN_FILE", w.loginWrites(w.Getenv("VTR_TOKEN_FILE"))}, nil
	}
	cfgPath := configPath(w)
	helper, err := tokenHelper(cfgPath)
	if err != nil {
		return Choice{}, err
	}
	if helper != "" {
		return Choice{w.helper(helper), "token_helper in " + cfgPath, true}, nil
	}
	if p := w.Getenv("BAO_TOKEN_PATH"); p != "" {
		return Choice{File{p}, "BAO_TOKEN_PATH", w.loginWrites(p)}, nil
	}
	home := w.Getenv("HOME")
	if home == "" {
		return Choice{}, errors.New("HOME is not set: pass --token-file (or set BAO_TOKEN_PATH)")
	}
	return Choice{File{filepath.Join(home, ".vault-token")}, "the default (no token_helper in " + cfgPath + ")", true}, nil
}

// loginWrites: the CLI's own login writes the token file path, as the CLI
// picks its file (no token_helper in its config file; bao: BAO_TOKEN_PATH,
// else ~/.vault-token; vault: ~/.vault-token).
func (w Where) loginWrites(path string) bool {
	if helper, err := tokenHelper(configPath(w)); err != nil || helper != "" {
		return false // the login goes to the helper, or fails
	}
	cli := w.Getenv("BAO_TOKEN_PATH")
	if !w.Bao || cli == "" {
		if w.Getenv("HOME") == "" {
			return false
		}
		cli = filepath.Join(w.Getenv("HOME"), ".vault-token")
	}
	a, errA := filepath.Abs(path)
	b, errB := filepath.Abs(cli)
	return errA == nil && errB == nil && a == b
}

// configPath is the CLI's config file, as each CLI finds it.
func configPath(w Where) string {
	order := []string{"VAULT_CONFIG_PATH"}
	def := "~/.vault"
	if w.Bao {
		order, def = []string{"BAO_CONFIG_PATH", "VAULT_CONFIG_PATH"}, "~/.bao"
	}
	p := def
	for _, k := range order {
		if v := w.Getenv(k); v != "" {
			p = v
			break
		}
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok && w.Getenv("HOME") != "" {
		p = filepath.Join(w.Getenv("HOME"), rest)
	}
	return p
}

// cliConfig is the part of the CLI's config file the tool reads.
type cliConfig struct {
	TokenHelper string `hcl:"token_helper"`
}

// tokenHelper is the token_helper the config file at path names, made
// absolute as the CLIs make it; "" when the file or the setting is absent.
func tokenHelper(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var c cliConfig
	if err := hcl.Decode(&c, string(b)); err != nil {
		return "", fmt.Errorf("%w: %s does not parse (HCL or JSON): %w", ErrConfig, path, err)
	}
	if c.TokenHelper == "" {
		return "", nil
	}
	abs, err := filepath.Abs(c.TokenHelper)
	if err != nil {
		return "", fmt.Errorf("%w: token_helper %q in %s: %w", ErrConfig, c.TokenHelper, path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("%w: token_helper %q in %s: %w", ErrConfig, c.TokenHelper, path, err)
	}
	return abs, nil
}

// helper is the helper store at path, told the address and namespace in
// the variables of the operator's CLI (and VAULT_* too, for a helper that
// reads only those), with its lock in the state directory.
func (w Where) helper(path string) Helper {
	env := append([]string(nil), w.Env...)
	prefixes := []string{"VAULT_"}
	if w.Bao {
		prefixes = []string{"BAO_", "VAULT_"}
	}
	for _, p := range prefixes {
		env = append(env, p+"ADDR="+w.Addr)
		if w.Namespace != "" {
			env = append(env, p+"NAMESPACE="+w.Namespace)
		}
	}
	sum := sha256.Sum256([]byte(path + "\x00" + Addr(w.Addr))) // one lock per token it keeps (Slot)
	return Helper{Path: path, Env: env, Addr: w.Addr, Namespace: w.Namespace,
		LockFile: filepath.Join(w.LockDir, "helper-"+hex.EncodeToString(sum[:6]))}
}
