package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/internal/vaultclient"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
	"github.com/devvm/vault-token-renew/tokenstore"
)

// env is an environment of these KEY, value pairs and nothing else.
func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// getenvOf is env's values alone, for the logger.
func getenvOf(lookup func(string) (string, bool)) func(string) string {
	return func(k string) string { v, _ := lookup(k); return v }
}

var testSpec = decide.Spec{DisplayName: "devvm-wizard", Policies: []string{"vault-admin", "sops-admin"},
	Period: 768 * time.Hour, Host: "devvm-a", User: "wizard"}

func testReporter() reporter {
	return reporter{addr: "http://127.0.0.1:8200", spec: testSpec, path: "/home/w/.vault-token", timeout: 2 * time.Minute, cli: "vault", walkRPS: defaultWalkRPS}
}

// ended is o with err, and how a run that got there ends, its cause
// included (as renew.Run fills them in): the reporter reads them.
func ended(o renew.Outcome, err error) renew.Outcome {
	o.Err = err
	if o.Cause == failure.CauseUnknown && errors.Is(err, renew.ErrHealDenied) {
		o.Cause = failure.CauseRefused
	} else if o.Cause == failure.CauseUnknown {
		o.Cause = failure.Classify(err, failure.AskToken)
	}
	switch {
	case err == nil && o.Plan.Action == decide.Heal && !o.DryRun:
		o.Kind = renew.Healed
	case err == nil:
		o.Kind = renew.OK
	case errors.Is(err, renew.ErrHealDenied):
		o.Kind = renew.Drift
	default:
		o.Kind = renew.Fail
	}
	return o
}

// report prints the closing line of o ended with err to log and returns
// the exit status it maps to.
func report(log zerolog.Logger, o renew.Outcome, err error) int {
	line := testReporter().report(ended(o, err))
	line.print(log)
	return exitStatus(line.kind)
}

// records are sweep records of accs, each judged v and done d.
func records(v sweep.Verdict, d sweep.Did, accs ...string) []sweep.Record {
	out := make([]sweep.Record, len(accs))
	for i, a := range accs {
		out[i] = sweep.Record{Accessor: a, Verdict: v, Did: d}
	}
	return out
}

// reportCase is one row of TestReportMapsOutcomesToExitCodesAndPrefixes:
// an outcome, the error it ended with, and the closing line it must make.
type reportCase struct {
	name   string
	res    renew.Outcome
	err    error
	code   int
	prefix string
	has    []string
}

// oidc is the login token of the heals and dry runs below.
var oidc = decide.TokenInfo{Accessor: "oidc-acc", DisplayName: "oidc-wizard"}

