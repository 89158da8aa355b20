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

	"github.com/devvm/vault-token-renew/internal/atomicfile"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// Vault is the Vault I/O one run needs. Every call names the token it acts
// as, because a heal acts as three: the foreign token, the minted one, and
// never the environment's VAULT_TOKEN.
type Vault interface {
	LookupSelf(ctx context.Context, token string) (TokenInfo, error)
	// RenewSelf renews token and returns its TTL after the renewal.
	RenewSelf(ctx context.Context, token string) (time.Duration, error)
	// CreateOrphan is auth/token/create with no_parent, as token. It returns
	// the new token's secret and accessor.
	CreateOrphan(ctx context.Context, token string, s Spec) (secret, accessor string, err error)
	RevokeSelf(ctx context.Context, token string) error
	// CanCreateOrphan asks Vault (capabilities-self) whether token may mint
	// a periodic orphan; used only by dry runs, which must not mint.
	CanCreateOrphan(ctx context.Context, token string) (bool, error)
	// Accessors binds the sweep's I/O to token.
	Accessors(token string) sweep.Accessors
}

// Sentinels a caller acts on.
var (
	// ErrHealDenied: a foreign token is in the file and Vault refused to let
	// it mint. This is DRIFT: the file is untouched and a human must look.
	ErrHealDenied = errors.New("heal denied — foreign token lacks create authority; investigate what wrote it")
	// ErrMintRejected: Vault minted a token that failed the sanity check; it
	// was revoked and the file is untouched.
	ErrMintRejected = errors.New("minted token failed the sanity check")
)

// Action is what a run did, or would do in a dry run.
type Action string

const (
	ActionNone    Action = ""
	ActionRenew   Action = "renew"
	ActionHeal    Action = "heal"
	ActionRefuse  Action = "refuse"
	ActionNothing Action = "nothing"
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
}

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
	// Stage names the step a failure happened in (read, lookup, renew,
	// create, check, write, sweep), so the report can say what to do next.
	Stage string
	Cause Cause
	// Refusal is Vault's answer when it refused the heal's create (DRIFT).
	Refusal string
}

// writeToken is the one writer of the token file; a variable only so that a
// test can make the write fail after a successful mint.
var writeToken = defaultWriteToken

func defaultWriteToken(path, token string) error { return tokenfile.Write(path, token) }

// Run performs one run under the lock beside the token file.
func Run(ctx context.Context, v Vault, cfg Config) (res Result, err error) {
	res.Path = cfg.TokenFile
	res.DryRun = cfg.DryRun
	fail := func(stage string, onCreate bool, err error) (Result, error) {
		res.Stage = stage
		res.Cause = Classify(err, onCreate)
		return res, err
	}

	if !cfg.DryRun {
		lctx, cancel := context.WithTimeout(ctx, cfg.LockWait)
		lock, err := tokenfile.Acquire(lctx, cfg.TokenFile)
		cancel()
		if err != nil {
			return fail("lock", false, err)
		}
		defer lock.Release()
	}

	// Read only after taking the lock: a run that waited must see the token
	// the previous run wrote.
	tok, err := tokenfile.Read(cfg.TokenFile)
	if err != nil {
		return fail("read", false, err)
	}
	cur, err := v.LookupSelf(ctx, tok)
	if err != nil {
		return fail("lookup", false, fmt.Errorf("token in %s: %w", cfg.TokenFile, err))
	}
	res.Current = cur

	if IsOurs(cur, cfg.Spec) {
		res.Action = ActionRenew
		if cfg.DryRun {
			res.TTL = cur.TTL
			return res, nil
		}
		ttl, err := v.RenewSelf(ctx, tok)
		if err != nil {
			return fail("renew", false, fmt.Errorf("accessor %s: %w", cur.Accessor, err))
		}
		res.TTL = ttl
		return res, nil
	}

	if cfg.DryRun {
		return dryHeal(ctx, v, cfg, tok, res)
	}
	return heal(ctx, v, cfg, tok, res)
}

