package runstate

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/devvm/vault-token-renew/renew"
)

func TestNotifyEnv(t *testing.T) {
	tests := []struct {
		name string
		s    State
		want []string
	}{
		{"failing", State{Outcome: renew.Drift, Summary: "DRIFT: x", FailingSince: day(1), FailingRuns: 3, Host: "vm1", Accessor: "acc", Profile: "prod"},
			[]string{"VTR_OUTCOME=drift", "VTR_SUMMARY=DRIFT: x", "VTR_SINCE=2026-06-19T06:00:00Z", "VTR_RUNS=3", "VTR_HOST=vm1", "VTR_PROFILE=prod"}},
		{"ok", State{Outcome: renew.OK, Summary: "OK: renewed", Host: "vm1"},
			[]string{"VTR_OUTCOME=ok", "VTR_SUMMARY=OK: renewed", "VTR_SINCE=", "VTR_RUNS=0", "VTR_HOST=vm1", "VTR_PROFILE="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NotifyEnv(tt.s); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("NotifyEnv = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNotifyRunsTheCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cmd := `printf '%s|%s|%s|%s|%s|%s|%s|%s\n' "$VTR_OUTCOME" "$VTR_SUMMARY" "$VTR_SINCE" "$VTR_RUNS" "$VTR_HOST" "${VAULT_TOKEN-unset}${BAO_TOKEN-unset}" "$VAULT_ADDR" "$KEEP" > "$OUT"; echo said-stdout; echo said-stderr >&2`
	s := State{Outcome: renew.Fail, Summary: "FAIL: vault unreachable cause=unreachable", FailingSince: day(1), FailingRuns: 2, Host: "vm1"}
	base := []string{"PATH=" + os.Getenv("PATH"), "OUT=" + out, "VAULT_TOKEN=hvs.must-not-pass", "BAO_TOKEN=s.must-not-pass-either", "VAULT_ADDR=https://v:8200",
		"VTR_OUTCOME=forged", "VTR_RUNS=99", "KEEP=kept"}
	var stdout, stderr bytes.Buffer
	if err := Notify(context.Background(), cmd, s, base, &stdout, &stderr); err != nil {
		t.Fatalf("Notify: %v (stderr %q)", err, stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "fail|FAIL: vault unreachable cause=unreachable|2026-06-19T06:00:00Z|2|vm1|unsetunset|https://v:8200|kept\n"
	if string(got) != want {
		t.Fatalf("command saw\n %q\nwant\n %q", got, want)
	}
	if stdout.String() != "said-stdout\n" || stderr.String() != "said-stderr\n" {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
}

func TestNotifyErrors(t *testing.T) {
	secretURL := "https://hooks.example/T0/SECRET"
	err := Notify(context.Background(), "exit 3 # "+secretURL, State{Outcome: renew.Fail}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("failing command: %v", err)
	}
	if err := Notify(context.Background(), "  ", State{}, nil, nil, nil); err == nil {
		t.Fatal("empty command accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Notify(ctx, "true", State{}, nil, nil, nil); err == nil {
		t.Fatal("cancelled context ran the command")
	}
}

// TestNotifyEnvIsBounded: a state file edited by hand (or by an older
// version) with a summary of 140 KiB and newlines gives the notifier a few
// KiB on one line: the exec never fails on its size.
func TestNotifyEnvIsBounded(t *testing.T) {
	s := State{Outcome: renew.Drift, Summary: "DRIFT: dn=" + strings.Repeat("x\n<6>OK: y", 14<<10), Host: "vm\x1b[8m"}
	env := NotifyEnv(s)
	total := 0
	for _, kv := range env {
		total += len(kv)
		if strings.ContainsAny(kv, "\n\x1b") {
			t.Fatalf("%.60q… holds a control character", kv)
		}
	}
	if total > 5<<10 {
		t.Fatalf("the notifier's environment is %d bytes", total)
	}
}
