package runstate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/renew"
)

// TestRunOf: a run tells the state its outcome and cause as data, and our
// token's accessor and expiry only where it learned them.
func TestRunOf(t *testing.T) {
	now := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	renewed := renew.Outcome{Kind: renew.OK, Plan: decide.Plan{Action: decide.Renew}, Current: decide.TokenInfo{Accessor: "ours"}, TTL: time.Hour}
	healed := renew.Outcome{Kind: renew.Healed, Plan: decide.Plan{Action: decide.Heal}, Current: decide.TokenInfo{Accessor: "login"},
		Minted: renew.Minted{TokenInfo: decide.TokenInfo{Accessor: "new"}}, TTL: 2 * time.Hour}
	failed := renew.Outcome{Kind: renew.Fail, Plan: decide.Plan{Action: decide.Fail}, Cause: failure.CauseUnreachable}
	drift := renew.Outcome{Kind: renew.Drift, Plan: decide.Plan{Action: decide.Heal}, Cause: failure.CauseRefused, Current: decide.TokenInfo{Accessor: "k8s"}}
	for _, tc := range []struct {
		name     string
		o        renew.Outcome
		accessor string
		expiry   time.Duration
		cause    string
	}{
		{"renewed: ours, its TTL", renewed, "ours", time.Hour, ""},
		{"healed: the minted token, not the login", healed, "new", 2 * time.Hour, ""},
		{"failed: nothing learned, the cause kept", failed, "", 0, "unreachable"},
		{"drift: the foreign token is not ours to remember", drift, "", 0, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := RunOf(tc.o, "SUMMARY", "reason", "devvm-a", now)
			if r.Outcome != tc.o.Kind || r.Accessor != tc.accessor || r.Cause != tc.cause || r.Host != "devvm-a" || r.Summary != "SUMMARY" {
				t.Fatalf("run %+v", r)
			}
			if want := now.Add(tc.expiry); (tc.expiry == 0) != r.TokenExpiry.IsZero() || (tc.expiry > 0 && !r.TokenExpiry.Equal(want)) {
				t.Fatalf("expiry %v, want %v", r.TokenExpiry, want)
			}
		})
	}
}

// TestRecordFoldsAndWritesMetrics: the run lands in the state and the
// metrics; a metrics file that cannot be written is its own error, and
// the state is recorded all the same.
func TestRecordFoldsAndWritesMetrics(t *testing.T) {
	dir := t.TempDir()
	path, metrics := filepath.Join(dir, "state.json"), filepath.Join(dir, "m.prom")
	run := Run{Time: time.Now(), Outcome: renew.Healed, Summary: "HEALED: x", Host: "devvm-a"}
	if serr, merr := Record(path, metrics, run); serr != nil || merr != nil {
		t.Fatal(serr, merr)
	}
	st, err := Load(path)
	if err != nil || st.Outcome != renew.Healed || st.HealsTotal != 1 {
		t.Fatalf("state %+v, %v", st, err)
	}
	if b, err := os.ReadFile(metrics); err != nil || !strings.Contains(string(b), `vault_token_renew_outcome{outcome="healed"} 1`) {
		t.Fatalf("metrics %v:\n%s", err, b)
	}
	serr, merr := Record(path, filepath.Join(dir, "no", "such", "dir", "m.prom"), run)
	if serr != nil || merr == nil {
		t.Fatalf("state err %v, metrics err %v: want only the metrics to fail", serr, merr)
	}
	if st, _ := Load(path); st.HealsTotal != 2 {
		t.Fatalf("the second run was not recorded: %+v", st)
	}
}

// TestForNotify: the notifier tells what failed, not the last run when
// that says nothing of it.
func TestForNotify(t *testing.T) {
	ok := State{Time: time.Now(), Outcome: renew.OK, Summary: "OK: renewed periodic token"}
	drift := State{Time: time.Now(), Outcome: renew.Drift, Summary: "DRIFT: x"}
	walkFailed := ok
	walkFailed.LastWalk = &WalkEnd{Summary: "sweep: revoked 0 …; some lookups failed", Failed: true}
	for _, tc := range []struct {
		name, unit string
		st         State
		loadErr    error
		m          Monitor
		cause      string
		summary    string
	}{
		{"a recorded DRIFT is told as it is", "vault-token-renew", drift, nil, Monitor{Result: "exit-code"}, "", "DRIFT: x"},
		{"a killed run recorded nothing: not the last success", "vault-token-renew", ok, nil, Monitor{Result: "signal", ExitCode: "killed", ExitStatus: "KILL"}, "unrecorded", "without recording a run"},
		{"an unreadable state", "vault-token-renew", State{}, errors.New("corrupt"), Monitor{}, "", "its run state is unreadable (corrupt)"},
		{"the walk's own ending", "vault-token-renew-sweep.service", walkFailed, nil, Monitor{Result: "exit-code"}, "walk-failed", "some lookups failed"},
		{"a walk killed before it said how it ended", "vault-token-renew-sweep.service", ok, nil, Monitor{Result: "oom-kill"}, "walk-failed", "without recording how the walk ended"},
		{"the path unit gave up watching", "vault-token-renew.path", ok, nil, Monitor{}, "path-unit-failed", "stopped watching the token file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ForNotify(tc.st, tc.loadErr, tc.unit, tc.m)
			if got.Cause != tc.cause || !strings.Contains(got.Summary, tc.summary) {
				t.Fatalf("cause %q summary %q, want %q and %q", got.Cause, got.Summary, tc.cause, tc.summary)
			}
			if tc.cause != "" && got.Outcome != renew.Fail {
				t.Fatalf("outcome %q, want fail", got.Outcome)
			}
		})
	}
}
