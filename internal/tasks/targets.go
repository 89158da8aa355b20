package tasks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"

	"github.com/devvm/vault-token-renew/internal/bench"
	"github.com/devvm/vault-token-renew/internal/build"
	"github.com/devvm/vault-token-renew/internal/demo"
	"github.com/devvm/vault-token-renew/internal/devvault"
	"github.com/devvm/vault-token-renew/internal/install"
	"github.com/devvm/vault-token-renew/internal/livetest"
)

// Each method here is the mage target of its name; magefile.go documents
// what each does for the operator.

// Build compiles bin/vault-token-renew with its version stamped in.
func (s Shell) Build(ctx context.Context) error {
	return build.Renewer(ctx, filepath.Join("bin", "vault-token-renew"), s.version())
}

// Vet checks formatting (gofmt) and runs go vet with the integration tag.
func (s Shell) Vet() error {
	out, err := sh.Output("gofmt", "-l", ".")
	if err != nil {
		return err
	}
	if out != "" {
		return fmt.Errorf("gofmt would change %s; run gofmt -w on them", strings.Join(strings.Fields(out), " "))
	}
	return sh.RunV("go", "vet", "-tags=integration", "./...")
}

// Unit runs the unit tests, with the race detector.
func (s Shell) Unit() error {
	return sh.RunV("go", "test", "-count=1", "-race", "./...")
}

// DevVault starts a dev Vault and stops it.
func (s Shell) DevVault(ctx context.Context) error {
	srv, err := devvault.Start(ctx, s.Stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.Stdout, "devvault: vault %s is up (%s) at %s; stopping it\n", srv.Version, srv.Mode, srv.Addr)
	return srv.Stop(ctx)
}

// Integration runs the integration suite, with a bao from the workplace's
// build script where VTR_OPENBAO_BIN is unset. The suite's dev servers
// take their test-container settings from devvault.
func (s Shell) Integration() error {
	if err := s.openBao(); err != nil {
		return err
	}
	return sh.RunV("go", "test", "-tags=integration", "-count=1", "-timeout=45m", "-v", "./integration/")
}

// Demo runs the demo on the server VTR_SERVER names (vault, the default,
// or openbao).
func (s Shell) Demo(ctx context.Context, verbose bool) error {
	kind := devvault.Kind(s.Getenv("VTR_SERVER"))
	if kind == devvault.KindOpenBao {
		if err := s.openBao(); err != nil {
			return err
		}
	}
	return demo.Run(ctx, s.Stdout, kind, verbose)
}

// Install builds the binary into a temp dir and installs it, with the
// units in the checkout's systemd/, below the operator's home; PROFILE
// names a profile to install instead of the install without one.
func (s Shell) Install(ctx context.Context) error {
	profile, home, root, err := s.installing(false)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "vtr-install-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	built, version := filepath.Join(tmp, "vault-token-renew"), s.version()
	if err := build.Renewer(ctx, built, version); err != nil {
		return err
	}
	o := install.Options{Root: home, Getenv: s.Getenv, Systemctl: s.userManager(), HealOnLogin: s.Getenv("HEAL_ON_LOGIN"), Profile: profile}
	return install.FromBuild(s.Stdout, o, built, filepath.Join(root, "systemd"), version)
}

// installing is what Install and Uninstall act on: PROFILE (checked as
// profile checks it), the operator's home, and the checkout's root.
func (s Shell) installing(all bool) (profile, home, root string, err error) {
	if profile, err = s.profile(all); err != nil {
		return "", "", "", err
	}
	if home, err = s.home(); err != nil {
		return "", "", "", err
	}
	root, err = s.root()
	return profile, home, root, err
}

// Uninstall removes what Install put below the operator's home: PROFILE
// says which profile, all every profile and the install without one.
func (s Shell) Uninstall() error {
	profile, home, root, err := s.installing(true)
	if err != nil {
		return err
	}
	o := install.Options{Root: home, Systemctl: s.userManager(), Profile: profile}
	return install.UninstallUnits(s.Stdout, o, filepath.Join(root, "systemd"))
}

// LiveTest runs the post-deploy checks against the install below the
// operator's home.
func (s Shell) LiveTest(ctx context.Context) error {
	home, err := s.home()
	if err != nil {
		return err
	}
	if p := s.Getenv("PROFILE"); p != "" {
		// Its checks swap the token file of the install without a profile,
		// and would not test the profile's.
		return fmt.Errorf("PROFILE=%q: liveTest checks the install without a profile only", p)
	}
	return livetest.Installed(ctx, home, s.userManager() != nil, s.Stdout)
}

// SweepStale runs the installed binary's sweep (with APPLY=1, --apply; with
// PROFILE=NAME, that profile's); it fails with the binary's own exit code.
func (s Shell) SweepStale() error {
	home, err := s.home()
	if err != nil {
		return err
	}
	profile, err := s.profile(false)
	if err != nil {
		return err
	}
	code, err := install.SweepInstalled(home, s.Getenv("APPLY") == "1", profile, s.Stdout, s.Stderr)
	if code != 0 {
		return mg.Fatalf(code, "sweepStale: vault-token-renew sweep exited %d", code)
	}
	return err
}

// Bench measures as N, RUNS, CONCURRENCY and HEAL_N say and writes the
// results in results/.
func (s Shell) Bench(ctx context.Context) error {
	p, err := s.benchPlan()
	if err != nil {
		return err
	}
	return bench.Main(ctx, s.Stdout, "results", p)
}
