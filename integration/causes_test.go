//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/devvm/vault-token-renew/internal/devvault"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/runstate"
)

// faultProxy is a loopback reverse proxy in front of the dev Vault. Its
// hook sees every request first and may answer it itself (return true),
// for the failures a real Vault cannot produce on demand.
type faultProxy struct {
	addr string
	rp   *httputil.ReverseProxy
}

func newFaultProxy(t *testing.T, x *h, hook func(p *faultProxy, w http.ResponseWriter, r *http.Request) bool) *faultProxy {
	t.Helper()
	target, _ := url.Parse(x.f.Server.Addr)
	p := &faultProxy{rp: httputil.NewSingleHostReverseProxy(target)}
	p.rp.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hook(p, w, r) {
			p.rp.ServeHTTP(w, r)
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	p.addr = "http://" + l.Addr().String()
	return p
}

// vaultAnswer lets Vault handle r and returns its answer without passing
// it on: Vault acted, the client never hears of it.
func (p *faultProxy) vaultAnswer(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	return rec
}

func isCreate(r *http.Request) bool {
	return (r.Method == "POST" || r.Method == "PUT") && r.URL.Path == "/v1/auth/token/create"
}

// TestLostCreateAnswerStrandsNothing: Vault mints, its answer is lost (a
// 502 from a proxy, or a connection dropped after Vault answered), the
// client retries and Vault mints again. The run still ends HEALED, and says
// a token may remain (the lost create is in the ledger); the walk then
// revokes the stranded first mint, tagged for this machine, and leaves
// exactly one live periodic token for it.
func TestLostCreateAnswerStrandsNothing(t *testing.T) {
	for _, how := range []string{"502 after vault minted", "connection dropped after vault minted"} {
		t.Run(how, func(t *testing.T) {
			x := newH(t)
			x.periodic("old periodic")
			var creates atomic.Int32
			var stranded atomic.Value
			p := newFaultProxy(t, x, func(p *faultProxy, w http.ResponseWriter, r *http.Request) bool {
				if !isCreate(r) || creates.Add(1) != 1 {
					return false
				}
				rec := p.vaultAnswer(r)
				var body struct {
					Auth struct{ Accessor string } `json:"auth"`
				}
				json.Unmarshal(rec.Body.Bytes(), &body)
				stranded.Store(body.Auth.Accessor)
				if strings.HasPrefix(how, "502") {
					w.WriteHeader(http.StatusBadGateway)
					return true
				}
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return true
			})
			x.put(x.login())
			r := x.runEnv(x.env(p.addr), "--host", "devvm-lost")
			wantExit(t, "heal", r, 0)
			wantIn(t, "HEALED line", wantLine(t, "heal", r.stderr, "HEALED"), "gap=unrecorded-create")
			wantExit(t, "the walk", x.run("sweep", "--apply", "--max-rps", "0", "--host", "devvm-lost"), 0)
			if n := creates.Load(); n != 2 {
				t.Fatalf("vault saw %d creates, want 2 (the lost one and the retry)", n)
			}
			first, _ := stranded.Load().(string)
			if first == "" {
				t.Fatal("the first mint's answer carried no accessor")
			}
			if x.alive(first) {
				t.Errorf("the first mint (accessor %q) is still alive: stranded", first)
			}
			info, err := x.fileToken()
			if err != nil {
				t.Fatal(err)
			}
			x.keep("healed", tokenOf(x))
			if live := x.liveByHost()["devvm-lost"]; !slices.Equal(live, []string{info.Accessor}) {
				t.Fatalf("live periodic tokens of this machine %v, want exactly the file's %s", live, info.Accessor)
			}
		})
	}
}

// TestHealSaysWhenItsSweepCannotRun: the lookups of the ledger's tokens
// fail, so the previous token may remain; the heal stands, says so, and
// the ledger keeps the token for the next run, which retires it.
func TestHealSaysWhenItsSweepCannotRun(t *testing.T) {
	x := newH(t)
	stale := x.periodic("stale")
	x.put(stale)
	wantExit(t, "the OK run that records the token in the ledger", x.run(), 0)
	p := newFaultProxy(t, x, func(p *faultProxy, w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/v1/auth/token/lookup-accessor" {
			http.Error(w, `{"errors":["injected lookup failure"]}`, http.StatusInternalServerError)
			return true
		}
		return false
	})
	x.put(x.login())
	r := x.runEnv(x.env(p.addr, "VAULT_MAX_RETRIES=0"))
	wantExit(t, "heal", r, 0)
	healed := wantLine(t, "heal", r.stderr, "HEALED")
	for _, want := range []string{"the stale sweep is incomplete: 1 failed", "sweep_failed=1", "the ledger keeps the stale tokens it did not retire"} {
		wantIn(t, "HEALED line", healed, want)
	}
	x.keep("healed", tokenOf(x))
	if !x.alive(stale.Accessor) {
		t.Fatal("premise: the stale token should have survived a sweep that could not look it up")
	}
	r = x.run()
	wantExit(t, "the next run", r, 0)
	wantIn(t, "the next run", r.closing, "(revoked 1 stale, from the ledger)")
	if x.alive(stale.Accessor) {
		t.Errorf("the next run left the stale token %s alive", stale.Accessor)
	}
}

