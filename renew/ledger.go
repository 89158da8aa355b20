package renew

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/devvm/vault-token-renew/failure"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/sweep"
)

// book is one run's ledger: read after the run lock is taken, and saved at
// every step that changes it, so that a crash at any point leaves the
// ledger saying what it knows.
type book struct {
	store   LedgerStore
	l       ledger.Ledger
	save    bool // false in dry runs and without a store
	unsaved bool // a save failed: the stored ledger may miss this run's tokens
	other   bool // the stored ledger was kept for another Vault: this one starts anew
	unknown bool // Vault could not say which cluster it is: the ledger cannot be matched to it
	log     zerolog.Logger
}

// openBook loads the ledger. A missing store, or a state file that cannot
// be read, is a ledger that was never whole: the caller reported the state
// file's trouble once, before the run, and a heal then walks.
func openBook(cfg Config, save bool) *book {
	b := &book{store: cfg.Ledger, save: save && cfg.Ledger != nil, log: cfg.Log}
	if cfg.Ledger != nil {
		if l, err := cfg.Ledger.Load(); err == nil {
			b.l = l
		}
	}
	return b
}

// update folds one change into the ledger and saves it, and returns the
// save's error. A failed save is also a warning, once: the run goes on
// with a gap in the ledger (a heal that gets past its create walks), and
// the create's write-ahead, which must not go unrecorded, refuses to send
// on the error itself.
//
// The change is folded into the ledger as it is stored, not into this
// run's copy: a walk of hours and the runs made meanwhile change one
// ledger, and none may undo another's records.
func (b *book) update(fn func(ledger.Ledger) ledger.Ledger) error {
	if !b.save {
		b.l = fn(b.l)
		return nil
	}
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
func (b *book) checkVault(ctx context.Context, v Vault) {
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
func (b *book) gap() ledger.Gap {
	switch {
	case b.unsaved:
		return ledger.Unsaved
	case b.other, b.unknown:
		return ledger.OtherVault
	}
	return b.l.Gap()
}

// create mints the periodic token as the foreign token, writing ahead in
// the ledger: each attempt is recorded as sent before it goes out, and
// cleared once Vault's answer is in. A lost answer, a crash or a kill in
// between leaves the ledger knowing that a token may exist which nobody
// holds, so the walk looks for it. This stage owns the create's retries (the
// adapter turns the API client's off for it): a retry made below us would
// mint again with no record of the first attempt.
func create(ctx context.Context, v Vault, cfg Config, foreign string, b *book, log zerolog.Logger) (Created, error) {
	wait := cfg.RetryWait
	if wait <= 0 {
		wait = time.Second
	}
	for attempt := 0; ; attempt++ {
		sent := cfg.now()
		if err := b.update(func(l ledger.Ledger) ledger.Ledger { return l.Sent(sent) }); err != nil {
			// A create the ledger cannot know of may strand an admin token
			// that no later heal would walk to: none is sent.
			return Created{}, fmt.Errorf("record the create in the ledger before sending it (nothing was sent): %w", err)
		}
		c, err := v.CreateOrphan(ctx, foreign, cfg.Spec)
		if err == nil {
			b.update(func(l ledger.Ledger) ledger.Ledger { return l.Answered(sent, c.Accessor, cfg.now()) })
			return c, nil
		}
		if status, answered := failure.Status(err); answered && (status == 400 || status == 403 || status == 429) {
			// Vault refused (or was too busy to start): nothing was minted.
			// Any other status, a proxy's 408 or 502 among them, may have
			// come after Vault minted, and stays unrecorded.
			b.update(func(l ledger.Ledger) ledger.Ledger { return l.Refused(sent) })
		}
		if attempt >= cfg.CreateRetries || !mayRetryCreate(err) || ctx.Err() != nil {
			return Created{}, err
		}
		log.Warn().Err(err).Int("attempt", attempt+1).Msg("the create failed; retrying (if vault minted before its answer was lost, the ledger knows a token is unrecorded)")
		select {
		case <-ctx.Done():
			return Created{}, err
		case <-time.After(wait):
		}
	}
}

// mayRetryCreate says whether a failed create is worth another attempt:
// Vault too busy (429), failing (5xx but a sealed 503), or no answer at all.
func mayRetryCreate(err error) bool {
	switch failure.Classify(err, failure.AskMore) {
	case failure.CauseServer, failure.CauseUnreachable, failure.CauseClientTimeout:
		return true
	}
	return false
}

// retirement is what retire acts as and must spare.
type retirement struct {
	as      string   // the token the lookups and revokes act as
	keep    []string // never revoked: the file's token, the new one, the foreign one
	notOurs []string // never enters the ledger: the foreign login token (a second guard: Judge already ignores it)
	heal    bool     // a heal, which has matched the ledger to the cluster already
	log     *zerolog.Logger
}

// retire revokes the stale periodic tokens the ledger knows, with a lookup
// each and no LIST, and folds what it found into the ledger. It never
// walks: on a big Vault a walk cannot finish within a run, so tokens the
// ledger cannot know (made before it began, or by a create whose answer
// was lost) are left to the walk of their own (Walk), and the run says so
// (Result.Gap). With nothing stale this costs no request at all.
func retire(ctx context.Context, v Vault, cfg Config, res *Result, b *book, r retirement) {
	log := cfg.Log
	if r.log != nil {
		log = *r.log
	}
	if len(b.l.Accessors(r.keep...)) == 0 {
		return
	}
	if !r.heal {
		// An OK run forgets what Vault no longer knows: that is only true
		// of the cluster the ledger was kept on.
		if b.checkVault(ctx, v); b.other || b.unknown {
			return
		}
	}
	opts := cfg.sweepOptions(!cfg.DryRun, r.keep...)
	opts.Only = b.l.Accessors(r.keep...)
	rep, err := sweep.Run(ctx, v.Accessors(r.as), opts)
	res.Sweep, res.SweepErr = rep, err
	for _, f := range rep.Failed {
		log.Warn().Str("error", safetext.Text(f.Err.Error())).Str("accessor", safetext.Value(f.Accessor)).Str("op", string(f.Op)).
			Msg("stale sweep: could not " + string(f.Op) + " accessor; the run stands")
	}
	for _, a := range rep.Revoked {
		log.Info().Str("accessor", a).Msg("revoked stale periodic token")
	}
	warnStrangers(log, rep, opts.Only)
	b.update(func(l ledger.Ledger) ledger.Ledger {
		return l.Swept(rep, opts.Only, cfg.now(), r.notOurs...)
	})
}

// warnStrangers names the ledger's entries that turned out not to be this
// machine's periodic tokens: they leave the ledger and are never revoked.
func warnStrangers(log zerolog.Logger, rep sweep.Report, held []string) {
	for _, t := range rep.Other {
		log.Warn().Str("accessor", t.Accessor).Str("host", safetext.Value(t.Host)).Str("user", safetext.Value(t.User)).
			Msg("the ledger held another machine's token; it leaves the ledger and is not revoked")
	}
	if rep.LookedUp < rep.Listed {
		return
	}
	known := slices.Concat(rep.Vanished, accessorsOf(rep.Stale), accessorsOf(rep.Kept), accessorsOf(rep.Other))
	for _, f := range rep.Failed {
		known = append(known, f.Accessor)
	}
	for _, a := range held {
		if !slices.Contains(known, a) {
			log.Warn().Str("accessor", a).Msg("the ledger held a token that is not a periodic token of this display name; it leaves the ledger and is not revoked")
		}
	}
}

func accessorsOf(ts []sweep.Token) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Accessor
	}
	return out
}
