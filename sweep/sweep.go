// Package sweep finds and revokes stale periodic tokens by accessor.
//
// Every heal mints a new periodic admin token; without a sweep the previous
// one would stay alive server-side for up to a full period. Vault offers no
// "list tokens by display name" and no paging, so finding tokens nobody
// recorded takes one list of all accessors and one lookup per accessor: a
// walk (renew.Walk). Run looks up the accessors it is given (the ledger's,
// or a walk's step) and records, per accessor, what Judge said of it and
// what was done. The decision of what is stale is a pure function (Judge);
// Run does the I/O around it.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// Token is what the sweep needs to know about one accessor.
type Token struct {
	Accessor     string
	DisplayName  string
	CreationTime time.Time
	TTL          time.Duration
	Period       time.Duration // 0 for a token that is not periodic
	// Host, User and Profile are the token's meta tags (empty when
	// untagged, as the runbook's manual re-mints are): which machine, user
	// and profile it serves.
	Host, User, Profile string
}

// Accessors is the Vault I/O a sweep needs, acting as one token that may
// list, look up and revoke accessors (sudo on auth/token/accessors).
type Accessors interface {
	List(ctx context.Context) ([]string, error)
	Lookup(ctx context.Context, accessor string) (Token, error)
	Revoke(ctx context.Context, accessor string) error
}

// ErrVanished is returned by Accessors.Lookup when the accessor no longer
// exists: its token expired or was revoked between the list and the lookup.
var ErrVanished = errors.New("accessor no longer exists")

// Verdict is what a sweep does with one token. The same four words name
// the report's buckets and the printed table's actions.
type Verdict int

const (
	Ignore Verdict = iota // not a periodic token with our display name
	Keep                  // this machine's, but in the keep set (the file's, the new one)
	Stale                 // this machine's (or untagged) and not kept: revoked
	Other                 // our display name, but tagged for another machine or user: never revoked
)

func (v Verdict) String() string {
	switch v {
	case Keep:
		return "kept"
	case Stale:
		return "stale"
	case Other:
		return "other machine's"
	}
	return "ignored"
}

// Owner is the machine (and local user, and profile) whose tokens a sweep
// may revoke.
type Owner struct{ Host, User, Profile string }

// Judge is the whole rule for one token, for the heal's sweep and `sweep`
// alike. Only a periodic token with the exact display name can be stale:
// "token-devvm-wizard2" is someone else's, and a non-periodic token with our
// name is somebody's login, not a token this tool renews. Of those, a token
// tagged for another host (or another user on this host) belongs to a
// machine sharing this Vault and is never revoked; a token tagged for this
// owner, or untagged (a manual re-mint), is stale unless kept.
func Judge(t Token, displayName string, me Owner, keep map[string]bool) Verdict {
	switch {
	case t.DisplayName != displayName, t.Period <= 0:
		return Ignore
	case t.Host != "" && t.Host != me.Host, t.Host != "" && t.User != "" && t.User != me.User:
		return Other
	case t.Host != "" && t.Profile != me.Profile:
		// Another profile's on this machine (or, for a profile, a token of
		// the machine's no-profile setup): two profiles on one Vault never
		// retire each other's tokens.
		return Other
	case keep[t.Accessor]:
		return Keep
	}
	return Stale
}

func keepSet(keep []string) map[string]bool {
	m := make(map[string]bool, len(keep))
	for _, k := range keep {
		if k != "" {
			m[k] = true
		}
	}
	return m
}

// Options say what to sweep and how hard to lean on Vault.
type Options struct {
	// DisplayName is the stored display name to match, e.g. token-devvm-wizard.
	DisplayName string
	// Owner is this machine: tokens tagged for another are never revoked.
	Owner Owner
	// Keep lists accessors never to revoke (the current token, the foreign one).
	Keep []string
	// Apply revokes; without it Run only reports what it would revoke.
	Apply bool
	// Concurrency bounds lookups and revokes in flight; 0 means DefaultConcurrency.
	Concurrency int
	// Progress, if set, is called after each lookup with how many of the
	// listed accessors have been looked up; calls never overlap.
	Progress func(done, total int)
	// MaxRPS caps lookups and revokes per second, so a sweep can never swamp
	// a shared Vault; 0 means no cap beyond Concurrency.
	MaxRPS float64
	// Limiter, when set, paces the sweep instead of one of its own at
	// MaxRPS: a walk in steps shares one, so that its steps together keep
	// to the cap.
	Limiter *rate.Limiter
}

// NewLimiter paces requests at maxRPS; 0 means no cap.
func NewLimiter(maxRPS float64) *rate.Limiter {
	if maxRPS <= 0 {
		return rate.NewLimiter(rate.Inf, 1)
	}
	return rate.NewLimiter(rate.Limit(maxRPS), 1)
}

// DefaultConcurrency keeps a sweep gentle on a shared Vault while hiding
// most of the per-request latency.
const DefaultConcurrency = 8

// MaxConcurrency is the most lookups in flight a sweep may ask of a shared
// Vault: beyond it the walk gets no faster and other clients get slower.
const MaxConcurrency = 64

