package devvault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"
	"golang.org/x/sync/errgroup"
)

// Cluster is a real Vault cluster on integrated storage (raft): n nodes,
// each the built Vault binary (Binary) as a local process on loopback,
// with its own temp directory for its config, raft data and log. It is
// initialised with one key share; the unseal key and the root token live
// only in memory and are never printed (Logs blanks them).
type Cluster struct {
	Nodes     []*Node
	RootToken string
	Version   string

	bin        string
	dir        string
	unsealKeys []string // the one key share, hex and base64: only the hex one is used
}

// Node is one server of a Cluster. Kill and Restart keep its directory and
// ports, so a restarted node is the same raft member.
type Node struct {
	ID          string // raft node_id: node1, node2, ...
	Addr        string // the API: http://127.0.0.1:port
	ClusterAddr string // raft and request forwarding: https://127.0.0.1:port
	dir         string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// errExited ends a wait early: the node it waits on is not running.
var errExited = errors.New("the vault process exited")

// StartCluster brings up an n-node Vault cluster as local processes: node1
// initialised and unsealed, the others joined through retry_join and
// unsealed, all n raft voters, and one active node that every node names.
// On failure every process is killed and the error carries the nodes' log
// tails. Vault comes only as the built binary here (no image): a missing
// binary is an error, which callers report as a failure, never a skip.
func StartCluster(ctx context.Context, n int, progress io.Writer) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("devvault: a cluster of %d nodes", n)
	}
	v, err := Version()
	if err != nil {
		return nil, err
	}
	bin, err := Binary(ctx, progress)
	if err != nil {
		return nil, fmt.Errorf("devvault: no vault binary for the cluster: %w", err)
	}
	c := &Cluster{Version: v, bin: bin}
	began := time.Now()
	if err := c.boot(ctx, n); err != nil {
		logs := c.Logs(25)
		c.Stop()
		return nil, fmt.Errorf("devvault: the %d-node vault cluster did not come up: %w\n%s", n, err, logs)
	}
	fmt.Fprintf(progress, "devvault: vault %s cluster of %d raft nodes as local processes on loopback, up in %s\n",
		v, n, time.Since(began).Round(100*time.Millisecond))
	return c, nil
}

func (c *Cluster) boot(ctx context.Context, n int) error {
	if err := c.layout(n); err != nil {
		return err
	}
	for _, nd := range c.Nodes {
		if err := nd.start(c.bin); err != nil {
			return err
		}
	}
	if err := c.initialize(ctx); err != nil {
		return err
	}
	if err := c.unseal(ctx, 0); err != nil {
		return err
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		return err
	}
	if err := c.tuneAutopilot(ctx); err != nil {
		return err
	}
	// The joining nodes are unsealed together: each join waits on
	// retry_join's own 2-second retry.
	var g errgroup.Group
	for i := 1; i < n; i++ {
		g.Go(func() error { return c.unseal(ctx, i) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := c.WaitVoters(ctx); err != nil {
		return err
	}
	_, err := c.WaitLeader(ctx)
	return err
}

// layout picks each node's ports and writes its config: node1 bootstraps
// the cluster, the others join it with retry_join.
func (c *Cluster) layout(n int) error {
	dir, err := os.MkdirTemp("", "vault-cluster-")
	if err != nil {
		return err
	}
	c.dir = dir
	taken := map[int]bool{}
	for i := range n {
		api, err1 := distinctPort(taken)
		cl, err2 := distinctPort(taken)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		nd := &Node{ID: fmt.Sprintf("node%d", i+1), Addr: fmt.Sprintf("http://127.0.0.1:%d", api),
			ClusterAddr: fmt.Sprintf("https://127.0.0.1:%d", cl), dir: filepath.Join(dir, fmt.Sprintf("node%d", i+1))}
		if err := os.MkdirAll(filepath.Join(nd.dir, "raft"), 0o700); err != nil {
			return err
		}
		join := ""
		if i > 0 {
			join = c.Nodes[0].Addr
		}
		if err := os.WriteFile(nd.configPath(), []byte(nd.config(api, cl, join)), 0o600); err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, nd)
	}
	return nil
}

// distinctPort is a free loopback port not already given to this cluster:
// freePort alone may hand out a port twice once it has been closed.
func distinctPort(taken map[int]bool) (int, error) {
	for range 20 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		if !taken[p] {
			taken[p] = true
			return p, nil
		}
	}
	return 0, errors.New("devvault: no distinct free port")
}

// config is the node's server config. Autopilot stays on, and the raft
// timing (performance_multiplier) stays at Vault's default: a failover
// takes as long as on a production cluster (about 10 to 20 seconds here),
// and a loaded 2-core machine does not make the nodes elect a new leader
// on their own in the middle of a test.
func (nd *Node) config(api, cluster int, join string) string {
	retry := ""
	if join != "" {
		retry = fmt.Sprintf("  retry_join {\n    leader_api_addr = %q\n  }\n", join)
	}
	return fmt.Sprintf(`ui            = false
disable_mlock = true
api_addr      = %q
cluster_addr  = %q

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

storage "raft" {
  path    = %q
  node_id = %q
%s}
`, nd.Addr, nd.ClusterAddr, api, cluster, filepath.Join(nd.dir, "raft"), nd.ID, retry)
}

func (nd *Node) configPath() string { return filepath.Join(nd.dir, "vault.hcl") }
func (nd *Node) logPath() string    { return filepath.Join(nd.dir, "vault.log") }

// start runs the node's process, its output appended to its log file.
func (nd *Node) start(bin string) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.runningLocked() {
		return fmt.Errorf("devvault: %s is already running", nd.ID)
	}
	logf, err := os.OpenFile(nd.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "server", "-config="+nd.configPath())
	// A clean environment: no VAULT_* of the caller's, no real HOME.
	cmd.Env = []string{"HOME=" + nd.dir, "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("devvault: start %s: %w", nd.ID, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	nd.cmd, nd.done = cmd, done
	return nil
}

// Running says whether the node's process is alive.
func (nd *Node) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.runningLocked()
}

