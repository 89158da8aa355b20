package renew

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/failure/failuretest"
	"github.com/devvm/vault-token-renew/tokenstore"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/sweep"
)

// fakeVault is a token store in memory, keyed by secret. It answers with
// failure.StatusError values, as the real adapter does.
type fakeVault struct {
	mu        sync.Mutex
	bySecret  map[string]*decide.TokenInfo
	createErr map[string]error        // by secret: how Vault answers that token's create
	mintAs    func(*decide.TokenInfo) // lets a test make Vault mint something odd
	lookupErr error                   // every lookup-self fails with this
	lookupN   int                     // ... only after this many successful lookups
	renewErr  error
	revokeErr map[string]error // by accessor
	renewed   []string
	created   []string // accessors minted
	revoked   []string // accessors revoked
	n         int
	// maxTTL caps every TTL as a token mount's max TTL does on real Vault:
	// the period stays, the TTL is capped, and Vault warns.
	maxTTL time.Duration
	// loseCreates makes this many creates mint and then fail with a 502,
	// as a create whose answer was lost after Vault minted.
	loseCreates int
	// listed counts LISTs of every accessor (a heal with a whole ledger
	// makes none), and lookedUp the lookups by accessor.
	listed, lookedUp int
	// beforeCreate, if set, runs as each create arrives.
	beforeCreate func()
	// listHook, if set, runs as a walk lists every accessor; listErr makes
	// the list fail.
	listHook func()
	listErr  error
	// cluster is what sys/health names this Vault ("fake-cluster" when
	// empty); clusterErr makes it fail.
	cluster     string
	clusterErr  error
	clusterHook func()
	// lookupHook, if set, runs as each accessor is looked up.
	lookupHook func(accessor string)
}

func (f *fakeVault) ClusterID(context.Context) (string, error) {
	if f.clusterHook != nil {
		f.clusterHook()
	}
	if f.clusterErr != nil {
		return "", f.clusterErr
	}
	if f.cluster == "" {
		return "fake-cluster", nil
	}
	return f.cluster, nil
}

const capWarning = "TTL of \"768h\" exceeded the effective max_ttl; TTL value is capped accordingly"

func (f *fakeVault) capped(d time.Duration) (time.Duration, []string) {
	if f.maxTTL > 0 && d > f.maxTTL {
		return f.maxTTL, []string{capWarning}
	}
	return d, nil
}

func newFake() *fakeVault {
	return &fakeVault{bySecret: map[string]*decide.TokenInfo{}, createErr: map[string]error{}, revokeErr: map[string]error{}}
}

func (f *fakeVault) add(secret string, info decide.TokenInfo) {
	f.bySecret[secret] = &info
}

func (f *fakeVault) LookupSelf(_ context.Context, tok string) (decide.TokenInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lookupErr != nil {
		if f.lookupN == 0 {
			return decide.TokenInfo{}, f.lookupErr
		}
		f.lookupN--
	}
	i, ok := f.bySecret[tok]
	if !ok {
		return decide.TokenInfo{}, respErr(403, "permission denied", "invalid token")
	}
	return *i, nil
}

func (f *fakeVault) RenewSelf(_ context.Context, tok string) (Renewal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.renewErr != nil {
		return Renewal{}, f.renewErr
	}
	i := f.bySecret[tok]
	var warn []string
	i.TTL, warn = f.capped(i.Period)
	if i.ExplicitMaxTTL > 0 && i.TTL > i.ExplicitMaxTTL {
		i.TTL = i.ExplicitMaxTTL
	}
	f.renewed = append(f.renewed, i.Accessor)
	return Renewal{TTL: i.TTL, Warnings: warn}, nil
}

