package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/envfile"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenstore"
)

// closing is a command's closing line. It is built from what happened,
// handed to the run state as data (kind, cause, reason), and printed
// last, so that journalctl ends on it.
type closing struct {
	kind   renew.Kind    // how the command ended: its prefix, its exit status
	cause  failure.Cause // CauseUnknown on success
	reason string        // on DRIFT/FAIL, what went wrong in a few words: the banner's text
	level  zerolog.Level
	msg    string
	fields []func(*zerolog.Event) *zerolog.Event
}

// str adds a field; its value is escaped and bounded whatever it holds
// (values from elsewhere are bounded tighter where they are spliced in).
func (c *closing) str(k, v string) *closing {
	v = safetext.Text(v)
	c.fields = append(c.fields, func(e *zerolog.Event) *zerolog.Event { return e.Str(k, v) })
	return c
}

func (c *closing) num(k string, v int) *closing {
	c.fields = append(c.fields, func(e *zerolog.Event) *zerolog.Event { return e.Int(k, v) })
	return c
}

func (c *closing) flag(k string, v bool) *closing {
	c.fields = append(c.fields, func(e *zerolog.Event) *zerolog.Event { return e.Bool(k, v) })
	return c
}

// err adds the error's text, escaped and bounded: it may hold Vault's
// error body or a display name.
func (c *closing) err(err error) *closing {
	if err == nil {
		return c
	}
	return c.str(zerolog.ErrorFieldName, err.Error())
}

// print writes the line, escaped and bounded as a whole.
func (c closing) print(log zerolog.Logger) {
	ev := log.WithLevel(c.level)
	for _, f := range c.fields {
		ev = f(ev)
	}
	ev.Msg(safetext.Text(c.msg))
}

// reporter builds closing lines. Its fields are what the hints need to
// name: the Vault address, the run's settings, its time budget and the CLI
// the operator has.
type reporter struct {
	addr  string
	spec  decide.Spec      // the periodic token, and this machine
	path  string           // the store in words: the token file, or the token helper
	store tokenstore.Store // where the token is kept; nil before it was found
	// loginWrites: the CLI's own login keeps its token in store
	// (tokenstore.Choice.LoginWrites).
	loginWrites bool
	profile     string // the profile run, "" for none
	// tokenOf is the other setup whose store holds the token this Vault
	// refused (a login to that setup's Vault, written in this one's store).
	tokenOf struct {
		name, addr string
		found      bool
	}
	maxRPS  float64       // the walk's --max-rps
	timeout time.Duration // the run's --timeout; 0 for none
	cli     string        // "vault" or "bao": the command the hints name
	walk    walkStart     // whether this run started the walk unit
	walkRPS float64       // the walk's rate cap by default (VTR_SWEEP_MAX_RPS)
}

// report is the closing line of a run (or of status's and sweep's start):
// which of OK, HEALED, DRIFT and FAIL it was, with its fields and hint.
func (r reporter) report(o renew.Outcome) closing {
	switch {
	case o.Kind == renew.Drift:
		return r.drift(o)
	case !o.Kind.Success():
		return r.fail(o)
	case o.Plan.Action == decide.Heal:
		return r.healed(o)
	}
	return r.renewed(o)
}

func dryWords(o renew.Outcome) string {
	if o.DryRun {
		return " (dry run: nothing changed)"
	}
	return ""
}

func (r reporter) renewed(o renew.Outcome) closing {
	c := closing{kind: renew.OK, level: zerolog.InfoLevel}
	if o.DryRun {
		c.msg = "OK: would renew periodic token" + retired(o, "would revoke") + dryWords(o)
		c.str("accessor", o.Current.Accessor).str("ttl", fmtDur(o.TTL))
		return planned(&c, o)
	}
	c.msg = "OK: renewed periodic token" + retired(o, "revoked")
	var warn, next []string
	if o.Cap.Capped {
		c.msg += "; " + r.server() + " capped its TTL below the period"
		warn, next = append(warn, r.capWhy(o.Cap)), append(next, r.capNext(o.Cap))
	}
	if o.Gap != ledger.NoGap {
		found, n := r.walkWords(o.Gap)
		c.str("gap", o.Gap.String()).str("walk", found)
		if n != "" {
			next = append(next, n)
		}
		if g := o.Gap; g == ledger.Unrecorded || g == ledger.Overflow || g == ledger.Unsaved {
			warn = append(warn, mayRemain(g))
		}
	}
	if w, n := r.sweepTrouble(o); w != "" {
		warn, next = append(warn, w), append(next, n)
	}
	if len(warn) > 0 {
		c.level = zerolog.WarnLevel
		c.str("warning", strings.Join(warn, "; "))
	}
	vaultWarnings(&c, o.VaultWarnings).str("accessor", o.Current.Accessor).str("ttl", fmtDur(o.TTL)).str("period", fmtDur(o.Current.Period))
	if len(next) > 0 {
		c.str("next", strings.Join(next, "; "))
	}
	return c
}

