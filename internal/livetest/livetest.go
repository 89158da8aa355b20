// Package livetest is the design's post-deploy check, run against the real
// Vault in VAULT_ADDR with the operator's periodic token in the token file:
// clobber the file with a fake admin login (expect HEALED), then with a
// weak token (expect DRIFT heal denied), then clean up and confirm the file
// holds our token and it renews. Whatever fails, the file ends holding a
// working periodic token and no fake is left alive.
package livetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/devvm/vault-token-renew/internal/envfile"
	"github.com/devvm/vault-token-renew/internal/install"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// Service starts one run of the renewer and returns its exit code and the
// log lines it wrote: either `systemctl --user start` plus the journal, or
// the installed binary run directly.
type Service interface {
	Start(ctx context.Context) (code int, log string, err error)
	Describe() string
}

// Direct runs the installed binary as the unit would, without systemd.
type Direct struct {
	Binary    string
	TokenFile string
	Env       []string
}

func (d Direct) Describe() string {
	return "no systemd user manager: running " + d.Binary + " directly"
}

func (d Direct) Start(ctx context.Context) (int, string, error) {
	cmd := exec.CommandContext(ctx, d.Binary, "--token-file", d.TokenFile, "--log-format=plain")
	cmd.Env = d.Env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 0, "", fmt.Errorf("run %s: %w", d.Binary, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), nil
}

// Systemd starts the oneshot unit and reads what it logged.
type Systemd struct{ Unit string }

func (s Systemd) Describe() string { return "systemctl --user start " + s.Unit }

func (s Systemd) Start(ctx context.Context) (int, string, error) {
	since := time.Now().Add(-time.Second).Format("2006-01-02 15:04:05")
	err := exec.CommandContext(ctx, "systemctl", "--user", "start", s.Unit).Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = 1 // the unit failed
	} else if err != nil {
		return 0, "", err
	}
	out, jerr := exec.CommandContext(ctx, "journalctl", "--user", "-u", s.Unit, "--since", since, "-o", "cat", "--no-pager").Output()
	if jerr != nil {
		return code, "", fmt.Errorf("journalctl --user -u %s: %w", s.Unit, jerr)
	}
	return code, string(out), nil
}

// Options is one live test.
type Options struct {
	TokenFile   string
	DisplayName string // stored display name of our token, e.g. token-devvm-wizard
	Service     Service
	Out         io.Writer
	// NewClient returns a Vault client (VAULT_* settings) with no token set.
	NewClient func() (*vault.Client, error)
}

type run struct {
	o      Options
	ctx    context.Context
	good   string   // the latest periodic token known to work
	fakes  []string // accessors of fakes minted
	failed int
}

// Installed runs the checks against the install below home (see
// internal/install): through `systemctl --user start` where a user manager
// runs, else the installed binary run directly, with the server the
// VAULT_*/BAO_* settings name (BAO_ADDR, else VAULT_ADDR) and the token file
// the operator's CLI writes (BAO_TOKEN_PATH, else ~/.vault-token).
func Installed(ctx context.Context, home string, userManager bool, out io.Writer) error {
	p := install.PathsUnder(home)
	tokenFile := tokenfile.DefaultPath(home, envfile.Overlay(func() string { return home }, os.Getenv))
	var svc Service = Systemd{Unit: "vault-token-renew.service"}
	if !userManager {
		if _, err := os.Stat(p.Binary); err != nil {
			return fmt.Errorf("%s is not installed; run: go tool mage install", p.Binary)
		}
		svc = Direct{Binary: p.Binary, TokenFile: tokenFile, Env: os.Environ()}
	}
	return Run(ctx, Options{
		TokenFile: tokenFile, DisplayName: "token-devvm-wizard", Service: svc, Out: out,
		NewClient: func() (*vault.Client, error) { return vaultclient.API(vaultclient.ReadSettings(os.LookupEnv)) },
	})
}