// reportCases are the closing lines of every ending.
var reportCases = []reportCase{
	{"renewed", renew.Outcome{Plan: decide.Plan{Action: decide.Renew}, Current: decide.TokenInfo{Accessor: "a1", Period: 768 * time.Hour}, TTL: 768 * time.Hour}, nil,
		0, "OK: renewed periodic token", []string{"accessor=a1", "ttl=768h"}},
	{"healed", renew.Outcome{Plan: decide.Plan{Action: decide.Heal}, Current: oidc, Minted: renew.Minted{TokenInfo: decide.TokenInfo{Accessor: "m1"}}, Sweep: sweep.Report{Records: records(sweep.Stale, sweep.Revoked, "s1", "s2")}}, nil,
		0, "HEALED: re-minted from foreign dn=oidc-wizard (revoked 2 stale, from the ledger)", []string{"accessor=m1", "foreign_accessor=oidc-acc"}},
	{"healed with sweep failures", renew.Outcome{Plan: decide.Plan{Action: decide.Heal}, Current: oidc, Minted: renew.Minted{TokenInfo: decide.TokenInfo{Accessor: "m1"}}, Sweep: sweep.Report{Records: records(sweep.Stale, sweep.RevokeFailed, "s1")}}, nil,
		0, "HEALED: re-minted from foreign dn=oidc-wizard (revoked 0 stale, from the ledger)", []string{"sweep_failed=1", "the ledger keeps the stale tokens it did not retire"}},
	{"healed with a gap, by hand: what may remain and the command that finds it", renew.Outcome{Plan: decide.Plan{Action: decide.Heal}, Current: oidc, Minted: renew.Minted{TokenInfo: decide.TokenInfo{Accessor: "m1"}}, Gap: ledger.NeverWhole}, nil,
		0, "HEALED: re-minted from foreign dn=oidc-wizard (revoked 0 stale, from the ledger); tokens minted before the ledger began (a new install, an upgrade, a lost or unreadable state file) may remain: a walk finds and revokes them: vault-token-renew sweep --apply (at --max-rps 25; it resumes if stopped)", []string{"gap=never-whole", "next=\"find them: vault-token-renew sweep --apply\""}},
	{"healed, the sweep of the ledger cut short", renew.Outcome{Plan: decide.Plan{Action: decide.Heal}, Current: oidc, Minted: renew.Minted{TokenInfo: decide.TokenInfo{Accessor: "m1"}}, SweepErr: &sweep.IncompleteError{Phase: sweep.OpLookup, Done: 1, Total: 2, Why: "interrupted"}}, nil,
		0, "HEALED: re-minted from foreign dn=oidc-wizard (revoked 0 stale, from the ledger); the stale sweep is incomplete: stopped after 1 of 2 of the ledger's tokens: interrupted", []string{"the next run tries again"}},
	{"healed but capped", renew.Outcome{Plan: decide.Plan{Action: decide.Heal}, Current: oidc, Minted: renew.Minted{TokenInfo: decide.TokenInfo{Accessor: "m1"}}, TTL: 48 * time.Hour,
		Cap: decide.TTLVerdict{Capped: true, TTL: 48 * time.Hour, Period: 768 * time.Hour}, VaultWarnings: []string{"TTL capped"}}, nil,
		0, "HEALED: re-minted from foreign dn=oidc-wizard (revoked 0 stale, from the ledger)", []string{"warning=\"vault caps the TTL at 48h0m0s, below the period 768h0m0s", "vault auth tune", "ttl=48h", "vault_warnings="}},
	{"healed, capped and the sweep incomplete: both said", renew.Outcome{Plan: decide.Plan{Action: decide.Heal}, Current: oidc, Minted: renew.Minted{TokenInfo: decide.TokenInfo{Accessor: "m1"}}, TTL: 48 * time.Hour,
		Cap: decide.TTLVerdict{Capped: true, TTL: 48 * time.Hour, Period: 768 * time.Hour}, SweepErr: errors.New("lookup-accessor: 500"), Gap: ledger.Unrecorded}, nil,
		0, "HEALED: re-minted from foreign dn=oidc-wizard (revoked 0 stale, from the ledger); a token minted by a create whose answer was lost (a crash, a kill, a dropped connection) may remain: a walk finds and revokes them: vault-token-renew sweep --apply (at --max-rps 25; it resumes if stopped); the stale sweep is incomplete: lookup-accessor: 500", []string{"warning=\"vault caps the TTL at 48h0m0s, below the period 768h0m0s", "vault auth tune", "gap=unrecorded-create"}},
	{"renewed but capped", renew.Outcome{Plan: decide.Plan{Action: decide.Renew}, Current: decide.TokenInfo{Accessor: "a1", Period: 768 * time.Hour}, TTL: 48 * time.Hour,
		Cap: decide.TTLVerdict{Capped: true, TTL: 48 * time.Hour, Period: 768 * time.Hour}}, nil,
		0, "OK: renewed periodic token; vault capped its TTL below the period", []string{"warning=", "vault auth tune"}},
	{"drift", renew.Outcome{Plan: decide.Plan{Action: decide.Refuse}, Current: decide.TokenInfo{Accessor: "k8s-acc", DisplayName: "kubernetes-woodpecker-default"}},
		fmt.Errorf("%w (vault said: 403)", renew.ErrHealDenied),
		1, "DRIFT: foreign token dn=kubernetes-woodpecker-default in the token file; heal denied — foreign token lacks create authority; investigate what wrote it", []string{"accessor=k8s-acc"}},
	{"drift by a batch token", renew.Outcome{Plan: decide.Plan{Action: decide.Refuse, Blocker: "a batch token cannot heal: batch tokens cannot create tokens"}, Current: decide.TokenInfo{DisplayName: "oidc-wizard", Type: "batch"}, Refusal: "a batch token cannot heal: batch tokens cannot create tokens"},
		fmt.Errorf("%w: a batch token cannot heal", renew.ErrHealDenied),
		1, "DRIFT: foreign token dn=oidc-wizard in the token file; heal denied — a batch token cannot heal", []string{"token_type=batch", "vault token lookup, which reads the token file"}},
	{"dead token", renew.Outcome{Stage: failure.StageLookup, Cause: failure.CauseTokenDenied}, errors.New("403"),
		1, "FAIL: could not look up the token in the file", []string{"vault login -method=oidc", "vault token create -orphan -period=768h -policy=vault-admin -policy=sops-admin -display-name=devvm-wizard -metadata=managed_by=vault-token-renew -metadata=host=devvm-a"}},
	{"unreachable", renew.Outcome{Stage: failure.StageLookup, Cause: failure.CauseUnreachable}, errors.New("dial"),
		1, "FAIL: could not look up", []string{"cause=unreachable", "cannot reach vault at http://127.0.0.1:8200"}},
	{"sealed", renew.Outcome{Stage: failure.StageRenew, Cause: failure.CauseSealed}, errors.New("503"),
		1, "FAIL: could not renew", []string{"vault operator unseal"}},
	{"lock held", renew.Outcome{Stage: failure.StageLock}, tokenfile.ErrLockTimeout,
		1, "FAIL: could not take the run lock", []string{"cause=lock-held", "another vault-token-renew run holds the lock"}},
	{"lock file cannot be created", renew.Outcome{Stage: failure.StageLock}, &fs.PathError{Op: "open", Path: "/home/w/.vault-token.lock", Err: syscall.EACCES},
		1, "FAIL: could not take the run lock", []string{"cause=filesystem", "permission denied on /home/w/.vault-token.lock"}},
	{"no space", renew.Outcome{Stage: failure.StageWrite}, &fs.PathError{Op: "write", Path: "/home/w/.vault-token.tmp-1", Err: syscall.ENOSPC},
		1, "FAIL: could not write the token file; the old file is unchanged", []string{"cause=filesystem", "no space left for /home/w/.vault-token.tmp-1", "df -h /home/w"}},
	{"read-only home", renew.Outcome{Stage: failure.StageLock}, &fs.PathError{Op: "open", Path: "/home/w/.vault-token.lock", Err: syscall.EROFS},
		1, "FAIL: could not take the run lock", []string{"cause=filesystem", "/home/w/.vault-token.lock is on a read-only file system"}},
	{"token path is a directory", renew.Outcome{Stage: failure.StageRead}, &fs.PathError{Op: "read", Path: "/home/w/.vault-token", Err: syscall.EISDIR},
		1, "FAIL: could not read the token file", []string{"cause=filesystem", "/home/w/.vault-token is a directory"}},
	{"missing file", renew.Outcome{Stage: failure.StageRead}, fmt.Errorf("%w: /x", tokenfile.ErrMissing),
		1, "FAIL: could not read the token file", []string{"cause=no-token", "vault login -method=oidc"}},
	{"unknown CA", renew.Outcome{Stage: failure.StageLookup}, &url.Error{Op: "Get", URL: "https://127.0.0.1:8200", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}},
		1, "FAIL: could not look up", []string{"cause=tls", "VAULT_CACERT", "VAULT_CAPATH"}},
	{"hostname mismatch", renew.Outcome{Stage: failure.StageLookup}, &url.Error{Op: "Get", URL: "x", Err: x509.HostnameError{Host: "vault"}},
		1, "FAIL: could not look up", []string{"cause=tls", "VAULT_TLS_SERVER_NAME"}},
	{"run timeout", renew.Outcome{Stage: failure.StageRenew}, fmt.Errorf("x: %w", context.DeadlineExceeded),
		1, "FAIL: could not renew", []string{"cause=timeout", "--timeout (2m)"}},
	{"client timeout", renew.Outcome{Stage: failure.StageLookup}, fmt.Errorf("lookup-self: %w: %w", failure.ErrClientTimeout, &url.Error{Op: "Get", URL: "x", Err: context.DeadlineExceeded}),
		1, "FAIL: could not look up", []string{"cause=client-timeout", "VAULT_CLIENT_TIMEOUT"}},
	{"interrupted", renew.Outcome{Stage: failure.StageCreate}, fmt.Errorf("x: %w", context.Canceled),
		1, "FAIL: could not mint", []string{"cause=canceled", "interrupted"}},
	{"create lost mid-flight", renew.Outcome{Stage: failure.StageCreate, Cause: failure.CauseServer}, errors.New("502"),
		1, "FAIL: could not mint a periodic token", []string{"cause=server-error", "vault may have minted a token before the answer was lost"}},
	{"write failed, mint revoked", renew.Outcome{Stage: failure.StageWrite, Minted: renew.Minted{TokenInfo: decide.TokenInfo{Accessor: "m9"}, Revoked: true}}, &fs.PathError{Op: "write", Path: "/home/w/.vault-token.tmp-1", Err: syscall.ENOSPC},
		1, "FAIL: could not write the token file", []string{"minted_accessor=m9", "minted_revoked=true"}},
	{"write failed, mint not revoked", renew.Outcome{Stage: failure.StageWrite, Minted: renew.Minted{TokenInfo: decide.TokenInfo{Accessor: "m9"}}}, &fs.PathError{Op: "write", Path: "/home/w/.vault-token.tmp-1", Err: syscall.ENOSPC},
		1, "FAIL: could not write the token file", []string{"minted_revoked=false", "vault token revoke -accessor m9"}},
	{"capped renewal", renew.Outcome{Stage: failure.StageCap, Cause: failure.CauseCapped, Cap: decide.TTLVerdict{Capped: true, Fatal: true, TTL: 12 * time.Hour, Period: 768 * time.Hour}}, failure.ErrCapped,
		1, "FAIL: vault caps the token's TTL below what a daily timer can outrun", []string{"cause=ttl-capped", "warning=\"vault caps the TTL at 12h0m0s", "vault auth tune -max-lease-ttl=768h token/"}},
	{"sweep stopped by the rate limit", renew.Outcome{Stage: failure.StageSweep}, &sweep.IncompleteError{Phase: sweep.OpLookup, Done: 80, Total: 405, Why: "at --max-rps 20 ...", Need: 55 * time.Second, Err: context.DeadlineExceeded},
		1, "FAIL: the stale-token sweep did not finish", []string{"cause=sweep-incomplete", "looking up after 80 of 405", "vault-token-renew sweep --apply --timeout 55s"}},
	{"sweep --apply on a foreign token", renew.Outcome{Stage: failure.StageForeign, Cause: failure.CauseForeign, Current: decide.TokenInfo{DisplayName: "oidc-wizard"}}, errors.New("foreign"),
		1, "FAIL: sweep --apply refused", []string{"cause=foreign-token", "run vault-token-renew first"}},
	{"dry run renew", renew.Outcome{DryRun: true, Plan: decide.Plan{Action: decide.Renew}}, nil,
		0, "OK: would renew periodic token (dry run: nothing changed)", nil},
	{"dry run heal", renew.Outcome{DryRun: true, Plan: decide.Plan{Action: decide.Heal}, Current: oidc, Sweep: sweep.Report{Listed: 1, LookedUp: 1, Records: records(sweep.Stale, sweep.LookedUp, "s1")}}, nil,
		0, "OK: would heal: re-mint token-devvm-wizard from foreign dn=oidc-wizard and revoke 1 stale, from the ledger (dry run: nothing changed)", nil},
	{"dry run drift", renew.Outcome{DryRun: true, Plan: decide.Plan{Action: decide.Refuse}, Current: oidc}, renew.ErrHealDenied,
		1, "DRIFT: foreign token dn=oidc-wizard", []string{"(dry run: nothing changed)"}},
}