// retired says what a run's sweep of the ledger did, when it had anything
// to look at: " (revoked 1 stale, from the ledger)".
func retired(o renew.Outcome, verb string) string {
	if o.Sweep.Listed == 0 {
		return ""
	}
	return " (" + sweptWords(o, verb) + ")"
}

// sweptWords is how many stale tokens the ledger's sweep revoked (or, in a
// dry run, would revoke).
func sweptWords(o renew.Outcome, verb string) string {
	n := o.Sweep.Count(sweep.DidThis(sweep.Revoked))
	if o.DryRun {
		n = o.Sweep.Count(sweep.Is(sweep.Stale))
	}
	return fmt.Sprintf("%s %d stale, from the ledger", verb, n)
}

// mayRemain says which tokens of this machine the ledger cannot know, and
// why: what a heal cannot retire and only a walk finds.
func mayRemain(g ledger.Gap) string {
	switch g {
	case ledger.Unrecorded:
		return "a token minted by a create whose answer was lost (a crash, a kill, a dropped connection) may remain"
	case ledger.Overflow:
		return fmt.Sprintf("tokens the ledger dropped when it overflowed (more than %d at once) may remain", ledger.Max)
	case ledger.NeverWhole:
		return "tokens minted before the ledger began (a new install, an upgrade, a lost or unreadable state file) may remain"
	case ledger.Unsaved:
		return "this run could not save the ledger, so a token it minted or found may be unknown to the next run"
	case ledger.OtherVault:
		return "tokens minted on this cluster before its ledger began may remain (the ledger was kept on another cluster, or the server would not say which it is)"
	}
	return "none"
}

// walkWords is what finds the tokens a gap may hide, and when: the walk
// unit this run started, or the command to run by hand. next is empty
// when nothing is left to do but wait for the walk.
func (r reporter) walkWords(g ledger.Gap) (found, next string) {
	rate := fmt.Sprintf("at --max-rps %g", r.walkRPS)
	switch {
	case r.walk.started:
		return "the walk (" + r.walk.unit + ") finds and revokes them, started now " + rate, ""
	case r.walk.unit != "":
		return "the walk unit " + r.walk.unit + " could not be started: " + r.walk.err.Error(),
			"start the walk: systemctl --user start " + r.walk.unit + ", or run: " + r.walkCommand()
	}
	return "a walk finds and revokes them: " + r.walkCommand() + " (" + rate + "; it resumes if stopped)", "find them: " + r.walkCommand()
}

// walkCommand is the walk by hand.
func (r reporter) walkCommand() string { return "vault-token-renew sweep --apply" }

// sweepTrouble is the warning and the next step when the ledger's sweep did
// not finish or could not revoke everything: the ledger keeps what it did
// not retire, and the next run tries again.
func (r reporter) sweepTrouble(o renew.Outcome) (warning, next string) {
	failed := o.Sweep.Count(sweep.Record.Failed)
	if o.SweepErr == nil && failed == 0 {
		return "", ""
	}
	warning = fmt.Sprintf("the stale sweep is incomplete: %d failed", failed)
	var ie *sweep.IncompleteError
	switch {
	case errors.As(o.SweepErr, &ie):
		warning = fmt.Sprintf("the stale sweep is incomplete: stopped after %d of %d of the ledger's tokens: %s", ie.Done, ie.Total, ie.Why)
	case o.SweepErr != nil:
		warning = "the stale sweep is incomplete: " + o.SweepErr.Error()
	}
	return warning, "the ledger keeps the stale tokens it did not retire, and the next run tries again (or now: vault-token-renew)"
}

