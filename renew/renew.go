// Package renew decides and carries out one run of the renewer: renew our
// periodic token, heal a foreign clobber by re-minting with the foreign
// token's own authority, or fail without touching the token file.
//
// The decisions (IsOurs, JudgeMinted, JudgeTTL, failure.Classify, sweep.Judge and the
// ledger's fold) are pure; Vault is reached only through the Vault interface
// and the ledger only through LedgerStore, so that the whole behaviour
// matrix runs against fakes in unit tests and a real dev server in
// integration tests.
package renew

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
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
// (runstate.LedgerStore) in production, memory in tests.
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

// Action is what a run did, or would do in a dry run.
type Action string

const (
	ActionRenew  Action = "renew"
	ActionHeal   Action = "heal"
	ActionRefuse Action = "refuse"
)

// Config is one run's settings.
type Config struct {
	TokenFile   string
	Spec        decide.Spec
	DryRun      bool
	Concurrency int           // sweep lookups in flight
	MaxRPS      float64       // sweep requests per second; 0 for no cap
	LockWait    time.Duration // how long to wait for another run's lock
	Log         zerolog.Logger
	// Ledger keeps this machine's token accessors between runs; nil means
	// none: a heal then retires nothing stale, and only the walk finds it.
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
	// WriteToken replaces the token file; nil means tokenfile.Write. Tests
	// set it to make the write fail after a successful mint.
	WriteToken func(path, token string) error
}

// Owner is the machine a sweep acts for.
func (c Config) Owner() sweep.Owner { return sweep.Owner{Host: c.Spec.Host, User: c.Spec.User} }

