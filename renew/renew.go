// Package renew decides and carries out one run of the renewer: renew our
// periodic token, heal a foreign clobber by re-minting with the foreign
// token's own authority, or fail without touching the token file.
//
// The decisions (IsOurs, JudgeMinted, Classify, sweep.Judge) are pure; Vault
// is reached only through the Vault interface so that the whole behaviour
// matrix runs against a fake in unit tests and a real dev server in
// integration tests.
package renew

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// Vault is the Vault I/O one run needs. Every call names the token it acts
// as, because a heal acts as three: the foreign token, the minted one, and
// never the environment's VAULT_TOKEN.
type Vault interface {
	LookupSelf(ctx context.Context, token string) (TokenInfo, error)
	// RenewSelf renews token and returns its TTL after the renewal.
	RenewSelf(ctx context.Context, token string) (Renewal, error)
	// CreateOrphan is auth/token/create with no_parent and s's meta, as token.
	CreateOrphan(ctx context.Context, token string, s Spec) (Minted, error)
	RevokeSelf(ctx context.Context, token string) error
	// CanCreateOrphan asks Vault (capabilities-self) whether token may mint
	// a periodic orphan; used only by dry runs, which must not mint.
	CanCreateOrphan(ctx context.Context, token string) (bool, error)
	// Accessors binds the sweep's I/O to token.
	Accessors(token string) sweep.Accessors
}

// Renewal is Vault's answer to renew-self.
type Renewal struct {
	TTL      time.Duration
	Warnings []string // e.g. that a max TTL capped the renewal
}

// Minted is Vault's answer to the heal's create. Secret never leaves the run.
type Minted struct {
	Secret, Accessor string
	Warnings         []string
}

// Sentinels a caller acts on.
var (
	// ErrHealDenied: a foreign token is in the file and Vault refused to let
	// it mint (or it is a kind of token that never can). This is DRIFT: the
	// file is untouched and a human must look.
	ErrHealDenied = errors.New("heal denied — foreign token lacks create authority; investigate what wrote it")
	// ErrMintRejected: Vault minted a token that failed the sanity check; it
	// was revoked and the file is untouched.
	ErrMintRejected = errors.New("minted token failed the sanity check")
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
	Spec        Spec
	DryRun      bool
	Concurrency int           // sweep lookups in flight
	MaxRPS      float64       // sweep requests per second; 0 for no cap
	LockWait    time.Duration // how long to wait for another run's lock
	Log         zerolog.Logger
	// WriteToken replaces the token file; nil means tokenfile.Write. Tests
	// set it to make the write fail after a successful mint.
	WriteToken func(path, token string) error
}

// Owner is the machine a sweep acts for.
func (c Config) Owner() sweep.Owner { return sweep.Owner{Host: c.Spec.Host, User: c.Spec.User} }

// Result is what happened, for the caller to report. It is filled as far as
// the run got, also when Run returns an error.
type Result struct {
	Action  Action
	DryRun  bool
	Path    string
	Current TokenInfo // the token found in the file
	TTL     time.Duration
	Minted  TokenInfo // after a heal: the new periodic token
	Sweep   sweep.Report
	// SweepErr is why the heal's sweep did not finish; the heal stands, but a
	// stale token (or one stranded by a retried create) may be left.
	SweepErr error
	Stage    Stage // the step a failure happened in
	Cause    Cause
	// Refusal is why the heal was denied: Vault's answer to the create, or
	// why this kind of token can never mint (CannotMint).
	Refusal string
	// Cap is what Vault's TTL caps mean for the token the file now holds.
	Cap TTLVerdict
	// VaultWarnings are the warnings Vault attached to the renew or create.
	VaultWarnings []string
	// MintedAccessor is the token a heal minted, once Vault answered the
	// create; MintRevoked says whether a failed heal managed to revoke it.
	MintedAccessor string
	MintRevoked    bool
}

func (r *Result) fail(stage Stage, asked bool, err error) (Result, error) {
	r.Stage = stage
	if r.Cause == CauseUnknown {
		r.Cause = Classify(err, asked)
	}
	return *r, err
}

