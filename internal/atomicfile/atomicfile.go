// Package atomicfile replaces a file so that readers see the old content or
// the new, never a mix, a truncation or a wider mode. Every writer of a
// file the tool keeps (the token file, the run state, the metrics, the
// installed binary, units, env file) uses it.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// failAt lets tests make one step of Write fail; nil in production.
var failAt func(step string) error

func step(name string) error {
	if failAt == nil {
		return nil
	}
	return failAt(name)
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
	target, err := Resolve(path)
	if err != nil {
		return err
	}
	return write(target, data, perm)
}

// WriteNoFollow is Write for a file in a directory that others may write
// (node_exporter's textfile directory): a symlink at path is replaced
// itself, never followed, so nobody can point the write (or the mode) at
// another file of the user's.
func WriteNoFollow(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm)
}

func write(target string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(target)
	if err := step("create"); err != nil {
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
	// Each step has a fault seam (step) of its name, for the tests.
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
		if err = step(st.name); err == nil {
			err = st.do()
		}
		if err != nil {
			return fmt.Errorf("%s temp file %s: %w", st.name, tmpName, err)
		}
	}
	if err = step("rename"); err == nil {
		err = os.Rename(tmpName, target)
	}
	if err != nil {
		return fmt.Errorf("rename temp file over %s: %w", target, err)
	}
	if derr := syncDir(dir); derr != nil {
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

func syncDir(dir string) error {
	if err := step("syncdir"); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
