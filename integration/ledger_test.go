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

// healOnce puts a login in m's file and heals it: the first heal has no
// ledger and says so without walking; the walk (sweep --apply, as the walk
// unit runs it, uncapped here) then leaves the ledger whole, holding the
// token it returns.
func (x *h) healOnce(m machine) string {
	x.t.Helper()
	x.putOn(m, x.login())
	r := x.runOn(m)
	wantExit(x.t, m.host+": the first heal", r, 0)
	healed := wantLine(x.t, m.host+": the first heal", r.stderr, "HEALED")
	wantIn(x.t, "the first heal's HEALED line", healed, "tokens minted before the ledger began (a new install, an upgrade, a lost or unreadable state file) may remain: a walk finds and revokes them: vault-token-renew sweep --apply")
	wantIn(x.t, "the first heal's HEALED line", healed, "gap=never-whole")
	x.walkOn(m)
	l := x.ledgerOf(m.home)
	cur := x.fileInfoOn(m).Accessor
	if l.Gap() != ledger.NoGap || !slices.Equal(l.Accessors(), []string{cur}) {
		x.t.Fatalf("%s: after the first heal the ledger is %v (gap %v), want whole with %s", m.host, l.Accessors(), l.Gap(), cur)
	}
	return cur
}

// walkOn runs m's walk to its end, uncapped, as the walk unit would at its
// rate cap, and wants the ledger whole after it.
func (x *h) walkOn(m machine, args ...string) result {
	x.t.Helper()
	r := x.runOn(m, append([]string{"sweep", "--apply", "--max-rps", "0"}, args...)...)
	wantExit(x.t, m.host+": the walk", r, 0)
	wantIn(x.t, m.host+": the walk's closing line", r.closing, "the ledger is complete again")
	return r
}

