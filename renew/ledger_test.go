package renew

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/sweep"

	"github.com/devvm/vault-token-renew/internal/ledger"
)

// memLedger is a LedgerStore in memory that remembers every save.
type memLedger struct {
	mu      sync.Mutex
	l       ledger.Ledger
	saves   int
	saveErr error
	// failFrom, when not 0, makes saves fail with saveErr from that save on
	// (1 is the first); 0 with saveErr set fails every save.
	failFrom int
	// spared are other token files' ledgers' accessors.
	spared []string
}

func (m *memLedger) Load() (ledger.Ledger, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.l, nil
}

func (m *memLedger) Fold(fn func(ledger.Ledger) ledger.Ledger) (ledger.Ledger, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saves++
	if m.saveErr != nil && m.saves >= m.failFrom {
		return ledger.Ledger{}, m.saveErr
	}
	m.l = fn(m.l)
	return m.l, nil
}

func (m *memLedger) Spared() []string { return m.spared }

func (m *memLedger) stored() ledger.Ledger {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.l
}

var tWhole = time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)

// wholeLedger holds accs and was made whole by an earlier walk.
func wholeLedger(accs ...string) *memLedger {
	l := ledger.Ledger{WholeSince: tWhole}
	for _, a := range accs {
		l = l.Found(a, tWhole)
	}
	return &memLedger{l: l}
}

func alive(f *fakeVault, acc string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range f.bySecret {
		if i.Accessor == acc {
			return true
		}
	}
	return false
}

