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
// says (Gap): a heal never walks, and the walk of its own (Walk) closes the
// gap.
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
	// Walk is how far the walk under way has got, nil when none is: a walk
	// cut short keeps its place here and the next one resumes from it.
	Walk *Walk `json:"walk,omitempty"`
}

// Walk is the place of a walk over every accessor, kept between its runs so
// that one cut short (a reboot, a kill, Ctrl-C, --timeout) resumes instead
// of starting over. Vault's LIST answers are sorted, so "every accessor up
// to Cursor was looked up" is a place that survives a new LIST.
type Walk struct {
	// Started is when the walk's first LIST was sent: every token that
	// existed then is within its reach. This machine's tokens made since
	// are the ledger's own records (minted, found in the file) or its
	// unrecorded creates, and the walk keeps both as they are.
	Started time.Time `json:"started"`
	// Cursor is the last accessor of the last finished step: every listed
	// accessor up to it was looked up (and the stale revoked).
	Cursor string `json:"cursor,omitempty"`
	Done   int    `json:"done"`   // accessors looked up, over all its runs
	Listed int    `json:"listed"` // accessors in its latest LIST
	// Revoked counts this machine's stale tokens it revoked.
	Revoked int `json:"revoked"`
	// Alive are this machine's tokens it found alive (the file's, or one
	// whose revoke failed): they enter the ledger when the walk ends.
	Alive []string `json:"alive,omitempty"`
	// Unknown are accessors whose lookup failed: looked up again at the
	// end, and the walk is not complete while any is left.
	Unknown []string  `json:"unknown,omitempty"`
	Runs    int       `json:"runs"` // 1 for a walk that was never cut short
	Updated time.Time `json:"updated"`
}