func (r reporter) healed(o renew.Outcome) closing {
	c := closing{kind: renew.Healed, level: zerolog.InfoLevel}
	if o.DryRun {
		c.msg = fmt.Sprintf("OK: would heal: re-mint %s from foreign dn=%s and %s%s",
			r.spec.StoredDisplayName(), o.Current.DisplayName, sweptWords(o, "revoke"), dryWords(o))
		c.kind = renew.OK
		if o.SweepErr != nil {
			c.level = zerolog.WarnLevel
			c.err(o.SweepErr)
		}
		c.str("foreign_accessor", o.Current.Accessor).num("would_revoke", o.Sweep.Count(sweep.Is(sweep.Stale))).num("other_machines", o.Sweep.Count(sweep.Is(sweep.Other)))
		if o.Gap != ledger.NoGap {
			c.str("gap", o.Gap.String()).str("may_remain", mayRemain(o.Gap))
		}
		return planned(&c, o)
	}
	c.msg = fmt.Sprintf("HEALED: re-minted from foreign dn=%s (%s)", safetext.Value(o.Current.DisplayName), sweptWords(o, "revoked"))
	var next []string
	if o.Gap != ledger.NoGap {
		found, n := r.walkWords(o.Gap)
		c.msg += "; " + mayRemain(o.Gap) + ": " + found
		c.str("gap", o.Gap.String())
		if n != "" {
			next = append(next, n)
		}
		if !r.walk.started {
			c.level = zerolog.WarnLevel
		}
	}
	if o.Cap.Capped {
		next = append(next, r.capNext(o.Cap))
		c.level = zerolog.WarnLevel
		c.str("warning", r.capWhy(o.Cap))
	}
	if w, n := r.sweepTrouble(o); w != "" {
		c.msg += "; " + w
		next = append(next, n)
		c.level = zerolog.WarnLevel
		c.num("sweep_failed", o.Sweep.Count(sweep.Record.Failed))
	}
	c.str("accessor", o.Minted.Accessor).str("foreign_accessor", o.Current.Accessor).
		str("ttl", fmtDur(o.TTL)).str("host", r.spec.Host).str("path", o.Path)
	vaultWarnings(&c, o.VaultWarnings)
	if len(next) > 0 {
		c.str("next", strings.Join(next, "; "))
	}
	return c
}

// capWhy says what caps a token's TTL (decide.JudgeTTL's verdict).
func (r reporter) capWhy(v decide.TTLVerdict) string {
	if v.Explicit {
		return fmt.Sprintf("the token's explicit_max_ttl (%s) caps it: it dies on %s whatever the renewals", v.ExplicitMaxTTL, v.Dies.Format(time.RFC3339))
	}
	return fmt.Sprintf("%s caps the TTL at %s, below the period %s: the token mount's max TTL or the system max TTL", r.server(), v.TTL, v.Period)
}

// capNext is how to lift the cap, in the operator's CLI.
func (r reporter) capNext(v decide.TTLVerdict) string {
	if v.Explicit {
		return "re-mint it without -explicit-max-ttl: log in (" + r.login() + ") and run vault-token-renew"
	}
	return fmt.Sprintf("lift the cap: %s auth tune -max-lease-ttl=%s token/ (and the server's max_lease_ttl if that is lower)", r.cli, fmtDur(v.Period))
}

// vaultWarnings carries the warnings Vault attached to its answer, when
// there are any: they say what Vault changed about the request.
func vaultWarnings(c *closing, ws []string) *closing {
	if len(ws) == 0 {
		return c
	}
	vs := make([]string, len(ws))
	for i, w := range ws {
		vs[i] = safetext.Value(w)
	}
	return c.str("vault_warnings", strings.Join(vs, "; "))
}

// sweepCommand resumes a walk that stopped early: it starts after the
// place the last one reached, with a --timeout that fits the rest when the
// rate cap against a --timeout was what stopped it.
func (r reporter) sweepCommand(err error) string {
	cmd := r.walkCommand()
	if r.maxRPS > 0 && r.maxRPS != r.walkRPS {
		cmd += fmt.Sprintf(" --max-rps %g", r.maxRPS)
	}
	var ie *sweep.IncompleteError
	if errors.As(err, &ie) && ie.Need > 0 && r.timeout > 0 {
		cmd += " --timeout " + fmtDur(ie.Need)
	}
	return cmd
}

