//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metrics parses the textfile the run wrote, as node_exporter would.
func (x *h) metrics(path string) map[string]*dto.MetricFamily {
	x.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		x.t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(f)
	if err != nil {
		x.t.Fatalf("the metrics file does not parse: %v", err)
	}
	return mf
}

func gauge(t *testing.T, mf map[string]*dto.MetricFamily, name string, label ...string) float64 {
	t.Helper()
	fam, ok := mf[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
	for _, m := range fam.Metric {
		if m.TimestampMs != nil {
			t.Fatalf("%s carries a sample timestamp; the textfile collector rejects those", name)
		}
		if len(label) == 2 && (len(m.Label) != 1 || m.Label[0].GetName() != label[0] || m.Label[0].GetValue() != label[1]) {
			continue
		}
		if m.Gauge != nil {
			return m.Gauge.GetValue()
		}
		return m.Counter.GetValue()
	}
	t.Fatalf("metric %s%v missing", name, label)
	return 0
}

// TestFailuresNobodyCanMiss: OK, then a weak clobber (DRIFT), then a login
// (HEALED), on the real dev Vault. After each run the metrics, the login
// banner and the notifier say the right thing, and no secret is in any of
// them.
func TestFailuresNobodyCanMiss(t *testing.T) {
	x := newH(t)
	metricsFile := filepath.Join(x.home, "textfile", "vault_token_renew.prom")
	if err := os.MkdirAll(filepath.Dir(metricsFile), 0o755); err != nil {
		t.Fatal(err)
	}
	sent := filepath.Join(x.home, "notified.env")
	v := &visibility{x: x, metricsFile: metricsFile, sent: sent,
		env: x.env(x.f.Server.Addr, "VTR_METRICS_FILE="+metricsFile, "VTR_HOST=devvm-vis", "VTR_NOTIFY_COMMAND=env > "+sent)}

	// 1. OK.
	okAt := v.okRun()
	// 2. A weak clobber: DRIFT.
	v.driftRun(okAt)
	v.driftNotified()
	// 3. A login: HEALED.
	v.healRun(okAt)
	// status tells the whole story.
	v.statusTellsTheStory()
	// No secret in the state file or the metrics.
	for _, p := range []string{filepath.Join(x.home, ".local", "state", "vault-token-renew", "state.json"), metricsFile} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		x.mu.Lock()
		x.outputs = append(x.outputs, string(b))
		x.mu.Unlock()
	}
}

// visibility is TestFailuresNobodyCanMiss's machine: its runs' env writes
// the metrics to metricsFile and has the notifier write its environment
// to sent.
type visibility struct {
	x                 *h
	env               []string
	metricsFile, sent string
}

// brief is the login banner, status --brief.
func (v *visibility) brief() string {
	t := v.x.t
	r := v.x.runEnv(v.env, "status", "--brief")
	if r.code != 0 {
		t.Fatalf("status --brief exit %d", r.code)
	}
	return r.stdout
}

// outcome wants the outcome gauge 1 for want and 0 for the others.
func (v *visibility) outcome(mf map[string]*dto.MetricFamily, want string) {
	t := v.x.t
	t.Helper()
	for _, o := range []string{"ok", "healed", "drift", "fail"} {
		g := gauge(t, mf, "vault_token_renew_outcome", "outcome", o)
		if (o == want) != (g == 1) {
			t.Errorf("vault_token_renew_outcome{outcome=%q} = %v after a %s run", o, g, want)
		}
	}
}

