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
	capsRenewAt48h(t, x)
	capsHealAt48h(t, x)

	if err := x.f.TuneTokenMaxTTL(x.ctx, 12*time.Hour); err != nil {
		t.Fatal(err)
	}
	capsRenewAt12h(t, x)
	capsHealAt12h(t, x)
}

// capsRenewAt48h: under a 48h cap the renewal succeeds, says Vault capped
// the TTL and how to lift the cap, and the token keeps its 768h period.
func capsRenewAt48h(t *testing.T, x *h) {
	t.Helper()
	r := x.run()
	wantExit(t, "48h renewal", r, 0)
	ok := wantLine(t, "48h renewal", r.stderr, "OK:")
	for _, want := range []string{"vault capped its TTL below the period", "ttl=48h", "warning=", "vault auth tune -max-lease-ttl=768h token/"} {
		if !strings.Contains(ok, want) {
			t.Errorf("48h renewal line lacks %q: %s", want, ok)
		}
	}
	info, err := x.fileToken()
	if err != nil {
		t.Fatalf("the renewed token does not work: %v", err)
	}
	if info.Period != 768*time.Hour {
		t.Errorf("vault reports period %s, want 768h: the premise of the cap check changed", info.Period)
	}
	if info.TTL > 48*time.Hour {
		t.Errorf("vault reports ttl %s, want at most 48h: the premise of the cap check changed", info.TTL)
	}
}

// capsHealAt48h: under a 48h cap a heal succeeds and warns of the cap.
func capsHealAt48h(t *testing.T, x *h) {
	t.Helper()
	login := x.login()
	x.put(login)
	r := x.run()
	wantExit(t, "48h heal", r, 0)
	healed := wantLine(t, "48h heal", r.stderr, "HEALED")
	wantIn(t, "48h heal: HEALED line", healed, "warning=")
	wantIn(t, "48h heal: HEALED line", healed, "vault auth tune")
	healedTok := tokenOf(x)
	x.keep("healed", healedTok)
}

// capsRenewAt12h: under a 12h cap a daily timer cannot keep up, so the
// renewal fails and leaves the file as it was.
func capsRenewAt12h(t *testing.T, x *h) {
	t.Helper()
	before := x.fileBytes()
	r := x.run()
	wantExit(t, "12h renewal", r, 1)
	fail := wantLine(t, "12h renewal", r.stderr, "FAIL:")
	wantIn(t, "12h renewal: FAIL line", fail, "cause=ttl-capped")
	wantIn(t, "12h renewal: FAIL line", fail, "vault auth tune -max-lease-ttl=768h token/")
	if string(x.fileBytes()) != string(before) {
		t.Fatal("a capped renewal rewrote the file")
	}
}

// capsHealAt12h: under a 12h cap a heal fails at the cap stage, leaves the
// file as it was and revokes the token it minted.
func capsHealAt12h(t *testing.T, x *h) {
	t.Helper()
	x.put(x.login())
	before := x.fileBytes()
	periodicBefore := x.periodicAccessors()
	r := x.run()
	wantExit(t, "12h heal", r, 1)
	fail := wantLine(t, "12h heal", r.stderr, "FAIL:")
	wantIn(t, "12h heal: FAIL line", fail, "cause=ttl-capped")
	wantIn(t, "12h heal: FAIL line", fail, "stage=cap")
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
	wantExit(t, "renewal", r, 0)
	ok := wantLine(t, "renewal", r.stderr, "OK:")
	die := time.Now().Add(72 * time.Hour).UTC().Format("2006-01-02")
	wantIn(t, "renewal: OK line", ok, "explicit_max_ttl")
	wantIn(t, "renewal: OK line", ok, "dies on "+die)
}
