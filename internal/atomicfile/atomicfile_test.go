package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func writeOld(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, e := range ents {
		if !want[e.Name()] {
			t.Errorf("unexpected file left in %s: %s", dir, e.Name())
		}
	}
}

func TestWriteKeepsRequestedMode(t *testing.T) {
	for _, perm := range []os.FileMode{0o600, 0o644, 0o755} {
		t.Run(perm.String(), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if err := Write(p, []byte("x"), perm); err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(p)
			if fi.Mode().Perm() != perm {
				t.Fatalf("mode %v, want %v", fi.Mode().Perm(), perm)
			}
		})
	}
}

func TestWriteTempFileIsNeverWiderThan0600(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, ".vault-token")
	var seen os.FileMode
	w := writer{failAt: func(step string) error {
		if step == "write" {
			m, _ := filepath.Glob(filepath.Join(dir, ".vault-token.tmp-*"))
			if len(m) != 1 {
				t.Fatalf("want one temp file at write time, got %v", m)
			}
			fi, err := os.Stat(m[0])
			if err != nil {
				t.Fatal(err)
			}
			seen = fi.Mode().Perm()
		}
		return nil
	}}
	if err := w.write(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if seen != 0o600 {
		t.Fatalf("temp file mode before any byte was written = %v, want 0600", seen)
	}
}

func TestWriteFailureLeavesOldFileByteIdentical(t *testing.T) {
	for _, step := range []string{"create", "write", "sync", "chmod", "close", "rename"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, ".vault-token")
			old := "old-token-bytes\n"
			writeOld(t, p, old)
			boom := errors.New("injected")
			w := writer{failAt: func(s string) error {
				if s == step {
					return boom
				}
				return nil
			}}
			err := w.write(p, []byte("new"), 0o600)
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want injected failure", err)
			}
			b, _ := os.ReadFile(p)
			if string(b) != old {
				t.Fatalf("old file changed: %q", b)
			}
			assertOnly(t, dir, ".vault-token")
		})
	}
}

func TestWriteRealRenameFailureKeepsOldFile(t *testing.T) {
	// A directory where the file should be makes the real rename fail.
	dir := t.TempDir()
	p := filepath.Join(dir, ".vault-token")
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "keep"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), 0o600); err == nil {
		t.Fatal("want an error renaming over a non-empty directory")
	}
	assertOnly(t, dir, ".vault-token")
}

func TestWriteDirSyncFailureIsDistinct(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, ".vault-token")
	writeOld(t, p, "old")
	w := writer{failAt: func(s string) error {
		if s == "syncdir" {
			return errors.New("injected")
		}
		return nil
	}}
	err := w.write(p, []byte("new"), 0o600)
	var dse *DirSyncError
	if !errors.As(err, &dse) {
		t.Fatalf("err = %v, want *DirSyncError", err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "new" {
		t.Fatalf("content = %q: after the rename the new token is in place", b)
	}
}

// TestWriteFollowsSymlink: a symlink at path survives and its target is
// replaced, so a token file kept elsewhere stays linked.
func TestWriteFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	realDir := filepath.Join(dir, "secrets")
	if err := os.Mkdir(realDir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(realDir, "token")
	if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, ".vault-token")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := Write(link, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(link)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("symlink was replaced by a regular file")
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatalf("target content = %q, want new", b)
	}
}
