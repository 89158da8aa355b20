package install

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestUpgradeKeepsOperatorLines is the upgrade an operator does: install,
// add a notifier and a comment by hand, re-install from a shell with another
// VAULT_ADDR. Only the VAULT_ADDR line changes.
func TestUpgradeKeepsOperatorLines(t *testing.T) {
	root := t.TempDir()
	p := PathsUnder(root)
	o := Options{Root: root, Binary: []byte("b"), Units: repoUnits(t),
		Getenv: getenv("VAULT_ADDR", "https://old:8200", "VAULT_CACERT", "/etc/ca.pem", "VAULT_TOKEN", "hvs.secret")}
	if _, err := Install(o); err != nil {
		t.Fatal(err)
	}
	installed, _ := os.ReadFile(p.EnvFile)
	mine := "VTR_NOTIFY_COMMAND=notify-send hi\n# my own comment\n\n"
	if err := os.WriteFile(p.EnvFile, append(installed, mine...), 0o600); err != nil {
		t.Fatal(err)
	}

	o.Getenv = getenv("VAULT_ADDR", "https://new:8200", "VAULT_TOKEN", "hvs.secret")
	r, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p.EnvFile)
	want := strings.Replace(string(installed), "VAULT_ADDR=https://old:8200\n", "VAULT_ADDR=https://new:8200\n", 1) + mine
	if string(got) != want {
		t.Fatalf("env file after upgrade:\n%s\nwant:\n%s", got, want)
	}
	if !reflect.DeepEqual(r.EnvChanges, []string{"VAULT_ADDR: updated"}) || !reflect.DeepEqual(r.Changed, []string{p.EnvFile}) {
		t.Fatalf("report %+v", r)
	}
	if strings.Contains(string(got), "hvs.secret") {
		t.Fatal("VAULT_TOKEN written")
	}
}

