//go:build integration

package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

// perAddressHelper is a token helper written for these tests, as keyring
// helpers behave: one token per VAULT_ADDR. FAIL_STORE in its environment
// makes store fail.
const perAddressHelper = `#!/bin/sh
f="$(dirname "$0")/store/$(printf %s "$VAULT_ADDR" | tr -c 'a-zA-Z0-9' _)"
case "$1" in
get) [ -f "$f" ] && cat "$f"; exit 0 ;;
store)
  [ -n "$FAIL_STORE" ] && { echo "the keyring is locked" >&2; exit 3; }
  mkdir -p "$(dirname "$f")"; umask 077; cat > "$f.tmp" && mv "$f.tmp" "$f" ;;
erase) rm -f "$f" ;;
esac
`

// helperWorld is x with a token helper configured in ~/.vault, as an
// operator who keeps tokens in a keyring has it, and the real vault CLI.
type helperWorld struct {
	*h
	helper, vault string
}

func newHelperWorld(t *testing.T, x *h) *helperWorld {
	t.Helper()
	dir := t.TempDir()
	w := &helperWorld{h: x, helper: filepath.Join(dir, "keyring-helper")}
	if err := os.WriteFile(w.helper, []byte(perAddressHelper), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(x.home, ".vault"), []byte(`token_helper = "`+w.helper+`"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := devvault.Binary(x.ctx, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("no vault CLI (a failure, never a skip): %v", err)
	}
	w.vault = bin
	return w
}

// entry is the helper's file for addr: a secret, learned at the end.
func (w *helperWorld) entry(addr string) string {
	f := filepath.Join(filepath.Dir(w.helper), "store", strings.Map(func(r rune) rune {
		if ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '_'
	}, addr))
	w.mu.Lock()
	w.files = append(w.files, f)
	w.mu.Unlock()
	return f
}

// cli runs the real vault CLI against addr, with the test's HOME (and so
// its ~/.vault).
func (w *helperWorld) cli(addr, stdin string, args ...string) string {
	w.t.Helper()
	return runCLI(w.t, w.ctx, w.vault, []string{"HOME=" + w.home, "VAULT_ADDR=" + addr}, stdin, args...)
}

// runCLI runs a real vault or bao CLI, bin, with PATH, env and stdin only.
// Its output is returned, never printed: it may hold a token.
func runCLI(t *testing.T, ctx context.Context, bin string, env []string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v", filepath.Base(bin), args[0], err)
	}
	return string(out)
}

// vaultLogin is `vault login`, which stores the token through the helper.
func (w *helperWorld) vaultLogin(addr string, tok devvault.Token) {
	w.t.Helper()
	w.cli(addr, tok.Secret, "login", "-no-print", "-")
}

// TestTokenHelperStore: with token_helper in ~/.vault, `vault login` writes
// no token file; the tool reads and heals the token through the helper, and
// `vault token lookup` (through the helper) then shows our periodic token.
// A second Vault's token in the same helper is not touched. A helper that
// fails its store leaves what it held, and the mint is revoked.
func TestTokenHelperStore(t *testing.T) {
	prod := newHelperWorld(t, newH(t))
	staging := newH(t)
	prodAddr, stagingAddr := prod.f.Server.Addr, staging.f.Server.Addr
	stagingLogin := prod.keep("staging login", staging.login())
	prod.vaultLogin(stagingAddr, stagingLogin)
	stagingBefore := readFile(t, prod.entry(stagingAddr))

	prod.vaultLogin(prodAddr, prod.login())
	r := prod.run()
	wantExit(t, "a heal through the helper", r, 0)
	wantIn(t, "the heal", wantLine(t, "the heal", r.stderr, "HEALED:"), "token helper "+prod.helper)
	if _, err := os.Stat(prod.file); err == nil {
		t.Fatal("the tool wrote ~/.vault-token although the CLI keeps its token in a helper")
	}
	lookup := prod.cli(prodAddr, "", "token", "lookup", "-format=json")
	if !strings.Contains(lookup, `"display_name": "token-devvm-wizard"`) || !strings.Contains(lookup, `"period": 2764800`) {
		t.Fatal("vault token lookup, through the helper, does not show our periodic token")
	}
	if !bytes.Equal(readFile(t, prod.entry(stagingAddr)), stagingBefore) {
		t.Fatal("the heal of prod's token changed the helper's token for staging")
	}
	r = prod.run("status")
	wantIn(t, "status", r.stdout, "token helper "+prod.helper)
	wantIn(t, "status", r.stdout, "token_helper in "+filepath.Join(prod.home, ".vault"))
	if r = prod.run(); r.code != 0 || !strings.HasPrefix(r.closing, "OK: renewed periodic token") {
		t.Fatalf("the run after the heal: %s", r.closing)
	}
	if !staging.alive(stagingLogin.Accessor) {
		t.Fatal("staging's login is no longer alive")
	}
	failedStore(t, prod, prodAddr)
}

// failedStore: a login, then a helper whose store fails: FAIL cause
// token-helper at stage write, the mint revoked, the login still in the
// helper.
func failedStore(t *testing.T, w *helperWorld, addr string) {
	login := w.login()
	w.vaultLogin(addr, login)
	before := readFile(t, w.entry(addr))
	r := w.runEnv(w.env(addr, "FAIL_STORE=1"))
	wantExit(t, "a heal whose store fails", r, 1)
	fail := wantLine(t, "the heal", r.stderr, "FAIL:")
	for _, want := range []string{"cause=token-helper", "stage=write", "minted_revoked=true", "the keyring is locked", w.helper + " get"} {
		wantIn(t, "the FAIL line", fail, want)
	}
	if !bytes.Equal(readFile(t, w.entry(addr)), before) {
		t.Fatal("the helper's token changed after a failed store")
	}
	if m := field(fail, "minted_accessor"); m == "" || w.alive(m) {
		t.Fatalf("the mint %s survived a failed store", m)
	}
	if !w.alive(login.Accessor) {
		t.Fatal("the login was revoked")
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// field is the value of key=value in a plain log line.
func field(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}