// Run performs the three checks and returns an error if any failed.
func Run(ctx context.Context, o Options) (err error) {
	r := &run{o: o, ctx: ctx}
	fmt.Fprintf(o.Out, "livetest: %s\n", o.Service.Describe())
	tok, err := tokenfile.Read(o.TokenFile)
	if err != nil {
		return err
	}
	info, err := r.lookup(tok)
	if err != nil {
		return fmt.Errorf("livetest needs a working periodic token in %s: %w", o.TokenFile, err)
	}
	if info.dn != o.DisplayName {
		return fmt.Errorf("livetest needs our periodic token (%s) in %s, found dn=%s; run vault-token-renew first", o.DisplayName, o.TokenFile, info.dn)
	}
	r.good = tok
	defer func() {
		if rerr := r.restore(); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	for i, st := range []struct {
		what string
		do   func() (string, error)
	}{
		{"fake 1h admin login (fake-oidc, vault-admin + sops-admin) clobbers the file → HEALED", r.heals},
		{"fake 10m no-privilege token (default only) clobbers the file → DRIFT heal denied, unit failed", r.drifts},
		{"revoke both fakes; the file's token is ours and renews → OK", r.renews},
	} {
		r.step(i+1, st.what, st.do)
	}
	if r.failed > 0 {
		return errors.New("livetest: a check failed; see FAIL above")
	}
	fmt.Fprintln(o.Out, "livetest: all 3 checks passed")
	return nil
}

// heals: a fake admin login in the file; the run heals it.
func (r *run) heals() (string, error) {
	fake, err := r.mint("fake-oidc", time.Hour, "vault-admin", "sops-admin")
	if err != nil {
		return "", err
	}
	if err := r.swap(fake); err != nil {
		return "", err
	}
	line, err := r.succeeds("HEALED")
	if err != nil {
		return "", err
	}
	now, err := tokenfile.Read(r.o.TokenFile)
	if err != nil {
		return "", err
	}
	ni, err := r.lookup(now)
	if err != nil || ni.dn != r.o.DisplayName {
		return "", fmt.Errorf("after the heal the file holds dn=%s (%v), want %s", ni.dn, err, r.o.DisplayName)
	}
	r.good = now
	return fmt.Sprintf("%s; file now holds %s accessor=%s", line, ni.dn, ni.accessor), nil
}

// drifts: a weak token in the file; the run refuses and leaves the file.
func (r *run) drifts() (string, error) {
	fake, err := r.mint("fake-weak", 10*time.Minute, "default")
	if err != nil {
		return "", err
	}
	if err := r.swap(fake); err != nil {
		return "", err
	}
	before, _ := tokenfile.Read(r.o.TokenFile)
	code, log, err := r.o.Service.Start(r.ctx)
	if err != nil {
		return "", err
	}
	line := lineWith(log, "DRIFT")
	after, _ := tokenfile.Read(r.o.TokenFile)
	if rerr := r.swap(r.good); rerr != nil {
		return "", fmt.Errorf("restore the periodic token: %w", rerr)
	}
	if code == 0 || !strings.Contains(line, "heal denied") {
		return "", fmt.Errorf("want DRIFT heal denied and a failed unit, got exit %d: %s", code, strings.TrimSpace(log))
	}
	if after != before {
		return "", errors.New("the run changed the token file on DRIFT")
	}
	return line + "; periodic token restored", nil
}

// renews: the fakes gone, our token in the file renews.
func (r *run) renews() (string, error) {
	if err := r.revokeFakes(); err != nil {
		return "", err
	}
	return r.succeeds("OK")
}

// succeeds runs the service once and returns its closing line with prefix,
// or says what it did instead of exiting 0 with that line.
func (r *run) succeeds(prefix string) (string, error) {
	code, log, err := r.o.Service.Start(r.ctx)
	if err != nil {
		return "", err
	}
	line := lineWith(log, prefix)
	if code != 0 || line == "" {
		return "", fmt.Errorf("want %s and exit 0, got exit %d: %s", prefix, code, strings.TrimSpace(log))
	}
	return line, nil
}

// step runs one check unless an earlier one failed: each builds on the
// state the previous one left.
func (r *run) step(n int, what string, fn func() (string, error)) {
	if r.failed > 0 {
		fmt.Fprintf(r.o.Out, "SKIP %d. %s\n", n, what)
		return
	}
	evidence, err := fn()
	if err != nil {
		r.failed++
		fmt.Fprintf(r.o.Out, "FAIL %d. %s\n       %v\n", n, what, err)
		return
	}
	fmt.Fprintf(r.o.Out, "PASS %d. %s\n       %s\n", n, what, evidence)
}

func lineWith(log, prefix string) string {
	for _, l := range strings.Split(log, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, prefix+":") {
			return l
		}
	}
	return ""
}