func TestPlanEnv(t *testing.T) {
	tests := []struct {
		name, old string
		env       []string
		want      string // "" means the file is left as it is
		changes   []string
		hasAddr   bool
	}{
		{"BAO_* lines as VAULT_* lines: set ones updated or added, the rest kept byte for byte; BAO_TOKEN never",
			"# mine\nVAULT_ADDR=https://v\nBAO_ADDR=https://old\nBAO_CACERT=/ca\n", []string{"BAO_ADDR", "https://new", "BAO_TOKEN_PATH", "/home/w/.bao-token", "BAO_TOKEN", "s.secret"},
			"# mine\nVAULT_ADDR=https://v\nBAO_ADDR=https://new\nBAO_CACERT=/ca\nBAO_TOKEN_PATH=/home/w/.bao-token\n", []string{"BAO_ADDR: updated", "BAO_TOKEN_PATH: added"}, true},
		{"BAO_ADDR alone is an address", "BAO_ADDR=https://b\n", nil, "", nil, true},
		{"unset VAULT_* lines are kept, never deleted",
			"VAULT_ADDR=https://a\nVAULT_CACERT=/ca\n", []string{"VAULT_ADDR", "https://a"},
			"", nil, true},
		{"in place, among unknown vars, comments and blank lines",
			"# c\nFOO=1\nVAULT_ADDR=https://a\n\nVTR_METRICS_FILE=/m.prom\n", []string{"VAULT_ADDR", "https://b", "VAULT_NAMESPACE", "ns1"},
			"# c\nFOO=1\nVAULT_ADDR=https://b\n\nVTR_METRICS_FILE=/m.prom\nVAULT_NAMESPACE=ns1\n", []string{"VAULT_ADDR: updated", "VAULT_NAMESPACE: added"}, true},
		{"a quoted equal value is not rewritten",
			"VAULT_ADDR=\"https://a\"\n", []string{"VAULT_ADDR", "https://a"}, "", nil, true},
		{"every copy of a key is updated, reported once",
			"VAULT_ADDR=x\nVAULT_ADDR=y\n", []string{"VAULT_ADDR", "z"}, "VAULT_ADDR=z\nVAULT_ADDR=z\n", []string{"VAULT_ADDR: updated"}, true},
		{"a commented-out key is a comment",
			"#VAULT_ADDR=https://example\n", []string{"VAULT_ADDR", "https://a"},
			"#VAULT_ADDR=https://example\nVAULT_ADDR=https://a\n", []string{"VAULT_ADDR: added"}, true},
		{"CRLF and a missing last newline are kept",
			"VAULT_ADDR=a\r\nFOO=1", []string{"VAULT_ADDR", "b", "VAULT_CACERT", "/ca"},
			"VAULT_ADDR=b\r\nFOO=1\nVAULT_CACERT=/ca\n", []string{"VAULT_ADDR: updated", "VAULT_CACERT: added"}, true},
		{"VTR_HOST from the shell is recorded",
			"VAULT_ADDR=a\nVTR_HOST=old\n", []string{"VTR_HOST", "vm-new"}, "VAULT_ADDR=a\nVTR_HOST=vm-new\n", []string{"VTR_HOST: updated"}, true},
		{"VTR_HOST unset in the shell is left alone",
			"VTR_HOST=kept\n", []string{"VAULT_ADDR", "a"}, "VTR_HOST=kept\nVAULT_ADDR=a\n", []string{"VAULT_ADDR: added"}, true},
		{"VAULT_TOKEN is never written, and an operator's line is not ours to touch",
			"VAULT_ADDR=a\nVAULT_TOKEN=left\n", []string{"VAULT_TOKEN", "hvs.x"}, "", nil, true},
		{"no address anywhere", "FOO=1\n", nil, "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "env")
			if err := os.WriteFile(path, []byte(tt.old), 0o600); err != nil {
				t.Fatal(err)
			}
			e, err := planEnv(path, getenv(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			if string(e.data) != tt.want || !reflect.DeepEqual(e.changes, tt.changes) || e.hasAddr != tt.hasAddr {
				t.Fatalf("planEnv:\n data %q\n changes %q hasAddr %v\nwant\n data %q\n changes %q hasAddr %v",
					e.data, e.changes, e.hasAddr, tt.want, tt.changes, tt.hasAddr)
			}
		})
	}
}

func TestPlanEnvFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "env")
	tests := []struct {
		name      string
		env       []string
		has, lack []string
		changes   []string
	}{
		{"address and host",
			[]string{"VAULT_ADDR", "https://a", "VTR_HOST", "vm1", "VAULT_TOKEN", "hvs.x"},
			[]string{"\nVAULT_ADDR=https://a\n", "\nVTR_HOST=vm1\n", "\n#VTR_NOTIFY_COMMAND=", "\n#VTR_METRICS_FILE="},
			[]string{"#VAULT_ADDR=", "#VTR_HOST=", "hvs.x"},
			[]string{"VAULT_ADDR: added", "VTR_HOST: added"}},
		{"bare shell",
			nil,
			[]string{"\n#VAULT_ADDR=https://", "\n#VTR_HOST=\n", "\n#VTR_NOTIFY_COMMAND=", "\n#VTR_METRICS_FILE=", "Never put a token here"},
			[]string{"\nVAULT_ADDR=", "\nVTR_HOST="},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := planEnv(path, getenv(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.has {
				if !strings.Contains(string(e.data), s) {
					t.Errorf("fresh env file lacks %q:\n%s", s, e.data)
				}
			}
			for _, s := range tt.lack {
				if strings.Contains(string(e.data), s) {
					t.Errorf("fresh env file has %q:\n%s", s, e.data)
				}
			}
			if !reflect.DeepEqual(e.changes, tt.changes) {
				t.Errorf("changes %q, want %q", e.changes, tt.changes)
			}
		})
	}
}

func TestPlanEnvRefusesALineBreak(t *testing.T) {
	path := filepath.Join(t.TempDir(), "env")
	_, err := planEnv(path, getenv("VAULT_ADDR", "https://a\nVAULT_TOKEN=x"))
	if err == nil || !strings.Contains(err.Error(), "VAULT_ADDR") || strings.Contains(err.Error(), "https://a") {
		t.Fatalf("error %v", err)
	}
}

// TestNotifierWiring checks what systemd-analyze verify does not: that the
// service's OnFailure= names a shipped template, and that the notifier has
// no OnFailure= of its own (it would start itself when it fails).
func TestNotifierWiring(t *testing.T) {
	units := repoUnits(t)
	svc := string(units["vault-token-renew.service"])
	if !strings.Contains(svc, "\nOnFailure=vault-token-renew-notify@%N.service\n") {
		t.Fatalf("vault-token-renew.service has no OnFailure= for the notifier:\n%s", svc)
	}
	notify := string(units["vault-token-renew-notify@.service"])
	if strings.Contains(notify, "\nOnFailure=") {
		t.Fatal("the notifier has an OnFailure= of its own")
	}
	if !strings.Contains(notify, "\nExecStart=%h/.local/bin/vault-token-renew notify --unit %i\n") {
		t.Fatalf("notifier ExecStart:\n%s", notify)
	}
}