func TestReportMapsOutcomesToExitCodesAndPrefixes(t *testing.T) {
	for _, tc := range reportCases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, _ := newLogger(&buf, "plain", getenvOf(env()))
			code := report(log, tc.res, tc.err)
			line := buf.String()
			if code != tc.code {
				t.Fatalf("exit %d, want %d; line %s", code, tc.code, line)
			}
			if !strings.HasPrefix(line, tc.prefix) {
				t.Fatalf("line %q\nwant prefix %q", line, tc.prefix)
			}
			for _, h := range tc.has {
				if !strings.Contains(line, h) {
					t.Errorf("line lacks %q: %s", h, line)
				}
			}
			if strings.Count(line, "\n") != 1 {
				t.Errorf("want one line, got %q", line)
			}
		})
	}
}

// journalFile stands in for the journal stream systemd hands a service:
// a file, and a JOURNAL_STREAM naming its device and inode.
func journalFile(t *testing.T) (*os.File, string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "journal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func written(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestJournaldPriorities(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  renew.Outcome
		err  error
		want string
	}{
		{"ok is info", renew.Outcome{Plan: decide.Plan{Action: decide.Renew}}, nil, "<6>OK:"},
		{"drift is err", renew.Outcome{Plan: decide.Plan{Action: decide.Refuse}}, renew.ErrHealDenied, "<3>DRIFT:"},
		{"fail is err", renew.Outcome{Stage: failure.StageLookup}, errors.New("x"), "<3>FAIL:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, stream := journalFile(t)
			log, _ := newLogger(f, "auto", getenvOf(env("JOURNAL_STREAM", stream)))
			report(log, tc.res, tc.err)
			if got := written(t, f); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("line %q, want prefix %q", got, tc.want)
			}
		})
	}
	f, stream := journalFile(t)
	log, _ := newLogger(f, "plain", getenvOf(env("JOURNAL_STREAM", stream)))
	log.Warn().Msg("vault capped the period")
	if got := written(t, f); got != "<4>warn: vault capped the period\n" {
		t.Fatalf("warning line %q", got)
	}
}

