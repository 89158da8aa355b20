// Package build compiles vault-token-renew the one way every caller wants
// it: mage build and install, the integration suite, the demo and the
// bench all run the binary this builds, with its version stamped in.
package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Package is the binary's package, relative to the repository.
const Package = "./cmd/vault-token-renew"

// Repo is the repository's root, found from this file's place in it.
func Repo() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("build: cannot locate the repository")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file))), nil // internal/build/build.go
}

// Renewer compiles vault-token-renew into out: static (CGO_ENABLED=0), so
// it runs on any Linux user's machine and in a minimal systemd container,
// with -trimpath (no local paths in the binary) and version stamped as
// `--version` prints it.
func Renewer(ctx context.Context, out, version string) error {
	repo, err := Repo()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-X main.version="+version, "-o", out, Package)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build vault-token-renew: %w\n%s", err, b)
	}
	return nil
}