// Fraction is how far the walk has got, 0 to 1, by its latest LIST.
func (w *Walk) Fraction() float64 {
	if w == nil || w.Listed == 0 {
		return 0
	}
	return min(float64(w.Done)/float64(w.Listed), 1)
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
	if l.Walk != nil {
		w := *l.Walk
		w.Alive, w.Unknown = slices.Clone(w.Alive), slices.Clone(w.Unknown)
		l.Walk = &w
	}
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

// Whole is the ledger after a complete walk that started at started:
// exactly alive (this machine's tokens the walk left alive), and trusted
// from now on. What the ledger recorded since the walk started stays as it
// is, because the walk's LIST could not have seen it: a token a heal minted
// meanwhile, and a create sent meanwhile (or within CreateGrace before it)
// whose answer was lost, still a gap. Every older unrecorded create is
// accounted for: the walk saw whatever it minted.
func (l Ledger) Whole(now, started time.Time, alive []string) Ledger {
	out := Ledger{Vault: l.Vault, WholeSince: now.UTC()}
	for _, a := range alive {
		if i := slices.IndexFunc(l.Tokens, func(e Entry) bool { return e.Accessor == a }); i >= 0 {
			out.Tokens = append(out.Tokens, l.Tokens[i])
			continue
		}
		out = out.add(a, now, Walked)
	}
	for _, e := range l.Tokens {
		if !e.Recorded.Before(started) && !out.Has(e.Accessor) {
			out.Tokens = append(out.Tokens, e)
		}
	}
	for _, t := range l.Unrecorded {
		if !t.Before(started.Add(-CreateGrace)) {
			out.Unrecorded = append(out.Unrecorded, t)
		}
	}
	return out
}

// CreateGrace is how long before a walk's LIST a create may have been sent
// and still be minted after it (a slow Vault, an answer given up on): such
// an unrecorded create stays a gap, for the next walk to close.
const CreateGrace = 5 * time.Minute

// WalkFrom begins a walk whose first LIST is sent at started, or resumes
// the one under way (another of its runs).
func (l Ledger) WalkFrom(started time.Time, listed int) Ledger {
	l = l.clone()
	if l.Walk == nil {
		l.Walk = &Walk{Started: started.UTC()}
	}
	l.Walk.Runs++
	l.Walk.Listed, l.Walk.Updated = listed, started.UTC()
	return l
}

// Step folds one finished step of the walk (every listed accessor up to
// cursor looked up, the stale revoked) into the ledger: its place moves to
// cursor; revoked, vanished and other machines' tokens leave the ledger;
// this machine's tokens left alive are kept for the end, and failed
// lookups are looked up again then.
func (l Ledger) Step(cursor string, rep sweep.Report, now time.Time) Ledger {
	if l = l.stepped(rep, now); l.Walk == nil {
		return l
	}
	l.Walk.Cursor = cursor
	l.Walk.Unknown = append(l.Walk.Unknown, failedLookups(rep)...)
	return l
}

// Recheck folds the end's second look at the accessors whose lookup had
// failed: those that failed again stay unknown.
func (l Ledger) Recheck(rep sweep.Report, now time.Time) Ledger {
	if l = l.stepped(rep, now); l.Walk == nil {
		return l
	}
	l.Walk.Unknown = failedLookups(rep)
	return l
}

func (l Ledger) stepped(rep sweep.Report, now time.Time) Ledger {
	if l.Walk == nil {
		return l // the walk was abandoned meanwhile (the ledger began anew): nothing of it counts
	}
	l = l.clone()
	w := l.Walk
	w.Done += rep.LookedUp
	w.Revoked += rep.Count(sweep.DidThis(sweep.Revoked))
	w.Updated = now.UTC()
	for _, r := range rep.Where(sweep.Record.Alive) {
		if !slices.Contains(w.Alive, r.Accessor) {
			w.Alive = append(w.Alive, r.Accessor)
		}
	}
	gone := sweep.AccessorsOf(rep.Where(leaves))
	w.Alive = slices.DeleteFunc(w.Alive, func(a string) bool { return slices.Contains(gone, a) })
	l.Tokens = slices.DeleteFunc(l.Tokens, func(e Entry) bool { return slices.Contains(gone, e.Accessor) })
	return l
}

// leaves says a token leaves the ledger after a walk looked at it: revoked,
// vanished, or another machine's (never ours to revoke).
func leaves(r sweep.Record) bool { return r.Gone() || sweep.Is(sweep.Other)(r) }

// Finish ends the walk: with every accessor looked up, the ledger is whole
// (Whole); while a lookup still fails, the walk stays under way with those
// left to look up, and the ledger keeps its gap.
func (l Ledger) Finish(now time.Time) Ledger {
	if l.Walk == nil || len(l.Walk.Unknown) > 0 {
		return l
	}
	return l.Whole(now, l.Walk.Started, l.Walk.Alive)
}

// Abandon drops the walk under way: its place no longer means anything
// (the ledger starts anew for another cluster, say).
func (l Ledger) Abandon() Ledger {
	l = l.clone()
	l.Walk = nil
	return l
}

// Swept folds a sweep of the ledger's own accessors into it, by each
// accessor's record: revoked tokens, tokens Vault no longer knows, another
// machine's (never ours to revoke), and anything else the sweep ignored
// leave it; this machine's tokens left alive (a revoke that failed, a dry
// run) and accessors whose lookup failed stay, and so does an accessor a
// sweep cut short never reached. notOurs (the foreign login token) never
// enters.
func (l Ledger) Swept(rep sweep.Report, now time.Time, notOurs ...string) Ledger {
	l = l.clone()
	l.Tokens = slices.DeleteFunc(l.Tokens, func(e Entry) bool {
		r, reached := rep.Record(e.Accessor)
		return reached && !r.Alive() && r.Did != sweep.LookupFailed
	})
	for _, r := range rep.Where(sweep.Record.Alive) {
		if !slices.Contains(notOurs, r.Accessor) {
			l = l.add(r.Accessor, now, Walked)
		}
	}
	return l
}

func failedLookups(rep sweep.Report) []string {
	return sweep.AccessorsOf(rep.Where(sweep.DidThis(sweep.LookupFailed)))
}
