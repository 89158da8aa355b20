package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/devvm/vault-token-renew/internal/devvault"
	"github.com/devvm/vault-token-renew/internal/runstate"
)

const (
	listKey   = "LIST /v1/auth/token/accessors"
	lookupKey = "POST /v1/auth/token/lookup-accessor"
	// walkWindow is how long the walk runs at its default rate cap: long
	// enough to measure the rate, where the whole walk would take hours.
	walkWindow = 30 * time.Second
	// defaultWalkRPS is the walk's rate cap by default (the tool's own
	// default, not imported from package main).
	defaultWalkRPS = 25
)

// newUser measures, at n accessors, a big Vault as a new user meets it,
// every request counted by a proxy in front of Vault: a fresh install (our
// token minted by hand in the file, no ledger), an OK run, a login and a
// heal; a second heal (Runs times); a manual re-mint, an OK run and a heal;
// a heal with the state file gone. None may walk. Then the walk of its own:
// a window at its default rate cap, an uncapped run SIGKILLed past half,
// and the resumed run to the end; after it the ledger is whole and a heal
// says nothing may remain.
func (e *env) newUser(n int) ([]Row, error) {
	if err := e.seed(n); err != nil {
		return nil, err
	}
	listed, err := e.listCount()
	if err != nil {
		return nil, err
	}
	c, err := devvault.StartCounter(e.srv.Addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	u := &user{e: e, c: c, home: filepath.Join(filepath.Dir(e.home), "new-user"), n: listed}
	if err := os.Mkdir(u.home, 0o700); err != nil {
		return nil, err
	}
	rows, err := u.heals()
	if err != nil {
		return rows, err
	}
	walks, err := u.walks()
	rows = append(rows, walks...)
	if err != nil {
		return rows, err
	}
	after, err := u.heal("heal-after-walk", 1, false)
	return append(rows, after), err
}

// user is the new user's machine.
type user struct {
	e    *env
	c    *devvault.Counter
	home string
	n    int // accessors listed
	// stranded is the token the heal after the lost state could not know.
	stranded string
}

func (u *user) file() string { return filepath.Join(u.home, ".vault-token") }
func (u *user) state() string {
	return filepath.Join(u.home, ".local", "state", "vault-token-renew", "state.json")
}

func (u *user) put(secret string) error { return os.WriteFile(u.file(), []byte(secret), 0o600) }

func (u *user) env() []string {
	return []string{"HOME=" + u.home, "PATH=" + os.Getenv("PATH"), "VAULT_ADDR=" + u.c.Addr}
}

// heals are the four heals a new user meets before any walk.
func (u *user) heals() ([]Row, error) {
	first, err := u.e.fix.MintPeriodic(u.e.ctx, "devvm-wizard")
	if err != nil {
		return nil, err
	}
	if err := u.put(first.Secret); err != nil {
		return nil, err
	}
	if err := u.ok(); err != nil {
		return nil, err
	}
	var rows []Row
	for _, h := range []struct {
		what   string
		runs   int
		before func() error
	}{
		{"heal-fresh", 1, nil},
		{"heal-second", max(u.e.o.Runs, 1), nil},
		{"heal-remint", 1, u.remint},
		{"heal-lost-state", 1, func() error { return os.RemoveAll(filepath.Join(u.home, ".local", "state")) }},
	} {
		if h.before != nil {
			if err := h.before(); err != nil {
				return rows, err
			}
		}
		r, err := u.heal(h.what, h.runs, true)
		if err != nil {
			return rows, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// remint is the runbook's manual re-mint, then the OK run that records it.
func (u *user) remint() error {
	m, err := u.e.fix.MintPeriodic(u.e.ctx, "devvm-wizard")
	if err != nil {
		return err
	}
	if err := u.put(m.Secret); err != nil {
		return err
	}
	return u.ok()
}

func (u *user) ok() error {
	_, _, out, err := u.e.run(u.env(), u.e.tool, "--log-format=plain")
	if err == nil && !bytes.HasPrefix(lastLine(out), []byte("OK:")) {
		err = fmt.Errorf("bench: the run on our token did not end OK:\n%s", out)
	}
	u.c.Take()
	return err
}

// heal logs in and heals, runs times; every heal must revoke the token it
// replaced (and a re-mint the OK run recorded) without a LIST, and say
// whether tokens may remain (gap).
func (u *user) heal(what string, runs int, gap bool) (Row, error) {
	var ss []healSample
	for range runs {
		prev, err := u.e.fix.LookupSecret(u.e.ctx, u.secret())
		if err != nil {
			return Row{}, err
		}
		login, err := u.e.fix.Login(u.e.ctx)
		if err != nil {
			return Row{}, err
		}
		if err := u.put(login.Secret); err != nil {
			return Row{}, err
		}
		u.c.Take()
		d, _, out, err := u.e.run(u.env(), u.e.tool, "--log-format=plain")
		seen, total := u.c.Take()
		last := string(lastLine(out))
		switch {
		case err != nil:
			return Row{}, err
		case !strings.HasPrefix(last, "HEALED:"):
			return Row{}, fmt.Errorf("bench: %s did not end HEALED:\n%s", what, bytes.ReplaceAll(out, []byte(login.Secret), []byte("[login]")))
		case strings.Contains(last, "may remain") != gap:
			return Row{}, fmt.Errorf("bench: %s says tokens may remain: %v, want %v:\n%s", what, !gap, gap, last)
		}
		_, alive, err := u.e.fix.LookupAccessor(u.e.ctx, prev.Accessor)
		switch {
		case err != nil:
			return Row{}, err
		case alive && what == "heal-lost-state":
			u.stranded = prev.Accessor // no ledger knows it: the walk must find it
		case alive:
			return Row{}, fmt.Errorf("bench: %s left the token it replaced (%s) alive", what, prev.Accessor)
		}
		ss = append(ss, healSample{took: d, requests: total, seen: seen, line: last})
	}
	return healRow(u.n, what, ss), nil
}

func (u *user) secret() string {
	b, _ := os.ReadFile(u.file())
	return strings.TrimSpace(string(b))
}

// walks: a window at the default rate cap, cut by --timeout; an uncapped
// run killed past half; the run that resumes and ends it.
func (u *user) walks() ([]Row, error) {
	// At the default cap the whole walk takes hours: a window of it shows
	// the rate. A small Vault (the smoke test) gets a window of half its
	// walk, so that it is still cut short.
	window := min(walkWindow, max(time.Second, time.Duration(float64(u.n)/(2*defaultWalkRPS)*float64(time.Second))))
	capped, err := u.walk("walk-capped", []string{"--timeout", window.String()}, 0)
	if err != nil {
		return nil, err
	}
	killed, err := u.walk("walk-killed", []string{"--max-rps", "0"}, 0.5)
	if err != nil {
		return []Row{capped}, err
	}
	resumed, err := u.walk("walk-resumed", []string{"--max-rps", "0"}, 0)
	if killed.Note == endedBeforeKill {
		resumed.Note = "nothing left: the run before it ended before its kill"
	}
	rows := []Row{capped, killed, resumed}
	if err != nil {
		return rows, err
	}
	st, err := runstate.Load(u.state())
	if err != nil {
		return rows, err
	}
	if l := st.LedgerFor(u.file()); l.Gap().String() != "none" || l.Walk != nil {
		return rows, fmt.Errorf("bench: after the walk the ledger has gap %v (walk %+v)", l.Gap(), l.Walk)
	}
	if _, alive, err := u.e.fix.LookupAccessor(u.e.ctx, u.stranded); err != nil || alive || u.stranded == "" {
		return rows, fmt.Errorf("bench: the walk left the token the lost state stranded (%q) alive (%v)", u.stranded, err)
	}
	return rows, nil
}

// walk runs `sweep --apply --if-gap` with args, SIGKILLed once its place
// passes killAt of the accessors (0: never), and counts what Vault got.
func (u *user) walk(what string, args []string, killAt float64) (Row, error) {
	cmd := exec.CommandContext(u.e.ctx, u.e.tool, append([]string{"sweep", "--apply", "--if-gap", "--log-format=plain"}, args...)...)
	cmd.Env = u.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	u.c.Take()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Row{}, err
	}
	if killAt > 0 {
		go u.killPast(cmd.Process, killAt)
	}
	hwm := make(chan int64, 1)
	go func() { hwm <- PeakKB(cmd.Process.Pid) }()
	werr := cmd.Wait()
	d := time.Since(start)
	seen, _ := u.c.Take()
	peak := Peak(<-hwm, cmd.ProcessState)
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	last := string(lastLine(out.Bytes()))
	complete := werr == nil && (strings.Contains(last, "the ledger is complete again") || strings.Contains(last, "nothing to walk"))
	note := fmt.Sprintf("%.0f lookups/s", float64(seen[lookupKey])/d.Seconds())
	switch {
	case killAt > 0 && !ws.Signaled() && complete:
		note = endedBeforeKill // a small Vault: one step, done before the poll saw it
	case killAt > 0 && !ws.Signaled():
		return Row{}, fmt.Errorf("bench: %s was to be killed past %.0f%%, and ended: %v\n%s", what, 100*killAt, werr, out.String())
	case what == "walk-capped" && !strings.Contains(last, "stopped looking up after"):
		return Row{}, fmt.Errorf("bench: %s was to be cut short by --timeout:\n%s", what, out.String())
	case killAt == 0 && what != "walk-capped" && !complete:
		return Row{}, fmt.Errorf("bench: %s did not complete (%v):\n%s", what, werr, out.String())
	}
	return Row{Size: u.n, What: what, Median: d, PeakKB: peak, Samples: 1, Requests: seen[lookupKey], Lists: seen[listKey], Note: note}, nil
}

const endedBeforeKill = "ended before its kill"

// killPast SIGKILLs p once the walk's saved place passes frac of the
// accessors.
func (u *user) killPast(p *os.Process, frac float64) {
	for {
		time.Sleep(20 * time.Millisecond)
		st, err := runstate.Load(u.state())
		if w := st.LedgerFor(u.file()).Walk; err == nil && w != nil && w.Runs >= 2 && w.Fraction() >= frac {
			p.Signal(syscall.SIGKILL)
			return
		}
		if u.e.ctx.Err() != nil {
			return
		}
	}
}

type healSample struct {
	took     time.Duration
	requests int
	seen     map[string]int
	line     string
}

// healRow is the median of the samples, with the requests of the median
// run spelt out.
func healRow(listed int, what string, ss []healSample) Row {
	sort.Slice(ss, func(i, j int) bool { return ss[i].took < ss[j].took })
	m := ss[len(ss)/2]
	keys := make([]string, 0, len(m.seen))
	for k := range m.seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, m.seen[k])
	}
	return Row{Size: listed, What: what, Median: m.took, Samples: len(ss), Requests: m.requests, Lists: m.seen[listKey],
		Note: strings.Join(parts, "; ")}
}
