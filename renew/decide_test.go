package renew

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
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
// StatusError (vaultclient asserts that its APIError is one).
type statusErr struct {
	code int
	msgs []string
}

func (e *statusErr) Error() string {
	return fmt.Sprintf("vault answered %d: %s", e.code, strings.Join(e.msgs, "; "))
}
func (e *statusErr) HTTPStatus() int    { return e.code }
func (e *statusErr) Messages() []string { return e.msgs }

func respErr(code int, msgs ...string) error { return &statusErr{code: code, msgs: msgs} }

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		asked bool
		want  Cause
	}{
		{"create 403 permission denied is a refusal", respErr(403, "permission denied"), true, CauseRefused},
		{"create 400 orphan needs sudo is a refusal", respErr(400, "root or sudo privileges required to create orphan token"), true, CauseRefused},
		{"create 400 policies not a subset is a refusal", respErr(400, "child policies must be subset of parent"), true, CauseRefused},
		{"create 400 naming a bad token is still a refusal: the token was just accepted", respErr(400, "invalid token"), true, CauseRefused},
		{"create 500 is a failure", respErr(500, "internal error"), true, CauseServer},
		{"create 503 sealed is a failure", respErr(503, "Vault is sealed"), true, CauseSealed},
		{"create 429 is a failure", respErr(429, "rate limited"), true, CauseServer},
		{"lookup 403 means the token is dead", respErr(403, "permission denied"), false, CauseTokenDenied},
		{"lookup 403 invalid token", respErr(403, "2 errors occurred:\n\t* permission denied\n\t* invalid token"), false, CauseTokenDenied},
		{"lookup 400 bad token", respErr(400, "bad token"), false, CauseTokenDenied},
		{"lookup 503 sealed", respErr(503, "Vault is sealed"), false, CauseSealed},
		{"lookup 500", respErr(500), false, CauseServer},
		{"connection refused", &url.Error{Op: "Get", URL: "http://127.0.0.1:1", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, false, CauseUnreachable},
		{"wrapped connection refused", fmt.Errorf("lookup: %w", &url.Error{Op: "Get", URL: "x",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}), false, CauseUnreachable},
		{"wrapped connection dropped (EOF)", fmt.Errorf("lookup: %w", &url.Error{Op: "Get", URL: "x", Err: io.EOF}), false, CauseUnreachable},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false, CauseTimeout},
		{"deadline inside url error", &url.Error{Op: "Get", URL: "x", Err: context.DeadlineExceeded}, true, CauseTimeout},
		{"unknown CA", &url.Error{Op: "Get", URL: "https://127.0.0.1:8200", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, false, CauseTLS},
		{"hostname mismatch", &url.Error{Op: "Get", URL: "x", Err: x509.HostnameError{Host: "vault"}}, false, CauseTLS},
		{"expired certificate", &url.Error{Op: "Get", URL: "x", Err: x509.CertificateInvalidError{Reason: x509.Expired}}, false, CauseTLS},
		{"http answer to https", &url.Error{Op: "Get", URL: "x", Err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}}, false, CauseTLS},
		{"the client's own timeout", &url.Error{Op: "Get", URL: "x", Err: errors.New("net/http: request canceled (Client.Timeout exceeded while awaiting headers)")}, false, CauseClientTimeout},
		{"interrupted", fmt.Errorf("x: %w", context.Canceled), false, CauseCanceled},
		{"interrupted inside a sweep walk", &sweep.IncompleteError{Err: context.Canceled}, false, CauseCanceled},
		{"sweep stopped by its deadline or rate", &sweep.IncompleteError{Err: context.DeadlineExceeded}, false, CauseIncomplete},
		{"permission denied", &fs.PathError{Op: "open", Path: "/h/.vault-token", Err: syscall.EACCES}, false, CauseFilesystem},
		{"no space", fmt.Errorf("write: %w", &fs.PathError{Op: "write", Path: "/h/.vault-token.tmp-1", Err: syscall.ENOSPC}), false, CauseFilesystem},
		{"read-only", &fs.PathError{Op: "open", Path: "/h/.vault-token.lock", Err: syscall.EROFS}, false, CauseFilesystem},
		{"is a directory", &fs.PathError{Op: "read", Path: "/h/.vault-token", Err: syscall.EISDIR}, false, CauseFilesystem},
		{"rename", &os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EXDEV}, false, CauseFilesystem},
		{"no token file", fmt.Errorf("%w: /h/.vault-token", tokenfile.ErrMissing), false, CauseNoToken},
		{"empty token file", fmt.Errorf("%w: /h/.vault-token", tokenfile.ErrEmpty), false, CauseNoToken},
		{"lock held", fmt.Errorf("%w: /h/.vault-token.lock", tokenfile.ErrLockTimeout), false, CauseLockHeld},
		{"capped", fmt.Errorf("%w: 12h", ErrCapped), false, CauseCapped},
		{"mint rejected", fmt.Errorf("%w: x", ErrMintRejected), false, CauseMintRejected},
		{"dial refused is not a filesystem error", &url.Error{Op: "Get", URL: "x", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, false, CauseUnreachable},
		{"something else", errors.New("odd"), false, CauseUnknown},
		{"nil", nil, false, CauseUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err, tc.asked); got != tc.want {
				t.Fatalf("Classify = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestEveryStageAndCauseIsNamed: the stage and cause sets are closed, so a
// new one without words or a stable name fails here.
func TestEveryStageAndCauseIsNamed(t *testing.T) {
	words, names := map[string]Stage{}, map[string]bool{}
	for _, s := range Stages() {
		if w := s.Words(); w == "" || w == "run failed" {
			t.Errorf("stage %d has no words", s)
		} else if prev, dup := words[w]; dup {
			t.Errorf("stages %v and %v share the words %q", prev, s, w)
		} else {
			words[w] = s
		}
		if n := s.String(); n == "" || n == "unknown" || names[n] {
			t.Errorf("stage %d has no unique name (%q)", s, n)
		} else {
			names[n] = true
		}
	}
	causes := map[string]bool{}
	for _, c := range Causes() {
		if n := c.String(); causes[n] || (n == "unknown" && c != CauseUnknown) {
			t.Errorf("cause %d has no unique name (%q)", c, n)
		} else {
			causes[n] = true
		}
	}
}
