package renew

import (
	"context"
	"fmt"

	"github.com/devvm/vault-token-renew/failure"

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
			res, err := res.fail(failure.StageLock, failure.AskToken, err)
			return o, res, err
		}
		o.lock = l
	}
	tok, err := tokenfile.Read(cfg.TokenFile)
	if err != nil {
		o.close()
		res, err := res.fail(failure.StageRead, failure.AskToken, err)
		return opened{}, res, err
	}
	if lock {
		tighten(cfg)
	}
	cur, err := v.LookupSelf(ctx, tok)
	if err != nil {
		o.close()
		res, err := res.fail(failure.StageLookup, failure.AskToken, fmt.Errorf("token in %s: %w", cfg.TokenFile, err))
		return opened{}, res, err
	}
	res.Current, o.token = cur, tok
	return o, res, nil
}

// tighten makes a token file others may read private, and says so.
func tighten(cfg Config) {
	was, changed, err := tokenfile.Tighten(cfg.TokenFile)
	switch {
	case err != nil:
		cfg.Log.Warn().Err(err).Msg("the token file is readable by others and could not be made private")
	case changed:
		cfg.Log.Warn().Str("path", cfg.TokenFile).Str("was", fmt.Sprintf("%04o", was)).
			Msg("the token file was readable by others; made it 0600")
	case was != 0:
		cfg.Log.Warn().Str("path", cfg.TokenFile).Str("mode", fmt.Sprintf("%04o", was)).
			Msg("the token file is readable by others and belongs to another user; left as it is")
	}
}

// Inspect reads the token file and looks its token up, without the lock
// and changing nothing: what status reports.
func Inspect(ctx context.Context, v Vault, cfg Config) (Result, error) {
	_, res, err := open(ctx, v, cfg, false)
	return res, err
}
