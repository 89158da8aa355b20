package bench

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Goals are the targets the full bench is held to (measured on one machine,
// in one run).
const (
	goalToolOverFloor = 1.2  // sweep within 1.2x of the floor
	goalHandOverTool  = 20.0 // at least 20x faster than the CLI loop at 1k
	goalHappyRatio    = 5.0  // one run at least 5x faster than the CLI equivalent
	goalHappyPeakKB   = 30 * 1024
	goalBrief         = 5 * time.Millisecond // status --brief runs in every login shell
	goalHealRequests  = 16                   // a heal from the ledger asks a shared Vault for a handful
	goalHealTime      = time.Second
)

func find(rows []Row, what string, size int) (Row, bool) {
	for _, r := range rows {
		if r.What == what && (size < 0 || r.Size == size) {
			return r, true
		}
	}
	return Row{}, false
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

// Table renders the results as markdown, with the ratios and the goals.
func Table(rows []Row) string {
	var b strings.Builder
	goals := sizeTable(&b, rows)
	goals = append(goals, healTable(&b, rows)...)
	goals = append(goals, extras(&b, rows)...)
	b.WriteString("\nGoals:\n")
	for _, g := range goals {
		b.WriteString("- " + g + "\n")
	}
	return b.String()
}

// sizeTable is the sweep's table, a row per size, and its goals: the tool
// near its floor, far ahead of the CLI loop, memory growing slower than N.
func sizeTable(b *strings.Builder, rows []Row) []string {
	b.WriteString("| accessors | tool (sweep, dry run) | floor (bare HTTP) | tool / floor | by hand (CLI loop) | by hand / tool | tool peak RSS |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|\n")
	var sizes []int
	for _, r := range rows {
		if r.What == "tool" {
			sizes = append(sizes, r.Size)
		}
	}
	var goals []string
	for _, n := range sizes {
		t, _ := find(rows, "tool", n)
		f, _ := find(rows, "floor", n)
		tf := t.Median.Seconds() / f.Median.Seconds()
		hand, ht := "", ""
		if h, ok := find(rows, "by-hand", n); ok {
			r := h.Median.Seconds() / t.Median.Seconds()
			hand, ht = secs(h.Median), fmt.Sprintf("%.1fx", r)
			goals = append(goals, verdict(r >= goalHandOverTool, fmt.Sprintf("at %d accessors the tool is %.1fx faster than the CLI loop (goal ≥ %.0fx)", n, r, goalHandOverTool)))
		}
		fmt.Fprintf(b, "| %d | %s | %s | %.2f | %s | %s | %s |\n", n, secs(t.Median), secs(f.Median), tf, hand, ht, kb(t.PeakKB))
		goals = append(goals, verdict(tf <= goalToolOverFloor, fmt.Sprintf("at %d accessors the sweep takes %.2fx the floor (goal ≤ %.1fx)", n, tf, goalToolOverFloor)))
	}
	if len(sizes) > 1 {
		first, _ := find(rows, "tool", sizes[0])
		last, _ := find(rows, "tool", sizes[len(sizes)-1])
		memGrowth := float64(last.PeakKB) / float64(first.PeakKB)
		nGrowth := float64(last.Size) / float64(first.Size)
		goals = append(goals, verdict(memGrowth <= nGrowth, fmt.Sprintf("sweep peak memory grew %.2fx while accessors grew %.1fx (goal: no faster)", memGrowth, nGrowth)))
	}
	return goals
}

// healTable is a big Vault as a new user meets it: each heal with what
// Vault received, then the walk of its own at its default rate cap and
// uncapped, killed past half and resumed.
func healTable(b *strings.Builder, rows []Row) []string {
	heals := []struct{ what, words string }{
		{"heal-fresh", "first heal after a fresh install (an OK run, then a login)"},
		{"heal-second", "second heal"},
		{"heal-remint", "heal after a manual re-mint (and the OK run that records it)"},
		{"heal-lost-state", "heal after the state file was lost"},
		{"heal-after-walk", "heal after the walk"},
	}
	first, ok := find(rows, "heal-fresh", -1)
	if !ok {
		return nil
	}
	fmt.Fprintf(b, "\nA new user on a Vault of %d accessors, every request counted by a proxy in front of Vault (no walk before the heals):\n\n", first.Size)
	b.WriteString("| heal | wall time | requests | of them LIST | runs |\n|---|---:|---:|---:|---:|\n")
	var goals []string
	for _, h := range heals {
		r, ok := find(rows, h.what, -1)
		if !ok {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %d | %d | %d |\n", h.words, secs(r.Median), r.Requests, r.Lists, r.Samples)
		goals = append(goals, verdict(r.Requests <= goalHealRequests && r.Lists == 0 && r.Median < goalHealTime,
			fmt.Sprintf("%s at %d accessors: %d requests, %d LIST, %s (goal ≤ %d, no LIST, < 1s)", h.words, r.Size, r.Requests, r.Lists, secs(r.Median), goalHealRequests)))
	}
	fmt.Fprintf(b, "\nThe first heal: %s.\n", first.Note)
	return append(goals, walkTable(b, rows)...)
}

// walkTable is the walk of its own: its rate and time at the default cap
// (measured over a window, the whole walk projected from it) and uncapped,
// and what a kill past half cost.
func walkTable(b *strings.Builder, rows []Row) []string {
	c, okc := find(rows, "walk-capped", -1)
	k, okk := find(rows, "walk-killed", -1)
	r, okr := find(rows, "walk-resumed", -1)
	if !okc || !okk || !okr {
		return nil
	}
	capRate := float64(c.Requests) / c.Median.Seconds()
	free := k.Median + r.Median
	freeRate := float64(k.Requests+r.Requests) / free.Seconds()
	lookups := c.Requests + k.Requests + r.Requests
	peak := max(c.PeakKB, k.PeakKB, r.PeakKB)
	fmt.Fprintf(b, "\nThe walk of its own at %d accessors (`sweep --apply --if-gap`, as the walk unit runs it):\n\n", c.Size)
	b.WriteString("| walk | lookups/s | whole walk | how measured |\n|---|---:|---:|---|\n")
	fmt.Fprintf(b, "| at its default cap (%d/s) | %.1f | %s (projected from the rate) | a %s window cut by --timeout: %d lookups |\n",
		defaultWalkRPS, capRate, (time.Duration(float64(c.Size)/capRate) * time.Second).Round(time.Minute), c.Median.Round(time.Second), c.Requests)
	fmt.Fprintf(b, "| uncapped (--max-rps 0) | %.0f | %s | a run SIGKILLed past half (%s, %d lookups), then the run that resumed and ended it (%s, %d lookups) |\n",
		freeRate, free.Round(time.Second), k.Median.Round(time.Second), k.Requests, r.Median.Round(time.Second), r.Requests)
	fmt.Fprintf(b, "\nIn all, the three runs looked up %d accessors for %d (%.3fx) with %d LISTs, at a peak RSS of %s; the ledger was whole after, and the heal after it sent no LIST.\n",
		lookups, c.Size, float64(lookups)/float64(c.Size), c.Lists+k.Lists+r.Lists, kb(peak))
	goals := []string{
		verdict(capRate <= 1.05*defaultWalkRPS, fmt.Sprintf("the walk keeps to its default cap: %.1f lookups/s (cap %d/s)", capRate, defaultWalkRPS)),
		verdict(float64(lookups) <= 1.1*float64(c.Size), fmt.Sprintf("a walk cut short, then killed past half, then resumed, looked up %.3fx the accessors (goal ≤ 1.1x)", float64(lookups)/float64(c.Size))),
	}
	if t, ok := find(rows, "tool", -1); ok && t.PeakKB > 0 {
		mem, n := float64(peak)/float64(t.PeakKB), float64(c.Size)/float64(t.Size)
		goals = append(goals, verdict(mem < n, fmt.Sprintf("walk peak memory %s at %d accessors against the sweep's %s at %d: %.2fx for %.0fx the accessors (goal: slower)", kb(peak), c.Size, kb(t.PeakKB), t.Size, mem, n)))
	}
	return goals
}

// extras are the lines below the table: the happy path, the login banner,
// the concurrency scan and how the CLI loop was timed.
func extras(b *strings.Builder, rows []Row) []string {
	var goals []string
	if ht, ok := find(rows, "happy-tool", -1); ok {
		hc, _ := find(rows, "happy-cli", -1)
		r := hc.Median.Seconds() / ht.Median.Seconds()
		fmt.Fprintf(b, "\nHappy path, one run on our token: tool %s (peak RSS %s), CLI `vault token lookup` + `vault token renew` %s: %.1fx.\n",
			secs(ht.Median), kb(ht.PeakKB), secs(hc.Median), r)
		goals = append(goals, verdict(r >= goalHappyRatio, fmt.Sprintf("happy path %.1fx faster than the CLI (goal ≥ %.0fx)", r, goalHappyRatio)))
		goals = append(goals, verdict(ht.PeakKB < goalHappyPeakKB, fmt.Sprintf("happy path peak RSS %s (goal < 30MB)", kb(ht.PeakKB))))
	}
	if br, ok := find(rows, "brief", -1); ok {
		fmt.Fprintf(b, "\n`status --brief` (the login banner, state file only): median %s over %d runs", br.Median.Round(10*time.Microsecond), br.Samples)
		if fl, ok := find(rows, "brief-floor", -1); ok {
			fmt.Fprintf(b, "; an empty Go program, timed the same way: %s", fl.Median.Round(10*time.Microsecond))
		}
		b.WriteString(".\n")
		goals = append(goals, verdict(br.Median < goalBrief, fmt.Sprintf("status --brief median %s (goal < 5ms)", br.Median.Round(10*time.Microsecond))))
	}
	var scan []string
	for _, r := range rows {
		if strings.HasPrefix(r.What, "scan-c") {
			scan = append(scan, fmt.Sprintf("%s %s", strings.TrimPrefix(r.What, "scan-"), secs(r.Median)))
		}
	}
	if len(scan) > 0 {
		fmt.Fprintf(b, "\nConcurrency scan (tool, first size): %s.\n", strings.Join(scan, ", "))
	}
	for _, r := range rows {
		if r.What == "by-hand" {
			fmt.Fprintf(b, "\nBy hand: %s.\n", r.Note)
		}
	}
	return goals
}

func verdict(ok bool, s string) string {
	if ok {
		return "met: " + s
	}
	return "MISSED: " + s
}

// Write puts the CSV, the markdown table and the chart in dir.
func Write(dir string, rows []Row, header string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "bench.csv"))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"accessors", "what", "median_seconds", "peak_rss_kb", "samples", "requests", "lists", "note"})
	for _, r := range rows {
		w.Write([]string{fmt.Sprint(r.Size), r.What, fmt.Sprintf("%.4f", r.Median.Seconds()), fmt.Sprint(r.PeakKB), fmt.Sprint(r.Samples),
			fmt.Sprint(r.Requests), fmt.Sprint(r.Lists), r.Note})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.md"), []byte(header+"\n\n"+Table(rows)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sweep-time.svg"), []byte(chart(rows)), 0o644)
}

