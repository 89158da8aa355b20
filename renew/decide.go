package renew

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// TokenInfo is the part of a token lookup the decisions need. It never holds
// the token's secret: the accessor is the handle.
type TokenInfo struct {
	Accessor         string
	DisplayName      string
	Policies         []string
	IdentityPolicies []string
	TTL              time.Duration
	Period           time.Duration
	Orphan           bool
	Renewable        bool
	CreationTime     time.Time
}

// Spec is the periodic token this tool maintains, as the design fixes it.
type Spec struct {
	DisplayName string // as passed to create, e.g. devvm-wizard
	Policies    []string
	Period      time.Duration
}

// StoredDisplayName is the display name Vault stores for tokens created by
// the token store: it prefixes "token-".
func (s Spec) StoredDisplayName() string { return "token-" + s.DisplayName }

// IsOurs is the drift predicate: the token in the file is our periodic token
// exactly when Vault reports our stored display name.
func IsOurs(info TokenInfo, s Spec) bool {
	return info.DisplayName == s.StoredDisplayName()
}

// Judgement is the verdict on a freshly minted token.
type Judgement struct {
	Problems []string // any problem means the token must not be written
	Warnings []string // worth an operator's attention, not fatal
}

// OK reports whether the minted token may be written to the file.
func (j Judgement) OK() bool { return len(j.Problems) == 0 }

// JudgeMinted is the sanity predicate for a minted token: the lookup must
// show our display name, a period, no parent and every requested policy.
// A period below the one requested (a mount or system max capped it) is a
// warning: the token still works, it only needs renewing sooner.
func JudgeMinted(info TokenInfo, s Spec) Judgement {
	var j Judgement
	if info.DisplayName != s.StoredDisplayName() {
		j.Problems = append(j.Problems, fmt.Sprintf("display name is %q, want %q", info.DisplayName, s.StoredDisplayName()))
	}
	if info.Period <= 0 {
		j.Problems = append(j.Problems, "token is not periodic")
	} else if info.Period < s.Period {
		j.Warnings = append(j.Warnings, fmt.Sprintf("vault capped the period at %s (asked for %s)", info.Period, s.Period))
	}
	if !info.Orphan {
		j.Problems = append(j.Problems, "token is not an orphan")
	}
	for _, p := range s.Policies {
		if !slices.Contains(info.Policies, p) {
			j.Problems = append(j.Problems, fmt.Sprintf("policy %q missing", p))
		}
	}
	return j
}

// Cause sorts a Vault error into what the operator should do about it.
type Cause int

const (
	CauseUnknown     Cause = iota
	CauseRefused           // Vault understood and said no (400, 403 on a create)
	CauseTokenDenied       // the token itself is dead, revoked or unknown (403 on lookup-self)
	CauseSealed            // 503: Vault is sealed or in standby without a leader
	CauseServer            // 5xx or 429: Vault is up but failing
	CauseUnreachable       // no HTTP answer at all
	CauseTimeout           // the run's deadline passed
)

func (c Cause) String() string {
	switch c {
	case CauseRefused:
		return "refused"
	case CauseTokenDenied:
		return "token-denied"
	case CauseSealed:
		return "sealed"
	case CauseServer:
		return "server-error"
	case CauseUnreachable:
		return "unreachable"
	case CauseTimeout:
		return "timeout"
	}
	return "unknown"
}

// Classify maps an error from the Vault client to a Cause. onCreate says the
// call was the heal's token create, where any 400 or 403 is Vault refusing
// the foreign token's authority; elsewhere a 403 means the token in hand is
// not accepted at all.
func Classify(err error, onCreate bool) Cause {
	if err == nil {
		return CauseUnknown
	}
	var re *vault.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == 503:
			return CauseSealed
		case re.StatusCode == 429 || re.StatusCode >= 500:
			return CauseServer
		case onCreate && (re.StatusCode == 400 || re.StatusCode == 403):
			return CauseRefused
		case re.StatusCode == 403 || re.StatusCode == 401:
			return CauseTokenDenied
		case re.StatusCode == 400 && mentionsBadToken(re.Errors):
			return CauseTokenDenied
		case re.StatusCode >= 400:
			return CauseRefused
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return CauseTimeout
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return CauseUnreachable
	}
	return CauseUnknown
}

func mentionsBadToken(msgs []string) bool {
	for _, m := range msgs {
		if strings.Contains(m, "bad token") || strings.Contains(m, "invalid token") {
			return true
		}
	}
	return false
}
