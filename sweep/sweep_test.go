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

// stale applies Judge to a list, keeping what it would revoke.
func stale(tokens []Token, displayName string, keep ...string) []Token {
	kept := keepSet(keep)
	var out []Token
	for _, t := range tokens {
		if Judge(t, displayName, kept) == Revoke {
			out = append(out, t)
		}
	}
	return out
}

func TestStale(t *testing.T) {
	toks := []Token{
		{Accessor: "cur", DisplayName: dn},
		{Accessor: "old1", DisplayName: dn},
		{Accessor: "old2", DisplayName: dn},
		{Accessor: "foreign", DisplayName: "oidc-wizard"},
		{Accessor: "near1", DisplayName: "token-devvm-wizard2"},
		{Accessor: "near2", DisplayName: "token-devvm"},
		{Accessor: "near3", DisplayName: "devvm-wizard"},
		{Accessor: "near4", DisplayName: "Token-Devvm-Wizard"},
		{Accessor: "near5", DisplayName: " token-devvm-wizard"},
	}
	for _, tc := range []struct {
		name string
		keep []string
		want []string
	}{
		{name: "excludes the current accessor", keep: []string{"cur"}, want: []string{"old1", "old2"}},
		{name: "excludes every kept accessor", keep: []string{"cur", "old2"}, want: []string{"old1"}},
		{name: "nothing kept matches every exact name", want: []string{"cur", "old1", "old2"}},
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
	if err := f.lookupErr[acc]; err != nil {
		return Token{}, err
	}
	return f.tokens[acc], nil
}

func (f *fakeVault) Revoke(_ context.Context, acc string) error {
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
		"cur":     {Accessor: "cur", DisplayName: dn, CreationTime: t0.Add(72 * time.Hour)},
		"old1":    {Accessor: "old1", DisplayName: dn, CreationTime: t0.Add(48 * time.Hour)},
		"old2":    {Accessor: "old2", DisplayName: dn, CreationTime: t0},
		"foreign": {Accessor: "foreign", DisplayName: "oidc-wizard"},
		"near":    {Accessor: "near", DisplayName: "token-devvm-wizard2"},
	}}
}

func TestRunRevokesExactlyTheStale(t *testing.T) {
	f := seeded()
	rep, err := Run(context.Background(), f, Options{DisplayName: dn, Keep: []string{"cur", "foreign"}, Apply: true})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(f.revoked)
	if !reflect.DeepEqual(f.revoked, []string{"old1", "old2"}) {
		t.Fatalf("revoked %v", f.revoked)
	}
	if !reflect.DeepEqual(rep.Revoked, []string{"old1", "old2"}) || rep.Listed != 5 {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Kept) != 1 || rep.Kept[0].Accessor != "cur" {
		t.Fatalf("kept %+v, want the current token only", rep.Kept)
	}
	if rep.Matched[0].Accessor != "old2" {
		t.Fatalf("matches not oldest first: %+v", rep.Matched)
	}
}

func TestRunDryRunRevokesNothing(t *testing.T) {
	f := seeded()
	rep, err := Run(context.Background(), f, Options{DisplayName: dn, Keep: []string{"cur"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.revoked) != 0 || len(rep.Revoked) != 0 {
		t.Fatalf("dry run revoked %v", f.revoked)
	}
	if len(rep.Matched) != 2 {
		t.Fatalf("matched %+v", rep.Matched)
	}
}

func TestRunCarriesOnPastFailures(t *testing.T) {
	f := seeded()
	f.lookupErr = map[string]error{"broken": errors.New("500 internal"), "gone": fmt.Errorf("lookup: %w", ErrVanished)}
	f.revokeErr = map[string]error{"old1": errors.New("403 permission denied")}
	rep, err := Run(context.Background(), f, Options{DisplayName: dn, Keep: []string{"cur"}, Apply: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rep.Revoked, []string{"old2"}) {
		t.Fatalf("revoked %v", rep.Revoked)
	}
	if rep.Vanished != 1 {
		t.Fatalf("vanished = %d", rep.Vanished)
	}
	ops := map[string]string{}
	for _, fl := range rep.Failed {
		ops[fl.Accessor] = fl.Op
	}
	if !reflect.DeepEqual(ops, map[string]string{"broken": "lookup", "old1": "revoke"}) {
		t.Fatalf("failures %v", ops)
	}
}

func TestRunListFailureIsAnError(t *testing.T) {
	f := seeded()
	f.listErr = errors.New("503 sealed")
	if _, err := Run(context.Background(), f, Options{DisplayName: dn, Apply: true}); err == nil {
		t.Fatal("want error")
	}
	if len(f.revoked) != 0 {
		t.Fatal("revoked after failed list")
	}
}

func TestRunBoundsConcurrency(t *testing.T) {
	f := &fakeVault{tokens: map[string]Token{}, lookupWait: 5 * time.Millisecond}
	for i := 0; i < 60; i++ {
		a := fmt.Sprintf("a%02d", i)
		f.tokens[a] = Token{Accessor: a, DisplayName: "x"}
	}
	if _, err := Run(context.Background(), f, Options{DisplayName: dn, Concurrency: 3}); err != nil {
		t.Fatal(err)
	}
	if got := f.maxFlight.Load(); got != 3 {
		t.Fatalf("max lookups in flight = %d, want 3", got)
	}
}

func TestRunCancelledReportsHowFar(t *testing.T) {
	f := &fakeVault{tokens: map[string]Token{}, lookupWait: 20 * time.Millisecond}
	for i := 0; i < 100; i++ {
		a := fmt.Sprintf("a%03d", i)
		f.tokens[a] = Token{Accessor: a, DisplayName: dn}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	rep, err := Run(ctx, f, Options{DisplayName: dn, Concurrency: 2, Apply: true})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if len(f.revoked) != 0 {
		t.Fatal("revoked after cancellation")
	}
	if rep.Listed != 100 || len(rep.Matched) == 0 || len(rep.Matched) >= 100 || rep.LookedUp != len(rep.Matched) || len(rep.Failed) != 0 {
		t.Fatalf("report %d listed, %d looked up, %d matched, %d failed", rep.Listed, rep.LookedUp, len(rep.Matched), len(rep.Failed))
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("after looking up %d of 100", rep.LookedUp)) {
		t.Fatalf("error does not say how far it got: %v", err)
	}
}

func TestRunReportsProgress(t *testing.T) {
	f := seeded()
	var calls []int
	_, err := Run(context.Background(), f, Options{DisplayName: dn, Concurrency: 3, Progress: func(done, total int) {
		if total != 5 {
			t.Errorf("total %d", total)
		}
		calls = append(calls, done)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(calls) != "[1 2 3 4 5]" {
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
	if _, err := Run(context.Background(), f, Options{DisplayName: dn, Concurrency: 8, MaxRPS: 50}); err != nil {
		t.Fatal(err)
	}
	// 11 lookups at 50/s with a burst of 1 take at least 10 intervals of 20ms.
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Fatalf("11 lookups at --max-rps 50 took %s", d)
	}
}
