//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/devvm/vault-token-renew/internal/bench"
	"github.com/devvm/vault-token-renew/internal/devvault"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// forged is what an attacker puts in a display name or meta: a newline, a
// syslog priority with a line of success, and an escape sequence that
// hides what follows on a terminal.
const forged = "x\n<6>OK: renewed periodic token\n<7>\x1b[8m"

// TestWordsFromVaultAreData: on the real dev Vault, what others chose
// reaches no terminal and no journal raw. Any admin mints a token of our
// name whose meta holds an escape sequence and a newline: sweep's table
// and status show them escaped, and the rows after it stay visible. A
// login through the JWT auth method, whose display name Vault takes from
// the JWT's claim uncleaned, is in the file: the run, writing to the
// journal's stream (JOURNAL_STREAM names its stderr file, as systemd
// does), logs one DRIFT at error priority and forges no line.
func TestWordsFromVaultAreData(t *testing.T) {
	x := newH(t)
	theirs, err := x.f.MintPeriodicFor(x.ctx, "devvm-wizard", map[string]string{"managed_by": "vault-token-renew", "host": "z\x1b[8m", "user": "a\nb"})
	if err != nil {
		t.Fatal(err)
	}
	x.keep("a hostile admin's token", theirs)
	stale := x.periodic("stale")
	ours, err := x.f.MintPeriodicFor(x.ctx, "devvm-wizard", map[string]string{"managed_by": "vault-token-renew", "host": "devvm", "note": forged})
	if err != nil {
		t.Fatal(err)
	}
	x.put(x.keep("ours, with a hostile note", ours))

	r := x.run("sweep", "--host", "devvm", "--max-rps", "0")
	wantExit(t, "sweep", r, 0)
	wantIn(t, "the sweep table", r.stdout, `other machine's (host=z\x1b[8m): never revoked`)
	wantIn(t, "the sweep table", r.stdout, stale.Accessor)
	r = x.run("status", "--host", "devvm")
	wantExit(t, "status", r, 0)
	wantIn(t, "status", r.stdout, `note=x\n<6>OK: renewed periodic token\n<7>\x1b[8m`)
	for what, out := range map[string]string{"sweep and status": r.stdout + r.stderr} {
		if strings.ContainsAny(out, "\x1b") {
			t.Errorf("%s printed an ESC", what)
		}
	}

	login := x.jwtLogin(forged)
	x.put(login)
	info, err := x.f.LookupSecret(x.ctx, login.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info.DisplayName, "\n<6>OK") {
		t.Fatalf("premise: vault cleaned the JWT login's display name to %q", info.DisplayName)
	}
	lines := x.runToJournal()
	var drift []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "<") {
			t.Errorf("a journal line without its priority: %q", l)
		}
		if strings.HasPrefix(l, "<6>OK") || strings.ContainsRune(l, 0x1b) {
			t.Errorf("a forged line or an ESC in the journal: %q", l)
		}
		if strings.HasPrefix(l, "<3>DRIFT:") {
			drift = append(drift, l)
		}
	}
	if len(drift) != 1 || !strings.Contains(drift[0], `dn=jwt-x\n<6>OK: renewed periodic token\n<7>\x1b[8m in the token file`) {
		t.Fatalf("want one DRIFT line with the display name escaped, got %q", lines)
	}
}

// runToJournal runs the tool with its stderr in a file that JOURNAL_STREAM
// names, so it writes the <N> priority prefixes journald reads, and
// returns the lines.
func (x *h) runToJournal() []string {
	x.t.Helper()
	f, err := os.Create(filepath.Join(x.t.TempDir(), "journal"))
	if err != nil {
		x.t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		x.t.Fatal(err)
	}
	cmd := exec.CommandContext(x.ctx, binary, "--log-format=plain")
	cmd.Env = x.env(x.f.Server.Addr, fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	cmd.Stderr = f
	cmd.Run()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		x.t.Fatal(err)
	}
	x.mu.Lock()
	x.outputs = append(x.outputs, string(b))
	x.mu.Unlock()
	x.t.Logf("the run, as the journal reads it:\n%s", x.redact(string(b)))
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// jwtLogin logs in through the JWT auth method with a JWT signed by a key
// of the test's, whose sub claim becomes the token's display name.
func (x *h) jwtLogin(sub string) devvault.Token {
	x.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		x.t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		x.t.Fatal(err)
	}
	root, err := x.f.Server.Client(x.f.Server.RootToken)
	if err != nil {
		x.t.Fatal(err)
	}
	if err := root.Sys().EnableAuthWithOptionsWithContext(x.ctx, "jwt", &vault.EnableAuthOptions{Type: "jwt"}); err != nil {
		x.t.Fatal(err)
	}
	for path, data := range map[string]map[string]interface{}{
		"auth/jwt/config":  {"jwt_validation_pubkeys": []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}},
		"auth/jwt/role/ci": {"role_type": "jwt", "user_claim": "sub", "bound_audiences": []string{"vtr"}, "token_policies": []string{"default"}, "token_ttl": "10m"},
	} {
		if _, err := root.Logical().WriteWithContext(x.ctx, path, data); err != nil {
			x.t.Fatalf("%s: %v", path, err)
		}
	}
	enc := func(v interface{}) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "ES256", "typ": "JWT"}) + "." +
		enc(map[string]interface{}{"sub": sub, "aud": "vtr", "iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix()})
	sum := sha256.Sum256([]byte(signing))
	rr, ss, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		x.t.Fatal(err)
	}
	sig := append(pad32(rr), pad32(ss)...)
	c, err := x.f.Server.Client("")
	if err != nil {
		x.t.Fatal(err)
	}
	c.ClearToken()
	s, err := c.Logical().WriteWithContext(x.ctx, "auth/jwt/login", map[string]interface{}{"role": "ci", "jwt": signing + "." + base64.RawURLEncoding.EncodeToString(sig)})
	if err != nil {
		x.t.Fatalf("jwt login: %v", err)
	}
	return x.keep("jwt login", devvault.Token{Secret: s.Auth.ClientToken, Accessor: s.Auth.Accessor})
}

