//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

func TestOursIsRenewed(t *testing.T) {
	x := newH(t)
	p := x.periodic("periodic")
	x.put(p)
	time.Sleep(2 * time.Second) // let the TTL run down so the reset shows
	before, err := x.fileToken()
	if err != nil {
		t.Fatal(err)
	}
	fi0, _ := os.Stat(x.file)

	r := x.run()
	if r.code != 0 || !strings.HasPrefix(r.stderr, "OK: renewed periodic token") || !strings.Contains(r.stderr, "accessor="+p.Accessor) {
		t.Fatalf("want OK and exit 0, got exit %d: %s", r.code, r.stderr)
	}
	after, err := x.fileToken()
	if err != nil {
		t.Fatal(err)
	}
	if after.TTL <= before.TTL || after.TTL < 768*time.Hour-2*time.Second {
		t.Fatalf("TTL not reset by the renewal: before %s, after %s", before.TTL, after.TTL)
	}
	if !bytes.Equal(x.fileBytes(), []byte(p.Secret)) {
		t.Fatal("the file was rewritten on the happy path")
	}
	if fi1, _ := os.Stat(x.file); !fi1.ModTime().Equal(fi0.ModTime()) {
		t.Fatal("the file's mtime changed on the happy path")
	}
}

func TestAdminClobberHeals(t *testing.T) {
	x := newH(t)
	old := x.periodic("old periodic")
	login := x.login()
	x.put(login)

	r := x.run()
	want := "HEALED: re-minted from foreign dn=userpass-wizard (revoked 1 stale)"
	if r.code != 0 || firstLine(r.stderr, "HEALED") == "" || !strings.HasPrefix(firstLine(r.stderr, "HEALED"), want) {
		t.Fatalf("want %q and exit 0, got exit %d:\n%s", want, r.code, r.stderr)
	}
	info, err := x.fileToken()
	if err != nil {
		t.Fatalf("the healed file's token does not work: %v", err)
	}
	x.keep("healed", tokenOf(x))
	if info.DisplayName != "token-devvm-wizard" || info.Period != 768*time.Hour || !info.Orphan ||
		!slices.Contains(info.Policies, "vault-admin") || !slices.Contains(info.Policies, "sops-admin") {
		t.Fatalf("healed token %+v", info)
	}
	if fi, _ := os.Stat(x.file); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", fi.Mode().Perm())
	}
	if x.alive(old.Accessor) {
		t.Fatal("the previous periodic token was not revoked")
	}
	if !x.alive(login.Accessor) {
		t.Fatal("the login token that clobbered the file was revoked")
	}
	if accs := x.periodicAccessors(); len(accs) != 1 || accs[0] != info.Accessor {
		t.Fatalf("live periodic tokens %v, want just %s", accs, info.Accessor)
	}
	// The next daily run finds our token again.
	if r := x.run(); r.code != 0 || !strings.HasPrefix(r.stderr, "OK:") {
		t.Fatalf("run after heal: exit %d %s", r.code, r.stderr)
	}
}

func tokenOf(x *h) devvault.Token {
	return devvault.Token{Secret: strings.TrimSpace(string(x.fileBytes()))}
}

func TestWeakClobberIsDrift(t *testing.T) {
	x := newH(t)
	p := x.periodic("periodic")
	weak := x.weak()
	x.put(weak)
	before := x.fileBytes()

	// VAULT_TOKEN holds the root token in every run's environment: were it
	// used, this create would succeed.
	r := x.run()
	line := firstLine(r.stderr, "DRIFT")
	if r.code != 1 || !strings.HasPrefix(line, "DRIFT: foreign token dn=token-kubernetes-woodpecker-default") ||
		!strings.Contains(line, "heal denied — foreign token lacks create authority; investigate what wrote it") ||
		!strings.Contains(line, "accessor="+weak.Accessor) || !strings.Contains(line, "vault_said=\"auth/token/create: vault answered 403: permission denied") {
		t.Fatalf("want DRIFT heal denied and exit 1, got exit %d:\n%s", r.code, r.stderr)
	}
	if !bytes.Equal(x.fileBytes(), before) {
		t.Fatal("token file changed on DRIFT")
	}
	if accs := x.periodicAccessors(); len(accs) != 1 || accs[0] != p.Accessor {
		t.Fatalf("periodic tokens %v: something was minted or revoked", accs)
	}
	if !x.alive(weak.Accessor) {
		t.Fatal("the weak foreign token was revoked")
	}
}

