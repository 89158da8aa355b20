package sweep

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const dn = "token-devvm-wizard"

// p is the period of the periodic tokens in these tests.
const p = 768 * time.Hour

var me = Owner{Host: "devvm-a", User: "wizard"}

// stale applies Judge to a list, keeping what it would revoke.
func stale(tokens []Token, displayName string, keep ...string) []Token {
	kept := keepSet(keep)
	var out []Token
	for _, t := range tokens {
		if Judge(t, displayName, me, kept) == Stale {
			out = append(out, t)
		}
	}
	return out
}

// TestJudge is the stale rule's whole table: for the heal's sweep and for
// `sweep` alike.
func TestJudge(t *testing.T) {
	keep := keepSet([]string{"kept"})
	for _, tc := range []struct {
		name string
		tok  Token
		want Verdict
	}{
		{"exact name, tagged for this machine, not kept: stale", Token{Accessor: "a", DisplayName: dn, Period: p, Host: "devvm-a", User: "wizard"}, Stale},
		{"exact name, tagged for this machine, no user tag: stale", Token{Accessor: "a", DisplayName: dn, Period: p, Host: "devvm-a"}, Stale},
		{"exact name, untagged (manual re-mint): stale", Token{Accessor: "a", DisplayName: dn, Period: p}, Stale},
		{"exact name, tagged for another machine: never", Token{Accessor: "a", DisplayName: dn, Period: p, Host: "devvm-b", User: "wizard"}, Other},
		{"exact name, another machine even when kept", Token{Accessor: "kept", DisplayName: dn, Period: p, Host: "devvm-b"}, Other},
		{"exact name, this host but another user: never", Token{Accessor: "a", DisplayName: dn, Period: p, Host: "devvm-a", User: "viktor"}, Other},
		{"exact name, tagged for this machine, kept", Token{Accessor: "kept", DisplayName: dn, Period: p, Host: "devvm-a", User: "wizard"}, Keep},
		{"exact name, untagged, kept", Token{Accessor: "kept", DisplayName: dn, Period: p}, Keep},
		{"exact name, tagged for this machine, not periodic: somebody's login", Token{Accessor: "a", DisplayName: dn, Host: "devvm-a", User: "wizard"}, Ignore},
		{"exact name, untagged, not periodic", Token{Accessor: "a", DisplayName: dn}, Ignore},
		{"near miss: suffix", Token{Accessor: "a", DisplayName: "token-devvm-wizard2", Host: "devvm-a"}, Ignore},
		{"near miss: prefix", Token{Accessor: "a", DisplayName: "token-devvm"}, Ignore},
		{"near miss: no token- prefix", Token{Accessor: "a", DisplayName: "devvm-wizard"}, Ignore},
		{"near miss: case", Token{Accessor: "a", DisplayName: "Token-Devvm-Wizard"}, Ignore},
		{"near miss: space", Token{Accessor: "a", DisplayName: " token-devvm-wizard"}, Ignore},
		{"foreign login", Token{Accessor: "a", DisplayName: "oidc-wizard"}, Ignore},
		{"this machine, another profile's: never", Token{Accessor: "a", DisplayName: dn, Period: p, Host: "devvm-a", User: "wizard", Profile: "staging"}, Other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Judge(tc.tok, dn, me, keep); got != tc.want {
				t.Fatalf("Judge = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestJudgeByProfile: a profile's sweep revokes only its own stale tokens
// on this machine; another profile's, and the no-profile setup's, are
// never its to revoke, and the other way round.
func TestJudgeByProfile(t *testing.T) {
	staging := Owner{Host: "devvm-a", User: "wizard", Profile: "staging"}
	tok := func(profile string) Token {
		return Token{Accessor: "a", DisplayName: dn, Period: p, Host: "devvm-a", User: "wizard", Profile: profile}
	}
	for _, tc := range []struct {
		name string
		tok  Token
		me   Owner
		want Verdict
	}{
		{"staging's own stale token", tok("staging"), staging, Stale},
		{"prod's token, judged by staging", tok("prod"), staging, Other},
		{"the no-profile setup's token, judged by staging", tok(""), staging, Other},
		{"staging's token, judged by the no-profile setup", tok("staging"), me, Other},
		{"an untagged manual re-mint is stale for everyone", Token{Accessor: "a", DisplayName: dn, Period: p}, staging, Stale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Judge(tc.tok, dn, tc.me, nil); got != tc.want {
				t.Fatalf("Judge = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStale(t *testing.T) {
	toks := []Token{
		{Accessor: "cur", DisplayName: dn, Period: p, Host: "devvm-a"},
		{Accessor: "old1", DisplayName: dn, Period: p, Host: "devvm-a"},
		{Accessor: "old2", DisplayName: dn, Period: p},
		{Accessor: "other", DisplayName: dn, Period: p, Host: "devvm-b"},
		{Accessor: "foreign", DisplayName: "oidc-wizard"},
		{Accessor: "near1", DisplayName: "token-devvm-wizard2"},
	}
	for _, tc := range []struct {
		name string
		keep []string
		want []string
	}{
		{name: "excludes the current accessor", keep: []string{"cur"}, want: []string{"old1", "old2"}},
		{name: "excludes every kept accessor", keep: []string{"cur", "old2"}, want: []string{"old1"}},
		{name: "nothing kept matches every exact name of this machine", want: []string{"cur", "old1", "old2"}},
		{name: "empty keep entry is ignored", keep: []string{""}, want: []string{"cur", "old1", "old2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, s := range stale(toks, dn, tc.keep...) {
				got = append(got, s.Accessor)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if got := stale(toks, dn, "cur", "old1", "old2"); len(got) != 0 {
		t.Fatalf("all kept: got %v", got)
	}
}

// fakeVault answers from a map and records what was revoked.
type fakeVault struct {
	mu         sync.Mutex
	tokens     map[string]Token
	listErr    error
	lookupErr  map[string]error
	revokeErr  map[string]error
	revoked    []string
	inFlight   atomic.Int32
	maxFlight  atomic.Int32
	lookupWait time.Duration
	lookupHook func(n int32) // runs after each lookup with how many so far, when set
	lookups    atomic.Int32
	revokeHook func(context.Context) error // runs first in Revoke when set
}

// budget is a context whose deadline passes when the test says so (runOut):
// from then on Done is closed and Err is DeadlineExceeded, as when a
// --timeout ran out, with no clock involved.
type budget struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newBudget() *budget { return &budget{Context: context.Background(), done: make(chan struct{})} }

func (b *budget) runOut()               { b.once.Do(func() { close(b.done) }) }
func (b *budget) Done() <-chan struct{} { return b.done }
func (b *budget) Err() error {
	select {
	case <-b.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (f *fakeVault) List(context.Context) ([]string, error) {
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []string
	for a := range f.tokens {
		out = append(out, a)
	}
	for a := range f.lookupErr {
		out = append(out, a)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeVault) Lookup(ctx context.Context, acc string) (Token, error) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxFlight.Load()
		if n <= m || f.maxFlight.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(f.lookupWait)
	if f.lookupHook != nil {
		defer f.lookupHook(f.lookups.Add(1))
	}
	if err := f.lookupErr[acc]; err != nil {
		return Token{}, err
	}
	return f.tokens[acc], nil
}

func (f *fakeVault) Revoke(ctx context.Context, acc string) error {
	if f.revokeHook != nil {
		if err := f.revokeHook(ctx); err != nil {
			return err
		}
	}
	if err := f.revokeErr[acc]; err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, acc)
	return nil
}

func seeded() *fakeVault {
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	return &fakeVault{tokens: map[string]Token{
		"cur":     {Accessor: "cur", DisplayName: dn, Period: p, CreationTime: t0.Add(72 * time.Hour)},
		"old1":    {Accessor: "old1", DisplayName: dn, Period: p, CreationTime: t0.Add(48 * time.Hour), Host: "devvm-a", User: "wizard"},
		"old2":    {Accessor: "old2", DisplayName: dn, Period: p, CreationTime: t0},
		"other":   {Accessor: "other", DisplayName: dn, Period: p, CreationTime: t0, Host: "devvm-b", User: "wizard"},
		"foreign": {Accessor: "foreign", DisplayName: "oidc-wizard"},
		"near":    {Accessor: "near", DisplayName: "token-devvm-wizard2"},
	}}
}

func TestRunRevokesExactlyTheStale(t *testing.T) {
	f := seeded()
	rep, err := Run(context.Background(), f, all(f), Options{DisplayName: dn, Owner: me, Keep: []string{"cur", "foreign"}, Apply: true})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(f.revoked)
	if !reflect.DeepEqual(f.revoked, []string{"old1", "old2"}) {
		t.Fatalf("revoked %v", f.revoked)
	}
	if !reflect.DeepEqual(accs(rep, DidThis(Revoked)), []string{"old1", "old2"}) {
		t.Fatalf("report revoked %v", accs(rep, DidThis(Revoked)))
	}
	if rep.Listed != 6 {
		t.Fatalf("listed %d, want 6", rep.Listed)
	}
	if len(rep.Where(Is(Other))) != 1 || rep.Where(Is(Other))[0].Accessor != "other" || rep.Where(Is(Other))[0].Token.Host != "devvm-b" {
		t.Fatalf("others %+v, want the devvm-b token listed as another machine's", rep.Where(Is(Other)))
	}
	if len(rep.Where(Is(Keep))) != 1 || rep.Where(Is(Keep))[0].Accessor != "cur" {
		t.Fatalf("kept %+v, want the current token only", rep.Where(Is(Keep)))
	}
	if rep.Where(Is(Stale))[0].Accessor != "old2" {
		t.Fatalf("matches not oldest first: %+v", rep.Where(Is(Stale)))
	}
}

func TestRunDryRunRevokesNothing(t *testing.T) {
	f := seeded()
	rep, err := Run(context.Background(), f, all(f), Options{DisplayName: dn, Owner: me, Keep: []string{"cur"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.revoked) != 0 || len(accs(rep, DidThis(Revoked))) != 0 {
		t.Fatalf("dry run revoked %v", f.revoked)
	}
	if len(rep.Where(Is(Stale))) != 2 {
		t.Fatalf("matched %+v", rep.Where(Is(Stale)))
	}
}

func TestRunCarriesOnPastFailures(t *testing.T) {
	f := seeded()
	f.lookupErr = map[string]error{"broken": errors.New("500 internal"), "gone": fmt.Errorf("lookup: %w", ErrVanished)}
	f.revokeErr = map[string]error{"old1": errors.New("403 permission denied")}
	rep, err := Run(context.Background(), f, all(f), Options{DisplayName: dn, Owner: me, Keep: []string{"cur"}, Apply: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(accs(rep, DidThis(Revoked)), []string{"old2"}) {
		t.Fatalf("revoked %v", accs(rep, DidThis(Revoked)))
	}
	if !reflect.DeepEqual(accs(rep, DidThis(Vanished)), []string{"gone"}) {
		t.Fatalf("vanished = %v", accs(rep, DidThis(Vanished)))
	}
	did := map[string]Did{}
	for _, fl := range rep.Where(Record.Failed) {
		did[fl.Accessor] = fl.Did
	}
	if !reflect.DeepEqual(did, map[string]Did{"broken": LookupFailed, "old1": RevokeFailed}) {
		t.Fatalf("failures %v", did)
	}
}

// TestRunOnlyLooksUpTheGivenAccessors: a sweep makes no list; only the
// accessors it is given (the ledger's) are looked up and judged.
func TestRunOnlyLooksUpTheGivenAccessors(t *testing.T) {
	f := seeded()
	f.listErr = errors.New("a list was made")
	rep, err := Run(context.Background(), f, []string{"old1", "other"}, Options{DisplayName: dn, Owner: me, Keep: []string{"cur"}, Apply: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.revoked, []string{"old1"}) || rep.Listed != 2 || rep.LookedUp != 2 {
		t.Fatalf("revoked %v, listed %d, looked up %d; want old1 of 2", f.revoked, rep.Listed, rep.LookedUp)
	}
	if len(rep.Where(Is(Other))) != 1 || rep.Where(Is(Other))[0].Accessor != "other" {
		t.Fatalf("other %+v", rep.Where(Is(Other)))
	}
}

func TestRunBoundsConcurrency(t *testing.T) {
	f := &fakeVault{tokens: map[string]Token{}, lookupWait: 5 * time.Millisecond}
	for i := 0; i < 60; i++ {
		a := fmt.Sprintf("a%02d", i)
		f.tokens[a] = Token{Accessor: a, DisplayName: "x"}
	}
	if _, err := Run(context.Background(), f, all(f), Options{DisplayName: dn, Concurrency: 3}); err != nil {
		t.Fatal(err)
	}
	if got := f.maxFlight.Load(); got != 3 {
		t.Fatalf("max lookups in flight = %d, want 3", got)
	}
}

// TestRunCancelledReportsHowFar: the time budget runs out after the tenth
// lookup (deterministically: the fake says when); the walk stops handing
// out lookups, revokes nothing, and says how far it got.
func TestRunCancelledReportsHowFar(t *testing.T) {
	f := &fakeVault{tokens: map[string]Token{}}
	for i := 0; i < 100; i++ {
		a := fmt.Sprintf("a%03d", i)
		f.tokens[a] = Token{Accessor: a, DisplayName: dn, Period: p}
	}
	ctx := newBudget()
	f.lookupHook = func(n int32) {
		if n == 10 {
			ctx.runOut()
		}
	}
	rep, err := Run(ctx, f, all(f), Options{DisplayName: dn, Concurrency: 2, Apply: true})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("err = %v, want ErrIncomplete", err)
	}
	if len(f.revoked) != 0 {
		t.Fatal("revoked after cancellation")
	}
	// After the tenth, at most the other lookup in flight and the one
	// handed out (waiting for a slot) still finish: 10 + concurrency + 1.
	if rep.Listed != 100 || rep.LookedUp < 10 || rep.LookedUp > 13 || rep.LookedUp != len(rep.Where(Is(Stale))) || len(rep.Where(Record.Failed)) != 0 {
		t.Fatalf("report %d listed, %d looked up, %d matched, %d failed", rep.Listed, rep.LookedUp, len(rep.Where(Is(Stale))), len(rep.Where(Record.Failed)))
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("stopped looking up after %d of 100 accessors: the time budget (--timeout) ran out", rep.LookedUp)) {
		t.Fatalf("error does not say how far it got and why: %v", err)
	}
}

// TestRunRateLimitPastDeadlineIsIncomplete: the limiter refuses to wait past
// the deadline while the context is not done yet. That used to end the walk
// early and count it as complete, with the stale tokens still alive.
func TestRunRateLimitPastDeadlineIsIncomplete(t *testing.T) {
	f := &fakeVault{tokens: map[string]Token{}}
	for i := 0; i < 40; i++ {
		a := fmt.Sprintf("a%02d", i)
		f.tokens[a] = Token{Accessor: a, DisplayName: dn, Period: p}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rep, err := Run(ctx, f, all(f), Options{DisplayName: dn, Owner: me, Apply: true, MaxRPS: 20})
	var ie *IncompleteError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want an *IncompleteError", err)
	}
	if ie.Done >= 40 || ie.Done != rep.LookedUp || ie.Total != 40 {
		t.Fatalf("incomplete %+v, looked up %d", ie, rep.LookedUp)
	}
	if !strings.Contains(err.Error(), "at --max-rps 20 the rest cannot finish within the time budget") {
		t.Fatalf("error does not name the rate limit: %v", err)
	}
	if want := Budget(40, 20); ie.Need != want || want != 33*time.Second {
		t.Fatalf("need %s, want %s (40 accessors at 20/s, +25%%, +30s)", ie.Need, want)
	}
	if len(f.revoked) != 0 {
		t.Fatalf("revoked %v after an incomplete lookup walk", f.revoked)
	}
}

func TestRunReportsProgress(t *testing.T) {
	f := seeded()
	var calls []int
	_, err := Run(context.Background(), f, all(f), Options{DisplayName: dn, Concurrency: 3, Progress: func(done, total int) {
		if total != 6 {
			t.Errorf("total %d", total)
		}
		calls = append(calls, done)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(calls) != "[1 2 3 4 5 6]" {
		t.Fatalf("progress calls %v", calls)
	}
}

func TestRunHonoursMaxRPS(t *testing.T) {
	f := &fakeVault{tokens: map[string]Token{}}
	for i := 0; i < 11; i++ {
		a := fmt.Sprintf("a%02d", i)
		f.tokens[a] = Token{Accessor: a, DisplayName: "x"}
	}
	start := time.Now()
	if _, err := Run(context.Background(), f, all(f), Options{DisplayName: dn, Concurrency: 8, MaxRPS: 50}); err != nil {
		t.Fatal(err)
	}
	// 11 lookups at 50/s with a burst of 1 take at least 10 intervals of 20ms.
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Fatalf("11 lookups at --max-rps 50 took %s", d)
	}
}

// TestRunRevokesCutShortIsIncomplete: revokes in flight when the walk is
// interrupted are not failures of their accessors: the walk is incomplete,
// and says so.
func TestRunRevokesCutShortIsIncomplete(t *testing.T) {
	f := seeded()
	ctx, cancel := context.WithCancel(context.Background())
	f.revokeHook = func(context.Context) error {
		cancel()
		return context.Canceled
	}
	_, err := Run(ctx, f, all(f), Options{DisplayName: dn, Owner: me, Keep: []string{"cur"}, Apply: true, Concurrency: 1})
	var ie *IncompleteError
	if !errors.As(err, &ie) || ie.Phase != OpRevoke || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want an interrupted revoke phase", err)
	}
	if !strings.Contains(err.Error(), "stopped revoking after 0 of 2 accessors: interrupted") {
		t.Fatalf("error does not say how far the revokes got: %v", err)
	}
}

// all is every accessor f holds, as a walk's list would give them.
func all(f *fakeVault) []string {
	out, _ := f.List(context.Background())
	return out
}

// accs are the accessors of the records f holds for, sorted.
func accs(rep Report, f func(Record) bool) []string {
	out := AccessorsOf(rep.Where(f))
	sort.Strings(out)
	return out
}
