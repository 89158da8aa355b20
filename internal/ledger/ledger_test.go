package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/sweep"
)

var (
	t0    = time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	whole = Ledger{WholeSince: t0, Tokens: []Entry{{Accessor: "old", Recorded: t0, How: Minted}}}
)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

func accs(l Ledger) []string { return l.Accessors() }

// report is a sweep's report of listed accessors, lookedUp of them
// looked up, with recs: what it did to each.
func report(listed, lookedUp int, recs ...sweep.Record) sweep.Report {
	return sweep.Report{Listed: listed, LookedUp: lookedUp, Records: recs}
}

// judged is an accessor looked up and judged v, nothing more done.
func judged(acc string, v sweep.Verdict) sweep.Record {
	return sweep.Record{Accessor: acc, Token: sweep.Token{Accessor: acc}, Verdict: v}
}

// stale is this machine's stale token, not revoked (a dry run).
func stale(acc string) sweep.Record { return judged(acc, sweep.Stale) }

// revoked is this machine's stale token, revoked.
func revoked(acc string) sweep.Record { return did(acc, sweep.Revoked, sweep.Stale) }

// did is an accessor the sweep did d to, judged v (if looked up).
func did(acc string, d sweep.Did, v ...sweep.Verdict) sweep.Record {
	r := sweep.Record{Accessor: acc, Did: d}
	if len(v) > 0 {
		r.Verdict = v[0]
	}
	return r
}

// foldCase is one row of TestFold: the events fold applies to from, and
// the tokens, gap and unrecorded creates the ledger must hold after them.
type foldCase struct {
	name     string
	from     Ledger
	fold     func(Ledger) Ledger
	want     []string
	wantGap  Gap
	wantPend int
}

// foldCases is the ledger's whole rule set, one event sequence per row.
var foldCases = []foldCase{
	{"no ledger yet: nothing known, never whole", Ledger{}, func(l Ledger) Ledger { return l },
		[]string{}, NeverWhole, 0},
	{"in flight: a create sent and not answered is a gap", whole, func(l Ledger) Ledger { return l.Sent(at(1)) },
		[]string{"old"}, Unrecorded, 1},
	{"recorded: the answer clears its create and holds the token", whole,
		func(l Ledger) Ledger { return l.Sent(at(1)).Answered(at(1), "new", at(2)) },
		[]string{"old", "new"}, NoGap, 0},
	{"refused: a create vault refused minted nothing", whole,
		func(l Ledger) Ledger { return l.Sent(at(1)).Refused(at(1)) },
		[]string{"old"}, NoGap, 0},
	{"a lost answer stays unrecorded after the retry is answered", whole,
		func(l Ledger) Ledger { return l.Sent(at(1)).Sent(at(2)).Answered(at(2), "new", at(3)) },
		[]string{"old", "new"}, Unrecorded, 1},
	{"an earlier run's unrecorded create is not cleared by this run's answer", whole.Sent(at(1)),
		func(l Ledger) Ledger { return l.Sent(at(5)).Answered(at(5), "new", at(6)) },
		[]string{"old", "new"}, Unrecorded, 1},
	{"found in the file: a manual re-mint enters once", whole,
		func(l Ledger) Ledger { return l.Found("manual", at(1)).Found("manual", at(2)).Found("old", at(3)) },
		[]string{"old", "manual"}, NoGap, 0},
	{"vanished: a ledger sweep forgets what vault no longer knows", whole.Found("b", at(1)),
		func(l Ledger) Ledger {
			return l.Swept(report(2, 2, did("old", sweep.Vanished), stale("b")), at(2))
		},
		[]string{"b"}, NoGap, 0},
	{"revoked: a retired token leaves", whole,
		func(l Ledger) Ledger {
			return l.Swept(report(1, 1, revoked("old")), at(1))
		},
		[]string{}, NoGap, 0},
	{"another machine's entry leaves and is never revoked", whole.Found("theirs", at(1)),
		func(l Ledger) Ledger {
			return l.Swept(report(2, 2, judged("theirs", sweep.Other), revoked("old")), at(2))
		},
		[]string{}, NoGap, 0},
	{"ignored by the sweep (not our name, not periodic) leaves", whole.Found("odd", at(1)),
		func(l Ledger) Ledger {
			return l.Swept(report(2, 2, revoked("old"), judged("odd", sweep.Ignore)), at(2))
		},
		[]string{}, NoGap, 0},
	{"a ledger sweep leaves what it did not look up (the new token, kept)", whole.Found("new", at(1)),
		func(l Ledger) Ledger {
			return l.Swept(report(1, 1, revoked("old")), at(2))
		},
		[]string{"new"}, NoGap, 0},
	{"a failed revoke or lookup stays for the next run", whole.Found("b", at(1)),
		func(l Ledger) Ledger {
			return l.Swept(report(2, 2, did("old", sweep.RevokeFailed, sweep.Stale), did("b", sweep.LookupFailed)), at(2))
		},
		[]string{"old", "b"}, NoGap, 0},
	{"a ledger sweep cut short keeps what it did not reach", whole.Found("b", at(1)),
		func(l Ledger) Ledger {
			return l.Swept(report(2, 1, stale("old")), at(2))
		},
		[]string{"old", "b"}, NoGap, 0},
	{"a complete walk makes the ledger whole: the alive, no unrecorded create", Ledger{}.Sent(at(-10)).Found("x", at(1)),
		func(l Ledger) Ledger {
			return l.WalkFrom(at(2), 900).Step("zz", report(900, 900, judged("new", sweep.Keep),
				revoked("x"), revoked("stranded"), did("stuck", sweep.RevokeFailed, sweep.Stale)), at(9)).Finish(at(9))
		},
		[]string{"new", "stuck"}, NoGap, 0},
	{"a create sent just before the walk's LIST may mint after it: it stays a gap", Ledger{}.Sent(at(0)),
		func(l Ledger) Ledger {
			return l.WalkFrom(at(2), 9).Step("zz", report(9, 9), at(3)).Finish(at(3))
		},
		[]string{}, Unrecorded, 1},
	{"a walk in steps: what the ledger recorded since the walk began stays, a create sent meanwhile stays a gap", Ledger{}.Sent(at(-10)).Found("x", at(1)),
		func(l Ledger) Ledger {
			l = l.WalkFrom(at(2), 9).Step("m", report(5, 5, revoked("x")), at(3))
			l = l.Sent(at(4)).Answered(at(4), "healed", at(4)).Sent(at(5))
			return l.WalkFrom(at(6), 9).Step("zz", report(4, 4, judged("was-file", sweep.Keep)), at(7)).Finish(at(8))
		},
		[]string{"was-file", "healed"}, Unrecorded, 1},
	{"a walk with a failed lookup is not whole until a second look finds it", Ledger{},
		func(l Ledger) Ledger {
			l = l.WalkFrom(at(1), 9).Step("zz", report(9, 9, judged("new", sweep.Keep), did("q", sweep.LookupFailed)), at(9)).Finish(at(9))
			if l.Gap() != NeverWhole || l.Walk == nil || !slices.Equal(l.Walk.Unknown, []string{"q"}) {
				panic("a walk with an unknown accessor was finished")
			}
			return l.Recheck(report(1, 1, did("q", sweep.Vanished)), at(10)).Finish(at(10))
		},
		[]string{"new"}, NoGap, 0},
	{"a walk cut short forgets what it saw go and keeps its place", whole.Sent(at(1)).Found("b", at(1)),
		func(l Ledger) Ledger {
			l = l.WalkFrom(at(2), 9).Step("c", report(3, 3, did("b", sweep.Vanished), stale("s")), at(9))
			if l.Walk.Cursor != "c" || l.Walk.Done != 3 || l.Walk.Runs != 1 || l.Walk.Fraction() != 3.0/9 {
				panic("the walk's place was not kept")
			}
			return l
		},
		[]string{"old"}, Unrecorded, 1},
}

