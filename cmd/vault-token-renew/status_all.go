package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/internal/envfile"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/tokenstore"
)

// setups are the profiles below home, after the no-profile setup when its
// env file is there.
func setups(home string) []string {
	var out []string
	if _, err := os.Stat(envfile.Path(home)); err == nil {
		out = append(out, "")
	}
	return append(out, profiles(home)...)
}

// statusAll is `status` on a machine with profiles and none selected: a
// row per setup (store, address, namespace, token, TTL, last run), each
// looked up at its own Vault with its own token. It ends OK when every
// setup's store holds its periodic token.
func (c *cli) statusAll(ctx context.Context, log zerolog.Logger) int {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tSTORE\tADDRESS\tNAMESPACE\tTOKEN\tTTL\tLAST RUN")
	kind := renew.OK
	for _, p := range setups(c.getenv("HOME")) {
		row, k := c.statusRow(ctx, p, log)
		if !k.Success() {
			kind = renew.Fail
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
	return exitStatus(kind)
}

// statusRow is setup p's row, as `status --profile p` finds it.
func (c *cli) statusRow(ctx context.Context, p string, log zerolog.Logger) (string, renew.Kind) {
	sc := *c
	name := p
	if p == "" {
		name = "(none)"
	} else if err := sc.useProfile([]string{"--profile", p}); err != nil {
		return name + "\t-\t-\t-\t" + safetext.Value(err.Error()) + "\t-\t-", renew.Fail
	}
	var t tokenFlags
	fs := sc.newFlags("status")
	sc.addTokenFlags(fs, &t)
	fs.Parse(nil)
	vc, err := vaultclient.FromSettings(sc.settings())
	if err != nil {
		return name + "\t-\t-\t-\t" + safetext.Value(err.Error()) + "\t-\t-", renew.Fail
	}
	choice, err := tokenstore.Resolve(sc.where(t, vc))
	if err != nil {
		return name + "\t-\t" + safetext.Value(vc.Address()) + "\t-\t" + safetext.Value(err.Error()) + "\t-\t-", renew.Fail
	}
	cfg := sc.config(t, paceFlags{}, vc, choice.Store, log)
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	o := renew.Inspect(ctx, vc, cfg)
	token, ttl := o.Plan.Reason, "-"
	switch {
	case o.Err != nil:
		token = "FAIL: " + o.Cause.String()
	case o.Plan.Action == decide.Renew:
		token, ttl = "ours ("+safetext.Value(o.Current.Accessor)+")", fmtDur(o.Current.TTL)
	}
	// The store, address and namespace come from env files: escaped, as
	// every word the tool did not choose.
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", name, safetext.Value(choice.Store.String()), safetext.Value(vc.Address()),
		safetext.Value(orDash(vc.Namespace())), token, ttl, sc.lastRun()), o.Kind
}

// lastRun is the last run's outcome and when, in a few words.
func (c *cli) lastRun() string {
	_, st, err := c.loadState()
	switch {
	case err != nil && !errors.Is(err, runstate.ErrNoState):
		return "unreadable state"
	case err != nil || st.Time.IsZero():
		return "never"
	}
	return fmt.Sprintf("%s %s", st.Outcome.Prefix(), ago(c.now(), st.Time))
}
