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

	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// statusReport is what `status` prints; never the token itself.
type statusReport struct {
	TokenFile        string            `json:"token_file"`
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
	// LastRun is what the runs recorded (the state file); null before the
	// first run.
	LastRun *runstate.State `json:"last_run"`
}

// status reports on the token in the file without changing anything.
// Exit 0 when it is our periodic token, 1 when it is foreign or unreadable.
func (c *cli) status(ctx context.Context, vc *vaultclient.Client, rep reporter, asJSON bool) int {
	cfg := rep.cfg
	last, lerr := c.stateOrNil()
	_, info, code, ok := c.fileToken(ctx, vc, rep)
	if !ok {
		if !asJSON {
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			printLastRun(tw, last, lerr, c.now()) // the story so far, even while Vault is down
			tw.Flush()
		}
		return code
	}
	r := statusReport{LastRun: last,
		TokenFile: cfg.TokenFile, Ours: renew.IsOurs(info, cfg.Spec), Want: cfg.Spec.StoredDisplayName(),
		DisplayName: info.DisplayName, Type: info.Type, Accessor: info.Accessor,
		TTLSeconds: int64(info.TTL / time.Second), PeriodSeconds: int64(info.Period / time.Second),
		Orphan: info.Orphan, Policies: info.Policies, IdentityPolicies: info.IdentityPolicies,
		Meta: info.Meta, Host: cfg.Spec.Host,
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return exitFail
		}
	} else {
		c.printStatus(r, info, last, lerr)
	}
	if !r.Ours {
		return exitFail
	}
	return exitOK
}

