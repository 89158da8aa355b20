package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
	"github.com/devvm/vault-token-renew/tokenfile"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func runCLI(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := newCLI(&out, &errb, getenv).run(context.Background(), args)
	return code, out.String(), errb.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"extra-arg"},
		{"--period", "10s"},
		{"--log-format", "xml"},
		{"--concurrency", "0"},
		{"--max-rps", "-1"},
		{"status", "--apply"},
		{"--display-name", ""},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, env("HOME", t.TempDir()), args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want 2; stderr %s", code, stderr)
			}
		})
	}
	code, _, stderr := runCLI(t, env())
	if code != exitUsage || !strings.Contains(stderr, "--token-file") {
		t.Fatalf("no HOME: exit %d, stderr %q", code, stderr)
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	code, _, stderr := runCLI(t, env("HOME", "/h"), "--help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"Exit status: 0 OK/HEALED, 1 DRIFT/FAIL", "2 usage error", "VAULT_TOKEN is never used", "/h/.vault-token"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestVersion(t *testing.T) {
	version = "v9.9.9-test"
	t.Cleanup(func() { version = "" })
	code, out, _ := runCLI(t, env("HOME", "/h"), "--version")
	if code != 0 || out != "vault-token-renew v9.9.9-test\n" {
		t.Fatalf("exit %d out %q", code, out)
	}
}

var testCfg = renew.Config{TokenFile: "/home/w/.vault-token", Spec: renew.Spec{DisplayName: "devvm-wizard", Policies: []string{"vault-admin", "sops-admin"}, Period: 768 * time.Hour}}

func TestReportMapsOutcomesToExitCodesAndPrefixes(t *testing.T) {
	oidc := renew.TokenInfo{Accessor: "oidc-acc", DisplayName: "oidc-wizard"}
	for _, tc := range []struct {
		name   string
		res    renew.Result
		err    error
		code   int
		prefix string
		has    []string
	}{
		{"renewed", renew.Result{Action: renew.ActionRenew, Current: renew.TokenInfo{Accessor: "a1", Period: 768 * time.Hour}, TTL: 768 * time.Hour}, nil,
			0, "OK: renewed periodic token", []string{"accessor=a1", "ttl=768h"}},
		{"healed", renew.Result{Action: renew.ActionHeal, Current: oidc, Minted: renew.TokenInfo{Accessor: "m1"}, Sweep: sweep.Report{Revoked: []string{"s1", "s2"}}}, nil,
			0, "HEALED: re-minted from foreign dn=oidc-wizard (revoked 2 stale)", []string{"accessor=m1", "foreign_accessor=oidc-acc"}},
		{"healed with sweep failures", renew.Result{Action: renew.ActionHeal, Current: oidc, Minted: renew.TokenInfo{Accessor: "m1"}, Sweep: sweep.Report{Failed: []sweep.Failure{{Accessor: "s1"}}}}, nil,
			0, "HEALED: re-minted from foreign dn=oidc-wizard (revoked 0 stale)", []string{"sweep_failed=1", "vault-token-renew sweep"}},
		{"drift", renew.Result{Action: renew.ActionRefuse, Current: renew.TokenInfo{Accessor: "k8s-acc", DisplayName: "kubernetes-woodpecker-default"}},
			fmt.Errorf("%w (vault said: 403)", renew.ErrHealDenied),
			1, "DRIFT: foreign token dn=kubernetes-woodpecker-default in the token file; heal denied — foreign token lacks create authority; investigate what wrote it", []string{"accessor=k8s-acc"}},
		{"dead token", renew.Result{Stage: "lookup", Cause: renew.CauseTokenDenied}, errors.New("403"),
			1, "FAIL: could not look up the token in the file", []string{"vault login -method=oidc", "vault token create -orphan -period=768h -policy=vault-admin -policy=sops-admin -display-name=devvm-wizard"}},
		{"unreachable", renew.Result{Stage: "lookup", Cause: renew.CauseUnreachable}, errors.New("dial"),
			1, "FAIL: could not look up", []string{"cannot reach vault at http://127.0.0.1:8200"}},
		{"sealed", renew.Result{Stage: "renew", Cause: renew.CauseSealed}, errors.New("503"),
			1, "FAIL: could not renew", []string{"vault operator unseal"}},
		{"lock", renew.Result{Stage: "lock"}, tokenfile.ErrLockTimeout,
			1, "FAIL: could not take the run lock", []string{"another vault-token-renew run"}},
		{"write", renew.Result{Stage: "write"}, errors.New("no space"),
			1, "FAIL: could not write the token file; the old file is unchanged", []string{"free space"}},
		{"missing file", renew.Result{Stage: "read"}, fmt.Errorf("%w: /x", tokenfile.ErrMissing),
			1, "FAIL: could not read the token file", []string{"vault login -method=oidc"}},
		{"dry run renew", renew.Result{DryRun: true, Action: renew.ActionRenew}, nil,
			0, "OK: would renew periodic token (dry run: nothing changed)", nil},
		{"dry run heal", renew.Result{DryRun: true, Action: renew.ActionHeal, Current: oidc, Sweep: sweep.Report{Matched: []sweep.Token{{}}}}, nil,
			0, "OK: would heal: re-mint token-devvm-wizard from foreign dn=oidc-wizard and revoke 1 stale (dry run: nothing changed)", nil},
		{"dry run drift", renew.Result{DryRun: true, Action: renew.ActionRefuse, Current: oidc}, renew.ErrHealDenied,
			1, "DRIFT: foreign token dn=oidc-wizard", []string{"(dry run: nothing changed)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, _ := newLogger(&buf, "plain", env())
			code := report(log, "http://127.0.0.1:8200", testCfg, tc.res, tc.err)
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

func TestJournaldPriorities(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  renew.Result
		err  error
		want string
	}{
		{"ok is info", renew.Result{Action: renew.ActionRenew}, nil, "<6>OK:"},
		{"drift is err", renew.Result{Action: renew.ActionRefuse}, renew.ErrHealDenied, "<3>DRIFT:"},
		{"fail is err", renew.Result{Stage: "lookup"}, errors.New("x"), "<3>FAIL:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, _ := newLogger(&buf, "auto", env("JOURNAL_STREAM", "8:123"))
			report(log, "addr", testCfg, tc.res, tc.err)
			if !strings.HasPrefix(buf.String(), tc.want) {
				t.Fatalf("line %q, want prefix %q", buf.String(), tc.want)
			}
		})
	}
	var buf bytes.Buffer
	log, _ := newLogger(&buf, "plain", env("JOURNAL_STREAM", "8:123"))
	log.Warn().Msg("vault capped the period")
	if buf.String() != "<4>warn: vault capped the period\n" {
		t.Fatalf("warning line %q", buf.String())
	}
}

func TestJSONLogFormat(t *testing.T) {
	var buf bytes.Buffer
	log, _ := newLogger(&buf, "json", env())
	report(log, "addr", testCfg, renew.Result{Action: renew.ActionRenew, Current: renew.TokenInfo{Accessor: "a1"}}, nil)
	var evt map[string]interface{}
	if err := json.Unmarshal(buf.Bytes(), &evt); err != nil {
		t.Fatalf("not JSON: %q", buf.String())
	}
	if evt["message"] != "OK: renewed periodic token" || evt["accessor"] != "a1" || evt["level"] != "info" {
		t.Fatalf("event %v", evt)
	}
}

func TestFailLineCarriesVaultErrorButNoTokenHeader(t *testing.T) {
	// The vault client's errors name the URL and Vault's messages; the token
	// travels in a header and so never reaches an error string.
	err := fmt.Errorf("token in /x: %w", &vault.ResponseError{HTTPMethod: "GET", URL: "http://127.0.0.1:8200/v1/auth/token/lookup-self", StatusCode: 403, Errors: []string{"permission denied"}})
	var buf bytes.Buffer
	log, _ := newLogger(&buf, "plain", env())
	report(log, "addr", testCfg, renew.Result{Stage: "lookup", Cause: renew.CauseTokenDenied}, err)
	if !strings.Contains(buf.String(), "Code: 403") || !strings.Contains(buf.String(), "permission denied") {
		t.Fatalf("line %q lacks vault's answer", buf.String())
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
