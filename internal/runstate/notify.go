package runstate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/devvm/vault-token-renew/internal/safetext"
)

// notifyKeys are the variables NotifyEnv sets; any inherited value of them
// is dropped so a notifier never sees a stale or forged one.
var notifyKeys = []string{"VTR_OUTCOME", "VTR_SUMMARY", "VTR_SINCE", "VTR_RUNS", "VTR_HOST"}

// NotifyEnv is what the operator's notify command learns about the failure,
// as KEY=VALUE: the outcome, the closing log line, when the failure streak
// began (RFC 3339, empty after a success) and how many runs it spans, and the
// host. Accessors are left out: a desktop popup or a chat message has no use
// for them, and the state file and journal keep them.
func NotifyEnv(s State) []string {
	since := ""
	if !s.FailingSince.IsZero() {
		since = s.FailingSince.Format(time.RFC3339)
	}
	// The state file is read back from disk: escape and bound again, so
	// the exec never fails on its size and a command never sees a control
	// character it did not expect.
	return []string{
		"VTR_OUTCOME=" + safetext.Value(string(s.Outcome)),
		"VTR_SUMMARY=" + safetext.Text(s.Summary),
		"VTR_SINCE=" + since,
		"VTR_RUNS=" + strconv.Itoa(s.FailingRuns),
		"VTR_HOST=" + safetext.Value(s.Host),
		"VTR_PROFILE=" + safetext.Value(s.Profile),
	}
}

// notifyWaitDelay bounds how long Notify waits for output after the shell
// exits, so a command that backgrounds a child holding stdout cannot hang
// the OnFailure unit.
const notifyWaitDelay = 5 * time.Second

// Notify runs the operator's command (VTR_NOTIFY_COMMAND) with `sh -c`, in
// baseEnv plus NotifyEnv(s). VAULT_TOKEN and BAO_TOKEN are stripped from baseEnv: the
// command is the operator's arbitrary script, and this tool never hands a
// token to anything. The error does not repeat the command, which may hold
// a webhook's secret URL.
func Notify(ctx context.Context, command string, s State, baseEnv []string, stdout, stderr io.Writer) error {
	if strings.TrimSpace(command) == "" {
		return errors.New("no notify command set (VTR_NOTIFY_COMMAND)")
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = append(notifyBase(baseEnv), NotifyEnv(s)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = notifyWaitDelay
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("notify command (VTR_NOTIFY_COMMAND): %w", err)
	}
	return nil
}

// notifyBase is env without the token variables of either CLI and without
// the keys NotifyEnv sets.
func notifyBase(env []string) []string {
	drop := append([]string{"VAULT_TOKEN", "BAO_TOKEN"}, notifyKeys...)
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(drop, k) {
			out = append(out, kv)
		}
	}
	return out
}