func (f *fakeVault) CreateOrphan(_ context.Context, tok string, s decide.Spec) (Created, error) {
	if f.beforeCreate != nil {
		f.beforeCreate()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.createErr[tok]; err != nil {
		return Created{}, err
	}
	f.n++
	secret, acc := fmt.Sprintf("minted-secret-%d", f.n), fmt.Sprintf("minted-acc-%d", f.n)
	ttl, warn := f.capped(s.Period)
	info := &decide.TokenInfo{Accessor: acc, DisplayName: "token-" + s.DisplayName, Period: s.Period, TTL: ttl,
		Orphan: true, Policies: append([]string{"default"}, s.Policies...), Meta: s.Meta()}
	if f.mintAs != nil {
		f.mintAs(info)
	}
	f.bySecret[secret] = info
	f.created = append(f.created, acc)
	if f.loseCreates > 0 {
		f.loseCreates-- // minted, but the answer never reached us
		return Created{}, respErr(502, "bad gateway")
	}
	return Created{Secret: secret, Accessor: acc, Warnings: warn}, nil
}

func (f *fakeVault) RevokeSelf(_ context.Context, tok string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.bySecret[tok]
	if !ok {
		return respErr(403, "permission denied")
	}
	f.revoked = append(f.revoked, i.Accessor)
	delete(f.bySecret, tok)
	return nil
}

func (f *fakeVault) CanCreateOrphan(_ context.Context, tok string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.createErr[tok] == nil, nil
}

func (f *fakeVault) Accessors(string) sweep.Accessors { return fakeAccessors{f} }

type fakeAccessors struct{ f *fakeVault }

func (a fakeAccessors) List(context.Context) ([]string, error) {
	if a.f.listHook != nil {
		a.f.listHook()
	}
	if a.f.listErr != nil {
		return nil, a.f.listErr
	}
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	a.f.listed++
	var out []string
	for _, i := range a.f.bySecret {
		out = append(out, i.Accessor)
	}
	sort.Strings(out)
	return out, nil
}

func (a fakeAccessors) Lookup(ctx context.Context, acc string) (sweep.Token, error) {
	if a.f.lookupHook != nil {
		a.f.lookupHook(acc)
	}
	if err := ctx.Err(); err != nil {
		return sweep.Token{}, err // as the real adapter: a request cut by its context
	}
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	a.f.lookedUp++
	for _, i := range a.f.bySecret {
		if i.Accessor == acc {
			return sweep.Token{Accessor: acc, DisplayName: i.DisplayName, Period: i.Period, Host: i.Meta[decide.MetaHost], User: i.Meta[decide.MetaUser]}, nil
		}
	}
	return sweep.Token{}, sweep.ErrVanished
}

func (a fakeAccessors) Revoke(_ context.Context, acc string) error {
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	if err := a.f.revokeErr[acc]; err != nil {
		return err
	}
	for s, i := range a.f.bySecret {
		if i.Accessor == acc {
			delete(a.f.bySecret, s)
		}
	}
	a.f.revoked = append(a.f.revoked, acc)
	return nil
}

// world is the usual devvm: our periodic token, two stale periodic tokens
// from earlier re-mints, an OIDC login token, a weak k8s token, a near miss.
func world() *fakeVault {
	f := newFake()
	f.add("ours-secret", decide.TokenInfo{Accessor: "ours-acc", DisplayName: "token-devvm-wizard", Period: 768 * time.Hour, TTL: time.Hour, Orphan: true, Policies: []string{"default", "sops-admin", "vault-admin"}})
	f.add("stale1-secret", decide.TokenInfo{Accessor: "stale1-acc", DisplayName: "token-devvm-wizard", Period: 768 * time.Hour, Meta: spec.Meta()})
	f.add("stale2-secret", decide.TokenInfo{Accessor: "stale2-acc", DisplayName: "token-devvm-wizard", Period: 768 * time.Hour})
	f.add("otherhost-secret", decide.TokenInfo{Accessor: "otherhost-acc", DisplayName: "token-devvm-wizard", Period: 768 * time.Hour,
		Meta: map[string]string{decide.MetaManagedBy: decide.ManagedBy, decide.MetaHost: "devvm-b", decide.MetaUser: "wizard"}})
	f.add("oidc-secret", decide.TokenInfo{Accessor: "oidc-acc", DisplayName: "oidc-wizard", TTL: 168 * time.Hour, IdentityPolicies: []string{"vault-admin", "sops-admin"}})
	f.add("weak-secret", decide.TokenInfo{Accessor: "weak-acc", DisplayName: "kubernetes-woodpecker-default", Policies: []string{"default"}})
	f.add("near-secret", decide.TokenInfo{Accessor: "near-acc", DisplayName: "token-devvm-wizard2"})
	f.createErr["weak-secret"] = respErr(403, "permission denied")
	f.createErr["ours-secret"] = nil
	return f
}

func setup(t *testing.T, content string) (Config, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), ".vault-token")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return Config{Store: tokenstore.File{Path: p}, Spec: spec, Concurrency: 4, LockWait: 5 * time.Second, Log: zerolog.Nop(),
		CreateRetries: 2, RetryWait: time.Millisecond}, p
}

