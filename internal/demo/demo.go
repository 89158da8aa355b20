// Package demo runs the renewer's main job end to end on a throwaway dev
// Vault (or OpenBao), so that anyone can watch it renew, heal and refuse in
// a minute.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

type step struct {
	title  string
	token  func(*devvault.Fixture, context.Context) (devvault.Token, error)
	code   int
	prefix string
}

var steps = []step{
	{"our periodic token is in the file", func(f *devvault.Fixture, ctx context.Context) (devvault.Token, error) {
		return f.MintPeriodic(ctx, "devvm-wizard")
	}, 0, "OK:"},
	{"a login (userpass standing in for OIDC) clobbers the file", (*devvault.Fixture).Login, 0, "HEALED:"},
	{"a weak read-only token (default policy only) clobbers the file", (*devvault.Fixture).MintWeak, 1, "DRIFT:"},
}

// Run performs the demo on a server of kind (vault or openbao), writing
// plain progress to out; verbose shows every log line of each run instead
// of only its closing line. It returns an error when any step did not
// behave as designed. The runs see the settings the server's own CLI
// reads: VAULT_ADDR for Vault, BAO_ADDR for OpenBao.
func Run(ctx context.Context, out io.Writer, kind devvault.Kind, verbose bool) (err error) {
	tmp, err := os.MkdirTemp("", "vault-token-renew-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(out, "demo: building vault-token-renew")
	bin, err := devvault.BuildRenewer(ctx, tmp, "demo")
	if err != nil {
		return err
	}
	// The harness's own lines say which way Vault came up, and warn when
	// the first build on a machine will take minutes.
	srv, err := devvault.StartKind(ctx, kind, out)
	if err != nil {
		return err
	}
	defer func() {
		srv.Stop(context.WithoutCancel(ctx))
		fmt.Fprintf(out, "demo: dev %s stopped and removed\n", srv.Kind)
	}()
	fmt.Fprintf(out, "demo: throwaway dev %s %s up (%s) at %s\n", srv.Kind, srv.Version, srv.Mode, srv.Addr)
	f, err := devvault.Provision(ctx, srv)
	if err != nil {
		return err
	}
	home := filepath.Join(tmp, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return err
	}
	file := filepath.Join(home, ".vault-token")
	fmt.Fprintf(out, "demo: token file %s\n\n", file)

	passed := 0
	for i, st := range steps {
		ok, err := st.play(ctx, out, i+1, f, bin, home, file, verbose)
		if err != nil {
			return err
		}
		if ok {
			passed++
		}
	}
	if passed != len(steps) {
		fmt.Fprintf(out, "verdict: FAIL (%d/%d steps behaved as designed)\n", passed, len(steps))
		return errors.New("demo: the renewer did not behave as designed")
	}
	fmt.Fprintf(out, "verdict: PASS (%d/%d: renewed ours, healed a login clobber, refused a weak clobber)\n", passed, len(steps))
	return nil
}

// play puts the step's token in the file, runs the renewer once and shows
// the closing line (every line when verbose); ok is whether it behaved as
// designed.
func (st step) play(ctx context.Context, out io.Writer, n int, f *devvault.Fixture, bin, home, file string, verbose bool) (bool, error) {
	want := fmt.Sprintf("%s exit %d", strings.TrimSuffix(st.prefix, ":"), st.code)
	fmt.Fprintf(out, "%d. %s; expect %s\n", n, st.title, want)
	tok, err := st.token(f, ctx)
	if err != nil {
		return false, err
	}
	if err := os.WriteFile(file, []byte(tok.Secret), 0o600); err != nil {
		return false, err
	}
	code, lines, err := runOnce(ctx, bin, home, f.Server)
	if err != nil {
		return false, err
	}
	shown := false
	for _, l := range lines {
		if verbose || strings.HasPrefix(l, st.prefix) {
			fmt.Fprintf(out, "   %s\n", l)
			shown = true
		}
	}
	if !shown {
		for _, l := range lines {
			fmt.Fprintf(out, "   %s\n", l)
		}
	}
	ok := code == st.code && shown
	mark := "as designed"
	if !ok {
		mark = fmt.Sprintf("NOT as designed: got exit %d", code)
	}
	fmt.Fprintf(out, "   → exit %d, %s\n\n", code, mark)
	return ok, nil
}

// runOnce runs the renewer as the timer would, with a clean environment.
func runOnce(ctx context.Context, bin, home string, srv *devvault.Server) (int, []string, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(rctx, bin, "--log-format=plain")
	addr := "VAULT_ADDR=" + srv.Addr
	if srv.Kind == devvault.KindOpenBao {
		addr = "BAO_ADDR=" + srv.Addr
	}
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), addr}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 0, nil, err
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	return cmd.ProcessState.ExitCode(), lines, nil
}
