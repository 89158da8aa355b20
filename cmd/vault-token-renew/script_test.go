package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/devvm/vault-token-renew/internal/runstate"
	"github.com/devvm/vault-token-renew/renew"
)

// TestMain lets the scripts run the CLI as the vault-token-renew command,
// in a process of its own, the way an operator's shell does.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"vault-token-renew": func() { os.Exit(run()) },
	})
}

// TestScripts runs testdata/*.txtar: the CLI's surface (usage, exit codes,
// status --brief, notify), one assertion per line.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(e *testscript.Env) error {
			home := filepath.Join(e.WorkDir, "home")
			e.Setenv("HOME", home)
			e.Setenv("XDG_STATE_HOME", "")
			e.Setenv("VAULT_ADDR", "http://127.0.0.1:1") // nothing listens: no script reaches a Vault
			e.Setenv("VTR_HOST", "devvm-a")
			return os.MkdirAll(home, 0o700)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exit":    cmdExit,
			"state":   cmdState,
			"hostile": cmdHostile,
		},
	})
}

// cmdExit runs a command and asserts its exit status:
//
//	exit 2 vault-token-renew --period 1h
//
// Its stdout and stderr are then there for stdout/stderr assertions.
func cmdExit(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exit N command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exit: %q is not a number", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exit: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// cmdHostile starts a server that answers as no Vault would, for the rest
// of the script, and points VAULT_ADDR at it:
//
//	hostile huge     every answer is 2 MiB of JSON, past any limit
//	hostile forged   lookup-self names a token whose display name holds a
//	                 newline, a syslog priority and an escape sequence;
//	                 every create is refused
func cmdHostile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: hostile huge|forged")
	}
	var h http.HandlerFunc
	switch args[0] {
	case "huge":
		h = func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"data":{"display_name":"`+strings.Repeat("x", 2<<20)+`"}}`)
		}
	case "forged":
		h = func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/auth/token/lookup-self" {
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, `{"errors":["permission denied\n<6>OK: renewed periodic token"]}`)
				return
			}
			io.WriteString(w, `{"data":{"accessor":"acc-forged","display_name":"x\n<6>OK: renewed periodic token\n<7>\u001b[8m","policies":["default"],"type":"service","ttl":3600,"meta":{"host":"z\u001b[8m"}}}`)
		}
	default:
		ts.Fatalf("hostile: %q is not a kind of server", args[0])
	}
	srv := httptest.NewServer(h)
	ts.Defer(srv.Close)
	ts.Setenv("VAULT_ADDR", srv.URL)
}

// cmdState prepares the state file as runs would have left it, relative to
// now (a script cannot hold a fixed date that stays fresh):
//
//	state ok 2h            last run OK two hours ago
//	state drift 30h 3      DRIFT for the last 3 daily runs, the last 30h ago
//	state corrupt          a state file that is not JSON
func cmdState(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: state ok|healed|drift|fail AGE [RUNS] | state corrupt")
	}
	path, err := runstate.DefaultPath(ts.Getenv)
	ts.Check(err)
	if args[0] == "corrupt" {
		ts.Check(os.MkdirAll(filepath.Dir(path), 0o700))
		ts.Check(os.WriteFile(path, []byte("{not json"), 0o600))
		return
	}
	if len(args) < 2 {
		ts.Fatalf("state %s needs an age", args[0])
	}
	age, err := time.ParseDuration(args[1])
	ts.Check(err)
	runs := 1
	if len(args) > 2 {
		runs, err = strconv.Atoi(args[2])
		ts.Check(err)
	}
	last := time.Now().Add(-age)
	out := renew.Kind(args[0])
	var st runstate.State
	for i := runs - 1; i >= 0; i-- {
		st = runstate.Next(st, runstate.Run{Time: last.Add(-time.Duration(i) * 24 * time.Hour), Outcome: out,
			Summary: summaries[out], Reason: reasons[out], Cause: causes[out], Host: "devvm-a", Accessor: "acc-1", TokenExpiry: last.Add(700 * time.Hour)})
	}
	ts.Check(runstate.Save(path, st))
}

var summaries = map[renew.Kind]string{
	renew.OK:     "OK: renewed periodic token",
	renew.Healed: "HEALED: re-minted from foreign dn=oidc-wizard (revoked 1 stale)",
	renew.Drift:  "DRIFT: foreign token dn=kubernetes-woodpecker-default in the token file; heal denied — foreign token lacks create authority; investigate what wrote it",
	renew.Fail:   "FAIL: could not look up the token in the file",
}

var reasons = map[renew.Kind]string{
	renew.Drift: "heal denied — foreign token lacks create authority",
	renew.Fail:  "could not look up the token in the file",
}

var causes = map[renew.Kind]string{renew.Drift: "refused", renew.Fail: "unreachable"}
