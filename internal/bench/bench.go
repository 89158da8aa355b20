// Package bench measures the sweep and the happy path against a real dev
// Vault: the tool, the floor Vault itself allows (bare HTTP doing the same
// list and lookups), and what an operator would script with the Vault CLI.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"
	"golang.org/x/sync/errgroup"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

// Options is one bench run.
type Options struct {
	Sizes       []int // accessor counts to measure at, ascending (e.g. 1000, 5000, 10000)
	Stale       int   // periodic tokens among them (the handful a sweep must find)
	Runs        int   // repetitions per measurement; medians are reported
	Concurrency int   // lookups in flight, for the tool and the floor alike
	HandSample  int   // CLI lookups timed before scaling to N
	ScanConc    []int // concurrencies to try for the tool at the first size
	// HealN is the accessor count a new user's heals and the walk are
	// measured at; 0 skips them.
	HealN int
	Out   io.Writer
}

// Row is one measurement.
type Row struct {
	Size    int           // accessors listed
	What    string        // tool, floor, by-hand, happy-tool, happy-cli, scan-cN
	Median  time.Duration // median wall time
	PeakKB  int64         // peak RSS of the measured process, where there is one
	Note    string
	Samples int
	// Requests and Lists are what Vault received in the median run of a
	// heal (all of it) or in a run of the walk (its lookups), and how many
	// of them listed every accessor.
	Requests, Lists int
}

type env struct {
	o       Options
	ctx     context.Context
	srv     *devvault.Server
	fix     *devvault.Fixture
	tool    string // vault-token-renew binary
	cli     string // vault CLI binary
	home    string // holds .vault-token: our periodic token
	token   string
	seeded  int
	rootCli *vault.Client
}

// Run seeds the dev Vault size by size and measures at each.
func Run(ctx context.Context, o Options) ([]Row, error) {
	tmp, err := os.MkdirTemp("", "vtr-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	e, err := setup(ctx, o, tmp)
	if e != nil && e.srv != nil {
		defer e.srv.Stop(context.WithoutCancel(ctx))
	}
	if err != nil {
		return nil, err
	}
	return e.measureAll()
}

// setup builds the tool, starts a provisioned dev Vault and puts our
// periodic token in a home of its own. The server is in the returned env
// even on error, for the caller to stop.
func setup(ctx context.Context, o Options, tmp string) (*env, error) {
	e := &env{o: o, ctx: ctx, home: filepath.Join(tmp, "home")}
	if err := os.Mkdir(e.home, 0o700); err != nil {
		return nil, err
	}
	var err error
	if e.tool, err = devvault.BuildRenewer(ctx, tmp, "bench"); err != nil {
		return nil, err
	}
	if e.cli, err = devvault.Binary(ctx, o.Out); err != nil {
		return nil, err
	}
	var progress bytes.Buffer
	if e.srv, err = devvault.Start(ctx, &progress); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, progress.String())
	}
	fmt.Fprintf(o.Out, "bench: dev vault %s (%s) at %s\n", e.srv.Version, e.srv.Mode, e.srv.Addr)
	if e.fix, err = devvault.Provision(ctx, e.srv); err != nil {
		return e, err
	}
	if e.rootCli, err = e.srv.Client(e.srv.RootToken); err != nil {
		return e, err
	}
	ours, err := e.fix.MintPeriodic(ctx, "devvm-wizard")
	if err != nil {
		return e, err
	}
	e.token = ours.Secret
	return e, os.WriteFile(filepath.Join(e.home, ".vault-token"), []byte(ours.Secret), 0o600)
}

// measureAll takes every measurement: the happy path and the banner once,
// then at each size the tool against its floor (and, at the first size,
// the concurrency scan and the CLI loop), then a new user's heals.
func (e *env) measureAll() ([]Row, error) {
	rec := &recorder{out: e.o.Out}
	// The happy path does not depend on N: measure it once, on a quiet Vault.
	err := rec.add(e.happyTool())
	for _, m := range []func() (Row, error){e.happyCLI, e.brief, e.briefFloor} {
		if err == nil {
			err = rec.add(m())
		}
	}
	for i, size := range e.o.Sizes {
		if err == nil {
			err = e.measureAt(rec, size, i == 0)
		}
	}
	if err != nil || e.o.HealN == 0 {
		return rec.rows, err
	}
	heals, err := e.newUser(e.o.HealN)
	for _, r := range heals {
		rec.add(r, nil)
	}
	return rec.rows, err
}

