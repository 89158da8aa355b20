package renew

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/sweep"
)

// fakeVault is a token store in memory, keyed by secret. It answers with
// the same *vault.ResponseError values the real client returns.
type fakeVault struct {
	mu        sync.Mutex
	bySecret  map[string]*TokenInfo
	createErr map[string]error // by secret: how Vault answers that token's create
	mintAs    func(*TokenInfo) // lets a test make Vault mint something odd
	lookupErr error            // every lookup-self fails with this
	lookupN   int              // ... only after this many successful lookups
	renewErr  error
	revokeErr map[string]error // by accessor
	renewed   []string
	created   []string // accessors minted
	revoked   []string // accessors revoked
	n         int
}

func newFake() *fakeVault {
	return &fakeVault{bySecret: map[string]*TokenInfo{}, createErr: map[string]error{}, revokeErr: map[string]error{}}
}

func (f *fakeVault) add(secret string, info TokenInfo) {
	f.bySecret[secret] = &info
}

func (f *fakeVault) LookupSelf(_ context.Context, tok string) (TokenInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lookupErr != nil {
		if f.lookupN == 0 {
			return TokenInfo{}, f.lookupErr
		}
		f.lookupN--
	}
	i, ok := f.bySecret[tok]
	if !ok {
		return TokenInfo{}, respErr(403, "permission denied", "invalid token")
	}
	return *i, nil
}

func (f *fakeVault) RenewSelf(_ context.Context, tok string) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.renewErr != nil {
		return 0, f.renewErr
	}
	i := f.bySecret[tok]
	i.TTL = i.Period
	f.renewed = append(f.renewed, i.Accessor)
	return i.TTL, nil
}

func (f *fakeVault) CreateOrphan(_ context.Context, tok string, s Spec) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.createErr[tok]; err != nil {
		return "", "", err
	}
	f.n++
	secret, acc := fmt.Sprintf("minted-secret-%d", f.n), fmt.Sprintf("minted-acc-%d", f.n)
	info := &TokenInfo{Accessor: acc, DisplayName: "token-" + s.DisplayName, Period: s.Period, TTL: s.Period,
		Orphan: true, Policies: append([]string{"default"}, s.Policies...)}
	if f.mintAs != nil {
		f.mintAs(info)
	}
	f.bySecret[secret] = info
	f.created = append(f.created, acc)
	return secret, acc, nil
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
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	var out []string
	for _, i := range a.f.bySecret {
		out = append(out, i.Accessor)
	}
	sort.Strings(out)
	return out, nil
}