// Run performs one run under the lock beside the token file.
func Run(ctx context.Context, v Vault, cfg Config) (Result, error) {
	res := Result{Path: cfg.TokenFile, DryRun: cfg.DryRun}
	if !cfg.DryRun {
		lctx, cancel := context.WithTimeout(ctx, cfg.LockWait)
		lock, err := tokenfile.Acquire(lctx, cfg.TokenFile)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			return res.fail(StageLock, false, err)
		}
		defer lock.Release()
	}

	// Read only after taking the lock: a run that waited must see the token
	// the previous run wrote.
	tok, err := tokenfile.Read(cfg.TokenFile)
	if err != nil {
		return res.fail(StageRead, false, err)
	}
	cur, err := v.LookupSelf(ctx, tok)
	if err != nil {
		return res.fail(StageLookup, false, fmt.Errorf("token in %s: %w", cfg.TokenFile, err))
	}
	res.Current = cur
	switch {
	case IsOurs(cur, cfg.Spec):
		return renewOurs(ctx, v, cfg, tok, res)
	case cfg.DryRun:
		return dryHeal(ctx, v, cfg, tok, res)
	}
	return heal(ctx, v, cfg, tok, res)
}

// renewOurs renews our periodic token and judges what Vault's caps left of
// its TTL: below the period is a warning, below a day is a failure, so the
// unit fails while there is still time to act.
func renewOurs(ctx context.Context, v Vault, cfg Config, tok string, res Result) (Result, error) {
	res.Action = ActionRenew
	if cfg.DryRun {
		res.TTL = res.Current.TTL
		return res, nil
	}
	r, err := v.RenewSelf(ctx, tok)
	if err != nil {
		return res.fail(StageRenew, false, fmt.Errorf("accessor %s: %w", res.Current.Accessor, err))
	}
	res.TTL, res.VaultWarnings = r.TTL, r.Warnings
	res.Cap = JudgeTTL(res.Current, r.TTL, time.Now())
	if res.Cap.Fatal {
		res.Cause = CauseCapped
		return res.fail(StageCap, false, fmt.Errorf("%w: accessor %s has %s left: %s", ErrCapped, res.Current.Accessor, r.TTL, res.Cap.Why))
	}
	return res, nil
}

// heal re-mints our periodic token with the foreign token's authority:
// mint, check, write, then sweep the stale ones. Until the write, any
// failure revokes the minted token, so a failed heal strands nothing and
// leaves the file byte-identical.
func heal(ctx context.Context, v Vault, cfg Config, foreign string, res Result) (Result, error) {
	log := cfg.Log.With().Str("foreign_accessor", res.Current.Accessor).Str("foreign_display_name", res.Current.DisplayName).Logger()
	res.Action = ActionHeal
	if why := CannotMint(res.Current); why != "" {
		res.Action, res.Refusal, res.Cause = ActionRefuse, why, CauseRefused
		return res.fail(StageCreate, true, fmt.Errorf("%w: %s", ErrHealDenied, why))
	}
	m, err := v.CreateOrphan(ctx, foreign, cfg.Spec)
	if err != nil {
		if Classify(err, true) == CauseRefused {
			res.Action, res.Refusal = ActionRefuse, err.Error()
			return res.fail(StageCreate, true, fmt.Errorf("%w: %w", ErrHealDenied, err))
		}
		return res.fail(StageCreate, true, fmt.Errorf("as foreign accessor %s: %w", res.Current.Accessor, err))
	}
	res.VaultWarnings, res.MintedAccessor = m.Warnings, m.Accessor
	log.Info().Str("accessor", m.Accessor).Msg("minted periodic token with the foreign token's authority")

	if stage, err := check(ctx, v, cfg, m, &res); err != nil {
		res.MintRevoked = discard(ctx, v, log, m)
		// A just-minted token that Vault will not look up is Vault refusing
		// the check, not a dead token in the file.
		return res.fail(stage, stage == StageCheck, err)
	}
	if err := writeToken(cfg, m.Secret); err != nil {
		if !errors.Is(err, tokenfile.ErrNotDurable) {
			res.MintRevoked = discard(ctx, v, log, m)
			return res.fail(StageWrite, false, err)
		}
		// The rename happened: the file holds the new token. Revoking it now
		// would leave a dead token in the file, so carry on and say so.
		log.Warn().Err(err).Msg("token file replaced but its directory was not synced; a crash now could restore the old file")
	}
	res.TTL = res.Minted.TTL
	sweepStale(ctx, v, cfg, log, m, &res)
	return res, nil
}