// walkAfterLoss is m's walk right after a create whose answer was lost: it
// revokes what that create minted, and keeps the gap (the create may have
// minted after the walk's list: ledger.CreateGrace), for a walk later on.
func (x *h) walkAfterLoss(m machine) {
	x.t.Helper()
	r := x.runOn(m, "sweep", "--apply", "--max-rps", "0")
	wantExit(x.t, m.host+": the walk", r, 0)
	wantIn(x.t, m.host+": the walk's closing line", r.closing, "the ledger still has a gap: a token minted by a create whose answer was lost")
	cur := x.fileInfoOn(m).Accessor
	if live := x.liveByHost()[m.host]; !slices.Equal(live, []string{cur}) {
		x.t.Errorf("%s has live periodic tokens %v, want exactly its file's %s", m.host, live, cur)
	}
	if l := x.ledgerOf(m.home); !slices.Equal(l.Accessors(), []string{cur}) || l.Gap() != ledger.Unrecorded {
		x.t.Errorf("%s's ledger %v (gap %v), want %s and the lost create still a gap", m.host, l.Accessors(), l.Gap(), cur)
	}
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

const lookupAccessor = "POST /v1/auth/token/lookup-accessor"

// TestBigVaultNewUser: on a Vault holding 50,000 other tokens, a new user's
// path. A fresh install (our token in the file, minted by hand before the
// tool, and an older one of ours nobody recorded), an OK run, then a
// login: the heal makes no LIST, at most 16 requests, retires the previous
// token from the ledger, and says the unrecorded one may remain and what
// finds it. A manual re-mint, an OK run, a login: both are retired, no
// LIST. The walk, killed halfway, resumes where it was and looks each
// accessor up about once in all; it finds the old token, and the ledger is
// whole. Another machine's token lives through it all.
func TestBigVaultNewUser(t *testing.T) {
	x := newH(t)
	b := &bigVault{x: x, m: x.machine("devvm-big")}
	theirs := x.mintByHand("another machine's", "devvm-other")
	older := x.mintByHand("an older token nobody recorded", b.m.host)
	first := x.mintByHand("the first token, minted by hand", b.m.host)
	start := time.Now()
	x.seed(50_000)
	t.Logf("seeded 50,000 tokens in %s", time.Since(start).Round(time.Second))
	if n := x.listCount(); n < 50_000 {
		t.Fatalf("premise: vault lists %d accessors, want at least 50,000", n)
	}
	b.c = newCounter(t, x)

	b.installThenHeal(first)
	b.manualRemintThenHeal()
	if !x.alive(older.Accessor) {
		t.Fatal("premise: a token no ledger knows was revoked without a walk")
	}
	b.resumedWalk(older, theirs)
	healed := b.heal("the heal after the walk", x.fileInfoOn(b.m).Accessor)
	if strings.Contains(healed, "may remain") {
		t.Errorf("the heal after a complete walk still says tokens may remain: %s", healed)
	}
}

// bigVault is TestBigVaultNewUser's machine m, whose runs go through the
// request counter c.
type bigVault struct {
	x *h
	m machine
	c *devvault.Counter
}

// mintByHand mints a periodic token for host and the current user, as the
// runbook's manual (re-)mint does, and keeps its secret.
func (x *h) mintByHand(label, host string) devvault.Token {
	x.t.Helper()
	me, err := user.Current()
	if err != nil {
		x.t.Fatal(err)
	}
	tok, err := x.f.MintPeriodicFor(x.ctx, "devvm-wizard", map[string]string{"managed_by": "vault-token-renew", "host": host, "user": me.Username})
	if err != nil {
		x.t.Fatal(err)
	}
	return x.keep(label, tok)
}

// heal puts a login in m's file and heals it: no LIST, at most 16
// requests, and the retired accessors are dead. It returns the HEALED line.
func (b *bigVault) heal(what string, retired ...string) string {
	t, x := b.x.t, b.x
	t.Helper()
	x.putOn(b.m, x.login())
	start := time.Now()
	r := x.runOnVia(b.m, b.c.Addr)
	took := time.Since(start)
	seen, total := b.c.Take()
	t.Logf("%s took %s and sent %d requests: %v", what, took.Round(time.Millisecond), total, seen)
	wantExit(t, what, r, 0)
	healed := wantLine(t, what, r.stderr, "HEALED")
	if seen[listAccessors] != 0 || total > 16 {
		t.Errorf("%s listed every accessor %d times and sent %d requests; want no list and at most 16", what, seen[listAccessors], total)
	}
	for _, a := range retired {
		if x.alive(a) {
			t.Errorf("%s: %s is alive", what, a)
		}
	}
	return healed
}

// installThenHeal: the fresh install's first run renews the hand-minted
// token with two requests; the first heal retires it from the ledger and
// says what finds tokens minted before the ledger began.
func (b *bigVault) installThenHeal(first devvault.Token) {
	t, x := b.x.t, b.x
	t.Helper()
	x.putOn(b.m, first)
	r := x.runOnVia(b.m, b.c.Addr)
	wantExit(t, "the first run after the install", r, 0)
	if seen, total := b.c.Take(); total != 2 {
		t.Errorf("the first OK run sent %v, want lookup-self and renew-self", seen)
	}
	healed := b.heal("the first heal after the install", first.Accessor)
	wantIn(t, "HEALED line", healed, "(revoked 1 stale, from the ledger); tokens minted before the ledger began")
	wantIn(t, "HEALED line", healed, "next=\"find them: vault-token-renew sweep --apply\"")
}

// manualRemintThenHeal: an OK run on a manual re-mint retires the healed
// token it replaced, and the next heal retires the re-mint.
func (b *bigVault) manualRemintThenHeal() {
	t, x := b.x.t, b.x
	t.Helper()
	manual := x.mintByHand("manual re-mint", b.m.host)
	healedTok := x.fileInfoOn(b.m).Accessor
	x.putOn(b.m, manual)
	r := x.runOnVia(b.m, b.c.Addr)
	b.c.Take()
	wantExit(t, "the run after the manual re-mint", r, 0)
	wantIn(t, "the run after the manual re-mint", r.closing, "(revoked 1 stale, from the ledger)")
	b.heal("the heal after a manual re-mint", healedTok, manual.Accessor)
}

// resumedWalk kills the walk halfway and resumes it: in all it looks each
// accessor up about once, revokes the older token, spares another
// machine's, and leaves the ledger whole.
func (b *bigVault) resumedWalk(older, theirs devvault.Token) {
	t, x := b.x.t, b.x
	t.Helper()
	x.walkKilledHalfway(b.m, b.c)
	r := x.runOnVia(b.m, b.c.Addr, "sweep", "--apply", "--max-rps", "0")
	seen, _ := b.c.Take()
	wantExit(t, "the resumed walk", r, 0)
	wantIn(t, "the resumed walk", r.closing, "resumed after")
	wantIn(t, "the resumed walk", r.closing, "the ledger is complete again")
	lookups := x.lookupsSoFar + seen[lookupAccessor]
	listed := x.listCount()
	t.Logf("the walk killed halfway and resumed: %d lookups in all for %d accessors (%.3fx), %d lists", lookups, listed, float64(lookups)/float64(listed), x.listsSoFar+seen[listAccessors])
	if float64(lookups) > 1.1*float64(listed) {
		t.Errorf("the two runs of the walk looked up %d accessors for %d: more than 1.1x", lookups, listed)
	}
	if x.alive(older.Accessor) {
		t.Errorf("the walk left the older token %s alive", older.Accessor)
	}
	if !x.alive(theirs.Accessor) {
		t.Errorf("another machine's token %s was revoked", theirs.Accessor)
	}
	x.assertOneLive(b.m)
}

// walkKilledHalfway starts m's walk through c, SIGKILLs it once its place
// passes half the accessors, and counts what it sent (lookupsSoFar,
// listsSoFar).
func (x *h) walkKilledHalfway(m machine, c *devvault.Counter) {
	x.t.Helper()
	cmd := exec.CommandContext(x.ctx, binary, "sweep", "--apply", "--max-rps", "0", "--log-format=plain", "--host", m.host)
	cmd.Env = x.env(c.Addr)
	cmd.Env[1] = "HOME=" + m.home
	r := x.execStarted(cmd, func(proc *os.Process) {
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			st, err := runstate.Load(filepath.Join(m.home, ".local", "state", "vault-token-renew", "state.json"))
			if w := st.LedgerFor(m.file).Walk; err == nil && w != nil && w.Fraction() >= 0.5 {
				proc.Signal(syscall.SIGKILL)
				return
			}
		}
		x.t.Error("the walk never got halfway")
		proc.Kill()
	})
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		x.t.Fatalf("premise: the walk was not killed (exit %d)", r.code)
	}
	seen, _ := c.Take()
	x.lookupsSoFar, x.listsSoFar = seen[lookupAccessor], seen[listAccessors]
	w := x.ledgerOf(m.home).Walk
	if w == nil || w.Cursor == "" || w.Done < w.Listed/2 {
		x.t.Fatalf("after the kill the walk's place is %+v, want past half", w)
	}
	x.t.Logf("killed the walk at %d of %d accessors (%d lookups sent)", w.Done, w.Listed, x.lookupsSoFar)
}

