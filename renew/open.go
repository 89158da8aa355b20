package renew

import (
	"context"
	"fmt"

	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// opened is a run's start: the token in the file, and the run lock while
// the run holds it.
type opened struct {
	token string
	lock  *tokenfile.Lock
}

func (o opened) close() {
	if o.lock != nil {
		o.lock.Release()
	}
}

// open is the start of every run, status and sweep: take the run lock
// (when lock), read the token file, and look its token up. The file is
// read only after the lock is taken: a run that waited must see the token
// the previous run wrote. A failure comes back as the Result a report
// needs, with its stage and cause.
func open(ctx context.Context, v Vault, cfg Config, lock bool) (opened, Result, error) {
	res := Result{Path: cfg.TokenFile, DryRun: cfg.DryRun}
	var o opened
	if lock {
		lctx, cancel := context.WithTimeout(ctx, cfg.LockWait)
		l, err := tokenfile.Acquire(lctx, cfg.TokenFile)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			res, err := res.fail(StageLock, false, err)
			return o, res, err
		}
		o.lock = l
	}
	tok, err := tokenfile.Read(cfg.TokenFile)
	if err != nil {
		o.close()
		res, err := res.fail(StageRead, false, err)
		return opened{}, res, err
	}
	cur, err := v.LookupSelf(ctx, tok)
	if err != nil {
		o.close()
		res, err := res.fail(StageLookup, false, fmt.Errorf("token in %s: %w", cfg.TokenFile, err))
		return opened{}, res, err
	}
	res.Current, o.token = cur, tok
	return o, res, nil
}

// Inspect reads the token file and looks its token up, without the lock
// and changing nothing: what status reports.
func Inspect(ctx context.Context, v Vault, cfg Config) (Result, error) {
	_, res, err := open(ctx, v, cfg, false)
	return res, err
}

// Sweep is `vault-token-renew sweep`: under the run lock (so it can never
// revoke a token a concurrent heal just wrote), read and look up the token
// in the file and walk every accessor: the one-off cleanup of tokens no
// ledger knows, such as manual re-mints from before the ledger. With apply
// it revokes this machine's stale tokens, and a complete walk makes the
// ledger whole again. It refuses to revoke while the file holds a foreign
// token: the heal that token calls for sweeps anyway, with the right keep
// set.
func Sweep(ctx context.Context, v Vault, cfg Config, apply bool) (Result, error) {
	o, res, err := open(ctx, v, cfg, true)
	if err != nil {
		return res, err
	}
	defer o.close()
	if apply && !IsOurs(res.Current, cfg.Spec) {
		res.Cause = CauseForeign
		return res.fail(StageForeign, false, fmt.Errorf("token in %s is dn=%s, not our periodic %s; nothing revoked",
			cfg.TokenFile, res.Current.DisplayName, cfg.Spec.StoredDisplayName()))
	}
	b := openBook(cfg, apply)
	b.checkVault(ctx, v)
	rep, err := sweep.Run(ctx, v.Accessors(o.token), cfg.sweepOptions(apply, res.Current.Accessor))
	res.Sweep, res.Walked = rep, true
	if apply {
		b.update(func(l ledger.Ledger) ledger.Ledger { return l.Swept(rep, nil, err == nil, cfg.now()) })
	}
	res.Ledger = b.l
	if err != nil {
		// The token was just looked up: a 403 now refuses the walk, it does
		// not mean the token is dead.
		return res.fail(StageSweep, true, err)
	}
	return res, nil
}
