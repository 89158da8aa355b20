package runstate

import (
	"bytes"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/devvm/vault-token-renew/internal/atomicfile"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/renew"
)

// WriteMetrics writes s to path in node_exporter's textfile collector format
// (path should end in .prom, in the collector's directory), so an alert can
// fire on a machine nobody logs in to. The atomic writer writes a temp file
// in the same directory and renames it, so the collector never reads half a
// file; its temp name does not end in .prom, so it is never collected. The
// directory is not created: it belongs to the collector's configuration.
//
// Choices: last_success is 0 when no run has ever succeeded, so that
// `time() - vault_token_renew_last_success_timestamp_seconds > 2*86400`
// fires for such a machine too; token_expiry is absent while no run has
// learned the expiry, because 0 would claim the token expired in 1970.
func WriteMetrics(path string, s State) error {
	gathered, reg := registry(s.Profile)
	gauge := func(name, help string, v float64) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		g.Set(v)
		reg.MustRegister(g)
	}
	gauge("vault_token_renew_last_run_timestamp_seconds",
		"When vault-token-renew last ran (Unix time); stale means its timer stopped.", unix(s.Time))
	gauge("vault_token_renew_last_success_timestamp_seconds",
		"When a run last renewed or healed the periodic token (Unix time); kept through failures, 0 if never.", unix(s.LastSuccess))
	if !s.TokenExpiry.IsZero() {
		gauge("vault_token_renew_token_expiry_timestamp_seconds",
			"When the periodic token in ~/.vault-token expires unless renewed (Unix time), as last known.", unix(s.TokenExpiry))
	}
	gauge("vault_token_renew_consecutive_failures",
		"Runs in a row that ended in DRIFT or FAIL; 0 after a success.", float64(s.FailingRuns))

	tokens, complete := 0, 0.0
	if len(s.Ledgers) > 0 {
		complete = 1
	}
	for _, l := range s.Ledgers {
		tokens += len(l.Tokens)
		if l.Gap() != ledger.NoGap {
			complete = 0
		}
	}
	gauge("vault_token_renew_ledger_tokens",
		"Periodic tokens of this machine the ledger holds as maybe alive; 1 is normal, more until a run retires the stale.", float64(tokens))
	gauge("vault_token_renew_ledger_complete",
		"1 when the ledger (of every token file) holds every token of this machine, 0 when it has a gap: stale tokens it cannot know may remain until a walk finds them.", complete)
	ledgerGauges(reg, s.Ledgers)

	outcome := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vault_token_renew_outcome",
		Help: "The last run's outcome: 1 for the one it had (ok, healed, drift, fail), 0 for the others.",
	}, []string{"outcome"})
	for _, o := range renew.Kinds {
		v := 0.0
		if o == s.Outcome {
			v = 1
		}
		outcome.WithLabelValues(string(o)).Set(v)
	}
	reg.MustRegister(outcome)

	heals := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vault_token_renew_heals_total",
		Help: "Runs that re-minted the periodic token after a login overwrote ~/.vault-token (HEALED).",
	})
	heals.Add(float64(max(s.HealsTotal, 0))) // Add panics on a negative; a hand-edited file may hold one
	reg.MustRegister(heals)

	return writeTextfile(path, gathered)
}

// writeTextfile encodes reg in the text format and writes it with the
// project's atomic writer, which sets the mode (0644: node_exporter often
// runs as another user, and nothing secret is in it) on the open temp file.
// client_golang's WriteToTextfile chmods its temp file by path after
// closing it, which a directory others may write lets them redirect (to
// ~/.vault-token, say); and a symlink at path is replaced, never followed.
func writeTextfile(path string, reg *prometheus.Registry) error {
	mfs, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("write metrics %s: %w", path, err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			return fmt.Errorf("write metrics %s: %w", path, err)
		}
	}
	if err := atomicfile.WriteNoFollow(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write metrics %s: %w", path, err)
	}
	return nil
}

// ledgerGauges say what gap the ledgers have, since when they are whole,
// and how far a walk under way has got: the cost of a gap, made visible.
func ledgerGauges(reg prometheus.Registerer, ls map[string]ledger.Ledger) {
	var whole time.Time
	var done, listed float64
	gaps := map[ledger.Gap]bool{}
	first := true
	for _, l := range ls {
		gaps[l.Gap()] = true
		// The oldest, and never while any ledger never was whole.
		if first || l.WholeSince.IsZero() || (!whole.IsZero() && l.WholeSince.Before(whole)) {
			whole = l.WholeSince
		}
		first = false
		if l.Walk != nil {
			done, listed = done+float64(l.Walk.Done), listed+float64(l.Walk.Listed)
		}
	}
	add := func(name, help string, v float64) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		g.Set(v)
		reg.MustRegister(g)
	}
	add("vault_token_renew_ledger_whole_since_timestamp_seconds",
		"Since when the ledger is whole (Unix time): the end of the last complete walk; 0 while it never was.", unix(whole))
	gap := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vault_token_renew_ledger_gap",
		Help: "1 for the gap the ledger has (none, unrecorded-create, overflow, never-whole), 0 for the others.",
	}, []string{"gap"})
	for _, g := range []ledger.Gap{ledger.NoGap, ledger.Unrecorded, ledger.Overflow, ledger.NeverWhole} {
		v := 0.0
		if gaps[g] || (len(ls) == 0 && g == ledger.NeverWhole) {
			v = 1
		}
		gap.WithLabelValues(g.String()).Set(v)
	}
	reg.MustRegister(gap)
	add("vault_token_renew_walk_accessors_done",
		"Accessors the walk under way has looked up so far, over all its runs; 0 when no walk is under way.", done)
	add("vault_token_renew_walk_accessors_listed",
		"Accessors in the walk under way's latest LIST; 0 when no walk is under way.", listed)
}

// unix is t in Unix seconds, 0 for the zero time (not year 1's seconds).
func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// registry is where the metrics are registered (reg) and gathered from. A
// profile's metrics carry its name, so that one collector tells the
// profiles of a machine apart; no profile adds no label.
func registry(profile string) (*prometheus.Registry, prometheus.Registerer) {
	gathered := prometheus.NewRegistry()
	if profile == "" {
		return gathered, gathered
	}
	return gathered, prometheus.WrapRegistererWith(prometheus.Labels{"profile": profile}, gathered)
}
