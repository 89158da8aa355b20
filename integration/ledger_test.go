//go:build integration

package integration

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/devvault"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/runstate"
)

// newCounter is a devvault.Counter for this test, stopped at its end.
func newCounter(t *testing.T, x *h) *devvault.Counter {
	t.Helper()
	c, err := devvault.StartCounter(x.f.Server.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const listAccessors = "LIST /v1/auth/token/accessors"

// ledgerOf reads the ledger a machine's runs left in its state file for
// its token file, ~/.vault-token.
func (x *h) ledgerOf(home string) ledger.Ledger {
	x.t.Helper()
	st, err := runstate.Load(filepath.Join(home, ".local", "state", "vault-token-renew", "state.json"))
	if err != nil {
		x.t.Fatalf("read the state in %s: %v", home, err)
	}
	return st.LedgerFor(filepath.Join(home, ".vault-token"))
}

// healOnce puts a login in m's file and heals it: the first heal walks (no
// ledger yet) and leaves the ledger whole, holding the token it returns.
func (x *h) healOnce(m machine) string {
	x.t.Helper()
	x.putOn(m, x.login())
	r := x.runOn(m)
	wantExit(x.t, m.host+": the first heal", r, 0)
	healed := wantLine(x.t, m.host+": the first heal", r.stderr, "HEALED")
	wantIn(x.t, "the first heal's HEALED line", healed, "walked_because=\"no ledger yet")
	l := x.ledgerOf(m.home)
	cur := x.fileInfoOn(m).Accessor
	if l.Gap() != ledger.NoGap || !slices.Equal(l.Accessors(), []string{cur}) {
		x.t.Fatalf("%s: after the first heal the ledger is %v (gap %v), want whole with %s", m.host, l.Accessors(), l.Gap(), cur)
	}
	return cur
}

func (x *h) runOnVia(m machine, addr string, args ...string) result {
	x.t.Helper()
	env := x.env(addr)
	env[1] = "HOME=" + m.home
	return x.runEnv(env, append(args, "--host", m.host)...)
}

func (x *h) machine(host string) machine {
	home := x.t.TempDir()
	return machine{host: host, home: home, file: filepath.Join(home, ".vault-token")}
}

// TestHealFromTheLedgerAtScale: on a Vault holding 50,000 other tokens, a
// heal with a whole ledger makes no LIST, retires the previous token with
// one lookup and one revoke, and leaves another machine's token alive.
func TestHealFromTheLedgerAtScale(t *testing.T) {
	x := newH(t)
	m := x.machine("devvm-scale")
	prev := x.healOnce(m)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := x.f.MintPeriodicFor(x.ctx, "devvm-wizard", map[string]string{"managed_by": "vault-token-renew", "host": "devvm-other", "user": me.Username})
	if err != nil {
		t.Fatal(err)
	}
	x.keep("another machine's", theirs)
	start := time.Now()
	x.seed(50_000)
	t.Logf("seeded 50,000 tokens in %s", time.Since(start).Round(time.Second))
	if n := x.listCount(); n < 50_000 {
		t.Fatalf("premise: vault lists %d accessors, want at least 50,000", n)
	}

	c := newCounter(t, x)
	x.putOn(m, x.login())
	start = time.Now()
	r := x.runOnVia(m, c.Addr)
	took := time.Since(start)
	seen, total := c.Take()
	t.Logf("the heal took %s and sent %d requests: %v", took.Round(time.Millisecond), total, seen)
	wantExit(t, "heal from the ledger", r, 0)
	healed := wantLine(t, "heal from the ledger", r.stderr, "HEALED")
	wantIn(t, "HEALED line", healed, "(revoked 1 stale, from the ledger)")
	if seen[listAccessors] != 0 {
		t.Errorf("the heal listed every accessor %d times; a whole ledger needs no list", seen[listAccessors])
	}
	if total > 16 {
		t.Errorf("the heal sent %d requests, want at most 16: %v", total, seen)
	}
	if x.alive(prev) {
		t.Errorf("the previous periodic token %s is alive", prev)
	}
	if !x.alive(theirs.Accessor) {
		t.Errorf("another machine's token %s was revoked", theirs.Accessor)
	}
	cur := x.fileInfoOn(m).Accessor
	if l := x.ledgerOf(m.home); !slices.Equal(l.Accessors(), []string{cur}) || l.Gap() != ledger.NoGap {
		t.Errorf("ledger after the heal %v (gap %v), want just %s", l.Accessors(), l.Gap(), cur)
	}
}

// TestManualRemintIsRetired: the runbook's manual re-mint enters the ledger
// at the next OK run, which retires the token it replaced; the next heal
// retires the re-mint; neither lists. With nothing stale, a run asks Vault
// for lookup-self and renew-self and nothing else.
func TestManualRemintIsRetired(t *testing.T) {
	x := newH(t)
	m := x.machine("devvm-remint")
	prev := x.healOnce(m)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	manual, err := x.f.MintPeriodicFor(x.ctx, "devvm-wizard", map[string]string{"managed_by": "vault-token-renew", "host": m.host, "user": me.Username})
	if err != nil {
		t.Fatal(err)
	}
	x.putOn(m, x.keep("manual re-mint", manual))
	c := newCounter(t, x)

	r := x.runOnVia(m, c.Addr)
	seen, _ := c.Take()
	wantExit(t, "the run after the re-mint", r, 0)
	if want := "OK: renewed periodic token (revoked 1 stale, from the ledger)"; !strings.HasPrefix(r.closing, want) {
		t.Errorf("the run after the re-mint ends %q, want %q", r.closing, want)
	}
	if x.alive(prev) || seen[listAccessors] != 0 {
		t.Errorf("the token the re-mint replaced is alive (%v) or the run listed (%d)", x.alive(prev), seen[listAccessors])
	}
	l := x.ledgerOf(m.home)
	if !slices.Equal(l.Accessors(), []string{manual.Accessor}) || l.Tokens[0].How != ledger.InFile {
		t.Errorf("ledger %+v, want the re-mint, found in the file", l.Tokens)
	}

	r = x.runOnVia(m, c.Addr)
	seen, total := c.Take()
	wantExit(t, "a run with nothing stale", r, 0)
	if want := map[string]int{"GET /v1/auth/token/lookup-self": 1, "POST /v1/auth/token/renew-self": 1}; total != 2 || !mapsEqual(seen, want) {
		t.Errorf("with nothing stale the run sent %v, want only %v", seen, want)
	}

	x.putOn(m, x.login())
	r = x.runOnVia(m, c.Addr)
	seen, _ = c.Take()
	wantExit(t, "the heal after the re-mint", r, 0)
	wantIn(t, "HEALED line", wantLine(t, "heal", r.stderr, "HEALED"), "(revoked 1 stale, from the ledger)")
	if x.alive(manual.Accessor) || seen[listAccessors] != 0 {
		t.Errorf("the re-mint is alive (%v) or the heal listed (%d)", x.alive(manual.Accessor), seen[listAccessors])
	}

	r = x.runOn(m, "status", "--json")
	var st struct {
		Ledger struct {
			Complete bool `json:"complete"`
			Gap      string
			Tokens   []struct{ Accessor, How string }
		} `json:"ledger"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if cur := x.fileInfoOn(m).Accessor; !st.Ledger.Complete || len(st.Ledger.Tokens) != 1 || st.Ledger.Tokens[0].Accessor != cur || st.Ledger.Tokens[0].How != "minted" {
		t.Errorf("status --json ledger %+v, want complete with %s (minted)", st.Ledger, cur)
	}
	r = x.runOn(m, "status")
	wantIn(t, "status", r.stdout, "ledger")
	wantIn(t, "status", r.stdout, "minted by a heal")
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestLostCreateAnswerMakesTheNextHealWalk: every create's answer is lost
// after Vault minted, so the run fails; the ledger knows a create went
// unrecorded, and the next heal walks to revoke what it minted.
func TestLostCreateAnswerMakesTheNextHealWalk(t *testing.T) {
	x := newH(t)
	m := x.machine("devvm-lost2")
	x.healOnce(m)
	var stranded atomic.Value
	p := newFaultProxy(t, x, func(p *faultProxy, w http.ResponseWriter, r *http.Request) bool {
		if !isCreate(r) {
			return false
		}
		stranded.Store(mintedAccessor(p.vaultAnswer(r).Body.Bytes()))
		w.WriteHeader(http.StatusBadGateway)
		return true
	})
	x.putOn(m, x.login())
	env := x.env(p.addr, "VAULT_MAX_RETRIES=0")
	env[1] = "HOME=" + m.home
	r := x.runEnv(env, "--host", m.host)
	wantExit(t, "a heal whose create answer is lost", r, 1)
	wantIn(t, "FAIL line", r.closing, "the ledger knows, and the next heal walks")
	s, _ := stranded.Load().(string)
	if s == "" || !x.alive(s) {
		t.Fatalf("premise: vault minted a token (%q) that the run never heard of", s)
	}
	if l := x.ledgerOf(m.home); l.Gap() != ledger.Unrecorded {
		t.Fatalf("ledger gap %v after a lost create, want unrecorded-create", l.Gap())
	}

	r = x.runOn(m)
	wantExit(t, "the next heal", r, 0)
	healed := wantLine(t, "the next heal", r.stderr, "HEALED")
	wantIn(t, "HEALED line", healed, "walked_because=\"a create was sent whose answer never reached the ledger")
	if x.alive(s) {
		t.Errorf("the stranded mint %s is alive after the next heal", s)
	}
	x.assertOneLive(m)
}

func mintedAccessor(body []byte) string {
	var b struct {
		Auth struct{ Accessor string } `json:"auth"`
	}
	json.Unmarshal(body, &b)
	return b.Auth.Accessor
}

// assertOneLive: m's file holds its only live periodic token, and its
// ledger holds just that token and is whole.
func (x *h) assertOneLive(m machine) {
	x.t.Helper()
	cur := x.fileInfoOn(m).Accessor
	if live := x.liveByHost()[m.host]; !slices.Equal(live, []string{cur}) {
		x.t.Errorf("%s has live periodic tokens %v, want exactly its file's %s", m.host, live, cur)
	}
	if l := x.ledgerOf(m.home); !slices.Equal(l.Accessors(), []string{cur}) || l.Gap() != ledger.NoGap {
		x.t.Errorf("%s's ledger %v (gap %v), want whole with %s", m.host, l.Accessors(), l.Gap(), cur)
	}
}

// TestKilledBetweenCreateAndRecord: the tool is killed (SIGKILL) right after
// Vault answered its create, before it could record the answer. The create
// was written ahead, so the next heal walks and ends with one live
// periodic token.
func TestKilledBetweenCreateAndRecord(t *testing.T) {
	x := newH(t)
	m := x.machine("devvm-killed")
	x.healOnce(m)
	var victim atomic.Pointer[os.Process]
	var stranded atomic.Value
	p := newFaultProxy(t, x, func(p *faultProxy, w http.ResponseWriter, r *http.Request) bool {
		if !isCreate(r) {
			return false
		}
		stranded.Store(mintedAccessor(p.vaultAnswer(r).Body.Bytes()))
		if proc := victim.Load(); proc != nil {
			proc.Signal(syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond) // the answer would come now; nobody is there
		w.WriteHeader(http.StatusBadGateway)
		return true
	})
	x.putOn(m, x.login())
	before := x.fileBytesOf(m)
	cmd := exec.CommandContext(x.ctx, binary, "--log-format=plain", "--host", m.host)
	cmd.Env = x.env(p.addr)
	cmd.Env[1] = "HOME=" + m.home
	r := x.execStarted(cmd, func(proc *os.Process) { victim.Store(proc) })
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("premise: the tool was not killed by SIGKILL (exit %d)", r.code)
	}
	s, _ := stranded.Load().(string)
	if s == "" || !x.alive(s) {
		t.Fatalf("premise: vault minted a token (%q) before the kill", s)
	}
	if string(x.fileBytesOf(m)) != string(before) {
		t.Fatal("the token file changed although the tool died before writing it")
	}
	if l := x.ledgerOf(m.home); l.Gap() != ledger.Unrecorded {
		t.Fatalf("ledger gap %v after the kill, want the create written ahead (unrecorded-create)", l.Gap())
	}

	r = x.runOn(m)
	wantExit(t, "the heal after the kill", r, 0)
	wantIn(t, "HEALED line", wantLine(t, "the heal after the kill", r.stderr, "HEALED"), "walked")
	if x.alive(s) {
		t.Errorf("the mint the killed run stranded (%s) is alive", s)
	}
	x.assertOneLive(m)
}

func (x *h) fileBytesOf(m machine) []byte {
	x.t.Helper()
	b, err := os.ReadFile(m.file)
	if err != nil {
		x.t.Fatal(err)
	}
	return b
}

// execStarted is exec for a command whose process a test must reach while
// it runs: started is called with it once it has started.
func (x *h) execStarted(cmd *exec.Cmd, started func(*os.Process)) result {
	x.t.Helper()
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		x.t.Fatal(err)
	}
	started(cmd.Process)
	cmd.Wait()
	r := result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
	x.learnFiles()
	x.mu.Lock()
	x.outputs = append(x.outputs, r.stdout, r.stderr)
	x.mu.Unlock()
	x.assertNoSecretIn(r.stdout, r.stderr)
	x.t.Logf("vault-token-renew (killed) → exit %d\n%s", r.code, x.redact(r.stderr))
	return r
}

// TestLostStateMakesTheHealWalk: with the state file deleted the heal has
// no ledger; it walks, says why, revokes the previous token, and the ledger
// is whole again.
func TestLostStateMakesTheHealWalk(t *testing.T) {
	x := newH(t)
	m := x.machine("devvm-nostate")
	prev := x.healOnce(m)
	if err := os.RemoveAll(filepath.Join(m.home, ".local", "state")); err != nil {
		t.Fatal(err)
	}
	x.putOn(m, x.login())
	r := x.runOn(m)
	wantExit(t, "the heal without state", r, 0)
	healed := wantLine(t, "the heal without state", r.stderr, "HEALED")
	wantIn(t, "HEALED line", healed, "(revoked 1 stale, walked ")
	wantIn(t, "HEALED line", healed, "walked_because=\"no ledger yet: the first heal since the upgrade, or the state file was lost or unreadable\"")
	if x.alive(prev) {
		t.Errorf("the previous token %s is alive", prev)
	}
	x.assertOneLive(m)
}

// TestLeastHealPolicy: the policies the runbook gives are enough for a heal
// from the ledger, and no more: the login may only create (with sudo, for
// an orphan periodic token), and the periodic token may only look up and
// revoke accessors (default brings lookup-self and renew-self). That token
// could not walk: its LIST is refused.
func TestLeastHealPolicy(t *testing.T) {
	x := newH(t)
	for name, hcl := range map[string]string{
		"vtr-mint": `path "auth/token/create" { capabilities = ["update", "sudo"] }`,
		"vtr-heal": `path "auth/token/lookup-accessor" { capabilities = ["update"] }
path "auth/token/revoke-accessor" { capabilities = ["update"] }`,
	} {
		if err := x.f.PutPolicy(x.ctx, name, hcl); err != nil {
			t.Fatal(err)
		}
	}
	m := x.machine("devvm-least")
	prev := x.healOnce(m)
	login, err := x.f.MintFake(x.ctx, "oidc-least", time.Hour, "vtr-mint")
	if err != nil {
		t.Fatal(err)
	}
	x.putOn(m, x.keep("least login", login))
	c := newCounter(t, x)
	r := x.runOnVia(m, c.Addr, "--policy", "vtr-heal")
	seen, _ := c.Take()
	wantExit(t, "a heal with the least policies", r, 0)
	wantIn(t, "HEALED line", wantLine(t, "heal", r.stderr, "HEALED"), "(revoked 1 stale, from the ledger)")
	if x.alive(prev) || seen[listAccessors] != 0 {
		t.Errorf("previous token alive %v, lists %d", x.alive(prev), seen[listAccessors])
	}
	info := x.fileInfoOn(m)
	if !slices.Contains(info.Policies, "vtr-heal") || slices.Contains(info.Policies, "vault-admin") {
		t.Errorf("the healed token's policies %v, want vtr-heal (and default) only", info.Policies)
	}
	cl, err := x.f.Server.Client(strings.TrimSpace(string(x.fileBytesOf(m))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Logical().ListWithContext(x.ctx, "auth/token/accessors"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("premise: the least-policy token may not walk, but its LIST answered %v", err)
	}
	r = x.runOn(m, "--policy", "vtr-heal")
	wantExit(t, "the next run on the least-policy token", r, 0)
}

// ledgersOnlyOwn checks the fleet: each machine's ledger holds exactly its
// file's token.
func (x *h) ledgersOnlyOwn(ms []machine, when string) {
	x.t.Helper()
	for _, m := range ms {
		cur := x.fileInfoOn(m).Accessor
		got := x.ledgerOf(m.home).Accessors()
		sort.Strings(got)
		if !slices.Equal(got, []string{cur}) {
			x.t.Errorf("%s: %s's ledger holds %v, want only its own %s", when, m.host, got, cur)
		}
	}
}

// listCount is how many accessors Vault lists.
func (x *h) listCount() int {
	x.t.Helper()
	root, err := x.f.Server.Client(x.f.Server.RootToken)
	if err != nil {
		x.t.Fatal(err)
	}
	s, err := root.Logical().ListWithContext(x.ctx, "auth/token/accessors")
	if err != nil || s == nil {
		x.t.Fatalf("list accessors: %v", err)
	}
	return len(s.Data["keys"].([]interface{}))
}
