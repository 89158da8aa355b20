package renew

import (
	"context"
	"fmt"
	"time"

	"github.com/devvm/vault-token-renew/failure"
)

// Retries have one owner per stage, so that waits never multiply:
//   - one request: the API client (VAULT_MAX_RETRIES, 2 by default) retries
//     a 429, a 5xx or a dropped connection after a second or so; it owns
//     every call but the create;
//   - the create: the heal, writing each attempt ahead in the ledger (the
//     adapter turns the client's retries off for it), as often as
//     VAULT_MAX_RETRIES says;
//   - a Vault that cannot be reached at all before anything was done:
//     RunWaiting, between whole attempts, for Waiting.For (--wait-unreachable:
//     minutes, where a boot brings the network up late). Each attempt, the
//     client's retries in it included, is bounded by Waiting.Timeout.
//
// The worst case is therefore Waiting.Worst, plus the settle before the
// run: the unit's TimeoutStartSec= must be above both.

// Waiting says how RunWaiting waits for a Vault that cannot be reached.
type Waiting struct {
	For     time.Duration // keep trying this long (--wait-unreachable); 0: one attempt
	Timeout time.Duration // each attempt's deadline (--timeout)
	// Now and Sleep are the clock; nil means the real one.
	Now   func() time.Time
	Sleep func(context.Context, time.Duration) error
}

// Worst is the longest a run can take once it has started: waiting for an
// unreachable Vault until the wait is up, then one last attempt of a whole
// Timeout, and the revoke of a minted token the file will not hold, which
// gets a deadline of its own (DiscardWait) because the run's may be what
// failed. Between attempts the pause is at most 15 s, and an attempt
// starts only while its pause ends before the wait is up. A run by the
// unit first settles (at most 5 times --settle, cmd's), which the unit's
// TimeoutStartSec= must cover too.
func (w Waiting) Worst() time.Duration { return w.For + w.Timeout + DiscardWait }

// DiscardWait is the deadline of the revoke of a minted token the file
// will not hold.
const DiscardWait = 30 * time.Second

func (w Waiting) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w Waiting) sleep(ctx context.Context, d time.Duration) error {
	if w.Sleep != nil {
		return w.Sleep(ctx, d)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// RunWaiting is Run, tried again while Vault cannot be reached at all and
// nothing has been done yet (the lookup found no server), for up to
// w.For: a run the timer fires at boot may find the network not up for a
// minute, and a failed unit for that would be an alarm nobody should have
// to read. No other cause is retried: DRIFT and a refused or dead token
// fail at once.
func RunWaiting(ctx context.Context, v Vault, cfg Config, w Waiting) Outcome {
	return retryUnreachable(ctx, cfg, w, func(ctx context.Context) Outcome { return Run(ctx, v, cfg) })
}

func retryUnreachable(ctx context.Context, cfg Config, w Waiting, try func(context.Context) Outcome) Outcome {
	giveUp := w.now().Add(w.For)
	pause := 5 * time.Second
	for {
		rctx, cancel := context.WithTimeout(ctx, w.Timeout)
		o := try(rctx)
		cancel()
		if o.Stage != failure.StageLookup || o.Cause != failure.CauseUnreachable || !w.now().Add(pause).Before(giveUp) {
			return o
		}
		cfg.Log.Info().Err(o.Err).Str("retry_in", pause.String()).Str("until", giveUp.Format(time.RFC3339)).
			Msg("vault unreachable; waiting for it (--wait-unreachable) before failing")
		if err := w.sleep(ctx, pause); err != nil {
			o.Cause, o.Err = failure.CauseCanceled, fmt.Errorf("while waiting for vault: %w (%w)", err, o.Err)
			return o
		}
		pause = min(2*pause, 15*time.Second)
	}
}
