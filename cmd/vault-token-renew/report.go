package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
)

// reporter writes a run's one closing line. Its fields are what the hints
// need to name: the Vault address, the run's settings and its time budget.
type reporter struct {
	log     zerolog.Logger
	addr    string
	cfg     renew.Config
	timeout time.Duration // the run's --timeout; 0 for none
}

// outcome is what a closing line said, for the exit code and the run state.
type outcome struct {
	code    int
	kind    string // ok, healed, drift or fail
	cause   string // the cause= field, empty on success
	summary string // the closing line's message
}

// report logs the run's one closing line and maps the outcome to an exit
// code: the single place where outcomes become exit statuses.
func (r reporter) report(res renew.Result, err error) outcome {
	switch {
	case err == nil && res.Action == renew.ActionRenew:
		return r.renewed(res)
	case err == nil && res.Action == renew.ActionHeal:
		return r.healed(res)
	case errors.Is(err, renew.ErrHealDenied):
		return r.drift(res)
	}
	return r.fail(res, err)
}

func dryWords(res renew.Result) string {
	if res.DryRun {
		return " (dry run: nothing changed)"
	}
	return ""
}

func (r reporter) renewed(res renew.Result) outcome {
	if res.DryRun {
		msg := "OK: would renew periodic token" + dryWords(res)
		r.log.Info().Str("accessor", res.Current.Accessor).Str("ttl", fmtDur(res.TTL)).Msg(msg)
		return outcome{code: exitOK, kind: "ok", summary: msg}
	}
	msg := "OK: renewed periodic token"
	ev := r.log.Info()
	if res.Cap.Capped {
		ev = r.log.Warn().Str("warning", res.Cap.Why).Str("next", res.Cap.Next)
		msg += "; vault capped its TTL below the period"
	}
	vaultWarnings(ev, res.VaultWarnings).Str("accessor", res.Current.Accessor).Str("ttl", fmtDur(res.TTL)).Str("period", fmtDur(res.Current.Period)).
		Msg(msg)
	return outcome{code: exitOK, kind: "ok", summary: msg}
}

func (r reporter) healed(res renew.Result) outcome {
	if res.DryRun {
		msg := fmt.Sprintf("OK: would heal: re-mint %s from foreign dn=%s and revoke %d stale%s",
			r.cfg.Spec.StoredDisplayName(), res.Current.DisplayName, len(res.Sweep.Matched), dryWords(res))
		ev := r.log.Info()
		if res.SweepErr != nil {
			ev = r.log.Warn().AnErr("sweep_error", res.SweepErr)
		}
		ev.Str("foreign_accessor", res.Current.Accessor).Int("would_revoke", len(res.Sweep.Matched)).
			Int("other_machines", len(res.Sweep.Others)).Msg(msg)
		return outcome{code: exitOK, kind: "ok", summary: msg}
	}
	msg := fmt.Sprintf("HEALED: re-minted from foreign dn=%s (revoked %d stale)", res.Current.DisplayName, len(res.Sweep.Revoked))
	var next []string
	if res.Cap.Capped {
		next = append(next, res.Cap.Next)
	}
	incomplete := res.SweepErr != nil || len(res.Sweep.Failed) > 0
	if incomplete {
		why := fmt.Sprintf("%d failed", len(res.Sweep.Failed))
		if res.SweepErr != nil {
			why = strings.TrimPrefix(res.SweepErr.Error(), sweep.ErrIncomplete.Error()+": ")
		}
		msg += "; the stale sweep is incomplete: " + why
		next = append(next, "a stale token, or one a retried create may have stranded, can remain; finish with: "+r.sweepCommand(res.SweepErr))
	}
	ev := r.log.Info()
	if res.Cap.Capped || incomplete {
		ev = r.log.Warn()
	}
	if res.Cap.Capped {
		ev = ev.Str("warning", res.Cap.Why)
	}
	if incomplete {
		ev = ev.Int("sweep_failed", len(res.Sweep.Failed))
	}
	ev = ev.Str("accessor", res.Minted.Accessor).Str("foreign_accessor", res.Current.Accessor).
		Str("ttl", fmtDur(res.TTL)).Str("host", r.cfg.Spec.Host).Str("path", res.Path)
	ev = vaultWarnings(ev, res.VaultWarnings)
	if len(next) > 0 {
		ev = ev.Str("next", strings.Join(next, "; "))
	}
	ev.Msg(msg)
	return outcome{code: exitOK, kind: "healed", summary: msg}
}

