package tasks

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magefile/mage/mg"

	"github.com/devvm/vault-token-renew/internal/bench"
	"github.com/devvm/vault-token-renew/internal/install"
	"github.com/devvm/vault-token-renew/sweep"
)

// shell is a Shell over a map of variables, writing to buffers, with its
// module root in a temp dir (a go.mod and nothing else: not a git
// checkout).
func shell(t *testing.T, env map[string]string) (Shell, *bytes.Buffer) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "main")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	return Shell{
		Getenv: func(k string) string { return env[k] },
		Setenv: func(k, v string) error { env[k] = v; return nil },
		Stdout: &out, Stderr: &out, Root: root,
	}, &out
}

func TestVersion(t *testing.T) {
	s, _ := shell(t, map[string]string{"VERSION": "v1.2.3"})
	if got := s.version(); got != "v1.2.3" {
		t.Fatalf("VERSION=v1.2.3: version %q", got)
	}
	s, _ = shell(t, map[string]string{})
	if got := s.version(); got != "dev" {
		t.Fatalf("no VERSION, no git checkout: version %q, want dev", got)
	}
}

func TestRootNeedsGoMod(t *testing.T) {
	s := Shell{Root: t.TempDir()}
	if _, err := s.root(); err == nil || !strings.Contains(err.Error(), "no go.mod") {
		t.Fatalf("a root without go.mod: %v", err)
	}
	s.Root = ""
	r, err := s.root()
	if err != nil {
		t.Fatalf("this checkout: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r, "magefile.go")); err != nil {
		t.Fatalf("this checkout's root %s has no magefile.go: %v", r, err)
	}
}

func TestHome(t *testing.T) {
	s, _ := shell(t, map[string]string{"VTR_HOME": "/tmp/h"})
	if h, err := s.home(); err != nil || h != "/tmp/h" {
		t.Fatalf("VTR_HOME=/tmp/h: home %q, %v", h, err)
	}
	t.Setenv("HOME", "/home/op")
	s, _ = shell(t, map[string]string{})
	if h, err := s.home(); err != nil || h != "/home/op" {
		t.Fatalf("no VTR_HOME: home %q, %v; want $HOME", h, err)
	}
}

func TestNoSystemdMeansNoUserManager(t *testing.T) {
	s, _ := shell(t, map[string]string{"VTR_NO_SYSTEMD": "1"})
	if s.userManager() != nil {
		t.Fatal("VTR_NO_SYSTEMD=1: a user manager")
	}
}

func TestBenchPlan(t *testing.T) {
	def := bench.Plan{N: 1000, Runs: 9, Concurrency: sweep.DefaultConcurrency, HealN: 200000}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bench.Plan
		err  string
	}{
		{"defaults", map[string]string{}, def, ""},
		{"N and RUNS", map[string]string{"N": "10000", "RUNS": "3"}, bench.Plan{N: 10000, Runs: 3, Concurrency: def.Concurrency, HealN: def.HealN}, ""},
		{"HEAL_N=0 skips the heals", map[string]string{"HEAL_N": "0"}, bench.Plan{N: 1000, Runs: 9, Concurrency: def.Concurrency}, ""},
		{"HEAL_N", map[string]string{"HEAL_N": "500", "CONCURRENCY": "4"}, bench.Plan{N: 1000, Runs: 9, Concurrency: 4, HealN: 500}, ""},
		{"N=0", map[string]string{"N": "0"}, bench.Plan{}, `N="0": want a positive whole number`},
		{"RUNS not a number", map[string]string{"RUNS": "many"}, bench.Plan{}, `RUNS="many": want a positive whole number`},
		{"HEAL_N negative", map[string]string{"HEAL_N": "-1"}, bench.Plan{}, `HEAL_N="-1": want a positive whole number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := shell(t, tc.env)
			got, err := s.benchPlan()
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("plan %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// putScript writes the workplace's OpenBao build script beside the root:
// root/../shared/openbao/build.sh.
func putScript(t *testing.T, root, body string) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(root), "shared", "openbao")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "build.sh")
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

// TestOpenBaoScriptIsFoundFromTheRoot: the script is found beside the
// module root whatever the working directory, its path becomes
// VTR_OPENBAO_BIN, and a VTR_OPENBAO_BIN already set is kept.
func TestOpenBaoScriptIsFoundFromTheRoot(t *testing.T) {
	env := map[string]string{}
	s, out := shell(t, env)
	putScript(t, s.Root, "#!/bin/sh\necho /opt/bao\n")
	t.Chdir(t.TempDir())
	if err := s.openBao(); err != nil {
		t.Fatal(err)
	}
	if env["VTR_OPENBAO_BIN"] != "/opt/bao" || !strings.Contains(out.String(), "openbao: VTR_OPENBAO_BIN=/opt/bao") {
		t.Fatalf("VTR_OPENBAO_BIN=%q; output:\n%s", env["VTR_OPENBAO_BIN"], out)
	}

	env = map[string]string{"VTR_OPENBAO_BIN": "/mine/bao"}
	s, out = shell(t, env)
	putScript(t, s.Root, "#!/bin/sh\necho /opt/bao\n")
	if err := s.openBao(); err != nil || env["VTR_OPENBAO_BIN"] != "/mine/bao" || out.Len() != 0 {
		t.Fatalf("a set VTR_OPENBAO_BIN: now %q (%v), output %q", env["VTR_OPENBAO_BIN"], err, out)
	}
}

func TestOpenBaoWithoutScriptDoesNothing(t *testing.T) {
	env := map[string]string{}
	s, out := shell(t, env)
	if err := s.openBao(); err != nil || env["VTR_OPENBAO_BIN"] != "" || out.Len() != 0 {
		t.Fatalf("no script: VTR_OPENBAO_BIN=%q, %v, output %q", env["VTR_OPENBAO_BIN"], err, out)
	}
}

func TestOpenBaoScriptFailureSaysWhatToSet(t *testing.T) {
	env := map[string]string{}
	s, _ := shell(t, env)
	putScript(t, s.Root, "#!/bin/sh\necho no go compiler >&2\nexit 3\n")
	err := s.openBao()
	if err == nil || !strings.Contains(err.Error(), "set VTR_OPENBAO_BIN to a bao v") || env["VTR_OPENBAO_BIN"] != "" {
		t.Fatalf("a failing script: %v (VTR_OPENBAO_BIN=%q)", err, env["VTR_OPENBAO_BIN"])
	}
}

// TestSweepStaleFailsWithTheBinarysExitCode: mage exits with the installed
// sweep's own code, so a script sees what the sweep said.
func TestSweepStaleFailsWithTheBinarysExitCode(t *testing.T) {
	home := t.TempDir()
	bin := filepath.Join(home, ".local", "bin", "vault-token-renew")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"sweep $*\"\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, out := shell(t, map[string]string{"VTR_HOME": home})
	err := s.SweepStale()
	if mg.ExitStatus(err) != 3 {
		t.Fatalf("exit status %d (%v), want 3", mg.ExitStatus(err), err)
	}
	if !strings.Contains(out.String(), "sweepStale: dry run; set APPLY=1 to revoke") || strings.Contains(out.String(), "--apply") {
		t.Fatalf("without APPLY=1 a dry run; output:\n%s", out)
	}
	s, out = shell(t, map[string]string{"VTR_HOME": home, "APPLY": "1"})
	if s.SweepStale(); !strings.Contains(out.String(), "--apply") {
		t.Fatalf("APPLY=1 did not pass --apply; output:\n%s", out)
	}
}

func TestSweepStaleNeedsAnInstall(t *testing.T) {
	s, _ := shell(t, map[string]string{"VTR_HOME": t.TempDir()})
	if err := s.SweepStale(); err == nil || !strings.Contains(err.Error(), "run: go tool mage install") {
		t.Fatalf("no install: %v", err)
	}
}

func TestProfile(t *testing.T) {
	for _, tc := range []struct {
		profile  string
		all      bool // uninstall
		want     string
		errorHas string
	}{
		{"", false, "", ""},
		{"prod", false, "prod", ""},
		{"eu-west_2", true, "eu-west_2", ""},
		{"all", true, "all", ""},
		{"all", false, "", "uninstall only"},
		{"Prod", false, "", `PROFILE="Prod"`},
		{"../x", true, "", `PROFILE="../x"`},
	} {
		s, _ := shell(t, map[string]string{"PROFILE": tc.profile})
		got, err := s.profile(tc.all)
		if tc.errorHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errorHas) {
				t.Errorf("PROFILE=%q (all %v): %v, want an error with %q", tc.profile, tc.all, err, tc.errorHas)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("PROFILE=%q (all %v): %q %v, want %q", tc.profile, tc.all, got, err, tc.want)
		}
	}
}

// TestInstallChecksProfileFirst: a bad PROFILE fails the install before
// the build (minutes, for nothing), and nothing is written.
func TestInstallChecksProfileFirst(t *testing.T) {
	home := t.TempDir()
	for _, p := range []string{"all", "Prod"} {
		s, _ := shell(t, map[string]string{"PROFILE": p, "VTR_HOME": home, "VTR_NO_SYSTEMD": "1"})
		if err := s.Install(context.Background()); err == nil || !strings.Contains(err.Error(), "PROFILE") {
			t.Errorf("PROFILE=%s install: %v", p, err)
		}
	}
	if left, _ := os.ReadDir(home); len(left) != 0 {
		t.Errorf("a refused install wrote %v", left)
	}
}

// TestUninstallTakesProfile: PROFILE=prod removes prod's drop-ins and
// keeps the rest; PROFILE=all removes the binary too.
func TestUninstallTakesProfile(t *testing.T) {
	home := t.TempDir()
	s, out := shell(t, map[string]string{"PROFILE": "prod", "VTR_HOME": home, "VTR_NO_SYSTEMD": "1"})
	repo, _ := filepath.Abs(filepath.Join("..", "..", "systemd"))
	if err := os.Symlink(repo, filepath.Join(s.Root, "systemd")); err != nil {
		t.Fatal(err)
	}
	units, err := install.UnitsFrom(repo)
	if err != nil {
		t.Fatal(err)
	}
	o := install.Options{Root: home, Binary: []byte("b"), Units: units, Profile: "prod", Getenv: func(k string) string { return map[string]string{"VTR_TOKEN_FILE": "/srv/t"}[k] }}
	if _, err := install.InstallProfile(o); err != nil {
		t.Fatal(err)
	}
	if err := s.Uninstall(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"uninstall: removed " + filepath.Join(home, ".config", "systemd", "user", "vault-token-renew@prod.path.d", "token-file.conf"), "kept profile prod's env file", "nothing was disabled"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("PROFILE=prod uninstall says no %q:\n%s", want, out)
		}
	}
	s.Getenv = func(k string) string {
		return map[string]string{"PROFILE": "all", "VTR_HOME": home, "VTR_NO_SYSTEMD": "1"}[k]
	}
	if err := s.Uninstall(); err != nil || !strings.Contains(out.String(), "uninstall: removed "+filepath.Join(home, ".local", "bin", "vault-token-renew")) {
		t.Errorf("PROFILE=all uninstall (%v):\n%s", err, out)
	}
}

// TestSweepStaleAndLiveTestTakeProfile: PROFILE=prod sweeps prod's
// (--profile prod); liveTest, which checks the install without a profile,
// refuses a PROFILE rather than test something else.
func TestSweepStaleAndLiveTestTakeProfile(t *testing.T) {
	home := t.TempDir()
	bin := filepath.Join(home, ".local", "bin", "vault-token-renew")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"sweep $*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, out := shell(t, map[string]string{"VTR_HOME": home, "PROFILE": "prod"})
	if err := s.SweepStale(); err != nil || !strings.Contains(out.String(), "sweep sweep --profile prod\n") {
		t.Fatalf("PROFILE=prod sweepStale (%v):\n%s", err, out)
	}
	s, _ = shell(t, map[string]string{"VTR_HOME": home, "PROFILE": "Bad"})
	if err := s.SweepStale(); err == nil || !strings.Contains(err.Error(), `PROFILE="Bad"`) {
		t.Fatalf("PROFILE=Bad sweepStale: %v", err)
	}
	s, _ = shell(t, map[string]string{"VTR_HOME": home, "PROFILE": "prod"})
	if err := s.LiveTest(context.Background()); err == nil || !strings.Contains(err.Error(), "install without a profile only") {
		t.Fatalf("PROFILE=prod liveTest: %v", err)
	}
}
