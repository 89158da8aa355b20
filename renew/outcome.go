package renew

import (
	"errors"
	"strings"
	"time"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/sweep"
)

// Kind is how a run ended: the closing line's prefix (Prefix), the state
// file's outcome (its string), and what the exit status is made from. It is
// the one encoding of a run's ending, from the library to the exit code.
type Kind string

// The four endings of a run (README, "One run"). A walk and status end OK
// or Fail.
const (
	OK     Kind = "ok"
	Healed Kind = "healed"
	Drift  Kind = "drift"
	Fail   Kind = "fail"
)

// Kinds lists every kind, in the order metrics and tests use.
var Kinds = []Kind{OK, Healed, Drift, Fail}

// Prefix is the closing line's stable prefix: OK, HEALED, DRIFT or FAIL.
func (k Kind) Prefix() string { return strings.ToUpper(string(k)) }

// Success reports whether the run left a working periodic token in the file.
func (k Kind) Success() bool { return k == OK || k == Healed }

// Known reports whether k is one of the four kinds; anything else in a
// state file means the file was not written by this tool.
func (k Kind) Known() bool {
	for _, x := range Kinds {
		if k == x {
			return true
		}
	}
	return false
}

// Outcome is what one run (or status, or a walk) found, planned and did:
// the one value the closing line, status, the sweep table, the state file
// and the metrics read. It is filled as far as the run got.
type Outcome struct {
	Plan   decide.Plan
	Kind   Kind
	DryRun bool
	Path   string
	// Current is the token found in the file.
	Current decide.TokenInfo
	// Minted is the token a heal minted: its accessor once Vault answered
	// the create, all of it once its check looked it up.
	Minted Minted
	// TTL is what the file's token has left after the run.
	TTL time.Duration
	// Cap is what Vault's TTL caps mean for the token the file now holds.
	Cap decide.TTLVerdict
	// Sweep records each accessor the run (or the walk) looked up, and
	// what was done to it.
	Sweep sweep.Report
	// SweepErr is why retiring the ledger's stale tokens did not finish; a
	// heal stands, but a stale token may be left.
	SweepErr error
	// Gap is what the ledger cannot vouch for after the run: this
	// machine's tokens that may remain, which only a walk finds.
	Gap ledger.Gap
	// Ledger is the ledger as the run left it.
	Ledger ledger.Ledger
	// Walk is what a walk did; nil for a run.
	Walk *WalkRun
	// Stage, Cause and Err say where, why and what failed; Err is nil on
	// success.
	Stage failure.Stage
	Cause failure.Cause
	Err   error
	// Refusal is why the heal was denied: Vault's answer to the create, or
	// why this kind of token can never mint (the plan's Blocker); empty
	// when a dry run's capabilities question was answered no.
	Refusal string
	// VaultWarnings are the warnings Vault attached to the renew or create.
	VaultWarnings []string
}

// Minted is the token a heal minted, and whether a failed heal revoked it.
type Minted struct {
	decide.TokenInfo
	Revoked bool
}

// fail records a failure at stage; the cause is Classify's unless one was
// set already (a cap, a refusal).
func (o *Outcome) fail(stage failure.Stage, ask failure.Ask, err error) {
	o.Stage, o.Err = stage, err
	if o.Cause == failure.CauseUnknown {
		o.Cause = failure.Classify(err, ask)
	}
}

// kind is how the run ended. A dry run that would heal ends OK: nothing
// was healed.
func (o Outcome) kind() Kind {
	switch {
	case o.Err == nil && o.Plan.Action == decide.Heal && !o.DryRun:
		return Healed
	case o.Err == nil:
		return OK
	case errors.Is(o.Err, ErrHealDenied):
		return Drift
	}
	return Fail
}
