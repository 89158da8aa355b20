// Package failure sorts what went wrong in a run into a stage (the step it
// happened in) and a cause (what the operator should do about it): the one
// place that reads Vault's status codes, TLS and network errors, and local
// file errors. Both are closed sets with stable names, the stage= and
// cause= fields alerts match on.
package failure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
	"github.com/devvm/vault-token-renew/tokenstore"
)

// Stage is the step of a run (or of status and sweep) a failure happened
// in. It is a closed set: every stage has words (Words), and the report's
// hints are chosen by stage and cause, so a new stage cannot go unnamed.
type Stage int

const (
	StageNone         Stage = iota
	StageLock               // taking the run lock beside the token file
	StageRead               // reading the token file
	StageLookup             // lookup-self of the token in the file
	StageRenew              // renew-self of our periodic token
	StageCreate             // the heal's token create, as the foreign token
	StageCheck              // looking up and judging the minted token
	StageCap                // Vault capped the token's TTL below a daily timer's reach
	StageWrite              // writing the token file
	StageCapabilities       // a dry run asking what the foreign token may do
	StageSweep              // listing, looking up or revoking accessors
	StageForeign            // sweep --apply refused: the file holds a foreign token
	StageSettings           // building the client from the VAULT_*/BAO_* settings
	StageEnvFile            // checking that the env file may be trusted
	StageStore              // finding where the CLI keeps the token (its config file's token_helper), and that no other profile keeps its own there
	stageCount
)

// Stages lists every stage, for tests that must cover them all.
func Stages() []Stage {
	out := make([]Stage, 0, stageCount-1)
	for s := StageNone + 1; s < stageCount; s++ {
		out = append(out, s)
	}
	return out
}

var stageNames = [stageCount]string{"", "lock", "read", "lookup", "renew", "create", "check", "cap", "write", "capabilities", "sweep", "foreign", "settings", "env-file", "store"}

var stageWords = [stageCount]string{
	"",
	"could not take the run lock",
	"could not read the token file",
	"could not look up the token in the file",
	"could not renew the periodic token",
	"could not mint a periodic token",
	"the minted token did not pass its check; the token file is unchanged",
	"vault caps the token's TTL below what a daily timer can outrun",
	"could not write the token file; the old file is unchanged",
	"could not ask vault what the foreign token may do",
	"the stale-token sweep did not finish",
	"sweep --apply refused: the token file holds a foreign token",
	"could not build the client from the VAULT_*/BAO_* settings",
	"the env file is not safe to trust; nothing was done",
	"could not use the token store",
}

// String is the stage's stable name, the stage= field of a FAIL line.
func (s Stage) String() string {
	if s < 0 || s >= stageCount {
		return "unknown"
	}
	return stageNames[s]
}

// Words is what the FAIL line says happened at this stage.
func (s Stage) Words() string {
	if s <= StageNone || s >= stageCount {
		return "run failed"
	}
	return stageWords[s]
}

// Cause sorts a failure into what the operator should do about it; its
// String is the closing line's cause= field, which alerts match on.
type Cause int

const (
	CauseUnknown       Cause = iota
	CauseRefused             // Vault understood and said no (400, 403 on a create)
	CauseTokenDenied         // the token itself is dead, revoked or unknown (403 on lookup-self)
	CauseSealed              // 503: Vault is sealed or in standby without a leader
	CauseServer              // 5xx or 429: Vault is up but failing
	CauseUnreachable         // no HTTP answer at all
	CauseTLS                 // the TLS handshake failed: CA, hostname or expiry
	CauseTimeout             // the run's --timeout passed
	CauseClientTimeout       // one request outlived VAULT_CLIENT_TIMEOUT
	CauseCanceled            // Ctrl-C or SIGTERM
	CauseFilesystem          // a local file or directory could not be read or written
	CauseLockHeld            // another run held the lock for longer than --lock-wait
	CauseCapped              // Vault caps the TTL below what a daily timer can outrun
	CauseMintRejected        // Vault minted a token unlike the one asked for
	CauseIncomplete          // a sweep stopped before it looked up every accessor
	CauseForeign             // the file holds a foreign token where ours is required
	CauseSettings            // the VAULT_*/BAO_* client settings are unusable
	CauseNoToken             // the token file is missing or empty
	CauseBadTokenFile        // the token file does not hold one token: two lines, odd bytes, far too long, not a regular file
	CauseTooLarge            // an answer was larger than any Vault sends: a hostile or broken server, a proxy
	CauseUnsafeEnvFile       // the env file is another user's, or others may write it: not trusted
	CauseTokenHelper         // the CLI's token helper failed, hung or did not keep the token, or its config cannot be used
	CauseStoreConflict       // two profiles keep their token in one store: they would fight over one token
	causeCount
)