// vaultWarnings carries the warnings Vault attached to its answer, when
// there are any: they say what Vault changed about the request.
func vaultWarnings(ev *zerolog.Event, ws []string) *zerolog.Event {
	if len(ws) == 0 {
		return ev
	}
	return ev.Str("vault_warnings", strings.Join(ws, "; "))
}

// sweepCommand finishes a walk that stopped early, with a --timeout that
// fits it when the rate cap was what ran out.
func (r reporter) sweepCommand(err error) string {
	cmd := "vault-token-renew sweep --apply"
	if r.cfg.MaxRPS > 0 {
		cmd += fmt.Sprintf(" --max-rps %g", r.cfg.MaxRPS)
	}
	var ie *sweep.IncompleteError
	if errors.As(err, &ie) && ie.Need > 0 {
		cmd += " --timeout " + fmtDur(ie.Need)
	}
	return cmd
}

func (r reporter) drift(res renew.Result) outcome {
	cur := res.Current
	why := "foreign token lacks create authority"
	next := "find what wrote the token (vault token lookup -accessor " + cur.Accessor + "), then restore the periodic token; see the runbook's manual re-mint"
	if blocker := renew.CannotMint(cur); blocker != "" {
		why = blocker
		next = "find what wrote the token (vault token lookup, which reads the token file); then log in with a method that issues service tokens (vault login -method=oidc) and run vault-token-renew, or re-mint by hand as an admin; see the runbook"
	}
	msg := fmt.Sprintf("DRIFT: foreign token dn=%s in the token file; heal denied — %s; investigate what wrote it%s", cur.DisplayName, why, dryWords(res))
	ev := r.log.Error()
	if cur.Accessor != "" {
		ev = ev.Str("accessor", cur.Accessor)
	}
	if cur.Type != "" {
		ev = ev.Str("token_type", cur.Type)
	}
	ev.Str("display_name", cur.DisplayName).Str("cause", renew.CauseRefused.String()).Str("path", res.Path).
		Str("vault_said", res.Refusal).Str("next", next).Msg(msg)
	return outcome{code: exitFail, kind: "drift", cause: renew.CauseRefused.String(), summary: msg}
}

func (r reporter) fail(res renew.Result, err error) outcome {
	cause := res.Cause
	if cause == renew.CauseUnknown {
		cause = renew.Classify(err, false)
	}
	msg := "FAIL: " + res.Stage.Words() + dryWords(res)
	ev := r.log.Error().Err(err).Str("stage", res.Stage.String()).Str("cause", cause.String()).Str("path", res.Path)
	if res.Cap.Capped {
		ev = ev.Str("warning", res.Cap.Why)
	}
	if res.MintedAccessor != "" {
		ev = ev.Str("minted_accessor", res.MintedAccessor).Bool("minted_revoked", res.MintRevoked)
	}
	next := r.hint(res, cause, err)
	if s := strandNote(res, cause); s != "" {
		next += "; " + s
	}
	ev.Str("next", next).Msg(msg)
	return outcome{code: exitFail, kind: "fail", cause: cause.String(), summary: msg}
}

// strandNote warns of an admin token a failed heal may have left alive: the
// mint it could not revoke, or one a create whose answer was lost minted
// (the client retries a create that failed mid-flight). The next heal's
// sweep revokes either; `sweep --apply` refuses while the file holds the
// foreign token, so the heal is the way.
func strandNote(res renew.Result, cause renew.Cause) string {
	if res.MintedAccessor != "" && !res.MintRevoked {
		return "the minted token could not be revoked: vault token revoke -accessor " + res.MintedAccessor + ", or the next heal's sweep revokes it"
	}
	lost := map[renew.Cause]bool{renew.CauseServer: true, renew.CauseClientTimeout: true, renew.CauseTimeout: true,
		renew.CauseCanceled: true, renew.CauseUnreachable: true, renew.CauseSealed: true}
	if res.Stage == renew.StageCreate && lost[cause] {
		return "vault may have minted a token before the answer was lost: the next heal's sweep revokes it"
	}
	return ""
}

// remint is the runbook's manual recovery, for a dead token with no
// admin-capable token to heal from.
func remint(cfg renew.Config) string {
	var p []string
	for _, pol := range cfg.Spec.Policies {
		p = append(p, "-policy="+pol)
	}
	return fmt.Sprintf("(umask 077; vault token create -orphan -period=%s %s -display-name=%s -metadata=managed_by=%s -metadata=host=%s -metadata=user=%s -field=token > %s)",
		fmtDur(cfg.Spec.Period), strings.Join(p, " "), cfg.Spec.DisplayName, renew.ManagedBy, cfg.Spec.Host, cfg.Spec.User, cfg.TokenFile)
}

