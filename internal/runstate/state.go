// Package runstate remembers what each run of vault-token-renew did, so that
// a failure keeps being visible after its log line has scrolled away: a login
// banner (Banner), node_exporter textfile metrics (WriteMetrics) and an
// OnFailure notifier (Notify) all read the one State a run leaves behind.
// It never holds a token secret: accessors are the only token handle in it.
package runstate

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	"github.com/devvm/vault-token-renew/internal/atomicfile"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/renew"
)

// State is what the runs so far add up to, as stored in state.json. Times
// that may be unknown are zero and then left out of the file (omitzero), so
// the file never claims an expiry or a success it does not know.
type State struct {
	Time         time.Time  `json:"time"`                   // the last run
	Outcome      renew.Kind `json:"outcome"`                // the last run's outcome: ok, healed, drift or fail
	Cause        string     `json:"cause,omitempty"`        // the last run's cause, on DRIFT/FAIL
	Summary      string     `json:"summary"`                // the last run's closing log line
	Reason       string     `json:"reason,omitempty"`       // what went wrong, in a few words, on DRIFT/FAIL: the banner's text
	Accessor     string     `json:"accessor,omitempty"`     // our periodic token's accessor, last known
	TokenExpiry  time.Time  `json:"token_expiry,omitzero"`  // our token's expiry, last known
	LastSuccess  time.Time  `json:"last_success,omitzero"`  // the last OK or HEALED run
	FailingSince time.Time  `json:"failing_since,omitzero"` // the first run of the current failure streak
	FailingRuns  int        `json:"failing_runs"`           // runs in the current failure streak
	HealsTotal   int        `json:"heals_total"`            // HEALED runs ever recorded
	Host         string     `json:"host"`                   // the machine, as the notifier names it
	Profile      string     `json:"profile,omitempty"`      // the profile whose state this is; "" for none
	// Ledgers are this machine's periodic tokens that may still be alive,
	// a ledger per token file (LedgerKey): the run lock is per token file,
	// and a run may retire only what was recorded for its own file. A run
	// writes its file's ledger as it goes (before and after a create, after
	// a sweep); folding a run's outcome in (Next) carries them over.
	Ledgers map[string]ledger.Ledger `json:"ledgers,omitempty"`
	// LastWalk is how the last walk (sweep --apply, the walk unit) ended:
	// the walk unit's notifier tells it, and status shows it. A walk's
	// place is in its ledger (ledger.Walk).
	LastWalk *WalkEnd `json:"last_walk,omitempty"`
}

// WalkEnd is how one run of a walk ended.
type WalkEnd struct {
	Time    time.Time `json:"time"`
	Summary string    `json:"summary"`          // its closing line
	Failed  bool      `json:"failed,omitempty"` // it ended in a failure (exit 1)
	Idle    bool      `json:"idle,omitempty"`   // the ledger was whole: nothing to walk
}

// LedgerFor is the ledger of the token file at path; a zero Ledger (never
// whole) when there is none.
func (s State) LedgerFor(path string) ledger.Ledger { return s.Ledgers[LedgerKey(path)] }

// LedgerKey names a token file's ledger: its resolved absolute path, so
// every path that reaches the same file (a symlink, a relative
// --token-file) shares one ledger, as they share one run lock.
func LedgerKey(path string) string {
	if real, err := atomicfile.Resolve(path); err == nil {
		path = real
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// Run is what one run reports about itself. Reason is recorded as data,
// so that nothing reads it back out of the closing line's words.
type Run struct {
	Time                                   time.Time
	Outcome                                renew.Kind
	Cause, Summary, Reason, Accessor, Host string
	Profile                                string
	TokenExpiry                            time.Time
}

// Next folds one run into the state. A success ends any failure streak; a
// DRIFT or FAIL starts one or extends it, keeping the time it started so an
// operator sees how long the token has been unattended. A failing run often
// cannot learn our accessor or expiry (Vault unreachable, a foreign token in
// the file), so it keeps the last known ones rather than erasing them: the
// expiry is the deadline the operator is racing.
func Next(prev State, r Run) State {
	s := State{
		Time: r.Time, Outcome: r.Outcome, Cause: safetext.Value(r.Cause), Summary: safetext.Text(r.Summary), Reason: safetext.Text(r.Reason),
		Accessor: safetext.Value(r.Accessor), TokenExpiry: r.TokenExpiry, Host: safetext.Value(r.Host), Profile: r.Profile,
		LastSuccess: prev.LastSuccess, HealsTotal: prev.HealsTotal, Ledgers: prev.Ledgers, LastWalk: prev.LastWalk,
	}
	if s.Host == "" {
		s.Host = prev.Host
	}
	if r.Outcome == renew.Healed {
		s.HealsTotal++
	}
	if r.Outcome.Success() {
		s.LastSuccess = r.Time
		return s
	}
	if s.Accessor == "" {
		s.Accessor = prev.Accessor
	}
	if s.TokenExpiry.IsZero() {
		s.TokenExpiry = prev.TokenExpiry
	}
	s.FailingSince, s.FailingRuns = r.Time, 1
	if prev.FailingRuns > 0 && !prev.FailingSince.IsZero() {
		s.FailingSince, s.FailingRuns = prev.FailingSince, prev.FailingRuns+1
	}
	return s
}

// Dir is the state directory of the machine, the no-profile setup's, above
// every profile's: what profiles share (a token helper's run lock) goes there.
func Dir(getenv func(string) string) (string, error) {
	p, err := DefaultPath(func(k string) string {
		if k == "VTR_PROFILE" {
			return ""
		}
		return getenv(k)
	})
	return filepath.Dir(p), err
}

// ProfileName is what a profile may be called: a systemd instance name
// that is also a file name, with no dot, slash or escape.
var ProfileName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,30}$`)

// DefaultPath is $XDG_STATE_HOME/vault-token-renew/state.json, falling back
// to ~/.local/state as the XDG spec says (a relative XDG_STATE_HOME is
// invalid and ignored). State is not config: a user may wipe it any time.
// A profile (VTR_PROFILE) has a state of its own, in profiles/NAME/: its
// runs, ledger, walk and notifier summary.
func DefaultPath(getenv func(string) string) (string, error) {
	rel := []string{"vault-token-renew", "state.json"}
	if p := getenv("VTR_PROFILE"); p != "" {
		if !ProfileName.MatchString(p) {
			return "", fmt.Errorf("VTR_PROFILE=%q is not a profile's name", p)
		}
		rel = []string{"vault-token-renew", "profiles", p, "state.json"}
	}
	if x := getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(append([]string{x}, rel...)...), nil
	}
	if h := getenv("HOME"); h != "" && filepath.IsAbs(h) {
		return filepath.Join(append([]string{h, ".local", "state"}, rel...)...), nil
	}
	return "", errors.New("no place for the state file: set HOME (or XDG_STATE_HOME) to an absolute path")
}
