// Package atomicfile replaces a file so that readers see the old content or
// the new, never a mix, a truncation or a wider mode. The tool writes the
// content of each file it keeps through it: the token file, the run state
// (the ledger is in it), the installed binary, units, drop-in and env file
// with Write, and the metrics in node_exporter's textfile directory with
// WriteNoFollow. (The lock files beside them are created empty, by flock.
// The demo and the bench seed throwaway token files and write their
// results with plain os.WriteFile: no reader of those races the write.)
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// writer is one way of writing: failAt, when set, is called before each
// step (create, write, sync, chmod, close, rename, syncdir) and fails the
// step with the error it returns. The exported functions use the zero
// writer; the tests make their own, with a failAt.
type writer struct {
	failAt func(step string) error
}

func (w writer) step(name string) error {
	if w.failAt == nil {
		return nil
	}
	return w.failAt(name)
}

// Resolve follows symlinks so that writers replace the link's target and keep
// the link itself. A path that does not exist yet resolves to itself.
func Resolve(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", path, err)
	}
	return real, nil
}

// Write replaces the file at path with data and mode perm. The data goes to
// a temp file created 0600 in the same directory (so never wider than 0600
// while it is incomplete), is synced, given perm, then renamed over path;
// the directory is synced last. A symlink at path is followed: the link
// survives and its target is replaced. Until the rename succeeds any failure
// removes the temp file and leaves the old file byte-identical. A failure to
// sync the directory after the rename is reported as *DirSyncError: the new
// content is already in place, so callers must not treat it as "old file
// kept".
func Write(path string, data []byte, perm fs.FileMode) error {
	return writer{}.write(path, data, perm)
}

// write is Write.
func (w writer) write(path string, data []byte, perm fs.FileMode) error {
	target, err := Resolve(path)
	if err != nil {
		return err
	}
	return w.replace(target, data, perm)
}

// WriteNoFollow is Write for a file in a directory that others may write
// (node_exporter's textfile directory): a symlink at path is replaced
// itself, never followed, so nobody can point the write (or the mode) at
// another file of the user's.
func WriteNoFollow(path string, data []byte, perm fs.FileMode) error {
	return writer{}.replace(path, data, perm)
}

// replace writes data to a temp file beside target and renames it over
// target, which it never follows.
func (w writer) replace(target string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(target)
	if err := w.step("create"); err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	// os.CreateTemp opens with O_EXCL and mode 0600 before umask.
	tmp, err := os.CreateTemp(dir, filepath.Base(target)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	// Each step has a fault seam (w.step) of its name, for the tests.
	for _, st := range []struct {
		name string
		do   func() error
	}{
		{"write", func() error { _, err := tmp.Write(data); return err }},
		{"sync", tmp.Sync},
		{"chmod", func() error {
			if perm == 0o600 {
				return nil
			}
			return tmp.Chmod(perm)
		}},
		{"close", tmp.Close},
	} {
		if err = w.step(st.name); err == nil {
			err = st.do()
		}
		if err != nil {
			return fmt.Errorf("%s temp file %s: %w", st.name, tmpName, err)
		}
	}
	if err = w.step("rename"); err == nil {
		err = os.Rename(tmpName, target)
	}
	if err != nil {
		return fmt.Errorf("rename temp file over %s: %w", target, err)
	}
	if derr := w.syncDir(dir); derr != nil {
		return &DirSyncError{Dir: dir, Err: derr}
	}
	return nil
}

// DirSyncError reports that the new content is in place but its directory
// entry may not survive a crash.
type DirSyncError struct {
	Dir string
	Err error
}

func (e *DirSyncError) Error() string {
	return fmt.Sprintf("file written, but syncing directory %s failed: %v", e.Dir, e.Err)
}

func (e *DirSyncError) Unwrap() error { return e.Err }

func (w writer) syncDir(dir string) error {
	if err := w.step("syncdir"); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
