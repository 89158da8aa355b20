//go:build mage

// Build, test and operate vault-token-renew. Run with `go tool mage <target>`;
// `go tool mage -l` lists the targets.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"

	"github.com/devvm/vault-token-renew/internal/bench"
	"github.com/devvm/vault-token-renew/internal/build"
	"github.com/devvm/vault-token-renew/internal/demo"
	"github.com/devvm/vault-token-renew/internal/devvault"
	"github.com/devvm/vault-token-renew/internal/install"
	"github.com/devvm/vault-token-renew/internal/livetest"
	"github.com/devvm/vault-token-renew/sweep"
)

// Default is what a bare `go tool mage` runs.
var Default = Test

// versionStamp is the version `vault-token-renew --version` prints: the
// VERSION variable, else git describe, else "dev".
func versionStamp() string {
	if v := os.Getenv("VERSION"); v != "" {
		return v
	}
	if v, err := sh.Output("git", "describe", "--tags", "--always", "--dirty"); err == nil && v != "" {
		return v
	}
	return "dev"
}

// Build compiles bin/vault-token-renew with its version stamped in.
func Build(ctx context.Context) error {
	return build.Renewer(ctx, filepath.Join("bin", "vault-token-renew"), versionStamp())
}

// Vet checks formatting (gofmt) and runs go vet, the integration suite
// included.
func Vet() error {
	out, err := sh.Output("gofmt", "-l", ".")
	if err != nil {
		return err
	}
	if out != "" {
		return fmt.Errorf("gofmt would change %s; run gofmt -w on them", strings.Join(strings.Fields(out), " "))
	}
	return sh.RunV("go", "vet", "-tags=integration", "./...")
}

// Unit runs the unit tests: no Vault, no Docker (the integration suite is
// behind the integration build tag).
func Unit() error {
	return sh.RunV("go", "test", "-count=1", "-race", "./...")
}

// DevVault makes sure a dev Vault can start here (building the Vault binary
// and image the first time), starts one, and stops it.
func DevVault(ctx context.Context) error {
	srv, err := devvault.Start(ctx, os.Stdout)
	if err != nil {
		return err
	}
	fmt.Printf("devvault: vault %s is up (%s) at %s; stopping it\n", srv.Version, srv.Mode, srv.Addr)
	return srv.Stop(ctx)
}

// Integration runs the suite against a real dev Vault (Docker, or a local
// process where there is no Docker; with CI=true Docker is required), and
// against OpenBao (a bao from VTR_OPENBAO_BIN, else from the workplace's
// build script).
func Integration() error {
	mg.Deps(DevVault)
	if err := openBaoBinary(); err != nil {
		return err
	}
	return sh.RunWithV(map[string]string{"TESTCONTAINERS_RYUK_DISABLED": "true"},
		"go", "test", "-tags=integration", "-count=1", "-timeout=45m", "-v", "./integration/")
}

// Test runs every test: formatting and vet, unit tests, the integration suite.
func Test() {
	mg.SerialDeps(Vet, Unit, Integration)
}

// Demo runs the main job on a throwaway dev Vault: OK, then a login clobber
// (HEALED), then a weak clobber (DRIFT heal denied), and tears it all down.
// VTR_SERVER=openbao runs it on OpenBao (VTR_OPENBAO_BIN where no registry
// has its image); set -v for every log line.
func Demo(ctx context.Context) error {
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	kind := devvault.Kind(os.Getenv("VTR_SERVER"))
	if kind == devvault.KindOpenBao {
		if err := openBaoBinary(); err != nil {
			return err
		}
	}
	return demo.Run(ctx, os.Stdout, kind, mg.Verbose())
}

// openBaoScripts are where the workplace keeps its OpenBao build script:
// beside this checkout, or in the shared folder.
var openBaoScripts = []string{"../shared/openbao/build.sh", "/work/shared/openbao/build.sh"}

// openBaoBinary sets VTR_OPENBAO_BIN, when it is unset, from the
// workplace's build script, so that the README's commands need nothing set
// by hand: no registry serves OpenBao's image here and the module proxy
// refuses its server module, so the script builds a real bao from source
// (once per machine, about 4 minutes; instant after). Where no script is
// found it does nothing, and the OpenBao tests say what is missing.
func openBaoBinary() error {
	if os.Getenv("VTR_OPENBAO_BIN") != "" {
		return nil
	}
	for _, script := range openBaoScripts {
		if _, err := os.Stat(script); err != nil {
			continue
		}
		fmt.Printf("openbao: building or finding a bao v%s with %s (about 4 minutes the first time on this machine)\n", devvault.OpenBaoVersion, script)
		cmd := exec.Command("bash", script)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("openbao: %s failed: %w (set VTR_OPENBAO_BIN to a bao v%s binary instead)", script, err, devvault.OpenBaoVersion)
		}
		bin := strings.TrimSpace(string(out))
		fmt.Printf("openbao: VTR_OPENBAO_BIN=%s\n", bin)
		return os.Setenv("VTR_OPENBAO_BIN", bin)
	}
	return nil
}

