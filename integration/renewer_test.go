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
	wantExit(t, "renewal", r, 0)
	if !strings.HasPrefix(r.closing, "OK: renewed periodic token") {
		t.Errorf("renewal: stderr does not start with %q:\n%s", "OK: renewed periodic token", r.stderr)
	}
	wantIn(t, "renewal stderr", r.stderr, "accessor="+p.Accessor)
	after, err := x.fileToken()
	if err != nil {
		t.Fatal(err)
	}
	if after.TTL <= before.TTL {
		t.Errorf("TTL not reset by the renewal: before %s, after %s", before.TTL, after.TTL)
	}
	if floor := 768*time.Hour - 2*time.Second; after.TTL < floor {
		t.Errorf("TTL after the renewal %s, want at least %s", after.TTL, floor)
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
	want := "HEALED: re-minted from foreign dn=userpass-wizard (revoked 0 stale, from the ledger); tokens minted before the ledger began"
	wantExit(t, "heal", r, 0)
	if healed := wantLine(t, "heal", r.stderr, "HEALED"); !strings.HasPrefix(healed, want) {
		t.Errorf("heal: HEALED line does not start with %q:\n%s", want, healed)
	}
	if !x.alive(old.Accessor) {
		t.Error("the heal revoked a token no ledger knew without a walk")
	}
	x.walk()
	if x.alive(old.Accessor) {
		t.Error("the walk left the old periodic token alive")
	}
	info, err := x.fileToken()
	if err != nil {
		t.Fatalf("the healed file's token does not work: %v", err)
	}
	x.keep("healed", tokenOf(x))
	if info.DisplayName != "token-devvm-wizard" {
		t.Errorf("healed token display name %q, want token-devvm-wizard", info.DisplayName)
	}
	if info.Period != 768*time.Hour {
		t.Errorf("healed token period %s, want 768h", info.Period)
	}
	if !info.Orphan {
		t.Errorf("healed token %s is not an orphan", info.Accessor)
	}
	for _, pol := range []string{"vault-admin", "sops-admin"} {
		if !slices.Contains(info.Policies, pol) {
			t.Errorf("healed token policies %v lack %s", info.Policies, pol)
		}
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
	if accs := x.periodicAccessors(); !slices.Equal(accs, []string{info.Accessor}) {
		t.Errorf("live periodic tokens %v, want just %s", accs, info.Accessor)
	}
	// The next daily run finds our token again.
	r = x.run()
	wantExit(t, "run after heal", r, 0)
	if !strings.HasPrefix(r.closing, "OK:") {
		t.Errorf("run after heal: stderr does not start with \"OK:\":\n%s", r.stderr)
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
	wantExit(t, "weak clobber", r, 1)
	line := wantLine(t, "weak clobber", r.stderr, "DRIFT")
	if want := "DRIFT: foreign token dn=token-kubernetes-woodpecker-default"; !strings.HasPrefix(line, want) {
		t.Errorf("DRIFT line does not start with %q:\n%s", want, line)
	}
	wantIn(t, "DRIFT line", line, "heal denied — foreign token lacks create authority; investigate what wrote it")
	wantIn(t, "DRIFT line", line, "accessor="+weak.Accessor)
	wantIn(t, "DRIFT line", line, "vault_said=\"auth/token/create: vault answered 403: permission denied")
	if !bytes.Equal(x.fileBytes(), before) {
		t.Fatal("token file changed on DRIFT")
	}
	if accs := x.periodicAccessors(); !slices.Equal(accs, []string{p.Accessor}) {
		t.Errorf("periodic tokens %v, want just %s: something was minted or revoked", accs, p.Accessor)
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
	wantExit(t, "unreachable vault", r, 1)
	if want := "FAIL: could not look up the token in the file"; !strings.HasPrefix(r.closing, want) {
		t.Errorf("unreachable vault: stderr does not start with %q:\n%s", want, r.stderr)
	}
	wantIn(t, "unreachable vault stderr", r.stderr, "cannot reach vault")
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
	wantExit(t, "sealed vault", r, 1)
	if !strings.HasPrefix(r.closing, "FAIL:") {
		t.Errorf("sealed vault: stderr does not start with \"FAIL:\":\n%s", r.stderr)
	}
	wantIn(t, "sealed vault stderr", r.stderr, "cause=sealed")
	wantIn(t, "sealed vault stderr", r.stderr, "vault operator unseal")
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
	wantExit(t, "dead token", r, 1)
	if !strings.HasPrefix(r.closing, "FAIL:") {
		t.Errorf("dead token: stderr does not start with \"FAIL:\":\n%s", r.stderr)
	}
	for _, want := range []string{"cause=token-denied", "vault login -method=oidc", "vault token create -orphan -period=768h"} {
		wantIn(t, "dead token stderr", r.stderr, want)
	}
	if !bytes.Equal(x.fileBytes(), []byte(p.Secret)) {
		t.Fatal("token file changed")
	}
	// The design's point: a login makes the next run heal it.
	x.put(x.login())
	r = x.run()
	wantExit(t, "heal after login", r, 0)
	wantLine(t, "heal after login", r.stderr, "HEALED")
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
	wantExit(t, "heal", r, 0)
	wantLine(t, "heal", r.stderr, "HEALED")
	r = x.walk()
	want := "sweep: revoked 4 stale token-devvm-wizard"
	if !strings.HasPrefix(r.closing, want) {
		t.Errorf("walk: closing line does not start with %q:\n%s", want, r.closing)
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
	if err != nil {
		t.Fatalf("the file's token does not work: %v", err)
	}
	if info.DisplayName != "token-devvm-wizard" {
		t.Errorf("file token display name %q, want token-devvm-wizard", info.DisplayName)
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
	wantExit(t, "dry sweep", r, 0)
	if n := strings.Count(r.stdout, "would revoke"); n != 2 {
		t.Errorf("dry sweep: %d \"would revoke\", want 2:\n%s", n, r.stdout)
	}
	wantIn(t, "dry sweep stdout", r.stdout, cur.Accessor)
	wantIn(t, "dry sweep stdout", r.stdout, "kept (the token in the file)")
	if strings.Contains(r.stdout, near.Accessor) {
		t.Errorf("dry sweep lists the near miss %s:\n%s", near.Accessor, r.stdout)
	}
	for _, s := range []devvault.Token{s1, s2} {
		if !x.alive(s.Accessor) {
			t.Errorf("dry sweep revoked stale %s", s.Accessor)
		}
	}
	r = x.run("sweep", "--apply")
	wantExit(t, "sweep --apply", r, 0)
	if n := strings.Count(r.stdout, "revoked"); n != 2 {
		t.Errorf("sweep --apply: %d \"revoked\", want 2:\n%s", n, r.stdout)
	}
	wantIn(t, "sweep --apply stderr", r.stderr, "revoked 2 stale")
	for _, s := range []devvault.Token{s1, s2} {
		if x.alive(s.Accessor) {
			t.Errorf("sweep --apply left stale %s alive", s.Accessor)
		}
	}
	if !x.alive(cur.Accessor) {
		t.Errorf("sweep --apply revoked the file's token %s", cur.Accessor)
	}
	if !x.alive(near.Accessor) {
		t.Errorf("sweep --apply revoked the near miss %s", near.Accessor)
	}
}

func TestConcurrentRunsHealOnce(t *testing.T) {
	x := newH(t)
	x.put(x.periodic("old periodic"))
	wantExit(t, "the OK run that records the old token", x.run(), 0)
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
		if strings.HasPrefix(r.closing, "OK:") {
			ok++
		}
	}
	if healed != 1 {
		t.Errorf("%d runs HEALED, want 1", healed)
	}
	if ok != 1 {
		t.Errorf("%d runs said OK, want 1", ok)
	}
	info, err := x.fileToken()
	if err != nil {
		t.Fatal(err)
	}
	if accs := x.periodicAccessors(); !slices.Equal(accs, []string{info.Accessor}) {
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
	wantExit(t, "status --json", r, 0)
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json does not parse: %v\n%s", err, r.stdout)
	}
	if !st.Ours {
		t.Errorf("status --json says ours=false: %+v", st)
	}
	if st.Accessor != p.Accessor {
		t.Errorf("status --json accessor %s, want %s", st.Accessor, p.Accessor)
	}
	if st.Period != 768*3600 {
		t.Errorf("status --json period_seconds %d, want %d", st.Period, 768*3600)
	}

	wantExit(t, "the OK run that records the token in the ledger", x.run(), 0)
	login := x.login()
	x.put(login)
	r = x.run("status")
	wantExit(t, "status of foreign", r, 1)
	for _, want := range []string{"foreign", "userpass-wizard", "vault-admin"} {
		wantIn(t, "status of foreign stdout", r.stdout, want)
	}
	r = x.run("--dry-run")
	wantExit(t, "dry run", r, 0)
	wantIn(t, "dry run stderr", r.stderr, "would heal")
	wantIn(t, "dry run stderr", r.stderr, "revoke 1 stale")
	if !bytes.Equal(x.fileBytes(), []byte(login.Secret)) {
		t.Error("dry run changed the token file")
	}
	if !x.alive(p.Accessor) {
		t.Errorf("dry run revoked the periodic token %s", p.Accessor)
	}
	if accs := x.periodicAccessors(); len(accs) != 1 {
		t.Errorf("dry run changed the live periodic tokens: %v, want one", accs)
	}
	x.put(x.weak())
	r = x.run("--dry-run")
	wantExit(t, "dry run of weak", r, 1)
	wantLine(t, "dry run of weak", r.stderr, "DRIFT")
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
	wantExit(t, "read-only sweep --apply", r, 1)
	if n := strings.Count(r.stdout, "revoke FAILED"); n != 2 {
		t.Errorf("read-only sweep --apply: %d \"revoke FAILED\", want 2:\n%s", n, r.stdout)
	}
	wantIn(t, "read-only sweep --apply stderr", r.stderr, "2 failed")
	for _, s := range []devvault.Token{s1, s2} {
		if !x.alive(s.Accessor) {
			t.Errorf("stale %s revoked despite the policy", s.Accessor)
		}
	}
}
