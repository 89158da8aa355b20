package decide

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/ledger"
)

// planLedger holds two stale tokens and the file's own, and is whole.
var planLedger = ledger.Ledger{WholeSince: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}.
	Found("ours", time.Unix(1, 0)).Found("old1", time.Unix(2, 0)).Found("old2", time.Unix(3, 0))

func ours() TokenInfo {
	return TokenInfo{Accessor: "ours", DisplayName: spec.StoredDisplayName(), Period: spec.Period, Type: "service"}
}

func foreign(mut func(*TokenInfo)) TokenInfo {
	t := TokenInfo{Accessor: "login", DisplayName: "oidc-wizard", Type: "service"}
	if mut != nil {
		mut(&t)
	}
	return t
}

func TestDecide(t *testing.T) {
	lookupErr := errors.New("connection refused")
	for _, tc := range []struct {
		name    string
		found   Found
		want    Action
		reason  string
		retire  []string
		keep    []string
		record  bool
		gap     ledger.Gap
		cause   failure.Cause
		blocker bool
	}{
		{name: "our token is renewed, the ledger's others retired", found: Found{Token: ours(), Ledger: planLedger},
			want: Renew, reason: "ours: the periodic token this tool renews", retire: []string{"old1", "old2"}, keep: []string{"ours"}},
		{name: "a manual re-mint enters the ledger", found: Found{Token: func() TokenInfo { t := ours(); t.Accessor = "manual"; return t }(), Ledger: planLedger},
			want: Renew, reason: "ours", retire: []string{"ours", "old1", "old2"}, keep: []string{"manual"}, record: true},
		{name: "a login token heals, and the login is kept", found: Found{Token: foreign(nil), Ledger: planLedger},
			want: Heal, reason: "foreign: not token-devvm-wizard", retire: []string{"ours", "old1", "old2"}, keep: []string{"login"}},
		{name: "our name without a period is healed", found: Found{Token: foreign(func(t *TokenInfo) { t.DisplayName = spec.StoredDisplayName() })},
			want: Heal, reason: "token-devvm-wizard but not periodic", retire: []string{}, keep: []string{"login"}, gap: ledger.NeverWhole},
		{name: "a batch token can never mint", found: Found{Token: foreign(func(t *TokenInfo) { t.Type = "batch" })},
			want: Refuse, reason: "batch tokens cannot create tokens", cause: failure.CauseRefused, gap: ledger.NeverWhole, blocker: true},
		{name: "a use-limited token can never mint", found: Found{Token: foreign(func(t *TokenInfo) { t.NumUses = 3 })},
			want: Refuse, reason: "use-limited", cause: failure.CauseRefused, gap: ledger.NeverWhole, blocker: true},
		{name: "a dry run vault told no is refused", found: Found{Token: foreign(nil), Capability: MayNotMint, Ledger: planLedger},
			want: Refuse, reason: "foreign token lacks create authority", cause: failure.CauseRefused},
		{name: "a dry run vault told yes heals", found: Found{Token: foreign(nil), Capability: MayMint, Ledger: planLedger},
			want: Heal, reason: "foreign", retire: []string{"ours", "old1", "old2"}, keep: []string{"login"}},
		{name: "a token that could not be looked up fails", found: Found{Err: lookupErr, Stage: failure.StageLookup, Cause: failure.CauseUnreachable, Ledger: planLedger},
			want: Fail, reason: "could not look up the token in the file", cause: failure.CauseUnreachable},
		{name: "a gap asks for the walk", found: Found{Token: ours(), Ledger: planLedger.Sent(time.Unix(9, 0))},
			want: Renew, reason: "ours", retire: []string{"old1", "old2"}, keep: []string{"ours"}, gap: ledger.Unrecorded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.found.Spec = spec
			p := Decide(tc.found)
			if p.Action != tc.want || !strings.Contains(p.Reason, tc.reason) || p.Cause != tc.cause || p.Record != tc.record {
				t.Fatalf("plan %+v, want %v (%q), cause %v, record %v", p, tc.want, tc.reason, tc.cause, tc.record)
			}
			if !slices.Equal(p.Retire, tc.retire) || !slices.Equal(p.Keep, tc.keep) {
				t.Fatalf("retire %v keep %v, want %v and %v", p.Retire, p.Keep, tc.retire, tc.keep)
			}
			if p.Gap != tc.gap || p.Walk != (tc.gap != ledger.NoGap) || (p.Blocker != "") != tc.blocker {
				t.Fatalf("gap %v walk %v blocker %q, want gap %v", p.Gap, p.Walk, p.Blocker, tc.gap)
			}
			if p.Action == Heal && !slices.Equal(p.NotOurs, []string{"login"}) {
				t.Fatalf("a heal's login token may enter the ledger: %v", p.NotOurs)
			}
		})
	}
}
