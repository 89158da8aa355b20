package renew

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

var spec = Spec{DisplayName: "devvm-wizard", Policies: []string{"vault-admin", "sops-admin"}, Period: 768 * time.Hour}

func TestIsOurs(t *testing.T) {
	for _, tc := range []struct {
		dn   string
		want bool
	}{
		{"token-devvm-wizard", true},
		{"oidc-wizard@example.org", false},
		{"devvm-wizard", false},
		{"token-devvm-wizard2", false},
		{"token-devvm", false},
		{"kubernetes-woodpecker-default", false},
		{"root", false},
		{"", false},
	} {
		t.Run(fmt.Sprintf("dn=%q", tc.dn), func(t *testing.T) {
			if got := IsOurs(TokenInfo{DisplayName: tc.dn}, spec); got != tc.want {
				t.Fatalf("IsOurs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestJudgeMinted(t *testing.T) {
	good := TokenInfo{DisplayName: "token-devvm-wizard", Period: 768 * time.Hour, Orphan: true, Policies: []string{"default", "sops-admin", "vault-admin"}}
	for _, tc := range []struct {
		name     string
		mutate   func(*TokenInfo)
		ok       bool
		problem  string
		warnings int
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
		{name: "period capped is a warning", mutate: func(i *TokenInfo) { i.Period = 24 * time.Hour }, ok: true, warnings: 1},
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
			if len(j.Warnings) != tc.warnings {
				t.Fatalf("warnings %v", j.Warnings)
			}
		})
	}
}

func respErr(code int, msgs ...string) error {
	return &vault.ResponseError{HTTPMethod: "POST", URL: "http://127.0.0.1/v1/x", StatusCode: code, Errors: msgs}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		onCreate bool
		want     Cause
	}{
		{"create 403 permission denied is a refusal", respErr(403, "permission denied"), true, CauseRefused},
		{"create 400 orphan needs sudo is a refusal", respErr(400, "root or sudo privileges required to create orphan token"), true, CauseRefused},
		{"create 400 policies not a subset is a refusal", respErr(400, "child policies must be subset of parent"), true, CauseRefused},
		{"create 500 is a failure", respErr(500, "internal error"), true, CauseServer},
		{"create 503 sealed is a failure", respErr(503, "Vault is sealed"), true, CauseSealed},
		{"create 429 is a failure", respErr(429, "rate limited"), true, CauseServer},
		{"lookup 403 means the token is dead", respErr(403, "permission denied"), false, CauseTokenDenied},
		{"lookup 403 invalid token", respErr(403, "2 errors occurred:\n\t* permission denied\n\t* invalid token"), false, CauseTokenDenied},
		{"lookup 400 bad token", respErr(400, "bad token"), false, CauseTokenDenied},
		{"lookup 503 sealed", respErr(503, "Vault is sealed"), false, CauseSealed},
		{"lookup 500", respErr(500), false, CauseServer},
		{"connection refused", &url.Error{Op: "Get", URL: "http://127.0.0.1:1", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, false, CauseUnreachable},
		{"wrapped connection refused", fmt.Errorf("lookup: %w", &url.Error{Op: "Get", URL: "x", Err: errors.New("eof")}), false, CauseUnreachable},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false, CauseTimeout},
		{"deadline inside url error", &url.Error{Op: "Get", URL: "x", Err: context.DeadlineExceeded}, true, CauseTimeout},
		{"something else", errors.New("odd"), false, CauseUnknown},
		{"nil", nil, false, CauseUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err, tc.onCreate); got != tc.want {
				t.Fatalf("Classify = %v, want %v", got, tc.want)
			}
		})
	}
}