// hint says what to do next about a failure, by cause: every cause has
// words of its own (TestEveryCauseHasItsOwnHint).
func (r reporter) hint(res renew.Result, cause renew.Cause, err error) string {
	switch cause {
	case renew.CauseNoToken:
		return "log in (vault login -method=oidc) and run again to heal, or mint the periodic token by hand: " + remint(r.cfg)
	case renew.CauseTokenDenied:
		return "the token in the file is dead or revoked and cannot heal itself; log in (vault login -method=oidc) and run again, or re-mint by hand: " + remint(r.cfg)
	case renew.CauseSealed:
		return "vault at " + r.addr + " is sealed or has no active node; unseal it (vault operator unseal) and run again"
	case renew.CauseUnreachable:
		return "cannot reach vault at " + r.addr + "; check VAULT_ADDR in the environment file and vault status"
	case renew.CauseServer:
		return "vault at " + r.addr + " answered with a server error; check its logs and run again"
	case renew.CauseTLS:
		return tlsHint(r.addr, err)
	case renew.CauseTimeout:
		return fmt.Sprintf("the run's --timeout (%s) passed; check vault status, or raise --timeout", fmtDur(r.timeout))
	case renew.CauseClientTimeout:
		return "a request to vault at " + r.addr + " outlived the client's own timeout (VAULT_CLIENT_TIMEOUT, default 60s); check vault's load, or raise VAULT_CLIENT_TIMEOUT in the environment file"
	case renew.CauseCanceled:
		return "the run was interrupted (Ctrl-C or SIGTERM) before it finished; run it again"
	case renew.CauseFilesystem:
		return fsHint(err)
	case renew.CauseLockHeld:
		return "another vault-token-renew run holds the lock; wait for it (pgrep -a vault-token-renew) and run again, or raise --lock-wait"
	case renew.CauseCapped:
		return res.Cap.Next
	case renew.CauseMintRejected:
		return "vault minted a token unlike the one asked for (name, period, orphan, policies, meta tags); check the token store's limits, the policies and any role or plugin that rewrites creates, then run again"
	case renew.CauseIncomplete:
		return "stale tokens may remain; finish the walk: " + r.sweepCommand(err)
	case renew.CauseForeign:
		return "the token file holds a foreign token (dn=" + res.Current.DisplayName + "); run vault-token-renew first: it heals the file, then sweeps"
	case renew.CauseSettings:
		return "fix the VAULT_* variables in the environment file (~/.config/vault-token-renew/env)"
	case renew.CauseRefused:
		if res.Stage == renew.StageSweep {
			return "the token in " + res.Path + " may not walk the accessors: a sweep needs list and sudo on auth/token/accessors, and update on auth/token/lookup-accessor and revoke-accessor (vault-admin has them)"
		}
		return "vault refused the request; check the policies of the token in " + res.Path + " (vault token lookup)"
	}
	return "run again with --log-format=console for detail; see the runbook"
}

// tlsHint names the VAULT_* setting that fixes a failed TLS handshake.
func tlsHint(addr string, err error) string {
	switch renew.TLSKind(err) {
	case renew.TLSUnknownCA:
		return "vault's certificate at " + addr + " is signed by a CA this machine does not trust; set VAULT_CACERT (a CA file) or VAULT_CAPATH (a directory) in the environment file"
	case renew.TLSHostname:
		return "vault's certificate does not name the host in VAULT_ADDR (" + addr + "); use a name the certificate carries in VAULT_ADDR, or set VAULT_TLS_SERVER_NAME in the environment file"
	case renew.TLSExpired:
		return "vault's certificate at " + addr + " has expired or is not yet valid; check this machine's clock (date), then have the certificate renewed"
	case renew.TLSNotTLS:
		return "vault at " + addr + " did not answer in TLS; check the scheme (https:// or http://) in VAULT_ADDR"
	}
	return "the TLS handshake with vault at " + addr + " failed; check VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY and VAULT_TLS_SERVER_NAME in the environment file"
}

// fsHint names the path a local file operation failed on and what fixes it.
func fsHint(err error) string {
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
		return fmt.Sprintf("%s is a directory, not a file; move it aside, then log in (vault login -method=oidc) and run again", path)
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
