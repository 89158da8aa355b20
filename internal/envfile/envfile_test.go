package envfile

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestEditKeepsEveryOtherLine(t *testing.T) {
	old := "# mine\nVAULT_ADDR=\"https://old:8200\"\r\nVTR_NOTIFY_COMMAND='notify-send x'\n\nBAO_ADDR=https://same:8200\nlast-line-without-newline"
	out, changes := Edit(old, [][2]string{{"VAULT_ADDR", "https://new:8200"}, {"BAO_ADDR", "https://same:8200"}, {"VTR_HOST", "devvm"}})
	want := "# mine\nVAULT_ADDR=https://new:8200\r\nVTR_NOTIFY_COMMAND='notify-send x'\n\nBAO_ADDR=https://same:8200\nlast-line-without-newline\nVTR_HOST=devvm\n"
	if out != want {
		t.Errorf("edited:\n%q\nwant\n%q", out, want)
	}
	if !reflect.DeepEqual(changes, []string{"VAULT_ADDR: updated", "VTR_HOST: added"}) {
		t.Errorf("changes %v", changes)
	}
	if out, changes := Edit(want, [][2]string{{"VAULT_ADDR", "https://new:8200"}}); out != want || changes != nil {
		t.Errorf("an edit that sets what is there changed %v", changes)
	}
}

func TestRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	if m, err := Read(p); err != nil || m != nil {
		t.Fatalf("a missing file: %v %v", m, err)
	}
	os.WriteFile(p, []byte("# c\n; c\nBAO_ADDR='http://b'\n VTR_HOST = devvm \nnot an assignment\n"), 0o600)
	m, err := Read(p)
	if err != nil || !reflect.DeepEqual(m, map[string]string{"BAO_ADDR": "http://b", "VTR_HOST": "devvm"}) {
		t.Fatalf("read %v %v", m, err)
	}
}

// TestCheck: a file (or directory) others may write is refused, naming
// which and why; a private one, or none, passes.
func TestCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vault-token-renew")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "env")
	if err := Check(path); err != nil {
		t.Fatalf("no env file: %v", err)
	}
	if err := os.WriteFile(path, []byte("VAULT_ADDR=http://127.0.0.1:8200\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(path); err != nil {
		t.Fatalf("a private env file: %v", err)
	}
	for _, tc := range []struct {
		name string
		p    string
		mode os.FileMode
	}{{"group-writable file", path, 0o620}, {"world-writable file", path, 0o606}, {"world-writable directory", dir, 0o777}} {
		t.Run(tc.name, func(t *testing.T) {
			fi, _ := os.Stat(tc.p)
			defer os.Chmod(tc.p, fi.Mode().Perm())
			if err := os.Chmod(tc.p, tc.mode); err != nil {
				t.Fatal(err)
			}
			var ue *UnsafeError
			if err := Check(path); !errors.As(err, &ue) || ue.Path != tc.p || !strings.Contains(ue.Why, "may write it") {
				t.Fatalf("Check = %v, want it refused for %s", err, tc.p)
			}
		})
	}
}