// measureAt seeds up to size accessors and measures the tool against its
// floor there; at the first size also the concurrency scan and the CLI
// loop.
func (e *env) measureAt(rec *recorder, size int, first bool) error {
	if err := e.seed(size); err != nil {
		return err
	}
	n, err := e.listCount()
	if err != nil {
		return err
	}
	if first {
		for _, c := range e.o.ScanConc {
			if err := rec.add(e.tool_(n, c, fmt.Sprintf("scan-c%d", c))); err != nil {
				return err
			}
		}
	}
	tool, floor, err := e.toolAndFloor(n)
	if err == nil {
		err = rec.add(tool, nil)
	}
	if err == nil {
		err = rec.add(floor, nil)
	}
	if err == nil && first {
		err = rec.add(e.byHand(n))
	}
	return err
}

// recorder keeps the rows measured so far and prints each as it comes.
type recorder struct {
	out  io.Writer
	rows []Row
}

// add records r, unless err says the measurement failed.
func (rec *recorder) add(r Row, err error) error {
	if err != nil {
		return err
	}
	rec.rows = append(rec.rows, r)
	fmt.Fprintf(rec.out, "bench: %-10s N=%-6d median %-10s peak %s %s\n", r.What, r.Size, r.Median.Round(time.Millisecond), kb(r.PeakKB), r.Note)
	return nil
}

func kb(k int64) string {
	if k == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fMB", float64(k)/1024)
}

// seed creates orphan tokens with root until about size accessors exist;
// the first Stale of them carry the periodic display name.
func (e *env) seed(size int) error {
	n, err := e.listCount()
	if err != nil {
		return err
	}
	want := size - n
	if want <= 0 {
		return nil
	}
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(16)
	for i := e.seeded; i < e.seeded+want; i++ {
		g.Go(func() error {
			req := &vault.TokenCreateRequest{NoParent: true, TTL: "2h", Policies: []string{"default"}, DisplayName: fmt.Sprintf("bench-%d", i)}
			if i < e.o.Stale { // a stale periodic token of this machine (untagged, as a manual re-mint)
				req.TTL, req.Period, req.DisplayName = "", "768h", "devvm-wizard"
			}
			_, err := e.rootCli.Auth().Token().CreateWithContext(e.ctx, req)
			return err
		})
	}
	seedErr := g.Wait()
	e.seeded += want
	if seedErr != nil {
		return fmt.Errorf("bench: seed tokens: %w", seedErr)
	}
	fmt.Fprintf(e.o.Out, "bench: seeded %d tokens in %s\n", want, time.Since(start).Round(time.Millisecond))
	return nil
}

func (e *env) listCount() (int, error) {
	s, err := e.rootCli.Logical().ListWithContext(e.ctx, "auth/token/accessors")
	if err != nil || s == nil {
		return 0, err
	}
	return len(s.Data["keys"].([]interface{})), nil
}

// measure runs fn Runs times and returns the median and the largest peak.
func (e *env) measure(fn func() (time.Duration, int64, error)) (time.Duration, int64, error) {
	var ds []time.Duration
	var peak int64
	for i := 0; i < max(e.o.Runs, 1); i++ {
		d, p, err := fn()
		if err != nil {
			return 0, 0, err
		}
		ds = append(ds, d)
		peak = max(peak, p)
	}
	return median(ds), peak, nil
}

