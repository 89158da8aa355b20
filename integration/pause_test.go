//go:build integration

package integration

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pauser is a loopback reverse proxy in front of the dev Vault that
// freezes the real server (docker pause or SIGSTOP) just before forwarding
// the nth request matching method and path: a Vault that stops answering
// at a chosen point in the middle of a heal.
type pauser struct {
	addr   string
	paused atomic.Bool
}

func newPauser(t *testing.T, x *h, method, path string, nth int) *pauser {
	t.Helper()
	target, _ := url.Parse(x.f.Server.Addr)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0) // the run's own timeouts are expected
	var mu sync.Mutex
	seen := 0
	p := &pauser{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := r.Method
		if m == "PUT" {
			m = "POST"
		}
		if r.URL.Query().Get("list") == "true" {
			m = "LIST"
		}
		mu.Lock()
		if m == method && r.URL.Path == path {
			seen++
			if seen == nth && !p.paused.Load() {
				if err := x.f.Server.Pause(context.Background()); err != nil {
					t.Errorf("pause vault: %v", err)
				}
				p.paused.Store(true)
			}
		}
		mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() {
		p.resume(t, x)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
	})
	p.addr = "http://" + l.Addr().String()
	return p
}

func (p *pauser) resume(t *testing.T, x *h) {
	if p.paused.CompareAndSwap(true, false) {
		if err := x.f.Server.Unpause(context.Background()); err != nil {
			t.Errorf("unpause vault: %v", err)
		}
	}
}

// TestVaultPausedMidHeal freezes Vault at each step of a heal. Whatever the
// step, the file ends holding the old token or a working periodic one,
// never anything else.
func TestVaultPausedMidHeal(t *testing.T) {
	for _, tc := range []struct {
		name       string
		method     string
		path       string
		nth        int
		wantCode   int
		wantPrefix string
		wantNew    bool   // the file should hold a new periodic token
		wantInLog  string // evidence in the output
	}{
		{"before the create", "POST", "/v1/auth/token/create", 1, 1, "FAIL: could not mint a periodic token", false, "cause=client-timeout"},
		{"before the minted token's check", "GET", "/v1/auth/token/lookup-self", 2, 1, "FAIL: the minted token did not pass its check; the token file is unchanged", false, "vault token revoke -accessor"},
		{"before the stale sweep", "POST", "/v1/auth/token/lookup-accessor", 1, 0, "HEALED: re-minted from foreign dn=userpass-wizard (revoked 0 stale, from the ledger)", true, "the stale sweep is incomplete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newH(t)
			x.put(x.periodic("old periodic"))
			wantExit(t, "the OK run that records the old token in the ledger", x.run(), 0)
			login := x.login()
			x.put(login)
			p := newPauser(t, x, tc.method, tc.path, tc.nth)

			r := x.runEnv(x.env(p.addr, "VAULT_MAX_RETRIES=0", "VAULT_CLIENT_TIMEOUT=3s"), "--timeout=6s")
			if !p.paused.Load() {
				t.Fatal("the run never reached the step where vault was to be paused")
			}
			p.resume(t, x)
			wantExit(t, "paused run", r, tc.wantCode)
			if line := wantLine(t, "paused run", r.stderr, strings.Fields(tc.wantPrefix)[0]); !strings.HasPrefix(line, tc.wantPrefix) {
				t.Errorf("paused run: line does not start with %q:\n%s", tc.wantPrefix, line)
			}
			wantIn(t, "paused run stderr", r.stderr, tc.wantInLog)
			content := strings.TrimSpace(string(x.fileBytes()))
			if !tc.wantNew {
				if content != login.Secret {
					t.Fatal("the file does not hold the old token after a failed heal")
				}
				return
			}
			x.keep("healed", tokenOf(x))
			info, err := x.fileToken()
			if err != nil {
				t.Fatalf("the file does not hold a working token: %v", err)
			}
			if info.DisplayName != "token-devvm-wizard" {
				t.Errorf("the file holds a token with display name %q, want token-devvm-wizard", info.DisplayName)
			}
		})
	}
}
