//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

// TestVaultCapsTheTTL proves against a real Vault what it does to a
// periodic token under a token mount max TTL: it keeps period=768h and caps
// the TTL. At 48h the run succeeds and says so; at 12h a daily timer cannot
// keep up, so the run fails (a heal revokes its mint and leaves the file).
func TestVaultCapsTheTTL(t *testing.T) {
	x := newH(t)
	p := x.periodic("periodic")
	x.put(p)
	if err := x.f.TuneTokenMaxTTL(x.ctx, 48*time.Hour); err != nil {
		t.Fatal(err)
	}

	r := x.run()
	ok := firstLine(r.stderr, "OK:")
	if r.code != 0 || !strings.Contains(ok, "vault capped its TTL below the period") {
		t.Fatalf("48h renewal: want OK with a cap warning, got exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"ttl=48h", "warning=", "vault auth tune -max-lease-ttl=768h token/"} {
		if !strings.Contains(ok, want) {
			t.Errorf("48h renewal line lacks %q: %s", want, ok)
		}
	}
	info, err := x.fileToken()
	if err != nil || info.Period != 768*time.Hour || info.TTL > 48*time.Hour {
		t.Fatalf("vault reports period %s ttl %s (%v): the premise of the cap check changed", info.Period, info.TTL, err)
	}

	login := x.login()
	x.put(login)
	r = x.run()
	healed := firstLine(r.stderr, "HEALED")
	if r.code != 0 || healed == "" || !strings.Contains(healed, "warning=") || !strings.Contains(healed, "vault auth tune") {
		t.Fatalf("48h heal: want HEALED with a cap warning, got exit %d\n%s", r.code, r.stderr)
	}
	healedTok := tokenOf(x)
	x.keep("healed", healedTok)

	if err := x.f.TuneTokenMaxTTL(x.ctx, 12*time.Hour); err != nil {
		t.Fatal(err)
	}
	before := x.fileBytes()
	r = x.run()
	fail := firstLine(r.stderr, "FAIL:")
	if r.code != 1 || !strings.Contains(fail, "cause=ttl-capped") || !strings.Contains(fail, "vault auth tune -max-lease-ttl=768h token/") {
		t.Fatalf("12h renewal: want FAIL cause=ttl-capped, got exit %d\n%s", r.code, r.stderr)
	}
	if string(x.fileBytes()) != string(before) {
		t.Fatal("a capped renewal rewrote the file")
	}

	x.put(x.login())
	before = x.fileBytes()
	periodicBefore := x.periodicAccessors()
	r = x.run()
	fail = firstLine(r.stderr, "FAIL:")
	if r.code != 1 || !strings.Contains(fail, "cause=ttl-capped") || !strings.Contains(fail, "stage=cap") {
		t.Fatalf("12h heal: want FAIL cause=ttl-capped, got exit %d\n%s", r.code, r.stderr)
	}
	if string(x.fileBytes()) != string(before) {
		t.Fatal("a capped heal changed the token file")
	}
	if after := x.periodicAccessors(); len(after) != len(periodicBefore) {
		t.Fatalf("a capped heal left its minted token alive: periodic tokens %v → %v", periodicBefore, after)
	}
}

// TestExplicitMaxTTLNamesTheDayTheTokenDies: no renewal outlives a token's
// explicit_max_ttl, so the warning gives the date.
func TestExplicitMaxTTLNamesTheDayTheTokenDies(t *testing.T) {
	x := newH(t)
	c, err := x.f.Server.Client(x.f.Server.RootToken)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Auth().Token().CreateWithContext(x.ctx, &vault.TokenCreateRequest{NoParent: true, Period: "768h", ExplicitMaxTTL: "72h",
		Policies: []string{"vault-admin", "sops-admin"}, DisplayName: "devvm-wizard"})
	if err != nil {
		t.Fatal(err)
	}
	x.put(x.keep("explicit", devvault.Token{Secret: s.Auth.ClientToken, Accessor: s.Auth.Accessor}))
	r := x.run()
	ok := firstLine(r.stderr, "OK:")
	die := time.Now().Add(72 * time.Hour).UTC().Format("2006-01-02")
	if r.code != 0 || !strings.Contains(ok, "explicit_max_ttl") || !strings.Contains(ok, "dies on "+die) {
		t.Fatalf("want OK with the day it dies (%s), got exit %d\n%s", die, r.code, r.stderr)
	}
}
