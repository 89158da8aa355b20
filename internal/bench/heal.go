package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

// walkRunsMax bounds the heals that walk: at 100k accessors each takes
// about as long as the whole rest of the bench.
const walkRunsMax = 3

// heals measures a heal at n accessors, through a counting proxy: from a
// whole ledger (Runs times), and one that walks because the state file is
// gone, as the first heal after the upgrade does (at most walkRunsMax
// times). Each sample is a fresh login in the file and one run of the tool;
// a walk leaves the ledger whole, for the ledger heal after it.
func (e *env) heals(n int) ([]Row, error) {
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
	var ledger, walk []healSample
	for i := 0; i < max(e.o.Runs, 1); i++ {
		if i < walkRunsMax {
			if err := os.RemoveAll(filepath.Join(e.home, ".local", "state")); err != nil {
				return nil, err
			}
			s, err := e.healOnce(c, "walked ")
			if err != nil {
				return nil, err
			}
			walk = append(walk, s)
		}
		s, err := e.healOnce(c, "from the ledger")
		if err != nil {
			return nil, err
		}
		ledger = append(ledger, s)
	}
	return []Row{healRow(listed, "heal-ledger", ledger), healRow(listed, "heal-walk", walk)}, nil
}

type healSample struct {
	took     time.Duration
	requests int
	seen     map[string]int
}

// healOnce logs in (a fresh token in the file, as `vault login` leaves it)
// and runs the tool through the counter, which must then HEAL with how in
// its closing line.
func (e *env) healOnce(c *devvault.Counter, how string) (healSample, error) {
	login, err := e.fix.Login(e.ctx)
	if err != nil {
		return healSample{}, err
	}
	if err := os.WriteFile(filepath.Join(e.home, ".vault-token"), []byte(login.Secret), 0o600); err != nil {
		return healSample{}, err
	}
	c.Take()
	env := append(e.toolEnv(), "VAULT_ADDR="+c.Addr)
	d, _, out, err := e.run(env, e.tool, "--log-format=plain", "--timeout=15m")
	seen, total := c.Take()
	last := string(lastLine(out))
	if err == nil && (!strings.HasPrefix(last, "HEALED:") || !strings.Contains(last, how)) {
		err = fmt.Errorf("bench: a heal did not end HEALED %s:\n%s", how, bytes.ReplaceAll(out, []byte(login.Secret), []byte("[login token]")))
	}
	return healSample{took: d, requests: total, seen: seen}, err
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
	return Row{Size: listed, What: what, Median: m.took, Samples: len(ss), Requests: m.requests, Lists: m.seen["LIST /v1/auth/token/accessors"],
		Note: strings.Join(parts, "; ")}
}
