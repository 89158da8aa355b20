// Package devvault gives tests, the demo and the bench a real, throwaway
// `vault server -dev`, on machines with no container registry.
//
// The Vault version is pinned in one place: the require line of
// vaultserver/go.mod. The server comes, in order of preference, from a
// hashicorp/vault image of that version already present or pullable; from a
// local image built FROM scratch around a static Vault binary compiled from
// that module; or, with no Docker at all, from the same binary run as a
// local process on a loopback port.
package devvault

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/devvm/vault-token-renew/internal/build"
)

// moduleDir is the nested module that builds Vault's own CLI.
func moduleDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("devvault: cannot locate its own source")
	}
	return filepath.Join(filepath.Dir(file), "vaultserver"), nil
}

// Version is the pinned Vault version, read from vaultserver/go.mod
// (for example "1.21.0").
func Version() (string, error) {
	dir, err := moduleDir()
	if err != nil {
		return "", err
	}
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("devvault: read pinned vault version: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require"))
		if len(fields) == 2 && fields[0] == "github.com/hashicorp/vault" {
			return strings.TrimPrefix(fields[1], "v"), nil
		}
	}
	return "", fmt.Errorf("devvault: no github.com/hashicorp/vault require line in %s/go.mod", dir)
}

// buildKey identifies a build: the pinned version plus a hash of go.sum and
// main.go, so a changed module never reuses a stale binary.
func buildKey() (string, error) {
	dir, err := moduleDir()
	if err != nil {
		return "", err
	}
	v, err := Version()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("devvault: %w", err)
		}
		h.Write(b)
	}
	return "v" + v + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// cacheDir is where built Vault binaries live across runs:
// $VTR_VAULT_CACHE, else the user cache dir.
func cacheDir() (string, error) {
	if d := os.Getenv("VTR_VAULT_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("devvault: no cache dir (set VTR_VAULT_CACHE): %w", err)
	}
	return filepath.Join(d, "vault-token-renew"), nil
}

// Binary returns a static Vault binary of the pinned version, building it
// once per machine (about 20 minutes on 2 cores and about 4 GB of module
// cache the first time; instant after). Concurrent callers wait for one build.
func Binary(ctx context.Context, progress io.Writer) (string, error) {
	key, kerr := buildKey()
	root, cerr := cacheDir()
	if err := errors.Join(kerr, cerr); err != nil {
		return "", err
	}
	dir := filepath.Join(root, "vault-"+key)
	bin := filepath.Join(dir, "vault")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("devvault: %w", err)
	}
	lock := flock.New(filepath.Join(dir, "build.lock"))
	if _, err := lock.TryLockContext(ctx, time.Second); err != nil {
		return "", fmt.Errorf("devvault: wait for another vault build: %w", err)
	}
	defer lock.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by whoever held the lock
	}
	src, err := moduleDir()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "devvault: building vault %s from the Go module proxy into %s (first time on this machine: about 20 minutes on 2 cores, about 4 GB of modules)\n", key, dir)
	start := time.Now()
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("devvault: build vault in %s: %w\n%s", src, err, tail(out, 40))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("devvault: %w", err)
	}
	fmt.Fprintf(progress, "devvault: built vault in %s\n", time.Since(start).Round(time.Second))
	return bin, nil
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// BuildRenewer compiles vault-token-renew from this checkout into dir and
// returns the binary's path: the demo and the integration suite run the
// real binary, exit codes and all.
func BuildRenewer(ctx context.Context, dir, version string) (string, error) {
	bin := filepath.Join(dir, "vault-token-renew")
	return bin, build.Renewer(ctx, bin, version)
}
