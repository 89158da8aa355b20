//go:build integration

package integration

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

// newHOnCluster is newH on a real 3-node Vault cluster on integrated
// storage (raft), provisioned through its active node. A cluster that
// cannot start (no Vault binary among the causes) fails the test, under
// CI=true and everywhere else: it is never skipped. The nodes are killed
// at the end, and their logs shown first when the test failed.
func newHOnCluster(t *testing.T) (*h, *devvault.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	var progress bytes.Buffer
	c, err := devvault.StartCluster(ctx, 3, &progress)
	if s := strings.TrimSpace(progress.String()); s != "" {
		t.Log(s)
	}
	if err != nil {
		t.Fatalf("no 3-node vault cluster to test on (a failure, never a skip): %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the cluster's vault logs:\n%s", c.Logs(40))
		}
		c.Stop()
	})
	active, err := c.Active(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := devvault.Provision(ctx, c.Server(active))
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	x := &h{t: t, ctx: ctx, f: f, home: home, file: filepath.Join(home, ".vault-token"), secrets: c.Secrets()}
	x.files = []string{x.file}
	t.Cleanup(x.assertNoSecretInOutput)
	return x, c
}

// via points x's fixture, and so x.run, at node i of c.
func (x *h) via(c *devvault.Cluster, i int) {
	x.t.Helper()
	f, err := x.f.Via(c.Server(i))
	if err != nil {
		x.t.Fatal(err)
	}
	x.f = f
}

// step runs one step of a sequenced test as a subtest, with x acting for
// it, and ends the test when the step failed: each step starts from the
// cluster as the one before should have left it.
func step(t *testing.T, x *h, name string, fn func(t *testing.T)) {
	t.Helper()
	began := time.Now()
	ok := t.Run(name, func(t *testing.T) {
		parent := x.t
		x.t = t
		defer func() { x.t = parent }()
		fn(t)
	})
	t.Logf("step %q took %s", name, time.Since(began).Round(100*time.Millisecond))
	if !ok {
		t.FailNow()
	}
}

// TestClusterStandby: the renewer pointed at a standby node, which forwards
// the token requests to the active one (request forwarding, over the
// cluster port), renews our periodic token and heals a login, exactly as
// on a single server.
func TestClusterStandby(t *testing.T) {
	x, c := newHOnCluster(t)
	sb, err := c.Standby(x.ctx)
	if err != nil {
		t.Fatal(err)
	}
	env := x.env(c.Nodes[sb].Addr)
	step(t, x, "our periodic token: OK", func(t *testing.T) {
		x.put(x.periodic("periodic"))
		before := x.fileBytes()
		r := x.runEnv(env)
		wantExit(t, "a run through the standby on our periodic token", r, 0)
		wantIn(t, "the closing line", r.closing, "OK: renewed periodic token")
		if !bytes.Equal(x.fileBytes(), before) {
			t.Error("an OK run changed the token file")
		}
	})
	step(t, x, "a login: HEALED", func(t *testing.T) {
		login := x.login()
		x.put(login)
		r := x.runEnv(env)
		wantExit(t, "a run through the standby on a login", r, 0)
		wantIn(t, "the closing line", r.closing, "HEALED: re-minted from foreign dn=userpass-wizard")
		x.wantFileOurs()
		if !x.alive(login.Accessor) {
			t.Error("the heal revoked the login token")
		}
	})
	if now, err := c.Active(x.ctx); err != nil || now == sb {
		t.Errorf("after the runs node %d is active (%v): the runs went to a standby only if it stayed one", now, err)
	}
}

// wantFileOurs: the token file holds a working periodic token of ours.
func (x *h) wantFileOurs() devvault.Info {
	x.t.Helper()
	info, err := x.fileToken()
	if err != nil {
		x.t.Fatalf("the token file's token does not work: %v", err)
	}
	if info.DisplayName != "token-devvm-wizard" || info.Period != 768*time.Hour {
		x.t.Errorf("the file holds %q with period %s, want token-devvm-wizard with 768h", info.DisplayName, info.Period)
	}
	return info
}

// failover is TestClusterFailover's cluster and what its steps learned.
type failover struct {
	x     *h
	c     *devvault.Cluster
	first string // the periodic token the ledger held before the lost create
	lost  string // the token minted by the create whose answer was lost
}

