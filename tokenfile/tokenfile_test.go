package tokenfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func writeOld(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWriteIs0600WhateverTheUmask: the token file's mode is tokenfile's
// decision (0600), not the umask's nor the old file's. How the write keeps
// the old file on failure, follows a symlink and never exposes a wider temp
// file is atomicfile's, and tested there.
func TestWriteIs0600WhateverTheUmask(t *testing.T) {
	for _, tc := range []struct {
		name  string
		umask int
		old   os.FileMode // 0: no old file
	}{
		{name: "new file, umask 022", umask: 0o022},
		{name: "new file, umask 000", umask: 0o000},
		{name: "replacing a 0644 file, umask 000", umask: 0o000, old: 0o644},
		{name: "replacing a 0400 file, umask 077", umask: 0o077, old: 0o400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev := syscall.Umask(tc.umask)
			defer syscall.Umask(prev)
			p := filepath.Join(t.TempDir(), ".vault-token")
			if tc.old != 0 {
				if err := os.WriteFile(p, []byte("old"), tc.old); err != nil {
					t.Fatal(err)
				}
			}
			if err := Write(p, "fresh"); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
			}
			if b, _ := os.ReadFile(p); string(b) != "fresh" {
				t.Errorf("content = %q", b)
			}
		})
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		content *string
		want    string
		wantErr error
	}{
		{name: "trims newline and spaces", content: ptr("  abc \n\n"), want: "abc"},
		{name: "plain", content: ptr("abc"), want: "abc"},
		{name: "empty", content: ptr(" \n"), wantErr: ErrEmpty},
		{name: "missing", wantErr: ErrMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if tc.content != nil {
				writeOld(t, p, *tc.content)
			}
			got, err := Read(p)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestLockSerialisesRuns(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, ".vault-token")
	writeOld(t, p, "x")
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			l, err := Acquire(ctx, p)
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(30 * time.Millisecond)
			inside.Add(-1)
			if err := l.Release(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Fatalf("%d runs held the lock at once", maxInside.Load())
	}
}

func TestLockTimesOutWhileHeld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, ".vault-token")
	held, err := Acquire(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err = Acquire(ctx, p)
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("err = %v, want ErrLockTimeout", err)
	}
}

func TestLockSharedThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "token")
	writeOld(t, target, "x")
	link := filepath.Join(dir, ".vault-token")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	a, err := LockPath(link)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LockPath(target)
	if err != nil {
		t.Fatal(err)
	}
	if a != target+".lock" {
		t.Fatalf("the link's lock is %s, want beside the target: %s.lock", a, target)
	}
	if a != b {
		t.Fatalf("link and target lock different files: %s vs %s", a, b)
	}
}

// TestReadRefusesWhatIsNotOneToken: each shape of a file that does not hold
// one token is ErrNotAToken, says which shape, and never echoes content.
func TestReadRefusesWhatIsNotOneToken(t *testing.T) {
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(i*7919 + i/3)
	}
	for _, tc := range []struct {
		name    string
		content []byte
		why     string
	}{
		{"two tokens on two lines", []byte("s.firstTokenSecretAAAA\ns.secondTokenSecretBBB\n"), "it holds 2 lines"},
		{"two tokens on one line", []byte("s.firstTokenSecretAAAA s.secondTokenSecretBBB"), "a space inside the token"},
		{"not UTF-8", []byte("s.abc\xff\xfe\x80def"), "non-printable or non-ASCII"},
		{"a control byte", []byte("s.abc\x07def"), "non-printable or non-ASCII"},
		{"1 MiB of bytes", random, "longer than 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), ".vault-token")
			if err := os.WriteFile(p, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Read(p)
			var nt *NotATokenError
			if !errors.Is(err, ErrNotAToken) || !errors.As(err, &nt) || nt.Path != p {
				t.Fatalf("err = %v, want a NotATokenError for %s", err, p)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Errorf("err %q does not say %q", err, tc.why)
			}
			if strings.Contains(err.Error(), "TokenSecret") || strings.Contains(err.Error(), "abc") {
				t.Errorf("err %q echoes the file's content", err)
			}
		})
	}
	for _, ok := range []string{"hvs.CAESIJ4x2", "s.not-a-real-token\n", "  b.AAAAAQ_x-y.z\r\n"} {
		p := filepath.Join(t.TempDir(), ".vault-token")
		if err := os.WriteFile(p, []byte(ok), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := Read(p); err != nil || got != strings.TrimSpace(ok) {
			t.Errorf("Read(%q) = %q, %v; want the token", ok, got, err)
		}
	}
}

// TestSettleWaitsForTheWritesToStop: Settle returns only after a burst of
// renames over the file has ended, and returns by its limit while writes
// go on. The checks are on order (the writer had stopped, or had not),
// never on how long anything took.
func TestSettleWaitsForTheWritesToStop(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".vault-token")
	writeOld(t, p, "s.first")
	write := func(i int) {
		tmp := p + ".tmp"
		os.WriteFile(tmp, []byte("s.token-"+strings.Repeat("x", i)), 0o600)
		os.Rename(tmp, p)
	}
	var stopped atomic.Bool
	go func() {
		for i := 0; i < 15; i++ {
			write(i)
			time.Sleep(20 * time.Millisecond)
		}
		stopped.Store(true)
	}()
	Settle(context.Background(), p, 150*time.Millisecond, time.Minute)
	if !stopped.Load() {
		t.Fatal("Settle returned while the file was still being rewritten")
	}

	var done atomic.Bool
	defer done.Store(true)
	go func() {
		for i := 0; !done.Load(); i++ {
			write(i % 50)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	Settle(context.Background(), p, time.Hour, 300*time.Millisecond)
	if done.Load() {
		t.Fatal("premise: the writer stopped by itself")
	}
}

// TestReadRefusesAFIFOAtOnce: a named pipe as the token file is refused
// without waiting for a writer (the open would block forever otherwise).
func TestReadRefusesAFIFOAtOnce(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".vault-token")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Read(p); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotAToken) || !strings.Contains(err.Error(), "named pipe (FIFO)") {
			t.Fatalf("Read of a FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read of a FIFO hangs")
	}
}

// TestTighten: a token file others may read becomes 0600; a private one
// is left alone.
func TestTighten(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".vault-token")
	if err := os.WriteFile(p, []byte("tok"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o644)
	was, changed, err := Tighten(p)
	fi, _ := os.Stat(p)
	if err != nil || !changed || was != 0o644 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("Tighten: was %o changed %v err %v, now %o", was, changed, err, fi.Mode().Perm())
	}
	if _, changed, err := Tighten(p); changed || err != nil {
		t.Fatalf("a private file was changed again (%v, %v)", changed, err)
	}
}