func (r reporter) drift(o renew.Outcome) closing {
	cur := o.Current
	why := "foreign token lacks create authority"
	next := "find what wrote the token (" + r.cli + " token lookup -accessor " + cur.Accessor + "), then restore the periodic token; see the runbook's manual re-mint"
	if blocker := o.Plan.Blocker; blocker != "" {
		why = blocker
		next = "find what wrote the token (" + r.cli + " token lookup, which reads the token file); then log in with a method that issues service tokens (" + r.login() + ") and run vault-token-renew, or re-mint by hand as an admin; see the runbook"
	}
	c := closing{kind: renew.Drift, cause: o.Cause, level: zerolog.ErrorLevel,
		reason: "heal denied — " + why,
		msg:    fmt.Sprintf("DRIFT: foreign token dn=%s in the token file; heal denied — %s; investigate what wrote it%s", safetext.Value(cur.DisplayName), why, dryWords(o))}
	if cur.Accessor != "" {
		c.str("accessor", cur.Accessor)
	}
	if cur.Type != "" {
		c.str("token_type", cur.Type)
	}
	c.str("display_name", safetext.Value(cur.DisplayName)).str("cause", o.Cause.String()).str("path", o.Path).
		str("vault_said", safetext.Value(o.Refusal)).str("next", next)
	return planned(&c, o)
}

func (r reporter) fail(o renew.Outcome) closing {
	err, cause := o.Err, o.Cause
	c := closing{kind: renew.Fail, cause: cause, level: zerolog.ErrorLevel,
		reason: r.stageWords(o.Stage) + " (" + cause.String() + ")", msg: "FAIL: " + r.stageWords(o.Stage) + dryWords(o)}
	c.err(err).str("stage", o.Stage.String()).str("cause", cause.String()).str("path", o.Path)
	if o.Cap.Capped {
		c.str("warning", r.capWhy(o.Cap))
	}
	if o.Minted.Accessor != "" {
		c.str("minted_accessor", o.Minted.Accessor).flag("minted_revoked", o.Minted.Revoked)
	}
	next := r.hint(o, cause, err)
	if s := r.strandNote(o, cause); s != "" {
		next += "; " + s
	}
	c.str("next", next)
	return planned(&c, o)
}

// planned adds a dry run's plan to its closing line, as status shows it:
// what the run would do, and why.
func planned(c *closing, o renew.Outcome) closing {
	if o.DryRun && o.Plan.Action != 0 {
		c.str("plan", o.Plan.Action.String()).str("why", o.Plan.Reason)
	}
	return *c
}

// stageWords is what the FAIL line says happened at stage: the stage's
// words, but for a token helper's read and write, which touch no file.
func (r reporter) stageWords(s failure.Stage) string {
	if _, ok := r.store.(tokenstore.Helper); ok {
		switch s {
		case failure.StageRead:
			return "could not read the token from the token helper"
		case failure.StageLookup:
			return "could not look up the token the token helper holds"
		case failure.StageWrite:
			return "could not store the token through the token helper"
		}
	}
	return s.Words()
}

// strandNote warns of an admin token a failed heal may have left alive: the
// mint it could not revoke, or one a create whose answer was lost minted.
// The ledger holds the first and knows of the second, so the next heal
// retires or walks to it; `sweep --apply` refuses while the file holds the
// foreign token, so the heal is the way.
func (r reporter) strandNote(o renew.Outcome, cause failure.Cause) string {
	if o.Minted.Accessor != "" && !o.Minted.Revoked {
		return "the minted token could not be revoked: " + r.cli + " token revoke -accessor " + o.Minted.Accessor + ", or the next heal retires it"
	}
	lost := map[failure.Cause]bool{failure.CauseServer: true, failure.CauseClientTimeout: true, failure.CauseTimeout: true,
		failure.CauseCanceled: true, failure.CauseUnreachable: true, failure.CauseSealed: true}
	if o.Stage == failure.StageCreate && lost[cause] {
		return r.server() + " may have minted a token before the answer was lost: the ledger knows, and the walk (" + r.walkCommand() + ", or the walk unit a run starts) finds and revokes it"
	}
	return ""
}

