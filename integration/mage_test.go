//go:build integration

package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

// mage runs `go tool mage target` from the repo root as an operator would,
// with VTR_HOME pointing the targets at this test's temp home and no
// systemd user manager (direct mode).
func (x *h) mage(extraEnv []string, target string) result {
	x.t.Helper()
	cmd := exec.CommandContext(x.ctx, "go", "tool", "mage", target)
	cmd.Dir = ".."
	// XDG_STATE_HOME keeps the runs' state (and ledger) in this test's home;
	// HOME stays the machine's, for Go's caches.
	cmd.Env = append(os.Environ(), "VTR_HOME="+x.home, "VTR_NO_SYSTEMD=1", "XDG_STATE_HOME="+filepath.Join(x.home, ".local", "state"),
		"VERSION=v0.0.0-magetest")
	cmd.Env = append(cmd.Env, x.env(x.f.Server.Addr)[2:]...) // the server's address and the root token, to be ignored
	cmd.Env = append(cmd.Env, extraEnv...)
	r := x.exec(cmd, true)
	x.t.Logf("go tool mage %s → exit %d\n%s", target, r.code, x.redact(r.stdout))
	return r
}

func TestMageInstallLiveTestSweepStale(t *testing.T) {
	x := newH(t)
	first := x.periodic("periodic")
	x.put(first)

	// The mage runs' output is logged in full by x.mage; the messages here
	// name the condition only.
	bin := mageInstall(t, x)
	mageInstallAgain(t, x)
	mageLiveTest(t, x, bin)
	mageSweepStale(t, x, first)
}

// mageInstall: install writes the binary and the units without enabling
// the timer, and an env file naming the server but not holding the root
// token. It returns the installed binary.
func mageInstall(t *testing.T, x *h) string {
	t.Helper()
	r := x.mage(nil, "install")
	bin := filepath.Join(x.home, ".local", "bin", "vault-token-renew")
	wantExit(t, "install", r, 0)
	for _, want := range []string{"install: wrote " + bin, "vault-token-renew.service", "vault-token-renew.timer", "timer was NOT enabled"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("install: output lacks %q", want)
		}
	}
	env, err := os.ReadFile(filepath.Join(x.home, ".config", "vault-token-renew", "env"))
	if err != nil {
		t.Fatalf("env file: %v", err)
	}
	if want := "VAULT_ADDR=" + x.f.Server.Addr + "\n"; !strings.Contains(string(env), want) {
		t.Errorf("env file lacks the line %q (has a VAULT_ADDR= line: %v)", strings.TrimSpace(want), strings.Contains(string(env), "VAULT_ADDR="))
	}
	if strings.Contains(string(env), x.f.Server.RootToken) {
		t.Error("env file holds the root token")
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Errorf("installed --version: %v", err)
	} else if want := "vault-token-renew v0.0.0-magetest\n"; string(out) != want {
		t.Errorf("installed --version says %q, want %q", out, want)
	}
	return bin
}

// mageInstallAgain: a second install changes nothing.
func mageInstallAgain(t *testing.T, x *h) {
	t.Helper()
	r := x.mage(nil, "install")
	wantExit(t, "second install", r, 0)
	if !strings.Contains(r.stdout, "install: nothing changed") {
		t.Errorf("second install: output lacks %q", "install: nothing changed")
	}
	if strings.Contains(r.stdout, "wrote") {
		t.Errorf("second install: output says %q: it rewrote something", "wrote")
	}
}