// TestHealFromAWholeLedgerMakesNoList: the previous token is retired by one
// lookup and one revoke; no accessor list is made, and the new token is the
// ledger's one entry after.
func TestHealFromAWholeLedgerMakesNoList(t *testing.T) {
	f := world()
	store := wholeLedger("ours-acc")
	cfg, _ := setup(t, "oidc-secret")
	cfg.Ledger = store
	res, err := runOnce(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if f.listed != 0 || res.Gap != ledger.NoGap {
		t.Fatalf("a heal with a whole ledger listed %d times (gap %v)", f.listed, res.Gap)
	}
	if f.lookedUp != 1 || !slices.Equal(f.revoked, []string{"ours-acc"}) {
		t.Fatalf("looked up %d accessors, revoked %v; want 1 and [ours-acc]", f.lookedUp, f.revoked)
	}
	if got := store.stored(); !slices.Equal(got.Accessors(), []string{"minted-acc-1"}) || got.Gap() != ledger.NoGap {
		t.Fatalf("ledger after the heal: %v (gap %v), want just the new token, whole", got.Accessors(), got.Gap())
	}
	if !alive(f, "stale1-acc") {
		t.Fatal("a token the ledger never held was revoked without a walk")
	}
}

// walkApply is the walk unit's run, unhurried.
func walkApply(t *testing.T, f *fakeVault, cfg Config) Outcome {
	t.Helper()
	res, err := walkOnce(context.Background(), f, cfg, WalkOptions{Apply: true})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return res
}

// TestHealNeverWalks: no ledger yet, an unrecorded create from a run that
// died, an overflowed ledger, a ledger that cannot be saved, a ledger kept
// on another cluster: each heal retires what its ledger knows with no
// LIST, and says what gap is left. The walk of its own then finds the
// stale tokens only it can, and leaves the ledger whole.
func TestHealNeverWalks(t *testing.T) {
	overflowed := wholeLedger("ours-acc")
	overflowed.l.Overflowed = true
	died := wholeLedger("ours-acc")
	died.l = died.l.Sent(tWhole.Add(time.Hour))
	unsaved := wholeLedger("ours-acc")
	unsaved.saveErr, unsaved.failFrom = errors.New("read-only file system"), 2 // the write-ahead is saved, the answer is not
	otherCluster := wholeLedger("ours-acc")
	otherCluster.l.Vault = "another-cluster"
	for _, tc := range []struct {
		name    string
		store   *memLedger
		gap     ledger.Gap
		retired []string // what the heal retires from the ledger
	}{
		{"no ledger yet", &memLedger{}, ledger.NeverWhole, nil},
		{"a create whose answer never reached the ledger", died, ledger.Unrecorded, []string{"ours-acc"}},
		{"overflow", overflowed, ledger.Overflow, []string{"ours-acc"}},
		{"a ledger that cannot be saved", unsaved, ledger.Unsaved, []string{"ours-acc"}},
		{"a ledger kept on another vault cluster", otherCluster, ledger.OtherVault, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := world()
			cfg, _ := setup(t, "oidc-secret")
			cfg.Ledger = tc.store
			res, err := runOnce(context.Background(), f, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if f.listed != 0 || res.Gap != tc.gap {
				t.Fatalf("listed %d, gap %v; want no list and gap %v", f.listed, res.Gap, tc.gap)
			}
			if !slices.Equal(revokedBy(res), tc.retired) || !alive(f, "stale1-acc") {
				t.Fatalf("the heal revoked %v, want %v and nothing the ledger does not know", revokedBy(res), tc.retired)
			}
			if tc.gap == ledger.Unsaved {
				return
			}
			w := walkApply(t, f, cfg)
			if f.listed != 1 || alive(f, "stale1-acc") || alive(f, "stale2-acc") || !alive(f, "otherhost-acc") {
				t.Fatalf("the walk listed %d times and revoked %v; want one list and both stale tokens, never another machine's", f.listed, revokedBy(w))
			}
			got := tc.store.stored()
			if got.Gap() != ledger.NoGap || !slices.Equal(got.Accessors(), []string{"minted-acc-1"}) || got.Vault != "fake-cluster" || got.Walk != nil {
				t.Fatalf("after the walk the ledger is %v of %q (gap %v, walk %+v), want whole with the new token, of fake-cluster", got.Accessors(), got.Vault, got.Gap(), got.Walk)
			}
		})
	}
}

// TestHealWhenVaultWillNotSayWhichClusterItIs: without the cluster's name
// the ledger cannot be matched to this Vault; the heal says so and does
// not walk.
func TestHealWhenVaultWillNotSayWhichClusterItIs(t *testing.T) {
	f := world()
	f.clusterErr = respErr(500, "boom")
	cfg, _ := setup(t, "oidc-secret")
	cfg.Ledger = wholeLedger("ours-acc")
	res, err := runOnce(context.Background(), f, cfg)
	if err != nil || f.listed != 0 || res.Gap != ledger.OtherVault {
		t.Fatalf("err %v listed %d (%v), want no walk and gap other-vault", err, f.listed, res.Gap)
	}
}

// TestUnrecordableCreateIsNotSent: when the create cannot be written ahead
// (the state file cannot be saved), no create is sent: a token minted then
// might be stranded with no later heal walking to it. The run fails on the
// file system, naming it; the token file is unchanged.
func TestUnrecordableCreateIsNotSent(t *testing.T) {
	f := world()
	store := wholeLedger("ours-acc")
	store.saveErr = &fs.PathError{Op: "rename", Path: "/home/w/.local/state/vault-token-renew/state.json", Err: syscall.EROFS}
	cfg, p := setup(t, "oidc-secret")
	cfg.Ledger = store
	res, err := runOnce(context.Background(), f, cfg)
	if err == nil || res.Stage != failure.StageCreate || res.Cause != failure.CauseFilesystem {
		t.Fatalf("err %v stage %v cause %v, want a filesystem failure at the create", err, res.Stage, res.Cause)
	}
	if len(f.created) != 0 {
		t.Fatalf("a create was sent (minted %v) that the ledger could not record", f.created)
	}
	fileIs(t, p, "oidc-secret")
}

// TestOKRunOnAnotherClusterLeavesTheLedger: the file's token works on
// another cluster; the ledger's entries would all look gone there, so the
// OK run neither looks them up nor forgets them as if they were, and the
// ledger is not claimed whole for the new cluster.
func TestOKRunOnAnotherClusterLeavesTheLedger(t *testing.T) {
	f := world()
	f.cluster = "cluster-b"
	store := wholeLedger("gone-acc")
	store.l.Vault = "cluster-a"
	cfg, _ := setup(t, "ours-secret")
	cfg.Ledger = store
	if _, err := runOnce(context.Background(), f, cfg); err != nil {
		t.Fatal(err)
	}
	if f.lookedUp != 0 {
		t.Fatalf("the OK run looked up %d accessors of another cluster's ledger", f.lookedUp)
	}
	if got := store.stored(); got.Gap() == ledger.NoGap {
		t.Fatalf("the ledger %+v is claimed whole for a cluster no walk has seen", got)
	}
}

// TestHealWithAGapStillRetiresTheLedgers: a ledger that was never whole
// still knows the previous token, and the heal retires it with no list.
func TestHealWithAGapStillRetiresTheLedgers(t *testing.T) {
	f := world()
	store := &memLedger{l: ledger.Ledger{}.Found("ours-acc", tWhole)}
	cfg, _ := setup(t, "oidc-secret")
	cfg.Ledger = store
	res, err := runOnce(context.Background(), f, cfg)
	if err != nil || res.SweepErr != nil || res.Gap != ledger.NeverWhole || f.listed != 0 {
		t.Fatalf("err %v sweep err %v gap %v listed %d", err, res.SweepErr, res.Gap, f.listed)
	}
	if !slices.Equal(f.revoked, []string{"ours-acc"}) {
		t.Fatalf("revoked %v: the ledger's previous token was not retired", f.revoked)
	}
}

// TestCreateIsWrittenAhead: when the create reaches Vault the stored ledger
// already says a create is in flight; its answer clears it.
func TestCreateIsWrittenAhead(t *testing.T) {
	f := world()
	store := wholeLedger("ours-acc")
	var atCreate []ledger.Ledger
	f.beforeCreate = func() { atCreate = append(atCreate, store.stored()) }
	cfg, _ := setup(t, "oidc-secret")
	cfg.Ledger = store
	if _, err := runOnce(context.Background(), f, cfg); err != nil {
		t.Fatal(err)
	}
	if len(atCreate) != 1 || atCreate[0].Gap() != ledger.Unrecorded {
		t.Fatalf("at the create the stored ledger was %+v, want an unrecorded create", atCreate)
	}
	if got := store.stored(); len(got.Unrecorded) != 0 {
		t.Fatalf("the answered create is still unrecorded: %v", got.Unrecorded)
	}
}

// TestLostCreateAnswerIsLeftToTheWalk: with a whole ledger, the first
// attempt's answer is lost after Vault minted; the retry is answered. The
// ledger cannot know the first token: the heal says so without walking,
// and the walk finds and revokes it.
func TestLostCreateAnswerIsLeftToTheWalk(t *testing.T) {
	f := world()
	f.loseCreates = 1
	store := wholeLedger("ours-acc")
	cfg, _ := setup(t, "oidc-secret")
	cfg.Ledger = store
	res, err := runOnce(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if f.listed != 0 || res.Gap != ledger.Unrecorded || !alive(f, "minted-acc-1") {
		t.Fatalf("listed %d (gap %v), revoked %v; want no walk in the heal, and the gap said", f.listed, res.Gap, revokedBy(res))
	}
	// A walk right after may have listed before that create minted: the
	// gap stays (CreateGrace). One a while later closes it.
	if w := walkApply(t, f, cfg); !slices.Contains(revokedBy(w), "minted-acc-1") || w.Gap != ledger.Unrecorded {
		t.Fatalf("the walk revoked %v (gap %v), want the stranded first mint, the gap kept", revokedBy(w), w.Gap)
	}
	cfg.Now = func() time.Time { return time.Now().Add(ledger.CreateGrace + time.Minute) }
	walkApply(t, f, cfg)
	if got := store.stored(); got.Gap() != ledger.NoGap || !slices.Equal(got.Accessors(), []string{"minted-acc-2"}) {
		t.Fatalf("ledger %v gap %v", got.Accessors(), got.Gap())
	}
}

// TestCreatesThatFailLeaveTheirMark: a refusal minted nothing and clears its
// create; a server error may have minted, so each attempt stays unrecorded
// and the next heal walks.
func TestCreatesThatFailLeaveTheirMark(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		f := world()
		store := wholeLedger("ours-acc")
		cfg, _ := setup(t, "weak-secret")
		cfg.Ledger = store
		if _, err := runOnce(context.Background(), f, cfg); !errors.Is(err, ErrHealDenied) {
			t.Fatalf("err = %v", err)
		}
		if got := store.stored(); got.Gap() != ledger.NoGap {
			t.Fatalf("a refused create left gap %v", got.Gap())
		}
	})
	t.Run("server error on every attempt", func(t *testing.T) {
		f := world()
		f.createErr["oidc-secret"] = respErr(500, "internal error")
		store := wholeLedger("ours-acc")
		cfg, _ := setup(t, "oidc-secret")
		cfg.Ledger = store
		if _, err := runOnce(context.Background(), f, cfg); err == nil {
			t.Fatal("want a failure")
		}
		if got := store.stored(); len(got.Unrecorded) != 3 || got.Gap() != ledger.Unrecorded {
			t.Fatalf("unrecorded %v, want the three attempts (one and two retries)", got.Unrecorded)
		}
	})
}

