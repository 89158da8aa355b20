// Package install puts vault-token-renew on an operator's machine the way
// the runbook's manual model does (install -m 0755 to ~/.local/bin), plus
// the systemd user units and an environment file with the Vault client
// settings. It is idempotent: a second run changes nothing and says so.
package install

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/devvm/vault-token-renew/internal/atomicfile"
)

// Timer is the unit that `systemctl --user enable --now` starts.
const Timer = "vault-token-renew.timer"

// clientVars are the VAULT_* settings carried into the environment file.
// VAULT_TOKEN is deliberately absent: the token file is the source of truth.
var clientVars = []string{
	"VAULT_ADDR", "VAULT_CACERT", "VAULT_CAPATH", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY",
	"VAULT_NAMESPACE", "VAULT_SKIP_VERIFY", "VAULT_TLS_SERVER_NAME", "VAULT_CLIENT_TIMEOUT", "VAULT_MAX_RETRIES",
}

// Paths are where things go below an install root (normally $HOME).
type Paths struct {
	Binary, UnitDir, EnvFile string
}

// PathsUnder lays the files out below root as the units expect (%h = root).
func PathsUnder(root string) Paths {
	return Paths{
		Binary:  filepath.Join(root, ".local", "bin", "vault-token-renew"),
		UnitDir: filepath.Join(root, ".config", "systemd", "user"),
		EnvFile: filepath.Join(root, ".config", "vault-token-renew", "env"),
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
	EnvNeedsAddr bool     // the env file has no VAULT_ADDR
}

// Install writes what differs and reloads systemd only when a unit changed.
func Install(o Options) (Report, error) {
	var r Report
	p := PathsUnder(o.Root)
	put := func(path string, data []byte, perm fs.FileMode) error {
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

	// The binary is replaced by rename, so a timer run starting meanwhile
	// executes either the old binary or the new one, never half of one.
	if err := put(p.Binary, o.Binary, 0o755); err != nil {
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
		if err := put(filepath.Join(p.UnitDir, n), o.Units[n], 0o644); err != nil {
			return r, err
		}
		unitsChanged = unitsChanged || len(r.Changed) > before
	}

	env, hasAddr, keep := envFile(p.EnvFile, o.Getenv)
	r.EnvNeedsAddr = !hasAddr
	if keep {
		r.Unchanged = append(r.Unchanged, p.EnvFile)
	} else if err := put(p.EnvFile, env, 0o600); err != nil {
		return r, err
	}

	if unitsChanged {
		if o.Systemctl == nil {
			r.NoManager = true
		} else {
			if err := o.Systemctl("daemon-reload"); err != nil {
				return r, fmt.Errorf("systemctl --user daemon-reload: %w", err)
			}
			if err := o.Systemctl("enable", "--now", Timer); err != nil {
				return r, fmt.Errorf("systemctl --user enable --now %s: %w", Timer, err)
			}
			r.Reloaded = true
		}
	}
	return r, nil
}

// envFile renders the environment file from the operator's VAULT_* client
// settings. With no VAULT_ADDR in the environment an existing file is kept
// as it is (keep), so that running install from a bare shell loses nothing.
func envFile(path string, getenv func(string) string) (data []byte, hasAddr, keep bool) {
	if getenv("VAULT_ADDR") == "" {
		if old, err := os.ReadFile(path); err == nil {
			return nil, strings.Contains("\n"+string(old), "\nVAULT_ADDR="), true
		}
	}
	var b strings.Builder
	b.WriteString("# Vault client settings for vault-token-renew's daily run, written by\n")
	b.WriteString("# `go tool mage install` from the installing shell's VAULT_* variables.\n")
	b.WriteString("# Never put a token here: the token file (~/.vault-token) is the source of truth.\n")
	for _, k := range clientVars {
		if v := getenv(k); v != "" {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
			hasAddr = hasAddr || k == "VAULT_ADDR"
		}
	}
	if !hasAddr {
		b.WriteString("#VAULT_ADDR=https://vault.example.internal:8200\n")
	}
	return []byte(b.String()), hasAddr, false
}
