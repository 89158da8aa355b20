package runstate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/vault-token-renew/renew"
)

func TestBanner(t *testing.T) {
	now := day(10)
	drift := "DRIFT: foreign token dn=oidc-alice in the token file; heal denied — foreign token lacks create authority; investigate what wrote it"
	_, corrupt := Load(writeFile(t, "state.json", "{"))
	tests := []struct {
		name string
		s    State
		err  error
		want string
	}{
		{"ok today: silent", State{Time: day(10), Outcome: renew.OK, LastSuccess: day(10)}, nil, ""},
		{"healed yesterday: silent", State{Time: day(9), Outcome: renew.Healed, LastSuccess: day(9)}, nil, ""},
		{"ok exactly 48h ago: silent", State{Time: now.Add(-StaleAfter), Outcome: renew.OK, LastSuccess: now.Add(-StaleAfter)}, nil, ""},
		{"ok but stale: is the timer running",
			State{Time: day(7), Outcome: renew.OK, LastSuccess: day(7)}, nil,
			"vault-token-renew: no successful run since 2026-06-25; is the timer running? run: systemctl --user list-timers vault-token-renew.timer"},
		{"drift streak",
			State{Time: day(10), Outcome: renew.Drift, Summary: drift, Reason: "heal denied — foreign token lacks create authority", FailingSince: day(8), FailingRuns: 3, LastSuccess: day(7)}, nil,
			"vault-token-renew: DRIFT since 2026-06-26 (3 runs): heal denied — foreign token lacks create authority; run: vault-token-renew status"},
		{"one fail, today",
			State{Time: day(10), Outcome: renew.Fail, Summary: "FAIL: could not look up the token in the file", Reason: "vault unreachable at https://v:8200", FailingSince: day(10), FailingRuns: 1}, nil,
			"vault-token-renew: FAIL since 2026-06-28 (1 run): vault unreachable at https://v:8200; run: vault-token-renew status"},
		{"failing and stale: says when the last run was",
			State{Time: day(5), Outcome: renew.Fail, Summary: "FAIL: could not renew the periodic token", Reason: "sealed", FailingSince: day(4), FailingRuns: 2}, nil,
			"vault-token-renew: FAIL since 2026-06-22 (2 runs, the last on 2026-06-23): sealed; run: vault-token-renew status"},
		{"failing without a reason (an older run's state): the cause, never the summary's words",
			State{Time: day(10), Outcome: renew.Fail, Summary: "FAIL: could not renew the periodic token", Cause: "token_expired", FailingSince: day(10), FailingRuns: 1}, nil,
			"vault-token-renew: FAIL since 2026-06-28 (1 run): token_expired; run: vault-token-renew status"},
		{"never ran", State{}, fmt.Errorf("%w: open x: no such file", ErrNoState),
			"vault-token-renew: has never run; run: systemctl --user start vault-token-renew.service"},
		{"corrupt", State{}, corrupt,
			"vault-token-renew: " + corrupt.Error() + "; the next run replaces it; run: vault-token-renew status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Banner(tt.s, tt.err, now)
			if got != tt.want {
				t.Fatalf("Banner:\n got %q\nwant %q", got, tt.want)
			}
			if strings.ContainsAny(got, "\n\r") {
				t.Fatalf("banner is not one line: %q", got)
			}
		})
	}
}

func TestBannerCorruptNamesThePath(t *testing.T) {
	p := writeFile(t, "state.json", "not json")
	_, err := Load(p)
	if b := Banner(State{}, err, day(0)); !strings.Contains(b, p) || !strings.Contains(b, "unreadable") {
		t.Fatalf("banner %q", b)
	}
}

func TestReason(t *testing.T) {
	long := strings.Repeat("word ", 40)
	tests := []struct{ summary, reason, cause, want string }{
		{"FAIL: could not look up the token in the file", "could not look up the token in the file", "unreachable", "could not look up the token in the file"},
		{"", "two\nlines", "", "two lines"},
		{"FAIL: the summary is never parsed for a reason", "", "unreachable", "unreachable"},
		{"", "", "", "no details recorded"},
		{"", long, "", strings.TrimSpace(strings.Repeat("word ", 20)) + "…"},
	}
	for _, tt := range tests {
		if got := reason(State{Summary: tt.summary, Reason: tt.reason, Cause: tt.cause}); got != tt.want {
			t.Errorf("reason(%q) = %q, want %q", tt.reason, got, tt.want)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
