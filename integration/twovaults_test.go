//go:build integration

package integration

import (
	"bytes"
	"strings"
	"testing"
)

// TestALoginToAnotherVaultIsNotCalledDead: the token file holds a live
// login to Vault B (staging) while the tool points at Vault A (prod), two
// real dev servers. A refuses it (token-denied); the line must not call the
// token dead as a fact, must say it may be a login to another Vault, and
// its re-mint recipe must never write over the file blindly. The file is
// byte-identical after the run, and the token is still alive on B.
func TestALoginToAnotherVaultIsNotCalledDead(t *testing.T) {
	prod, staging := newH(t), newH(t)
	login := staging.login()
	prod.keep("staging login", login)
	prod.put(login)
	before := prod.fileBytes()

	r := prod.run()
	wantExit(t, "a run against prod with staging's login", r, 1)
	fail := wantLine(t, "the run", r.stderr, "FAIL:")
	wantIn(t, "the FAIL line", fail, "cause=token-denied")
	wantIn(t, "the FAIL line", fail, "it may be a live login to another vault")
	wantIn(t, "the FAIL line", fail, "check that VAULT_ADDR is the one you logged in to")
	if strings.Contains(fail, "is dead or revoked and") {
		t.Errorf("the line calls a token dead that may be alive elsewhere: %s", fail)
	}
	file := prod.file
	wantIn(t, "the re-mint recipe", fail, "-field=token > "+file+".new) && mv -b "+file+".new "+file+" && vault-token-renew")
	if strings.Contains(fail, "> "+file+")") {
		t.Errorf("the recipe writes over the token file blindly: %s", fail)
	}
	if !bytes.Equal(prod.fileBytes(), before) {
		t.Fatal("the run changed the token file")
	}
	if !staging.alive(login.Accessor) {
		t.Fatal("staging's login is no longer alive: the run must never act on another Vault's token")
	}
}
