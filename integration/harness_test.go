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
	files   []string          // token files whose content is a secret too
	outputs []string
	// bao: the server is OpenBao, and runs see the bao CLI's settings
	// (BAO_ADDR, BAO_TOKEN) and no VAULT_* at all.
	bao bool
	// lookupsSoFar and listsSoFar are what a walk killed halfway sent.
	lookupsSoFar, listsSoFar int
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
	x.files = []string{x.file}
	t.Cleanup(x.assertNoSecretInOutput)
	return x
}

// walk runs the walk on x's token file to its end, uncapped (the walk unit
// runs it at its rate cap), and wants the ledger whole after it.
func (x *h) walk() result {
	x.t.Helper()
	r := x.run("sweep", "--apply", "--max-rps", "0")
	wantExit(x.t, "the walk", r, 0)
	wantIn(x.t, "the walk's closing line", r.closing, "the ledger is complete again")
	return r
}

// keep remembers a secret so that no output may contain it.
func (x *h) keep(label string, tok devvault.Token) devvault.Token {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.secrets[label] = tok.Secret
	return tok
}

// assertNoSecretInOutput checks, at the end, every output of the test
// against every secret it learned, those learned after the output too.
func (x *h) assertNoSecretInOutput() {
	x.learnFiles()
	x.assertNoSecretIn(x.outputs...)
}

func (x *h) assertNoSecretIn(outs ...string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, out := range outs {
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
	// closing is stderr's last line: a run's closing line is its last.
	closing string
}

// env is the binary's environment: the dev server's address, a temp HOME,
// and VAULT_TOKEN (BAO_TOKEN on OpenBao) set to the root token, which the
// tool must ignore.
func (x *h) env(addr string, extra ...string) []string {
	prefix := "VAULT_"
	if x.bao {
		prefix = "BAO_"
	}
	return append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + x.home,
		prefix + "ADDR=" + addr, prefix + "TOKEN=" + x.f.Server.RootToken,
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
	x.t.Logf("vault-token-renew %s → exit %d\n%s%s", strings.Join(args, " "), r.code, x.redact(r.stdout), x.redact(r.stderr))
	closingIsLast(x.t, r)
	return r
}

// closingIsLast: a line with a closing prefix must be the run's last; a
// line after it would be what journalctl ends on.
func closingIsLast(t *testing.T, r result) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	for i, l := range lines {
		for _, p := range []string{"OK:", "HEALED:", "DRIFT:", "FAIL:"} {
			if strings.HasPrefix(l, p) && i != len(lines)-1 {
				t.Errorf("the closing line %q is followed by %d more lines", p, len(lines)-1-i)
			}
		}
	}
}

// exec runs cmd capturing its output (stderr into stdout when combined),
// and checks it for every secret known, the token files' content included,
// before anything is logged: a leak fails the test and never reaches the
// log (redact).
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
	if lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n"); len(lines) > 0 {
		r.closing = lines[len(lines)-1]
	}
	x.learnFiles()
	x.mu.Lock()
	x.outputs = append(x.outputs, r.stdout, r.stderr)
	x.mu.Unlock()
	x.assertNoSecretIn(r.stdout, r.stderr)
	return r
}

// learnFiles adds what the token files hold now to the secrets: a healed
// file holds a token no test has named yet.
func (x *h) learnFiles() {
	x.mu.Lock()
	defer x.mu.Unlock()
	known := map[string]bool{}
	for _, v := range x.secrets {
		known[v] = true
	}
	for _, f := range x.files {
		if b, err := os.ReadFile(f); err == nil && len(bytes.TrimSpace(b)) > 0 && !known[strings.TrimSpace(string(b))] {
			x.secrets["token file "+f+" ("+fmt.Sprint(len(x.secrets))+")"] = strings.TrimSpace(string(b))
			known[strings.TrimSpace(string(b))] = true
		}
	}
}

// redact blanks every known secret in s, for logging.
func (x *h) redact(s string) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	for label, sec := range x.secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[secret: "+label+"]")
		}
	}
	return s
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
