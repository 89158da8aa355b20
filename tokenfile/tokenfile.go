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
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"

	"github.com/devvm/vault-token-renew/internal/atomicfile"
)

// DefaultPath is the token file to manage: VTR_TOKEN_FILE when set (the
// tool's own setting, for a token file elsewhere), else the one the
// operator's CLI writes: BAO_TOKEN_PATH when set (the bao CLI's setting;
// empty counts as unset, as the bao CLI takes it), else ~/.vault-token
// below home; "" with none.
func DefaultPath(home string, getenv func(string) string) string {
	for _, k := range []string{"VTR_TOKEN_FILE", "BAO_TOKEN_PATH"} {
		if p := getenv(k); p != "" {
			return p
		}
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".vault-token")
}

// ErrMissing means there is no token file to manage.
var ErrMissing = errors.New("token file does not exist")

// ErrEmpty means the token file holds nothing but whitespace.
var ErrEmpty = errors.New("token file is empty")

// ErrLockTimeout means another run held the lock for longer than we waited.
var ErrLockTimeout = errors.New("another run holds the token file lock")

// ErrNotAToken means the file does not hold one token: two lines, spaces
// inside, bytes a token never has, or far more than any token's length.
// The error is a *NotATokenError saying which.
var ErrNotAToken = errors.New("token file does not hold one token")

// NotATokenError says what is wrong with a token file's content, without
// any of it.
type NotATokenError struct {
	Path string
	Why  string // "it holds 2 lines", "it holds non-printable bytes", ...
}

func (e *NotATokenError) Error() string {
	return fmt.Sprintf("%s: %s: %s", ErrNotAToken, e.Path, e.Why)
}
func (e *NotATokenError) Is(target error) bool { return target == ErrNotAToken }

// MaxTokenLen bounds a token file: Vault's and OpenBao's tokens, batch
// tokens included, are a few hundred bytes at most.
const MaxTokenLen = 4096

// Read returns the token in path with surrounding whitespace and newlines
// removed. A file that does not hold exactly one token is ErrNotAToken and
// is never sent to Vault. The error never contains the file's content.
//
// The file is opened without blocking and must be a regular file: a named
// pipe (FIFO) would otherwise hang the open, and a run holding the lock,
// until somebody writes to it.
func Read(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s", ErrMissing, path)
	}
	if err != nil {
		return "", fmt.Errorf("read token file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read token file %s: %w", path, err)
	}
	if fi.IsDir() { // a filesystem matter, as it always was: move it aside
		return "", fmt.Errorf("read token file %s: %w", path, &fs.PathError{Op: "read", Path: path, Err: syscall.EISDIR})
	}
	if !fi.Mode().IsRegular() {
		return "", &NotATokenError{Path: path, Why: "it is " + kind(fi.Mode()) + ", not a regular file"}
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxTokenLen+1))
	if err != nil {
		return "", fmt.Errorf("read token file %s: %w", path, err)
	}
	if len(b) > MaxTokenLen {
		return "", &NotATokenError{Path: path, Why: fmt.Sprintf("it is longer than %d bytes, far more than any token", MaxTokenLen)}
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%w: %s", ErrEmpty, path)
	}
	if why := notOneToken(tok); why != "" {
		return "", &NotATokenError{Path: path, Why: why}
	}
	return tok, nil
}

// kind names a file that is not a regular one.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return "not a regular file (" + m.Type().String() + ")"
}

// Tighten makes the token file (or its target) 0600 when group or others
// may read it, and says what it was: a token left in a 0644 file stays
// readable by every local user for as long as it lives, and only a heal
// would ever rewrite it. A file of another user is left alone.
func Tighten(path string) (was fs.FileMode, changed bool, err error) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 == 0 {
		return 0, false, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fi.Mode().Perm(), false, nil
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fi.Mode().Perm(), false, fmt.Errorf("make the token file %s private: %w", path, err)
	}
	return fi.Mode().Perm(), true, nil
}

// notOneToken says why s (trimmed) is not one token, or "": a token is one
// run of printable ASCII, with no space in it.
func notOneToken(s string) string {
	if n := strings.Count(s, "\n") + 1; n > 1 {
		return fmt.Sprintf("it holds %d lines; a token file holds one token", n)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '\t':
			return "it holds a space inside the token; a token file holds one token"
		case c < 0x21 || c > 0x7e:
			return "it holds non-printable or non-ASCII bytes, which no token has"
		}
	}
	return ""
}

// ErrNotDurable means the new token is in place but its directory was not
// synced, so a crash could still bring the old file back. Callers must not
// treat it as "old file kept".
var ErrNotDurable = errors.New("token file written but not yet durable")

// Write replaces the token file at path with token via atomicfile.Write
// with mode 0600: a failure before the rename leaves the old file
// byte-identical; a symlink keeps its link and its target is replaced. An
// error wrapping ErrNotDurable means the new token is already in place.
func Write(path, token string) error {
	err := atomicfile.Write(path, []byte(token), 0o600)
	var dse *atomicfile.DirSyncError
	if errors.As(err, &dse) {
		return fmt.Errorf("%w: %w", ErrNotDurable, err)
	}
	return err
}

// Settle waits until the file at path has not changed (inode, size, mtime)
// for quiet, for at most limit, or until ctx ends: a login or an editor may
// still be writing it, and a run started by a change of the file (heal on
// login) must read it once it is done, and once per burst of writes. A
// missing file counts as a state like any other.
func Settle(ctx context.Context, path string, quiet, limit time.Duration) {
	poll := min(max(quiet/8, 10*time.Millisecond), 250*time.Millisecond)
	deadline := time.Now().Add(limit)
	last, since := fileState(path), time.Now()
	for time.Since(since) < quiet && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(poll):
		}
		if now := fileState(path); now != last {
			last, since = now, time.Now()
		}
	}
}

type state struct {
	ino, size int64
	mtime     time.Time
	exists    bool
}

func fileState(path string) state {
	fi, err := os.Stat(path)
	if err != nil {
		return state{}
	}
	st := state{size: fi.Size(), mtime: fi.ModTime(), exists: true}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = int64(sys.Ino)
	}
	return st
}

// Lock is an exclusive advisory lock held for one run.
type Lock struct{ f *flock.Flock }

// LockPath is the lock file that guards the token file at path: beside the
// symlink's target, so every path that reaches the same file shares a lock.
func LockPath(path string) (string, error) {
	target, err := atomicfile.Resolve(path)
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