type tokInfo struct{ dn, accessor string }

func (r *run) client(token string) (*vault.Client, error) {
	c, err := r.o.NewClient()
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	return c, nil
}

func (r *run) lookup(token string) (tokInfo, error) {
	c, err := r.client(token)
	if err != nil {
		return tokInfo{}, err
	}
	s, err := c.Auth().Token().LookupSelfWithContext(r.ctx)
	if err != nil {
		return tokInfo{}, err
	}
	dn, _ := s.Data["display_name"].(string)
	acc, _ := s.Data["accessor"].(string)
	return tokInfo{dn: dn, accessor: acc}, nil
}

// mint creates an orphan fake with the periodic token's authority, like a
// login token that is no child of ours.
func (r *run) mint(name string, ttl time.Duration, policies ...string) (string, error) {
	c, err := r.client(r.good)
	if err != nil {
		return "", err
	}
	s, err := c.Auth().Token().CreateWithContext(r.ctx, &vault.TokenCreateRequest{
		NoParent: true, DisplayName: name, TTL: ttl.String(), Policies: policies,
	})
	if err != nil {
		return "", fmt.Errorf("mint fake %s: %w", name, err)
	}
	r.fakes = append(r.fakes, s.Auth.Accessor)
	return s.Auth.ClientToken, nil
}

func (r *run) revokeFakes() error {
	c, err := r.client(r.good)
	if err != nil {
		return err
	}
	var errs []error
	left := r.fakes[:0]
	for _, acc := range r.fakes {
		if err := c.Auth().Token().RevokeAccessorWithContext(r.ctx, acc); err != nil {
			errs = append(errs, fmt.Errorf("revoke fake accessor %s: %w", acc, err))
			left = append(left, acc)
		}
	}
	r.fakes = left
	return errors.Join(errs...)
}

// swap replaces the token file under the run lock, so a timer run that
// starts meanwhile waits and then sees the whole swap, never half of one.
// The lock is released before the service runs: the run takes it itself.
func (r *run) swap(token string) error {
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
	defer cancel()
	lock, err := tokenfile.Acquire(ctx, r.o.TokenFile)
	if err != nil {
		return fmt.Errorf("livetest: %w", err)
	}
	defer lock.Release()
	err = tokenfile.Write(r.o.TokenFile, token)
	if errors.Is(err, tokenfile.ErrNotDurable) {
		return nil // in place; only a crash could undo it
	}
	return err
}

// restore runs whatever happened: no fake stays alive, and the file ends
// holding a working periodic token.
func (r *run) restore() error {
	var errs []error
	if err := r.revokeFakes(); err != nil {
		errs = append(errs, err)
	}
	cur, _ := tokenfile.Read(r.o.TokenFile)
	if info, err := r.lookup(cur); err == nil && info.dn == r.o.DisplayName {
		return errors.Join(errs...)
	}
	if err := r.swap(r.good); err != nil {
		return errors.Join(append(errs, fmt.Errorf("restore %s: %w", r.o.TokenFile, err))...)
	}
	info, err := r.lookup(r.good)
	if err != nil {
		errs = append(errs, fmt.Errorf("restored %s, but its token does not work: %w", r.o.TokenFile, err))
	} else {
		fmt.Fprintf(r.o.Out, "livetest: restored the periodic token (accessor=%s) to %s\n", info.accessor, r.o.TokenFile)
	}
	return errors.Join(errs...)
}