func fileIs(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("token file holds %d bytes, not the expected %d (byte-identical check failed)", len(b), len(want))
	}
}

func TestOursIsRenewedAndFileUntouched(t *testing.T) {
	f := world()
	cfg, p := setup(t, "ours-secret\n")
	res, err := runOnce(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.Action != decide.Renew || res.TTL != 768*time.Hour || res.Current.Accessor != "ours-acc" {
		t.Fatalf("result %+v", res)
	}
	if len(f.renewed) != 1 || len(f.created) != 0 || len(f.revoked) != 0 {
		t.Fatalf("renewed %v created %v revoked %v", f.renewed, f.created, f.revoked)
	}
	fileIs(t, p, "ours-secret\n")
}

// staleKnown is a ledger that knows this machine's stale tokens (and
// another machine's, which it must never revoke): a heal retires them.
func staleKnown() *memLedger {
	return wholeLedger("ours-acc", "stale1-acc", "stale2-acc", "otherhost-acc")
}

func TestAdminClobberHeals(t *testing.T) {
	f := world()
	cfg, p := setup(t, "oidc-secret")
	cfg.Ledger = staleKnown()
	res, err := runOnce(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.Action != decide.Heal || res.Minted.Accessor != "minted-acc-1" || res.Current.DisplayName != "oidc-wizard" {
		t.Fatalf("result %+v", res)
	}
	fileIs(t, p, "minted-secret-1")
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	sort.Strings(f.revoked)
	want := []string{"ours-acc", "stale1-acc", "stale2-acc"}
	if fmt.Sprint(f.revoked) != fmt.Sprint(want) || fmt.Sprint(revokedBy(res)) != fmt.Sprint(want) {
		t.Fatalf("revoked %v (report %v), want %v", f.revoked, revokedBy(res), want)
	}
	if _, alive := f.bySecret["oidc-secret"]; !alive {
		t.Fatal("the foreign token was revoked")
	}
	if _, alive := f.bySecret["near-secret"]; !alive {
		t.Fatal("a near-miss token was revoked")
	}
	if _, alive := f.bySecret["otherhost-secret"]; !alive {
		t.Fatal("another machine's periodic token was revoked")
	}
	if got := f.bySecret["minted-secret-1"].Meta; got[decide.MetaHost] != "devvm-a" || got[decide.MetaUser] != "wizard" || got[decide.MetaManagedBy] != decide.ManagedBy {
		t.Fatalf("minted token's meta %v", got)
	}
}

func TestWeakClobberIsDriftAndFileByteIdentical(t *testing.T) {
	for _, refusal := range []error{
		respErr(403, "permission denied"),
		respErr(400, "root or sudo privileges required to create orphan token"),
		respErr(400, "child policies must be subset of parent"),
	} {
		t.Run(refusal.Error(), func(t *testing.T) {
			f := world()
			f.createErr["weak-secret"] = refusal
			cfg, p := setup(t, "weak-secret\n")
			res, err := runOnce(context.Background(), f, cfg)
			if !errors.Is(err, ErrHealDenied) {
				t.Fatalf("err = %v, want ErrHealDenied", err)
			}
			if res.Kind != Drift || res.Current.Accessor != "weak-acc" || res.Current.DisplayName != "kubernetes-woodpecker-default" || res.Refusal == "" {
				t.Fatalf("result %+v", res)
			}
			fileIs(t, p, "weak-secret\n")
			if len(f.created) != 0 || len(f.revoked) != 0 {
				t.Fatalf("created %v revoked %v", f.created, f.revoked)
			}
		})
	}
}

func TestCreateServerErrorIsFailNotDrift(t *testing.T) {
	f := world()
	f.createErr["oidc-secret"] = respErr(500, "internal error")
	cfg, p := setup(t, "oidc-secret")
	res, err := runOnce(context.Background(), f, cfg)
	if err == nil || errors.Is(err, ErrHealDenied) {
		t.Fatalf("err = %v, want a plain failure", err)
	}
	if res.Stage != failure.StageCreate || res.Cause != failure.CauseServer {
		t.Fatalf("stage %q cause %v", res.Stage, res.Cause)
	}
	fileIs(t, p, "oidc-secret")
}

func TestLookupFailuresAreFailAndFileUntouched(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		file  string
		cause failure.Cause
	}{
		{"unreachable", fmt.Errorf("lookup-self: %w", &url.Error{Op: "Get", URL: "http://127.0.0.1:1/v1/auth/token/lookup-self",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}), "ours-secret", failure.CauseUnreachable},
		{"sealed", respErr(503, "Vault is sealed"), "ours-secret", failure.CauseSealed},
		{"dead token", nil, "revoked-secret", failure.CauseTokenDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := world()
			f.lookupErr = tc.err
			cfg, p := setup(t, tc.file)
			res, err := runOnce(context.Background(), f, cfg)
			if err == nil || errors.Is(err, ErrHealDenied) {
				t.Fatalf("err = %v", err)
			}
			if res.Stage != failure.StageLookup || res.Cause != tc.cause {
				t.Fatalf("stage %q cause %v", res.Stage, res.Cause)
			}
			fileIs(t, p, tc.file)
			if len(f.created)+len(f.revoked)+len(f.renewed) != 0 {
				t.Fatal("vault state changed")
			}
		})
	}
}