// okRun: an OK run's metrics say when it succeeded and when the token
// expires, and the banner is empty. It returns the last success time.
func (v *visibility) okRun() float64 {
	t, x := v.x.t, v.x
	x.put(x.periodic("periodic"))
	start := time.Now()
	if r := x.runEnv(v.env); r.code != 0 {
		t.Fatalf("OK run: exit %d\n%s", r.code, r.stderr)
	}
	mf := x.metrics(v.metricsFile)
	v.outcome(mf, "ok")
	okAt := gauge(t, mf, "vault_token_renew_last_success_timestamp_seconds")
	if okAt < float64(start.Unix()-1) {
		t.Errorf("last success %v, before the OK run started (%d)", okAt, start.Unix())
	}
	if lastRun := gauge(t, mf, "vault_token_renew_last_run_timestamp_seconds"); okAt != lastRun {
		t.Errorf("last success %v, want the OK run's time %v (last run)", okAt, lastRun)
	}
	if exp := gauge(t, mf, "vault_token_renew_token_expiry_timestamp_seconds"); exp < float64(start.Add(767*time.Hour).Unix()) {
		t.Errorf("token expiry %v, want about now + 768h", exp)
	}
	if gauge(t, mf, "vault_token_renew_consecutive_failures") != 0 {
		t.Error("failures after an OK run")
	}
	if b := v.brief(); b != "" {
		t.Fatalf("banner after a fresh OK: %q", b)
	}
	return okAt
}

// driftRun: after a weak clobber the metrics count one failure and keep
// the OK run's success time (okAt), and the banner says DRIFT in one line.
func (v *visibility) driftRun(okAt float64) {
	t, x := v.x.t, v.x
	x.put(x.weak())
	time.Sleep(1100 * time.Millisecond) // a distinct run timestamp
	if r := x.runEnv(v.env); r.code != 1 {
		t.Fatalf("DRIFT run: exit %d\n%s", r.code, r.stderr)
	}
	mf := x.metrics(v.metricsFile)
	v.outcome(mf, "drift")
	if gauge(t, mf, "vault_token_renew_consecutive_failures") != 1 {
		t.Error("want one failure in the streak")
	}
	if g := gauge(t, mf, "vault_token_renew_last_success_timestamp_seconds"); g != okAt {
		t.Errorf("last success moved to %v on a DRIFT run; want the OK run's %v", g, okAt)
	}
	b := v.brief()
	if n := strings.Count(b, "\n"); n != 1 {
		t.Errorf("banner after DRIFT has %d newlines, want 1: %q", n, b)
	}
	if want := "vault-token-renew: DRIFT since "; !strings.HasPrefix(b, want) {
		t.Errorf("banner after DRIFT does not start with %q: %q", want, b)
	}
	if want := "(1 run): heal denied — foreign token lacks create authority; run: vault-token-renew status"; !strings.Contains(b, want) {
		t.Errorf("banner after DRIFT lacks %q: %q", want, b)
	}
}