// TestClusterFailover: the active node is SIGKILLed right after it minted
// the heal's token, so the answer is lost: the run fails and the file is
// untouched; after failover a heal on a surviving node succeeds, and the
// walk it names leaves exactly one live periodic token, the file's. Then
// with two of three nodes down a run fails for a cause that is not the
// token's, in bounded time; with the nodes restarted it says OK.
func TestClusterFailover(t *testing.T) {
	x, c := newHOnCluster(t)
	fo := &failover{x: x, c: c}
	step(t, x, "the ledger whole first", fo.ledgerWhole)
	step(t, x, "active killed after minting: FAIL", fo.killedAfterMint)
	step(t, x, "after failover: HEALED, then the walk", fo.healAfterFailover)
	step(t, x, "two of three nodes down: FAIL", fo.noQuorum)
	step(t, x, "nodes restarted: OK", fo.restarted)
}

// ledgerWhole puts our periodic token in the file, runs (OK) and walks, so
// that the ledger has no gap of its own before the lost create: whatever
// gap a later heal names is the lost create's.
func (fo *failover) ledgerWhole(t *testing.T) {
	x := fo.x
	p := x.periodic("first periodic")
	fo.first = p.Accessor
	x.put(p)
	wantExit(t, "a run on our periodic token", x.run(), 0)
	x.walk()
}

// killedAfterMint runs a heal through a proxy in front of the active node.
// Once the node has answered the heal's create, the proxy SIGKILLs the
// node and drops the connection: Vault minted, and the answer is lost. The
// renewer retries the create (VAULT_MAX_RETRIES, 2 by default), and with
// no node behind it the proxy answers those itself with a 502, as a load
// balancer would: so today the run fails with cause=server-error at the
// create, and says the walk finds what may have been minted.
func (fo *failover) killedAfterMint(t *testing.T) {
	x, c := fo.x, fo.c
	active, err := c.Active(x.ctx)
	if err != nil {
		t.Fatal(err)
	}
	x.via(c, active)
	var minted atomic.Value
	var creates atomic.Int32
	p := newFaultProxy(t, x, func(p *faultProxy, w http.ResponseWriter, r *http.Request) bool {
		if !isCreate(r) || creates.Add(1) != 1 {
			return false
		}
		minted.Store(mintedAccessor(p.vaultAnswer(r).Body.Bytes()))
		c.Kill(active)
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
		return true
	})
	x.put(x.login())
	before := x.fileBytes()
	r := x.runEnv(x.env(p.addr))
	wantExit(t, "a heal whose minting node was killed", r, 1)
	fail := wantLine(t, "the heal", r.stderr, "FAIL: could not mint a periodic token")
	for _, want := range []string{"cause=server-error", "stage=create", "vault may have minted a token before the answer was lost: the ledger knows, and the walk (vault-token-renew sweep --apply, or the walk unit a run starts) finds and revokes it"} {
		wantIn(t, "the FAIL line", fail, want)
	}
	if n := creates.Load(); n != 3 {
		t.Errorf("the proxy saw %d creates, want 3 (the one minted, then 2 retries)", n)
	}
	if !bytes.Equal(x.fileBytes(), before) {
		t.Error("a failed heal changed the token file")
	}
	fo.lost, _ = minted.Load().(string)
	if fo.lost == "" || c.Nodes[active].Running() {
		t.Fatalf("premise: the active node minted (accessor %q) and was killed (running: %v)", fo.lost, c.Nodes[active].Running())
	}
}