func TestRenewFailureIsFail(t *testing.T) {
	f := world()
	f.renewErr = respErr(503, "Vault is sealed")
	cfg, p := setup(t, "ours-secret")
	res, err := runOnce(context.Background(), f, cfg)
	if err == nil || res.Stage != failure.StageRenew || res.Cause != failure.CauseSealed {
		t.Fatalf("err %v stage %q cause %v", err, res.Stage, res.Cause)
	}
	fileIs(t, p, "ours-secret")
}

func TestMintedTokenFailingCheckIsRevoked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mintAs func(*decide.TokenInfo)
	}{
		{"not periodic", func(i *decide.TokenInfo) { i.Period = 0 }},
		{"missing policy", func(i *decide.TokenInfo) { i.Policies = []string{"default"} }},
		{"not orphan", func(i *decide.TokenInfo) { i.Orphan = false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := world()
			f.mintAs = tc.mintAs
			cfg, p := setup(t, "oidc-secret")
			res, err := runOnce(context.Background(), f, cfg)
			if !errors.Is(err, failure.ErrMintRejected) || res.Stage != failure.StageCheck {
				t.Fatalf("err %v stage %q", err, res.Stage)
			}
			fileIs(t, p, "oidc-secret")
			if fmt.Sprint(f.revoked) != "[minted-acc-1]" {
				t.Fatalf("revoked %v, want only the minted token", f.revoked)
			}
		})
	}
}