func heal(ctx context.Context, v Vault, cfg Config, foreign string, res Result) (Result, error) {
	log := cfg.Log.With().Str("foreign_accessor", res.Current.Accessor).Str("foreign_display_name", res.Current.DisplayName).Logger()
	fail := func(stage string, err error) (Result, error) {
		res.Stage = stage
		if res.Cause == CauseUnknown {
			res.Cause = Classify(err, false)
		}
		return res, err
	}

	res.Action = ActionHeal
	secret, acc, err := v.CreateOrphan(ctx, foreign, cfg.Spec)
	if err != nil {
		res.Cause = Classify(err, true)
		if res.Cause == CauseRefused {
			res.Action, res.Refusal = ActionRefuse, err.Error()
			return fail("create", fmt.Errorf("%w: %w", ErrHealDenied, err))
		}
		return fail("create", fmt.Errorf("as foreign accessor %s: %w", res.Current.Accessor, err))
	}
	log.Info().Str("accessor", acc).Msg("minted periodic token with the foreign token's authority")

	// From here on, any failure before the file holds the new token must
	// revoke it, so a failed heal never strands an admin token.
	discard := func(stage string, err error) (Result, error) {
		// The run's deadline may be what failed; the revoke gets its own.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := v.RevokeSelf(rctx, secret); rerr != nil {
			log.Error().Err(rerr).Str("accessor", acc).Msg("could not revoke the minted token; revoke it by accessor (vault token revoke -accessor " + acc + "), or let the next heal's sweep do it")
		} else {
			log.Info().Str("accessor", acc).Msg("revoked the minted token")
		}
		return fail(stage, err)
	}

	minted, err := v.LookupSelf(ctx, secret)
	if err != nil {
		return discard("check", fmt.Errorf("minted accessor %s: %w", acc, err))
	}
	res.Minted = minted
	j := JudgeMinted(minted, cfg.Spec)
	for _, w := range j.Warnings {
		log.Warn().Str("accessor", acc).Msg(w)
	}
	if !j.OK() {
		return discard("check", fmt.Errorf("%w: accessor %s: %s", ErrMintRejected, acc, strings.Join(j.Problems, "; ")))
	}

	if err := writeToken(cfg.TokenFile, secret); err != nil {
		var dse *atomicfile.DirSyncError
		if !errors.As(err, &dse) {
			return discard("write", err)
		}
		// The rename happened: the file holds the new token. Revoking it now
		// would leave a dead token in the file, so carry on and say so.
		log.Warn().Err(err).Msg("token file replaced but its directory was not synced; a crash now could restore the old file")
	}
	res.TTL = minted.TTL

	rep, err := sweep.Run(ctx, v.Accessors(secret), sweep.Options{
		DisplayName: cfg.Spec.StoredDisplayName(),
		Keep:        []string{acc, res.Current.Accessor},
		Apply:       true,
		Concurrency: cfg.Concurrency,
		MaxRPS:      cfg.MaxRPS,
	})
	res.Sweep = rep
	for _, f := range rep.Failed {
		log.Warn().Err(f.Err).Str("accessor", f.Accessor).Str("op", f.Op).Msg("stale sweep: could not " + f.Op + " accessor; the heal stands")
	}
	for _, a := range rep.Revoked {
		log.Info().Str("accessor", a).Msg("revoked stale periodic token")
	}
	if err != nil {
		log.Warn().Err(err).Msg("stale sweep did not finish; the heal stands; run: vault-token-renew sweep")
	}
	return res, nil
}

// dryHeal says whether a heal would be allowed, without minting: Vault's
// own capabilities-self answer for auth/token/create (identity policies
// included), and the periodic accessors a heal would revoke.
func dryHeal(ctx context.Context, v Vault, cfg Config, foreign string, res Result) (Result, error) {
	ok, err := v.CanCreateOrphan(ctx, foreign)
	if err != nil {
		res.Stage, res.Cause = "capabilities", Classify(err, false)
		return res, fmt.Errorf("foreign accessor %s: %w", res.Current.Accessor, err)
	}
	if !ok {
		res.Action = ActionRefuse
		res.Stage, res.Cause = "create", CauseRefused
		return res, ErrHealDenied
	}
	res.Action = ActionHeal
	rep, err := sweep.Run(ctx, v.Accessors(foreign), sweep.Options{
		DisplayName: cfg.Spec.StoredDisplayName(),
		Keep:        []string{res.Current.Accessor},
		Concurrency: cfg.Concurrency,
		MaxRPS:      cfg.MaxRPS,
	})
	res.Sweep = rep
	if err != nil {
		cfg.Log.Warn().Err(err).Msg("dry run could not list the periodic tokens a heal would revoke")
	}
	return res, nil
}
