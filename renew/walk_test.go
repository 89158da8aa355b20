package renew

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"

	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/sweep"
)

// crowd adds n tokens of other people to f, so that a walk has steps.
func crowd(f *fakeVault, n int) {
	for i := range n {
		f.add(fmt.Sprintf("crowd-%03d-secret", i), decide.TokenInfo{Accessor: fmt.Sprintf("crowd-%03d", i), DisplayName: "oidc-someone"})
	}
}

// TestWalkResumesWhereItWasCut: a walk cut short (its budget runs out in
// its third step) keeps its place; the next walk lists again, starts after
// that place, and together they look up each accessor about once. The
// ledger is whole only at the end.
func TestWalkResumesWhereItWasCut(t *testing.T) {
	f := world()
	crowd(f, 100)
	store := &memLedger{}
	cfg, _ := setup(t, "ours-secret")
	cfg.Ledger = store
	ctx := newBudget()
	f.lookupHook = func(acc string) {
		if acc == "crowd-025" {
			ctx.runOut()
		}
	}
	_, err := walkOnce(ctx, f, cfg, WalkOptions{Apply: true, Step: 10})
	var ie *sweep.IncompleteError
	if !errors.As(err, &ie) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a walk cut short by its budget", err)
	}
	cut := store.stored()
	if cut.Walk == nil || cut.Walk.Cursor != "crowd-019" || cut.Walk.Done != 20 || cut.Gap() != ledger.NeverWhole {
		t.Fatalf("after the cut the walk is %+v (gap %v), want its place after the second step", cut.Walk, cut.Gap())
	}
	f.lookupHook = nil
	before := f.lookedUp
	res := walkApply(t, f, cfg)
	total := len(f.bySecret) + 2 // the two stale ones are revoked on the way
	if res.Walk.Resumed != 20 || f.listed != 2 || !res.Walk.Complete {
		t.Fatalf("resumed after %d, listed %d times, complete %v", res.Walk.Resumed, f.listed, res.Walk.Complete)
	}
	if looked := f.lookedUp; looked > total+10+2 {
		t.Fatalf("%d lookups in all (%d in the second run) for %d accessors: more than a step redone", looked, f.lookedUp-before, total)
	}
	got := store.stored()
	if got.Gap() != ledger.NoGap || got.Walk != nil || !slices.Equal(got.Accessors(), []string{"ours-acc"}) {
		t.Fatalf("ledger %v (gap %v, walk %+v), want whole with the file's token", got.Accessors(), got.Gap(), got.Walk)
	}
	if alive(f, "stale1-acc") || alive(f, "stale2-acc") || !alive(f, "otherhost-acc") {
		t.Fatalf("revoked %v: want both stale tokens, never another machine's", f.revoked)
	}
}

// TestWalkNeverRevokesWhatTheFileNowHolds: a manual re-mint written to the
// file while a walk looks it up as stale is judged again, under the run
// lock, before any revoke: it is kept.
func TestWalkNeverRevokesWhatTheFileNowHolds(t *testing.T) {
	f := world()
	f.add("remint-secret", decide.TokenInfo{Accessor: "remint-acc", DisplayName: "token-devvm-wizard", Period: 768 * time.Hour, TTL: time.Hour,
		Orphan: true, Policies: []string{"default", "sops-admin", "vault-admin"}})
	cfg, p := setup(t, "ours-secret")
	cfg.Ledger = &memLedger{}
	f.lookupHook = func(acc string) {
		if acc == "remint-acc" {
			if err := os.WriteFile(p, []byte("remint-secret"), 0o600); err != nil {
				t.Error(err)
			}
		}
	}
	res := walkApply(t, f, cfg)
	if !alive(f, "remint-acc") {
		t.Fatalf("the walk revoked the token the file holds now (revoked %v)", f.revoked)
	}
	if !slices.Contains(revokedBy(res), "stale1-acc") {
		t.Fatalf("revoked %v, want the stale ones still", revokedBy(res))
	}
}

// TestWalkIfGap: the walk unit's run does nothing, and asks Vault nothing,
// when the ledger is whole and no walk is under way.
func TestWalkIfGap(t *testing.T) {
	f := world()
	cfg, _ := setup(t, "ours-secret")
	cfg.Ledger = wholeLedger("ours-acc")
	res, err := walkOnce(context.Background(), f, cfg, WalkOptions{Apply: true, IfGap: true})
	if err != nil || !res.Walk.Idle || f.listed+f.lookedUp != 0 {
		t.Fatalf("err %v idle %v listed %d looked up %d", err, res.Walk.Idle, f.listed, f.lookedUp)
	}
}

// TestWalkStopsAtAForeignToken: a walk acts as our periodic token; with a
// login in the file it revokes nothing, says so, and keeps the ledger as
// it was for the heal to come.
func TestWalkStopsAtAForeignToken(t *testing.T) {
	f := world()
	cfg, _ := setup(t, "oidc-secret")
	cfg.Ledger = &memLedger{}
	res, err := walkOnce(context.Background(), f, cfg, WalkOptions{Apply: true})
	if err == nil || res.Cause != failure.CauseForeign || res.Stage != failure.StageForeign || len(f.revoked)+f.listed != 0 {
		t.Fatalf("err %v cause %v stage %v revoked %v listed %d", err, res.Cause, res.Stage, f.revoked, f.listed)
	}
}

// TestHealDuringAWalkKeepsItsRecords: a login is healed while a walk is
// half way; the heal's record of what it minted survives the walk's later
// saves, the walk keeps the new token in the file, and the ledger ends
// whole with it.
func TestHealDuringAWalkKeepsItsRecords(t *testing.T) {
	f := world()
	crowd(f, 100)
	store := &memLedger{}
	cfg, p := setup(t, "ours-secret")
	cfg.Ledger = store
	var healed error
	f.lookupHook = func(acc string) {
		if acc != "crowd-050" {
			return
		}
		if err := os.WriteFile(p, []byte("oidc-secret"), 0o600); err != nil {
			t.Error(err)
		}
		_, healed = runOnce(context.Background(), f, cfg)
	}
	walkApply(t, f, cfg)
	if healed != nil {
		t.Fatalf("the heal during the walk: %v", healed)
	}
	fileIs(t, p, "minted-secret-1")
	got := store.stored()
	if !alive(f, "minted-acc-1") || !got.Has("minted-acc-1") || got.Gap() != ledger.NoGap {
		t.Fatalf("after the walk the ledger is %v (gap %v), minted alive %v; want whole, holding the heal's token", got.Accessors(), got.Gap(), alive(f, "minted-acc-1"))
	}
}

// TestWalkSparesOtherTokenFiles: a second token file of this machine (a
// shell's --token-file) holds a token that looks stale to this file's
// walk; its ledger holds it, and the walk never revokes it.
func TestWalkSparesOtherTokenFiles(t *testing.T) {
	f := world()
	cfg, _ := setup(t, "ours-secret")
	cfg.Ledger = &memLedger{spared: []string{"stale1-acc"}}
	res := walkApply(t, f, cfg)
	if !alive(f, "stale1-acc") || alive(f, "stale2-acc") {
		t.Fatalf("revoked %v: want the other file's token kept and the stale one revoked", revokedBy(res))
	}
}