func TestMintedLookupFailureRevokesMinted(t *testing.T) {
	f := world()
	f.lookupErr, f.lookupN = respErr(500, "boom"), 1 // the foreign lookup works, the minted one fails
	cfg, p := setup(t, "oidc-secret")
	res, err := runOnce(context.Background(), f, cfg)
	if err == nil || res.Stage != failure.StageCheck {
		t.Fatalf("err %v stage %q", err, res.Stage)
	}
	fileIs(t, p, "oidc-secret")
	if fmt.Sprint(f.revoked) != "[minted-acc-1]" {
		t.Fatalf("revoked %v", f.revoked)
	}
}

func TestWriteFailureRevokesMintedAndKeepsFile(t *testing.T) {
	f := world()
	cfg, p := setup(t, "oidc-secret")
	cfg.Store = failingStore{cfg.Store, errors.New("injected: no space left on device")}
	res, err := runOnce(context.Background(), f, cfg)
	if err == nil || res.Stage != failure.StageWrite {
		t.Fatalf("err %v stage %q", err, res.Stage)
	}
	fileIs(t, p, "oidc-secret")
	if fmt.Sprint(f.revoked) != "[minted-acc-1]" {
		t.Fatalf("revoked %v, want only the minted token", f.revoked)
	}
}

func TestSweepFailuresDoNotUndoTheHeal(t *testing.T) {
	f := world()
	f.revokeErr["stale1-acc"] = respErr(500, "boom")
	cfg, p := setup(t, "oidc-secret")
	cfg.Ledger = staleKnown()
	res, err := runOnce(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fileIs(t, p, "minted-secret-1")
	if len(res.Sweep.Where(sweep.Record.Failed)) != 1 || res.Sweep.Where(sweep.Record.Failed)[0].Accessor != "stale1-acc" || len(revokedBy(res)) != 2 {
		t.Fatalf("sweep %+v", res.Sweep)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		file    string
		action  decide.Action
		denied  bool
		matched int
	}{
		{file: "ours-secret", action: decide.Renew, matched: 2}, // the ledger's stale, which an OK run retires
		{file: "oidc-secret", action: decide.Heal, matched: 3},  // not the other host's
		{file: "weak-secret", action: decide.Refuse, denied: true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f := world()
			cfg, p := setup(t, tc.file)
			cfg.DryRun, cfg.Ledger = true, staleKnown()
			res, err := runOnce(context.Background(), f, cfg)
			if errors.Is(err, ErrHealDenied) != tc.denied || (!tc.denied && err != nil) {
				t.Fatalf("err = %v", err)
			}
			if res.Plan.Action != tc.action || res.Sweep.Count(sweep.Is(sweep.Stale)) != tc.matched {
				t.Fatalf("action %q matched %d", res.Plan.Action, res.Sweep.Count(sweep.Is(sweep.Stale)))
			}
			fileIs(t, p, tc.file)
			if len(f.created)+len(f.revoked)+len(f.renewed) != 0 {
				t.Fatalf("dry run changed vault: created %v revoked %v renewed %v", f.created, f.revoked, f.renewed)
			}
			if _, err := os.Stat(p + ".lock"); err == nil {
				t.Fatal("dry run created a lock file")
			}
		})
	}
}

func TestMissingTokenFileIsFail(t *testing.T) {
	f := world()
	cfg, p := setup(t, "x")
	os.Remove(p)
	res, err := runOnce(context.Background(), f, cfg)
	if err == nil || res.Stage != failure.StageRead {
		t.Fatalf("err %v stage %q", err, res.Stage)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("a token file was created")
	}
}