// chart draws median sweep time against accessor count for the tool and
// the floor: two lines, a few points, no dependency needed.
func chart(rows []Row) string {
	const w, h, pad = 640.0, 400.0, 60.0
	series := []struct {
		what, color string
	}{{"tool", "#d62728"}, {"floor", "#1f77b4"}}
	maxX, maxY := 1.0, 0.001
	for _, r := range rows {
		if r.What == "tool" || r.What == "floor" {
			maxX = max(maxX, float64(r.Size))
			maxY = max(maxY, r.Median.Seconds())
		}
	}
	x := func(v float64) float64 { return pad + v/maxX*(w-2*pad) }
	y := func(v float64) float64 { return h - pad - v/(maxY*1.1)*(h-2*pad) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="24" font-size="14">vault-token-renew sweep: median time against accessors</text>`+"\n", pad)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", pad, h-pad, w-pad, h-pad)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", pad, pad, pad, h-pad)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">accessors</text>`+"\n", w/2, h-15)
	fmt.Fprintf(&b, `<text x="15" y="%.0f" transform="rotate(-90 15 %.0f)" text-anchor="middle">seconds</text>`+"\n", h/2, h/2)
	for i := 0; i <= 4; i++ {
		v := maxY * 1.1 * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%.2f</text>`+"\n", pad-5, y(v)+4, v)
	}
	for li, s := range series {
		var pts []string
		for _, r := range rows {
			if r.What != s.what {
				continue
			}
			px, py := x(float64(r.Size)), y(r.Median.Seconds())
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", px, py, s.color)
			if s.what == "tool" {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`+"\n", px, h-pad+16, r.Size)
			}
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), s.color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`+"\n", w-pad-80, pad+float64(li)*16, s.color, s.what)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// Sizes are the accessor counts a bench up to n measures: 1k, 5k and 10k
// where n reaches them, and n itself.
func Sizes(n int) []int {
	var sizes []int
	for _, s := range []int{1000, 5000, 10000} {
		if s <= n {
			sizes = append(sizes, s)
		}
	}
	if len(sizes) == 0 || sizes[len(sizes)-1] != n {
		sizes = append(sizes, n)
	}
	return sizes
}

// Plan is what `mage bench` measures: the sweep up to N accessors (see
// Sizes), each measurement Runs times at Concurrency lookups in flight,
// and a new user's heals and the walk at HealN accessors (0 skips them).
type Plan struct {
	N, Runs, Concurrency, HealN int
}

// Main is `mage bench`: measure as p says, print the table, and write
// bench.csv, bench.md and sweep-time.svg in dir.
func Main(ctx context.Context, out io.Writer, dir string, p Plan) error {
	rows, err := Run(ctx, Options{
		Sizes: Sizes(p.N), Stale: 5, Runs: p.Runs, Concurrency: p.Concurrency, HandSample: 50,
		ScanConc: []int{1, 2, 4, 8, 16, 32}, HealN: p.HealN, Out: out,
	})
	if err != nil {
		return err
	}
	header := fmt.Sprintf("Measured %s on %d cores (%s/%s), %s, N=%d, HEAL_N=%d, RUNS=%d, concurrency %d.",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, "dev vault from internal/devvault", p.N, p.HealN, p.Runs, p.Concurrency)
	fmt.Fprintln(out)
	fmt.Fprintln(out, Table(rows))
	if err := Write(dir, rows, header); err != nil {
		return err
	}
	fmt.Fprintf(out, "bench: wrote %[1]s/bench.csv, %[1]s/bench.md, %[1]s/sweep-time.svg\n", dir)
	return nil
}
