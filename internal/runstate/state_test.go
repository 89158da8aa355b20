package runstate

import (
	"reflect"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/renew"
)

var (
	t0  = time.Date(2026, 6, 18, 6, 0, 0, 0, time.UTC)
	day = func(n int) time.Time { return t0.Add(time.Duration(n) * 24 * time.Hour) }
	exp = time.Date(2026, 7, 20, 0, 0, 0, 0, time.UTC)
)

func TestNext(t *testing.T) {
	okState := State{Time: day(0), Outcome: renew.OK, Summary: "OK: renewed", Accessor: "acc1",
		TokenExpiry: exp, LastSuccess: day(0), HealsTotal: 2, Host: "vm1"}
	failing := State{Time: day(1), Outcome: renew.Drift, Cause: "heal_denied", Summary: "DRIFT: x", Accessor: "acc1",
		TokenExpiry: exp, LastSuccess: day(0), FailingSince: day(1), FailingRuns: 1, HealsTotal: 2, Host: "vm1"}
	tests := []struct {
		name string
		prev State
		run  Run
		want State
	}{
		{"first run ok", State{},
			Run{Time: day(0), Outcome: renew.OK, Summary: "OK: renewed", Accessor: "acc1", TokenExpiry: exp, Host: "vm1"},
			State{Time: day(0), Outcome: renew.OK, Summary: "OK: renewed", Accessor: "acc1", TokenExpiry: exp, LastSuccess: day(0), Host: "vm1"}},
		{"first run fails: a streak of one, never a success", State{},
			Run{Time: day(0), Outcome: renew.Fail, Cause: "unreachable", Summary: "FAIL: vault unreachable", Host: "vm1"},
			State{Time: day(0), Outcome: renew.Fail, Cause: "unreachable", Summary: "FAIL: vault unreachable",
				FailingSince: day(0), FailingRuns: 1, Host: "vm1"}},
		{"ok then ok moves last success, keeps heals", okState,
			Run{Time: day(1), Outcome: renew.OK, Summary: "OK: renewed", Accessor: "acc1", TokenExpiry: exp.Add(time.Hour), Host: "vm1"},
			State{Time: day(1), Outcome: renew.OK, Summary: "OK: renewed", Accessor: "acc1", TokenExpiry: exp.Add(time.Hour),
				LastSuccess: day(1), HealsTotal: 2, Host: "vm1"}},
		{"healed counts a heal and takes the new accessor", okState,
			Run{Time: day(1), Outcome: renew.Healed, Summary: "HEALED: re-minted", Accessor: "acc2", TokenExpiry: exp, Host: "vm1"},
			State{Time: day(1), Outcome: renew.Healed, Summary: "HEALED: re-minted", Accessor: "acc2", TokenExpiry: exp,
				LastSuccess: day(1), HealsTotal: 3, Host: "vm1"}},
		{"ok then drift starts a streak, keeps last known accessor and expiry", okState,
			Run{Time: day(1), Outcome: renew.Drift, Cause: "heal_denied", Summary: "DRIFT: x", Host: "vm1"},
			failing},
		{"drift then fail extends the streak from its first run", failing,
			Run{Time: day(2), Outcome: renew.Fail, Cause: "unreachable", Summary: "FAIL: y", Host: "vm1"},
			State{Time: day(2), Outcome: renew.Fail, Cause: "unreachable", Summary: "FAIL: y", Accessor: "acc1",
				TokenExpiry: exp, LastSuccess: day(0), FailingSince: day(1), FailingRuns: 2, HealsTotal: 2, Host: "vm1"}},
		{"a failing run that learned the expiry records it", failing,
			Run{Time: day(2), Outcome: renew.Fail, Summary: "FAIL: renew", Accessor: "acc9", TokenExpiry: exp.Add(-time.Hour)},
			State{Time: day(2), Outcome: renew.Fail, Summary: "FAIL: renew", Accessor: "acc9",
				TokenExpiry: exp.Add(-time.Hour), LastSuccess: day(0), FailingSince: day(1), FailingRuns: 2, HealsTotal: 2, Host: "vm1"}},
		{"healed after a streak resets it and counts the heal", failing,
			Run{Time: day(3), Outcome: renew.Healed, Summary: "HEALED: z", Accessor: "acc3", TokenExpiry: exp, Host: "vm1"},
			State{Time: day(3), Outcome: renew.Healed, Summary: "HEALED: z", Accessor: "acc3", TokenExpiry: exp,
				LastSuccess: day(3), HealsTotal: 3, Host: "vm1"}},
		{"ok after a streak clears cause, since and runs", failing,
			Run{Time: day(3), Outcome: renew.OK, Summary: "OK: renewed", Accessor: "acc1", TokenExpiry: exp, Host: "vm1"},
			State{Time: day(3), Outcome: renew.OK, Summary: "OK: renewed", Accessor: "acc1", TokenExpiry: exp,
				LastSuccess: day(3), HealsTotal: 2, Host: "vm1"}},
		{"a streak count with no start time restarts the streak",
			State{Time: day(1), Outcome: renew.Fail, FailingRuns: 4},
			Run{Time: day(2), Outcome: renew.Fail},
			State{Time: day(2), Outcome: renew.Fail, FailingSince: day(2), FailingRuns: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Next(tt.prev, tt.run); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Next:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestOutcomeSuccess(t *testing.T) {
	for o, want := range map[renew.Kind]bool{renew.OK: true, renew.Healed: true, renew.Drift: false, renew.Fail: false, "": false} {
		if o.Success() != want {
			t.Errorf("%q.Success() = %v", o, !want)
		}
	}
}

func TestDefaultPath(t *testing.T) {
	tests := []struct {
		name, xdg, home, want string
	}{
		{"xdg wins", "/x/state", "/home/u", "/x/state/vault-token-renew/state.json"},
		{"home fallback", "", "/home/u", "/home/u/.local/state/vault-token-renew/state.json"},
		{"relative xdg is ignored", "rel/state", "/home/u", "/home/u/.local/state/vault-token-renew/state.json"},
		{"neither", "", "", ""},
		{"relative home", "", "home", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefaultPath(func(k string) string {
				return map[string]string{"XDG_STATE_HOME": tt.xdg, "HOME": tt.home}[k]
			})
			if got != tt.want || (err != nil) != (tt.want == "") {
				t.Fatalf("DefaultPath = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