func TestVaultUnreachableIsFail(t *testing.T) {
	x := newH(t)
	x.put(x.periodic("periodic"))
	before := x.fileBytes()
	r := x.runEnv(x.env(closedPort(t), "VAULT_MAX_RETRIES=0"))
	if r.code != 1 || !strings.HasPrefix(r.stderr, "FAIL: could not look up the token in the file") || !strings.Contains(r.stderr, "cannot reach vault") {
		t.Fatalf("want FAIL unreachable, exit 1; got exit %d: %s", r.code, r.stderr)
	}
	if !bytes.Equal(x.fileBytes(), before) {
		t.Fatal("token file changed")
	}
}

func TestSealedVaultIsFail(t *testing.T) {
	x := newH(t)
	x.put(x.periodic("periodic"))
	before := x.fileBytes()
	root, _ := x.f.Server.Client(x.f.Server.RootToken)
	if err := root.Sys().SealWithContext(x.ctx); err != nil {
		t.Fatal(err)
	}
	r := x.runEnv(x.env(x.f.Server.Addr, "VAULT_MAX_RETRIES=0"))
	if r.code != 1 || !strings.HasPrefix(r.stderr, "FAIL:") || !strings.Contains(r.stderr, "cause=sealed") || !strings.Contains(r.stderr, "vault operator unseal") {
		t.Fatalf("want FAIL sealed, exit 1; got exit %d: %s", r.code, r.stderr)
	}
	if !bytes.Equal(x.fileBytes(), before) {
		t.Fatal("token file changed")
	}
}

func TestDeadTokenIsFailWithRecovery(t *testing.T) {
	x := newH(t)
	p := x.periodic("periodic")
	x.put(p)
	if err := x.f.RevokeAccessor(x.ctx, p.Accessor); err != nil {
		t.Fatal(err)
	}
	r := x.run()
	if r.code != 1 || !strings.HasPrefix(r.stderr, "FAIL:") || !strings.Contains(r.stderr, "cause=token-denied") ||
		!strings.Contains(r.stderr, "vault login -method=oidc") || !strings.Contains(r.stderr, "vault token create -orphan -period=768h") {
		t.Fatalf("want FAIL with the recovery, exit 1; got exit %d: %s", r.code, r.stderr)
	}
	if !bytes.Equal(x.fileBytes(), []byte(p.Secret)) {
		t.Fatal("token file changed")
	}
	// The design's point: a login makes the next run heal it.
	x.put(x.login())
	if r := x.run(); r.code != 0 || firstLine(r.stderr, "HEALED") == "" {
		t.Fatalf("heal after login: exit %d %s", r.code, r.stderr)
	}
}