// driftNotified: notify after the DRIFT runs the notify command with the
// outcome, the streak, the host and the summary, and no VAULT_TOKEN.
func (v *visibility) driftNotified() {
	t, x := v.x.t, v.x
	if r := x.runEnv(v.env, "notify"); r.code != 0 {
		t.Fatalf("notify: exit %d\n%s", r.code, r.stderr)
	}
	got, err := os.ReadFile(v.sent)
	if err != nil {
		t.Fatalf("the notify command did not run: %v", err)
	}
	x.mu.Lock()
	x.outputs = append(x.outputs, string(got))
	x.mu.Unlock()
	for _, want := range []string{"VTR_OUTCOME=drift\n", "VTR_RUNS=1\n", "VTR_HOST=devvm-vis\n", "VTR_SUMMARY=DRIFT: foreign token dn=token-kubernetes-woodpecker-default", "VTR_SINCE=20"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("the notify command's environment lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(string(got), "VAULT_TOKEN=") {
		t.Error("the notify command got a VAULT_TOKEN")
	}
}

// healRun: after a login heals, the streak is over, one heal is counted,
// the success time moves past okAt, and the banner is empty.
func (v *visibility) healRun(okAt float64) {
	t, x := v.x.t, v.x
	x.put(x.login())
	r := x.runEnv(v.env)
	wantExit(t, "heal", r, 0)
	wantLine(t, "heal", r.stderr, "HEALED")
	x.keep("healed", tokenOf(x))
	mf := x.metrics(v.metricsFile)
	v.outcome(mf, "healed")
	if g := gauge(t, mf, "vault_token_renew_consecutive_failures"); g != 0 {
		t.Errorf("after the heal: %v consecutive failures, want 0", g)
	}
	if g := gauge(t, mf, "vault_token_renew_heals_total"); g != 1 {
		t.Errorf("after the heal: %v heals in total, want 1", g)
	}
	if g := gauge(t, mf, "vault_token_renew_last_success_timestamp_seconds"); g <= okAt {
		t.Errorf("last success %v did not move on HEALED", g)
	}
	if b := v.brief(); b != "" {
		t.Fatalf("banner after the heal: %q", b)
	}
}

// statusTellsTheStory: after the heal, status (JSON and text) gives the
// last run's outcome, the token's expiry, the streak and the heals.
func (v *visibility) statusTellsTheStory() {
	t, x := v.x.t, v.x
	r := x.runEnv(v.env, "status", "--json")
	var st struct {
		LastRun struct {
			Outcome     string    `json:"outcome"`
			TokenExpiry time.Time `json:"token_expiry"`
			HealsTotal  int       `json:"heals_total"`
		} `json:"last_run"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json does not parse: %v", err)
	}
	if st.LastRun.Outcome != "healed" {
		t.Errorf("status --json last_run outcome %q, want healed", st.LastRun.Outcome)
	}
	if st.LastRun.HealsTotal != 1 {
		t.Errorf("status --json last_run heals_total %d, want 1", st.LastRun.HealsTotal)
	}
	if st.LastRun.TokenExpiry.IsZero() {
		t.Error("status --json last_run has no token_expiry")
	}
	r = x.runEnv(v.env, "status")
	for _, want := range []string{"\nlast run ", "(just now): HEALED: re-minted", "\ntoken expires ", "(in 32d)", "\nfailing ", "\nheals "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "failing" && f[1] != "no" {
			t.Errorf("status line %q after a heal, want failing no", line)
		}
		if len(f) > 0 && f[0] == "heals" && f[1] != "1" {
			t.Errorf("status line %q after a heal, want heals 1", line)
		}
	}
}

// TestBootBlipIsNotAnAlarm: the run starts while Vault cannot be reached
// (as a Persistent= run at boot may), Vault comes up 30 s later, and the
// run ends OK: no failed unit, so OnFailure= notifies nobody.
func TestBootBlipIsNotAnAlarm(t *testing.T) {
	x := newH(t)
	x.put(x.periodic("periodic"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here for now
	target, _ := url.Parse(x.f.Server.Addr)
	srv := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}
	t.Cleanup(func() { srv.Close() })
	go func() {
		time.Sleep(30 * time.Second)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("bring vault up at %s: %v", addr, err)
			return
		}
		srv.Serve(l)
	}()
	start := time.Now()
	r := x.runEnv(x.env("http://"+addr, "VTR_WAIT_UNREACHABLE=2m"))
	wantExit(t, fmt.Sprintf("run once vault came up (ended after %s)", time.Since(start).Round(time.Second)), r, 0)
	wantLine(t, "run once vault came up", r.stderr, "OK: renewed periodic token")
	if d := time.Since(start); d < 30*time.Second {
		t.Fatalf("the run ended after %s, before vault came up", d)
	}
	if !strings.Contains(r.stderr, "vault unreachable; waiting for it") {
		t.Fatalf("the wait was not logged:\n%s", r.stderr)
	}
	// Exit 0 is what keeps OnFailure= (and so the notifier) quiet: systemd
	// starts it only for a failed unit, which systemd-box's e.on-failure
	// check shows. Nor does the blip leave a banner or a failure streak.
	if b := x.run("status", "--brief"); b.stdout != "" {
		t.Errorf("the login banner speaks after a blip: %q", b.stdout)
	}
	// A refused token is never waited for: DRIFT fails at once.
	x.put(x.weak())
	start = time.Now()
	r = x.runEnv(x.env(x.f.Server.Addr, "VTR_WAIT_UNREACHABLE=2m"))
	d := time.Since(start)
	wantExit(t, "DRIFT with a wait configured", r, 1)
	if d > 20*time.Second {
		t.Errorf("DRIFT with a wait configured took %s, want at most 20s", d)
	}
}
