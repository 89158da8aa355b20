package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// hostVar overrides the host name the notifier and metrics report; install
// records it only when the installing shell sets it.
const hostVar = "VTR_HOST"

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
// VAULT_* client settings (and VTR_HOST when the shell sets it): each one set
// in the shell replaces its line's value in place, or is appended; a variable
// the shell lacks is left alone, never deleted; every other line (VTR_*
// settings, comments, blank lines) stays byte for byte, in order, so an
// upgrade keeps what the operator added. VAULT_TOKEN is not in clientVars
// and so is never written.
func planEnv(path string, getenv func(string) string) (envEdit, error) {
	want, err := ownedValues(getenv)
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
	lines := strings.SplitAfter(string(old), "\n")
	var e envEdit
	seen := map[string]bool{}
	for i, line := range lines {
		k, v, ok := assignment(line)
		e.hasAddr = e.hasAddr || (ok && k == "VAULT_ADDR")
		nv, owned := lookup(want, k)
		if !ok || !owned {
			continue
		}
		if !seen[k] && unquote(v) != nv {
			e.changes = append(e.changes, k+": updated")
		}
		if unquote(v) != nv {
			lines[i] = k + "=" + nv + lineEnd(line)
		}
		seen[k] = true
	}
	for _, kv := range want {
		if !seen[kv[0]] {
			if n := len(lines); lines[n-1] != "" && lineEnd(lines[n-1]) == "" {
				lines[n-1] += "\n" // a last line without one gets its newline before ours
			}
			lines = append(lines, kv[0]+"="+kv[1]+"\n")
			e.changes = append(e.changes, kv[0]+": added")
			e.hasAddr = e.hasAddr || kv[0] == "VAULT_ADDR"
		}
	}
	if len(e.changes) > 0 {
		e.data = []byte(strings.Join(lines, ""))
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
		e.hasAddr = e.hasAddr || kv[0] == "VAULT_ADDR"
	}
	if !e.hasAddr {
		b.WriteString("#VAULT_ADDR=https://vault.example.internal:8200\n")
	}
	b.WriteString(freshExamples)
	if _, ok := lookup(want, hostVar); !ok {
		b.WriteString("# This machine's name, tagged on the tokens it mints; a sweep revokes only\n# its own machine's. Default: the hostname; pin it if that may change.\n#" + hostVar + "=\n")
	}
	e.data = []byte(b.String())
	return e
}

// ownedValues are the owned variables the shell sets, in file order. A value
// with a line break would inject a line into the file, so it is refused.
func ownedValues(getenv func(string) string) ([][2]string, error) {
	var want [][2]string
	for _, k := range append(slices.Clone(clientVars), hostVar) {
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

func lookup(want [][2]string, k string) (string, bool) {
	for _, kv := range want {
		if kv[0] == k {
			return kv[1], true
		}
	}
	return "", false
}

// assignment parses a KEY=value line as systemd's EnvironmentFile= reads it;
// comments, blank lines and anything else are not assignments.
func assignment(line string) (key, value string, ok bool) {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' || t[0] == ';' {
		return "", "", false
	}
	k, v, ok := strings.Cut(t, "=")
	return strings.TrimSpace(k), strings.TrimSpace(v), ok
}

// unquote strips one pair of matching outer quotes, so VAULT_ADDR="x" counts
// as already set to x and is not rewritten.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// lineEnd is the line's own ending, kept when its value is replaced.
func lineEnd(line string) string {
	switch {
	case strings.HasSuffix(line, "\r\n"):
		return "\r\n"
	case strings.HasSuffix(line, "\n"):
		return "\n"
	}
	return ""
}

// Settings reads the env file at path as systemd's EnvironmentFile= does
// (KEY=value lines, one pair of outer quotes stripped), so that a run typed
// in a shell can see the settings the units give the timer's run. A missing
// file is no settings and no error.
func Settings(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := assignment(line); ok {
			out[k] = unquote(v)
		}
	}
	return out, nil
}