// mageLiveTest: liveTest runs the installed binary through its three
// steps and leaves a working token of ours in the file and no fakes.
func mageLiveTest(t *testing.T, x *h, bin string) {
	t.Helper()
	r := x.mage(nil, "liveTest")
	wantExit(t, "liveTest", r, 0)
	if n := strings.Count(r.stdout, "PASS "); n != 3 {
		t.Errorf("liveTest: %d steps PASS, want 3", n)
	}
	for _, want := range []string{"running " + bin + " directly", "HEALED: re-minted from foreign dn=token-fake-oidc", "DRIFT: foreign token dn=token-fake-weak"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("liveTest: output lacks %q", want)
		}
	}
	x.keep("after liveTest", tokenOf(x))
	info, err := x.fileToken()
	if err != nil {
		t.Fatalf("after liveTest the file's token does not work: %v", err)
	}
	if info.DisplayName != "token-devvm-wizard" {
		t.Errorf("after liveTest the file holds a token with display name %q, want token-devvm-wizard", info.DisplayName)
	}
	x.assertNoFakes()
}

// mageSweepStale: the token the file held before liveTest's heal was never
// recorded (no run before it): only a walk finds it, with the two stale
// ones.
func mageSweepStale(t *testing.T, x *h, first devvault.Token) {
	t.Helper()
	s1, s2 := x.periodic("stale1"), x.periodic("stale2")
	r := x.mage(nil, "sweepStale")
	wantExit(t, "sweepStale dry run", r, 0)
	if n := strings.Count(r.stdout, "would revoke\n"); n != 3 || !strings.Contains(r.stdout, first.Accessor) {
		t.Errorf("sweepStale dry run: %d \"would revoke\" lines, want 3 (with the first token %s)", n, first.Accessor)
	}
	if !x.alive(s1.Accessor) {
		t.Errorf("sweepStale dry run revoked stale %s", s1.Accessor)
	}
	r = x.mage([]string{"APPLY=1"}, "sweepStale")
	wantExit(t, "sweepStale APPLY=1", r, 0)
	if !strings.Contains(r.stdout, "revoked 3 stale") {
		t.Errorf("sweepStale APPLY=1: output lacks %q", "revoked 3 stale")
	}
	for _, s := range []string{s1.Accessor, s2.Accessor, first.Accessor} {
		if x.alive(s) {
			t.Errorf("sweepStale APPLY=1 left stale %s alive", s)
		}
	}
	if _, err := x.fileToken(); err != nil {
		t.Fatal("sweepStale broke the token in the file")
	}
}

func (x *h) assertNoFakes() {
	x.t.Helper()
	for _, dn := range []string{"token-fake-oidc", "token-fake-weak"} {
		accs, err := x.f.AccessorsNamed(x.ctx, dn)
		if err != nil {
			x.t.Fatalf("list the %s tokens: %v", dn, err)
		}
		if len(accs) != 0 {
			x.t.Errorf("fakes %s left alive: %v", dn, accs)
		}
	}
}

// TestLiveTestRestoresWhenAStepFails installs a renewer that does nothing:
// step 1 cannot heal, and liveTest must still leave a working periodic
// token in the file and no fake alive.
func TestLiveTestRestoresWhenAStepFails(t *testing.T) {
	x := newH(t)
	p := x.periodic("periodic")
	x.put(p)
	if r := x.mage(nil, "install"); r.code != 0 {
		t.Fatalf("install: exit %d", r.code)
	}
	bin := filepath.Join(x.home, ".local", "bin", "vault-token-renew")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'a broken renewer' >&2\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := x.mage(nil, "liveTest")
	if r.code == 0 {
		t.Error("liveTest with a broken renewer: exit 0, want a failure")
	}
	for _, want := range []string{"FAIL 1.", "SKIP 3.", "restored the periodic token"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("liveTest with a broken renewer: output lacks %q", want)
		}
	}
	if !bytes.Equal(x.fileBytes(), []byte(p.Secret)) {
		t.Fatal("the file does not hold the original periodic token")
	}
	if _, err := x.fileToken(); err != nil {
		t.Fatalf("restored token does not work: %v", err)
	}
	x.assertNoFakes()
}

