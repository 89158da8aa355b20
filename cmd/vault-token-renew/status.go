package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
)

// statusReport is what `status` prints; never the token itself.
type statusReport struct {
	TokenFile        string   `json:"token_file"`
	Ours             bool     `json:"ours"`
	Want             string   `json:"want_display_name"`
	DisplayName      string   `json:"display_name"`
	Accessor         string   `json:"accessor"`
	TTLSeconds       int64    `json:"ttl_seconds"`
	PeriodSeconds    int64    `json:"period_seconds"`
	Orphan           bool     `json:"orphan"`
	Policies         []string `json:"policies"`
	IdentityPolicies []string `json:"identity_policies"`
}

// status reports on the token in the file without changing anything.
// Exit 0 when it is our periodic token, 1 when it is foreign or unreadable.
func (c *cli) status(ctx context.Context, vc *vaultclient.Client, cfg renew.Config, asJSON bool, log zerolog.Logger) int {
	_, info, code, ok := c.fileToken(ctx, vc, cfg, log)
	if !ok {
		return code
	}
	r := statusReport{
		TokenFile: cfg.TokenFile, Ours: renew.IsOurs(info, cfg.Spec), Want: cfg.Spec.StoredDisplayName(),
		DisplayName: info.DisplayName, Accessor: info.Accessor,
		TTLSeconds: int64(info.TTL / time.Second), PeriodSeconds: int64(info.Period / time.Second),
		Orphan: info.Orphan, Policies: info.Policies, IdentityPolicies: info.IdentityPolicies,
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return exitFail
		}
	} else {
		state := "ours: the periodic token this tool renews"
		if !r.Ours {
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
		fmt.Fprintf(tw, "accessor\t%s\n", r.Accessor)
		fmt.Fprintf(tw, "ttl left\t%s\n", fmtDur(info.TTL))
		fmt.Fprintf(tw, "period\t%s\n", period)
		fmt.Fprintf(tw, "orphan\t%t\n", r.Orphan)
		fmt.Fprintf(tw, "policies\t%s\n", orNone(r.Policies))
		fmt.Fprintf(tw, "identity policies\t%s\n", orNone(r.IdentityPolicies))
		tw.Flush()
	}
	if !r.Ours {
		return exitFail
	}
	return exitOK
}

// fileToken reads the token file and looks the token up; on failure it
// reports as a run would (FAIL with a hint) and returns the exit code.
func (c *cli) fileToken(ctx context.Context, vc *vaultclient.Client, cfg renew.Config, log zerolog.Logger) (string, renew.TokenInfo, int, bool) {
	tok, err := tokenfile.Read(cfg.TokenFile)
	if err != nil {
		return "", renew.TokenInfo{}, report(log, vc.Address(), cfg, renew.Result{Stage: "read", Path: cfg.TokenFile}, err), false
	}
	info, err := vc.LookupSelf(ctx, tok)
	if err != nil {
		res := renew.Result{Stage: "lookup", Cause: renew.Classify(err, false), Path: cfg.TokenFile}
		return "", renew.TokenInfo{}, report(log, vc.Address(), cfg, res, fmt.Errorf("token in %s: %w", cfg.TokenFile, err)), false
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
// apply, revokes them. It acts as the token in the file and holds the run
// lock, so it can never revoke a token a concurrent heal just wrote.
func (c *cli) sweep(ctx context.Context, vc *vaultclient.Client, cfg renew.Config, apply bool, log zerolog.Logger) int {
	lctx, cancel := context.WithTimeout(ctx, cfg.LockWait)
	lock, err := tokenfile.Acquire(lctx, cfg.TokenFile)
	cancel()
	if err != nil {
		return report(log, vc.Address(), cfg, renew.Result{Stage: "lock", Path: cfg.TokenFile}, err)
	}
	defer lock.Release()
	tok, cur, code, ok := c.fileToken(ctx, vc, cfg, log)
	if !ok {
		return code
	}
	rep, err := sweep.Run(ctx, vc.Accessors(tok), sweep.Options{
		DisplayName: cfg.Spec.StoredDisplayName(),
		Keep:        []string{cur.Accessor},
		Apply:       apply,
		Concurrency: cfg.Concurrency,
		MaxRPS:      cfg.MaxRPS,
		Progress:    c.progress(log),
	})
	c.printSweep(rep, apply, cur.Accessor)
	for _, f := range rep.Failed {
		log.Warn().Err(f.Err).Str("accessor", f.Accessor).Msg("could not " + f.Op + " accessor")
	}
	if err != nil {
		res := renew.Result{Stage: "sweep", Cause: renew.Classify(err, false), Path: cfg.TokenFile}
		return report(log, vc.Address(), cfg, res, err)
	}
	ev := log.Info()
	if len(rep.Failed) > 0 {
		ev = log.Error()
	}
	verb := "would revoke"
	if apply {
		verb = "revoked"
	}
	n := len(rep.Matched)
	if apply {
		n = len(rep.Revoked)
	}
	ev.Int("listed", rep.Listed).Int("failed", len(rep.Failed)).Int("vanished", rep.Vanished).
		Msgf("sweep: %s %d stale %s, kept %d, failed %d", verb, n, cfg.Spec.StoredDisplayName(), len(rep.Kept), len(rep.Failed))
	if !apply && len(rep.Matched) > 0 {
		log.Info().Msg("dry run: nothing was revoked; run again with --apply to revoke")
	}
	if len(rep.Failed) > 0 {
		return exitFail
	}
	return exitOK
}

func (c *cli) printSweep(rep sweep.Report, apply bool, current string) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCESSOR\tDISPLAY NAME\tCREATED\tTTL\tACTION")
	revoked := map[string]bool{}
	for _, a := range rep.Revoked {
		revoked[a] = true
	}
	failed := map[string]bool{}
	for _, f := range rep.Failed {
		failed[f.Accessor] = true
	}
	row := func(t sweep.Token, action string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Accessor, t.DisplayName, t.CreationTime.Format(time.RFC3339), fmtDur(t.TTL), action)
	}
	for _, t := range rep.Kept {
		action := "keep"
		if t.Accessor == current {
			action = "keep (token in the file)"
		}
		row(t, action)
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