// check looks the minted token up as itself and judges it: the sanity
// predicate, then Vault's TTL caps.
func check(ctx context.Context, v Vault, cfg Config, m Minted, res *Result) (Stage, error) {
	minted, err := v.LookupSelf(ctx, m.Secret)
	if err != nil {
		return StageCheck, fmt.Errorf("minted accessor %s: %w", m.Accessor, err)
	}
	res.Minted = minted
	if j := JudgeMinted(minted, cfg.Spec); !j.OK() {
		return StageCheck, fmt.Errorf("%w: accessor %s: %s", ErrMintRejected, m.Accessor, strings.Join(j.Problems, "; "))
	}
	res.Cap = JudgeTTL(minted, minted.TTL, time.Now())
	if res.Cap.Fatal {
		res.Cause = CauseCapped
		return StageCap, fmt.Errorf("%w: minted accessor %s has %s: %s", ErrCapped, m.Accessor, minted.TTL, res.Cap.Why)
	}
	return StageNone, nil
}

// discard revokes a minted token the file will not hold and says whether
// it could. The run's deadline may be what failed, so the revoke gets its
// own.
func discard(ctx context.Context, v Vault, log zerolog.Logger, m Minted) bool {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := v.RevokeSelf(rctx, m.Secret); err != nil {
		log.Error().Err(err).Str("accessor", m.Accessor).Msg("could not revoke the minted token; revoke it by accessor (vault token revoke -accessor " + m.Accessor + "), or let the next heal's sweep do it")
		return false
	}
	log.Info().Str("accessor", m.Accessor).Msg("revoked the minted token")
	return true
}

func writeToken(cfg Config, secret string) error {
	if cfg.WriteToken != nil {
		return cfg.WriteToken(cfg.TokenFile, secret)
	}
	return tokenfile.Write(cfg.TokenFile, secret)
}

// sweepStale revokes this machine's stale periodic tokens, acting as the
// new one. That includes one a lost create answer may have stranded: the
// client retried the create, and the first token is tagged for this machine
// but not in the keep set. Failures never undo the heal; they are reported.
func sweepStale(ctx context.Context, v Vault, cfg Config, log zerolog.Logger, m Minted, res *Result) {
	rep, err := sweep.Run(ctx, v.Accessors(m.Secret), sweep.Options{
		DisplayName: cfg.Spec.StoredDisplayName(),
		Owner:       cfg.Owner(),
		Keep:        []string{m.Accessor, res.Current.Accessor},
		Apply:       true,
		Concurrency: cfg.Concurrency,
		MaxRPS:      cfg.MaxRPS,
	})
	res.Sweep, res.SweepErr = rep, err
	for _, f := range rep.Failed {
		log.Warn().Err(f.Err).Str("accessor", f.Accessor).Str("op", f.Op).Msg("stale sweep: could not " + f.Op + " accessor; the heal stands")
	}
	for _, a := range rep.Revoked {
		log.Info().Str("accessor", a).Msg("revoked stale periodic token")
	}
}

// dryHeal says whether a heal would be allowed, without minting: Vault's
// own capabilities-self answer for auth/token/create (identity policies
// included), and the periodic accessors a heal would revoke.
func dryHeal(ctx context.Context, v Vault, cfg Config, foreign string, res Result) (Result, error) {
	if why := CannotMint(res.Current); why != "" {
		res.Action, res.Refusal, res.Cause = ActionRefuse, why, CauseRefused
		return res.fail(StageCreate, true, fmt.Errorf("%w: %s", ErrHealDenied, why))
	}
	ok, err := v.CanCreateOrphan(ctx, foreign)
	if err != nil {
		return res.fail(StageCapabilities, false, fmt.Errorf("foreign accessor %s: %w", res.Current.Accessor, err))
	}
	if !ok {
		res.Action, res.Cause = ActionRefuse, CauseRefused
		return res.fail(StageCreate, true, ErrHealDenied)
	}
	res.Action = ActionHeal
	rep, err := sweep.Run(ctx, v.Accessors(foreign), sweep.Options{
		DisplayName: cfg.Spec.StoredDisplayName(),
		Owner:       cfg.Owner(),
		Keep:        []string{res.Current.Accessor},
		Concurrency: cfg.Concurrency,
		MaxRPS:      cfg.MaxRPS,
	})
	res.Sweep, res.SweepErr = rep, err
	return res, nil
}
