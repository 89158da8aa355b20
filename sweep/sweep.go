// Package sweep finds and revokes stale periodic tokens by accessor.
//
// Every heal mints a new periodic admin token; without a sweep the previous
// one would stay alive server-side for up to a full period. Vault offers no
// "list tokens by display name", so the only way is one list of all
// accessors and one lookup per accessor. The decision of what is stale is a
// pure function (Judge); Run does the I/O around it.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Token is what the sweep needs to know about one accessor.
type Token struct {
	Accessor     string
	DisplayName  string
	CreationTime time.Time
	TTL          time.Duration
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

// Verdict is what a sweep does with one token.
type Verdict int

const (
	Ignore Verdict = iota // someone else's token
	Spare                 // ours by name, but in the keep set
	Revoke                // a stale periodic token
)

// Judge is the whole rule for one token: an exact display-name match that
// is not kept is stale. "token-devvm-wizard2" or "token-devvm" are someone
// else's tokens.
func Judge(t Token, displayName string, keep map[string]bool) Verdict {
	switch {
	case t.DisplayName != displayName:
		return Ignore
	case keep[t.Accessor]:
		return Spare
	}
	return Revoke
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
}

// DefaultConcurrency keeps a sweep gentle on a shared Vault while hiding
// most of the per-request latency.
const DefaultConcurrency = 8

// Failure is one accessor that could not be looked up or revoked.
type Failure struct {
	Accessor string
	Op       string // "lookup" or "revoke"
	Err      error
}

// Report is the outcome of one sweep. Only matching tokens are kept in
// memory, never every lookup's response.
type Report struct {
	Listed   int
	LookedUp int     // accessors looked up (all of Listed unless cancelled)
	Matched  []Token // stale tokens, sorted by creation time
	Kept     []Token // exact-name tokens spared because they are in Keep
	Revoked  []string
	Vanished int
	Failed   []Failure
}

// Run lists all accessors, looks each up with bounded concurrency, and
// revokes the stale ones when opts.Apply is set. A failing lookup or revoke
// is recorded in the report and never stops the sweep; only a failing list
// (or a cancelled ctx) is an error.
func Run(ctx context.Context, v Accessors, opts Options) (Report, error) {
	var rep Report
	accs, err := v.List(ctx)
	if err != nil {
		return rep, fmt.Errorf("list auth/token/accessors: %w", err)
	}
	rep.Listed = len(accs)
	n := opts.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}

	kept := keepSet(opts.Keep)
	limit := rate.NewLimiter(rate.Inf, 1)
	if opts.MaxRPS > 0 {
		limit = rate.NewLimiter(rate.Limit(opts.MaxRPS), 1)
	}
	var mu sync.Mutex
	forEach(ctx, accs, n, func(acc string) {
		if limit.Wait(ctx) != nil {
			return // cancelled
		}
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
			rep.Vanished++
		case err != nil:
			rep.Failed = append(rep.Failed, Failure{Accessor: acc, Op: "lookup", Err: err})
		default:
			switch Judge(tok, opts.DisplayName, kept) {
			case Spare:
				rep.Kept = append(rep.Kept, tok)
			case Revoke:
				rep.Matched = append(rep.Matched, tok)
			}
		}
	})
	sort.Slice(rep.Matched, func(i, j int) bool {
		return rep.Matched[i].CreationTime.Before(rep.Matched[j].CreationTime)
	})
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("sweep stopped after looking up %d of %d accessors, nothing revoked: %w", rep.LookedUp, rep.Listed, err)
	}
	if !opts.Apply {
		return rep, nil
	}

	stale := make([]string, len(rep.Matched))
	for i, t := range rep.Matched {
		stale[i] = t.Accessor
	}
	forEach(ctx, stale, n, func(acc string) {
		if limit.Wait(ctx) != nil {
			return
		}
		err := v.Revoke(ctx, acc)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			rep.Failed = append(rep.Failed, Failure{Accessor: acc, Op: "revoke", Err: err})
			return
		}
		rep.Revoked = append(rep.Revoked, acc)
	})
	sort.Strings(rep.Revoked)
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("sweep stopped while revoking, %d of %d revoked: %w", len(rep.Revoked), len(stale), err)
	}
	return rep, nil
}

// forEach calls fn for every item with at most n calls in flight, and stops
// handing out items once ctx is done.
func forEach(ctx context.Context, items []string, n int, fn func(string)) {
	work := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < n && i < len(items); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				fn(it)
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case work <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
}
