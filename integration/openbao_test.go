//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

// newBaoH is newH on a real OpenBao dev server, with the bao CLI's
// settings: BAO_ADDR and BAO_TOKEN, no VAULT_* at all. Without OpenBao
// (no image, no VTR_OPENBAO_BIN) it fails in CI and says outside CI why it
// did not run and how to make it run.
func newBaoH(t *testing.T) *h {
	t.Helper()
	x := newHWith(t, func(ctx context.Context, w io.Writer) (*devvault.Server, error) {
		srv, err := devvault.StartOpenBao(ctx, w)
		if errors.Is(err, devvault.ErrNoOpenBao) && os.Getenv("CI") != "true" {
			t.Skipf("not run: %v", err)
		}
		return srv, err
	})
	if x.f.Server.Kind != devvault.KindOpenBao || x.f.Server.Version != devvault.OpenBaoVersion {
		t.Fatalf("premise: the server is %s %s, want openbao %s", x.f.Server.Kind, x.f.Server.Version, devvault.OpenBaoVersion)
	}
	x.bao = true
	return x
}

// TestOpenBaoMatrix runs the behaviour matrix against a real OpenBao dev
// server as a bao user's shell would: BAO_ADDR, no VAULT_ADDR.
func TestOpenBaoMatrix(t *testing.T) {
	x := newBaoH(t)
	t.Run("OK, with tokens of the s. prefix", func(t *testing.T) { baoOK(t, x) })
	t.Run("HEALED after a login, then from the ledger", func(t *testing.T) { baoHealed(t, x) })
	t.Run("DRIFT for a weak token, file byte-identical", func(t *testing.T) { baoWeakDrift(t, x) })
	t.Run("a batch token is DRIFT without a create", func(t *testing.T) { baoBatchDrift(t, x) })
	t.Run("status --json", func(t *testing.T) { baoStatusJSON(t, x) })
	t.Run("BAO_ADDR wins over VAULT_ADDR", func(t *testing.T) { baoAddrWins(t, x) })
}

// baoOK: a periodic token of the s. prefix renews, and the file stays.
func baoOK(t *testing.T, x *h) {
	p := x.periodic("bao periodic")
	if !strings.HasPrefix(p.Secret, "s.") {
		t.Fatal("premise: OpenBao issues tokens with the s. prefix")
	}
	x.put(p)
	r := x.run()
	wantExit(t, "renewal", r, 0)
	if !strings.HasPrefix(r.closing, "OK: renewed periodic token") {
		t.Errorf("renewal ends %q", r.closing)
	}
	if !bytes.Equal(x.fileBytes(), []byte(p.Secret)) {
		t.Error("the file changed on the happy path")
	}
}

// baoHealed: a login heals to a tagged, orphan periodic token; the login
// lives and the previous periodic token is revoked. The next heal retires
// from the ledger.
func baoHealed(t *testing.T, x *h) {
	old := x.periodic("bao old periodic")
	x.put(old)
	wantExit(t, "the OK run that records the old token", x.run(), 0)
	login := x.login() // the userpass login, as `bao login` does it
	x.put(login)
	r := x.run()
	wantExit(t, "heal", r, 0)
	wantLine(t, "heal", r.stderr, "HEALED: re-minted from foreign dn=userpass-wizard")
	info, err := x.fileToken()
	if err != nil {
		t.Fatalf("the healed file's token does not work: %v", err)
	}
	if info.DisplayName != "token-devvm-wizard" || info.Period != 768*time.Hour || !info.Orphan ||
		info.Meta["managed_by"] != "vault-token-renew" || info.Meta["host"] == "" {
		t.Errorf("healed token %+v, want a tagged, orphan, periodic token-devvm-wizard", info)
	}
	if fi, _ := os.Stat(x.file); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode().Perm())
	}
	if !x.alive(login.Accessor) {
		t.Error("the login token was revoked")
	}
	if x.alive(old.Accessor) {
		t.Error("the previous periodic token is alive")
	}
	x.put(x.login())
	r = x.run()
	wantExit(t, "second heal", r, 0)
	wantIn(t, "second HEALED line", wantLine(t, "second heal", r.stderr, "HEALED"), "(revoked 1 stale, from the ledger)")
}

// baoWeakDrift: a weak token is DRIFT, and the file stays byte-identical.
func baoWeakDrift(t *testing.T, x *h) {
	x.put(x.weak())
	before := x.fileBytes()
	r := x.run()
	wantExit(t, "weak clobber", r, 1)
	drift := wantLine(t, "weak clobber", r.stderr, "DRIFT")
	wantIn(t, "DRIFT line", drift, "heal denied — foreign token lacks create authority")
	wantIn(t, "DRIFT line", drift, "next=\"find what wrote the token (bao token lookup -accessor")
	if !bytes.Equal(x.fileBytes(), before) {
		t.Error("the file changed on DRIFT")
	}
}

