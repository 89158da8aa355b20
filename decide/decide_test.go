package decide

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var spec = Spec{DisplayName: "devvm-wizard", Policies: []string{"vault-admin", "sops-admin"}, Period: 768 * time.Hour, Host: "devvm-a", User: "wizard"}

func TestIsOurs(t *testing.T) {
	const p = 768 * time.Hour
	for _, tc := range []struct {
		dn     string
		period time.Duration
		want   bool
	}{
		{"token-devvm-wizard", p, true},
		{"token-devvm-wizard", time.Hour, true},
		{"token-devvm-wizard", 0, false}, // our name but not periodic: foreign, healed
		{"oidc-wizard@example.org", p, false},
		{"devvm-wizard", p, false},
		{"token-devvm-wizard2", p, false},
		{"token-devvm", p, false},
		{"kubernetes-woodpecker-default", 0, false},
		{"root", 0, false},
		{"", p, false},
	} {
		t.Run(fmt.Sprintf("dn=%q period=%s", tc.dn, tc.period), func(t *testing.T) {
			if got := IsOurs(TokenInfo{DisplayName: tc.dn, Period: tc.period}, spec); got != tc.want {
				t.Fatalf("IsOurs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCannotMint(t *testing.T) {
	for _, tc := range []struct {
		name string
		info TokenInfo
		want string
	}{
		{"service token: vault decides", TokenInfo{Type: "service"}, ""},
		{"untyped: vault decides", TokenInfo{}, ""},
		{"batch", TokenInfo{Type: "batch"}, "a batch token cannot heal"},
		{"use-limited", TokenInfo{Type: "service", NumUses: 3}, "a use-limited token cannot heal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CannotMint(tc.info)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("CannotMint = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestJudgeTTL(t *testing.T) {
	const p = 768 * time.Hour
	created := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	now := created.Add(time.Minute)
	for _, tc := range []struct {
		name          string
		info          TokenInfo
		ttl           time.Duration
		capped, fatal bool
		explicit      bool
		dies          string
	}{
		{"full period", TokenInfo{Period: p}, p, false, false, false, ""},
		{"seconds short of the period is not a cap", TokenInfo{Period: p}, p - 5*time.Second, false, false, false, ""},
		{"mount max 48h: warning", TokenInfo{Period: p}, 48 * time.Hour, true, false, false, ""},
		{"exactly 25h: warning", TokenInfo{Period: p}, 25 * time.Hour, true, false, false, ""},
		{"just under 25h: fatal", TokenInfo{Period: p}, 25*time.Hour - time.Second, true, true, false, ""},
		{"12h: fatal", TokenInfo{Period: p}, 12 * time.Hour, true, true, false, ""},
		{"explicit max: the day it dies", TokenInfo{Period: p, ExplicitMaxTTL: 72 * time.Hour, CreationTime: created}, 72*time.Hour - time.Minute, true, false,
			true, "2026-12-03T00:00:00Z"},
		{"explicit max set, but a 48h mount cap binds", TokenInfo{Period: p, ExplicitMaxTTL: 8760 * time.Hour, CreationTime: created}, 48 * time.Hour, true, false,
			false, ""},
		{"not periodic: not judged", TokenInfo{}, time.Hour, false, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := JudgeTTL(tc.info, tc.ttl, now)
			if v.Capped != tc.capped || v.Fatal != tc.fatal {
				t.Fatalf("capped %v fatal %v, want %v %v", v.Capped, v.Fatal, tc.capped, tc.fatal)
			}
			if v.Explicit != tc.explicit || (tc.dies != "" && v.Dies.Format(time.RFC3339) != tc.dies) {
				t.Fatalf("explicit %v dies %s; want %v %s", v.Explicit, v.Dies, tc.explicit, tc.dies)
			}
			if v.Capped && (v.TTL != tc.ttl.Round(time.Second) || v.Period != p) {
				t.Fatalf("ttl %s period %s", v.TTL, v.Period)
			}
		})
	}
}

func TestJudgeMinted(t *testing.T) {
	good := TokenInfo{DisplayName: "token-devvm-wizard", Period: 768 * time.Hour, Orphan: true, Policies: []string{"default", "sops-admin", "vault-admin"}, Meta: spec.Meta()}
	for _, tc := range []struct {
		name    string
		mutate  func(*TokenInfo)
		ok      bool
		problem string
	}{
		{name: "as asked", mutate: func(*TokenInfo) {}, ok: true},
		{name: "wrong display name", mutate: func(i *TokenInfo) { i.DisplayName = "token-other" }, problem: "display name"},
		{name: "not periodic", mutate: func(i *TokenInfo) { i.Period = 0 }, problem: "not periodic"},
		{name: "has a parent", mutate: func(i *TokenInfo) { i.Orphan = false }, problem: "orphan"},
		{name: "policy missing", mutate: func(i *TokenInfo) { i.Policies = []string{"default", "vault-admin"} }, problem: `"sops-admin" missing`},
		{name: "policy only via identity is not enough", mutate: func(i *TokenInfo) {
			i.Policies = []string{"default"}
			i.IdentityPolicies = []string{"vault-admin", "sops-admin"}
		}, problem: "missing"},
		{name: "untagged: every other machine would sweep it", mutate: func(i *TokenInfo) { i.Meta = nil }, problem: "meta host"},
		{name: "tagged for another host", mutate: func(i *TokenInfo) {
			i.Meta = map[string]string{MetaManagedBy: ManagedBy, MetaHost: "devvm-b", MetaUser: "wizard"}
		}, problem: `meta host is "devvm-b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := good
			info.Policies = append([]string(nil), good.Policies...)
			tc.mutate(&info)
			j := JudgeMinted(info, spec)
			if j.OK() != tc.ok {
				t.Fatalf("OK = %v, problems %v", j.OK(), j.Problems)
			}
			if tc.problem != "" && !strings.Contains(strings.Join(j.Problems, ";"), tc.problem) {
				t.Fatalf("problems %v, want one mentioning %q", j.Problems, tc.problem)
			}
		})
	}
}

// statusErr is what the Vault adapter's errors are to this package: a
// failure.StatusError (vaultclient asserts that its APIError is one).