// Op is a sweep's phase: looking accessors up, or revoking the stale.
type Op int

const (
	OpLookup Op = iota
	OpRevoke
)

func (o Op) String() string {
	if o == OpRevoke {
		return "revoke"
	}
	return "lookup"
}

// Did is what a sweep did to one accessor.
type Did int

const (
	LookedUp     Did = iota // looked up and judged; nothing more (kept, other, ignored, or stale but not revoked: a dry run)
	Revoked                 // stale, and revoked
	RevokeFailed            // stale, and the revoke failed: still alive
	LookupFailed            // the lookup failed: unknown
	Vanished                // gone by the lookup: expired or revoked meanwhile
)

var didNames = [...]string{"looked up", "revoked", "revoke failed", "lookup failed", "vanished"}

func (d Did) String() string {
	if d < 0 || int(d) >= len(didNames) {
		return "unknown"
	}
	return didNames[d]
}

// Record is one accessor a sweep touched: what Judge said of it and what
// was done. Every reader (the printed table, the ledger's fold, the run's
// warnings) reads these, and none works them out again.
type Record struct {
	Accessor string
	Token    Token   // the lookup's answer; zero when it failed or vanished
	Verdict  Verdict // Judge's word; Ignore when the lookup failed or vanished
	Did      Did
	Err      error // why the lookup or the revoke failed
}

// Ours says the token is this machine's periodic token (kept or stale).
func (r Record) Ours() bool {
	return r.Did != LookupFailed && (r.Verdict == Keep || r.Verdict == Stale)
}

// Alive says the token is this machine's and still alive after the sweep:
// kept, or stale and not revoked.
func (r Record) Alive() bool { return r.Ours() && r.Did != Revoked }

// Gone says the token no longer lives: revoked, or vanished.
func (r Record) Gone() bool { return r.Did == Revoked || r.Did == Vanished }

// Failed says the lookup or the revoke failed.
func (r Record) Failed() bool { return r.Did == LookupFailed || r.Did == RevokeFailed }

// Report is the outcome of one sweep: a record per accessor looked up.
type Report struct {
	Listed   int // accessors to look up
	LookedUp int // accessors looked up, failures included (all of Listed unless stopped early)
	Records  []Record
}

// Where are the records f holds for, in the report's order.
func (r Report) Where(f func(Record) bool) []Record {
	var out []Record
	for _, rec := range r.Records {
		if f(rec) {
			out = append(out, rec)
		}
	}
	return out
}

// Count is how many records f holds for.
func (r Report) Count(f func(Record) bool) int { return len(r.Where(f)) }

// Record is the record of accessor, if the sweep reached it.
func (r Report) Record(accessor string) (Record, bool) {
	for _, rec := range r.Records {
		if rec.Accessor == accessor {
			return rec, true
		}
	}
	return Record{}, false
}

// Is and DidThis are record predicates for Where and Count.
func Is(v Verdict) func(Record) bool {
	return func(r Record) bool { return r.Verdict == v && r.Did != LookupFailed }
}

func DidThis(d Did) func(Record) bool { return func(r Record) bool { return r.Did == d } }

// AccessorsOf are the accessors of recs.
func AccessorsOf(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Accessor
	}
	return out
}

// ErrIncomplete: the walk stopped before it looked up (or revoked) every
// accessor, so stale tokens may remain. The error is an *IncompleteError.
var ErrIncomplete = errors.New("sweep incomplete")

// IncompleteError says how far a walk got and why it stopped.
type IncompleteError struct {
	Phase       Op // where it stopped
	Done, Total int
	Why         string // the run's deadline, an interrupt, or the rate limit
	// Need is the --timeout the whole walk needs at this --max-rps; 0 when
	// the rate is not what limits it.
	Need time.Duration
	Err  error
}

func (e *IncompleteError) Error() string {
	verb := "looking up"
	if e.Phase == OpRevoke {
		verb = "revoking"
	}
	return fmt.Sprintf("%s: stopped %s after %d of %d accessors: %s", ErrIncomplete, verb, e.Done, e.Total, e.Why)
}

func (e *IncompleteError) Is(target error) bool { return target == ErrIncomplete }
func (e *IncompleteError) Unwrap() error        { return e.Err }

// Budget is the time a full walk of n accessors needs at maxRPS (a lookup
// per accessor, a quarter more for revokes and slack, and half a minute for
// the list); 0 when there is no rate cap to derive it from.
func Budget(n int, maxRPS float64) time.Duration {
	if maxRPS <= 0 {
		return 0
	}
	need := time.Duration(float64(n)*1.25/maxRPS*float64(time.Second)) + 30*time.Second
	return need.Round(time.Second)
}