// baoBatchDrift: a batch token is DRIFT without a create.
func baoBatchDrift(t *testing.T, x *h) {
	tok, err := x.f.MintOdd(x.ctx, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	x.put(x.keep("bao batch", tok))
	before := x.fileBytes()
	r := x.run()
	wantExit(t, "batch", r, 1)
	wantIn(t, "DRIFT line", wantLine(t, "batch", r.stderr, "DRIFT"), "a batch token cannot heal")
	if !bytes.Equal(x.fileBytes(), before) {
		t.Error("the file changed on DRIFT")
	}
}

// baoStatusJSON: after a heal and the walk, status --json says the token
// is ours, tagged, and the ledger complete.
func baoStatusJSON(t *testing.T, x *h) {
	x.put(x.login())
	if r := x.run(); r.code != 0 {
		t.Fatalf("heal: exit %d", r.code)
	}
	if r := x.run("sweep", "--apply", "--max-rps", "0"); r.code != 0 {
		t.Fatalf("the walk: exit %d", r.code)
	}
	r := x.run("status", "--json")
	wantExit(t, "status --json", r, 0)
	var st struct {
		Ours   bool              `json:"ours"`
		Meta   map[string]string `json:"meta"`
		Ledger struct {
			Complete bool `json:"complete"`
		} `json:"ledger"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if !st.Ours || st.Meta["managed_by"] != "vault-token-renew" || !st.Ledger.Complete {
		t.Errorf("status --json %+v", st)
	}
}

// baoAddrWins: BAO_ADDR wins over VAULT_ADDR.
func baoAddrWins(t *testing.T, x *h) {
	r := x.runEnv(x.env(x.f.Server.Addr, "VAULT_ADDR="+closedPort(t)))
	wantExit(t, "run with both", r, 0)
}

// TestOpenBaoSweepAndTheFleetRule: sweep --apply on OpenBao revokes this
// machine's stale tokens and leaves another machine's alive.
func TestOpenBaoSweepAndTheFleetRule(t *testing.T) {
	x := newBaoH(t)
	me := x.machine("devvm-bao")
	x.healOnce(me)
	stale := x.periodic("bao stale untagged")
	theirs, err := x.f.MintPeriodicFor(x.ctx, "devvm-wizard", map[string]string{"managed_by": "vault-token-renew", "host": "devvm-other-bao", "user": "wizard"})
	if err != nil {
		t.Fatal(err)
	}
	x.keep("another machine's", theirs)
	r := x.runOn(me, "sweep", "--apply")
	wantExit(t, "sweep --apply", r, 0)
	wantIn(t, "sweep table", r.stdout, "other machine's (host=devvm-other-bao): never revoked")
	if x.alive(stale.Accessor) {
		t.Error("the stale untagged token is alive")
	}
	if !x.alive(theirs.Accessor) {
		t.Error("another machine's token was revoked")
	}
	x.assertOneLive(me)
}

// TestOpenBaoTokenPath: BAO_TOKEN_PATH moves the token file, for the tool
// as for the bao CLI; ~/.vault-token is not looked at.
func TestOpenBaoTokenPath(t *testing.T) {
	x := newBaoH(t)
	moved := filepath.Join(x.home, "tokens", "bao-token")
	if err := os.MkdirAll(filepath.Dir(moved), 0o700); err != nil {
		t.Fatal(err)
	}
	x.mu.Lock()
	x.files = append(x.files, moved)
	x.mu.Unlock()
	old := x.periodic("moved periodic")
	if err := os.WriteFile(moved, []byte(x.login().Secret), 0o600); err != nil {
		t.Fatal(err)
	}
	r := x.runEnv(x.env(x.f.Server.Addr, "BAO_TOKEN_PATH="+moved))
	wantExit(t, "heal of the moved file", r, 0)
	wantIn(t, "HEALED line", wantLine(t, "heal", r.stderr, "HEALED"), "path="+moved)
	if _, err := os.Stat(x.file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("~/.vault-token was written (%v)", err)
	}
	b, _ := os.ReadFile(moved)
	info, err := x.f.LookupSecret(x.ctx, strings.TrimSpace(string(b)))
	if err != nil || info.DisplayName != "token-devvm-wizard" {
		t.Fatalf("the moved file holds %+v (%v), want our periodic token", info, err)
	}
	if !x.alive(old.Accessor) {
		t.Error("premise: a token no ledger knew was revoked without a walk")
	}
	r = x.runEnv(x.env(x.f.Server.Addr, "BAO_TOKEN_PATH="+moved), "sweep", "--apply", "--max-rps", "0")
	wantExit(t, "the walk of the moved file", r, 0)
	if x.alive(old.Accessor) {
		t.Error("the previous periodic token is alive after the walk")
	}
	r = x.runEnv(x.env(x.f.Server.Addr, "BAO_TOKEN_PATH="+moved), "status")
	wantExit(t, "status", r, 0)
	wantIn(t, "status", r.stdout, moved)
	if !slices.Contains(x.files, moved) {
		t.Fatal("premise: the moved file's content is checked as a secret")
	}
}
