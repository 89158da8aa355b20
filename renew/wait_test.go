package renew

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/failure"
)

// TestUnreachableWaitHasOneWorstCase: RunWaiting owns the wait for a Vault
// that cannot be reached; within each attempt the API client's own retries
// are bounded by the timeout. On a fake clock, with attempts that take the
// whole timeout (the worst an attempt can) or fail fast (connection
// refused), the run gives up after the wait and within Worst, and the
// unit's TimeoutStartSec= is above Worst, so systemd never kills a run
// that is only waiting.
func TestUnreachableWaitHasOneWorstCase(t *testing.T) {
	for _, attempt := range []time.Duration{2 * time.Minute, time.Second} {
		t.Run("attempts of "+attempt.String(), func(t *testing.T) {
			clock := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
			start := clock
			w := Waiting{For: 10 * time.Minute, Timeout: 2 * time.Minute, Now: func() time.Time { return clock },
				Sleep: func(_ context.Context, d time.Duration) error { clock = clock.Add(d); return nil }}
			tries := 0
			o := retryUnreachable(context.Background(), Config{Log: zerolog.Nop()}, w, func(context.Context) Outcome {
				tries++
				clock = clock.Add(attempt)
				return Outcome{Stage: failure.StageLookup, Cause: failure.CauseUnreachable, Err: errors.New("dial tcp: connection refused")}
			})
			took := clock.Sub(start)
			if o.Err == nil || o.Cause != failure.CauseUnreachable {
				t.Fatalf("err %v cause %v, want the last attempt's unreachable", o.Err, o.Cause)
			}
			if took > w.Worst() {
				t.Errorf("gave up after %s (%d tries), longer than Worst %s", took, tries, w.Worst())
			}
			if took < w.For-15*time.Second {
				t.Errorf("gave up after %s (%d tries), well before the %s wait", took, tries, w.For)
			}
		})
	}
	unit, err := os.ReadFile("../systemd/vault-token-renew.service")
	if err != nil {
		t.Fatal(err)
	}
	wait, start := unitSetting(t, string(unit), "Environment=VTR_WAIT_UNREACHABLE="), unitSetting(t, string(unit), "TimeoutStartSec=")
	settle := unitSetting(t, string(unit), "Environment=VTR_SETTLE=")
	if worst := (Waiting{For: wait, Timeout: 2 * time.Minute}).Worst() + 5*settle; start <= worst {
		t.Errorf("the unit's TimeoutStartSec=%s is not above the worst case %s (settle 5×%s, wait %s, the default --timeout, the discard)", start, worst, settle, wait)
	}
}

// TestOnlyUnreachableIsWaitedFor: a dead token, DRIFT, or a Vault that
// answered is not waited for; a wait cut by a signal is canceled.
func TestOnlyUnreachableIsWaitedFor(t *testing.T) {
	w := Waiting{For: time.Hour, Timeout: time.Minute, Sleep: func(context.Context, time.Duration) error { return nil }}
	for _, o := range []Outcome{
		{Stage: failure.StageLookup, Cause: failure.CauseTokenDenied, Err: errors.New("403")},
		{Stage: failure.StageCreate, Cause: failure.CauseUnreachable, Err: errors.New("lost")}, // something was done
		{Kind: OK},
	} {
		tries := 0
		retryUnreachable(context.Background(), Config{Log: zerolog.Nop()}, w, func(context.Context) Outcome { tries++; return o })
		if tries != 1 {
			t.Errorf("%v at %v: tried %d times, want once", o.Cause, o.Stage, tries)
		}
	}
	w.Sleep = func(context.Context, time.Duration) error { return context.Canceled }
	o := retryUnreachable(context.Background(), Config{Log: zerolog.Nop()}, w, func(context.Context) Outcome {
		return Outcome{Stage: failure.StageLookup, Cause: failure.CauseUnreachable, Err: errors.New("refused")}
	})
	if o.Cause != failure.CauseCanceled || !errors.Is(o.Err, context.Canceled) {
		t.Fatalf("a wait cut short: cause %v err %v, want canceled", o.Cause, o.Err)
	}
}

// unitSetting reads a duration setting (10m, 20min) from a unit file.
func unitSetting(t *testing.T, unit, prefix string) time.Duration {
	t.Helper()
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
			d, err := time.ParseDuration(strings.Replace(v, "min", "m", 1))
			if err != nil {
				t.Fatalf("%s%s: %v", prefix, v, err)
			}
			return d
		}
	}
	t.Fatalf("no %s line in the unit", prefix)
	return 0
}
