// Package renew carries out one run of the renewer, and the walk: it finds
// the token in the file, has decide.Decide plan what to do (renew our
// periodic token, heal a foreign clobber by re-minting with the foreign
// token's own authority, refuse one that cannot, or fail without touching
// the token file), carries the plan out, and returns one Outcome that
// every reader (the closing line, status, the state file, the metrics)
// reads.
//
// The decisions (decide's, failure.Classify, sweep.Judge and the ledger's
// fold) are pure; Vault is reached only through the Vault interface and the
// ledger only through LedgerStore, so that the whole behaviour matrix runs
// against fakes in unit tests and a real dev server in integration tests.
package renew

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/tokenstore"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/sweep"
)

// Vault is the Vault I/O one run needs. Every call names the token it acts
// as, because a heal acts as three: the foreign token, the new one, and
// never the environment's VAULT_TOKEN.
type Vault interface {
	LookupSelf(ctx context.Context, token string) (decide.TokenInfo, error)
	// RenewSelf renews token and returns its TTL after the renewal.
	RenewSelf(ctx context.Context, token string) (Renewal, error)
	// CreateOrphan is one auth/token/create with no_parent and s's meta, as
	// token: one attempt, never retried below this interface, because
	// every attempt must be written ahead in the ledger (create).
	CreateOrphan(ctx context.Context, token string, s decide.Spec) (Created, error)
	RevokeSelf(ctx context.Context, token string) error
	// CanCreateOrphan asks Vault (capabilities-self) whether token may mint
	// a periodic orphan; used only by dry runs, which must not mint.
	CanCreateOrphan(ctx context.Context, token string) (bool, error)
	// Accessors binds the sweep's I/O to token.
	Accessors(token string) sweep.Accessors
	// ClusterID names the Vault cluster (and namespace) answering, so that
	// a ledger is trusted only by the Vault whose tokens it holds.
	ClusterID(ctx context.Context) (string, error)
}

// LedgerStore keeps the ledger between runs: the run state file
// (runstate.StateLedger) in production, memory in tests.
type LedgerStore interface {
	Load() (ledger.Ledger, error)
	// Fold applies a change to the stored ledger and saves it, atomically
	// with respect to other processes, and returns the ledger saved.
	Fold(func(ledger.Ledger) ledger.Ledger) (ledger.Ledger, error)
	// Spared are the accessors the ledgers of this machine's other token
	// files hold (a shell's --token-file beside the unit's): their tokens
	// look like ours to a walk, and are never this file's to revoke.
	Spared() []string
}

// Renewal is Vault's answer to renew-self.
type Renewal struct {
	TTL      time.Duration
	Warnings []string // e.g. that a max TTL capped the renewal
}

// Created is Vault's answer to the heal's create. Secret never leaves the
// run.
type Created struct {
	Secret, Accessor string
	Warnings         []string
}

// Sentinels a caller acts on.
var (
	// ErrHealDenied: a foreign token is in the file and Vault refused to let
	// it mint (or it is a kind of token that never can). This is DRIFT: the
	// file is untouched and a human must look.
	ErrHealDenied = errors.New("heal denied — foreign token lacks create authority; investigate what wrote it")
)

// Config is one run's settings.
type Config struct {
	// Store is where the operator's CLI keeps the token: a token file, or
	// a token helper (tokenstore.Resolve).
	Store       tokenstore.Store
	Spec        decide.Spec
	DryRun      bool
	Concurrency int           // sweep lookups in flight
	MaxRPS      float64       // sweep requests per second; 0 for no cap
	LockWait    time.Duration // how long to wait for another run's lock
	Log         zerolog.Logger
	// Ledger keeps this machine's token accessors between runs; nil means
	// none (kept in memory for the run): a heal then retires nothing stale,
	// and only the walk finds it.
	Ledger LedgerStore
	// CreateRetries is how often a create that may not have reached Vault
	// (a 429, a 5xx, no answer) is tried again; the API client's own
	// VAULT_MAX_RETRIES, which the adapter turns off for the create.
	CreateRetries int
	// RetryWait is the pause before each create retry; 0 means a second.
	RetryWait time.Duration
	// Progress, if set, is told how far a sweep's lookups got.
	Progress func(done, total int)
	// Now is the clock for the ledger's and the TTL judgement's times; nil
	// means time.Now.
	Now func() time.Time
}

// Owner is the machine a sweep acts for.
func (c Config) Owner() sweep.Owner {
	return sweep.Owner{Host: c.Spec.Host, User: c.Spec.User, Profile: c.Spec.Profile}
}