// TestInheritedJournalStreamIsNotTheJournal: a child that inherits
// JOURNAL_STREAM but writes elsewhere must not print <N> prefixes.
func TestInheritedJournalStreamIsNotTheJournal(t *testing.T) {
	_, stream := journalFile(t)
	other, _ := journalFile(t)
	log, _ := newLogger(other, "plain", getenvOf(env("JOURNAL_STREAM", stream)))
	report(log, renew.Outcome{Plan: decide.Plan{Action: decide.Renew}}, nil)
	if got := written(t, other); !strings.HasPrefix(got, "OK:") {
		t.Fatalf("line %q: the journal's priority prefix on a stream that is not the journal", got)
	}
	var buf bytes.Buffer
	log, _ = newLogger(&buf, "plain", getenvOf(env("JOURNAL_STREAM", stream)))
	report(log, renew.Outcome{Plan: decide.Plan{Action: decide.Renew}}, nil)
	if !strings.HasPrefix(buf.String(), "OK:") {
		t.Fatalf("line %q", buf.String())
	}
}

func TestJSONLogFormat(t *testing.T) {
	var buf bytes.Buffer
	log, _ := newLogger(&buf, "json", getenvOf(env()))
	report(log, renew.Outcome{Plan: decide.Plan{Action: decide.Renew}, Current: decide.TokenInfo{Accessor: "a1"}}, nil)
	var evt map[string]interface{}
	if err := json.Unmarshal(buf.Bytes(), &evt); err != nil {
		t.Fatalf("not JSON: %q", buf.String())
	}
	if evt["message"] != "OK: renewed periodic token" || evt["accessor"] != "a1" || evt["level"] != "info" {
		t.Fatalf("event %v", evt)
	}
}

