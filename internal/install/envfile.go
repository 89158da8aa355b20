package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/devvm/vault-token-renew/internal/envfile"
)

// hostVar pins this machine's name, the host= tag on the tokens it mints
// (a sweep revokes only its own machine's); install records it only when
// the installing shell sets it.
const hostVar = "VTR_HOST"

// tokenFileVar moves the token file the units manage (and heal on login
// watches); install records it only when the installing shell sets it.
const tokenFileVar = "VTR_TOKEN_FILE"

// freshHeader opens a new env file; upgrades never rewrite it.
const freshHeader = `# Settings for vault-token-renew's daily run, read by its systemd units.
# ` + "`go tool mage install`" + ` writes the VAULT_* lines from the installing shell's
# variables (and VTR_HOST when set there); every other line here is yours and
# is kept as it is on upgrade.
# Never put a token here: the token file (~/.vault-token) is the source of truth.
`

// freshExamples end a new env file: the settings an operator may turn on.
// systemd strips quotes from values, so a command with quotes is wrapped in
// single quotes as a whole.
const freshExamples = `# On DRIFT or FAIL, run this with sh -c (VTR_OUTCOME, VTR_SUMMARY, VTR_SINCE,
# VTR_RUNS and VTR_HOST set), e.g. a desktop popup:
#VTR_NOTIFY_COMMAND='notify-send -u critical vault-token-renew "$VTR_SUMMARY"'
# node_exporter textfile metrics: a .prom file in its textfile directory.
#VTR_METRICS_FILE=/var/lib/node_exporter/textfile_collector/vault_token_renew.prom
# How long a run waits for an unreachable Vault before it fails (the unit
# sets 10m; a run at boot may find the network not up yet).
#VTR_WAIT_UNREACHABLE=10m
`

// envEdit is what install would do to the env file.
type envEdit struct {
	data    []byte   // the new content; nil when the file stays as it is
	changes []string // "VAULT_ADDR: updated", "VTR_HOST: added"; never a value
	hasAddr bool     // the result sets VAULT_ADDR
}

// planEnv decides the env file's new content. The install owns only the
// client settings (VAULT_* and their BAO_* twins) and VTR_HOST, each when
// the installing shell sets it: envfile.Edit replaces its line's value in
// place or appends it; a variable the shell lacks is left alone, never
// deleted; every other line (VTR_* settings, comments, blank lines) stays
// byte for byte, in order, so an upgrade keeps what the operator added.
// VAULT_TOKEN and BAO_TOKEN are not in clientVars and so are never written.
func planEnv(path string, getenv func(string) string) (envEdit, error) {
	return planEnvOwning(path, getenv, plainOwned)
}

// plainOwned are the variables the install without a profile owns.
var plainOwned = append(slices.Clone(clientVars), hostVar, tokenFileVar)

// profileOwned are those a profile's install owns: those, the CLI config
// file's path (its token_helper chooses the profile's store, as
// BAO_TOKEN_PATH does), and the profile's token and metrics settings, which
// differ between profiles of one machine. VTR_NOTIFY_COMMAND is not among
// them: EnvironmentFile= strips its quotes, so it is the operator's line.
var profileOwned = append(slices.Clone(plainOwned), "VAULT_CONFIG_PATH", "BAO_CONFIG_PATH",
	"VTR_DISPLAY_NAME", "VTR_POLICIES", "VTR_PERIOD", "VTR_METRICS_FILE")

// planEnvOwning is planEnv with the variables owned.
func planEnvOwning(path string, getenv func(string) string, owned []string) (envEdit, error) {
	want, err := ownedValues(getenv, owned)
	if err != nil {
		return envEdit{}, err
	}
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return freshEnv(want), nil
	}
	if err != nil {
		return envEdit{}, fmt.Errorf("read %s: %w", path, err)
	}
	out, changes := envfile.Edit(string(old), want)
	e := envEdit{changes: changes}
	for _, line := range strings.SplitAfter(out, "\n") {
		if k, _, ok := envfile.Assignment(line); ok && (k == "VAULT_ADDR" || k == "BAO_ADDR") {
			e.hasAddr = true
		}
	}
	if len(changes) > 0 {
		e.data = []byte(out)
	}
	return e, nil
}

// freshEnv is a new env file: header, the shell's settings, examples.
func freshEnv(want [][2]string) envEdit {
	var b strings.Builder
	e := envEdit{}
	b.WriteString(freshHeader)
	for _, kv := range want {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
		e.changes = append(e.changes, kv[0]+": added")
		e.hasAddr = e.hasAddr || kv[0] == "VAULT_ADDR" || kv[0] == "BAO_ADDR"
	}
	if !e.hasAddr {
		b.WriteString("#VAULT_ADDR=https://vault.example.internal:8200\n# OpenBao: BAO_* lines work as VAULT_* lines do, and win over them\n# (BAO_TOKEN_PATH moves the token file):\n#BAO_ADDR=https://openbao.example.internal:8200\n")
	}
	b.WriteString(freshExamples)
	if !slices.ContainsFunc(want, func(kv [2]string) bool { return kv[0] == hostVar }) {
		b.WriteString("# This machine's name, tagged on the tokens it mints; a sweep revokes only\n# its own machine's. Default: the hostname; pin it if that may change.\n#" + hostVar + "=\n")
	}
	e.data = []byte(b.String())
	return e
}

// ownedValues are the owned variables the shell sets, in file order. A value
// with a line break would inject a line into the file, so it is refused.
func ownedValues(getenv func(string) string, owned []string) ([][2]string, error) {
	var want [][2]string
	for _, k := range owned {
		v := getenv(k)
		if v == "" {
			continue
		}
		if strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("%s holds a line break; not written to the env file", k)
		}
		want = append(want, [2]string{k, v})
	}
	return want, nil
}