// forEach runs fn for every item with at most n in flight, each first
// waiting for limit. It stops handing out items at the first wait that
// fails (ctx done, or the limiter refusing to wait past the deadline) and
// returns that error; nil means every item was handed out. fn records its
// own outcome: one accessor's failure never stops the others, so the group
// carries no error.
func forEach(ctx context.Context, items []string, n int, limit *rate.Limiter, fn func(string)) error {
	var g errgroup.Group
	g.SetLimit(n)
	var stopped error
	for _, it := range items {
		if stopped = limit.Wait(ctx); stopped != nil {
			break
		}
		g.Go(func() error { fn(it); return nil })
	}
	g.Wait()
	if stopped == nil {
		stopped = ctx.Err() // ended while the last requests were in flight
	}
	return stopped
}

// Run looks up each of accs (a walk's step, or the ledger's accessors) with
// bounded concurrency, judges each, and revokes the stale ones when
// opts.Apply is set. A failing lookup or revoke is recorded and never stops
// the sweep; one that stopped early is an *IncompleteError. Listing every
// accessor is the walk's (renew.Walk), never a sweep's.
func Run(ctx context.Context, v Accessors, accs []string, opts Options) (Report, error) {
	rep := Report{Listed: len(accs), Records: make([]Record, 0, len(accs))}
	n := opts.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	limit := opts.Limiter
	if limit == nil {
		limit = NewLimiter(opts.MaxRPS)
	}
	stopped := lookupAll(ctx, v, accs, n, limit, opts, &rep)
	if rep.LookedUp < rep.Listed {
		return rep, incomplete(OpLookup, rep.LookedUp, rep.Listed, stopped, opts.MaxRPS, rep.Listed)
	}
	if !opts.Apply {
		return rep, nil
	}
	stale := AccessorsOf(rep.Where(Is(Stale)))
	stopped = revokeAll(ctx, v, n, limit, &rep)
	if done := rep.Count(DidThis(Revoked)) + rep.Count(DidThis(RevokeFailed)); done < len(stale) {
		return rep, incomplete(OpRevoke, rep.Count(DidThis(Revoked)), len(stale), stopped, opts.MaxRPS, rep.Listed)
	}
	return rep, nil
}

// lookupAll looks up every accessor and records Judge's verdict on each.
func lookupAll(ctx context.Context, v Accessors, accs []string, n int, limit *rate.Limiter, opts Options, rep *Report) error {
	kept := keepSet(opts.Keep)
	var mu sync.Mutex
	stopped := forEach(ctx, accs, n, limit, func(acc string) {
		tok, err := v.Lookup(ctx, acc)
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil && err != nil {
			return // cancelled mid-request: not a failure of this accessor
		}
		rep.LookedUp++
		if opts.Progress != nil {
			opts.Progress(rep.LookedUp, len(accs))
		}
		rec := Record{Accessor: acc, Token: tok, Did: LookedUp}
		switch {
		case errors.Is(err, ErrVanished):
			rec.Token, rec.Did = Token{}, Vanished
		case err != nil:
			rec.Token, rec.Did, rec.Err = Token{}, LookupFailed, err
		default:
			rec.Verdict = Judge(tok, opts.DisplayName, opts.Owner, kept)
		}
		rep.Records = append(rep.Records, rec)
	})
	// Oldest first, as the table prints them; failures by accessor.
	sort.SliceStable(rep.Records, func(i, j int) bool {
		a, b := rep.Records[i], rep.Records[j]
		if !a.Token.CreationTime.Equal(b.Token.CreationTime) {
			return a.Token.CreationTime.Before(b.Token.CreationTime)
		}
		return a.Accessor < b.Accessor
	})
	return stopped
}

// revokeAll revokes the stale tokens rep holds, and records each revoke.
func revokeAll(ctx context.Context, v Accessors, n int, limit *rate.Limiter, rep *Report) error {
	index := map[string]int{}
	var stale []string
	for i, r := range rep.Records {
		if r.Verdict == Stale && r.Did == LookedUp {
			index[r.Accessor] = i
			stale = append(stale, r.Accessor)
		}
	}
	var mu sync.Mutex
	return forEach(ctx, stale, n, limit, func(acc string) {
		err := v.Revoke(ctx, acc)
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil && err != nil {
			return // cancelled mid-request: the walk is incomplete, not this accessor failed
		}
		rec := &rep.Records[index[acc]]
		if err != nil {
			rec.Did, rec.Err = RevokeFailed, err
			return
		}
		rec.Did = Revoked
	})
}

// incomplete names why a walk stopped: the rate limiter refuses to wait
// past the context's deadline without the context being done yet, which
// is the case a shared Vault's --max-rps runs into. listed sizes the
// --timeout a rerun needs: it looks every accessor up again.
func incomplete(phase Op, done, total int, stopped error, maxRPS float64, listed int) error {
	e := &IncompleteError{Phase: phase, Done: done, Total: total, Err: stopped}
	switch {
	case errors.Is(stopped, context.Canceled):
		e.Why = "interrupted"
	case errors.Is(stopped, context.DeadlineExceeded):
		e.Why = "the time budget (--timeout) ran out"
	case stopped != nil:
		e.Why = fmt.Sprintf("at --max-rps %g the rest cannot finish within the time budget (--timeout)", maxRPS)
		e.Err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, stopped)
	default:
		e.Why = "stopped early"
	}
	e.Need = Budget(listed, maxRPS)
	return e
}