func (a fakeAccessors) Lookup(_ context.Context, acc string) (sweep.Token, error) {
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	for _, i := range a.f.bySecret {
		if i.Accessor == acc {
			return sweep.Token{Accessor: acc, DisplayName: i.DisplayName}, nil
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
	f.add("ours-secret", TokenInfo{Accessor: "ours-acc", DisplayName: "token-devvm-wizard", Period: 768 * time.Hour, TTL: time.Hour, Orphan: true, Policies: []string{"default", "sops-admin", "vault-admin"}})
	f.add("stale1-secret", TokenInfo{Accessor: "stale1-acc", DisplayName: "token-devvm-wizard", Period: 768 * time.Hour})
	f.add("stale2-secret", TokenInfo{Accessor: "stale2-acc", DisplayName: "token-devvm-wizard", Period: 768 * time.Hour})
	f.add("oidc-secret", TokenInfo{Accessor: "oidc-acc", DisplayName: "oidc-wizard", TTL: 168 * time.Hour, IdentityPolicies: []string{"vault-admin", "sops-admin"}})
	f.add("weak-secret", TokenInfo{Accessor: "weak-acc", DisplayName: "kubernetes-woodpecker-default", Policies: []string{"default"}})
	f.add("near-secret", TokenInfo{Accessor: "near-acc", DisplayName: "token-devvm-wizard2"})
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
	return Config{TokenFile: p, Spec: spec, Concurrency: 4, LockWait: 5 * time.Second, Log: zerolog.Nop()}, p
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
	res, err := Run(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != ActionRenew || res.TTL != 768*time.Hour || res.Current.Accessor != "ours-acc" {
		t.Fatalf("result %+v", res)
	}
	if len(f.renewed) != 1 || len(f.created) != 0 || len(f.revoked) != 0 {
		t.Fatalf("renewed %v created %v revoked %v", f.renewed, f.created, f.revoked)
	}
	fileIs(t, p, "ours-secret\n")
}

func TestAdminClobberHeals(t *testing.T) {
	f := world()
	cfg, p := setup(t, "oidc-secret")
	res, err := Run(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != ActionHeal || res.Minted.Accessor != "minted-acc-1" || res.Current.DisplayName != "oidc-wizard" {
		t.Fatalf("result %+v", res)
	}
	fileIs(t, p, "minted-secret-1")
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	sort.Strings(f.revoked)
	want := []string{"ours-acc", "stale1-acc", "stale2-acc"}
	if fmt.Sprint(f.revoked) != fmt.Sprint(want) || fmt.Sprint(res.Sweep.Revoked) != fmt.Sprint(want) {
		t.Fatalf("revoked %v (report %v), want %v", f.revoked, res.Sweep.Revoked, want)
	}
	if _, alive := f.bySecret["oidc-secret"]; !alive {
		t.Fatal("the foreign token was revoked")
	}
	if _, alive := f.bySecret["near-secret"]; !alive {
		t.Fatal("a near-miss token was revoked")
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
			res, err := Run(context.Background(), f, cfg)
			if !errors.Is(err, ErrHealDenied) {
				t.Fatalf("err = %v, want ErrHealDenied", err)
			}
			if res.Action != ActionRefuse || res.Current.Accessor != "weak-acc" || res.Current.DisplayName != "kubernetes-woodpecker-default" || res.Refusal == "" {
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
	res, err := Run(context.Background(), f, cfg)
	if err == nil || errors.Is(err, ErrHealDenied) {
		t.Fatalf("err = %v, want a plain failure", err)
	}
	if res.Stage != "create" || res.Cause != CauseServer {
		t.Fatalf("stage %q cause %v", res.Stage, res.Cause)
	}
	fileIs(t, p, "oidc-secret")
}

func TestLookupFailuresAreFailAndFileUntouched(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		file  string
		cause Cause
	}{
		{"unreachable", fmt.Errorf("Get: %w", &netErr{}), "ours-secret", CauseUnreachable},
		{"sealed", respErr(503, "Vault is sealed"), "ours-secret", CauseSealed},
		{"dead token", nil, "revoked-secret", CauseTokenDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := world()
			f.lookupErr = tc.err
			cfg, p := setup(t, tc.file)
			res, err := Run(context.Background(), f, cfg)
			if err == nil || errors.Is(err, ErrHealDenied) {
				t.Fatalf("err = %v", err)
			}
			if res.Stage != "lookup" || res.Cause != tc.cause {
				t.Fatalf("stage %q cause %v", res.Stage, res.Cause)
			}
			fileIs(t, p, tc.file)
			if len(f.created)+len(f.revoked)+len(f.renewed) != 0 {
				t.Fatal("vault state changed")
			}
		})
	}
}

type netErr struct{}

func (*netErr) Error() string   { return "dial tcp 127.0.0.1:1: connect: connection refused" }
func (*netErr) Timeout() bool   { return false }
func (*netErr) Temporary() bool { return false }

func TestRenewFailureIsFail(t *testing.T) {
	f := world()
	f.renewErr = respErr(503, "Vault is sealed")
	cfg, p := setup(t, "ours-secret")
	res, err := Run(context.Background(), f, cfg)
	if err == nil || res.Stage != "renew" || res.Cause != CauseSealed {
		t.Fatalf("err %v stage %q cause %v", err, res.Stage, res.Cause)
	}
	fileIs(t, p, "ours-secret")
}

func TestMintedTokenFailingCheckIsRevoked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mintAs func(*TokenInfo)
	}{
		{"not periodic", func(i *TokenInfo) { i.Period = 0 }},
		{"missing policy", func(i *TokenInfo) { i.Policies = []string{"default"} }},
		{"not orphan", func(i *TokenInfo) { i.Orphan = false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := world()
			f.mintAs = tc.mintAs
			cfg, p := setup(t, "oidc-secret")
			res, err := Run(context.Background(), f, cfg)
			if !errors.Is(err, ErrMintRejected) || res.Stage != "check" {
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
	res, err := Run(context.Background(), f, cfg)
	if err == nil || res.Stage != "check" {
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
	writeToken = func(string, string) error { return errors.New("injected: no space left on device") }
	t.Cleanup(func() { writeToken = defaultWriteToken })
	res, err := Run(context.Background(), f, cfg)
	if err == nil || res.Stage != "write" {
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
	res, err := Run(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fileIs(t, p, "minted-secret-1")
	if len(res.Sweep.Failed) != 1 || res.Sweep.Failed[0].Accessor != "stale1-acc" || len(res.Sweep.Revoked) != 2 {
		t.Fatalf("sweep %+v", res.Sweep)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		file    string
		action  Action
		denied  bool
		matched int
	}{
		{file: "ours-secret", action: ActionRenew},
		{file: "oidc-secret", action: ActionHeal, matched: 3},
		{file: "weak-secret", action: ActionRefuse, denied: true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f := world()
			cfg, p := setup(t, tc.file)
			cfg.DryRun = true
			res, err := Run(context.Background(), f, cfg)
			if errors.Is(err, ErrHealDenied) != tc.denied || (!tc.denied && err != nil) {
				t.Fatalf("err = %v", err)
			}
			if res.Action != tc.action || len(res.Sweep.Matched) != tc.matched {
				t.Fatalf("action %q matched %d", res.Action, len(res.Sweep.Matched))
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
	res, err := Run(context.Background(), f, cfg)
	if err == nil || res.Stage != "read" {
		t.Fatalf("err %v stage %q", err, res.Stage)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("a token file was created")
	}
}

func TestConcurrentRunsHealOnce(t *testing.T) {
	f := world()
	cfg, p := setup(t, "oidc-secret")
	var wg sync.WaitGroup
	results := make([]Result, 2)
	errs := make([]error, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Run(context.Background(), f, cfg)
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
	actions := []Action{results[0].Action, results[1].Action}
	sort.Slice(actions, func(i, j int) bool { return actions[i] < actions[j] })
	if actions[0] != ActionHeal || actions[1] != ActionRenew {
		t.Fatalf("actions %v, want one heal and one renew", actions)
	}
	fileIs(t, p, "minted-secret-1")
	live := 0
	for _, i := range f.bySecret {
		if i.DisplayName == "token-devvm-wizard" {
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
	cfg := Config{TokenFile: link, Spec: spec, Concurrency: 2, LockWait: time.Second, Log: zerolog.Nop()}
	if _, err := Run(context.Background(), f, cfg); err != nil {
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
