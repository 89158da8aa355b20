package envfile

import (
	"os"
	"path/filepath"
	"reflect"
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