var causeNames = [causeCount]string{"unknown", "refused", "token-denied", "sealed", "server-error", "unreachable", "tls",
	"timeout", "client-timeout", "canceled", "filesystem", "lock-held", "ttl-capped", "mint-rejected", "sweep-incomplete", "foreign-token", "settings", "no-token",
	"bad-token-file", "answer-too-large", "unsafe-env-file", "token-helper", "store-conflict"}

func (c Cause) String() string {
	if c < 0 || c >= causeCount {
		return "unknown"
	}
	return causeNames[c]
}

// Causes lists every cause, for tests that must cover them all.
func Causes() []Cause {
	out := make([]Cause, 0, causeCount)
	for c := CauseUnknown; c < causeCount; c++ {
		out = append(out, c)
	}
	return out
}

// ErrMintRejected: Vault minted a token that failed the sanity check; it
// was revoked and the file is untouched.
var ErrMintRejected = errors.New("minted token failed the sanity check")

// ErrCapped: Vault caps the token's TTL below what a daily timer can
// outrun (decide.MinTTL), so the timer cannot keep it alive.
var ErrCapped = errors.New("vault caps the token's TTL below what a daily timer can outrun")

// ErrAnswerTooLarge: an answer was larger than its limit (the Vault adapter
// reads every answer through one); no Vault sends such an answer.
var ErrAnswerTooLarge = errors.New("the answer is larger than any vault sends")

// ErrUnsafeEnvFile: the env file is another user's, or group or others may
// write it: whoever can write it chooses VAULT_ADDR (and so receives the
// admin token) and the notify command (and so runs commands as the user).
var ErrUnsafeEnvFile = errors.New("the env file is not safe to trust")

// ErrClientTimeout: one request to Vault outlived the API client's own
// timeout (VAULT_CLIENT_TIMEOUT), while the run still had time. The Vault
// adapter wraps it in; it reads like a deadline otherwise.
var ErrClientTimeout = errors.New("the client's own timeout (VAULT_CLIENT_TIMEOUT or BAO_CLIENT_TIMEOUT) passed")

// StatusError is an error that carries Vault's HTTP answer. The Vault
// adapter's errors implement it, so that classifying a failure reads
// status codes without this package speaking Vault's API itself.
type StatusError interface {
	error
	HTTPStatus() int
	Messages() []string // Vault's error texts, one item each
}

// Status is the status Vault answered with; ok is false when err
// carries no HTTP answer (nothing reached Vault, or nothing came back).
func Status(err error) (status int, ok bool) {
	var se StatusError
	if errors.As(err, &se) {
		return se.HTTPStatus(), true
	}
	return 0, false
}

// Ask is what a failed call asked of Vault, which decides what a 400 or a
// 403 means.
type Ask int

const (
	// AskToken: the call asked whether the token is accepted at all
	// (lookup-self, renew-self), or asked nothing of Vault (a local file):
	// a 403 means the token itself is dead, revoked or unknown.
	AskToken Ask = iota
	// AskMore: Vault had just accepted the token in hand and the call asked
	// for something more (the heal's create, a walk's list, the minted
	// token's check): a 400 or 403 is Vault refusing that request.
	AskMore
)

