//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

// machine is one VM of a team sharing the dev Vault: its own HOME, token
// file and --host, the default display name.
type machine struct {
	host, home, file string
}

func (x *h) machines(n int) []machine {
	x.t.Helper()
	var ms []machine
	for i := 1; i <= n; i++ {
		home := x.t.TempDir()
		ms = append(ms, machine{host: fmt.Sprintf("devvm-%d", i), home: home, file: filepath.Join(home, ".vault-token")})
	}
	return ms
}

// runOn runs the binary as machine m would: its HOME, its --host.
func (x *h) runOn(m machine, args ...string) result {
	x.t.Helper()
	env := x.env(x.f.Server.Addr)
	env[1] = "HOME=" + m.home
	return x.runEnv(env, append(args, "--host", m.host)...)
}

func (x *h) putOn(m machine, tok devvault.Token) {
	x.t.Helper()
	x.mu.Lock()
	if !slices.Contains(x.files, m.file) {
		x.files = append(x.files, m.file)
	}
	x.mu.Unlock()
	if err := os.WriteFile(m.file, []byte(tok.Secret), 0o600); err != nil {
		x.t.Fatal(err)
	}
}

// fileInfoOn looks up the token machine m's file holds, acting as it.
func (x *h) fileInfoOn(m machine) devvault.Info {
	x.t.Helper()
	b, err := os.ReadFile(m.file)
	if err != nil {
		x.t.Fatal(err)
	}
	secret := strings.TrimSpace(string(b))
	x.keep("file of "+m.host, devvault.Token{Secret: secret})
	info, err := x.f.LookupSecret(x.ctx, secret)
	if err != nil {
		x.t.Fatalf("%s's token file holds a token that does not work: %v", m.host, err)
	}
	return info
}

// liveByHost maps each host tag to the live token-devvm-wizard accessors
// tagged for it ("" for untagged).
func (x *h) liveByHost() map[string][]string {
	x.t.Helper()
	out := map[string][]string{}
	for _, a := range x.periodicAccessors() {
		info, ok, err := x.f.LookupAccessor(x.ctx, a)
		if err != nil {
			x.t.Fatal(err)
		}
		if ok {
			out[info.Meta["host"]] = append(out[info.Meta["host"]], a)
		}
	}
	return out
}

// assertOnePerMachine: each machine's file holds a live periodic token
// tagged for it, and it is that machine's only live periodic token.
func (x *h) assertOnePerMachine(ms []machine, when string) map[string]string {
	x.t.Helper()
	live := x.liveByHost()
	cur := map[string]string{}
	for _, m := range ms {
		info := x.fileInfoOn(m)
		if info.DisplayName != "token-devvm-wizard" {
			x.t.Errorf("%s: %s's file holds dn=%s, want token-devvm-wizard", when, m.host, info.DisplayName)
		}
		if info.Meta["host"] != m.host {
			x.t.Errorf("%s: %s's file holds a token with meta host=%q, want %q", when, m.host, info.Meta["host"], m.host)
		}
		if info.Meta["managed_by"] != "vault-token-renew" {
			x.t.Errorf("%s: %s's file holds a token with meta managed_by=%q, want vault-token-renew", when, m.host, info.Meta["managed_by"])
		}
		if info.Meta["user"] == "" {
			x.t.Errorf("%s: %s's file holds a token with no meta user (meta %v)", when, m.host, info.Meta)
		}
		if got := live[m.host]; !slices.Equal(got, []string{info.Accessor}) {
			x.t.Errorf("%s: %s has live periodic tokens %v, want exactly its file's %s", when, m.host, got, info.Accessor)
		}
		cur[m.host] = info.Accessor
	}
	return cur
}

// TestFleetSharesOneVault: four machines with the default display name on
// one Vault. Each heal revokes only its own machine's stale tokens (and
// untagged manual re-mints), never another machine's live one.
func TestFleetSharesOneVault(t *testing.T) {
	x := newH(t)
	ms := x.machines(4)
	manual := x.periodic("untagged manual re-mint")
	first := fleetHealsOneByOne(t, x, ms, manual)
	second := fleetHealsAllAtOnce(t, x, ms, first)
	fleetSweepSparesOthers(t, x, ms, second)
	fleetStatusShowsTags(t, x, ms)
}

// fleetHealsOneByOne heals each machine one after another, each followed
// by its walk (a new install's ledger has a gap): the untagged re-mint is
// stale to every machine. It returns each host's token.
func fleetHealsOneByOne(t *testing.T, x *h, ms []machine, manual devvault.Token) map[string]string {
	t.Helper()
	for _, m := range ms {
		x.putOn(m, x.login())
		r := x.runOn(m)
		wantExit(t, m.host+" heal", r, 0)
		wantLine(t, m.host+" heal", r.stderr, "HEALED")
		wantIn(t, m.host+" heal stderr", r.stderr, "host="+m.host)
		x.walkOn(m)
	}
	first := x.assertOnePerMachine(ms, "after sequential heals")
	x.ledgersOnlyOwn(ms, "after sequential heals")
	if x.alive(manual.Accessor) {
		t.Error("the untagged manual re-mint survived the heals")
	}
	return first
}