// server names the server as the operator knows it: vault, or openbao
// for a bao user.
func (r reporter) server() string {
	if r.cli == "bao" {
		return "openbao"
	}
	return "vault"
}

// login is the command that logs the operator in, in their CLI.
func (r reporter) login() string { return r.loginTo(r.profile != "") }

// loginTo is the command that logs in to this Vault and keeps the token in
// this store: the CLI's own login where the CLI keeps its token there (a
// helper, its token file), else a login whose token goes into the file
// (-token-only), with mv -b keeping what it replaces (it may be a live
// login to another Vault). With addr, it names this Vault's address: a
// profile's is not the shell's.
func (r reporter) loginTo(addr bool) string {
	cmd := r.cli + " login -method=oidc"
	if addr {
		cmd = r.setting("ADDR") + "=" + r.addr + " " + cmd
	}
	f, ok := r.store.(tokenstore.File)
	if !ok || r.loginWrites {
		return cmd
	}
	return fmt.Sprintf("(umask 077; %s -token-only > %s.new) && mv -b %s.new %s", cmd, f.Path, f.Path, f.Path)
}

// remint is the runbook's manual recovery, for a dead token with no
// admin-capable token to heal from; the run after it records the token in
// the ledger. It never writes blindly over the file: the token goes to a
// new file first, and mv -b keeps the one it replaces (it may be a live
// login to another Vault) as <file>~.
func (r reporter) remint() string {
	if h, ok := r.store.(tokenstore.Helper); ok {
		return r.remintThrough(h)
	}
	var p []string
	for _, pol := range r.spec.Policies {
		p = append(p, "-policy="+pol)
	}
	s := r.spec
	return fmt.Sprintf("(umask 077; %s token create -orphan -period=%s %s -display-name=%s -metadata=managed_by=%s -metadata=host=%s -metadata=user=%s -field=token > %s.new) && mv -b %s.new %s && vault-token-renew",
		r.cli, fmtDur(s.Period), strings.Join(p, " "), s.DisplayName, decide.ManagedBy, s.Host, s.User, r.path, r.path, r.path)
}

// remintThrough is the manual re-mint where a token helper keeps the
// token: the helper's token for this address is kept in a private file
// first (it may be a live login to another Vault), then the new one is
// stored through the helper, as vault login would.
func (r reporter) remintThrough(h tokenstore.Helper) string {
	var p []string
	for _, pol := range r.spec.Policies {
		p = append(p, "-policy="+pol)
	}
	s, addr := r.spec, r.setting("ADDR")+"="+h.Addr
	return fmt.Sprintf("(umask 077; %s %s get > ~/.vault-token.before-remint; %s token create -orphan -period=%s %s -display-name=%s -metadata=managed_by=%s -metadata=host=%s -metadata=user=%s -field=token | %s %s store) && vault-token-renew",
		addr, h.Path, r.cli, fmtDur(s.Period), strings.Join(p, " "), s.DisplayName, decide.ManagedBy, s.Host, s.User, addr, h.Path)
}

// tokenIsOthers is the hint when the token this Vault refused is the one
// another setup's store holds: a login to that setup's Vault, written
// where this one keeps its token. It is alive there, so nothing tells the
// operator to overwrite it.
func (r reporter) tokenIsOthers() string {
	return "the token in this store (" + r.path + ") is the one " + setupName(r.tokenOf.name) + "'s store holds: a login to " + r.tokenOf.addr +
		", not to " + r.addr + ", written where this setup keeps its token; it is not dead, so keep it: log in to " + r.addr + " for this setup (" +
		r.loginTo(true) + ") and run again, and check that each setup's store is its own"
}

// sameServer: a and b (URLs) name one host and port, as the client
// dials them.
func sameServer(a, b string) bool {
	ua, ea := url.Parse(a)
	ub, eb := url.Parse(b)
	return ea == nil && eb == nil && strings.EqualFold(ua.Host, ub.Host)
}

// helperHint says what to do about a token helper that failed, or a CLI
// config file that names one that cannot be used.
func (r reporter) helperHint(err error) string {
	var he *tokenstore.HelperError
	if errors.As(err, &he) {
		return "the token helper " + he.Path + " failed at " + he.Op + " (error= says how, and whether a failed store was undone); run it as the CLI does to see why (" +
			r.setting("ADDR") + "=" + r.addr + " " + he.Path + " get >/dev/null), fix it or what it keeps tokens in (a locked keyring), and run again"
	}
	return "the CLI's config file names a token helper that cannot be used (error= says which and why); fix token_helper there (the " + r.cli + " CLI fails on it too), or pass --token-file"
}

