//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/demo"
	"github.com/devvm/vault-token-renew/internal/devvault"
)

// TestDemo runs `mage demo`'s job, on Vault and (VTR_SERVER=openbao) on
// OpenBao, and holds it to its verdict.
func TestDemo(t *testing.T) {
	for _, kind := range []devvault.Kind{devvault.KindVault, devvault.KindOpenBao} {
		t.Run(string(kind), func(t *testing.T) { demoOn(t, kind) })
	}
}

func demoOn(t *testing.T, kind devvault.Kind) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := demo.Run(ctx, &out, kind, false)
	t.Log(out.String())
	if errors.Is(err, devvault.ErrNoOpenBao) && os.Getenv("CI") != "true" {
		t.Skipf("not run: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n   OK: renewed periodic token", "\n   HEALED: re-minted from foreign dn=userpass-wizard (revoked 1 stale, from the ledger)",
		"\n   DRIFT: foreign token dn=token-kubernetes-woodpecker-default", "verdict: PASS (3/3", "dev " + string(kind) + " stopped and removed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "Root Token") {
		t.Error("demo output shows the dev server's root token (a \"Root Token\" line)")
	}
	if strings.Contains(out.String(), "dev-root-") {
		t.Error("demo output shows the dev server's root token (a \"dev-root-\" value)")
	}
}

// TestProcessModeHeals runs a heal against Vault started as a local process,
// the way the harness goes on a machine with no Docker.
func TestProcessModeHeals(t *testing.T) {
	t.Setenv("VTR_VAULT_MODE", "process")
	x := newH(t)
	if x.f.Server.Mode != "process" {
		t.Fatalf("server mode %s, want process", x.f.Server.Mode)
	}
	if !strings.HasPrefix(x.f.Server.Addr, "http://127.0.0.1:") {
		t.Errorf("server at %s, want http://127.0.0.1:<port>", x.f.Server.Addr)
	}
	old := x.periodic("old periodic")
	x.put(x.login())
	r := x.run()
	wantExit(t, "heal", r, 0)
	want := "HEALED: re-minted from foreign dn=userpass-wizard (revoked 0 stale, from the ledger); tokens minted before the ledger began"
	if healed := wantLine(t, "heal", r.stderr, "HEALED"); !strings.HasPrefix(healed, want) {
		t.Errorf("heal: HEALED line does not start with %q:\n%s", want, healed)
	}
	x.walk()
	if x.alive(old.Accessor) {
		t.Fatal("stale token survived the walk")
	}
}