// TestTokensThatCanNeverMint: Vault refuses a create from a batch token
// and from a use-limited one whatever their policies (checked here against
// the real Vault); the run says what the token is, with a hint that works,
// and never prints an empty accessor.
func TestTokensThatCanNeverMint(t *testing.T) {
	for _, tc := range []struct {
		name    string
		batch   bool
		uses    int
		words   string
		refusal string
	}{
		{"batch", true, 0, "a batch token cannot heal", "batch"},
		{"use-limited", false, 10, "a use-limited token cannot heal", "restricted use token cannot generate child tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newH(t)
			tok, err := x.f.MintOdd(x.ctx, tc.batch, tc.uses)
			if err != nil {
				t.Fatal(err)
			}
			x.keep(tc.name, tok)
			c, err := x.f.Server.Client(tok.Secret)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Auth().Token().CreateWithContext(x.ctx, &vault.TokenCreateRequest{NoParent: true, Period: "768h",
				Policies: []string{"vault-admin"}, DisplayName: "premise"})
			if err == nil {
				t.Fatalf("premise: vault should refuse a create from a %s token, but it created one", tc.name)
			}
			if !strings.Contains(err.Error(), tc.refusal) {
				t.Fatalf("premise: vault should refuse a create from a %s token with %q, said %v", tc.name, tc.refusal, err)
			}
			x.put(tok)
			before := x.fileBytes()
			r := x.run()
			wantExit(t, "run", r, 1)
			drift := wantLine(t, "run", r.stderr, "DRIFT")
			wantIn(t, "DRIFT line", drift, tc.words)
			for _, empty := range []string{"accessor= ", "-accessor )"} {
				if strings.Contains(drift, empty) {
					t.Errorf("the DRIFT line carries an empty accessor (%q): %s", empty, drift)
				}
			}
			if strings.HasSuffix(drift, "accessor=") {
				t.Errorf("the DRIFT line ends in an empty accessor: %s", drift)
			}
			if !bytes.Equal(x.fileBytes(), before) {
				t.Fatal("the file changed on DRIFT")
			}
			r = x.run("status")
			wantIn(t, "status", r.stdout, tc.words)
			if strings.Contains(r.stdout, "will try to heal") {
				t.Errorf("status promises a heal that cannot happen:\n%s", r.stdout)
			}
		})
	}
}