// hint says what to do next about a failure, by cause: every cause has
// words of its own (TestEveryCauseHasItsOwnHint).
func (r reporter) hint(o renew.Outcome, cause failure.Cause, err error) string {
	switch cause {
	case failure.CauseNoToken:
		return "log in (" + r.login() + ") and run again to heal, or mint the periodic token by hand: " + r.remint()
	case failure.CauseBadTokenFile:
		return "the token file was left as it is and " + r.server() + " was not asked; look at it (ls -l " + o.Path + ": a regular file holding one token), then log in (" + r.login() + ") to write one token there and run again, or re-mint by hand: " + r.remint()
	case failure.CauseTokenDenied:
		if r.tokenOf.found {
			return r.tokenIsOthers()
		}
		return r.server() + " at " + r.addr + " does not accept the token in the file: it may be a live login to another " + r.server() + " (check that " + r.setting("ADDR") + " is the one you logged in to), or dead or revoked here; if it is this one's, log in (" + r.login() + ") and run again, or re-mint by hand, which keeps the old token beside the file: " + r.remint()
	case failure.CauseSealed:
		return r.server() + " at " + r.addr + " is sealed or has no active node; unseal it (" + r.cli + " operator unseal) and run again"
	case failure.CauseUnreachable:
		return r.unreachableHint(err)
	case failure.CauseServer:
		return r.server() + " at " + r.addr + " answered with a server error; check its logs and run again"
	case failure.CauseTLS:
		return r.tlsHint(err)
	case failure.CauseTimeout:
		return fmt.Sprintf("the run's --timeout (%s) passed; check %s status, or raise --timeout", fmtDur(r.timeout), r.cli)
	case failure.CauseClientTimeout:
		return "a request to " + r.server() + " at " + r.addr + " outlived the client's own timeout (" + r.setting("CLIENT_TIMEOUT") + ", default 60s); check its load, or raise " + r.setting("CLIENT_TIMEOUT") + " in the environment file"
	case failure.CauseCanceled:
		return "the run was interrupted (Ctrl-C or SIGTERM) before it finished; run it again"
	case failure.CauseFilesystem:
		return fsHint(err, r.login())
	case failure.CauseLockHeld:
		return "another vault-token-renew run holds the lock; wait for it (pgrep -a vault-token-renew) and run again, or raise --lock-wait"
	case failure.CauseCapped:
		return r.capNext(o.Cap)
	case failure.CauseMintRejected:
		return r.server() + " minted a token unlike the one asked for (name, period, orphan, policies, meta tags); check the token store's limits, the policies and any role or plugin that rewrites creates, then run again"
	case failure.CauseIncomplete:
		return "stale tokens may remain; the walk kept its place: resume it with " + r.sweepCommand(err)
	case failure.CauseForeign:
		return "the token file holds a foreign token (dn=" + safetext.Value(o.Current.DisplayName) + "); run vault-token-renew first: it heals the file, then sweeps"
	case failure.CauseTooLarge:
		return r.server() + " at " + r.addr + " answered with more than any vault sends, and the answer was not read; check that " + r.setting("ADDR") + " reaches the server and not a proxy's or a portal's page (curl -sS " + r.addr + "/v1/sys/health)"
	case failure.CauseUnsafeEnvFile:
		return unsafeEnvHint(err)
	case failure.CauseTokenHelper:
		return r.helperHint(err)
	case failure.CauseStoreConflict:
		return "nothing was done; give each setup a store of its own: VTR_TOKEN_FILE (or BAO_TOKEN_PATH) in each profile's ~/.config/vault-token-renew/NAME.env, or a token helper that keeps a token per address with a different VAULT_ADDR each; see the runbook, Several Vaults"
	case failure.CauseSettings:
		return "fix the " + r.setting("*") + " variables in the environment file (~/.config/vault-token-renew/env), or the shell's"
	case failure.CauseRefused:
		if o.Stage == failure.StageSweep {
			return "the token in " + o.Path + " may not walk the accessors: a walk needs list and sudo on auth/token/accessors, and update on auth/token/lookup-accessor and revoke-accessor (vault-admin has them)"
		}
		return r.server() + " refused the request; check the policies of the token in " + o.Path + " (" + r.cli + " token lookup)"
	}
	return "run again with --log-format=console for detail; see the runbook"
}

