// Package tasks is the work behind each mage target (magefile.go), so that
// the magefile only names its targets and their prerequisites, and what
// the targets decide (the version stamp, where the operator's home is,
// what N=, HEAL_N= and APPLY= mean, where the workplace's OpenBao build
// script is) can be unit-tested.
//
// A target reads its inputs from the operator's shell (Shell.Getenv) and
// finds the files it takes from the checkout (the systemd units, the
// workplace's ../shared folder) from the module root, not from the working
// directory. What it writes for the operator (bin/, results/) goes in the
// working directory, where gofmt, go vet and go test run too: mage makes
// it the magefile's directory, the module root, unless -w says otherwise.
package tasks

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/magefile/mage/sh"

	"github.com/devvm/vault-token-renew/internal/bench"
	"github.com/devvm/vault-token-renew/internal/build"
	"github.com/devvm/vault-token-renew/internal/devvault"
	"github.com/devvm/vault-token-renew/internal/install"
	"github.com/devvm/vault-token-renew/sweep"
)

// Shell is the operator's shell as a target sees it.
type Shell struct {
	// Getenv reads the settings the operator passes (VERSION, VTR_HOME,
	// N, APPLY, ...); Setenv hands a value on to the code in this process
	// and the processes it starts that read it from the environment
	// (devvault and the integration suite read VTR_OPENBAO_BIN).
	Getenv func(string) string
	Setenv func(key, value string) error
	// Stdout and Stderr are where the targets report.
	Stdout, Stderr io.Writer
	// Root is the module root: the directory of go.mod and the magefile.
	// Empty means the checkout this package was built from.
	Root string
}

// OS is the shell mage runs the targets in.
func OS() Shell {
	return Shell{Getenv: os.Getenv, Setenv: os.Setenv, Stdout: os.Stdout, Stderr: os.Stderr}
}

// root is the module root, checked to hold go.mod.
func (s Shell) root() (string, error) {
	r := s.Root
	if r == "" {
		var err error
		if r, err = build.Repo(); err != nil {
			return "", err
		}
	}
	if _, err := os.Stat(filepath.Join(r, "go.mod")); err != nil {
		return "", fmt.Errorf("tasks: the module root %s has no go.mod: %w", r, err)
	}
	return r, nil
}

// version is the version `vault-token-renew --version` prints: the
// VERSION variable, else git describe of the checkout, else "dev".
func (s Shell) version() string {
	if v := s.Getenv("VERSION"); v != "" {
		return v
	}
	if root, err := s.root(); err == nil {
		cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
		cmd.Dir = root
		if out, err := cmd.Output(); err == nil && strings.TrimSpace(string(out)) != "" {
			return strings.TrimSpace(string(out))
		}
	}
	return "dev"
}

// home is where install, uninstall, liveTest and sweepStale act: $VTR_HOME
// (tests point it at a temp dir), else the user's home.
func (s Shell) home() (string, error) {
	if h := s.Getenv("VTR_HOME"); h != "" {
		return h, nil
	}
	return os.UserHomeDir()
}

// profile is PROFILE, checked: "" (the install without a profile), a
// profile's name, or, where all is true (uninstall), "all": every profile
// and the install without one.
func (s Shell) profile(all bool) (string, error) {
	p := s.Getenv("PROFILE")
	if p == "" || (all && p == install.ProfileAll) {
		return p, nil
	}
	return p, install.CheckProfile(p)
}

// userManager returns `systemctl --user`, or nil where no user manager
// runs or VTR_NO_SYSTEMD is set.
func (s Shell) userManager() func(args ...string) error {
	if s.Getenv("VTR_NO_SYSTEMD") != "" {
		return nil
	}
	if err := exec.Command("systemctl", "--user", "show-environment").Run(); err != nil {
		return nil
	}
	return func(args ...string) error {
		return sh.RunV("systemctl", append([]string{"--user"}, args...)...)
	}
}

// positive is the whole number in the variable name, or def when it is
// unset; anything but a positive whole number is an error.
func (s Shell) positive(name string, def int) (int, error) {
	v := s.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a positive whole number", name, v)
	}
	return n, nil
}

// benchPlan is what `mage bench` measures: N (1000), RUNS (9),
// CONCURRENCY (the sweep's default) and HEAL_N (200000; 0 skips the heal
// measurement).
func (s Shell) benchPlan() (bench.Plan, error) {
	var p bench.Plan
	var err error
	if p.N, err = s.positive("N", 1000); err != nil {
		return p, err
	}
	if p.Runs, err = s.positive("RUNS", 9); err != nil {
		return p, err
	}
	if p.Concurrency, err = s.positive("CONCURRENCY", sweep.DefaultConcurrency); err != nil {
		return p, err
	}
	if s.Getenv("HEAL_N") != "0" {
		p.HealN, err = s.positive("HEAL_N", 200000)
	}
	return p, err
}

// openBao sets VTR_OPENBAO_BIN, when it is unset, from the workplace's
// build script, ../shared/openbao/build.sh beside the module root, so that
// the README's commands need nothing set by hand: no registry serves
// OpenBao's image here and the module proxy refuses its server module, so
// the script builds a real bao from source (once per machine, about 4
// minutes; instant after). Where there is no script it does nothing, and
// the OpenBao tests say what is missing.
func (s Shell) openBao() error {
	if s.Getenv("VTR_OPENBAO_BIN") != "" {
		return nil
	}
	root, err := s.root()
	if err != nil {
		return err
	}
	script := filepath.Join(filepath.Dir(root), "shared", "openbao", "build.sh")
	if _, err := os.Stat(script); err != nil {
		return nil
	}
	fmt.Fprintf(s.Stdout, "openbao: building or finding a bao v%s with %s (about 4 minutes the first time on this machine)\n", devvault.OpenBaoVersion, script)
	cmd := exec.Command("bash", script)
	cmd.Stderr = s.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("openbao: %s failed: %w (set VTR_OPENBAO_BIN to a bao v%s binary instead)", script, err, devvault.OpenBaoVersion)
	}
	bin := strings.TrimSpace(string(out))
	fmt.Fprintf(s.Stdout, "openbao: VTR_OPENBAO_BIN=%s\n", bin)
	return s.Setenv("VTR_OPENBAO_BIN", bin)
}
