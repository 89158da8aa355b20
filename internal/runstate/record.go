package runstate

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/renew"
)

// RunOf is what a run's outcome tells the state: how it ended, its cause
// and reason as data, and our token's accessor and expiry where the run
// learned them (a renewal, also one Vault capped, or a heal). summary is
// the closing line, reason the few words the banner shows.
func RunOf(o renew.Outcome, summary, reason, host string, now time.Time) Run {
	r := Run{Time: now, Outcome: o.Kind, Summary: summary, Reason: reason, Host: host}
	if !o.Kind.Success() {
		r.Cause = o.Cause.String()
	}
	switch {
	case o.Plan.Action == decide.Renew && o.TTL > 0:
		r.Accessor, r.TokenExpiry = o.Current.Accessor, now.Add(o.TTL)
	case o.Kind == renew.Healed:
		r.Accessor, r.TokenExpiry = o.Minted.Accessor, now.Add(o.TTL)
	}
	return r
}

// Record folds a run into the state file at path and writes the metrics
// to metricsFile (none when empty). Neither may change the run's outcome:
// the caller warns of stateErr (status --brief and notify will not see the
// run) and metricsErr, and the closing line stands.
func Record(path, metricsFile string, r Run) (stateErr, metricsErr error) {
	st, err := Update(path, func(prev State) State { return Next(prev, r) })
	if err != nil {
		return err, nil
	}
	if metricsFile == "" {
		return nil, nil
	}
	return nil, WriteMetrics(metricsFile, st)
}

// RecordWalk keeps how a walk ended in the state file at path, for status
// and the walk unit's notifier, and writes the metrics (none when
// metricsFile is empty).
func RecordWalk(path, metricsFile string, w WalkEnd) (stateErr, metricsErr error) {
	st, err := Update(path, func(prev State) State { prev.LastWalk = &w; return prev })
	if err != nil {
		return err, nil
	}
	if metricsFile == "" {
		return nil, nil
	}
	return nil, WriteMetrics(metricsFile, st)
}

// LedgerNote is what is wrong with the state file, said once before a run
// that writes it: the closing line stays the run's last.
type LedgerNote int

const (
	LedgerFine       LedgerNote = iota // the state file reads
	LedgerNoPlace                      // no HOME nor XDG_STATE_HOME: the ledger is not kept
	LedgerNew                          // no state file yet: the first run starts it
	LedgerUnreadable                   // the state file does not read: replaced
)

// OpenLedger is the ledger of tokenFile in the state file getenv points
// at, and what is wrong with that file; nil when there is no place for one
// (the run then keeps its ledger in memory). err is why, for the note.
func OpenLedger(getenv func(string) string, tokenFile string) (store *StateLedger, note LedgerNote, path string, err error) {
	path, err = DefaultPath(getenv)
	if err != nil {
		return nil, LedgerNoPlace, "", err
	}
	_, err = Load(path)
	switch {
	case errors.Is(err, ErrNoState):
		note = LedgerNew
	case err != nil:
		note = LedgerUnreadable
	}
	return &StateLedger{Path: path, File: tokenFile}, note, path, err
}

// Monitor is how systemd says an OnFailure= unit's service ended
// (MONITOR_SERVICE_RESULT, MONITOR_EXIT_CODE, MONITOR_EXIT_STATUS); empty
// when the notifier runs by hand.
type Monitor struct{ Result, ExitCode, ExitStatus string }

// ForNotify is the state the notifier tells about unit: the last run's,
// unless that says nothing of what failed. loadErr is why the state could
// not be read, if it could not.
func ForNotify(st State, loadErr error, unit string, m Monitor) State {
	if loadErr != nil {
		st.Summary = fmt.Sprintf("%s failed; its run state is unreadable (%v)", unit, loadErr)
	}
	// A run killed, or one that never started, records nothing: the state
	// then still shows the last success, which must not be what the
	// operator is told.
	if m.Result != "" && (st.Outcome.Success() || st.Time.IsZero()) {
		st.Outcome, st.Cause = renew.Fail, "unrecorded"
		st.Summary = fmt.Sprintf("FAIL: %s failed (result=%s, %s=%s) without recording a run; see journalctl --user -u %s",
			unit, m.Result, m.ExitCode, m.ExitStatus, unit)
	}
	switch {
	case strings.Contains(unit, "sweep"):
		return forWalk(st, unit, m)
	case strings.HasSuffix(unit, ".path"):
		// Heal on login's path unit fails when the token file changes more
		// often than its trigger limit: the state says nothing of that.
		st.Outcome, st.Cause = renew.Fail, "path-unit-failed"
		st.Summary = fmt.Sprintf("FAIL: %s stopped watching the token file (too many changes in a minute: does something rewrite it in a loop?); see systemctl --user status %s, then systemctl --user reset-failed %s && systemctl --user start %s",
			unit, unit, unit, unit)
	}
	return st
}

// forWalk: the walk unit keeps its own ending; the last run's says
// nothing of it. A walk that ended with its closing line recorded it; one
// killed (MemoryMax, SIGKILL) did not, and systemd's result says so.
func forWalk(st State, unit string, m Monitor) State {
	st.Outcome, st.Cause = renew.Fail, "walk-failed"
	if st.LastWalk != nil && st.LastWalk.Failed && (m.Result == "" || m.Result == "exit-code") {
		st.Summary = st.LastWalk.Summary
		return st
	}
	st.Summary = fmt.Sprintf("FAIL: %s failed (result=%s) without recording how the walk ended; it keeps its place; see journalctl --user -u %s", unit, m.Result, unit)
	return st
}
