//go:build mage

// Build, test and operate vault-token-renew. Run with `go tool mage <target>`;
// `go tool mage -l` lists the targets.
package main

import (
	"context"

	"github.com/magefile/mage/mg"

	"github.com/devvm/vault-token-renew/internal/tasks"
)

// Each target here names its prerequisites (mg.Deps) and the work it does,
// which is in internal/tasks.

// Default is what a bare `go tool mage` runs.
var Default = Test

// Build compiles bin/vault-token-renew with its version stamped in. The
// version is the VERSION variable, else git describe, else "dev".
func Build(ctx context.Context) error {
	return tasks.OS().Build(ctx)
}

// Vet checks formatting (gofmt) and runs go vet, the integration suite
// included.
func Vet() error {
	return tasks.OS().Vet()
}

// Unit runs the unit tests: no Vault, no Docker (the integration suite is
// behind the integration build tag).
func Unit() error {
	return tasks.OS().Unit()
}

// DevVault makes sure a dev Vault can start here (building the Vault binary
// and image the first time), starts one, and stops it.
func DevVault(ctx context.Context) error {
	return tasks.OS().DevVault(ctx)
}

// Integration runs the suite against a real dev Vault (Docker, or a local
// process where there is no Docker; with CI=true Docker is required), and
// against OpenBao (a bao from VTR_OPENBAO_BIN, else from the workplace's
// build script). The script is ../shared/openbao/build.sh beside this
// checkout.
func Integration() error {
	mg.Deps(DevVault)
	return tasks.OS().Integration()
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
	return tasks.OS().Demo(ctx, mg.Verbose())
}

// Install builds the binary with its version stamped and installs it to
// ~/.local/bin (atomically) with the systemd user units (service, timer,
// notifier, heal on login); in the env file it updates only the VAULT_*,
// BAO_* (and VTR_HOST, VTR_TOKEN_FILE) lines the shell sets and keeps every
// other line; it reloads systemd only when a unit changed; HEAL_ON_LOGIN=1
// enables heal on login, HEAL_ON_LOGIN=0 disables it, unset keeps the
// choice; it prints the login-banner line for ~/.bashrc. VTR_HOME acts on
// another home than $HOME; VTR_NO_SYSTEMD=1 leaves systemd alone.
// PROFILE=NAME installs profile NAME instead (another Vault or namespace):
// its env file ~/.config/vault-token-renew/NAME.env, the template units,
// vault-token-renew@NAME.timer enabled; it refuses a profile whose token
// store another profile (or the install without one) uses.
func Install(ctx context.Context) error {
	return tasks.OS().Install(ctx)
}

// Uninstall disables the timer and heal on login, then removes the units,
// their drop-in and the binary; it keeps the env file, the run state and
// the token file. PROFILE=NAME disables profile NAME's timer and heal on
// login and removes its drop-ins, keeping NAME.env, its state, the
// templates and the binary; PROFILE=all removes every profile and all the
// rest.
func Uninstall() error {
	return tasks.OS().Uninstall()
}

// LiveTest runs the design's three post-deploy checks against the Vault in
// VAULT_ADDR with the periodic token in ~/.vault-token: HEALED, DRIFT heal
// denied, OK; restores a working periodic token whatever happens. The
// install without a profile only: it refuses a PROFILE.
func LiveTest(ctx context.Context) error {
	return tasks.OS().LiveTest(ctx)
}

// SweepStale lists this machine's stale token-devvm-wizard tokens (dry
// run); with APPLY=1 it revokes them. Never the token in the file, never a
// near-miss name, never a token tagged for another machine. PROFILE=NAME
// sweeps profile NAME's.
func SweepStale() error {
	return tasks.OS().SweepStale()
}

// Bench measures the sweep against bare HTTP and the CLI loop on a dev Vault
// seeded with N tokens (N=1000 default; N=10000 measures 1k, 5k and 10k),
// a new user's heals and the walk of its own at HEAL_N tokens (200000
// default; 0 skips it), counting the requests Vault receives, the happy
// path and status --brief; writes results/bench.{csv,md} and
// results/sweep-time.svg. RUNS (9) and CONCURRENCY set the repetitions
// and the lookups in flight.
func Bench(ctx context.Context) error {
	return tasks.OS().Bench(ctx)
}
