//go:build integration

package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// profiles is one machine (prod's HOME) with two profiles, prod and
// staging, on two real dev Vaults, whose tokens a per-address token helper
// keeps (configured in ~/.vault, as a keyring user has it); the shell's
// VAULT_ADDR points at prod whatever profile a run is for.
type profiles struct {
	*helperWorld
	staging *h
}

func newProfiles(t *testing.T) *profiles {
	t.Helper()
	p := &profiles{helperWorld: newHelperWorld(t, newH(t)), staging: newH(t)}
	p.profile("prod", "VAULT_ADDR="+p.f.Server.Addr)
	p.profile("staging", "VAULT_ADDR="+p.staging.f.Server.Addr)
	return p
}

// profile writes ~/.config/vault-token-renew/NAME.env, private.
func (p *profiles) profile(name string, lines ...string) {
	p.t.Helper()
	writeProfile(p.t, p.home, name, lines...)
}

// as runs the tool for profile name, from a shell whose VAULT_ADDR is prod's.
func (p *profiles) as(name string, args ...string) result {
	p.t.Helper()
	return p.run(append(args, "--profile", name)...)
}

// TestProfiles: a login to staging through the helper heals staging's
// profile, and prod's token stays untouched; each profile's token is
// tagged with it; a staging token written where prod keeps its token is
// said to be staging's, never dead; two profiles on one store refuse to run.
func TestProfiles(t *testing.T) {
	p := newProfiles(t)
	prodAddr, stagingAddr := p.f.Server.Addr, p.staging.f.Server.Addr
	p.vaultLogin(prodAddr, p.periodic("prod periodic"))
	prodBefore := readFile(t, p.entry(prodAddr))
	stagingLogin := p.keep("staging login", p.staging.login())
	p.vaultLogin(stagingAddr, stagingLogin)

	r := p.as("staging")
	wantExit(t, "staging's heal", r, 0)
	healed := wantLine(t, "staging's heal", r.stderr, "HEALED:")
	if !bytes.Equal(readFile(t, p.entry(prodAddr)), prodBefore) {
		t.Fatal("staging's heal changed prod's token in the helper")
	}
	info, ok, err := p.staging.f.LookupAccessor(p.ctx, field(healed, "accessor"))
	if err != nil || !ok || info.Meta["profile"] != "staging" || info.Meta["host"] == "" {
		t.Fatalf("staging's minted token is not tagged profile=staging: %+v %v %v", info.Meta, ok, err)
	}
	r = p.as("prod")
	if r.code != 0 || !strings.HasPrefix(r.closing, "OK: renewed periodic token") {
		t.Fatalf("prod after staging's heal: %s", r.closing)
	}
	wantIn(t, "prod's state file", string(readFile(t, filepath.Join(p.home, ".local/state/vault-token-renew/profiles/prod/state.json"))), `"profile": "prod"`)
	profilesStatus(t, p)
	anotherProfilesToken(t, p)
	twoProfilesOneStore(t, p)
}

// profilesStatus: status without --profile lists every profile.
func profilesStatus(t *testing.T, p *profiles) {
	r := p.run("status")
	wantExit(t, "status of every profile", r, 0)
	for _, want := range []string{"PROFILE", "prod", "staging", p.f.Server.Addr, p.staging.f.Server.Addr, "ours"} {
		wantIn(t, "status of every profile", r.stdout, want)
	}
}

// anotherProfilesToken: staging's live login, written where prod keeps its
// token (the helper's entry for prod's address), is refused by prod: the
// line says it is staging's and alive, never that it is dead, and nothing
// is written; it is still alive on staging.
func anotherProfilesToken(t *testing.T, p *profiles) {
	prodAddr := p.f.Server.Addr
	stagingToken := p.keep("staging login 2", p.staging.login())
	p.vaultLogin(p.staging.f.Server.Addr, stagingToken)
	cmd := exec.CommandContext(p.ctx, p.helper, "store")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "VAULT_ADDR=" + prodAddr}
	cmd.Stdin = strings.NewReader(stagingToken.Secret)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, p.entry(prodAddr))
	r := p.as("prod")
	wantExit(t, "prod with staging's login in its store", r, 1)
	fail := wantLine(t, "prod's run", r.stderr, "FAIL:")
	for _, want := range []string{"cause=token-denied", "is the one profile staging's store holds", "it is not dead, so keep it"} {
		wantIn(t, "prod's FAIL line", fail, want)
	}
	if strings.Contains(fail, "dead or revoked") || strings.Contains(fail, "token create") {
		t.Errorf("the line calls staging's live login dead, or offers to overwrite it: %s", fail)
	}
	if !bytes.Equal(readFile(t, p.entry(prodAddr)), before) || !p.staging.alive(stagingToken.Accessor) {
		t.Fatal("prod's store changed, or staging's login died")
	}
}

// twoProfilesOneStore: a profile on prod's store (the same helper and
// address) refuses to run, and says whose store it is.
func twoProfilesOneStore(t *testing.T, p *profiles) {
	p.profile("dup", "VAULT_ADDR="+p.f.Server.Addr)
	r := p.as("dup")
	wantExit(t, "a profile on prod's store", r, 1)
	fail := wantLine(t, "dup's run", r.stderr, "FAIL:")
	wantIn(t, "dup's FAIL line", fail, "cause=store-conflict")
	wantIn(t, "dup's FAIL line", fail, "also profile prod's")
	os.Remove(filepath.Join(p.home, ".config", "vault-token-renew", "dup.env"))
}
