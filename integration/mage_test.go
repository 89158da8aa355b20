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
)

// mage runs `go tool mage target` from the repo root as an operator would,
// with VTR_HOME pointing the targets at this test's temp home and no
// systemd user manager (direct mode).
func (x *h) mage(extraEnv []string, target string) result {
	x.t.Helper()
	cmd := exec.CommandContext(x.ctx, "go", "tool", "mage", target)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "VTR_HOME="+x.home, "VTR_NO_SYSTEMD=1",
		"VAULT_ADDR="+x.f.Server.Addr, "VAULT_TOKEN="+x.f.Server.RootToken, "VERSION=v0.0.0-magetest")
	cmd.Env = append(cmd.Env, extraEnv...)
	r := x.exec(cmd, true)
	x.t.Logf("go tool mage %s → exit %d\n%s", target, r.code, r.stdout)
	return r
}

func TestMageInstallLiveTestSweepStale(t *testing.T) {
	x := newH(t)
	x.put(x.periodic("periodic"))

	r := x.mage(nil, "install")
	bin := filepath.Join(x.home, ".local", "bin", "vault-token-renew")
	for _, want := range []string{"install: wrote " + bin, "vault-token-renew.service", "vault-token-renew.timer", "timer was NOT enabled"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("install: exit %d, output lacks %q", r.code, want)
		}
	}
	env, err := os.ReadFile(filepath.Join(x.home, ".config", "vault-token-renew", "env"))
	if err != nil || !strings.Contains(string(env), "VAULT_ADDR="+x.f.Server.Addr+"\n") || strings.Contains(string(env), x.f.Server.RootToken) {
		t.Fatalf("env file: %v\n(has VAULT_ADDR: %v)", err, strings.Contains(string(env), "VAULT_ADDR="))
	}
	if out, err := exec.Command(bin, "--version").Output(); err != nil || string(out) != "vault-token-renew v0.0.0-magetest\n" {
		t.Fatalf("installed --version: %q %v", out, err)
	}
	if r := x.mage(nil, "install"); r.code != 0 || !strings.Contains(r.stdout, "install: nothing changed") || strings.Contains(r.stdout, "wrote") {
		t.Fatalf("second install: exit %d", r.code)
	}

	r = x.mage(nil, "liveTest")
	if r.code != 0 || strings.Count(r.stdout, "PASS ") != 3 || !strings.Contains(r.stdout, "running "+bin+" directly") ||
		!strings.Contains(r.stdout, "HEALED: re-minted from foreign dn=token-fake-oidc") || !strings.Contains(r.stdout, "DRIFT: foreign token dn=token-fake-weak") {
		t.Fatalf("liveTest: exit %d", r.code)
	}
	x.keep("after liveTest", tokenOf(x))
	if info, err := x.fileToken(); err != nil || info.DisplayName != "token-devvm-wizard" {
		t.Fatalf("after liveTest the file holds %+v (%v)", info, err)
	}
	x.assertNoFakes()

	s1, s2 := x.periodic("stale1"), x.periodic("stale2")
	r = x.mage(nil, "sweepStale")
	if r.code != 0 || strings.Count(r.stdout, "would revoke\n") != 2 || !x.alive(s1.Accessor) {
		t.Fatalf("sweepStale dry run: exit %d", r.code)
	}
	r = x.mage([]string{"APPLY=1"}, "sweepStale")
	if r.code != 0 || !strings.Contains(r.stdout, "revoked 2 stale") || x.alive(s1.Accessor) || x.alive(s2.Accessor) {
		t.Fatalf("sweepStale APPLY=1: exit %d", r.code)
	}
	if _, err := x.fileToken(); err != nil {
		t.Fatal("sweepStale broke the token in the file")
	}
}

func (x *h) assertNoFakes() {
	x.t.Helper()
	for _, dn := range []string{"token-fake-oidc", "token-fake-weak"} {
		if accs, err := x.f.AccessorsNamed(x.ctx, dn); err != nil || len(accs) != 0 {
			x.t.Fatalf("fakes %s left alive: %v %v", dn, accs, err)
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
	if r.code == 0 || !strings.Contains(r.stdout, "FAIL 1.") || !strings.Contains(r.stdout, "SKIP 3.") || !strings.Contains(r.stdout, "restored the periodic token") {
		t.Fatalf("liveTest with a broken renewer: exit %d", r.code)
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
	if r.code != 0 || !strings.Contains(r.stdout, "VAULT_ADDR: updated") {
		t.Fatalf("re-install: exit %d, does not say VAULT_ADDR changed", r.code)
	}
	after, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(after), "\n"+added) {
		t.Errorf("the operator's lines did not survive the re-install:\n%s", after)
	}
	if !strings.Contains(string(after), "VAULT_ADDR=https://vault.other.example:8200\n") || strings.Contains(string(after), "VAULT_ADDR="+x.f.Server.Addr) {
		t.Errorf("VAULT_ADDR not updated:\n%s", after)
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