// TestFailLineCarriesVaultErrorButNoTokenHeader asks a scripted Vault
// through the real client, which answers 403 the way Vault does, and
// checks the FAIL line: Vault's words are there, on one line; the token the
// request carried (in its X-Vault-Token header) is not.
func TestFailLineCarriesVaultErrorButNoTokenHeader(t *testing.T) {
	const secret = "scripted-token-secret-never-printed"
	var sawToken string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawToken = r.Header.Get("X-Vault-Token")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"errors":["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}`))
	}))
	defer srv.Close()
	cfg := vault.DefaultConfig()
	cfg.Address, cfg.MaxRetries = srv.URL, 0
	vc, err := vaultclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = vc.LookupSelf(context.Background(), secret)
	if sawToken != secret {
		t.Fatal("premise: the request did not carry the token")
	}
	var buf bytes.Buffer
	log, _ := newLogger(&buf, "plain", getenvOf(env()))
	report(log, renew.Outcome{Stage: failure.StageLookup, Cause: failure.Classify(err, failure.AskToken), Path: "/x"}, fmt.Errorf("token in /x: %w", err))
	line := buf.String()
	if !strings.Contains(line, "lookup-self: vault answered 403: permission denied; invalid token") {
		t.Errorf("line lacks vault's answer, flattened: %q", line)
	}
	if !strings.Contains(line, "cause=token-denied") {
		t.Errorf("line lacks cause=token-denied: %q", line)
	}
	for _, absent := range []string{secret, "X-Vault-Token", "occurred"} {
		if strings.Contains(line, absent) {
			t.Errorf("line carries %q", absent)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("want exactly one line, got %q", line)
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		768 * time.Hour:                "768h",
		90 * time.Minute:               "1h30m",
		30 * time.Second:               "30s",
		10 * time.Minute:               "10m",
		time.Hour + 5*time.Second:      "1h0m5s",
		767*time.Hour + 59*time.Minute: "767h59m",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestEveryCauseHasItsOwnHint: the cause set is closed, and each one the
// reporter can meet says something other than the generic fallback, and
// something no other says. The capped cause is fed JudgeTTL's own
// verdicts (a mount cap, an explicit max TTL), and the refused cause both
// of its stages (the heal's create, a sweep's walk).
func TestEveryCauseHasItsOwnHint(t *testing.T) {
	r := testReporter()
	generic := r.hint(renew.Outcome{}, failure.CauseUnknown, errors.New("x"))
	now := time.Now()
	mountCap := decide.JudgeTTL(decide.TokenInfo{Period: 768 * time.Hour}, 12*time.Hour, now)
	explicit := decide.JudgeTTL(decide.TokenInfo{Period: 768 * time.Hour, ExplicitMaxTTL: 20 * time.Hour, CreationTime: now}, 20*time.Hour, now)
	type row struct {
		cause failure.Cause
		res   renew.Outcome
		want  string
	}
	var rows []row
	for _, c := range failure.Causes() {
		switch c {
		case failure.CauseUnknown:
		case failure.CauseCapped:
			rows = append(rows, row{c, renew.Outcome{Stage: failure.StageCap, Cap: mountCap}, "vault auth tune -max-lease-ttl=768h token/"},
				row{c, renew.Outcome{Stage: failure.StageCap, Cap: explicit}, "re-mint it without -explicit-max-ttl"})
		case failure.CauseRefused:
			rows = append(rows, row{c, renew.Outcome{Stage: failure.StageCreate, Path: "/h/.vault-token"}, "vault token lookup"},
				row{c, renew.Outcome{Stage: failure.StageSweep, Path: "/h/.vault-token"}, "list and sudo on auth/token/accessors"})
		default:
			rows = append(rows, row{c, renew.Outcome{Stage: failure.StageLookup}, ""})
		}
	}
	seen := map[string]string{}
	for _, rw := range rows {
		name := rw.cause.String() + " at " + rw.res.Stage.String()
		h := r.hint(rw.res, rw.cause, errors.New("x"))
		if h == "" || h == generic {
			t.Errorf("%s has no hint of its own", name)
		}
		if !strings.Contains(h, rw.want) {
			t.Errorf("%s: hint %q lacks %q", name, h, rw.want)
		}
		if prev, dup := seen[h]; dup {
			t.Errorf("%s and %s share the hint %q", prev, name, h)
		}
		seen[h] = name
	}
}

// TestHandRunSeesTheEnvFilesHost: a run typed in a shell reads VTR_HOST from
// the env file the units read, so it tags and sweeps as the timer's run
// does; the environment still wins.
func TestHandRunSeesTheEnvFilesHost(t *testing.T) {
	home := t.TempDir()
	envFile := filepath.Join(home, ".config", "vault-token-renew", "env")
	if err := os.MkdirAll(filepath.Dir(envFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(envFile, []byte("# pinned\nVAULT_ADDR=http://from-the-file:8200\nVTR_HOST='devvm-pinned'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCLI(io.Discard, io.Discard, env("HOME", home))
	if got := c.hostname(); got != "devvm-pinned" {
		t.Errorf("hostname %q, want the env file's devvm-pinned", got)
	}
	if got := c.getenv("VAULT_ADDR"); got != "" {
		t.Errorf("VAULT_ADDR %q came from the env file; the shell's VAULT_* settings are its own", got)
	}
	c = newCLI(io.Discard, io.Discard, env("HOME", home, "VTR_HOST", "from-the-shell"))
	if got := c.hostname(); got != "from-the-shell" {
		t.Errorf("hostname %q, want the environment's", got)
	}
}

// TestUsageErrorUnderSystemdIsAnError: a bad setting in the env file fails
// the unit; its line must reach journalctl -p err.
func TestUsageErrorUnderSystemdIsAnError(t *testing.T) {
	f, stream := journalFile(t)
	code := newCLI(io.Discard, f, env("HOME", t.TempDir(), "JOURNAL_STREAM", stream, "VTR_WAIT_UNREACHABLE", "soon")).run(context.Background(), nil)
	if code != exitUsage {
		t.Fatalf("exit %d, want 2", code)
	}
	if got := written(t, f); !strings.HasPrefix(got, "<3>vault-token-renew: VTR_WAIT_UNREACHABLE=\"soon\"") {
		t.Fatalf("line %q, want error priority", got)
	}
}

// TestTheLoginHintWritesTheStore: where the CLI's own login does not write
// the store (a profile's VTR_TOKEN_FILE), "log in" is a login into that
// file, keeping what it replaces, and a profile's names its address; where
// it does (~/.vault-token, a helper), it is the CLI's own login.
func TestTheLoginHintWritesTheStore(t *testing.T) {
	noToken := func(r reporter) string {
		var buf bytes.Buffer
		log, _ := newLogger(&buf, "plain", getenvOf(env()))
		r.report(ended(renew.Outcome{Stage: failure.StageRead, Path: r.path}, fmt.Errorf("%w: %s", tokenfile.ErrMissing, r.path))).print(log)
		return buf.String()
	}
	r := testReporter()
	r.store, r.path, r.profile = tokenstore.File{Path: "/home/w/.vault-token-prod"}, "/home/w/.vault-token-prod", "prod"
	want := "log in ((umask 077; VAULT_ADDR=http://127.0.0.1:8200 vault login -method=oidc -token-only > /home/w/.vault-token-prod.new) && mv -b /home/w/.vault-token-prod.new /home/w/.vault-token-prod)"
	if got := noToken(r); !strings.Contains(got, want) {
		t.Errorf("a profile's own file: the hint lacks %q:\n%s", want, got)
	}
	r.loginWrites = true
	if got := noToken(r); !strings.Contains(got, "log in (VAULT_ADDR=http://127.0.0.1:8200 vault login -method=oidc)") || strings.Contains(got, "-token-only") {
		t.Errorf("a store the CLI writes: not its own login:\n%s", got)
	}
	r.profile = ""
	if got := noToken(r); !strings.Contains(got, "log in (vault login -method=oidc)") {
		t.Errorf("no profile, the CLI's store: not its own login:\n%s", got)
	}
}

// TestHintsNameTheCLIOfTheOperator: the lines people copy and paste (the
// DRIFT hint, the manual re-mint, the no-token hint) name the command the
// operator has, in both worlds, and never the other one.
func TestHintsNameTheCLIOfTheOperator(t *testing.T) {
	drift := renew.Outcome{Plan: decide.Plan{Action: decide.Refuse}, Current: decide.TokenInfo{Accessor: "k8s-acc", DisplayName: "kubernetes-woodpecker-default"}}
	noToken := renew.Outcome{Stage: failure.StageRead, Path: "/home/w/.vault-token"}
	for _, tc := range []struct{ cli, other string }{{"vault", "bao "}, {"bao", "vault "}} {
		t.Run(tc.cli, func(t *testing.T) {
			r := testReporter()
			r.cli = tc.cli
			for _, c := range []struct {
				what string
				line closing
				want []string
			}{
				{"DRIFT", r.report(ended(drift, renew.ErrHealDenied)), []string{tc.cli + " token lookup -accessor k8s-acc"}},
				{"no-token", r.report(ended(noToken, fmt.Errorf("%w: /home/w/.vault-token", tokenfile.ErrMissing))),
					[]string{tc.cli + " login -method=oidc", "(umask 077; " + tc.cli + " token create -orphan -period=768h -policy=vault-admin -policy=sops-admin -display-name=devvm-wizard"}},
				{"sealed", r.report(ended(renew.Outcome{Stage: failure.StageLookup, Cause: failure.CauseSealed}, errors.New("503"))), []string{tc.cli + " operator unseal"}},
			} {
				var buf bytes.Buffer
				log, _ := newLogger(&buf, "plain", getenvOf(env()))
				c.line.print(log)
				for _, w := range c.want {
					if !strings.Contains(buf.String(), w) {
						t.Errorf("%s line lacks %q:\n%s", c.what, w, buf.String())
					}
				}
				if strings.Contains(buf.String(), tc.other) {
					t.Errorf("%s line for a %s user names %q:\n%s", c.what, tc.cli, tc.other, buf.String())
				}
			}
			if got := r.remint(); !strings.HasPrefix(got, "(umask 077; "+tc.cli+" token create") {
				t.Errorf("re-mint %q", got)
			}
		})
	}
}

// TestTheCLIIsTheOperators: bao when the settings come from BAO_*, or bao
// is on PATH and vault is not; vault otherwise.
func TestTheCLIIsTheOperators(t *testing.T) {
	onPath := func(names ...string) func(string) (string, error) {
		return func(n string) (string, error) {
			for _, x := range names {
				if x == n {
					return "/usr/bin/" + n, nil
				}
			}
			return "", errors.New("not found")
		}
	}
	for _, tc := range []struct {
		name string
		env  func(string) (string, bool)
		path func(string) (string, error)
		want string
	}{
		{"VAULT_ADDR, both on PATH", env("VAULT_ADDR", "http://v"), onPath("vault", "bao"), "vault"},
		{"BAO_ADDR set", env("BAO_ADDR", "http://b"), onPath("vault", "bao"), "bao"},
		{"BAO_ADDR set and empty", env("BAO_ADDR", "", "VAULT_ADDR", "http://v"), onPath("vault"), "bao"},
		{"BAO_TOKEN_PATH set", env("BAO_TOKEN_PATH", "/t"), onPath("vault"), "bao"},
		{"only bao on PATH", env("VAULT_ADDR", "http://v"), onPath("bao"), "bao"},
		{"neither on PATH", env(), onPath(), "vault"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(io.Discard, io.Discard, tc.env)
			c.lookPath = tc.path
			if got := c.vaultCLI(c.settings()); got != tc.want {
				t.Fatalf("cli %q, want %q", got, tc.want)
			}
		})
	}
}

// TestForeignWordsForgeNoLine: a display name that holds a newline, a
// syslog priority and an escape sequence, in a DRIFT written to the
// journal stream (JOURNAL_STREAM names the output file, as systemd does):
// one line comes out, at error priority, with the words escaped and
// bounded; nothing reads as an OK entry of its own.
func TestForeignWordsForgeNoLine(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "journal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	stream := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	log, err := newLogger(f, "plain", func(k string) string { return map[string]string{"JOURNAL_STREAM": stream}[k] })
	if err != nil {
		t.Fatal(err)
	}
	dn := "x\n<6>OK: renewed periodic token\n<7>\x1b[8m" + strings.Repeat("y", 140<<10)
	res := renew.Outcome{Plan: decide.Plan{Action: decide.Refuse}, Current: decide.TokenInfo{Accessor: "k8s-acc", DisplayName: dn}, Refusal: "no\nway"}
	line := testReporter().report(ended(res, fmt.Errorf("%w: %s", renew.ErrHealDenied, dn)))
	if strings.ContainsAny(line.msg, "\n\x1b") || len(line.msg) > safetext.MaxText {
		t.Fatalf("the display name went into the closing line raw: %.200q", line.msg)
	}
	line.print(log)
	log.Warn().Msg("a message of the tool's own\n<6>OK: renewed periodic token") // every message, whatever made it
	log.Info().Str("field", "v\n<6>OK: x").Msg("fields too")
	out, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "<4>warn: a message of the tool's own\\n<6>OK") || !strings.Contains(lines[2], `field="v\n<6>OK: x"`) {
		t.Fatalf("a message or a field of the tool's own forged a line: %q", lines[1:])
	}
	if !strings.HasPrefix(lines[0], "<3>DRIFT: foreign token dn=x\\n<6>OK: renewed periodic token\\n<7>\\x1b[8m") {
		t.Fatalf("%d lines, want one DRIFT at error priority: %.300q", len(lines), out)
	}
	if strings.ContainsRune(lines[0], 0x1b) || len(lines[0]) > 4*safetext.MaxText {
		t.Fatalf("the line holds an ESC or is %d bytes long", len(lines[0]))
	}
	run := runstate.RunOf(ended(res, renew.ErrHealDenied), line.msg, line.reason, "devvm-a", time.Now())
	s := runstate.Next(runstate.State{}, run)
	env := strings.Join(runstate.NotifyEnv(s), "\n")
	if strings.Count(env, "\n") != 5 || len(s.Summary) > safetext.MaxText || strings.Contains(s.Summary, "\n") {
		t.Fatalf("the state's summary (%d bytes) or the notifier's environment forges lines: %.200q", len(s.Summary), env)
	}
}

// TestUnreachableAfterARedirect: when the address answered and the node it
// sent the request on to did not (a standby naming a dead leader), the hint
// does not send the operator to check the address that is up; when the
// address itself got no answer, it does.
func TestUnreachableAfterARedirect(t *testing.T) {
	r := testReporter()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, c := range []struct {
		to, want, not string
	}{
		{"http://127.0.0.1:8202", "sent the request on to http://127.0.0.1:8202 (the active node it names)", "check VAULT_ADDR"},
		{"http://127.0.0.1:8200", "cannot reach vault at http://127.0.0.1:8200; check VAULT_ADDR", "active node"},
		// The redirect is the server's word: escaped (a control character
		// would not parse as a URL at all, and falls back to the above).
		{"http://node\u202e3:8202", `sent the request on to http://node\u202e3:8202`, "\u202e"},
		{"http://127.0.0.1:8202\x1b[2J", "cannot reach vault at http://127.0.0.1:8200", "\x1b"},
	} {
		err := fmt.Errorf("look up the token: %w", &url.Error{Op: "Get", URL: c.to + "/v1/auth/token/lookup-self", Err: refused})
		if got := failure.Classify(err, failure.AskToken); got != failure.CauseUnreachable {
			t.Fatalf("%s: cause %s, want unreachable", c.to, got)
		}
		h := r.hint(renew.Outcome{Stage: failure.StageLookup}, failure.CauseUnreachable, err)
		if !strings.Contains(h, c.want) || strings.Contains(h, c.not) {
			t.Errorf("answer from %q: hint %q; want %q, not %q", c.to, h, c.want, c.not)
		}
	}
}
