package vaultclient

import (
	"os"
	"sync"
)

// Names are the client settings the tool honours, as the suffix of their
// two names: VAULT_ADDR and BAO_ADDR, VAULT_CACERT and BAO_CACERT, and so
// on. VAULT_TOKEN and BAO_TOKEN are not among them: the token file is the
// source of truth.
var Names = []string{"ADDR", "CACERT", "CAPATH", "CLIENT_CERT", "CLIENT_KEY", "NAMESPACE", "SKIP_VERIFY",
	"TLS_SERVER_NAME", "CLIENT_TIMEOUT", "MAX_RETRIES"}

// Settings are the client settings from the environment, resolved as the
// bao CLI resolves them (OpenBao's api.ReadBaoVariable): a BAO_X that is
// present wins over its VAULT_X twin, even when it is empty. The Vault CLI
// reads VAULT_X only, and for a Vault user, who sets no BAO_X, nothing
// changes.
type Settings struct {
	values map[string]string // by suffix: the value in effect
	set    map[string]bool   // by suffix: one of the two names is present
	// Bao says a BAO_* setting is present (one of Names, BAO_TOKEN_PATH or
	// BAO_TOKEN): the operator's shell is set up for the bao CLI.
	Bao bool
}

// ReadSettings resolves every setting with lookup (os.LookupEnv).
func ReadSettings(lookup func(string) (string, bool)) Settings {
	s := Settings{values: map[string]string{}, set: map[string]bool{}}
	for _, n := range Names {
		if v, ok := lookup("BAO_" + n); ok {
			s.values[n], s.set[n], s.Bao = v, true, true
		} else if v, ok := lookup("VAULT_" + n); ok {
			s.values[n], s.set[n] = v, true
		}
	}
	for _, n := range []string{"BAO_TOKEN_PATH", "BAO_TOKEN"} {
		if _, ok := lookup(n); ok {
			s.Bao = true
		}
	}
	return s
}

// Get is the setting in effect, by suffix ("ADDR").
func (s Settings) Get(name string) string { return s.values[name] }

// envMu serialises the swap of the process environment below.
var envMu sync.Mutex

// withEnv runs fn with each VAULT_X of the process environment set to the
// setting in effect (unset where neither name is present), and restores
// the environment after. The API client reads its settings from the
// process environment only (DefaultConfig); this hands it the resolved
// ones, so that it parses each exactly as it parses its own.
func (s Settings) withEnv(fn func()) {
	envMu.Lock()
	defer envMu.Unlock()
	type old struct {
		v  string
		ok bool
	}
	saved := map[string]old{}
	for _, n := range Names {
		k := "VAULT_" + n
		v, ok := os.LookupEnv(k)
		saved[k] = old{v, ok}
		if s.set[n] {
			os.Setenv(k, s.values[n])
		} else {
			os.Unsetenv(k)
		}
	}
	defer func() {
		for k, o := range saved {
			if o.ok {
				os.Setenv(k, o.v)
			} else {
				os.Unsetenv(k)
			}
		}
	}()
	fn()
}