// healAfterFailover waits for a new leader among the two nodes left, and
// heals on it. The token whose answer was lost lives on the cluster (Vault
// committed it before answering). The heal does not walk: it retires the
// ledger's previous token, says the lost create left a gap (the cluster is
// the same one, by sys/health's cluster_id, so not other-vault) and names
// the walk; the walk revokes the lost token, and keeps the gap for a walk
// more than 5 minutes after the create.
func (fo *failover) healAfterFailover(t *testing.T) {
	x, c := fo.x, fo.c
	began := time.Now()
	now, err := c.WaitLeader(x.ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover: %s active %s after the failed heal ended", c.Nodes[now].ID, time.Since(began).Round(100*time.Millisecond))
	x.via(c, now)
	if !x.alive(fo.lost) {
		t.Fatalf("premise: the token minted by the lost create (accessor %s) lives on the cluster after failover", fo.lost)
	}
	r := x.run()
	wantExit(t, "the heal after failover", r, 0)
	healed := wantLine(t, "the heal after failover", r.stderr, "HEALED: re-minted from foreign dn=userpass-wizard (revoked 1 stale, from the ledger)")
	for _, want := range []string{"gap=unrecorded-create ", `next="find them: vault-token-renew sweep --apply"`,
		"a token minted by a create whose answer was lost (a crash, a kill, a dropped connection) may remain"} {
		wantIn(t, "the HEALED line", healed, want)
	}
	if !x.alive(fo.lost) || x.alive(fo.first) {
		t.Errorf("after the heal: the lost create's token alive %v (want true: a heal never walks), the first periodic token alive %v (want false: the ledger's)", x.alive(fo.lost), x.alive(fo.first))
	}
	walk := x.run("sweep", "--apply", "--max-rps", "0")
	wantExit(t, "the walk", walk, 0)
	wantIn(t, "the walk's closing line", walk.closing, "warn: sweep: revoked 1 stale token-devvm-wizard, kept 1")
	wantIn(t, "the walk's closing line", walk.closing, "the ledger still has a gap: a token minted by a create whose answer was lost")
	info := x.wantFileOurs()
	if live := x.periodicAccessors(); !slices.Equal(live, []string{info.Accessor}) || x.alive(fo.lost) {
		t.Errorf("live periodic tokens %v, want exactly the file's %s (the lost create's %s alive: %v)", live, info.Accessor, fo.lost, x.alive(fo.lost))
	}
}

// noQuorum kills the active node too: one node of three is left, with no
// quorum, so no new leader can be elected. The node left still names the
// killed one as the leader (the HA lock entry in its raft store), cannot
// forward to it, and redirects the client to its API address instead. So
// the run fails at the lookup with cause=unreachable and an error naming
// the dead node's address; its next= hint says the node at VAULT_ADDR
// answered and the one it sent the request on to did not (a lost active
// node), rather than send the operator to check the address that is up.
// Not the token's fault, and the file untouched. That is
// the cause --wait-unreachable waits on (the unit: 10m); here it is 0, and
// the run ends within the API client's own retries.
func (fo *failover) noQuorum(t *testing.T) {
	x, c := fo.x, fo.c
	active, err := c.Active(x.ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(active)
	left := slices.IndexFunc(c.Nodes, func(n *devvault.Node) bool { return n.Running() })
	if named, err := c.LeaderNamedBy(x.ctx, left); err != nil || named != c.Nodes[active].Addr {
		t.Errorf("the node left names %q (%v) as the leader, want the killed %s", named, err, c.Nodes[active].Addr)
	}
	before := x.fileBytes()
	began := time.Now()
	r := x.runEnv(x.env(c.Nodes[left].Addr, "VTR_WAIT_UNREACHABLE=0s"))
	took := time.Since(began)
	wantExit(t, "a run with two of three nodes down", r, 1)
	fail := wantLine(t, "the run", r.stderr, "FAIL: could not look up the token in the file")
	for _, want := range []string{"cause=unreachable ", "stage=lookup", strings.TrimPrefix(c.Nodes[active].Addr, "http://") + ": connect: connection refused",
		`next="vault at ` + c.Nodes[left].Addr + " answered and sent the request on to " + c.Nodes[active].Addr + " (the active node it names)"} {
		wantIn(t, "the FAIL line", fail, want)
	}
	if strings.Contains(fail, "check VAULT_ADDR") {
		t.Error("the hint sends the operator to VAULT_ADDR, the node that answered")
	}
	if took > 30*time.Second {
		t.Errorf("the run took %s with --wait-unreachable 0", took)
	}
	if !bytes.Equal(x.fileBytes(), before) {
		t.Error("a failed run changed the token file")
	}
}

// restarted starts the two killed nodes again on their own directories and
// unseals them: the cluster has its quorum and a leader, and a run says OK.
func (fo *failover) restarted(t *testing.T) {
	x, c := fo.x, fo.c
	for i, n := range c.Nodes {
		if !n.Running() {
			if err := c.Restart(x.ctx, i); err != nil {
				t.Fatal(err)
			}
		}
	}
	now, err := c.WaitLeader(x.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitVoters(x.ctx); err != nil {
		t.Fatal(err)
	}
	x.via(c, now)
	before := x.fileBytes()
	r := x.run()
	wantExit(t, "a run after the restart", r, 0)
	wantIn(t, "the closing line", r.closing, "OK: renewed periodic token")
	// The walk came within 5 minutes of the lost create, so the gap stays.
	wantIn(t, "the closing line", r.closing, "gap=unrecorded-create ")
	if !bytes.Equal(x.fileBytes(), before) {
		t.Error("an OK run changed the token file")
	}
}