func (c Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// sweepOptions is the one place a sweep's options are built: this
// machine's display name and owner, the pace the operator set, and what
// the sweep must keep.
func (c Config) sweepOptions(apply bool, keep ...string) sweep.Options {
	return sweep.Options{
		DisplayName: c.Spec.StoredDisplayName(),
		Owner:       c.Owner(),
		Keep:        keep,
		Apply:       apply,
		Concurrency: c.Concurrency,
		MaxRPS:      c.MaxRPS,
		Progress:    c.Progress,
	}
}

// Result is what happened, for the caller to report. It is filled as far as
// the run got, also when Run returns an error.
type Result struct {
	Action  Action
	DryRun  bool
	Path    string
	Current decide.TokenInfo // the token found in the file
	TTL     time.Duration
	// New is the token a heal minted: its accessor once Vault answered the
	// create, all of it once its check looked it up. NewRevoked says
	// whether a failed heal managed to revoke it.
	New        decide.TokenInfo
	NewRevoked bool
	Sweep      sweep.Report
	// SweepErr is why the sweep did not finish; a heal stands, but a
	// stale token (or one stranded by a lost create) may be left.
	SweepErr error
	// Gap is what the ledger cannot vouch for after the run: tokens of
	// this machine it cannot know may remain, and only a walk (Walk) finds
	// them; ledger.NoGap when the ledger knows every one.
	Gap ledger.Gap
	// Walk is what a walk (`sweep`) did; nil for a run.
	Walk *WalkRun
	// Ledger is the ledger as the run left it.
	Ledger ledger.Ledger
	Stage  failure.Stage // the step a failure happened in
	Cause  failure.Cause
	// Refusal is why the heal was denied: Vault's answer to the create, or
	// why this kind of token can never mint (CannotMint).
	Refusal string
	// Cap is what Vault's TTL caps mean for the token the file now holds.
	Cap decide.TTLVerdict
	// VaultWarnings are the warnings Vault attached to the renew or create.
	VaultWarnings []string
}

func (r *Result) fail(stage failure.Stage, ask failure.Ask, err error) (Result, error) {
	r.Stage = stage
	if r.Cause == failure.CauseUnknown {
		r.Cause = failure.Classify(err, ask)
	}
	return *r, err
}

// Run performs one run under the lock beside the token file.
func Run(ctx context.Context, v Vault, cfg Config) (Result, error) {
	o, res, err := open(ctx, v, cfg, !cfg.DryRun)
	if err != nil {
		return res, err
	}
	defer o.close()
	b := openBook(cfg, !cfg.DryRun)
	switch {
	case decide.IsOurs(res.Current, cfg.Spec):
		res, err = renewOurs(ctx, v, cfg, o.token, res, b)
	case cfg.DryRun:
		res, err = dryHeal(ctx, v, cfg, o.token, res, b)
	default:
		res, err = heal(ctx, v, cfg, o.token, res, b)
	}
	res.Ledger = b.l
	return res, err
}

// renewOurs renews our periodic token and judges what Vault's caps left of
// its TTL: below the period is a warning, below a day is a failure, so the
// unit fails while there is still time to act. The token enters the ledger
// if it is not there yet (a manual re-mint), and the ledger's other tokens,
// stale now, are retired; with nothing stale that costs no request.
func renewOurs(ctx context.Context, v Vault, cfg Config, tok string, res Result, b *book) (Result, error) {
	res.Action = ActionRenew
	if cfg.DryRun {
		res.TTL = res.Current.TTL
		retire(ctx, v, cfg, &res, b, retirement{as: tok, keep: []string{res.Current.Accessor}})
		res.Gap = b.gap()
		return res, nil
	}
	r, err := v.RenewSelf(ctx, tok)
	if err != nil {
		return res.fail(failure.StageRenew, failure.AskToken, fmt.Errorf("accessor %s: %w", res.Current.Accessor, err))
	}
	res.TTL, res.VaultWarnings = r.TTL, r.Warnings
	res.Cap = decide.JudgeTTL(res.Current, r.TTL, cfg.now())
	if res.Cap.Fatal {
		res.Cause = failure.CauseCapped
		return res.fail(failure.StageCap, failure.AskToken, fmt.Errorf("%w: accessor %s has %s left", failure.ErrCapped, res.Current.Accessor, r.TTL))
	}
	if !b.l.Has(res.Current.Accessor) {
		b.update(func(l ledger.Ledger) ledger.Ledger { return l.Found(res.Current.Accessor, cfg.now()) })
	}
	retire(ctx, v, cfg, &res, b, retirement{as: tok, keep: []string{res.Current.Accessor}})
	res.Gap = b.gap()
	return res, nil
}

// heal re-mints our periodic token with the foreign token's authority:
// mint, check, write, then retire the stale ones. Until the write, any
// failure revokes the new token, so a failed heal strands nothing and
// leaves the file byte-identical.
func heal(ctx context.Context, v Vault, cfg Config, foreign string, res Result, b *book) (Result, error) {
	log := cfg.Log.With().Str("foreign_accessor", res.Current.Accessor).Str("foreign_display_name", safetext.Value(res.Current.DisplayName)).Logger()
	res.Action = ActionHeal
	if why := decide.CannotMint(res.Current); why != "" {
		res.Action, res.Refusal, res.Cause = ActionRefuse, why, failure.CauseRefused
		return res.fail(failure.StageCreate, failure.AskMore, fmt.Errorf("%w: %s", ErrHealDenied, why))
	}
	c, err := create(ctx, v, cfg, foreign, b, log)
	if err != nil {
		if failure.Classify(err, failure.AskMore) == failure.CauseRefused {
			res.Action, res.Refusal = ActionRefuse, err.Error()
			return res.fail(failure.StageCreate, failure.AskMore, fmt.Errorf("%w: %w", ErrHealDenied, err))
		}
		return res.fail(failure.StageCreate, failure.AskMore, fmt.Errorf("as foreign accessor %s: %w", res.Current.Accessor, err))
	}
	res.VaultWarnings, res.New.Accessor = c.Warnings, c.Accessor
	log.Info().Str("accessor", c.Accessor).Msg("minted periodic token with the foreign token's authority")

	if stage, err := checkNew(ctx, v, cfg, c, &res); err != nil {
		res.NewRevoked = discard(ctx, v, log, c, b)
		return res.fail(stage, checkAsk(stage), err)
	}
	if err := writeToken(cfg, c.Secret); err != nil {
		if !errors.Is(err, tokenfile.ErrNotDurable) {
			res.NewRevoked = discard(ctx, v, log, c, b)
			return res.fail(failure.StageWrite, failure.AskToken, err)
		}
		// The rename happened: the file holds the new token. Revoking it now
		// would leave a dead token in the file, so carry on and say so.
		log.Warn().Err(err).Msg("token file replaced but its directory was not synced; a crash now could restore the old file")
	}
	res.TTL = res.New.TTL
	b.checkVault(ctx, v)
	retire(ctx, v, cfg, &res, b, retirement{as: c.Secret, keep: []string{c.Accessor, res.Current.Accessor},
		notOurs: []string{res.Current.Accessor}, heal: true, log: &log})
	res.Gap = b.gap()
	return res, nil
}

// checkAsk: a just-minted token that Vault will not look up is Vault
// refusing the check, not a dead token in the file.
func checkAsk(stage failure.Stage) failure.Ask {
	if stage == failure.StageCheck {
		return failure.AskMore
	}
	return failure.AskToken
}

// checkNew looks the new token up as itself and judges it: the sanity
// predicate, then Vault's TTL caps.
func checkNew(ctx context.Context, v Vault, cfg Config, c Created, res *Result) (failure.Stage, error) {
	info, err := v.LookupSelf(ctx, c.Secret)
	if err != nil {
		return failure.StageCheck, fmt.Errorf("minted accessor %s: %w", c.Accessor, err)
	}
	res.New = info
	if j := decide.JudgeMinted(info, cfg.Spec); !j.OK() {
		return failure.StageCheck, fmt.Errorf("%w: accessor %s: %s", failure.ErrMintRejected, c.Accessor, strings.Join(j.Problems, "; "))
	}
	res.Cap = decide.JudgeTTL(info, info.TTL, cfg.now())
	if res.Cap.Fatal {
		res.Cause = failure.CauseCapped
		return failure.StageCap, fmt.Errorf("%w: minted accessor %s has %s", failure.ErrCapped, c.Accessor, info.TTL)
	}
	return failure.StageNone, nil
}

// discard revokes a new token the file will not hold and says whether it
// could; a revoked token leaves the ledger, one that survived stays for
// the next run to retire. The run's deadline may be what failed, so the
// revoke gets its own.
func discard(ctx context.Context, v Vault, log zerolog.Logger, c Created, b *book) bool {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := v.RevokeSelf(rctx, c.Secret); err != nil {
		log.Error().Err(err).Str("accessor", c.Accessor).Msg("could not revoke the minted token; revoke it by accessor, or let the next run retire it (it stays in the ledger)")
		return false
	}
	b.update(func(l ledger.Ledger) ledger.Ledger { return l.Forget(c.Accessor) })
	log.Info().Str("accessor", c.Accessor).Msg("revoked the minted token")
	return true
}

func writeToken(cfg Config, secret string) error {
	if cfg.WriteToken != nil {
		return cfg.WriteToken(cfg.TokenFile, secret)
	}
	return tokenfile.Write(cfg.TokenFile, secret)
}

// dryHeal says whether a heal would be allowed, without minting: Vault's
// own capabilities-self answer for auth/token/create (identity policies
// included), and the periodic tokens a heal would revoke from the ledger,
// as the heal itself would find them.
func dryHeal(ctx context.Context, v Vault, cfg Config, foreign string, res Result, b *book) (Result, error) {
	if why := decide.CannotMint(res.Current); why != "" {
		res.Action, res.Refusal, res.Cause = ActionRefuse, why, failure.CauseRefused
		return res.fail(failure.StageCreate, failure.AskMore, fmt.Errorf("%w: %s", ErrHealDenied, why))
	}
	ok, err := v.CanCreateOrphan(ctx, foreign)
	if err != nil {
		return res.fail(failure.StageCapabilities, failure.AskToken, fmt.Errorf("foreign accessor %s: %w", res.Current.Accessor, err))
	}
	if !ok {
		res.Action, res.Cause = ActionRefuse, failure.CauseRefused
		return res.fail(failure.StageCreate, failure.AskMore, ErrHealDenied)
	}
	res.Action = ActionHeal
	b.checkVault(ctx, v)
	retire(ctx, v, cfg, &res, b, retirement{as: foreign, keep: []string{res.Current.Accessor},
		notOurs: []string{res.Current.Accessor}, heal: true})
	res.Gap = b.gap()
	return res, nil
}