func TestHealSweepsExactlyTheStale(t *testing.T) {
	x := newH(t)
	var stale []string
	for i := 0; i < 4; i++ {
		stale = append(stale, x.periodic("stale periodic").Accessor)
	}
	var spared []string
	for _, dn := range []string{"devvm-wizard2", "devvm", "devvm-wizard-old", "other"} {
		tok, err := x.f.MintPeriodic(x.ctx, dn)
		if err != nil {
			t.Fatal(err)
		}
		spared = append(spared, x.keep("near miss "+dn, tok).Accessor)
	}
	weak := x.weak()
	login := x.login()
	spared = append(spared, weak.Accessor, login.Accessor)
	x.put(login)

	r := x.run()
	if r.code != 0 || !strings.HasPrefix(firstLine(r.stderr, "HEALED"), "HEALED: re-minted from foreign dn=userpass-wizard (revoked 4 stale)") {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	for _, a := range stale {
		if x.alive(a) {
			t.Errorf("stale periodic %s survived", a)
		}
	}
	for _, a := range spared {
		if !x.alive(a) {
			t.Errorf("token %s was revoked but is not a stale periodic token", a)
		}
	}
	info, err := x.fileToken()
	if err != nil || info.DisplayName != "token-devvm-wizard" {
		t.Fatalf("file token %+v err %v", info, err)
	}
}

func TestSweepCommand(t *testing.T) {
	x := newH(t)
	cur := x.periodic("current")
	x.put(cur)
	s1, s2 := x.periodic("stale1"), x.periodic("stale2")
	near, err := x.f.MintPeriodic(x.ctx, "devvm-wizard2")
	if err != nil {
		t.Fatal(err)
	}
	x.keep("near", near)

	r := x.run("sweep")
	if r.code != 0 || strings.Count(r.stdout, "would revoke") != 2 || !strings.Contains(r.stdout, cur.Accessor) ||
		!strings.Contains(r.stdout, "keep (token in the file)") || strings.Contains(r.stdout, near.Accessor) {
		t.Fatalf("dry sweep: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !x.alive(s1.Accessor) || !x.alive(s2.Accessor) {
		t.Fatal("dry sweep revoked")
	}
	r = x.run("sweep", "--apply")
	if r.code != 0 || strings.Count(r.stdout, "revoked") != 2 || !strings.Contains(r.stderr, "revoked 2 stale") {
		t.Fatalf("sweep --apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if x.alive(s1.Accessor) || x.alive(s2.Accessor) || !x.alive(cur.Accessor) || !x.alive(near.Accessor) {
		t.Fatal("sweep --apply revoked the wrong set")
	}
}

func TestConcurrentRunsHealOnce(t *testing.T) {
	x := newH(t)
	x.periodic("old periodic")
	x.put(x.login())
	var wg sync.WaitGroup
	res := make([]result, 2)
	for i := range res {
		wg.Add(1)
		go func() { defer wg.Done(); res[i] = x.run() }()
	}
	wg.Wait()
	healed, ok := 0, 0
	for _, r := range res {
		if r.code != 0 {
			t.Fatalf("a concurrent run failed: exit %d %s", r.code, r.stderr)
		}
		if firstLine(r.stderr, "HEALED") != "" {
			healed++
		}
		if strings.HasPrefix(r.stderr, "OK:") {
			ok++
		}
	}
	if healed != 1 || ok != 1 {
		t.Fatalf("want one HEALED and one OK, got %d and %d", healed, ok)
	}
	info, err := x.fileToken()
	if err != nil {
		t.Fatal(err)
	}
	if accs := x.periodicAccessors(); len(accs) != 1 || accs[0] != info.Accessor {
		t.Fatalf("live periodic tokens %v, want only the file's %s", accs, info.Accessor)
	}
}

func TestStatusAndDryRun(t *testing.T) {
	x := newH(t)
	p := x.periodic("periodic")
	x.put(p)
	r := x.run("status", "--json")
	var st struct {
		Ours        bool   `json:"ours"`
		Accessor    string `json:"accessor"`
		DisplayName string `json:"display_name"`
		Period      int64  `json:"period_seconds"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 {
		t.Fatalf("status --json: exit %d %v\n%s", r.code, err, r.stdout)
	}
	if !st.Ours || st.Accessor != p.Accessor || st.Period != 768*3600 {
		t.Fatalf("status %+v", st)
	}

	login := x.login()
	x.put(login)
	r = x.run("status")
	if r.code != 1 || !strings.Contains(r.stdout, "foreign") || !strings.Contains(r.stdout, "userpass-wizard") ||
		!strings.Contains(r.stdout, "vault-admin") {
		t.Fatalf("status of foreign: exit %d\n%s", r.code, r.stdout)
	}
	r = x.run("--dry-run")
	if r.code != 0 || !strings.Contains(r.stderr, "would heal") || !strings.Contains(r.stderr, "revoke 1 stale") {
		t.Fatalf("dry run: exit %d %s", r.code, r.stderr)
	}
	if !bytes.Equal(x.fileBytes(), []byte(login.Secret)) || !x.alive(p.Accessor) || len(x.periodicAccessors()) != 1 {
		t.Fatal("dry run changed something")
	}
	x.put(x.weak())
	if r := x.run("--dry-run"); r.code != 1 || firstLine(r.stderr, "DRIFT") == "" {
		t.Fatalf("dry run of weak: exit %d %s", r.code, r.stderr)
	}
}

// TestSweepExitsNonZeroWhenARevokeFails: a token that may list and look up
// accessors but not revoke them makes every revoke fail; the sweep carries
// on, reports each, and exits 1.
func TestSweepExitsNonZeroWhenARevokeFails(t *testing.T) {
	x := newH(t)
	err := x.f.PutPolicy(x.ctx, "sweep-readonly", `
path "auth/token/accessors" { capabilities = ["list", "sudo"] }
path "auth/token/lookup-accessor" { capabilities = ["update"] }`)
	if err != nil {
		t.Fatal(err)
	}
	// Our periodic token, but one whose policy may not revoke accessors.
	ro, err := x.f.MintPeriodicFor(x.ctx, "devvm-wizard", nil, "sweep-readonly")
	if err != nil {
		t.Fatal(err)
	}
	x.put(x.keep("readonly", ro))
	s1, s2 := x.periodic("stale1"), x.periodic("stale2")
	r := x.run("sweep", "--apply")
	if r.code != 1 || strings.Count(r.stdout, "revoke FAILED") != 2 || !strings.Contains(r.stderr, "failed 2") {
		t.Fatalf("want exit 1 with two failed revokes, got exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !x.alive(s1.Accessor) || !x.alive(s2.Accessor) {
		t.Fatal("tokens revoked despite the policy")
	}
}
