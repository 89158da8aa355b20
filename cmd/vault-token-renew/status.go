package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/tokenstore"
)

// statusReport is what `status` prints; never the token itself.
type statusReport struct {
	TokenFile        string `json:"token_file"`  // the store: a file's path, or "token helper <path>"
	StoreKind        string `json:"token_store"` // file or helper
	StoreWhy         string `json:"token_store_why"`
	storeKey         string
	Ours             bool              `json:"ours"`
	Want             string            `json:"want_display_name"`
	DisplayName      string            `json:"display_name"`
	Type             string            `json:"type"`
	Accessor         string            `json:"accessor"`
	TTLSeconds       int64             `json:"ttl_seconds"`
	PeriodSeconds    int64             `json:"period_seconds"`
	Orphan           bool              `json:"orphan"`
	Policies         []string          `json:"policies"`
	IdentityPolicies []string          `json:"identity_policies"`
	Meta             map[string]string `json:"meta"`
	Host             string            `json:"this_host"`
	// LastRun is what the runs recorded (the state file, its ledger shown
	// apart); null before the first run.
	LastRun *runstate.State `json:"last_run"`
	Ledger  statusLedger    `json:"ledger"`
	// Plan is what the next run will do, and why: the plan a run makes
	// (decide.Decide), from what status found.
	Plan statusPlan `json:"plan"`
}

// statusPlan is the next run's plan as status shows it.
type statusPlan struct {
	Action string `json:"action"` // renew, heal, refuse or fail
	Reason string `json:"reason"`
	Walk   bool   `json:"walk"` // the ledger has a gap: the walk runs
	Gap    string `json:"gap"`
}

// statusLedger is the ledger as status shows it: whether a heal can trust
// it (and why not), and the tokens it holds.
type statusLedger struct {
	Complete   bool           `json:"complete"`
	Gap        string         `json:"gap"` // none, unrecorded-create, overflow, never-whole
	WholeSince *time.Time     `json:"whole_since"`
	Unrecorded []time.Time    `json:"unrecorded_creates"`
	Tokens     []ledger.Entry `json:"tokens"`
	// Walk is how far the walk under way has got; null when none is.
	Walk *ledger.Walk `json:"walk"`
}

func ledgerOf(l ledger.Ledger) statusLedger {
	s := statusLedger{Complete: l.Gap() == ledger.NoGap, Gap: l.Gap().String(), Unrecorded: l.Unrecorded, Tokens: l.Tokens, Walk: l.Walk}
	if !l.WholeSince.IsZero() {
		s.WholeSince = &l.WholeSince
	}
	if s.Tokens == nil {
		s.Tokens = []ledger.Entry{}
	}
	if s.Unrecorded == nil {
		s.Unrecorded = []time.Time{}
	}
	return s
}

// statusFlags are status's flags.
type statusFlags struct {
	tokenFlags
	json  bool
	brief bool
}

