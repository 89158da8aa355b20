package livetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/tokenfile"
)

// TestSwapWaitsForTheRunLock: while a timer run holds the lock, liveTest's
// swap of the token file waits; it never interleaves with the run.
func TestSwapWaitsForTheRunLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".vault-token")
	if err := os.WriteFile(p, []byte("before"), 0o600); err != nil {
		t.Fatal(err)
	}
	held, err := tokenfile.Acquire(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	r := &run{o: Options{TokenFile: p}, ctx: context.Background()}
	done := make(chan error, 1)
	go func() { done <- r.swap("after") }()
	select {
	case err := <-done:
		t.Fatalf("swap finished (%v) while another run held the lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	if b, _ := os.ReadFile(p); string(b) != "before" {
		t.Fatalf("file changed under another run's lock: %q", b)
	}
	held.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "after" {
		t.Fatalf("file %q after the swap", b)
	}
}