func (nd *Node) runningLocked() bool {
	if nd.done == nil {
		return false
	}
	select {
	case <-nd.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the node's process group, if it runs.
func (nd *Node) signal(sig syscall.Signal) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if !nd.runningLocked() {
		return fmt.Errorf("devvault: %s is not running", nd.ID)
	}
	return syscall.Kill(-nd.cmd.Process.Pid, sig)
}

// kill SIGKILLs the node (no shutdown, no step-down) and waits until it is
// gone.
func (nd *Node) kill() {
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// nodeClient speaks to one node only, with no retries and no token unless
// given one.
func nodeClient(addr, token string, timeout time.Duration) (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.Timeout = timeout
	cl, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("devvault: client: %w", err)
	}
	cl.SetToken(token)
	cl.SetNamespace("")
	return cl, nil
}

// poll calls try until it returns nil, for at most limit: an error
// wrapping errExited, or ctx ending, stops it early. The error says what
// try said last.
func poll(ctx context.Context, limit time.Duration, what string, try func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := try()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errExited):
			return fmt.Errorf("waiting for %s: %w", what, err)
		case time.Now().After(deadline):
			return fmt.Errorf("waiting for %s: gave up after %s: %w", what, limit, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %w)", what, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// initialize waits for node1's API, then initialises the cluster there
// once (a retried init could lose the keys of a first one that worked):
// one key share, threshold one, kept in memory.
func (c *Cluster) initialize(ctx context.Context) error {
	nd := c.Nodes[0]
	cl, err := nodeClient(nd.Addr, "", 30*time.Second)
	if err != nil {
		return err
	}
	err = poll(ctx, 60*time.Second, nd.ID+"'s API", func() error {
		if !nd.Running() {
			return errExited
		}
		_, err := cl.Sys().InitStatusWithContext(ctx)
		return err
	})
	if err != nil {
		return err
	}
	resp, err := cl.Sys().InitWithContext(ctx, &vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		return fmt.Errorf("devvault: sys/init on %s: %w", nd.ID, err)
	}
	if len(resp.Keys) != 1 || resp.RootToken == "" {
		return fmt.Errorf("devvault: sys/init on %s answered %d keys and a root token of %d bytes", nd.ID, len(resp.Keys), len(resp.RootToken))
	}
	c.unsealKeys = append([]string{resp.Keys[0]}, resp.KeysB64...)
	c.RootToken = resp.RootToken
	return nil
}

// unseal gives node i the key until it says it is unsealed. A node that
// joins through retry_join refuses the key until it has the leader's
// challenge, then completes its join with it; the key is sent again only
// if the node stays sealed for long after taking it.
func (c *Cluster) unseal(ctx context.Context, i int) error {
	nd := c.Nodes[i]
	cl, err := nodeClient(nd.Addr, "", 60*time.Second)
	if err != nil {
		return err
	}
	var sent time.Time
	return poll(ctx, 120*time.Second, nd.ID+" unsealed", func() error {
		if !nd.Running() {
			return errExited
		}
		st, err := cl.Sys().SealStatusWithContext(ctx)
		switch {
		case err != nil:
			return err
		case !st.Sealed:
			return nil
		case time.Since(sent) < 20*time.Second:
			return errors.New("still sealed after taking the key")
		}
		st, err = cl.Sys().UnsealWithContext(ctx, c.unsealKeys[0])
		if err != nil {
			return fmt.Errorf("sys/unseal: %w", err)
		}
		sent = time.Now()
		if st.Sealed {
			return errors.New("still sealed after taking the key")
		}
		return nil
	})
}

// tuneAutopilot shortens the time autopilot lets a joined node prove
// stable before it makes it a voter (10s by default) to 2s, so that a
// cluster starts sooner. Dead servers are never cleaned up (the default),
// so a killed node stays a member and rejoins as itself on Restart.
func (c *Cluster) tuneAutopilot(ctx context.Context) error {
	i, err := c.Active(ctx)
	if err != nil {
		return err
	}
	cl, err := nodeClient(c.Nodes[i].Addr, c.RootToken, 30*time.Second)
	if err != nil {
		return err
	}
	_, err = cl.Logical().WriteWithContext(ctx, "sys/storage/raft/autopilot/configuration",
		map[string]interface{}{"server_stabilization_time": "2s"})
	if err != nil {
		return fmt.Errorf("devvault: autopilot configuration: %w", err)
	}
	return nil
}

// RaftServer is one entry of the raft configuration.
type RaftServer struct {
	NodeID  string `json:"node_id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
}

// RaftServers is the raft configuration (sys/storage/raft/configuration),
// asked of the active node.
func (c *Cluster) RaftServers(ctx context.Context) ([]RaftServer, error) {
	i, err := c.Active(ctx)
	if err != nil {
		return nil, err
	}
	cl, err := nodeClient(c.Nodes[i].Addr, c.RootToken, 10*time.Second)
	if err != nil {
		return nil, err
	}
	s, err := cl.Logical().ReadWithContext(ctx, "sys/storage/raft/configuration")
	if err != nil {
		return nil, fmt.Errorf("devvault: raft configuration: %w", err)
	}
	if s == nil || s.Data == nil {
		return nil, errors.New("devvault: raft configuration: empty answer")
	}
	b, err := json.Marshal(s.Data["config"])
	if err != nil {
		return nil, err
	}
	var conf struct{ Servers []RaftServer }
	if err := json.Unmarshal(b, &conf); err != nil {
		return nil, fmt.Errorf("devvault: raft configuration: %w", err)
	}
	return conf.Servers, nil
}

// WaitVoters waits until the raft configuration holds every node, each a
// voter: autopilot promotes a joined node only once it has been stable.
func (c *Cluster) WaitVoters(ctx context.Context) error {
	return poll(ctx, 90*time.Second, "every node a raft voter", func() error {
		servers, err := c.RaftServers(ctx)
		if err != nil {
			return err
		}
		voters := 0
		for _, s := range servers {
			if s.Voter {
				voters++
			}
		}
		if len(servers) != len(c.Nodes) || voters != len(c.Nodes) {
			return fmt.Errorf("raft configuration has %d servers of which %d voters, want %d each", len(servers), voters, len(c.Nodes))
		}
		return nil
	})
}

// leaders asks every running node sys/leader. It returns the node that
// says it is active (-1 if none) and, for every node that answered, the
// API address it names as the leader. A sealed node does not answer.
func (c *Cluster) leaders(ctx context.Context) (int, map[int]string, error) {
	active, named := -1, map[int]string{}
	for i, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		cl, err := nodeClient(nd.Addr, "", 5*time.Second)
		if err != nil {
			return -1, nil, err
		}
		l, err := cl.Sys().LeaderWithContext(ctx)
		if err != nil {
			if st, serr := cl.Sys().SealStatusWithContext(ctx); serr == nil && st.Sealed {
				continue
			}
			return -1, nil, fmt.Errorf("%s: sys/leader: %w", nd.ID, err)
		}
		if l.IsSelf {
			active = i
		}
		named[i] = l.LeaderAddress
	}
	return active, named, nil
}

// Active is the index of the active node: one running node says it is
// (sys/leader is_self) and every other running, unsealed node names it as
// the leader. Otherwise it is an error: no leader, or not yet agreed.
func (c *Cluster) Active(ctx context.Context) (int, error) {
	active, named, err := c.leaders(ctx)
	if err != nil {
		return -1, err
	}
	if active < 0 {
		return -1, errors.New("devvault: no node of the cluster is active")
	}
	for i, addr := range named {
		if addr != c.Nodes[active].Addr {
			return -1, fmt.Errorf("devvault: %s is active but %s names %q as the leader", c.Nodes[active].ID, c.Nodes[i].ID, addr)
		}
	}
	return active, nil
}

// Standby is the index of a running, unsealed node that is not the active
// one and names the active one as its leader (so it forwards to it).
func (c *Cluster) Standby(ctx context.Context) (int, error) {
	active, err := c.Active(ctx)
	if err != nil {
		return -1, err
	}
	_, named, err := c.leaders(ctx)
	if err != nil {
		return -1, err
	}
	for i := range c.Nodes {
		if _, ok := named[i]; ok && i != active && named[i] == c.Nodes[active].Addr {
			return i, nil
		}
	}
	return -1, errors.New("devvault: no standby node")
}

// LeaderNamedBy is the API address node i names as the active node
// (sys/leader's leader_address): its own when it is active, "" when it
// knows of none.
func (c *Cluster) LeaderNamedBy(ctx context.Context, i int) (string, error) {
	cl, err := nodeClient(c.Nodes[i].Addr, "", 5*time.Second)
	if err != nil {
		return "", err
	}
	l, err := cl.Sys().LeaderWithContext(ctx)
	if err != nil {
		return "", fmt.Errorf("devvault: %s: sys/leader: %w", c.Nodes[i].ID, err)
	}
	return l.LeaderAddress, nil
}

// WaitLeader waits (at most 90s) until the running nodes agree on an
// active node, and returns its index.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	active := -1
	err := poll(ctx, 90*time.Second, "an active node", func() error {
		i, err := c.Active(ctx)
		active = i
		return err
	})
	return active, err
}

// Kill SIGKILLs node i, as a crash would, and waits until it is gone.
func (c *Cluster) Kill(i int) { c.Nodes[i].kill() }

// Restart starts node i again on its own directory and ports, and unseals
// it: it rejoins the cluster as the member it was.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if err := c.Nodes[i].start(c.bin); err != nil {
		return err
	}
	return c.unseal(ctx, i)
}

// Stop kills every node and removes their directories; it may be called
// more than once.
func (c *Cluster) Stop() {
	for _, nd := range c.Nodes {
		nd.kill()
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// Server is node i as a Server, for Provision and the tests' clients: its
// address and the cluster's root token. Pause and Unpause SIGSTOP and
// SIGCONT the node; Stop kills it (the cluster's Stop ends them all).
func (c *Cluster) Server(i int) *Server {
	nd := c.Nodes[i]
	return &Server{
		Addr: nd.Addr, RootToken: c.RootToken, Kind: KindVault, Mode: ModeProcess, Version: c.Version,
		pause:   func(context.Context) error { return nd.signal(syscall.SIGSTOP) },
		unpause: func(context.Context) error { return nd.signal(syscall.SIGCONT) },
		stop:    func(context.Context) error { nd.kill(); return nil },
	}
}

// Secrets are the cluster's secrets by label (the root token, the unseal
// key in both its forms), for a harness that checks no output holds them.
func (c *Cluster) Secrets() map[string]string {
	out := map[string]string{"root": c.RootToken}
	for i, k := range c.unsealKeys {
		out[fmt.Sprintf("unseal key (%d)", i)] = k
	}
	return out
}

// Logs is the last n lines of every node's log, with the cluster's secrets
// blanked, for a failure's report.
func (c *Cluster) Logs(n int) string {
	var b strings.Builder
	for _, nd := range c.Nodes {
		out, err := os.ReadFile(nd.logPath())
		if err != nil {
			fmt.Fprintf(&b, "== %s: no log: %v\n", nd.ID, err)
			continue
		}
		s := devSecrets.ReplaceAllString(tail(out, n), "$1: [redacted]")
		for label, secret := range c.Secrets() {
			if secret != "" {
				s = strings.ReplaceAll(s, secret, "["+label+": redacted]")
			}
		}
		fmt.Fprintf(&b, "== %s (%s, api %s), last %d lines of its log:\n%s\n", nd.ID, map[bool]string{true: "running", false: "not running"}[nd.Running()], nd.Addr, n, s)
	}
	return b.String()
}

// Via is f driven through another server of the same cluster (a Cluster's
// Server(i)): the same root token, policies and login user, so that a test
// goes on after the node it provisioned through was killed.
func (f *Fixture) Via(s *Server) (*Fixture, error) {
	root, err := s.Client(s.RootToken)
	if err != nil {
		return nil, err
	}
	return &Fixture{Server: s, root: root, password: f.password}, nil
}