// operatorHome is where install, liveTest and sweepStale act: $VTR_HOME
// (tests point it at a temp dir), else $HOME.
func operatorHome() (string, error) {
	if h := os.Getenv("VTR_HOME"); h != "" {
		return h, nil
	}
	return os.UserHomeDir()
}

// userManager returns `systemctl --user`, or nil where no user manager runs.
func userManager() func(args ...string) error {
	if os.Getenv("VTR_NO_SYSTEMD") != "" {
		return nil
	}
	if err := exec.Command("systemctl", "--user", "show-environment").Run(); err != nil {
		return nil
	}
	return func(args ...string) error {
		return sh.RunV("systemctl", append([]string{"--user"}, args...)...)
	}
}

// Install builds the binary with its version stamped and installs it to
// ~/.local/bin (atomically) with the systemd user units (service, timer,
// notifier, heal on login); in the env file it updates only the VAULT_*,
// BAO_* (and VTR_HOST, VTR_TOKEN_FILE) lines the shell sets and keeps every
// other line; it reloads systemd only when a unit changed; HEAL_ON_LOGIN=1
// enables heal on login, HEAL_ON_LOGIN=0 disables it, unset keeps the
// choice; it prints the login-banner line for ~/.bashrc.
func Install(ctx context.Context) error {
	home, err := operatorHome()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "vtr-install-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	built := filepath.Join(tmp, "vault-token-renew")
	if err := build.Renewer(ctx, built, versionStamp()); err != nil {
		return err
	}
	return install.FromBuild(os.Stdout, install.Options{Root: home, Getenv: os.Getenv, Systemctl: userManager(), HealOnLogin: os.Getenv("HEAL_ON_LOGIN")},
		built, "systemd", versionStamp())
}

// Uninstall disables the timer and heal on login, then removes the units,
// their drop-in and the binary; it keeps the env file, the run state and
// the token file.
func Uninstall() error {
	home, err := operatorHome()
	if err != nil {
		return err
	}
	return install.UninstallUnits(os.Stdout, install.Options{Root: home, Systemctl: userManager()}, "systemd")
}

// LiveTest runs the design's three post-deploy checks against the Vault in
// VAULT_ADDR with the periodic token in ~/.vault-token: HEALED, DRIFT heal
// denied, OK; restores a working periodic token whatever happens.
func LiveTest(ctx context.Context) error {
	home, err := operatorHome()
	if err != nil {
		return err
	}
	return livetest.Installed(ctx, home, userManager() != nil, os.Stdout)
}

// SweepStale lists this machine's stale token-devvm-wizard tokens (dry
// run); with APPLY=1 it revokes them. Never the token in the file, never a
// near-miss name, never a token tagged for another machine.
func SweepStale() error {
	home, err := operatorHome()
	if err != nil {
		return err
	}
	code, err := install.SweepInstalled(home, os.Getenv("APPLY") == "1", os.Stdout, os.Stderr)
	if code != 0 {
		return mg.Fatalf(code, "sweepStale: vault-token-renew sweep exited %d", code)
	}
	return err
}

func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a positive whole number", name, v)
	}
	return n, nil
}

// Bench measures the sweep against bare HTTP and the CLI loop on a dev Vault
// seeded with N tokens (N=1000 default; N=10000 measures 1k, 5k and 10k),
// a new user's heals and the walk of its own at HEAL_N tokens (200000
// default; 0 skips it), counting the requests Vault receives, the happy
// path and status --brief; writes results/bench.{csv,md} and
// results/sweep-time.svg.
func Bench(ctx context.Context) error {
	n, err := envInt("N", 1000)
	if err != nil {
		return err
	}
	runs, err := envInt("RUNS", 9)
	if err != nil {
		return err
	}
	conc, err := envInt("CONCURRENCY", sweep.DefaultConcurrency)
	if err != nil {
		return err
	}
	healN := 0 // HEAL_N=0 skips the heal measurement
	if os.Getenv("HEAL_N") != "0" {
		if healN, err = envInt("HEAL_N", 200000); err != nil {
			return err
		}
	}
	return bench.Main(ctx, os.Stdout, "results", n, runs, conc, healN)
}