// fleetHealsAllAtOnce heals every machine at once: each retires its own
// previous token (first) from its ledger. It returns each host's token.
func fleetHealsAllAtOnce(t *testing.T, x *h, ms []machine, first map[string]string) map[string]string {
	t.Helper()
	for _, m := range ms {
		x.putOn(m, x.login())
	}
	var wg sync.WaitGroup
	res := make([]result, len(ms))
	for i, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); res[i] = x.runOn(m) }()
	}
	wg.Wait()
	for i, r := range res {
		wantExit(t, ms[i].host+" in the concurrent round", r, 0)
		healed := wantLine(t, ms[i].host+" in the concurrent round", r.stderr, "HEALED")
		wantIn(t, ms[i].host+"'s second HEALED line", healed, "(revoked 1 stale, from the ledger)")
	}
	second := x.assertOnePerMachine(ms, "after concurrent heals")
	x.ledgersOnlyOwn(ms, "after concurrent heals")
	for _, m := range ms {
		if second[m.host] == first[m.host] {
			t.Errorf("%s: its file still holds its previous token %s", m.host, first[m.host])
		}
		if x.alive(first[m.host]) {
			t.Errorf("%s: its previous token %s is still alive", m.host, first[m.host])
		}
	}
	return second
}

// fleetSweepSparesOthers: sweep on one machine revokes its own stale token,
// spares the others' (second) and lists them.
func fleetSweepSparesOthers(t *testing.T, x *h, ms []machine, second map[string]string) {
	t.Helper()
	// mintByHand tags it with user.Current, the binary's user tag, as x.env
	// sets no USER.
	extra := x.mintByHand("extra devvm-1", "devvm-1")
	r := x.runOn(ms[0], "sweep", "--apply")
	wantExit(t, "sweep --apply on devvm-1", r, 0)
	wantIn(t, "sweep --apply on devvm-1 stderr", r.stderr, "revoked 1 stale")
	wantIn(t, "sweep --apply on devvm-1 stderr", r.stderr, "3 other machines'")
	for _, m := range ms[1:] {
		if !strings.Contains(r.stdout, "other machine's (host="+m.host+"): never revoked") {
			t.Errorf("sweep does not list %s's token as another machine's:\n%s", m.host, r.stdout)
		}
		if !x.alive(second[m.host]) {
			t.Errorf("sweep on devvm-1 revoked %s's token", m.host)
		}
	}
	if x.alive(extra.Accessor) {
		t.Error("sweep --apply left devvm-1's own stale token alive")
	}
}

// fleetStatusShowsTags: status, as JSON and as text, shows the tags.
func fleetStatusShowsTags(t *testing.T, x *h, ms []machine) {
	t.Helper()
	r := x.runOn(ms[1], "status", "--json")
	var st struct {
		Meta map[string]string `json:"meta"`
		Host string            `json:"this_host"`
	}
	wantExit(t, "status --json", r, 0)
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json does not parse: %v", err)
	}
	if st.Meta["host"] != "devvm-2" {
		t.Errorf("status meta host=%q, want devvm-2 (meta %v)", st.Meta["host"], st.Meta)
	}
	if st.Meta["managed_by"] != "vault-token-renew" {
		t.Errorf("status meta managed_by=%q, want vault-token-renew (meta %v)", st.Meta["managed_by"], st.Meta)
	}
	if st.Host != "devvm-2" {
		t.Errorf("status this_host %q, want devvm-2", st.Host)
	}
	r = x.runOn(ms[1], "status")
	wantIn(t, "status text", r.stdout, "host=devvm-2")
	wantIn(t, "status text", r.stdout, "managed_by=vault-token-renew")
}

// TestSweepApplyRefusesForeignToken: the heal that a foreign token calls
// for sweeps anyway, with the right keep set; a bare sweep must not.
func TestSweepApplyRefusesForeignToken(t *testing.T) {
	x := newH(t)
	stale := x.periodic("stale")
	login := x.login()
	x.put(login)
	r := x.run("sweep", "--apply")
	wantExit(t, "sweep --apply with a foreign token", r, 1)
	wantIn(t, "sweep --apply with a foreign token stderr", r.stderr, "cause=foreign-token")
	wantIn(t, "sweep --apply with a foreign token stderr", r.stderr, "run vault-token-renew first")
	if !x.alive(stale.Accessor) {
		t.Errorf("sweep --apply revoked the stale token %s while refusing", stale.Accessor)
	}
	if string(x.fileBytes()) != login.Secret {
		t.Error("sweep --apply changed the token file while refusing")
	}
	r = x.run("sweep")
	wantExit(t, "dry sweep with a foreign token", r, 0)
	wantIn(t, "dry sweep with a foreign token stdout", r.stdout, "would revoke")
	if !slices.Contains(x.periodicAccessors(), stale.Accessor) {
		t.Fatal("dry sweep revoked")
	}
}