// Classify maps any error a run can meet to a Cause: this is the one place
// that sorts Vault's status codes, TLS and network errors, and local file
// errors; ask says what the failed call asked of Vault.
func Classify(err error, ask Ask) Cause {
	if err == nil {
		return CauseUnknown
	}
	var se StatusError
	if errors.As(err, &se) {
		return classifyStatus(se.HTTPStatus(), se.Messages(), ask == AskMore)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return CauseCanceled
	case errors.Is(err, ErrMintRejected):
		return CauseMintRejected
	case errors.Is(err, ErrCapped):
		return CauseCapped
	case errors.Is(err, tokenfile.ErrLockTimeout):
		return CauseLockHeld
	case errors.Is(err, tokenfile.ErrMissing), errors.Is(err, tokenfile.ErrEmpty):
		return CauseNoToken
	case errors.Is(err, tokenfile.ErrNotAToken):
		return CauseBadTokenFile
	case errors.Is(err, ErrAnswerTooLarge):
		return CauseTooLarge
	case errors.Is(err, ErrUnsafeEnvFile):
		return CauseUnsafeEnvFile
	case errors.Is(err, tokenstore.ErrHelper), errors.Is(err, tokenstore.ErrConfig):
		return CauseTokenHelper
	case errors.Is(err, sweep.ErrIncomplete):
		return CauseIncomplete
	case isTLS(err):
		return CauseTLS
	case errors.Is(err, ErrClientTimeout):
		// The client's own timeout (VAULT_CLIENT_TIMEOUT) also reads as a
		// deadline; the adapter, which still holds the run's context, tells
		// the two apart and marks it (vaultclient's wrap), so no error's
		// words are read here.
		return CauseClientTimeout
	case errors.Is(err, context.DeadlineExceeded):
		return CauseTimeout
	case isFilesystem(err):
		return CauseFilesystem
	}
	if isNetwork(err) {
		return CauseUnreachable
	}
	return CauseUnknown
}

// Unanswered is the server (scheme://host) of the request that got no
// HTTP answer in err, or "" when err does not say. It is not always the
// configured address: a standby answers with a redirect to the node it
// takes for the active one, and the client follows it.
func Unanswered(err error) string {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return ""
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// isNetwork recognises a request that got no HTTP answer. It does not ask
// for net.Error: a bare syscall.Errno satisfies that interface too, which
// once made a read-only home read as "cannot reach vault".
func isNetwork(err error) bool {
	var ope *net.OpError
	var ue *url.Error
	var dns *net.DNSError
	return errors.As(err, &ope) || errors.As(err, &ue) || errors.As(err, &dns) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

func classifyStatus(status int, msgs []string, asked bool) Cause {
	switch {
	case status == 503:
		return CauseSealed
	case status == 429 || status >= 500:
		return CauseServer
	case asked && (status == 400 || status == 403):
		return CauseRefused
	case status == 403 || status == 401:
		return CauseTokenDenied
	case status == 400 && mentions(msgs, "bad token", "invalid token"):
		return CauseTokenDenied
	}
	return CauseRefused
}

func mentions(msgs []string, words ...string) bool {
	for _, m := range msgs {
		for _, w := range words {
			if strings.Contains(m, w) {
				return true
			}
		}
	}
	return false
}

// TLSProblem says which client setting (..._CACERT, ..._TLS_SERVER_NAME)
// fixes a TLS failure.
type TLSProblem int

const (
	TLSOther     TLSProblem = iota
	TLSUnknownCA            // the server's certificate is signed by a CA we do not trust
	TLSHostname             // the certificate does not name the host in VAULT_ADDR
	TLSExpired              // the certificate is expired or not yet valid
	TLSNotTLS               // an https:// address answered in plain HTTP
)

// TLSKind sorts a TLS failure; TLSOther when err is not one.
func TLSKind(err error) TLSProblem {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ua):
		return TLSUnknownCA
	case errors.As(err, &he):
		return TLSHostname
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return TLSExpired
	case errors.As(err, &rh):
		return TLSNotTLS
	}
	return TLSOther
}

func isTLS(err error) bool {
	var cv *tls.CertificateVerificationError
	var ci x509.CertificateInvalidError
	return TLSKind(err) != TLSOther || errors.As(err, &cv) || errors.As(err, &ci)
}

// fsErrnos are the errors of a local file operation that an operator fixes
// on the machine: permissions, space, mounts, a path that is not a file.
var fsErrnos = []error{syscall.EACCES, syscall.EPERM, syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS,
	syscall.EISDIR, syscall.ENOTDIR, syscall.ENOENT, syscall.ELOOP, syscall.ENAMETOOLONG, syscall.EEXIST, syscall.ENOTEMPTY}

// isFilesystem recognises a local file operation that failed: the token
// file, its lock, the state directory. Network errors wrap errnos too, but
// inside a *net.OpError: isFilesystem leaves those to isNetwork, which
// Classify asks after it.
func isFilesystem(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	var ope *net.OpError
	if errors.As(err, &pe) || errors.As(err, &le) {
		return true
	}
	if errors.As(err, &ope) {
		return false
	}
	for _, e := range fsErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