// TestOKRunKeepsTheLedger: the happy path records a token it finds in the
// file (a manual re-mint) and retires the ledger's stale ones without a
// list; with nothing stale it makes no request beyond lookup-self and
// renew-self.
func TestOKRunKeepsTheLedger(t *testing.T) {
	t.Run("a token found in the file enters the ledger; nothing else is asked", func(t *testing.T) {
		f := world()
		store := wholeLedger()
		cfg, _ := setup(t, "ours-secret")
		cfg.Ledger = store
		res, err := runOnce(context.Background(), f, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if f.lookedUp+f.listed+len(f.revoked) != 0 || res.Sweep.Listed != 0 {
			t.Fatalf("looked up %d, listed %d, revoked %v on the happy path", f.lookedUp, f.listed, f.revoked)
		}
		got := store.stored()
		if !slices.Equal(got.Accessors(), []string{"ours-acc"}) || got.Tokens[0].How != ledger.InFile {
			t.Fatalf("ledger %+v, want ours-acc found in the file", got.Tokens)
		}
		saves := store.saves
		if _, err := runOnce(context.Background(), f, cfg); err != nil || store.saves != saves || f.lookedUp != 0 {
			t.Fatalf("a second OK run saved the ledger again (%d → %d) or looked up %d: err %v", saves, store.saves, f.lookedUp, err)
		}
	})
	t.Run("the previous token is retired after a manual re-mint", func(t *testing.T) {
		f := world()
		store := wholeLedger("stale1-acc")
		cfg, _ := setup(t, "ours-secret")
		cfg.Ledger = store
		res, err := runOnce(context.Background(), f, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if f.listed != 0 || !slices.Equal(revokedBy(res), []string{"stale1-acc"}) {
			t.Fatalf("listed %d, revoked %v", f.listed, revokedBy(res))
		}
		if got := store.stored(); !slices.Equal(got.Accessors(), []string{"ours-acc"}) {
			t.Fatalf("ledger %v", got.Accessors())
		}
	})
	t.Run("another machine's token leaves the ledger, alive", func(t *testing.T) {
		f := world()
		store := wholeLedger("ours-acc", "otherhost-acc", "gone-acc")
		cfg, _ := setup(t, "ours-secret")
		cfg.Ledger = store
		if _, err := runOnce(context.Background(), f, cfg); err != nil {
			t.Fatal(err)
		}
		if !alive(f, "otherhost-acc") || len(f.revoked) != 0 {
			t.Fatalf("revoked %v", f.revoked)
		}
		if got := store.stored(); !slices.Equal(got.Accessors(), []string{"ours-acc"}) {
			t.Fatalf("ledger %v, want only ours: another machine's and a vanished one leave", got.Accessors())
		}
	})
}

// TestDryRunFromTheLedgerSavesNothing: a dry heal says what the ledger
// would retire and changes neither Vault nor the ledger.
func TestDryRunFromTheLedgerSavesNothing(t *testing.T) {
	f := world()
	store := wholeLedger("ours-acc")
	cfg, _ := setup(t, "oidc-secret")
	cfg.Ledger, cfg.DryRun = store, true
	res, err := runOnce(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if f.listed != 0 || res.Sweep.Count(sweep.Is(sweep.Stale)) != 1 || store.saves != 0 {
		t.Fatalf("listed %d stale %v saves %d", f.listed, res.Sweep.Where(sweep.Is(sweep.Stale)), store.saves)
	}
}
