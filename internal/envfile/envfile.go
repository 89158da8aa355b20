// Package envfile reads and edits the environment file the systemd units
// read (EnvironmentFile=): KEY=value lines, comments, blank lines. It is
// the file's format only: which lines the installer owns is install's
// business, and the daily binary reads the file without linking the
// installer.
package envfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Path is the env file below home, where the units expect it (%h = home).
func Path(home string) string {
	return filepath.Join(home, ".config", "vault-token-renew", "env")
}

// UnsafeError says why the env file is not trusted: it belongs to another
// user, or group or others may write it or its directory. Whoever can
// write it chooses VAULT_ADDR (and so receives the admin token) and the
// notify command (and so runs commands as the user); OpenSSH refuses such
// a file for the same reason.
type UnsafeError struct {
	Path string // the file, or its directory
	Why  string // "group and others may write it (mode 0666)", ...
	Dir  bool   // Path is the directory
}

func (e *UnsafeError) Error() string { return e.Path + ": " + e.Why }

// Check is nil when the env file at path may be trusted, or is missing:
// it and its directory belong to this user (or root), and neither group
// nor others may write them.
func Check(path string) error {
	for _, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if why := loose(fi); why != "" {
			return &UnsafeError{Path: p, Why: why, Dir: p != path}
		}
	}
	return nil
}

func loose(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Getuid() && st.Uid != 0 {
		return fmt.Sprintf("it belongs to uid %d, not to this user (uid %d)", st.Uid, os.Getuid())
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return fmt.Sprintf("group or others may write it (mode %04o)", m)
	}
	return ""
}

// Read parses the file at path as systemd's EnvironmentFile= does (KEY=value
// lines, one pair of outer quotes stripped), so that a run typed in a shell
// can see the settings the units give the timer's run. A missing file is
// no settings and no error.
func Read(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := Assignment(line); ok {
			out[k] = Unquote(v)
		}
	}
	return out, nil
}

// Overlay answers the tool's own VTR_* settings from getenv and, failing
// that, from the env file below home (read once, when first needed): a run
// typed in a shell then sees the settings the units give the timer's run.
// Every other variable (the VAULT_*/BAO_* client settings above all) stays
// getenv's own, as the CLIs' are. home is asked for when needed; "" means
// no env file.
func Overlay(home func() string, getenv func(string) string) func(string) string {
	var once sync.Once
	var file map[string]string
	return func(k string) string {
		if v := getenv(k); v != "" || !strings.HasPrefix(k, "VTR_") {
			return v
		}
		once.Do(func() {
			if h := home(); h != "" {
				file, _ = Read(Path(h))
			}
		})
		return file[k]
	}
}

// Edit sets each key of want (in order) in content: the value of an
// existing line is replaced in place, keeping its line ending; a key with
// no line is appended. Every other line stays byte for byte. changes names
// each key written ("VAULT_ADDR: updated", "BAO_ADDR: added"), never a
// value; content is returned as it was when nothing changes.
func Edit(content string, want [][2]string) (out string, changes []string) {
	lines := strings.SplitAfter(content, "\n")
	seen := map[string]bool{}
	for i, line := range lines {
		k, v, ok := Assignment(line)
		nv, owned := lookup(want, k)
		if !ok || !owned {
			continue
		}
		if !seen[k] && Unquote(v) != nv {
			changes = append(changes, k+": updated")
		}
		if Unquote(v) != nv {
			lines[i] = k + "=" + nv + lineEnd(line)
		}
		seen[k] = true
	}
	for _, kv := range want {
		if seen[kv[0]] {
			continue
		}
		if n := len(lines); lines[n-1] != "" && lineEnd(lines[n-1]) == "" {
			lines[n-1] += "\n" // a last line without one gets its newline before ours
		}
		lines = append(lines, kv[0]+"="+kv[1]+"\n")
		changes = append(changes, kv[0]+": added")
	}
	return strings.Join(lines, ""), changes
}

func lookup(want [][2]string, k string) (string, bool) {
	for _, kv := range want {
		if kv[0] == k {
			return kv[1], true
		}
	}
	return "", false
}

// Assignment parses a KEY=value line as systemd's EnvironmentFile= reads
// it; comments, blank lines and anything else are not assignments.
func Assignment(line string) (key, value string, ok bool) {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' || t[0] == ';' {
		return "", "", false
	}
	k, v, ok := strings.Cut(t, "=")
	return strings.TrimSpace(k), strings.TrimSpace(v), ok
}

// Unquote strips one pair of matching outer quotes, so VAULT_ADDR="x" counts
// as already set to x and is not rewritten.
func Unquote(v string) string {
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
