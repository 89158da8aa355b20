// Package ledger remembers the accessors of this machine's periodic tokens
// that may still be alive, so that a heal retires its stale tokens with a
// handful of lookups instead of a walk over every token on a shared Vault.
//
// Vault has no filter by display name, meta or role, and no paging: its
// LIST of auth/token/accessors returns every accessor at once, and finding
// ours takes one lookup per accessor. Its own answer for finding your own
// tokens is to keep their accessors when you create them (Nomad does); this
// tool is the only client that mints these tokens, so it can know them.
//
// The ledger is plain data kept in the run state (never a secret: accessors
// only), and every change to it is a pure method returning a new Ledger, so
// the rules are table-tested without Vault or a disk. What it cannot know it
// says (Gap): then a heal walks, as before the ledger.
package ledger

import (
	"slices"
	"sort"
	"time"

	"github.com/devvm/vault-token-renew/sweep"
)

// Max bounds the ledger. A machine has one live periodic token, a second
// for a moment during a heal, and a few more after manual re-mints; far more
// means something mints in a loop, and a walk is then the honest answer.
const Max = 64

// How says how a token came into the ledger.
type How string

const (
	Minted How = "minted" // a heal on this machine minted it
	InFile How = "file"   // found in the token file and judged ours: a manual re-mint
	Walked How = "walk"   // a walk found it, this machine's and alive
)

// Entry is one token the ledger holds.
type Entry struct {
	Accessor string    `json:"accessor"`
	Recorded time.Time `json:"recorded"`
	How      How       `json:"how"`
}

// Ledger is this machine's periodic tokens that may still be alive, and
// whether that list can be trusted to be all of them.
type Ledger struct {
	// Vault is the cluster whose tokens the ledger holds (sys/health's
	// cluster_id, and the namespace when one is set): a ledger of another
	// cluster's tokens says nothing of this one's.
	Vault string `json:"vault,omitempty"`
	// WholeSince is when a complete walk last found every token of this
	// machine. Zero until then: a new install, the upgrade that brought the
	// ledger, a lost or corrupt state file. Tokens minted before it may be
	// alive and unknown.
	WholeSince time.Time `json:"whole_since,omitzero"`
	// Unrecorded are the creates sent (write-ahead, before the request)
	// whose answer never reached the ledger: a lost answer, a crash, a kill.
	// Each may have minted a token nobody holds.
	Unrecorded []time.Time `json:"unrecorded_creates,omitempty"`
	// Overflowed says more than Max tokens were held at once and the
	// oldest were dropped.
	Overflowed bool    `json:"overflowed,omitempty"`
	Tokens     []Entry `json:"tokens"`
}

// Gap is why the ledger may not hold every token of this machine; NoGap
// when it does. Its String is data (state, metrics, log fields).
type Gap int

const (
	NoGap      Gap = iota
	Unrecorded     // a create was sent whose answer was never recorded
	Overflow       // more than Max tokens; the oldest were dropped
	NeverWhole     // no complete walk yet: first heal after the upgrade, or a lost or corrupt state file
	Unsaved        // this run could not save the ledger (a run's own condition, never stored)
	OtherVault     // the ledger was kept on another Vault cluster, or this one would not say which it is (likewise)
)

var gapNames = [...]string{"none", "unrecorded-create", "overflow", "never-whole", "unsaved", "other-vault"}

func (g Gap) String() string {
	if g < 0 || int(g) >= len(gapNames) {
		return "unknown"
	}
	return gapNames[g]
}

// Gap is the most pressing reason the ledger may be incomplete: a token a
// lost create may have minted comes first, as the one nobody holds.
func (l Ledger) Gap() Gap {
	switch {
	case len(l.Unrecorded) > 0:
		return Unrecorded
	case l.Overflowed:
		return Overflow
	case l.WholeSince.IsZero():
		return NeverWhole
	}
	return NoGap
}

// Has reports whether the ledger holds accessor.
func (l Ledger) Has(accessor string) bool {
	return slices.ContainsFunc(l.Tokens, func(e Entry) bool { return e.Accessor == accessor })
}

// Accessors are the ledger's accessors other than those in except, in the
// order they entered it; never nil, so that a sweep given them makes no
// list.
func (l Ledger) Accessors(except ...string) []string {
	out := []string{}
	for _, e := range l.Tokens {
		if e.Accessor != "" && !slices.Contains(except, e.Accessor) {
			out = append(out, e.Accessor)
		}
	}
	return out
}

// clone copies l so that a method never changes the slices of its receiver.
func (l Ledger) clone() Ledger {
	l.Tokens = slices.Clone(l.Tokens)
	l.Unrecorded = slices.Clone(l.Unrecorded)
	return l
}

// add holds accessor (once), keeping at most Max tokens: beyond that the
// oldest are dropped and the ledger says it overflowed.
func (l Ledger) add(accessor string, now time.Time, how How) Ledger {
	if accessor == "" || l.Has(accessor) {
		return l
	}
	l.Tokens = append(l.Tokens, Entry{Accessor: accessor, Recorded: now.UTC(), How: how})
	if len(l.Tokens) > Max {
		sort.SliceStable(l.Tokens, func(i, j int) bool { return l.Tokens[i].Recorded.Before(l.Tokens[j].Recorded) })
		l.Tokens = l.Tokens[len(l.Tokens)-Max:]
		l.Overflowed = true
	}
	return l
}