func TestConcurrentRunsHealOnce(t *testing.T) {
	f := world()
	cfg, p := setup(t, "oidc-secret")
	cfg.Ledger = staleKnown()
	var wg sync.WaitGroup
	results := make([]Outcome, 2)
	errs := make([]error, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = runOnce(context.Background(), f, cfg)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(f.created) != 1 {
		t.Fatalf("minted %d tokens, want exactly one heal", len(f.created))
	}
	actions := []decide.Action{results[0].Plan.Action, results[1].Plan.Action}
	if !slices.Contains(actions, decide.Heal) || !slices.Contains(actions, decide.Renew) {
		t.Fatalf("actions %v, want one heal and one renew", actions)
	}
	fileIs(t, p, "minted-secret-1")
	live := 0
	for _, i := range f.bySecret {
		if i.DisplayName == "token-devvm-wizard" && i.Meta[decide.MetaHost] != "devvm-b" {
			live++
		}
	}
	if live != 1 {
		t.Fatalf("%d live periodic tokens, want 1", live)
	}
}

func TestSymlinkedTokenFileKeepsLink(t *testing.T) {
	f := world()
	dir := t.TempDir()
	target := filepath.Join(dir, "real-token")
	if err := os.WriteFile(target, []byte("oidc-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, ".vault-token")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: tokenstore.File{Path: link}, Spec: spec, Concurrency: 2, LockWait: time.Second, Log: zerolog.Nop()}
	if _, err := runOnce(context.Background(), f, cfg); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("link replaced")
	}
	b, _ := os.ReadFile(target)
	if !bytes.Equal(b, []byte("minted-secret-1")) {
		t.Fatal("target not replaced")
	}
}

func TestNonPeriodicTokenWithOurNameIsHealed(t *testing.T) {
	f := world()
	f.add("ttl-only-secret", decide.TokenInfo{Accessor: "ttl-only-acc", DisplayName: "token-devvm-wizard", TTL: 24 * time.Hour,
		Orphan: true, Policies: []string{"vault-admin", "sops-admin"}})
	cfg, p := setup(t, "ttl-only-secret")
	res, err := runOnce(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.Action != decide.Heal || len(f.renewed) != 0 {
		t.Fatalf("action %q, renewed %v: a non-periodic token must be healed, not renewed until it dies", res.Plan.Action, f.renewed)
	}
	fileIs(t, p, "minted-secret-1")
}

func TestTokensThatCanNeverMintAreDriftWithoutACreate(t *testing.T) {
	for _, tc := range []struct {
		name, words string
		info        decide.TokenInfo
	}{
		{"batch", "a batch token cannot heal", decide.TokenInfo{DisplayName: "oidc-wizard", Type: "batch", IdentityPolicies: []string{"vault-admin"}}},
		{"use-limited", "a use-limited token cannot heal", decide.TokenInfo{Accessor: "uses-acc", DisplayName: "oidc-wizard", Type: "service", NumUses: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := world()
			f.add("odd-secret", tc.info)
			cfg, p := setup(t, "odd-secret")
			res, err := runOnce(context.Background(), f, cfg)
			if !errors.Is(err, ErrHealDenied) || res.Plan.Action != decide.Refuse || !strings.Contains(res.Refusal, tc.words) {
				t.Fatalf("err %v action %q refusal %q", err, res.Plan.Action, res.Refusal)
			}
			if len(f.created) != 0 {
				t.Fatal("asked vault to mint with a token that never can")
			}
			fileIs(t, p, "odd-secret")
		})
	}
}

func TestRenewalCappedByVault(t *testing.T) {
	for _, tc := range []struct {
		name   string
		maxTTL time.Duration
		fatal  bool
	}{
		{"48h is a warning", 48 * time.Hour, false},
		{"12h is fatal", 12 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := world()
			f.maxTTL = tc.maxTTL
			cfg, p := setup(t, "ours-secret")
			res, err := runOnce(context.Background(), f, cfg)
			if !res.Cap.Capped || res.TTL != tc.maxTTL || len(res.VaultWarnings) != 1 {
				t.Fatalf("cap %+v ttl %s warnings %v", res.Cap, res.TTL, res.VaultWarnings)
			}
			if res.Cap.Explicit || res.Cap.Period != 768*time.Hour {
				t.Fatalf("cap %+v: a mount cap, below the period, is what the report turns into how to lift it", res.Cap)
			}
			if tc.fatal != (err != nil) || (tc.fatal && (!errors.Is(err, failure.ErrCapped) || res.Stage != failure.StageCap || res.Cause != failure.CauseCapped)) {
				t.Fatalf("err %v stage %v cause %v", err, res.Stage, res.Cause)
			}
			fileIs(t, p, "ours-secret")
		})
	}
}

func TestHealCappedByVault(t *testing.T) {
	t.Run("48h heals with a warning", func(t *testing.T) {
		f := world()
		f.maxTTL = 48 * time.Hour
		cfg, p := setup(t, "oidc-secret")
		res, err := runOnce(context.Background(), f, cfg)
		if err != nil || !res.Cap.Capped || res.Cap.Fatal || len(res.VaultWarnings) != 1 {
			t.Fatalf("err %v cap %+v warnings %v", err, res.Cap, res.VaultWarnings)
		}
		fileIs(t, p, "minted-secret-1")
	})
	t.Run("12h fails, revokes the minted token, file untouched", func(t *testing.T) {
		f := world()
		f.maxTTL = 12 * time.Hour
		cfg, p := setup(t, "oidc-secret")
		res, err := runOnce(context.Background(), f, cfg)
		if !errors.Is(err, failure.ErrCapped) || res.Stage != failure.StageCap || res.Cause != failure.CauseCapped {
			t.Fatalf("err %v stage %v cause %v", err, res.Stage, res.Cause)
		}
		fileIs(t, p, "oidc-secret")
		if fmt.Sprint(f.revoked) != "[minted-acc-1]" {
			t.Fatalf("revoked %v, want only the minted token", f.revoked)
		}
		if res.Minted.Accessor != "minted-acc-1" || !res.Minted.Revoked {
			t.Fatalf("minted %q revoked %v: the report must know what happened to the mint", res.Minted.Accessor, res.Minted.Revoked)
		}
	})
	t.Run("explicit max TTL names the day the token dies", func(t *testing.T) {
		f := world()
		created := time.Now().Truncate(time.Second)
		die := created.Add(72 * time.Hour).UTC().Format(time.RFC3339)
		f.mintAs = func(i *decide.TokenInfo) {
			i.ExplicitMaxTTL, i.TTL, i.CreationTime = 72*time.Hour, 72*time.Hour, created
		}
		cfg, _ := setup(t, "oidc-secret")
		res, err := runOnce(context.Background(), f, cfg)
		if err != nil || !res.Cap.Explicit || res.Cap.Dies.Format(time.RFC3339) != die {
			t.Fatalf("err %v cap %+v", err, res.Cap)
		}
	})
}

// TestLostCreateAnswerStrandsNothing: Vault minted, the answer was lost,
// the heal retried and Vault minted again. The lost attempt is unrecorded
// in the ledger: the heal says so, and the walk revokes the first, tagged
// for this machine and not the file's.
func TestLostCreateAnswerStrandsNothing(t *testing.T) {
	f := world()
	f.loseCreates = 1
	cfg, p := setup(t, "oidc-secret")
	cfg.Ledger = staleKnown()
	res, err := runOnce(context.Background(), f, cfg)
	if err != nil || res.Gap != ledger.Unrecorded {
		t.Fatalf("err %v gap %v, want a heal that says a create is unrecorded", err, res.Gap)
	}
	fileIs(t, p, "minted-secret-2")
	if w := walkApply(t, f, cfg); !slices.Contains(revokedBy(w), "minted-acc-1") {
		t.Fatalf("the stranded first mint was not swept: revoked %v", revokedBy(w))
	}
	var live []string
	for _, i := range f.bySecret {
		if i.DisplayName == "token-devvm-wizard" && i.Meta[decide.MetaHost] == "devvm-a" {
			live = append(live, i.Accessor)
		}
	}
	if fmt.Sprint(live) != "[minted-acc-2]" {
		t.Fatalf("live periodic tokens of this machine %v, want exactly the one in the file", live)
	}
}

// TestHealStandsWhenTheSweepCannotRun: the run's time budget runs out
// after the new token is written, before the ledger's stale tokens are
// looked up (deterministically: the fake says when, at the cluster check);
// the heal stands and says its sweep is incomplete.
func TestHealStandsWhenTheSweepCannotRun(t *testing.T) {
	f := world()
	cfg, p := setup(t, "oidc-secret")
	cfg.Ledger = staleKnown()
	ctx := newBudget()
	f.clusterHook = ctx.runOut
	res, err := runOnce(ctx, f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fileIs(t, p, "minted-secret-1")
	if !errors.Is(res.SweepErr, sweep.ErrIncomplete) || !errors.Is(res.SweepErr, context.DeadlineExceeded) {
		t.Fatalf("sweep error %v, want ErrIncomplete for the time budget", res.SweepErr)
	}
	if len(f.revoked) != 0 {
		t.Fatalf("revoked %v after a walk cut short", f.revoked)
	}
}

func TestLockFileThatCannotBeCreatedIsFilesystem(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: tokenstore.File{Path: filepath.Join(notDir, ".vault-token")}, Spec: spec, LockWait: time.Second, Log: zerolog.Nop()}
	res, err := runOnce(context.Background(), world(), cfg)
	if res.Stage != failure.StageLock || res.Cause != failure.CauseFilesystem {
		t.Fatalf("err %v stage %v cause %v, want a filesystem cause, not a held lock", err, res.Stage, res.Cause)
	}
}

func TestHeldLockIsLockHeld(t *testing.T) {
	cfg, _ := setup(t, "ours-secret")
	cfg.LockWait = 100 * time.Millisecond
	held, err := cfg.Store.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	res, err := runOnce(context.Background(), world(), cfg)
	if res.Stage != failure.StageLock || res.Cause != failure.CauseLockHeld {
		t.Fatalf("err %v stage %v cause %v", err, res.Stage, res.Cause)
	}
}

// budget is a context whose deadline passes when the test says so (runOut):
// from then on Done is closed and Err is DeadlineExceeded, as when the
// run's --timeout ran out, with no clock involved.
type budget struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newBudget() *budget { return &budget{Context: context.Background(), done: make(chan struct{})} }

func (b *budget) runOut()               { b.once.Do(func() { close(b.done) }) }
func (b *budget) Done() <-chan struct{} { return b.done }
func (b *budget) Err() error {
	select {
	case <-b.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// TestRunMakesALooseTokenFilePrivate: our token in a file others may read
// is made 0600 by the next run (a dry run changes nothing).
func TestRunMakesALooseTokenFilePrivate(t *testing.T) {
	for _, dry := range []bool{true, false} {
		f := world()
		cfg, p := setup(t, "ours-secret")
		cfg.DryRun = dry
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := runOnce(context.Background(), f, cfg); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		if want := map[bool]os.FileMode{true: 0o644, false: 0o600}[dry]; fi.Mode().Perm() != want {
			t.Errorf("dry run %v: the token file is %o, want %o", dry, fi.Mode().Perm(), want)
		}
	}
}

var respErr = failuretest.Answer

var spec = decide.Spec{DisplayName: "devvm-wizard", Policies: []string{"vault-admin", "sops-admin"}, Period: 768 * time.Hour, Host: "devvm-a", User: "wizard"}

// runOnce and walkOnce are Run and Walk with the outcome's error beside it.
func runOnce(ctx context.Context, v Vault, cfg Config) (Outcome, error) {
	o := Run(ctx, v, cfg)
	return o, o.Err
}

func walkOnce(ctx context.Context, v Vault, cfg Config, wo WalkOptions) (Outcome, error) {
	o := Walk(ctx, v, cfg, wo)
	return o, o.Err
}

// revokedBy are the accessors o's sweep revoked, sorted.
func revokedBy(o Outcome) []string {
	out := sweep.AccessorsOf(o.Sweep.Where(sweep.DidThis(sweep.Revoked)))
	sort.Strings(out)
	return out
}

// failingStore is a store whose writes fail with err, after the mint.
type failingStore struct {
	tokenstore.Store
	err error
}

func (f failingStore) Replace(context.Context, string, string) error { return f.err }
