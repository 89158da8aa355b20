package renew

import (
	"context"
	"fmt"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/tokenfile"
	"github.com/devvm/vault-token-renew/tokenstore"
)

// lock takes the run lock beside the token file, waiting up to LockWait.
// The file is read only after it: a run that waited must see the token the
// previous run wrote.
func (r *run) lock(ctx context.Context) (*tokenfile.Lock, error) {
	l, err := lockStore(ctx, r.cfg)
	if err != nil {
		r.out.fail(failure.StageLock, failure.AskToken, err)
	}
	return l, err
}

// lockStore takes cfg's store's run lock, waiting up to LockWait; a wait
// that ctx ended (a signal, --timeout) says so, and is canceled, not held.
func lockStore(ctx context.Context, cfg Config) (*tokenfile.Lock, error) {
	lctx, cancel := context.WithTimeout(ctx, cfg.LockWait)
	defer cancel()
	l, err := cfg.Store.Lock(lctx)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return l, err
}

// read reads the token from its store; false when it could not (the
// outcome says why).
func (r *run) read(ctx context.Context) bool {
	tok, err := r.cfg.Store.Read(ctx)
	if err != nil {
		r.out.fail(failure.StageRead, failure.AskToken, err)
		return false
	}
	r.tok = tok
	return true
}

// lookUp looks the file's token up; false when Vault would not (the
// outcome says why).
func (r *run) lookUp(ctx context.Context) bool {
	cur, err := r.v.LookupSelf(ctx, r.tok)
	if err != nil {
		r.out.fail(failure.StageLookup, failure.AskToken, fmt.Errorf("token in %s: %w", r.cfg.Store, err))
		return false
	}
	r.out.Current = cur
	return true
}

// tighten makes a token file others may read private, and says so; a
// token helper keeps its tokens its own way.
func (r *run) tighten() {
	f, ok := r.cfg.Store.(tokenstore.File)
	if !ok {
		return
	}
	log := r.cfg.Log
	was, changed, err := tokenfile.Tighten(f.Path)
	switch {
	case err != nil:
		log.Warn().Err(err).Msg("the token file is readable by others and could not be made private")
	case changed:
		log.Warn().Str("path", f.Path).Str("was", fmt.Sprintf("%04o", was)).
			Msg("the token file was readable by others; made it 0600")
	case was != 0:
		log.Warn().Str("path", f.Path).Str("mode", fmt.Sprintf("%04o", was)).
			Msg("the token file is readable by others and belongs to another user; left as it is")
	}
}

// Inspect reads the token file, looks its token up and plans, without the
// lock and changing nothing: what status reports. It ends OK when the file
// holds our periodic token, Fail otherwise.
func Inspect(ctx context.Context, v Vault, cfg Config) Outcome {
	if cfg.Ledger != nil {
		cfg.Ledger = &dryStore{LedgerStore: cfg.Ledger}
	}
	r := newRun(v, cfg)
	r.load()
	if r.read(ctx) {
		r.lookUp(ctx)
	}
	r.out.Plan = decide.Decide(r.found())
	o := r.end()
	if o.Plan.Action != decide.Renew {
		o.Kind = Fail
	}
	return o
}