// Sent records, before the request goes out, that a create is about to be
// sent at at. Until Answered or Refused clears it, the ledger knows that a
// token may exist that it does not hold.
func (l Ledger) Sent(at time.Time) Ledger {
	l = l.clone()
	l.Unrecorded = append(l.Unrecorded, at.UTC())
	if len(l.Unrecorded) > Max {
		l.Unrecorded = l.Unrecorded[len(l.Unrecorded)-Max:]
		l.Overflowed = true
	}
	return l
}

// Answered records the token the create sent at at minted. Only that
// create is cleared: another one whose answer was lost stays unrecorded.
func (l Ledger) Answered(at time.Time, accessor string, now time.Time) Ledger {
	l = l.Refused(at)
	return l.add(accessor, now, Minted)
}

// Refused clears the create sent at at: Vault answered it with a refusal,
// so it minted nothing.
func (l Ledger) Refused(at time.Time) Ledger {
	l = l.clone()
	l.Unrecorded = slices.DeleteFunc(l.Unrecorded, func(t time.Time) bool { return t.Equal(at) })
	if len(l.Unrecorded) == 0 {
		l.Unrecorded = nil
	}
	return l
}

// Found records the token found in the token file and judged ours: the
// runbook's manual re-mint enters the ledger at the next run.
func (l Ledger) Found(accessor string, now time.Time) Ledger {
	return l.clone().add(accessor, now, InFile)
}

// Forget drops accessors: revoked, gone from Vault, or not this machine's.
func (l Ledger) Forget(accessors ...string) Ledger {
	l = l.clone()
	l.Tokens = slices.DeleteFunc(l.Tokens, func(e Entry) bool { return slices.Contains(accessors, e.Accessor) })
	return l
}

// Whole is the ledger after a complete walk: exactly alive (this machine's
// tokens the walk left alive), every unrecorded create accounted for (the
// walk saw whatever it minted), and trusted from now on.
func (l Ledger) Whole(now time.Time, alive []string) Ledger {
	out := Ledger{Vault: l.Vault, WholeSince: now.UTC()}
	for _, a := range alive {
		if i := slices.IndexFunc(l.Tokens, func(e Entry) bool { return e.Accessor == a }); i >= 0 {
			if !out.Has(a) {
				out.Tokens = append(out.Tokens, l.Tokens[i])
			}
			continue
		}
		out = out.add(a, now, Walked)
	}
	return out
}

// Swept folds what a sweep found into the ledger: a walk when only is nil,
// else a sweep of the ledger's accessors only. Revoked tokens, tokens Vault
// no longer knows, another machine's (never ours to revoke), and anything
// else the sweep ignored leave it; this machine's tokens left alive (a
// revoke that failed, a dry run) and accessors whose lookup failed stay or
// enter. notOurs (the foreign login token) never enters. A walk that was
// complete makes the ledger whole.
func (l Ledger) Swept(rep sweep.Report, only []string, complete bool, now time.Time, notOurs ...string) Ledger {
	walk := only == nil
	revoked := rep.Revoked
	var alive, failedLookups []string
	for _, f := range rep.Failed {
		if f.Op == "lookup" {
			failedLookups = append(failedLookups, f.Accessor)
		}
	}
	for _, t := range append(slices.Clone(rep.Kept), rep.Stale...) {
		if !slices.Contains(revoked, t.Accessor) && !slices.Contains(notOurs, t.Accessor) {
			alive = append(alive, t.Accessor)
		}
	}
	if walk && complete && len(failedLookups) == 0 {
		return l.Whole(now, alive)
	}
	l = l.clone()
	keep := append(slices.Clone(alive), failedLookups...)
	// In a ledger sweep every held accessor was looked up: what is not
	// this machine's and alive, nor unknown for a failed lookup, leaves.
	// A walk (cut short) only removes what it saw go.
	l.Tokens = slices.DeleteFunc(l.Tokens, func(e Entry) bool {
		if walk {
			return slices.Contains(revoked, e.Accessor) || slices.Contains(rep.Vanished, e.Accessor) ||
				slices.ContainsFunc(rep.Other, func(t sweep.Token) bool { return t.Accessor == e.Accessor })
		}
		return slices.Contains(only, e.Accessor) && !slices.Contains(keep, e.Accessor) && lookedUp(rep, e.Accessor)
	})
	for _, a := range alive {
		l = l.add(a, now, Walked)
	}
	return l
}

// lookedUp reports whether a ledger sweep reached accessor: a sweep cut
// short leaves the rest unknown, and unknown stays in the ledger.
func lookedUp(rep sweep.Report, accessor string) bool {
	return rep.LookedUp == rep.Listed || slices.Contains(rep.Revoked, accessor) || slices.Contains(rep.Vanished, accessor) ||
		slices.ContainsFunc(rep.Other, func(t sweep.Token) bool { return t.Accessor == accessor })
}
