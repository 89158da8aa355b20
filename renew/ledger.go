package renew

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/ledger"
)

// runLedger is one run's view of the ledger: loaded when the run starts,
// and saved at every step that changes it, so that a crash at any point
// leaves the ledger saying what it knows.
type runLedger struct {
	store   LedgerStore
	l       ledger.Ledger
	unsaved bool // a save failed: the stored ledger may miss this run's tokens
	other   bool // the stored ledger was kept for another Vault: this one starts anew
	unknown bool // Vault could not say which cluster it is: the ledger cannot be matched to it
	log     zerolog.Logger
}

// loadLedger loads the ledger. A state file that cannot be read is a
// ledger that was never whole: the caller reported the state file's
// trouble once, before the run, and the ledger's gap says what it means.
func loadLedger(store LedgerStore, log zerolog.Logger) *runLedger {
	b := &runLedger{store: store, log: log}
	if l, err := store.Load(); err == nil {
		b.l = l
	}
	return b
}

// memStore keeps a ledger in memory only: a run with no state file.
type memStore struct{ l ledger.Ledger }

func (m *memStore) Load() (ledger.Ledger, error) { return m.l, nil }
func (m *memStore) Fold(fn func(ledger.Ledger) ledger.Ledger) (ledger.Ledger, error) {
	m.l = fn(m.l)
	return m.l, nil
}
func (m *memStore) Spared() []string { return nil }

// dryStore reads the stored ledger and never saves: a dry run's, and a
// walk's without --apply. Changes fold into a copy in memory.
type dryStore struct {
	LedgerStore
	l ledger.Ledger
}

func (d *dryStore) Load() (ledger.Ledger, error) {
	l, err := d.LedgerStore.Load()
	d.l = l
	return l, err
}

func (d *dryStore) Fold(fn func(ledger.Ledger) ledger.Ledger) (ledger.Ledger, error) {
	d.l = fn(d.l)
	return d.l, nil
}

// update folds one change into the ledger and saves it, and returns the
// save's error. A failed save is also a warning, once: the run goes on
// with a gap in the ledger (the walk finds what the next run cannot know), and
// the create's write-ahead, which must not go unrecorded, refuses to send
// on the error itself.
//
// The change is folded into the ledger as it is stored, not into this
// run's copy: a walk of hours and the runs made meanwhile change one
// ledger, and none may undo another's records.
func (b *runLedger) update(fn func(ledger.Ledger) ledger.Ledger) error {
	l, err := b.store.Fold(fn)
	if err == nil {
		b.l = l
		return nil
	}
	b.l = fn(b.l)
	if !b.unsaved {
		b.unsaved = true
		b.log.Warn().Err(err).Msg("could not save the ledger of this machine's tokens; a heal sends no create until a save succeeds, and a token this run mints or finds may be unknown to the next run until the walk finds it")
	}
	return err
}

// checkVault matches the ledger to the Vault answering, before a heal or a
// walk decides what to trust: a ledger kept on another cluster (the same
// address pointed at a new server, a switched VAULT_ADDR) says nothing of
// this one's tokens, so a new ledger starts (a gap the walk closes). The first
// heal names the cluster in the ledger. It costs one unauthenticated
// request (sys/health), and only on a heal or a sweep.
func (b *runLedger) checkVault(ctx context.Context, v Vault) {
	id, err := v.ClusterID(ctx)
	switch {
	case err != nil:
		b.unknown = true
		b.log.Warn().Err(err).Msg("vault did not say which cluster it is; the ledger cannot be matched to it, so this run trusts it for nothing new (other-vault) and an OK run leaves it as it is")
	case b.l.Vault == id:
	case b.l.Vault != "":
		b.log.Warn().Str("ledger_vault", b.l.Vault).Str("vault", id).Msg("the ledger was kept on another vault cluster; a new one starts for this one")
		b.other = true
		b.update(func(ledger.Ledger) ledger.Ledger { return ledger.Ledger{Vault: id} })
	default:
		b.update(func(l ledger.Ledger) ledger.Ledger { l.Vault = id; return l })
	}
}

// gap is why a heal cannot trust the ledger to hold every token of this
// machine; ledger.NoGap when it can.
func (b *runLedger) gap() ledger.Gap {
	switch {
	case b.unsaved:
		return ledger.Unsaved
	case b.other, b.unknown:
		return ledger.OtherVault
	}
	return b.l.Gap()
}
