package renew

import (
	"context"
	"slices"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/sweep"
)

// cluster says whether retire must first match the ledger to the Vault
// answering: an OK run must (it has not asked), a heal has already.
type cluster int

const (
	checkCluster cluster = iota
	clusterChecked
)

// retire revokes the stale periodic tokens the plan named from the ledger
// (those it still holds), acting as token, with a lookup each and no LIST,
// and folds each accessor's record into the ledger. It never walks: on a
// big Vault a walk cannot finish within a run, so tokens the ledger cannot
// know are left to the walk of their own (Walk), and the run says so
// (Outcome.Gap). With nothing stale this costs no request at all.
func (r *run) retire(ctx context.Context, token string, c cluster) {
	p := r.out.Plan
	if !slices.ContainsFunc(p.Retire, r.led.l.Has) {
		return
	}
	// An OK run forgets what Vault no longer knows: that is only true of
	// the cluster the ledger was kept on.
	if c == checkCluster {
		if r.led.checkVault(ctx, r.v); r.led.other || r.led.unknown {
			return
		}
	}
	// The plan's keep set, and the token a heal minted (once Vault named it).
	keep := append(slices.Clone(p.Keep), r.out.Minted.Accessor)
	accs := slices.DeleteFunc(slices.Clone(p.Retire), func(a string) bool { return !r.led.l.Has(a) || slices.Contains(keep, a) })
	opts := r.cfg.sweepOptions(keep...)
	opts.Apply = !r.cfg.DryRun
	rep, err := sweep.Run(ctx, r.v.Accessors(token), accs, opts)
	r.out.Sweep, r.out.SweepErr = rep, err
	r.tell(rep)
	r.led.update(func(l ledger.Ledger) ledger.Ledger { return l.Swept(rep, r.cfg.now(), p.NotOurs...) })
}

// tell logs what retiring did to each accessor that needs a word: revoked,
// failed, or not this machine's token after all (it leaves the ledger and
// is never revoked).
func (r *run) tell(rep sweep.Report) {
	log := r.cfg.Log
	if r.out.Plan.Action == decide.Heal {
		log = r.healLog()
	}
	for _, rec := range rep.Records {
		switch {
		case rec.Failed():
			op := sweep.OpLookup.String()
			if rec.Did == sweep.RevokeFailed {
				op = sweep.OpRevoke.String()
			}
			log.Warn().Str("error", safetext.Text(rec.Err.Error())).Str("accessor", safetext.Value(rec.Accessor)).Str("op", op).
				Msg("stale sweep: could not " + op + " accessor; the run stands")
		case rec.Did == sweep.Revoked:
			log.Info().Str("accessor", rec.Accessor).Msg("revoked stale periodic token")
		case rec.Did == sweep.Vanished:
		case rec.Verdict == sweep.Other:
			log.Warn().Str("accessor", rec.Accessor).Str("host", safetext.Value(rec.Token.Host)).Str("user", safetext.Value(rec.Token.User)).
				Msg("the ledger held another machine's token; it leaves the ledger and is not revoked")
		case rec.Verdict == sweep.Ignore:
			log.Warn().Str("accessor", rec.Accessor).Msg("the ledger held a token that is not a periodic token of this display name; it leaves the ledger and is not revoked")
		}
	}
}
