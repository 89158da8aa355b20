package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
)

// sweepTimed runs sweep with --timeout only when one was given: it is run
// by hand, where Ctrl-C stops it and --max-rps sets its pace.
func (c *cli) sweepTimed(ctx context.Context, vc *vaultclient.Client, rep reporter, log zerolog.Logger, o options) ending {
	if !o.timeoutSet {
		rep.timeout = 0
		return c.sweep(ctx, vc, rep, log, o.apply)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return c.sweep(ctx, vc, rep, log, o.apply)
}

// sweep is `vault-token-renew sweep`: renew.Sweep walks every accessor;
// this prints the table, the failures and the closing line.
func (c *cli) sweep(ctx context.Context, vc *vaultclient.Client, rep reporter, log zerolog.Logger, apply bool) ending {
	cfg := rep.cfg
	cfg.Ledger = c.ledgerStore(log, cfg.TokenFile, apply)
	cfg.Progress = c.progress(log)
	res, err := renew.Sweep(ctx, vc, cfg, apply)
	if res.Walked {
		c.printSweep(res.Sweep, apply, res.Current.Accessor)
	}
	for _, f := range res.Sweep.Failed {
		log.Warn().Err(f.Err).Str("accessor", f.Accessor).Msg("could not " + f.Op + " accessor")
	}
	line := rep.report(res, err)
	if err == nil {
		line = sweepSummary(cfg, res, apply)
	}
	line.print(log)
	return line.end
}

// sweepSummary is a finished sweep's closing line, in Judge's words.
func sweepSummary(cfg renew.Config, res renew.Result, apply bool) closing {
	sw := res.Sweep
	c := closing{end: endOK, level: zerolog.InfoLevel}
	if len(sw.Failed) > 0 {
		c.end, c.level = endFailed, zerolog.ErrorLevel
	}
	verb, n := "would revoke", len(sw.Stale)
	if apply {
		verb, n = "revoked", len(sw.Revoked)
	}
	c.msg = fmt.Sprintf("sweep: %s %d stale %s, kept %d, %d other machines', %d failed (walked %d accessors)",
		verb, n, cfg.Spec.StoredDisplayName(), len(sw.Kept), len(sw.Other), len(sw.Failed), sw.Listed)
	switch {
	case apply && len(sw.Failed) == 0 && res.Ledger.Gap() == ledger.NoGap:
		c.msg += "; the ledger is complete again"
	case !apply && n > 0:
		c.msg += "; dry run: nothing was revoked; run again with --apply to revoke"
	}
	c.num("listed", sw.Listed).num("failed", len(sw.Failed)).num("vanished", len(sw.Vanished)).num("other_machines", len(sw.Other))
	return c
}

// printSweep is the table of every token with our display name, with the
// verdict's word as its action.
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
		action := sweep.Keep.String()
		if t.Accessor == current {
			action += " (the token in the file)"
		}
		row(t, action)
	}
	for _, t := range rep.Other {
		row(t, sweep.Other.String()+" (host="+t.Host+"): never revoked")
	}
	for _, t := range rep.Stale {
		switch {
		case !apply:
			row(t, sweep.Stale.String()+": would revoke")
		case revoked[t.Accessor]:
			row(t, sweep.Stale.String()+": revoked")
		case failed[t.Accessor]:
			row(t, sweep.Stale.String()+": revoke FAILED")
		default:
			row(t, sweep.Stale.String()+": not revoked")
		}
	}
	tw.Flush()
}