// TestTLSFailuresAreTLS runs against `vault server -dev-tls`: without the
// CA, and with a server name the certificate does not carry, the cause is
// tls and next= names the setting; with the CA the run is OK.
func TestTLSFailuresAreTLS(t *testing.T) {
	x := newHWith(t, devvault.StartTLS)
	x.put(x.periodic("periodic"))
	addr := x.f.Server.Addr
	for _, tc := range []struct {
		name  string
		env   []string
		words string
	}{
		{"unknown CA", nil, "VAULT_CACERT"},
		{"hostname mismatch", []string{"VAULT_CACERT=" + x.f.Server.CACert, "VAULT_TLS_SERVER_NAME=vault.invalid"}, "VAULT_TLS_SERVER_NAME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := x.runEnv(x.env(addr, append(tc.env, "VAULT_MAX_RETRIES=0")...))
			wantExit(t, "run", r, 1)
			fail := wantLine(t, "run", r.stderr, "FAIL:")
			wantIn(t, "FAIL line", fail, "cause=tls")
			wantIn(t, "FAIL line", fail, tc.words)
			if strings.Contains(fail, "cannot reach") {
				t.Errorf("the FAIL line says \"cannot reach\" for a TLS failure: %s", fail)
			}
		})
	}
	r := x.runEnv(x.env(addr, "VAULT_CACERT="+x.f.Server.CACert))
	wantExit(t, "with the CA", r, 0)
	if !strings.HasPrefix(r.closing, "OK: renewed periodic token") {
		t.Errorf("with the CA: stderr does not start with %q:\n%s", "OK: renewed periodic token", r.stderr)
	}
}

// TestTimeoutsAndInterruptsAreToldApart: Vault hangs (paused); the client's
// own timeout, the run's --timeout and a SIGTERM each get their cause.
func TestTimeoutsAndInterruptsAreToldApart(t *testing.T) {
	x := newH(t)
	x.put(x.periodic("periodic"))
	for _, tc := range []struct {
		name, cause string
		env, args   []string
		sigterm     bool
	}{
		{"client timeout", "client-timeout", []string{"VAULT_CLIENT_TIMEOUT=2s"}, nil, false},
		{"run timeout", "timeout", []string{"VAULT_CLIENT_TIMEOUT=60s"}, []string{"--timeout", "3s"}, false},
		{"sigterm", "canceled", nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPauser(t, x, "GET", "/v1/auth/token/lookup-self", 1)
			defer p.resume(t, x)
			env := x.env(p.addr, append(tc.env, "VAULT_MAX_RETRIES=0")...)
			var r result
			if tc.sigterm {
				r = x.runThenSignal(env, time.Second, syscall.SIGTERM)
			} else {
				r = x.runEnv(env, tc.args...)
			}
			wantExit(t, "run", r, 1)
			fail := wantLine(t, "run", r.stderr, "FAIL:")
			wantIn(t, "FAIL line", fail, "cause="+tc.cause+" ")
		})
	}
}

// runThenSignal starts the binary and sends sig after d.
func (x *h) runThenSignal(env []string, d time.Duration, sig os.Signal) result {
	x.t.Helper()
	cmd := exec.CommandContext(x.ctx, binary, "--log-format=plain")
	cmd.Env = env
	var once sync.Once
	go func() {
		time.Sleep(d)
		once.Do(func() {
			if cmd.Process != nil {
				cmd.Process.Signal(sig)
			}
		})
	}()
	r := x.exec(cmd, false)
	x.t.Logf("vault-token-renew (signalled) → exit %d\n%s", r.code, x.redact(r.stderr))
	return r
}

// needRoot skips where a test must mount a small file system, except in
// CI, where a skip would hide an untested cause.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test mounts a tmpfs and needs root; CI runs as root on this machine kind")
	}
	t.Skip("needs root to mount a tmpfs")
}

// tmpfs mounts a small tmpfs at a new directory for this test.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestLocalFilesystemFailuresAreFilesystem: a read-only home, a full file
// system and a token path that is a directory are cause=filesystem with
// next= naming the path, never "cannot reach vault" or a held lock.
func TestLocalFilesystemFailuresAreFilesystem(t *testing.T) {
	needRoot(t)
	x := newH(t)
	t.Run("read-only home", func(t *testing.T) { readOnlyHomeIsFilesystem(t, x) })
	// A full disk: when the state file shares it, the create cannot be
	// recorded ahead in the ledger, so none is sent; when the state file
	// lives elsewhere, the create is sent, the write fails, and the minted
	// token is revoked. Either way the token file is unchanged and no new
	// periodic token stays alive.
	for _, tc := range []fullDiskCase{
		{"full file system", "devvm-full", "create", false, []string{"nothing was sent"}},
		{"full file system under the token file only", "devvm-full-file", "write", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) { fullDiskIsFilesystem(t, x, tc) })
	}
	t.Run("lock file not permitted", func(t *testing.T) { lockNotPermittedIsFilesystem(t, x) })
	t.Run("token path is a directory", func(t *testing.T) { tokenPathIsDirIsFilesystem(t, x) })
}

