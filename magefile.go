//go:build mage

// Build, test and operate vault-token-renew. Run with `go tool mage <target>`;
// `go tool mage -l` lists the targets.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"

	"github.com/devvm/vault-token-renew/internal/demo"
	"github.com/devvm/vault-token-renew/internal/devvault"
)

// Default is what a bare `go tool mage` runs.
var Default = Test

const pkg = "./cmd/vault-token-renew"

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

func ldflags() string { return "-X main.version=" + versionStamp() }

// Build compiles bin/vault-token-renew with its version stamped in.
func Build() error {
	return sh.RunV("go", "build", "-trimpath", "-ldflags="+ldflags(), "-o", "bin/vault-token-renew", pkg)
}

// Vet checks formatting (gofmt) and runs go vet.
func Vet() error {
	out, err := sh.Output("gofmt", "-l", ".")
	if err != nil {
		return err
	}
	var bad []string
	for _, f := range strings.Fields(out) {
		if !strings.HasPrefix(f, "internal/devvault/vaultserver/") || strings.HasSuffix(f, ".go") {
			bad = append(bad, f)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("gofmt would change %s; run gofmt -w on them", strings.Join(bad, " "))
	}
	return sh.RunV("go", "vet", "./...")
}

// Unit runs the unit tests: no Vault, no Docker.
func Unit() error {
	pkgs, err := sh.Output("go", "list", "./...")
	if err != nil {
		return err
	}
	args := []string{"test", "-count=1", "-race"}
	for _, p := range strings.Fields(pkgs) {
		if !strings.HasSuffix(p, "/integration") {
			args = append(args, p)
		}
	}
	return sh.RunV("go", args...)
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
// process where there is no Docker; with CI=true Docker is required).
func Integration() error {
	mg.Deps(DevVault)
	return sh.RunWithV(map[string]string{"TESTCONTAINERS_RYUK_DISABLED": "true"},
		"go", "test", "-count=1", "-timeout=45m", "-v", "./integration/")
}

// Test runs every test: formatting and vet, unit tests, the integration suite.
func Test() {
	mg.SerialDeps(Vet, Unit, Integration)
}

// Demo runs the main job on a throwaway dev Vault: OK, then a login clobber
// (HEALED), then a weak clobber (DRIFT heal denied), and tears it all down.
// Set -v for every log line.
func Demo(ctx context.Context) error {
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	return demo.Run(ctx, os.Stdout, mg.Verbose())
}
