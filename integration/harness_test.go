//go:build integration

// Package integration runs the built vault-token-renew binary against a real
// `vault server -dev` (see internal/devvault): every test here talks to a
// real Vault server, none to a fake.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vtr-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = devvault.BuildRenewer(context.Background(), dir, "integration")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		os.Exit(1)
	}
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// h is one test's world: its own dev Vault, provisioned like production,
// and a temp HOME holding the token file.
type h struct {
	t       *testing.T
	ctx     context.Context
	f       *devvault.Fixture
	home    string
	file    string
	mu      sync.Mutex
	secrets map[string]string // label -> secret, never printed
	outputs []string
}

func newH(t *testing.T) *h {
	t.Helper()
	return newHWith(t, devvault.Start)
}

// newHWith is newH on a server from start (devvault.Start, or StartTLS).
func newHWith(t *testing.T, start func(context.Context, io.Writer) (*devvault.Server, error)) *h {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	var progress bytes.Buffer
	srv, err := start(ctx, &progress)
	t.Log(strings.TrimSpace(progress.String()))
	if err != nil {
		t.Fatalf("no dev vault: %v", err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	f, err := devvault.Provision(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	x := &h{t: t, ctx: ctx, f: f, home: home, file: filepath.Join(home, ".vault-token"),
		secrets: map[string]string{"root": srv.RootToken}}
	t.Cleanup(x.assertNoSecretInOutput)
	return x
}

// keep remembers a secret so that no output may contain it.
func (x *h) keep(label string, tok devvault.Token) devvault.Token {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.secrets[label] = tok.Secret
	return tok
}

func (x *h) assertNoSecretInOutput() {
	if b, err := os.ReadFile(x.file); err == nil {
		x.secrets["final token file"] = strings.TrimSpace(string(b))
	}
	for _, out := range x.outputs {
		for label, s := range x.secrets {
			if s != "" && strings.Contains(out, s) {
				x.t.Errorf("the %s token's secret appears in the tool's output", label)
			}
		}
	}
}

func (x *h) periodic(label string) devvault.Token {
	x.t.Helper()
	tok, err := x.f.MintPeriodic(x.ctx, "devvm-wizard")
	if err != nil {
		x.t.Fatal(err)
	}
	return x.keep(label, tok)
}

func (x *h) login() devvault.Token {
	x.t.Helper()
	tok, err := x.f.Login(x.ctx)
	if err != nil {
		x.t.Fatal(err)
	}
	return x.keep("login", tok)
}

func (x *h) weak() devvault.Token {
	x.t.Helper()
	tok, err := x.f.MintWeak(x.ctx)
	if err != nil {
		x.t.Fatal(err)
	}
	return x.keep("weak", tok)
}

// put writes the token file as `vault login` does (the CLI's sink writes
// the bare token).
func (x *h) put(tok devvault.Token) {
	x.t.Helper()
	if err := os.WriteFile(x.file, []byte(tok.Secret), 0o600); err != nil {
		x.t.Fatal(err)
	}
}

func (x *h) fileBytes() []byte {
	x.t.Helper()
	b, err := os.ReadFile(x.file)
	if err != nil {
		x.t.Fatal(err)
	}
	return b
}

type result struct {
	code           int
	stdout, stderr string
}

// env is the binary's environment: the dev Vault's address, a temp HOME,
// and VAULT_TOKEN set to the root token, which the tool must ignore.
func (x *h) env(addr string, extra ...string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + x.home,
		"VAULT_ADDR=" + addr, "VAULT_TOKEN=" + x.f.Server.RootToken,
	}, extra...)
}

func (x *h) run(args ...string) result {
	x.t.Helper()
	return x.runEnv(x.env(x.f.Server.Addr), args...)
}

func (x *h) runEnv(env []string, args ...string) result {
	x.t.Helper()
	cmd := exec.CommandContext(x.ctx, binary, append(args, "--log-format=plain")...)
	cmd.Env = env
	r := x.exec(cmd, false)
	x.t.Logf("vault-token-renew %s → exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// exec runs cmd capturing its output (stderr into stdout when combined) and
// records it for the secret check.
func (x *h) exec(cmd *exec.Cmd, combined bool) result {
	x.t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if combined {
		cmd.Stderr = &out
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		x.t.Fatal(err)
	}
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	x.mu.Lock()
	x.outputs = append(x.outputs, r.stdout, r.stderr)
	x.mu.Unlock()
	return r
}

// alive reports whether the token with this accessor still exists.
func (x *h) alive(acc string) bool {
	x.t.Helper()
	_, ok, err := x.f.LookupAccessor(x.ctx, acc)
	if err != nil {
		x.t.Fatal(err)
	}
	return ok
}

func (x *h) periodicAccessors() []string {
	x.t.Helper()
	accs, err := x.f.AccessorsNamed(x.ctx, "token-devvm-wizard")
	if err != nil {
		x.t.Fatal(err)
	}
	return accs
}

// fileToken looks up whatever is in the token file, acting as it: the
// proof that the file holds a working token.
func (x *h) fileToken() (devvault.Info, error) {
	return x.f.LookupSecret(x.ctx, strings.TrimSpace(string(x.fileBytes())))
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func firstLine(s string, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// wantExit reports, and lets the test go on, when the run called what did
// not exit with code.
func wantExit(t *testing.T, what string, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Errorf("%s: exit %d, want %d", what, r.code, code)
	}
}

// wantLine returns the first line of out that starts with prefix. Without
// one the checks on that line would be meaningless, so it stops the test.
func wantLine(t *testing.T, what, out, prefix string) string {
	t.Helper()
	l := firstLine(out, prefix)
	if l == "" {
		t.Fatalf("%s: no line starts with %q:\n%s", what, prefix, out)
	}
	return l
}

// wantIn reports, and lets the test go on, when s (the output or line
// called what) lacks sub.
func wantIn(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s lacks %q:\n%s", what, sub, s)
	}
}