// TestMageInstallKeepsOperatorSettings: a re-install from a shell with
// another VAULT_ADDR updates that line only; the notify command the
// operator added, and their comments, survive byte for byte.
func TestMageInstallKeepsOperatorSettings(t *testing.T) {
	x := newH(t)
	envFile := filepath.Join(x.home, ".config", "vault-token-renew", "env")
	if r := x.mage(nil, "install"); r.code != 0 {
		t.Fatalf("install: exit %d", r.code)
	}
	if r := x.mage(nil, "install"); !strings.Contains(r.stdout, "vault-token-renew status --brief") {
		t.Fatalf("install does not print the login banner line:\n%s", r.stdout)
	}
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	added := "# page me\nVTR_NOTIFY_COMMAND='notify-send -u critical vault-token-renew \"$VTR_SUMMARY\"'\n"
	if err := os.WriteFile(envFile, append(b, added...), 0o600); err != nil {
		t.Fatal(err)
	}
	r := x.mage([]string{"VAULT_ADDR=https://vault.other.example:8200"}, "install")
	wantExit(t, "re-install", r, 0)
	if !strings.Contains(r.stdout, "VAULT_ADDR: updated") {
		t.Error("re-install: output does not say \"VAULT_ADDR: updated\"")
	}
	after, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(after), "\n"+added) {
		t.Errorf("the operator's lines did not survive the re-install:\n%s", after)
	}
	if !strings.Contains(string(after), "VAULT_ADDR=https://vault.other.example:8200\n") {
		t.Errorf("VAULT_ADDR not updated: no line VAULT_ADDR=https://vault.other.example:8200:\n%s", after)
	}
	if strings.Contains(string(after), "VAULT_ADDR="+x.f.Server.Addr) {
		t.Errorf("VAULT_ADDR not updated: the old VAULT_ADDR=%s is still there:\n%s", x.f.Server.Addr, after)
	}
	units, _ := filepath.Glob(filepath.Join(x.home, ".config", "systemd", "user", "*"))
	var names []string
	for _, u := range units {
		names = append(names, filepath.Base(u))
	}
	if !slices.Contains(names, "vault-token-renew-notify@.service") {
		t.Errorf("the notify unit was not installed: %v", names)
	}
	svc, _ := os.ReadFile(filepath.Join(x.home, ".config", "systemd", "user", "vault-token-renew.service"))
	if !strings.Contains(string(svc), "OnFailure=vault-token-renew-notify@%N.service") {
		t.Error("the installed service has no OnFailure=")
	}
}

// TestMageOnOpenBao: install, liveTest and sweepStale for a bao user (BAO_*
// settings, no VAULT_*): the env file gets the BAO_* lines the shell sets,
// never BAO_TOKEN, and the three checks pass against a real OpenBao.
func TestMageOnOpenBao(t *testing.T) {
	x := newBaoH(t)
	x.put(x.periodic("bao periodic"))
	r := x.mage([]string{"BAO_CLIENT_TIMEOUT=30s"}, "install")
	wantExit(t, "install", r, 0)
	wantIn(t, "install output", r.stdout, "BAO_ADDR: added")
	env, err := os.ReadFile(filepath.Join(x.home, ".config", "vault-token-renew", "env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"BAO_ADDR=" + x.f.Server.Addr + "\n", "BAO_CLIENT_TIMEOUT=30s\n"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("env file lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(string(env), x.f.Server.RootToken) || strings.Contains(string(env), "\nVAULT_ADDR=") {
		t.Error("env file holds BAO_TOKEN's value or a VAULT_ADDR line the shell did not set")
	}
	r = x.mage(nil, "liveTest")
	wantExit(t, "liveTest", r, 0)
	if n := strings.Count(r.stdout, "PASS "); n != 3 {
		t.Errorf("liveTest: %d steps PASS, want 3", n)
	}
	x.keep("after liveTest", tokenOf(x))
	x.assertNoFakes()
	stale := x.periodic("bao stale")
	r = x.mage([]string{"APPLY=1"}, "sweepStale")
	wantExit(t, "sweepStale APPLY=1", r, 0)
	if x.alive(stale.Accessor) {
		t.Errorf("sweepStale left the stale %s alive", stale.Accessor)
	}
}