// statusCmd is `vault-token-renew status`; with --brief, the login banner.
func (c *cli) statusCmd(ctx context.Context, args []string) int {
	var f statusFlags
	fs := c.newFlags("status")
	c.addTokenFlags(fs, &f.tokenFlags)
	fs.BoolVar(&f.json, "json", false, "print the report as JSON")
	fs.BoolVar(&f.brief, "brief", false, "one line from the state file only, nothing when all is well: a login banner")
	if exit, ok := c.parse(fs, args); !ok {
		return exit
	}
	if f.brief { // the login banner: the state file only, no Vault and no token file
		if exit, ok := c.check(fs); !ok {
			return exit
		}
		return c.brief()
	}
	if exit, ok := c.check(fs, f.tokenFlags.check); !ok {
		return exit
	}
	log := c.logger(f.logFormat)
	if log == nil {
		return exitUsage
	}
	if c.profile == "" && !f.json && len(profiles(c.getenv("HOME"))) > 0 {
		return c.statusAll(ctx, *log) // every setup of the machine, a row each
	}
	rep := c.reporter(f.tokenFlags)
	vc, choice, refused := c.connect(f.tokenFlags, &rep)
	if refused != nil {
		refused.print(*log)
		return exitStatus(refused.kind)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	cfg := c.config(f.tokenFlags, paceFlags{}, vc, choice.Store, *log)
	if store, _, _, _ := runstate.OpenLedger(c.getenv, choice.Store.Key()); store != nil {
		cfg.Ledger = store // the plan's gap; status saves nothing
	}
	return exitStatus(c.status(ctx, vc, cfg, choice, rep, *log, f.json))
}

// status reports on the token in the file and the next run's plan, without
// changing anything. It ends OK when the file holds our periodic token,
// Fail when it is foreign or cannot be looked up; it shows the recorded
// runs and the ledger either way.
func (c *cli) status(ctx context.Context, vc *vaultclient.Client, cfg renew.Config, choice tokenstore.Choice, rep reporter, log zerolog.Logger, asJSON bool) renew.Kind {
	last, lerr := c.stateOrNil()
	o := renew.Inspect(ctx, vc, cfg)
	if o.Err != nil {
		if !asJSON {
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			printLastRun(tw, last, lerr, c.now()) // the story so far, even while Vault is down
			tw.Flush()
		}
		line := rep.report(o)
		line.print(log)
		return line.kind
	}
	r := reportOf(cfg, choice, o, last)
	if !asJSON {
		c.printStatus(r, o, last, lerr)
		return o.Kind
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		log.Error().Err(err).Msg("status: could not write the report")
		return renew.Fail
	}
	return o.Kind
}

// reportOf is what status shows of o: the token, the plan, the runs and
// the ledger, what Vault said escaped and bounded.
func reportOf(cfg renew.Config, choice tokenstore.Choice, o renew.Outcome, last *runstate.State) statusReport {
	info := o.Current
	r := statusReport{
		TokenFile: choice.Store.String(), StoreKind: storeKind(choice.Store), StoreWhy: choice.Why, storeKey: choice.Store.Key(), Ours: o.Plan.Action == decide.Renew, Want: cfg.Spec.StoredDisplayName(),
		DisplayName: safetext.Value(info.DisplayName), Type: safetext.Value(info.Type), Accessor: safetext.Value(info.Accessor),
		TTLSeconds: int64(info.TTL / time.Second), PeriodSeconds: int64(info.Period / time.Second),
		Orphan: info.Orphan, Policies: values(info.Policies), IdentityPolicies: values(info.IdentityPolicies),
		Meta: valueMap(info.Meta), Host: cfg.Spec.Host,
		Plan:   statusPlan{Action: o.Plan.Action.String(), Reason: o.Plan.Reason, Walk: o.Plan.Walk, Gap: o.Plan.Gap.String()},
		Ledger: ledgerOf(ledger.Ledger{}),
	}
	if last != nil {
		r.Ledger = ledgerOf(last.LedgerFor(choice.Store.Key()))
		shown := *last
		shown.Ledgers = nil
		r.LastRun = &shown
	}
	return r
}

// storeKind is the kind of store, as data: file or helper.
func storeKind(s tokenstore.Store) string {
	if _, ok := s.(tokenstore.Helper); ok {
		return "helper"
	}
	return "file"
}

// planWords is the next run's plan in words: the status line's state.
func planWords(p decide.Plan, want string) string {
	switch p.Action {
	case decide.Renew:
		return p.Reason
	case decide.Refuse:
		return "foreign: not " + want + "; " + p.Reason + ", so the next run will report DRIFT"
	}
	return p.Reason + "; the next run will try to heal it"
}

func (c *cli) printStatus(r statusReport, o renew.Outcome, last *runstate.State, lerr error) {
	info := o.Current
	period := "none (not periodic)"
	if info.Period > 0 {
		period = fmtDur(info.Period)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	label := "token file"
	if r.StoreKind == "helper" {
		label = "token store"
	}
	fmt.Fprintf(tw, "%s\t%s\n", label, r.TokenFile)
	fmt.Fprintf(tw, "found by\t%s\n", r.StoreWhy)
	fmt.Fprintf(tw, "state\t%s\n", planWords(o.Plan, r.Want))
	fmt.Fprintf(tw, "display name\t%s\n", r.DisplayName)
	fmt.Fprintf(tw, "type\t%s\n", orDash(r.Type))
	fmt.Fprintf(tw, "accessor\t%s\n", orDash(r.Accessor))
	fmt.Fprintf(tw, "ttl left\t%s\n", fmtDur(info.TTL))
	fmt.Fprintf(tw, "period\t%s\n", period)
	fmt.Fprintf(tw, "orphan\t%t\n", r.Orphan)
	fmt.Fprintf(tw, "policies\t%s\n", orNone(r.Policies))
	fmt.Fprintf(tw, "identity policies\t%s\n", orNone(r.IdentityPolicies))
	fmt.Fprintf(tw, "metadata\t%s\n", fmtMeta(r.Meta))
	fmt.Fprintf(tw, "this host\t%s\n", r.Host)
	printLastRun(tw, last, lerr, c.now())
	if last != nil {
		printLedger(tw, last.LedgerFor(r.storeKey), r.Accessor, c.now())
		printWalk(tw, last.LedgerFor(r.storeKey).Walk, last.LastWalk, c.now())
	}
	tw.Flush()
}

// printLastRun tells what the runs recorded: the last one and its outcome,
// the token's expiry (absolute and relative), and any failure streak.
func printLastRun(tw io.Writer, st *runstate.State, err error, now time.Time) {
	switch {
	case st == nil && errors.Is(err, runstate.ErrNoState):
		fmt.Fprintf(tw, "last run\tnone recorded yet (the first run starts the record)\n")
		return
	case st == nil:
		fmt.Fprintf(tw, "last run\tunknown: %v\n", err)
		return
	case st.Time.IsZero():
		fmt.Fprintf(tw, "last run\tnone recorded yet (the first run starts the record)\n")
		return
	}
	fmt.Fprintf(tw, "last run\t%s (%s): %s\n", stamp(st.Time), ago(now, st.Time), st.Summary)
	if st.Cause != "" {
		fmt.Fprintf(tw, "cause\t%s\n", st.Cause)
	}
	if !st.TokenExpiry.IsZero() {
		fmt.Fprintf(tw, "token expires\t%s (%s)\n", stamp(st.TokenExpiry), ago(now, st.TokenExpiry))
	}
	if !st.LastSuccess.IsZero() {
		fmt.Fprintf(tw, "last success\t%s (%s)\n", stamp(st.LastSuccess), ago(now, st.LastSuccess))
	} else {
		fmt.Fprintf(tw, "last success\tnever\n")
	}
	if st.FailingRuns > 0 {
		fmt.Fprintf(tw, "failing\tsince %s (%s), %d runs\n", stamp(st.FailingSince), ago(now, st.FailingSince), st.FailingRuns)
	} else {
		fmt.Fprintf(tw, "failing\tno\n")
	}
	fmt.Fprintf(tw, "heals\t%d in total\n", st.HealsTotal)
}

// printLedger shows the ledger: whether the next heal can trust it (and so
// makes no walk), and each token it holds, when and how it was recorded.
func printLedger(tw io.Writer, l ledger.Ledger, inFile string, now time.Time) {
	switch g := l.Gap(); g {
	case ledger.NoGap:
		fmt.Fprintf(tw, "ledger\tcomplete since %s: a heal looks up only these tokens\n", stamp(l.WholeSince))
	default:
		fmt.Fprintf(tw, "ledger\tincomplete (gap %s): %s; a walk finds them (the walk unit a run starts, or: vault-token-renew sweep --apply)\n", g, mayRemain(g))
	}
	for _, t := range l.Unrecorded {
		fmt.Fprintf(tw, "\tunrecorded create sent %s (%s)\n", stamp(t), ago(now, t))
	}
	if len(l.Tokens) == 0 {
		fmt.Fprintf(tw, "\t(no tokens recorded yet)\n")
	}
	for _, e := range l.Tokens {
		what := map[ledger.How]string{ledger.Minted: "minted by a heal", ledger.InFile: "found in the token file", ledger.Walked: "found by a walk"}[e.How]
		note := ""
		if e.Accessor == inFile {
			note = ", the token in the file"
		}
		fmt.Fprintf(tw, "\t%s  %s, recorded %s (%s)%s\n", safetext.Value(e.Accessor), what, stamp(e.Recorded), ago(now, e.Recorded), note)
	}
}

// printWalk shows how far the walk under way has got, and how the last
// one ended.
func printWalk(tw io.Writer, w *ledger.Walk, last *runstate.WalkEnd, now time.Time) {
	if w != nil {
		fmt.Fprintf(tw, "walk\tunder way: %d of %d accessors looked up (%.0f%%), %d stale revoked; began %s (%s), %d run(s), last step %s (%s)\n",
			w.Done, w.Listed, 100*w.Fraction(), w.Revoked, stamp(w.Started), ago(now, w.Started), w.Runs, stamp(w.Updated), ago(now, w.Updated))
	}
	if last != nil {
		fmt.Fprintf(tw, "last walk\t%s (%s): %s\n", stamp(last.Time), ago(now, last.Time), safetext.Text(last.Summary))
	}
}

// values and valueMap are what Vault said, escaped and bounded: a token's
// policies and meta are chosen by whoever made it.
func values(vs []string) []string {
	if vs == nil {
		return nil
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = safetext.Value(v)
	}
	return out
}

func valueMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[safetext.Value(k)] = safetext.Value(v)
	}
	return out
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ago says how far t is from now, in the past or the future.
func ago(now, t time.Time) string {
	d := now.Sub(t).Round(time.Minute)
	switch {
	case d < 0:
		return "in " + fmtDays(-d)
	case d == 0:
		return "just now"
	}
	return fmtDays(d) + " ago"
}

func fmtDays(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%dd%s", d/(24*time.Hour), strings.TrimSuffix(fmtDur(d%(24*time.Hour)), "0s"))
	}
	return fmtDur(d)
}

// fmtMeta prints a token's metadata in a stable order.
func fmtMeta(m map[string]string) string {
	if len(m) == 0 {
		return "(none: untagged)"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
