// Package sweep finds and revokes stale periodic tokens by accessor.
//
// Every heal mints a new periodic admin token; without a sweep the previous
// one would stay alive server-side for up to a full period. Vault offers no
// "list tokens by display name" and no paging, so finding tokens nobody
// recorded takes one list of all accessors and one lookup per accessor: a
// walk. Where the accessors are known (the ledger's), Run looks up only
// those. The decision of what is stale is a pure function (Judge); Run does
// the I/O around it.
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
	// Host and User are the token's meta tags (empty when untagged, as the
	// runbook's manual re-mints are): which machine and user it serves.
	Host, User string
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

// Owner is the machine (and local user) whose tokens a sweep may revoke.
type Owner struct{ Host, User string }

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
	// Only, when not nil, are the accessors to look up instead of listing
	// every accessor in Vault: the ledger's. No list is made.
	Only []string
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

// Op is what a sweep does to an accessor.
type Op string

const (
	OpLookup Op = "lookup"
	OpRevoke Op = "revoke"
)

// Failure is one accessor that could not be looked up or revoked.
type Failure struct {
	Accessor string
	Op       Op
	Err      error
}

// Report is the outcome of one sweep, in Judge's words. Only tokens with
// our display name are kept in memory, never every lookup's response.
type Report struct {
	Listed   int      // accessors to look up: the list's, or Options.Only's
	LookedUp int      // accessors looked up (all of Listed unless stopped early)
	Stale    []Token  // this machine's stale tokens, oldest first
	Kept     []Token  // this machine's tokens in Keep
	Other    []Token  // other machines' tokens with our display name: never revoked
	Revoked  []string // stale accessors revoked
	Vanished []string // accessors whose token was gone by the lookup
	Failed   []Failure
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

// walk runs fn for every item with at most n in flight, each first waiting
// for limit. It stops handing out items at the first wait that fails (ctx
// done, or the limiter refusing to wait past the deadline) and returns that
// error; nil means every item was handed out. fn records its own outcome:
// one accessor's failure never stops the others, so the group carries no
// error.
func walk(ctx context.Context, items []string, n int, limit *rate.Limiter, fn func(string)) error {
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

// Run lists all accessors (or takes opts.Only), looks each up with bounded
// concurrency, and revokes the stale ones when opts.Apply is set. A failing
// lookup or revoke is recorded in the report and never stops the sweep; a
// failing list is an error, and so is a walk that stopped early (an
// *IncompleteError).
func Run(ctx context.Context, v Accessors, opts Options) (Report, error) {
	var rep Report
	accs := opts.Only
	if accs == nil {
		var err error
		if accs, err = v.List(ctx); err != nil {
			return rep, err // the adapter names the call
		}
	}
	rep.Listed = len(accs)
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
	stale := make([]string, len(rep.Stale))
	for i, t := range rep.Stale {
		stale[i] = t.Accessor
	}
	stopped = revokeAll(ctx, v, stale, n, limit, &rep)
	if done := len(rep.Revoked) + countOp(rep.Failed, OpRevoke); done < len(stale) {
		return rep, incomplete(OpRevoke, len(rep.Revoked), len(stale), stopped, opts.MaxRPS, rep.Listed)
	}
	return rep, nil
}

// lookupAll looks up every accessor and sorts each token by Judge into rep.
func lookupAll(ctx context.Context, v Accessors, accs []string, n int, limit *rate.Limiter, opts Options, rep *Report) error {
	kept := keepSet(opts.Keep)
	var mu sync.Mutex
	stopped := walk(ctx, accs, n, limit, func(acc string) {
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
		switch {
		case errors.Is(err, ErrVanished):
			rep.Vanished = append(rep.Vanished, acc)
		case err != nil:
			rep.Failed = append(rep.Failed, Failure{Accessor: acc, Op: OpLookup, Err: err})
		default:
			switch Judge(tok, opts.DisplayName, opts.Owner, kept) {
			case Keep:
				rep.Kept = append(rep.Kept, tok)
			case Stale:
				rep.Stale = append(rep.Stale, tok)
			case Other:
				rep.Other = append(rep.Other, tok)
			}
		}
	})
	for _, ts := range [][]Token{rep.Stale, rep.Other} {
		sort.Slice(ts, func(i, j int) bool { return ts[i].CreationTime.Before(ts[j].CreationTime) })
	}
	return stopped
}

func revokeAll(ctx context.Context, v Accessors, stale []string, n int, limit *rate.Limiter, rep *Report) error {
	var mu sync.Mutex
	stopped := walk(ctx, stale, n, limit, func(acc string) {
		err := v.Revoke(ctx, acc)
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil && err != nil {
			return // cancelled mid-request: the walk is incomplete, not this accessor failed
		}
		if err != nil {
			rep.Failed = append(rep.Failed, Failure{Accessor: acc, Op: OpRevoke, Err: err})
			return
		}
		rep.Revoked = append(rep.Revoked, acc)
	})
	sort.Strings(rep.Revoked)
	return stopped
}

func countOp(fs []Failure, op Op) int {
	n := 0
	for _, f := range fs {
		if f.Op == op {
			n++
		}
	}
	return n
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
