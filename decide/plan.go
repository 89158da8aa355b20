package decide

import (
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/ledger"
)

// Action is what a run does about the token in the file.
type Action int

const (
	Renew  Action = iota + 1 // our periodic token: renew-self, retire the ledger's stale tokens
	Heal                     // a foreign token that may mint: re-mint ours with it, write, retire
	Refuse                   // a foreign token that cannot mint: DRIFT, the file untouched
	Fail                     // the token could not be read or looked up: FAIL, the file untouched
)

var actionNames = [...]string{"", "renew", "heal", "refuse", "fail"}

// String is the action's stable name (status --json, log fields).
func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return "unknown"
	}
	return actionNames[a]
}

// Capability is what Vault said, when asked (capabilities-self, by a dry
// run, which must not mint), of whether the foreign token may mint.
type Capability int

const (
	Unasked    Capability = iota // a real run: the create itself is the question
	MayMint                      // Vault says it may
	MayNotMint                   // Vault says it may not
)

// Found is what a run found before it acts: the plain data a plan is
// decided from.
type Found struct {
	Spec Spec
	// Token is the file's token as Vault looked it up; zero when Err.
	Token TokenInfo
	// Err is why the token could not be read or looked up, at Stage, for
	// Cause; nil when it was.
	Err   error
	Stage failure.Stage
	Cause failure.Cause
	// Capability is a dry run's answer from Vault; Unasked otherwise.
	Capability Capability
	// Ledger is this token file's ledger as stored.
	Ledger ledger.Ledger
}

// Plan is what a run will do and why: Run carries it out, and status and
// --dry-run print it. It is decided from what the run found, with no I/O.
type Plan struct {
	Action Action
	// Reason says why, in a few words: the status line, the dry run.
	Reason string
	// Blocker is why this kind of token can never mint (CannotMint), for
	// a Refuse that Vault was never asked about; empty otherwise.
	Blocker string
	// Stage and Cause are where and why a Refuse or a Fail stops.
	Stage failure.Stage
	Cause failure.Cause
	// Keep are the accessors no sweep of this run revokes: the file's
	// token (and the one a heal mints, once Vault names it).
	Keep []string
	// NotOurs never enters the ledger: the foreign login token.
	NotOurs []string
	// Record says the token in the file enters the ledger: ours, and not
	// held yet (the runbook's manual re-mint).
	Record bool
	// Retire are the ledger's other accessors: looked up, each by itself
	// (never a list), and the stale among them revoked.
	Retire []string
	// Gap is what the ledger cannot vouch for as stored: this machine's
	// tokens that may be alive and unknown, which only a walk finds.
	Gap ledger.Gap
	// Walk says the walk is needed (Gap is not NoGap). The run itself goes
	// by the outcome's gap (this one, or one the run found): under systemd
	// it starts the walk unit; by hand it names the command.
	Walk bool
}

// Decide is the whole decision of a run: renew our token, heal a foreign
// one that may mint, refuse one that cannot, or fail on a token that
// could not be read or looked up.
func Decide(f Found) Plan {
	p := Plan{Gap: f.Ledger.Gap()}
	p.Walk = p.Gap != ledger.NoGap
	switch {
	case f.Err != nil:
		p.Action, p.Stage, p.Cause, p.Reason = Fail, f.Stage, f.Cause, f.Stage.Words()
		return p
	case IsOurs(f.Token, f.Spec):
		p.Action, p.Reason = Renew, "ours: the periodic token this tool renews"
		p.Keep, p.Record = []string{f.Token.Accessor}, !f.Ledger.Has(f.Token.Accessor)
	default:
		if p = refusal(p, f); p.Action == Refuse {
			return p
		}
		p.Action, p.Reason = Heal, "foreign: "+notOurs(f)
		p.Keep, p.NotOurs = []string{f.Token.Accessor}, []string{f.Token.Accessor}
	}
	p.Retire = f.Ledger.Accessors(p.Keep...)
	return p
}

// refusal is the plan for a foreign token that cannot mint: one that
// never can (CannotMint), or one Vault said may not when asked.
func refusal(p Plan, f Found) Plan {
	p.Blocker = CannotMint(f.Token)
	switch {
	case p.Blocker != "":
		p.Reason = p.Blocker
	case f.Capability == MayNotMint:
		p.Reason = "foreign token lacks create authority"
	default:
		return p
	}
	p.Action, p.Stage, p.Cause = Refuse, failure.StageCreate, failure.CauseRefused
	return p
}

// notOurs says how the foreign token differs from ours.
func notOurs(f Found) string {
	if f.Token.DisplayName == f.Spec.StoredDisplayName() {
		return f.Spec.StoredDisplayName() + " but not periodic"
	}
	return "not " + f.Spec.StoredDisplayName()
}
