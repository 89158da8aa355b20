//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/bench"
)

// TestBenchSmoke runs the bench at a small N with no thresholds, so that
// `mage bench` never rots.
func TestBenchSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out strings.Builder
	rows, err := bench.Run(ctx, bench.Options{Sizes: []int{40}, Stale: 3, Runs: 1, Concurrency: 4, HandSample: 3, ScanConc: []int{2}, HealN: 60, Out: &out})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range rows {
		got[r.What] = r.Median > 0
	}
	for _, w := range []string{"happy-tool", "happy-cli", "scan-c2", "tool", "floor", "by-hand",
		"heal-fresh", "heal-second", "heal-remint", "heal-lost-state", "heal-after-walk", "walk-capped", "walk-killed", "walk-resumed"} {
		if !got[w] {
			t.Errorf("no measurement %q", w)
		}
	}
	for _, r := range rows {
		if strings.HasPrefix(r.What, "heal-") && (r.Lists != 0 || r.Requests == 0 || r.Requests > 16) {
			t.Errorf("%s sent %d requests, %d lists, want no list and at most 16: %s", r.What, r.Requests, r.Lists, r.Note)
		}
		if r.What == "walk-capped" && (r.Lists != 1 || r.Requests == 0) {
			t.Errorf("the capped walk listed %d times and looked up %d: %s", r.Lists, r.Requests, r.Note)
		}
	}
	dir := t.TempDir()
	if err := bench.Write(dir, rows, "smoke"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"bench.csv", "bench.md", "sweep-time.svg"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("%s not written: %v", f, err)
			continue
		}
		if fi.Size() == 0 {
			t.Errorf("%s written empty", f)
		}
	}
	t.Log(bench.Table(rows))
}