// unreachableHint: when the address answered, the server that did not is
// where it sent the request, the node it takes for the active one.
func (r reporter) unreachableHint(err error) string {
	if to := failure.Unanswered(err); to != "" && !sameServer(to, r.addr) {
		return r.server() + " at " + r.addr + " answered and sent the request on to " + safetext.Value(to) +
			" (the active node it names), which cannot be reached: the cluster may have lost its active node (a dead leader, no quorum); check " +
			r.cli + " operator raft list-peers and " + r.cli + " status on its nodes, and run again once a node is active"
	}
	return "cannot reach " + r.server() + " at " + r.addr + "; check " + r.setting("ADDR") + " where it is set (the environment file or the shell) and " + r.cli + " status"
}

// unsafeEnvHint names the env file (or its directory) and the command that
// makes it the user's own again.
func unsafeEnvHint(err error) string {
	var ue *envfile.UnsafeError
	if !errors.As(err, &ue) {
		return "make ~/.config/vault-token-renew/env yours and private: chmod 600 ~/.config/vault-token-renew/env"
	}
	fix := "chmod 600 " + ue.Path
	if ue.Dir {
		fix = "chmod 700 " + ue.Path
	}
	if strings.Contains(ue.Why, "belongs to uid") {
		fix = "chown $USER " + ue.Path + " && " + fix
	}
	return "whoever can write " + ue.Path + " chooses where the admin token goes and what the notifier runs, so nothing was done; find out who changed it (ls -la " + ue.Path + "), then: " + fix
}

// setting names a client setting as the operator's CLI reads it: BAO_X
// for bao users, VAULT_X for everyone else.
func (r reporter) setting(name string) string {
	if r.cli == "bao" {
		return "BAO_" + name
	}
	return "VAULT_" + name
}

// tlsHint names the setting that fixes a failed TLS handshake.
func (r reporter) tlsHint(err error) string {
	addr, s := r.addr, r.setting
	switch failure.TLSKind(err) {
	case failure.TLSUnknownCA:
		return r.server() + "'s certificate at " + addr + " is signed by a CA this machine does not trust; set " + s("CACERT") + " (a CA file) or " + s("CAPATH") + " (a directory) in the environment file"
	case failure.TLSHostname:
		return r.server() + "'s certificate does not name the host in " + s("ADDR") + " (" + addr + "); use a name the certificate carries in " + s("ADDR") + ", or set " + s("TLS_SERVER_NAME") + " in the environment file"
	case failure.TLSExpired:
		return r.server() + "'s certificate at " + addr + " has expired or is not yet valid; check this machine's clock (date), then have the certificate renewed"
	case failure.TLSNotTLS:
		return r.server() + " at " + addr + " did not answer in TLS; check the scheme (https:// or http://) in " + s("ADDR")
	}
	return "the TLS handshake with " + r.server() + " at " + addr + " failed; check " + s("CACERT") + ", " + s("CAPATH") + ", " + s("CLIENT_CERT") + ", " + s("CLIENT_KEY") + " and " + s("TLS_SERVER_NAME") + " in the environment file"
}

// fsHint names the path a local file operation failed on and what fixes it.
func fsHint(err error, login string) string {
	path := ""
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		path = pe.Path
	case errors.As(err, &le):
		path = le.New
	}
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Sprintf("no space left for %s; free space on its file system (df -h %s) and run again", path, filepath.Dir(path))
	case errors.Is(err, syscall.EROFS):
		return fmt.Sprintf("%s is on a read-only file system; remount it read-write, or point --token-file at a writable place", path)
	case errors.Is(err, syscall.EISDIR):
		return fmt.Sprintf("%s is a directory, not a file; move it aside, then log in (%s) and run again", path, login)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("permission denied on %s; fix the owner and mode of it and of its directory (ls -ld %s)", path, filepath.Dir(path))
	}
	return fmt.Sprintf("check %s and its directory: owner, mode, free space, read-only mount", path)
}

func fmtDur(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