// run times a command and reads its peak RSS.
func (e *env) run(env []string, name string, args ...string) (time.Duration, int64, []byte, error) {
	cmd := exec.CommandContext(e.ctx, name, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Start()
	var peak int64
	if err == nil {
		hwm := make(chan int64, 1)
		go func() { hwm <- PeakKB(cmd.Process.Pid) }()
		err = cmd.Wait()
		peak = Peak(<-hwm, cmd.ProcessState)
	}
	d := time.Since(start)
	if err != nil {
		return d, peak, out.Bytes(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return d, peak, out.Bytes(), nil
}

// PeakKB polls a process's own peak RSS (VmHWM, in kB) until it exits,
// and returns the highest it read; 0 when it read none (a process too
// short-lived to catch).
func PeakKB(pid int) int64 {
	var peak int64
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return peak
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
				peak = max(peak, kb)
			}
		}
		if strings.Contains(string(b), "State:\tZ") {
			return peak
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Peak is a process's peak RSS in kB: VmHWM as polled (its own), else
// wait4's maxrss, an upper bound only: for a child Go starts with vfork it
// counts the parent's memory at the exec too.
func Peak(polled int64, ps *os.ProcessState) int64 {
	if polled > 0 {
		return polled
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

func (e *env) toolEnv() []string {
	return []string{"HOME=" + e.home, "PATH=" + os.Getenv("PATH"), "VAULT_ADDR=" + e.srv.Addr}
}

func (e *env) tool_(n, conc int, what string) (Row, error) {
	d, peak, err := e.measure(func() (time.Duration, int64, error) { return e.toolOnce(conc) })
	return Row{Size: n, What: what, Median: d, PeakKB: peak, Samples: e.o.Runs, Note: fmt.Sprintf("concurrency %d", conc)}, err
}

func (e *env) toolOnce(conc int) (time.Duration, int64, error) {
	d, p, out, err := e.run(e.toolEnv(), e.tool, "sweep", "--max-rps", "0", "--concurrency", fmt.Sprint(conc), "--log-format=plain")
	if err == nil && !bytes.Contains(out, []byte(fmt.Sprintf("would revoke %d stale", min(e.o.Stale, e.seeded)))) {
		err = fmt.Errorf("sweep did not find the %d stale tokens:\n%s", e.o.Stale, out)
	}
	return d, p, err
}

// toolAndFloor alternates tool and floor runs, so that drift in what else
// the machine is doing falls on both alike.
func (e *env) toolAndFloor(n int) (Row, Row, error) {
	floorOnce := e.floorRunner()
	var tds, fds []time.Duration
	var peak int64
	for i := 0; i < max(e.o.Runs, 1); i++ {
		td, p, err := e.toolOnce(e.o.Concurrency)
		if err != nil {
			return Row{}, Row{}, err
		}
		fd, err := floorOnce()
		if err != nil {
			return Row{}, Row{}, err
		}
		tds, fds, peak = append(tds, td), append(fds, fd), max(peak, p)
	}
	tool := Row{Size: n, What: "tool", Median: median(tds), PeakKB: peak, Samples: len(tds), Note: fmt.Sprintf("concurrency %d", e.o.Concurrency)}
	floor := Row{Size: n, What: "floor", Median: median(fds), Samples: len(fds), Note: fmt.Sprintf("bare HTTP, concurrency %d", e.o.Concurrency)}
	return tool, floor, nil
}

// lastLine is a run's closing line.
func lastLine(out []byte) []byte {
	lines := bytes.Split(bytes.TrimRight(out, "\n"), []byte("\n"))
	return lines[len(lines)-1]
}

func median(ds []time.Duration) time.Duration {
	ds = append([]time.Duration(nil), ds...)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// floorRunner returns one run of the floor: the same list and lookups as
// bare HTTP at the same concurrency, doing nothing else with the answers:
// what Vault itself allows.
func (e *env) floorRunner() func() (time.Duration, error) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: e.o.Concurrency}}
	do := func(method, path string, body []byte) ([]byte, error) {
		req, err := http.NewRequestWithContext(e.ctx, method, e.srv.Addr+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-Vault-Token", e.token)
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("%s %s: %d", method, path, resp.StatusCode)
		}
		return b, err
	}
	return func() (time.Duration, error) {
		start := time.Now()
		b, err := do("LIST", "/v1/auth/token/accessors", nil)
		if err != nil {
			return 0, err
		}
		var list struct {
			Data struct{ Keys []string } `json:"data"`
		}
		if err := json.Unmarshal(b, &list); err != nil {
			return 0, err
		}
		var g errgroup.Group
		g.SetLimit(e.o.Concurrency)
		for _, acc := range list.Data.Keys {
			g.Go(func() error {
				_, err := do("POST", "/v1/auth/token/lookup-accessor", []byte(`{"accessor":"`+acc+`"}`))
				return err
			})
		}
		err = g.Wait()
		return time.Since(start), err
	}
}

func (e *env) cliEnv() []string {
	// The CLI reads the token from ~/.vault-token, as an operator's shell would.
	return []string{"HOME=" + e.home, "PATH=" + os.Getenv("PATH"), "VAULT_ADDR=" + e.srv.Addr}
}

// byHand is the operator's shell loop: vault list, then one vault token
// lookup -accessor per accessor, one after another. It times HandSample
// lookups and scales to n when n is larger, and says so.
func (e *env) byHand(n int) (Row, error) {
	start := time.Now()
	_, _, out, err := e.run(e.cliEnv(), e.cli, "list", "-format=json", "auth/token/accessors")
	if err != nil {
		return Row{}, err
	}
	listDur := time.Since(start)
	var keys []string
	if err := json.Unmarshal(out, &keys); err != nil {
		return Row{}, fmt.Errorf("vault list: %w", err)
	}
	sample := min(e.o.HandSample, len(keys))
	lstart := time.Now()
	for _, k := range keys[:sample] {
		if _, _, _, err := e.run(e.cliEnv(), e.cli, "token", "lookup", "-accessor", k); err != nil {
			return Row{}, err
		}
	}
	per := time.Since(lstart) / time.Duration(max(sample, 1))
	total := listDur + per*time.Duration(len(keys))
	note := fmt.Sprintf("all %d lookups", len(keys))
	if sample < len(keys) {
		note = fmt.Sprintf("timed list + %d lookups (%s each), scaled to %d", sample, per.Round(time.Millisecond), len(keys))
	}
	return Row{Size: n, What: "by-hand", Median: total, Samples: 1, Note: note}, nil
}

func (e *env) happyTool() (Row, error) {
	d, peak, err := e.measure(func() (time.Duration, int64, error) {
		d, p, out, err := e.run(e.toolEnv(), e.tool, "--log-format=plain")
		if err == nil && !bytes.HasPrefix(lastLine(out), []byte("OK:")) {
			err = fmt.Errorf("happy path did not log OK: %s", out)
		}
		return d, p, err
	})
	return Row{What: "happy-tool", Median: d, PeakKB: peak, Samples: e.o.Runs, Note: "vault-token-renew on our token"}, err
}

// brief times `status --brief` after the happy path left its state: the
// login banner every shell runs, so it must be instant. It is timed over
// more runs than the rest (it is quick), at least 21.
func (e *env) brief() (Row, error) {
	runs := max(e.o.Runs, 21)
	var ds []time.Duration
	for i := 0; i < runs; i++ {
		d, _, out, err := e.run(e.toolEnv(), e.tool, "status", "--brief")
		if err != nil {
			return Row{}, err
		}
		if len(out) != 0 {
			return Row{}, fmt.Errorf("status --brief after an OK run printed %q", out)
		}
		ds = append(ds, d)
	}
	return Row{What: "brief", Median: median(ds), Samples: runs, Note: "status --brief, state file only"}, nil
}

// briefFloor times an empty Go program the same way: what any Go binary
// costs to start and exit on this machine, the floor under status --brief.
func (e *env) briefFloor() (Row, error) {
	dir, err := os.MkdirTemp("", "vtr-bench-empty-")
	if err != nil {
		return Row{}, err
	}
	defer os.RemoveAll(dir)
	src := map[string]string{"go.mod": "module empty\n\ngo 1.22\n", "main.go": "package main\n\nfunc main() {}\n"}
	for name, text := range src {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			return Row{}, err
		}
	}
	bin := filepath.Join(dir, "empty")
	build := exec.CommandContext(e.ctx, "go", "build", "-o", bin, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		return Row{}, fmt.Errorf("bench: build an empty Go program: %w\n%s", err, out)
	}
	runs := max(e.o.Runs, 21)
	var ds []time.Duration
	for i := 0; i < runs; i++ {
		d, _, _, err := e.run(e.toolEnv(), bin)
		if err != nil {
			return Row{}, err
		}
		ds = append(ds, d)
	}
	return Row{What: "brief-floor", Median: median(ds), Samples: runs, Note: "an empty Go program"}, nil
}

func (e *env) happyCLI() (Row, error) {
	d, _, err := e.measure(func() (time.Duration, int64, error) {
		start := time.Now()
		if _, _, _, err := e.run(e.cliEnv(), e.cli, "token", "lookup"); err != nil {
			return 0, 0, err
		}
		if _, _, _, err := e.run(e.cliEnv(), e.cli, "token", "renew"); err != nil {
			return 0, 0, err
		}
		return time.Since(start), 0, nil
	})
	return Row{What: "happy-cli", Median: d, Samples: e.o.Runs, Note: "vault token lookup; vault token renew"}, err
}
