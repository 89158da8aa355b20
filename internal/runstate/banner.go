package runstate

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/devvm/vault-token-renew/internal/safetext"
)

// StaleAfter is how old the last successful run may be before the banner
// speaks up: a daily timer with up to an hour of randomized delay misses
// one day at most by accident, not two.
const StaleAfter = 48 * time.Hour

// maxReason keeps a banner's reason to about one terminal line.
const maxReason = 100

// Banner is the one line `status --brief` prints at login, or "" when the
// last run succeeded within StaleAfter: silence when all is well, so that the
// line is never learned to be ignored. err is what Load returned. The line has
// no trailing newline and always ends with the command to run next.
func Banner(s State, err error, now time.Time) string { return BannerFor("", s, err, now) }

// BannerFor is Banner for profile (none for ""): the line names the
// profile, and its commands are the profile's units and status.
func BannerFor(profile string, s State, err error, now time.Time) string {
	p, unit, status := "vault-token-renew: ", "vault-token-renew", "vault-token-renew status"
	if profile != "" {
		p, unit, status = "vault-token-renew ("+profile+"): ", "vault-token-renew@"+profile, status+" --profile "+profile
	}
	switch {
	case errors.Is(err, ErrNoState) || (err == nil && s.Time.IsZero()):
		return p + "has never run; run: systemctl --user start " + unit + ".service"
	case errors.Is(err, ErrCorrupt):
		return p + oneLine(err.Error()) + "; the next run replaces it; run: " + status
	case err != nil:
		return p + oneLine(err.Error()) + "; run: " + status
	case !s.Outcome.Success():
		return p + failing(s, now) + "; run: " + status
	case now.Sub(s.Time) > StaleAfter:
		return p + "no successful run since " + dateOf(s.Time, now) +
			"; is the timer running? run: systemctl --user list-timers " + unit + ".timer"
	}
	return ""
}

// failing says which failure, since when, how many runs, and why, e.g.
// "DRIFT since 2026-06-18 (3 runs): heal denied". A streak whose last run is
// itself stale also says so: then the timer has stopped as well.
func failing(s State, now time.Time) string {
	since := s.FailingSince
	if since.IsZero() {
		since = s.Time
	}
	runs := max(s.FailingRuns, 1)
	count := fmt.Sprintf("%d runs", runs)
	if runs == 1 {
		count = "1 run"
	}
	if now.Sub(s.Time) > StaleAfter {
		count += ", the last on " + dateOf(s.Time, now)
	}
	word := strings.ToUpper(string(s.Outcome))
	if word == "" {
		word = "FAIL"
	}
	return fmt.Sprintf("%s since %s (%s): %s", word, dateOf(since, now), count, reason(s))
}

func dateOf(t, now time.Time) string { return t.In(now.Location()).Format("2006-01-02") }

// reason is the run's recorded reason (the cause when an older run left
// none), on one line and at most about a hundred characters.
func reason(s State) string {
	msg := safetext.Escape(oneLine(s.Reason))
	if msg == "" {
		msg = safetext.Value(s.Cause)
	}
	if msg == "" {
		return "no details recorded"
	}
	if utf8.RuneCountInString(msg) <= maxReason {
		return msg
	}
	cut := []rune(msg)[:maxReason]
	if i := strings.LastIndexByte(string(cut), ' '); i > maxReason/2 {
		return strings.TrimRight(string(cut)[:i], " ;,") + "…"
	}
	return string(cut) + "…"
}

// oneLine turns control characters (newlines above all) into spaces, so a
// banner is always exactly one line whatever a summary or error holds.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r < ' ' || r == 0x7f
	}), " ")
}
