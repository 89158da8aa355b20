package main

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/renew"
)

// TestUnreachableWaitHasOneWorstCase: runWaiting owns the wait for a Vault
// that cannot be reached; within each attempt the API client's own retries
// are bounded by --timeout. On a fake clock, with attempts that take the
// whole --timeout (the worst an attempt can) or fail fast (connection
// refused), the run gives up after the wait and within worstWait, and the
// unit's TimeoutStartSec= is above worstWait, so systemd never kills a run
// that is only waiting.
func TestUnreachableWaitHasOneWorstCase(t *testing.T) {
	o := options{waitUnreachable: 10 * time.Minute, timeout: 2 * time.Minute}
	for _, attempt := range []time.Duration{o.timeout, time.Second} {
		t.Run("attempts of "+attempt.String(), func(t *testing.T) {
			clock := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
			start := clock
			c := newCLI(io.Discard, io.Discard, env())
			c.now = func() time.Time { return clock }
			c.sleep = func(_ context.Context, d time.Duration) error { clock = clock.Add(d); return nil }
			tries := 0
			res, err := c.runWaiting(context.Background(), o, zerolog.Nop(), func(context.Context) (renew.Result, error) {
				tries++
				clock = clock.Add(attempt)
				return renew.Result{Stage: failure.StageLookup, Cause: failure.CauseUnreachable}, errors.New("dial tcp: connection refused")
			})
			took := clock.Sub(start)
			if err == nil || res.Cause != failure.CauseUnreachable {
				t.Fatalf("err %v cause %v, want the last attempt's unreachable", err, res.Cause)
			}
			if took > worstWait(o) {
				t.Errorf("gave up after %s (%d tries), longer than worstWait %s", took, tries, worstWait(o))
			}
			if took < o.waitUnreachable-15*time.Second {
				t.Errorf("gave up after %s (%d tries), well before the %s wait", took, tries, o.waitUnreachable)
			}
		})
	}
	unit, err := os.ReadFile("../../systemd/vault-token-renew.service")
	if err != nil {
		t.Fatal(err)
	}
	wait, start := unitSetting(t, string(unit), "Environment=VTR_WAIT_UNREACHABLE="), unitSetting(t, string(unit), "TimeoutStartSec=")
	if worst := worstWait(options{waitUnreachable: wait, timeout: 2 * time.Minute}); start <= worst {
		t.Errorf("the unit's TimeoutStartSec=%s is not above the worst case %s (wait %s + the default --timeout)", start, worst, wait)
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