// readOnlyHomeIsFilesystem: a read-only home fails with cause=filesystem
// naming the lock, never blaming another run.
func readOnlyHomeIsFilesystem(t *testing.T, x *h) {
	home := tmpfs(t, "1m")
	m := machine{host: "devvm-ro", home: home, file: filepath.Join(home, ".vault-token")}
	x.putOn(m, x.periodic("periodic"))
	if out, err := exec.Command("mount", "-o", "remount,ro", home).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v %s", err, out)
	}
	r := x.runOn(m)
	wantExit(t, "run", r, 1)
	fail := wantLine(t, "run", r.stderr, "FAIL:")
	wantIn(t, "FAIL line", fail, "cause=filesystem")
	wantIn(t, "FAIL line", fail, m.file+".lock is on a read-only file system")
	if strings.Contains(fail, "another vault-token-renew run") {
		t.Errorf("the FAIL line blames another run for a read-only home: %s", fail)
	}
}

// fullDiskCase is a full file system under the token file, with the state
// file on it or elsewhere (stateElsewhere), failing at stage and saying
// want besides.
type fullDiskCase struct {
	name, host, stage string
	stateElsewhere    bool
	want              []string
}

// fullDiskIsFilesystem runs tc on a full 64k tmpfs: cause=filesystem, the
// token file unchanged, no new periodic token alive.
func fullDiskIsFilesystem(t *testing.T, x *h, tc fullDiskCase) {
	home := tmpfs(t, "64k")
	m := machine{host: tc.host, home: home, file: filepath.Join(home, ".vault-token")}
	login := x.login()
	x.putOn(m, login)
	if err := os.WriteFile(m.file+".lock", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fill(t, filepath.Join(home, "filler"))
	before := x.periodicAccessors()
	var extra []string
	if tc.stateElsewhere {
		extra = append(extra, "XDG_STATE_HOME="+t.TempDir())
	}
	env := x.env(x.f.Server.Addr, extra...)
	env[1] = "HOME=" + m.home
	r := x.runEnv(env, "--host", m.host)
	wantExit(t, "run", r, 1)
	fail := wantLine(t, "run", r.stderr, "FAIL:")
	for _, want := range append([]string{"cause=filesystem", "stage=" + tc.stage, "no space left for " + home}, tc.want...) {
		wantIn(t, "FAIL line", fail, want)
	}
	if b, _ := os.ReadFile(m.file); string(b) != login.Secret {
		t.Fatal("the token file changed on a full disk")
	}
	if after := x.periodicAccessors(); len(after) != len(before) {
		t.Fatalf("a periodic token minted on a full disk stayed alive (stage=%s): periodic %v → %v", tc.stage, before, after)
	}
}

// lockNotPermittedIsFilesystem runs as nobody in a home it may read but not
// write.
func lockNotPermittedIsFilesystem(t *testing.T, x *h) {
	// An unprivileged user whose home it may read but not write: the
	// lock cannot be created, and that is cause=filesystem naming it,
	// never "another run holds the lock".
	home, err := os.MkdirTemp("", "vtr-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	tok := x.periodic("periodic (nobody)")
	file := filepath.Join(home, ".vault-token")
	bin := filepath.Join(home, "vault-token-renew")
	if err := os.WriteFile(file, []byte(tok.Secret), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(x.ctx, bin, "--log-format=plain", "--host", "devvm-perm")
	cmd.Env = x.env(x.f.Server.Addr)
	cmd.Env[1] = "HOME=" + home
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	r := x.exec(cmd, false)
	t.Logf("vault-token-renew as nobody → exit %d\n%s", r.code, x.redact(r.stderr))
	wantExit(t, "run as nobody in a home it cannot write", r, 1)
	fail := wantLine(t, "run as nobody", r.stderr, "FAIL: could not take the run lock")
	wantIn(t, "FAIL line", fail, "cause=filesystem")
	wantIn(t, "FAIL line", fail, "permission denied on "+file+".lock")
	if strings.Contains(fail, "another vault-token-renew run") {
		t.Errorf("an unwritable lock reads as a held one: %s", fail)
	}
}

// tokenPathIsDirIsFilesystem: a token path that is a directory is
// cause=filesystem naming it.
func tokenPathIsDirIsFilesystem(t *testing.T, x *h) {
	home := t.TempDir()
	m := machine{host: "devvm-dir", home: home, file: filepath.Join(home, ".vault-token")}
	if err := os.Mkdir(m.file, 0o700); err != nil {
		t.Fatal(err)
	}
	r := x.runOn(m)
	wantExit(t, "run", r, 1)
	fail := wantLine(t, "run", r.stderr, "FAIL:")
	wantIn(t, "FAIL line", fail, "cause=filesystem")
	wantIn(t, "FAIL line", fail, m.file+" is a directory")
}

// fill writes to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for i := 0; i < 1<<14; i++ {
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space") {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("the file system never filled up")
}

// TestWalkCutShortSaysSo: with --max-rps a walk over a few hundred
// accessors cannot finish in a short --timeout. sweep exits 1, says how far
// it got and the --timeout the rest needs, and keeps its place; the next
// walk resumes from there and finishes. Nothing counts as complete that
// was not.
func TestWalkCutShortSaysSo(t *testing.T) {
	x := newH(t)
	x.seed(300)
	var stale []string
	for i := 0; i < 4; i++ {
		stale = append(stale, x.periodic("stale").Accessor)
	}
	cur := x.periodic("current")
	x.put(cur)
	r := x.run("sweep", "--apply", "--max-rps", "20", "--timeout", "4s")
	wantExit(t, "sweep cut short", r, 1)
	fail := wantLine(t, "sweep cut short", r.stderr, "FAIL:")
	for _, want := range []string{"cause=sweep-incomplete", "stopped looking up after", "--max-rps 20 --timeout", "the walk kept its place"} {
		wantIn(t, "FAIL line", fail, want)
	}
	st, err := runstate.Load(filepath.Join(x.home, ".local", "state", "vault-token-renew", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	l := st.LedgerFor(x.file)
	if l.Walk == nil || l.Walk.Done == 0 || l.Walk.Done >= l.Walk.Listed || l.Gap() == ledger.NoGap {
		t.Fatalf("after the cut the ledger is %+v (walk %+v), want a walk under way, part done, and a gap", l, l.Walk)
	}

	r = x.walk()
	// The stale tokens the first run revoked are gone from the new list,
	// so its place is at most as far into it as it had looked up.
	wantIn(t, "the resumed walk", r.closing, "an earlier run looked up")
	if m := regexp.MustCompile(`resumed_after=(\d+)`).FindStringSubmatch(r.closing); m == nil || m[1] == "0" || atoi(m[1]) > l.Walk.Done {
		t.Errorf("the walk resumed after %v, want after its place (%d looked up)", m, l.Walk.Done)
	}
	for _, a := range stale {
		if x.alive(a) {
			t.Errorf("stale %s survived the walk", a)
		}
	}
	if !x.alive(cur.Accessor) {
		t.Error("the walk revoked the token in the file")
	}
	x.put(x.login())
	r = x.run()
	wantExit(t, "the heal after the walk", r, 0)
	healed := wantLine(t, "the heal after the walk", r.stderr, "HEALED")
	wantIn(t, "HEALED line", healed, "(revoked 1 stale, from the ledger)")
	x.keep("healed", tokenOf(x))
	if x.alive(cur.Accessor) {
		t.Errorf("the previous token %s survived the heal", cur.Accessor)
	}
}

// seed mints n short-lived default-policy tokens: the other accessors of a
// shared Vault that every walk must look up.
func (x *h) seed(n int) {
	x.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				if _, err := x.f.MintFake(context.Background(), "seed", time.Hour, "default"); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		x.t.Fatal(err)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
