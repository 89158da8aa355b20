package renew

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// heal re-mints our periodic token with the foreign token's authority:
// mint, check, write, then retire the stale ones. Until the write, any
// failure revokes the new token, so a failed heal strands nothing and
// leaves the file byte-identical. A dry run only retires, without revoking,
// what the heal would (its plan says Vault would let it mint).
func (r *run) heal(ctx context.Context) {
	if r.cfg.DryRun {
		r.led.checkVault(ctx, r.v)
		r.retire(ctx, r.tok, clusterChecked)
		return
	}
	log := r.healLog()
	c, err := r.create(ctx, log)
	if err != nil {
		if failure.Classify(err, failure.AskMore) == failure.CauseRefused {
			r.out.Refusal = err.Error()
			r.out.fail(failure.StageCreate, failure.AskMore, fmt.Errorf("%w: %w", ErrHealDenied, err))
			return
		}
		r.out.fail(failure.StageCreate, failure.AskMore, fmt.Errorf("as foreign accessor %s: %w", r.out.Current.Accessor, err))
		return
	}
	r.out.VaultWarnings, r.out.Minted.Accessor = c.Warnings, c.Accessor
	log.Info().Str("accessor", c.Accessor).Msg("minted periodic token with the foreign token's authority")
	if !r.keepMinted(ctx, c, log) {
		return
	}
	r.out.TTL = r.out.Minted.TTL
	r.led.checkVault(ctx, r.v)
	r.retire(ctx, c.Secret, clusterChecked)
}

// healLog is the run's logger with the foreign token named, for every
// line a heal writes.
func (r *run) healLog() zerolog.Logger {
	return r.cfg.Log.With().Str("foreign_accessor", r.out.Current.Accessor).Str("foreign_display_name", safetext.Value(r.out.Current.DisplayName)).Logger()
}

// keepMinted checks the minted token and writes it to the file; false when
// the heal failed there (the token revoked, if Vault let it be).
func (r *run) keepMinted(ctx context.Context, c Created, log zerolog.Logger) bool {
	if stage, err := r.checkMinted(ctx, c); err != nil {
		r.out.Minted.Revoked = r.discard(ctx, c, log)
		r.out.fail(stage, checkAsk(stage), err)
		return false
	}
	err := r.cfg.Store.Replace(ctx, r.tok, c.Secret)
	switch {
	case err == nil:
	case !errors.Is(err, tokenfile.ErrNotDurable):
		r.out.Minted.Revoked = r.discard(ctx, c, log)
		r.out.fail(failure.StageWrite, failure.AskToken, err)
		return false
	default:
		// The rename happened: the file holds the new token. Revoking it now
		// would leave a dead token in the file, so carry on and say so.
		log.Warn().Err(err).Msg("token file replaced but its directory was not synced; a crash now could restore the old file")
	}
	return true
}

// checkAsk: a just-minted token that Vault will not look up is Vault
// refusing the check, not a dead token in the file.
func checkAsk(stage failure.Stage) failure.Ask {
	if stage == failure.StageCheck {
		return failure.AskMore
	}
	return failure.AskToken
}

// checkMinted looks the new token up as itself and judges it: the sanity
// predicate, then Vault's TTL caps.
func (r *run) checkMinted(ctx context.Context, c Created) (failure.Stage, error) {
	info, err := r.v.LookupSelf(ctx, c.Secret)
	if err != nil {
		return failure.StageCheck, fmt.Errorf("minted accessor %s: %w", c.Accessor, err)
	}
	r.out.Minted.TokenInfo = info
	if j := decide.JudgeMinted(info, r.cfg.Spec); !j.OK() {
		return failure.StageCheck, fmt.Errorf("%w: accessor %s: %s", failure.ErrMintRejected, c.Accessor, strings.Join(j.Problems, "; "))
	}
	r.out.Cap = decide.JudgeTTL(info, info.TTL, r.cfg.now())
	if r.out.Cap.Fatal {
		r.out.Cause = failure.CauseCapped
		return failure.StageCap, fmt.Errorf("%w: minted accessor %s has %s", failure.ErrCapped, c.Accessor, info.TTL)
	}
	return failure.StageNone, nil
}

// discard revokes a new token the file will not hold and says whether it
// could; a revoked token leaves the ledger, one that survived stays for
// the next run to retire. The run's deadline may be what failed, so the
// revoke gets its own.
func (r *run) discard(ctx context.Context, c Created, log zerolog.Logger) bool {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DiscardWait)
	defer cancel()
	if err := r.v.RevokeSelf(rctx, c.Secret); err != nil {
		log.Error().Err(err).Str("accessor", c.Accessor).Msg("could not revoke the minted token; revoke it by accessor, or let the next run retire it (it stays in the ledger)")
		return false
	}
	r.led.update(func(l ledger.Ledger) ledger.Ledger { return l.Forget(c.Accessor) })
	log.Info().Str("accessor", c.Accessor).Msg("revoked the minted token")
	return true
}

// create mints the periodic token as the foreign token, writing ahead in
// the ledger: each attempt is recorded as sent before it goes out, and
// cleared once Vault's answer is in. A lost answer, a crash or a kill in
// between leaves the ledger knowing that a token may exist which nobody
// holds, so the walk looks for it. This stage owns the create's retries (the
// adapter turns the API client's off for it): a retry made below us would
// mint again with no record of the first attempt.
func (r *run) create(ctx context.Context, log zerolog.Logger) (Created, error) {
	cfg, b := r.cfg, r.led
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
		c, err := r.v.CreateOrphan(ctx, r.tok, cfg.Spec)
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