// TestManualRemintIsRetired: the runbook's manual re-mint enters the ledger
// at the next OK run, which retires the token it replaced; the next heal
// retires the re-mint; neither lists. With nothing stale, a run asks Vault
// for lookup-self and renew-self and nothing else.
func TestManualRemintIsRetired(t *testing.T) {
	x := newH(t)
	m := x.machine("devvm-remint")
	prev := x.healOnce(m)
	manual := x.mintByHand("manual re-mint", m.host)
	x.putOn(m, manual)
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

// TestLostCreateAnswerIsFoundByTheWalk: every create's answer is lost
// after Vault minted, so the run fails; the ledger knows a create went
// unrecorded. The next heal does not walk: it says a token may remain and
// what finds it, and the walk finds and revokes it.
func TestLostCreateAnswerIsFoundByTheWalk(t *testing.T) {
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
	wantIn(t, "FAIL line", r.closing, "the ledger knows, and the walk (vault-token-renew sweep --apply, or the walk unit a run starts) finds and revokes it")
	s, _ := stranded.Load().(string)
	if s == "" || !x.alive(s) {
		t.Fatalf("premise: vault minted a token (%q) that the run never heard of", s)
	}
	if l := x.ledgerOf(m.home); l.Gap() != ledger.Unrecorded {
		t.Fatalf("ledger gap %v after a lost create, want unrecorded-create", l.Gap())
	}

	c := newCounter(t, x)
	r = x.runOnVia(m, c.Addr)
	seen, _ := c.Take()
	wantExit(t, "the next heal", r, 0)
	healed := wantLine(t, "the next heal", r.stderr, "HEALED")
	wantIn(t, "HEALED line", healed, "a token minted by a create whose answer was lost (a crash, a kill, a dropped connection) may remain: a walk finds and revokes them: vault-token-renew sweep --apply")
	if seen[listAccessors] != 0 || !x.alive(s) {
		t.Fatalf("the heal listed %d times (want none), stranded mint alive %v (want alive: only a walk can know it)", seen[listAccessors], x.alive(s))
	}
	x.walkAfterLoss(m)
	if x.alive(s) {
		t.Errorf("the stranded mint %s is alive after the walk", s)
	}
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
// was written ahead, so the next heal says a token may remain, and the walk
// ends with one live periodic token.
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
	wantIn(t, "HEALED line", wantLine(t, "the heal after the kill", r.stderr, "HEALED"), "gap=unrecorded-create")
	x.walkAfterLoss(m)
	if x.alive(s) {
		t.Errorf("the mint the killed run stranded (%s) is alive", s)
	}
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

// TestLostStateIsSaidAndTheWalkFinds: with the state file deleted the heal
// has no ledger; it does not walk, it says that tokens may remain and what
// finds them, and the walk revokes the previous token and makes the ledger
// whole again.
func TestLostStateIsSaidAndTheWalkFinds(t *testing.T) {
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
	wantIn(t, "HEALED line", healed, "(revoked 0 stale, from the ledger); tokens minted before the ledger began (a new install, an upgrade, a lost or unreadable state file) may remain")
	wantIn(t, "HEALED line", healed, "next=\"find them: vault-token-renew sweep --apply\"")
	if !x.alive(prev) {
		t.Fatalf("premise: the previous token %s was revoked without a ledger or a walk", prev)
	}
	x.walkOn(m)
	if x.alive(prev) {
		t.Errorf("the previous token %s is alive after the walk", prev)
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