func (c *cli) printStatus(r statusReport, info renew.TokenInfo, last *runstate.State, lerr error) {
	state := "ours: the periodic token this tool renews"
	switch {
	case r.Ours:
	case renew.CannotMint(info) != "":
		state = "foreign: not " + r.Want + "; " + renew.CannotMint(info) + ", so the next run will report DRIFT"
	case info.DisplayName == r.Want:
		state = "foreign: " + r.Want + " but not periodic; the next run will try to heal it"
	default:
		state = "foreign: not " + r.Want + "; the next run will try to heal it"
	}
	period := "none (not periodic)"
	if info.Period > 0 {
		period = fmtDur(info.Period)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "token file\t%s\n", r.TokenFile)
	fmt.Fprintf(tw, "state\t%s\n", state)
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

// fileToken reads the token file and looks the token up; on failure it
// reports as a run would (FAIL with a hint) and returns the exit code.
func (c *cli) fileToken(ctx context.Context, vc *vaultclient.Client, rep reporter) (string, renew.TokenInfo, int, bool) {
	cfg := rep.cfg
	tok, err := tokenfile.Read(cfg.TokenFile)
	if err != nil {
		return "", renew.TokenInfo{}, rep.report(renew.Result{Stage: renew.StageRead, Path: cfg.TokenFile}, err).code, false
	}
	info, err := vc.LookupSelf(ctx, tok)
	if err != nil {
		res := renew.Result{Stage: renew.StageLookup, Cause: renew.Classify(err, false), Path: cfg.TokenFile}
		return "", renew.TokenInfo{}, rep.report(res, fmt.Errorf("token in %s: %w", cfg.TokenFile, err)).code, false
	}
	return tok, info, exitOK, true
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

// sweep lists the periodic tokens other than the one in the file and, with
// apply, revokes this machine's stale ones. It acts as the token in the
// file and holds the run lock, so it can never revoke a token a concurrent
// heal just wrote. It refuses to revoke while the file holds a foreign
// token: the heal that token calls for sweeps anyway, with the right keep
// set.
func (c *cli) sweep(ctx context.Context, vc *vaultclient.Client, rep reporter, apply bool) int {
	cfg, log := rep.cfg, rep.log
	lctx, cancel := context.WithTimeout(ctx, cfg.LockWait)
	lock, err := tokenfile.Acquire(lctx, cfg.TokenFile)
	cancel()
	if err != nil {
		return rep.report(renew.Result{Stage: renew.StageLock, Path: cfg.TokenFile}, err).code
	}
	defer lock.Release()
	tok, cur, code, ok := c.fileToken(ctx, vc, rep)
	if !ok {
		return code
	}
	if apply && !renew.IsOurs(cur, cfg.Spec) {
		res := renew.Result{Stage: renew.StageForeign, Cause: renew.CauseForeign, Path: cfg.TokenFile, Current: cur}
		return rep.report(res, fmt.Errorf("token in %s is dn=%s, not our periodic %s; nothing revoked", cfg.TokenFile, cur.DisplayName, cfg.Spec.StoredDisplayName())).code
	}
	sw, err := sweep.Run(ctx, vc.Accessors(tok), sweep.Options{
		DisplayName: cfg.Spec.StoredDisplayName(),
		Owner:       cfg.Owner(),
		Keep:        []string{cur.Accessor},
		Apply:       apply,
		Concurrency: cfg.Concurrency,
		MaxRPS:      cfg.MaxRPS,
		Progress:    c.progress(log),
	})
	c.printSweep(sw, apply, cur.Accessor)
	for _, f := range sw.Failed {
		log.Warn().Err(f.Err).Str("accessor", f.Accessor).Msg("could not " + f.Op + " accessor")
	}
	if err != nil {
		// The token was just looked up: a 403 now refuses the walk, it does
		// not mean the token is dead.
		res := renew.Result{Stage: renew.StageSweep, Cause: renew.Classify(err, true), Path: cfg.TokenFile}
		return rep.report(res, err).code
	}
	return c.sweepSummary(log, cfg, sw, apply)
}

func (c *cli) sweepSummary(log zerolog.Logger, cfg renew.Config, sw sweep.Report, apply bool) int {
	ev := log.Info()
	if len(sw.Failed) > 0 {
		ev = log.Error()
	}
	verb, n := "would revoke", len(sw.Matched)
	if apply {
		verb, n = "revoked", len(sw.Revoked)
	}
	ev.Int("listed", sw.Listed).Int("failed", len(sw.Failed)).Int("vanished", sw.Vanished).Int("other_machines", len(sw.Others)).
		Msgf("sweep: %s %d stale %s, kept %d, spared %d of other machines, failed %d", verb, n, cfg.Spec.StoredDisplayName(), len(sw.Kept), len(sw.Others), len(sw.Failed))
	if !apply && len(sw.Matched) > 0 {
		log.Info().Msg("dry run: nothing was revoked; run again with --apply to revoke")
	}
	if len(sw.Failed) > 0 {
		return exitFail
	}
	return exitOK
}

func (c *cli) printSweep(rep sweep.Report, apply bool, current string) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCESSOR\tDISPLAY NAME\tHOST\tUSER\tCREATED\tTTL\tACTION")
	revoked := map[string]bool{}
	for _, a := range rep.Revoked {
		revoked[a] = true
	}
	failed := map[string]bool{}
	for _, f := range rep.Failed {
		failed[f.Accessor] = true
	}
	row := func(t sweep.Token, action string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Accessor, t.DisplayName, orDash(t.Host), orDash(t.User),
			t.CreationTime.Format(time.RFC3339), fmtDur(t.TTL), action)
	}
	for _, t := range rep.Kept {
		action := "keep"
		if t.Accessor == current {
			action = "keep (token in the file)"
		}
		row(t, action)
	}
	for _, t := range rep.Others {
		row(t, "keep (another machine's: host="+t.Host+")")
	}
	for _, t := range rep.Matched {
		switch {
		case !apply:
			row(t, "would revoke")
		case revoked[t.Accessor]:
			row(t, "revoked")
		case failed[t.Accessor]:
			row(t, "revoke FAILED")
		default:
			row(t, "not revoked")
		}
	}
	tw.Flush()
}