// TestFold is the ledger's whole rule set (foldCases), one event sequence
// per row.
func TestFold(t *testing.T) {
	for _, tc := range foldCases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.fold(tc.from)
			if !slices.Equal(accs(got), tc.want) {
				t.Errorf("tokens %v, want %v", accs(got), tc.want)
			}
			if got.Gap() != tc.wantGap {
				t.Errorf("gap %v, want %v", got.Gap(), tc.wantGap)
			}
			if len(got.Unrecorded) != tc.wantPend {
				t.Errorf("unrecorded creates %v, want %d", got.Unrecorded, tc.wantPend)
			}
		})
	}
}

// TestOverflow: beyond Max the oldest are dropped and the ledger says so,
// so that the next heal walks.
func TestOverflow(t *testing.T) {
	l := whole
	for i := 1; i <= Max; i++ {
		l = l.Found(fmt.Sprintf("a%02d", i), at(i))
	}
	if len(l.Tokens) != Max || !l.Overflowed || l.Gap() != Overflow {
		t.Fatalf("%d tokens, overflowed %t, gap %v; want %d, true, overflow", len(l.Tokens), l.Overflowed, l.Gap(), Max)
	}
	if l.Has("old") || !l.Has("a01") || !l.Has(fmt.Sprintf("a%02d", Max)) {
		t.Fatalf("the oldest was not the one dropped: %v", accs(l))
	}
	if w := l.Whole(at(99), at(98), []string{"a64"}); w.Gap() != NoGap || w.Overflowed {
		t.Fatalf("a complete walk does not end the overflow: %+v", w)
	}
}

// TestMethodsDoNotChangeTheirReceiver: a fold returns a new ledger; the run
// keeps the previous one where a save failed.
func TestMethodsDoNotChangeTheirReceiver(t *testing.T) {
	l := whole.Found("b", at(1)).Sent(at(2))
	before, _ := json.Marshal(l)
	_ = l.Forget("old")
	_ = l.Refused(at(2))
	_ = l.Answered(at(2), "c", at(3))
	after, _ := json.Marshal(l)
	if string(before) != string(after) {
		t.Fatalf("a method changed its receiver:\n%s\n%s", before, after)
	}
}

// TestStoredForm: the ledger round-trips through JSON as the state file
// keeps it, with an unrecorded create still a gap after a crash.
func TestStoredForm(t *testing.T) {
	l := whole.Sent(time.Now())
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var back Ledger
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Gap() != Unrecorded || !back.Has("old") {
		t.Fatalf("after a reload: gap %v, tokens %v", back.Gap(), accs(back))
	}
	if back = back.Answered(l.Unrecorded[0], "new", time.Now()); back.Gap() != NoGap {
		t.Fatalf("the reloaded create time does not match its own: %v", back.Unrecorded)
	}
	var empty Ledger
	if err := json.Unmarshal([]byte(`{}`), &empty); err != nil || empty.Gap() != NeverWhole {
		t.Fatal(errors.Join(err, fmt.Errorf("an empty ledger is not never-whole: %v", empty.Gap())))
	}
}
