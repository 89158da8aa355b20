package runstate

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "vault-token-renew", "state.json")
	want := State{Time: day(2), Outcome: renew.Fail, Cause: "unreachable", Summary: "FAIL: vault unreachable next=\"x\"",
		Accessor: "acc1", TokenExpiry: exp, LastSuccess: day(0), FailingSince: day(1), FailingRuns: 2, HealsTotal: 1, Host: "vm1"}
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: mode %v (%v), want %v", p, fi.Mode().Perm(), err, mode)
		}
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(want.Time) || !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

// normalize drops monotonic/location differences that JSON does not keep.
func normalize(s State) State {
	for _, t := range []*time.Time{&s.Time, &s.TokenExpiry, &s.LastSuccess, &s.FailingSince} {
		*t = t.UTC()
	}
	return s
}

func TestSaveLeavesUnknownTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := Save(path, State{Time: day(0), Outcome: renew.Fail, Summary: "FAIL: x", FailingSince: day(0), FailingRuns: 1}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for _, absent := range []string{"token_expiry", "last_success", "accessor", "cause"} {
		if strings.Contains(string(b), `"`+absent+`"`) {
			t.Errorf("%s written though unknown:\n%s", absent, b)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		path string
		want error
	}{
		{"missing", filepath.Join(dir, "none.json"), ErrNoState},
		{"not json", write("garbage.json", "{not json"), ErrCorrupt},
		{"empty", write("empty.json", ""), ErrCorrupt},
		{"unknown outcome", write("odd.json", `{"time":"2026-06-18T06:00:00Z","outcome":"maybe"}`), ErrCorrupt},
		{"no time", write("notime.json", `{"outcome":"ok"}`), ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load(tt.path)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Load error %v, want %v", err, tt.want)
			}
			if !reflect.DeepEqual(s, State{}) {
				t.Fatalf("Load returned %+v with an error", s)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("error %q does not name %s", err, tt.path)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "none.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file error %v does not wrap fs.ErrNotExist", err)
	}
}

func TestSaveFailsOnABadDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	err := Save(filepath.Join(file, "state.json"), State{Time: day(0), Outcome: renew.OK})
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("Save under a file: %v", err)
	}
}

// TestLedgersArePerTokenFile: two token files (a shell run with
// --token-file, the unit on ~/.vault-token) keep two ledgers in the one
// state file; saving one leaves the other as stored, and a symlink to a
// token file shares its ledger, as it shares its run lock.
func TestLedgersArePerTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", "state.json")
	a, b := filepath.Join(dir, "a-token"), filepath.Join(dir, "b-token")
	os.WriteFile(a, []byte("x"), 0o600)
	link := filepath.Join(dir, "link-to-a")
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	sa, sb := StateLedger{Path: path, File: a}, StateLedger{Path: path, File: b}
	if _, err := sa.Fold(func(l ledger.Ledger) ledger.Ledger { return l.Found("acc-a", day(0)) }); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Fold(func(l ledger.Ledger) ledger.Ledger { return l.Found("acc-b", day(0)) }); err != nil {
		t.Fatal(err)
	}
	if la, _ := sa.Load(); !slices.Equal(la.Accessors(), []string{"acc-a"}) {
		t.Fatalf("a's ledger %v after b's save, want only acc-a", la.Accessors())
	}
	if lb, _ := sb.Load(); !slices.Equal(lb.Accessors(), []string{"acc-b"}) {
		t.Fatalf("b's ledger %v, want only acc-b", lb.Accessors())
	}
	if ll, _ := (StateLedger{Path: path, File: link}).Load(); !slices.Equal(ll.Accessors(), []string{"acc-a"}) {
		t.Fatalf("a symlink to a reads %v, want a's ledger", ll.Accessors())
	}
	st, err := Update(path, func(s State) State { return Next(s, Run{Time: day(1), Outcome: renew.OK}) })
	if err != nil || len(st.Ledgers) != 2 {
		t.Fatalf("folding a run in kept %d ledgers (%v), want both", len(st.Ledgers), err)
	}
}

// TestFoldsOfTwoProcessesKeepBoth: a walk and a heal change one ledger at
// the same time, each from its own copy; each folds into what the other
// saved, so the heal's minted token and the walk's place both stay.
func TestFoldsOfTwoProcessesKeepBoth(t *testing.T) {
	dir := t.TempDir()
	store := StateLedger{Path: filepath.Join(dir, "state.json"), File: filepath.Join(dir, ".vault-token")}
	store.Fold(func(l ledger.Ledger) ledger.Ledger { return l.WalkFrom(day(0), 10) })
	heal, _ := store.Fold(func(l ledger.Ledger) ledger.Ledger { return l.Sent(day(1)).Answered(day(1), "minted", day(1)) })
	if heal.Walk == nil {
		t.Fatal("the heal's fold dropped the walk under way")
	}
	got, _ := store.Fold(func(l ledger.Ledger) ledger.Ledger {
		return l.Step("m", sweep.Report{Listed: 5, LookedUp: 5}, day(2))
	})
	if !got.Has("minted") || got.Walk == nil || got.Walk.Cursor != "m" {
		t.Fatalf("after both folds the ledger is %+v (walk %+v), want the heal's token and the walk's place", got.Tokens, got.Walk)
	}
}