func pad32(n *big.Int) []byte {
	b := n.Bytes()
	return append(make([]byte, 32-len(b)), b...)
}

// TestHugeAnswerStaysSmall: a server that answers every request with 512
// MiB: the run fails with cause=answer-too-large, having read no more than
// its limit, and its peak RSS stays under 300 MB. The server holds the
// answer after its first 2 MiB for a second, so that the peak is read
// while the run is at it: from /proc (VmHWM, the run's own), because
// wait4's maxrss of a child Go starts with vfork counts this test's own
// memory too.
func TestHugeAnswerStaysSmall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"data":{"display_name":"`)
		io.CopyN(w, repeatReader('x'), 2<<20)
		w.(http.Flusher).Flush()
		time.Sleep(time.Second)
		io.CopyN(w, repeatReader('x'), 510<<20)
		io.WriteString(w, `"}}`)
	}))
	defer srv.Close()
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".vault-token"), []byte("s.not-a-real-token-000"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--log-format=plain", "--timeout=2m")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "VAULT_ADDR=" + srv.URL}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	peak := make(chan int64, 1)
	go func() { peak <- bench.PeakKB(cmd.Process.Pid) }()
	cmd.Wait()
	kb := <-peak
	t.Logf("against a 512 MiB answer: exit %d, peak RSS %.1f MB (VmHWM)\n%s", cmd.ProcessState.ExitCode(), float64(kb)/1024, out.String())
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(out.String(), "cause=answer-too-large") {
		t.Fatalf("want FAIL cause=answer-too-large")
	}
	if kb == 0 || kb > 300*1024 {
		t.Fatalf("peak RSS %.1f MB, want above 0 and under 300 MB", float64(kb)/1024)
	}
	if out.Len() > 8<<10 {
		t.Fatalf("the run printed %d bytes for one refused answer", out.Len())
	}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// TestSignalEndsEveryWait: SIGTERM (systemctl stop) while the run waits for
// another run's lock (a minute of --lock-wait) and while it waits for the
// token file to settle: the run ends within a couple of seconds, with its
// closing line last and cause=canceled.
func TestSignalEndsEveryWait(t *testing.T) {
	x := newH(t)
	x.put(x.periodic("periodic"))
	lock, err := tokenfile.Acquire(x.ctx, x.file)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	for _, tc := range []struct{ name, setting string }{
		{"the lock", "VTR_SETTLE=0s"},
		{"the settle", "VTR_SETTLE=1m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "the settle" {
				lock.Release()
				stop := make(chan struct{})
				defer close(stop)
				go func() { // a login that keeps writing: the file never settles
					for {
						select {
						case <-stop:
							return
						case <-time.After(200 * time.Millisecond):
							os.Chtimes(x.file, time.Now(), time.Now())
						}
					}
				}()
			}
			start := time.Now()
			r := x.runThenSignal(x.env(x.f.Server.Addr, tc.setting), time.Second, syscall.SIGTERM)
			took := time.Since(start)
			wantExit(t, "run", r, 1)
			closingIsLast(t, r)
			wantIn(t, "FAIL line", wantLine(t, "run", r.stderr, "FAIL:"), "cause=canceled")
			if took > 4*time.Second {
				t.Errorf("the run took %s after a SIGTERM at 1s", took.Round(100*time.Millisecond))
			}
		})
	}
}
