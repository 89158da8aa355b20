package runstate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// readMetrics parses a textfile as node_exporter would and returns each
// sample by name and label text; it fails the test on any sample timestamp.
func readMetrics(t *testing.T, path string) (map[string]*dto.MetricFamily, map[string]float64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	vals := map[string]float64{}
	for name, mf := range fams {
		if mf.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
		for _, m := range mf.GetMetric() {
			if m.TimestampMs != nil {
				t.Errorf("%s has a sample timestamp", name)
			}
			key := name
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				vals[key] = m.GetCounter().GetValue()
			default:
				vals[key] = m.GetGauge().GetValue()
			}
		}
	}
	return fams, vals
}

func TestWriteMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault_token_renew.prom")
	s := State{Time: day(2), Outcome: renew.Drift, Summary: "DRIFT: x", Accessor: "acc-secretless", TokenExpiry: exp,
		LastSuccess: day(0), FailingSince: day(1), FailingRuns: 2, HealsTotal: 3, Host: "vm1",
		Ledgers: map[string]ledger.Ledger{"/home/w/.vault-token": ledger.Ledger{WholeSince: day(0)}.Found("acc-secretless", day(0)).Found("acc-2", day(1))}}
	if err := WriteMetrics(path, s); err != nil {
		t.Fatal(err)
	}
	fams, got := readMetrics(t, path)
	want := map[string]float64{
		"vault_token_renew_last_run_timestamp_seconds":           float64(day(2).Unix()),
		"vault_token_renew_last_success_timestamp_seconds":       float64(day(0).Unix()),
		"vault_token_renew_token_expiry_timestamp_seconds":       float64(exp.Unix()),
		"vault_token_renew_consecutive_failures":                 2,
		"vault_token_renew_heals_total":                          3,
		"vault_token_renew_outcome{outcome=ok}":                  0,
		"vault_token_renew_outcome{outcome=healed}":              0,
		"vault_token_renew_outcome{outcome=drift}":               1,
		"vault_token_renew_outcome{outcome=fail}":                0,
		"vault_token_renew_ledger_tokens":                        2,
		"vault_token_renew_ledger_complete":                      1,
		"vault_token_renew_ledger_whole_since_timestamp_seconds": float64(day(0).Unix()),
		"vault_token_renew_ledger_gap{gap=none}":                 1,
		"vault_token_renew_ledger_gap{gap=unrecorded-create}":    0,
		"vault_token_renew_ledger_gap{gap=overflow}":             0,
		"vault_token_renew_ledger_gap{gap=never-whole}":          0,
		"vault_token_renew_walk_accessors_done":                  0,
		"vault_token_renew_walk_accessors_listed":                0,
	}
	if len(got) != len(want) {
		t.Errorf("samples %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if fams["vault_token_renew_heals_total"].GetType() != dto.MetricType_COUNTER {
		t.Error("heals_total is not a counter")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("metrics file mode %v %v, want 0644", fi.Mode().Perm(), err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "acc-secretless") || strings.Contains(string(b), "vm1") {
		t.Fatalf("metrics carry an accessor or host:\n%s", b)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("temp files left beside the metrics: %v", ents)
	}
}

func TestWriteMetricsUnknowns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.prom")
	if err := WriteMetrics(path, State{Time: day(0), Outcome: renew.Fail, FailingSince: day(0), FailingRuns: 1}); err != nil {
		t.Fatal(err)
	}
	_, got := readMetrics(t, path)
	if v, ok := got["vault_token_renew_last_success_timestamp_seconds"]; !ok || v != 0 {
		t.Errorf("never succeeded: last_success = %v (present %v), want 0", v, ok)
	}
	if _, ok := got["vault_token_renew_token_expiry_timestamp_seconds"]; ok {
		t.Error("unknown expiry written")
	}
	if got["vault_token_renew_outcome{outcome=fail}"] != 1 {
		t.Errorf("outcome: %v", got)
	}
	if got["vault_token_renew_ledger_complete"] != 0 || got["vault_token_renew_ledger_tokens"] != 0 {
		t.Errorf("no ledger yet must read as incomplete and empty: %v", got)
	}
}

func TestWriteMetricsMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope", "m.prom")
	if err := WriteMetrics(path, State{Time: day(0), Outcome: renew.OK}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v does not name %s", err, path)
	}
}

// TestWalkMetrics: a ledger with a gap and a walk under way says which gap,
// never whole, and how far the walk has got.
func TestWalkMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault_token_renew.prom")
	l := ledger.Ledger{}.Found("acc-1", day(0)).WalkFrom(day(1), 200_000).
		Step("m", sweep.Report{Listed: 1000, LookedUp: 1000}, day(1))
	s := State{Time: day(1), Outcome: renew.OK, Ledgers: map[string]ledger.Ledger{"/home/w/.vault-token": l}}
	if err := WriteMetrics(path, s); err != nil {
		t.Fatal(err)
	}
	_, got := readMetrics(t, path)
	for k, v := range map[string]float64{
		"vault_token_renew_ledger_complete":                      0,
		"vault_token_renew_ledger_gap{gap=never-whole}":          1,
		"vault_token_renew_ledger_gap{gap=none}":                 0,
		"vault_token_renew_ledger_whole_since_timestamp_seconds": 0,
		"vault_token_renew_walk_accessors_done":                  1000,
		"vault_token_renew_walk_accessors_listed":                200_000,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// TestMetricsNeverFollowALink: in a textfile directory others may write, a
// symlink put where the metrics go is replaced, and the file it points at
// (the token file, say) keeps its content and its mode.
func TestMetricsNeverFollowALink(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, ".vault-token")
	if err := os.WriteFile(token, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vault_token_renew.prom")
	if err := os.Symlink(token, path); err != nil {
		t.Fatal(err)
	}
	if err := WriteMetrics(path, State{Time: day(1), Outcome: renew.OK}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(token)
	fi, _ := os.Stat(token)
	if string(b) != "secret" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the link's target became %q, mode %o", b, fi.Mode().Perm())
	}
	if li, err := os.Lstat(path); err != nil || !li.Mode().IsRegular() || li.Mode().Perm() != 0o644 {
		t.Fatalf("the metrics file is %v (%v), want a regular 0644 file", li, err)
	}
}

// TestProfileMetricsCarryItsName: a profile's metrics carry profile=NAME on
// every series, so that one collector tells a machine's profiles apart; no
// profile adds no label.
func TestProfileMetricsCarryItsName(t *testing.T) {
	dir := t.TempDir()
	prod, none := filepath.Join(dir, "prod.prom"), filepath.Join(dir, "none.prom")
	if err := WriteMetrics(prod, State{Time: day(0), Outcome: renew.Fail, Profile: "prod"}); err != nil {
		t.Fatal(err)
	}
	if err := WriteMetrics(none, State{Time: day(0), Outcome: renew.OK}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(prod)
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !strings.HasPrefix(l, "#") && !strings.Contains(l, `profile="prod"`) {
			t.Errorf("a series without the profile: %s", l)
		}
	}
	if b, _ := os.ReadFile(none); strings.Contains(string(b), "profile=") {
		t.Errorf("no profile, and yet a profile label:\n%s", b)
	}
}
