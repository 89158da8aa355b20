// Package tokenfile owns every touch of the token file on disk: reading it,
// replacing it atomically and serialising runs with a lock beside it.
//
// The token file is the source of truth for which token this machine manages,
// and it is also the Vault CLI's default token sink, so it must never be left
// truncated, half-written or briefly world-readable.
package tokenfile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// ErrMissing means there is no token file to manage.
var ErrMissing = errors.New("token file does not exist")

// ErrEmpty means the token file holds nothing but whitespace.
var ErrEmpty = errors.New("token file is empty")

// ErrLockTimeout means another run held the lock for longer than we waited.
var ErrLockTimeout = errors.New("another run holds the token file lock")

// Resolve follows symlinks so that writers replace the link's target and keep
// the link itself. A path that does not exist yet resolves to itself.
func Resolve(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	if err != nil {
		return "", fmt.Errorf("resolve token file %s: %w", path, err)
	}
	return real, nil
}

// Read returns the token in path with surrounding whitespace and newlines
// removed. The error never contains the file's content.
func Read(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s", ErrMissing, path)
	}
	if err != nil {
		return "", fmt.Errorf("read token file %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%w: %s", ErrEmpty, path)
	}
	return tok, nil
}

// failAt lets tests make one step of Write fail; nil in production.
var failAt func(step string) error

func step(name string) error {
	if failAt == nil {
		return nil
	}
	return failAt(name)
}

// Write replaces the file at path with token, atomically. The token goes to a
// temp file created 0600 in the same directory (never wider, not even for a
// moment), is synced, then renamed over path; the directory is synced last.
// A symlink at path is followed, so the link survives and its target is
// replaced. Until the rename succeeds any failure removes the temp file and
// leaves the old file byte-identical. A failure to sync the directory after
// the rename is reported as *DirSyncError: the new content is already in
// place, so callers must not treat it as "old file kept".
func Write(path, token string) (err error) {
	target, err := Resolve(path)
	if err != nil {
		return err
	}
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
	if err = step("write"); err == nil {
		_, err = tmp.WriteString(token)
	}
	if err != nil {
		return fmt.Errorf("write temp file %s: %w", tmpName, err)
	}
	if err = step("sync"); err == nil {
		err = tmp.Sync()
	}
	if err != nil {
		return fmt.Errorf("sync temp file %s: %w", tmpName, err)
	}
	if err = step("close"); err == nil {
		err = tmp.Close()
	}
	if err != nil {
		return fmt.Errorf("close temp file %s: %w", tmpName, err)
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

// DirSyncError reports that the new token is in place but its directory entry
// may not survive a crash.
type DirSyncError struct {
	Dir string
	Err error
}

func (e *DirSyncError) Error() string {
	return fmt.Sprintf("token written, but syncing directory %s failed: %v", e.Dir, e.Err)
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

// Lock is an exclusive advisory lock held for one run.
type Lock struct{ f *flock.Flock }

// LockPath is the lock file that guards the token file at path: beside the
// symlink's target, so every path that reaches the same file shares a lock.
func LockPath(path string) (string, error) {
	target, err := Resolve(path)
	if err != nil {
		return "", err
	}
	return target + ".lock", nil
}

// Acquire takes the lock beside path, waiting until ctx ends. The lock file
// stays on disk after release: deleting it would let two runs lock different
// inodes.
func Acquire(ctx context.Context, path string) (*Lock, error) {
	lp, err := LockPath(path)
	if err != nil {
		return nil, err
	}
	f := flock.New(lp, flock.SetPermissions(0o600))
	ok, err := f.TryLockContext(ctx, 50*time.Millisecond)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %s", ErrLockTimeout, lp)
		}
		return nil, fmt.Errorf("lock %s: %w", lp, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrLockTimeout, lp)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() error { return l.f.Unlock() }
