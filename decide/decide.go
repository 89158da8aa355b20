// Package decide is the pure decision core of a run: whether the token in
// the file is ours (IsOurs), whether a foreign one can ever mint
// (CannotMint), whether a minted token is the one asked for (JudgeMinted),
// what Vault's TTL caps leave of it (JudgeTTL), and Decide, the plan of a
// run from what it found. Plain data in, decisions and reasons out, no I/O.
package decide

import (
	"fmt"
	"slices"
	"time"
)

// TokenInfo is the part of a token lookup the decisions need. It never holds
// the token's secret: the accessor is the handle.
type TokenInfo struct {
	Accessor         string
	DisplayName      string
	Type             string // "service" or "batch"
	Policies         []string
	IdentityPolicies []string
	Meta             map[string]string
	TTL              time.Duration
	Period           time.Duration
	ExplicitMaxTTL   time.Duration
	NumUses          int
	Orphan           bool
	CreationTime     time.Time
	ExpireTime       time.Time
}

// Meta keys every minted token carries, so that a sweep on one machine can
// tell its own stale tokens from another machine's live ones.
const (
	MetaManagedBy = "managed_by"
	MetaHost      = "host"
	MetaUser      = "user"
	MetaProfile   = "profile" // only on the tokens of a profile (--profile): no profile tags none
	ManagedBy     = "vault-token-renew"
)

// Spec is the periodic token this tool maintains, as the design fixes it,
// and the machine it belongs to.
type Spec struct {
	DisplayName string // as passed to create, e.g. devvm-wizard
	Policies    []string
	Period      time.Duration
	Host        string // this machine, as tagged in the token's meta
	User        string // the local user, likewise
	Profile     string // the profile (--profile), likewise; "" for none
}

// StoredDisplayName is the display name Vault stores for tokens created by
// the token store: it prefixes "token-".
func (s Spec) StoredDisplayName() string { return "token-" + s.DisplayName }

// Meta is the metadata a minted token carries.
func (s Spec) Meta() map[string]string {
	m := map[string]string{MetaManagedBy: ManagedBy, MetaHost: s.Host, MetaUser: s.User}
	if s.Profile != "" {
		m[MetaProfile] = s.Profile
	}
	return m
}

// IsOurs is the drift predicate: the token in the file is our periodic token
// exactly when Vault reports our stored display name and a period. A
// non-periodic token that carries our name would die at its max TTL however
// often it is renewed, so it is foreign and gets healed.
func IsOurs(info TokenInfo, s Spec) bool {
	return info.DisplayName == s.StoredDisplayName() && info.Period > 0
}

// CannotMint says why a foreign token can never mint a periodic token, or ""
// when only Vault can tell (by answering the create). Batch tokens and
// use-limited tokens are refused by Vault whatever their policies; asking
// anyway would spend one of a use-limited token's uses.
func CannotMint(info TokenInfo) string {
	switch {
	case info.Type == "batch":
		return "a batch token cannot heal: batch tokens cannot create tokens"
	case info.NumUses > 0:
		return "a use-limited token cannot heal: vault refuses child tokens from a restricted use token"
	}
	return ""
}

// Judgement is the verdict on a freshly minted token.
type Judgement struct {
	Problems []string // any problem means the token must not be written
}

// OK reports whether the minted token may be written to the file.
func (j Judgement) OK() bool { return len(j.Problems) == 0 }

// JudgeMinted is the sanity predicate for a minted token: the lookup must
// show our display name, a period, no parent, every requested policy and
// our meta tags: an untagged token would be every other machine's to sweep.
// What Vault did to its TTL is JudgeTTL's business.
func JudgeMinted(info TokenInfo, s Spec) Judgement {
	var j Judgement
	if info.DisplayName != s.StoredDisplayName() {
		j.Problems = append(j.Problems, fmt.Sprintf("display name is %q, want %q", info.DisplayName, s.StoredDisplayName()))
	}
	if info.Period <= 0 {
		j.Problems = append(j.Problems, "token is not periodic")
	}
	if !info.Orphan {
		j.Problems = append(j.Problems, "token is not an orphan")
	}
	for _, p := range s.Policies {
		if !slices.Contains(info.Policies, p) {
			j.Problems = append(j.Problems, fmt.Sprintf("policy %q missing", p))
		}
	}
	for _, k := range []string{MetaManagedBy, MetaHost, MetaUser, MetaProfile} {
		if want := s.Meta()[k]; info.Meta[k] != want {
			j.Problems = append(j.Problems, fmt.Sprintf("meta %s is %q, want %q", k, info.Meta[k], want))
		}
	}
	return j
}

// MinTTL is the least TTL a daily timer can outrun: a day, plus the timer's
// randomized delay of up to an hour.
const MinTTL = 25 * time.Hour

// capSlack absorbs the seconds between Vault setting the TTL and our read.
const capSlack = time.Minute

// TTLVerdict is what Vault's caps mean for a periodic token: data, which
// the reporter puts into words (and commands) for the operator's CLI.
type TTLVerdict struct {
	Capped bool // the TTL is below the period
	Fatal  bool // the TTL is below MinTTL: the daily timer cannot keep up
	// Explicit says the token's own explicit_max_ttl binds: it dies at Dies
	// whatever the renewals, and only a re-mint without it helps.
	// Otherwise the token mount's or the system's max TTL caps the TTL,
	// which an operator can lift.
	Explicit       bool
	Dies           time.Time
	TTL, Period    time.Duration
	ExplicitMaxTTL time.Duration
}

// JudgeTTL compares a periodic token's effective TTL, as of now, with its
// period. Real Vault keeps the period and caps the TTL at the token mount's
// max TTL, the system max TTL, or the token's explicit_max_ttl. Only the
// last is visible in a lookup, and it cannot be lifted: the token dies at
// creation + explicit_max_ttl. It is named only when it is what binds (that
// death falls within the TTL granted); otherwise a mount cap is tighter.
func JudgeTTL(info TokenInfo, ttl time.Duration, now time.Time) TTLVerdict {
	var v TTLVerdict
	if info.Period <= 0 || ttl >= info.Period-capSlack {
		return v
	}
	v.Capped, v.Fatal = true, ttl < MinTTL
	v.TTL, v.Period, v.ExplicitMaxTTL = ttl.Round(time.Second), info.Period, info.ExplicitMaxTTL
	die := info.CreationTime.Add(info.ExplicitMaxTTL)
	if info.ExplicitMaxTTL > 0 && !info.CreationTime.IsZero() && !die.After(now.Add(ttl+capSlack)) {
		v.Explicit, v.Dies = true, die.UTC()
	}
	return v
}