func (c Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// sweepOptions is the one place a sweep's options are built: this
// machine's display name and owner, the pace the operator set, and what
// the sweep must keep. It only looks up; the caller sets Apply to revoke.
func (c Config) sweepOptions(keep ...string) sweep.Options {
	return sweep.Options{
		DisplayName: c.Spec.StoredDisplayName(),
		Owner:       c.Owner(),
		Keep:        keep,
		Concurrency: c.Concurrency,
		MaxRPS:      c.MaxRPS,
		Progress:    c.Progress,
	}
}

// Run performs one run under the lock beside the token file: it finds the
// token, plans (decide.Decide), and carries the plan out. The Outcome holds
// the plan and what came of it, also when the run failed.
func Run(ctx context.Context, v Vault, cfg Config) Outcome {
	r := newRun(v, cfg)
	if !cfg.DryRun { // a dry run changes nothing: no lock file, no chmod
		lock, err := r.lock(ctx)
		if err == nil {
			defer lock.Release()
		}
	}
	// The ledger and the file are read only after the lock is taken: a run
	// that waited must see what the previous run saved and wrote.
	r.load()
	if r.out.Err == nil && r.read(ctx) {
		if !cfg.DryRun {
			r.tighten()
		}
		r.lookUp(ctx)
	}
	r.plan(ctx)
	r.carryOut(ctx)
	return r.end()
}

// run is one run's state: what it acts with, its view of the ledger, the
// token in the file, and the outcome it fills in as it goes.
type run struct {
	v   Vault
	cfg Config
	led *runLedger
	tok string // the token in the file
	out Outcome
}

func newRun(v Vault, cfg Config) *run {
	return &run{v: v, cfg: cfg, out: Outcome{Path: cfg.Store.String(), DryRun: cfg.DryRun}}
}

// load reads the ledger: a dry run's in memory from then on, and a run's
// without a state file only in memory.
func (r *run) load() {
	store := r.cfg.Ledger
	if store == nil {
		store = &memStore{}
	}
	if r.cfg.DryRun {
		store = &dryStore{LedgerStore: store}
	}
	r.led = loadLedger(store, r.cfg.Log)
}

// found is what the run found, for the plan.
func (r *run) found() decide.Found {
	return decide.Found{Spec: r.cfg.Spec, Token: r.out.Current, Err: r.out.Err, Stage: r.out.Stage, Cause: r.out.Cause, Ledger: r.led.l}
}

// plan decides what to do from what the run found. A dry run first asks
// Vault whether a foreign token may mint (it must not mint to find out).
func (r *run) plan(ctx context.Context) {
	f := r.found()
	if r.cfg.DryRun && f.Err == nil && !decide.IsOurs(f.Token, f.Spec) && decide.CannotMint(f.Token) == "" {
		f.Capability = r.askCapability(ctx)
		f.Err, f.Stage, f.Cause = r.out.Err, r.out.Stage, r.out.Cause
	}
	r.out.Plan = decide.Decide(f)
}

// askCapability asks Vault (capabilities-self) whether the foreign token
// may mint a periodic orphan.
func (r *run) askCapability(ctx context.Context) decide.Capability {
	ok, err := r.v.CanCreateOrphan(ctx, r.tok)
	switch {
	case err != nil:
		r.out.fail(failure.StageCapabilities, failure.AskToken, fmt.Errorf("foreign accessor %s: %w", r.out.Current.Accessor, err))
		return decide.Unasked
	case ok:
		return decide.MayMint
	}
	return decide.MayNotMint
}

// carryOut does what the plan says.
func (r *run) carryOut(ctx context.Context) {
	p := r.out.Plan
	switch p.Action {
	case decide.Renew:
		r.renew(ctx)
	case decide.Heal:
		r.heal(ctx)
	case decide.Refuse:
		r.out.Cause = p.Cause
		if r.out.Refusal = p.Blocker; p.Blocker == "" {
			r.out.fail(p.Stage, failure.AskMore, ErrHealDenied) // Vault said no to the dry run's question
			break
		}
		r.out.fail(p.Stage, failure.AskMore, fmt.Errorf("%w: %s", ErrHealDenied, p.Blocker))
	}
	r.out.Gap = r.led.gap()
}

// end is the outcome as the run left it.
func (r *run) end() Outcome {
	r.out.Ledger = r.led.l
	r.out.Kind = r.out.kind()
	return r.out
}

// renew renews our periodic token and judges what Vault's caps left of
// its TTL: below the period is a warning, below a day is a failure, so the
// unit fails while there is still time to act. The token enters the ledger
// if the plan says so (a manual re-mint), and the ledger's other tokens,
// stale now, are retired; with nothing stale that costs no request.
func (r *run) renew(ctx context.Context) {
	cur := r.out.Current
	if r.cfg.DryRun {
		r.out.TTL = cur.TTL
		r.retire(ctx, r.tok, checkCluster)
		return
	}
	rn, err := r.v.RenewSelf(ctx, r.tok)
	if err != nil {
		r.out.fail(failure.StageRenew, failure.AskToken, fmt.Errorf("accessor %s: %w", cur.Accessor, err))
		return
	}
	r.out.TTL, r.out.VaultWarnings = rn.TTL, rn.Warnings
	r.out.Cap = decide.JudgeTTL(cur, rn.TTL, r.cfg.now())
	if r.out.Cap.Fatal {
		r.out.Cause = failure.CauseCapped
		r.out.fail(failure.StageCap, failure.AskToken, fmt.Errorf("%w: accessor %s has %s left", failure.ErrCapped, cur.Accessor, rn.TTL))
		return
	}
	if r.out.Plan.Record {
		r.led.update(func(l ledger.Ledger) ledger.Ledger { return l.Found(cur.Accessor, r.cfg.now()) })
	}
	r.retire(ctx, r.tok, checkCluster)
}
