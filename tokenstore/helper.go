package tokenstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// ErrHelper: the token helper failed, hung, or did not keep what it was
// given. The error is a *HelperError.
var ErrHelper = errors.New("the token helper failed")

// HelperError names the helper, the operation and why, and never the token.
type HelperError struct {
	Path, Op string
	Why      string // its stderr (bounded, the token blanked), a timeout, a mismatch
	Err      error
}

func (e *HelperError) Error() string {
	return fmt.Sprintf("token helper %s %s: %s", e.Path, e.Op, e.Why)
}

func (e *HelperError) Is(target error) bool { return target == ErrHelper }
func (e *HelperError) Unwrap() error        { return e.Err }

// Helper is an external token helper, run as the vault and bao CLIs run it
// (command/token/helper_external.go in both): one argument, get or store;
// get prints the token, store reads it on stdin.
type Helper struct {
	Path string // absolute, as the CLIs require
	// Env is the helper's environment: the CLI's, with the address and
	// namespace the tool uses, so a helper that keeps a token per address
	// answers for this Vault.
	Env []string
	// Addr and Namespace are those, for words; the lock (and so Key) and
	// Slot go by the helper and Addr's form of the address alone.
	Addr, Namespace string
	// LockFile is the run lock's path (in the state directory): the lock
	// of a file store is beside it; a helper has no file.
	LockFile string
	// Timeout bounds each call; 0 means 30 s. A helper that hangs (a
	// keyring waiting for a password nobody types) fails the run.
	Timeout time.Duration
}

// maxOut bounds what a helper may print: a token is short.
const maxOut = 64 << 10

func (h Helper) Read(ctx context.Context) (string, error) {
	out, err := h.run(ctx, "get", "")
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(out)
	if tok == "" {
		return "", fmt.Errorf("%w: token helper %s holds no token for %s", tokenfile.ErrEmpty, h.Path, h.Addr)
	}
	if strings.ContainsAny(tok, " \t\r\n") || len(tok) > 4096 {
		return "", &HelperError{Path: h.Path, Op: "get", Why: "it printed something other than one token"}
	}
	return tok, nil
}

// Replace stores token, then reads it back with get and requires it: a
// helper that took nothing, or something else, is a failure. After a
// failure it reads again: a helper that still holds old is left as it is;
// one that holds anything else is given old back, and the error says
// whether that held.
func (h Helper) Replace(ctx context.Context, old, token string) error {
	err := h.store(ctx, token)
	if err == nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx) // the run's deadline may be what failed
	if got, gerr := h.Read(ctx); gerr == nil && got == old {
		return fmt.Errorf("%w; it still holds the token it held", err)
	}
	if rerr := h.store(ctx, old); rerr != nil {
		return fmt.Errorf("%w; storing back the token it held failed too: %w", err, rerr)
	}
	return fmt.Errorf("%w; the token it held was stored back", err)
}

// store stores token and reads it back.
func (h Helper) store(ctx context.Context, token string) error {
	if _, err := h.run(ctx, "store", token); err != nil {
		return err
	}
	got, err := h.Read(ctx)
	if err != nil {
		return err
	}
	if got != token {
		return &HelperError{Path: h.Path, Op: "store", Why: "get does not return the token just stored"}
	}
	return nil
}

func (h Helper) Lock(ctx context.Context) (*tokenfile.Lock, error) {
	if err := os.MkdirAll(filepath.Dir(h.LockFile), 0o700); err != nil {
		return nil, err
	}
	return tokenfile.Acquire(ctx, h.LockFile)
}

func (h Helper) String() string { return "token helper " + h.Path }

// Key is the store's name in the state file: its lock's path, one per
// helper and address (Addr), whatever the namespace, as Slot has it (a
// helper that keeps a token per address is a store per address), and a
// path, as a file store's key is.
func (h Helper) Key() string { return h.LockFile }

// run runs the helper with op, stdin on its standard input, and returns
// its standard output. Its stderr goes into the error, bounded and with
// the token blanked: it is the helper's to explain a failure.
func (h Helper) run(ctx context.Context, op, stdin string) (string, error) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Path, op)
	cmd.Env, cmd.Stdin, cmd.WaitDelay = h.Env, strings.NewReader(stdin), time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &limited{w: &out, n: maxOut}, &limited{w: &errb, n: maxOut}
	err := cmd.Run()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return "", &HelperError{Path: h.Path, Op: op, Why: fmt.Sprintf("no answer within %s", timeout), Err: err}
	case err != nil:
		why := strings.TrimSpace(errb.String())
		if stdin != "" {
			why = strings.ReplaceAll(why, stdin, "<token>")
		}
		return "", &HelperError{Path: h.Path, Op: op, Why: safetext.Cut(fmt.Sprintf("%v: %s", err, safetext.Escape(why)), 300), Err: err}
	}
	return out.String(), nil
}

// limited keeps the first n bytes written to it and drops the rest.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
