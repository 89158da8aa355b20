package failure

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
	"syscall"
	"testing"

	"github.com/devvm/vault-token-renew/failure/failuretest"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
	"github.com/devvm/vault-token-renew/tokenstore"
)

var respErr = failuretest.Answer

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		ask  Ask
		want Cause
	}{
		{"create 403 permission denied is a refusal", respErr(403, "permission denied"), AskMore, CauseRefused},
		{"create 400 orphan needs sudo is a refusal", respErr(400, "root or sudo privileges required to create orphan token"), AskMore, CauseRefused},
		{"create 400 policies not a subset is a refusal", respErr(400, "child policies must be subset of parent"), AskMore, CauseRefused},
		{"create 400 naming a bad token is still a refusal: the token was just accepted", respErr(400, "invalid token"), AskMore, CauseRefused},
		{"create 500 is a failure", respErr(500, "internal error"), AskMore, CauseServer},
		{"create 503 sealed is a failure", respErr(503, "Vault is sealed"), AskMore, CauseSealed},
		{"create 429 is a failure", respErr(429, "rate limited"), AskMore, CauseServer},
		{"lookup 403 means the token is dead", respErr(403, "permission denied"), AskToken, CauseTokenDenied},
		{"lookup 403 invalid token", respErr(403, "2 errors occurred:\n\t* permission denied\n\t* invalid token"), AskToken, CauseTokenDenied},
		{"lookup 400 bad token", respErr(400, "bad token"), AskToken, CauseTokenDenied},
		{"lookup 503 sealed", respErr(503, "Vault is sealed"), AskToken, CauseSealed},
		{"lookup 500", respErr(500), AskToken, CauseServer},
		{"connection refused", &url.Error{Op: "Get", URL: "http://127.0.0.1:1", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, AskToken, CauseUnreachable},
		{"wrapped connection refused", fmt.Errorf("lookup: %w", &url.Error{Op: "Get", URL: "x",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}), AskToken, CauseUnreachable},
		{"wrapped connection dropped (EOF)", fmt.Errorf("lookup: %w", &url.Error{Op: "Get", URL: "x", Err: io.EOF}), AskToken, CauseUnreachable},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), AskToken, CauseTimeout},
		{"deadline inside url error", &url.Error{Op: "Get", URL: "x", Err: context.DeadlineExceeded}, AskMore, CauseTimeout},
		{"unknown CA", &url.Error{Op: "Get", URL: "https://127.0.0.1:8200", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, AskToken, CauseTLS},
		{"hostname mismatch", &url.Error{Op: "Get", URL: "x", Err: x509.HostnameError{Host: "vault"}}, AskToken, CauseTLS},
		{"expired certificate", &url.Error{Op: "Get", URL: "x", Err: x509.CertificateInvalidError{Reason: x509.Expired}}, AskToken, CauseTLS},
		{"http answer to https", &url.Error{Op: "Get", URL: "x", Err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}}, AskToken, CauseTLS},
		{"the client's own timeout, as the adapter marks it", fmt.Errorf("lookup-self: %w: %w", ErrClientTimeout, &url.Error{Op: "Get", URL: "x", Err: context.DeadlineExceeded}), AskToken, CauseClientTimeout},
		{"the run's deadline", &url.Error{Op: "Get", URL: "x", Err: context.DeadlineExceeded}, AskToken, CauseTimeout},
		{"interrupted", fmt.Errorf("x: %w", context.Canceled), AskToken, CauseCanceled},
		{"interrupted inside a sweep walk", &sweep.IncompleteError{Err: context.Canceled}, AskToken, CauseCanceled},
		{"sweep stopped by its deadline or rate", &sweep.IncompleteError{Err: context.DeadlineExceeded}, AskToken, CauseIncomplete},
		{"permission denied", &fs.PathError{Op: "open", Path: "/h/.vault-token", Err: syscall.EACCES}, AskToken, CauseFilesystem},
		{"no space", fmt.Errorf("write: %w", &fs.PathError{Op: "write", Path: "/h/.vault-token.tmp-1", Err: syscall.ENOSPC}), AskToken, CauseFilesystem},
		{"read-only", &fs.PathError{Op: "open", Path: "/h/.vault-token.lock", Err: syscall.EROFS}, AskToken, CauseFilesystem},
		{"is a directory", &fs.PathError{Op: "read", Path: "/h/.vault-token", Err: syscall.EISDIR}, AskToken, CauseFilesystem},
		{"rename", &os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EXDEV}, AskToken, CauseFilesystem},
		{"no token file", fmt.Errorf("%w: /h/.vault-token", tokenfile.ErrMissing), AskToken, CauseNoToken},
		{"empty token file", fmt.Errorf("%w: /h/.vault-token", tokenfile.ErrEmpty), AskToken, CauseNoToken},
		{"lock held", fmt.Errorf("%w: /h/.vault-token.lock", tokenfile.ErrLockTimeout), AskToken, CauseLockHeld},
		{"capped", fmt.Errorf("%w: 12h", ErrCapped), AskToken, CauseCapped},
		{"mint rejected", fmt.Errorf("%w: x", ErrMintRejected), AskToken, CauseMintRejected},
		{"dial refused is not a filesystem error", &url.Error{Op: "Get", URL: "x", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, AskToken, CauseUnreachable},
		{"a token helper that failed", fmt.Errorf("write: %w", &tokenstore.HelperError{Path: "/h", Op: "store", Why: "exit 3"}), AskToken, CauseTokenHelper},
		{"a CLI config that names no usable helper", fmt.Errorf("%w: ~/.vault does not parse", tokenstore.ErrConfig), AskToken, CauseTokenHelper},
		{"something else", errors.New("odd"), AskToken, CauseUnknown},
		{"nil", nil, AskToken, CauseUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err, tc.ask); got != tc.want {
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

// TestUnanswered names the server that gave no answer, from the request
// the client made, and nothing when the error does not say.
func TestUnanswered(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("lookup: %w", &url.Error{Op: "Get", URL: "https://vault-2.example:8200/v1/auth/token/lookup-self", Err: syscall.ECONNREFUSED}), "https://vault-2.example:8200"},
		{&url.Error{Op: "Get", URL: "::bad", Err: syscall.ECONNREFUSED}, ""},
		{syscall.ECONNREFUSED, ""},
		{errors.New("no answer"), ""},
	} {
		if got := Unanswered(c.err); got != c.want {
			t.Errorf("Unanswered(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
