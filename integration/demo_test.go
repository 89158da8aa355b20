//go:build integration

package integration

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/demo"
)

// TestDemo runs `mage demo`'s job and holds it to its verdict.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := demo.Run(ctx, &out, false)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n   OK: renewed periodic token", "\n   HEALED: re-minted from foreign dn=userpass-wizard (revoked 1 stale)",
		"\n   DRIFT: foreign token dn=token-kubernetes-woodpecker-default", "verdict: PASS (3/3", "dev vault stopped and removed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "Root Token") || strings.Contains(out.String(), "dev-root-") {
		t.Error("demo output shows the dev server's root token")
	}
}

// TestProcessModeHeals runs a heal against Vault started as a local process,
// the way the harness goes on a machine with no Docker.
func TestProcessModeHeals(t *testing.T) {
	t.Setenv("VTR_VAULT_MODE", "process")
	x := newH(t)
	if x.f.Server.Mode != "process" || !strings.HasPrefix(x.f.Server.Addr, "http://127.0.0.1:") {
		t.Fatalf("server mode %s at %s", x.f.Server.Mode, x.f.Server.Addr)
	}
	old := x.periodic("old periodic")
	x.put(x.login())
	r := x.run()
	if r.code != 0 || !strings.HasPrefix(firstLine(r.stderr, "HEALED"), "HEALED: re-minted from foreign dn=userpass-wizard (revoked 1 stale)") {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	if x.alive(old.Accessor) {
		t.Fatal("stale token survived")
	}
}
