package vaultclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/sweep"
)

// scripted is an httptest Vault: each route answers with a fixed status and
// body, and every request's token header is recorded.
type scripted struct {
	mu     sync.Mutex
	routes map[string]answer // "METHOD /v1/path"
	tokens []string
	bodies map[string]string
}

type answer struct {
	status int
	body   string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	method := r.Method
	if method == "PUT" { // Vault treats PUT and POST alike
		method = "POST"
	}
	key := method + " " + r.URL.Path
	if r.Method == "GET" && r.URL.Query().Get("list") == "true" {
		key = "LIST " + r.URL.Path
	}
	s.mu.Lock()
	s.tokens = append(s.tokens, r.Header.Get("X-Vault-Token"))
	s.bodies[key] = string(b)
	a, ok := s.routes[key]
	s.mu.Unlock()
	if !ok {
		a = answer{404, `{"errors":[]}`}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func newScripted(t *testing.T, routes map[string]answer) (*Client, *scripted) {
	t.Helper()
	s := &scripted{routes: routes, bodies: map[string]string{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Setenv("VAULT_ADDR", srv.URL)
	t.Setenv("VAULT_TOKEN", "env-token-must-not-be-used")
	t.Setenv("VAULT_MAX_RETRIES", "0")
	c, err := FromSettings(ReadSettings(os.LookupEnv))
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

const lookupBody = `{"data":{"accessor":"acc-1","display_name":"token-devvm-wizard","policies":["default","sops-admin","vault-admin"],
"identity_policies":["x"],"ttl":3600,"period":2764800,"orphan":true,"renewable":true,"creation_time":1751500000,
"type":"service","num_uses":0,"explicit_max_ttl":0,"expire_time":"2026-12-30T10:00:00.123456789Z",
"meta":{"managed_by":"vault-token-renew","host":"devvm-a","user":"wizard"}}}`

func TestLookupSelfParsesAndUsesFileToken(t *testing.T) {
	c, s := newScripted(t, map[string]answer{"GET /v1/auth/token/lookup-self": {200, lookupBody}})
	info, err := c.LookupSelf(context.Background(), "file-token")
	if err != nil {
		t.Fatal(err)
	}
	want := decide.TokenInfo{Accessor: "acc-1", DisplayName: "token-devvm-wizard", Policies: []string{"default", "sops-admin", "vault-admin"},
		IdentityPolicies: []string{"x"}, TTL: time.Hour, Period: 768 * time.Hour, Orphan: true, CreationTime: time.Unix(1751500000, 0).UTC(),
		Type: "service", ExpireTime: time.Date(2026, 12, 30, 10, 0, 0, 123456789, time.UTC),
		Meta: map[string]string{"managed_by": "vault-token-renew", "host": "devvm-a", "user": "wizard"}}
	if got, _ := json.Marshal(info); string(got) != mustJSON(want) {
		t.Fatalf("got %s\nwant %s", got, mustJSON(want))
	}
	for _, tok := range s.tokens {
		if tok != "file-token" {
			t.Fatalf("request carried token %q: VAULT_TOKEN from the environment leaked in", redact(tok))
		}
	}
}

func redact(s string) string {
	if s == "" {
		return "(none)"
	}
	return "(a different token)"
}

func mustJSON(v interface{}) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestStatusCodesReachClassify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		route  string
		status int
		body   string
		ask    failure.Ask
		want   failure.Cause
	}{
		{"create 403 permission denied", "POST /v1/auth/token/create", 403, `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`, failure.AskMore, failure.CauseRefused},
		{"create 400 needs sudo", "POST /v1/auth/token/create", 400, `{"errors":["root or sudo privileges required to create periodic token"]}`, failure.AskMore, failure.CauseRefused},
		{"create 500", "POST /v1/auth/token/create", 500, `{"errors":["internal error"]}`, failure.AskMore, failure.CauseServer},
		{"create 503 sealed", "POST /v1/auth/token/create", 503, `{"errors":["Vault is sealed"]}`, failure.AskMore, failure.CauseSealed},
		{"lookup 403 invalid token", "GET /v1/auth/token/lookup-self", 403, `{"errors":["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}`, failure.AskToken, failure.CauseTokenDenied},
		{"lookup 500", "GET /v1/auth/token/lookup-self", 500, `{"errors":["internal error"]}`, failure.AskToken, failure.CauseServer},
		{"lookup 503 sealed", "GET /v1/auth/token/lookup-self", 503, `{"errors":["Vault is sealed"]}`, failure.AskToken, failure.CauseSealed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newScripted(t, map[string]answer{tc.route: {tc.status, tc.body}})
			var err error
			if tc.ask == failure.AskMore {
				_, err = c.CreateOrphan(context.Background(), "foreign", decide.Spec{DisplayName: "devvm-wizard", Policies: []string{"vault-admin"}, Period: time.Hour})
			} else {
				_, err = c.LookupSelf(context.Background(), "t")
			}
			if got := failure.Classify(err, tc.ask); got != tc.want {
				t.Fatalf("Classify(%v) = %v, want %v", err, got, tc.want)
			}
		})
	}
}

func TestUnreachableIsClassified(t *testing.T) {
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_MAX_RETRIES", "0")
	c, err := FromSettings(ReadSettings(os.LookupEnv))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.LookupSelf(context.Background(), "t")
	if got := failure.Classify(err, failure.AskToken); got != failure.CauseUnreachable {
		t.Fatalf("Classify(%v) = %v", err, got)
	}
}

func TestCreateOrphanSendsTheManualRecoveryRequest(t *testing.T) {
	c, s := newScripted(t, map[string]answer{"POST /v1/auth/token/create": {200,
		`{"warnings":["TTL capped"],"auth":{"client_token":"new-secret","accessor":"new-acc","policies":["default","vault-admin"],"lease_duration":2764800,"renewable":true}}`}})
	m, err := c.CreateOrphan(context.Background(), "foreign", decide.Spec{DisplayName: "devvm-wizard", Policies: []string{"vault-admin", "sops-admin"},
		Period: 768 * time.Hour, Host: "devvm-a", User: "wizard"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Secret != "new-secret" || m.Accessor != "new-acc" {
		t.Fatalf("got accessor %q", m.Accessor)
	}
	if strings.Join(m.Warnings, ";") != "TTL capped" {
		t.Fatalf("vault's warnings not carried: %v", m.Warnings)
	}
	var body map[string]interface{}
	if err := json.Unmarshal([]byte(s.bodies["POST /v1/auth/token/create"]), &body); err != nil {
		t.Fatal(err)
	}
	if body["no_parent"] != true || body["period"] != "768h0m0s" || body["display_name"] != "devvm-wizard" ||
		mustJSON(body["policies"]) != `["vault-admin","sops-admin"]` ||
		mustJSON(body["meta"]) != `{"host":"devvm-a","managed_by":"vault-token-renew","user":"wizard"}` {
		t.Fatalf("create body %v", body)
	}
	if s.tokens[0] != "foreign" {
		t.Fatal("create did not act as the foreign token")
	}
}

func TestRenewSelfReturnsNewTTL(t *testing.T) {
	c, _ := newScripted(t, map[string]answer{"POST /v1/auth/token/renew-self": {200, `{"auth":{"accessor":"a","lease_duration":2764800,"renewable":true}}`}})
	r, err := c.RenewSelf(context.Background(), "t")
	if err != nil || r.TTL != 768*time.Hour {
		t.Fatalf("ttl %v err %v", r.TTL, err)
	}
}

func TestAccessorsListLookupRevoke(t *testing.T) {
	c, s := newScripted(t, map[string]answer{
		"LIST /v1/auth/token/accessors":       {200, `{"data":{"keys":["a1","a2"]}}`},
		"POST /v1/auth/token/lookup-accessor": {200, lookupBody},
		"POST /v1/auth/token/revoke-accessor": {204, ``},
	})
	a := c.Accessors("admin")
	keys, err := a.List(context.Background())
	if err != nil || strings.Join(keys, ",") != "a1,a2" {
		t.Fatalf("keys %v err %v", keys, err)
	}
	tok, err := a.Lookup(context.Background(), "a1")
	if err != nil || tok.Accessor != "a1" || tok.DisplayName != "token-devvm-wizard" || tok.TTL != time.Hour || tok.Host != "devvm-a" || tok.User != "wizard" {
		t.Fatalf("token %+v err %v", tok, err)
	}
	if err := a.Revoke(context.Background(), "a1"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.bodies["POST /v1/auth/token/revoke-accessor"], `"a1"`) {
		t.Fatalf("revoke body %q", s.bodies["POST /v1/auth/token/revoke-accessor"])
	}
}

func TestAccessorsEmptyListIs404(t *testing.T) {
	c, _ := newScripted(t, map[string]answer{"LIST /v1/auth/token/accessors": {404, `{"errors":[]}`}})
	keys, err := c.Accessors("admin").List(context.Background())
	if err != nil || len(keys) != 0 {
		t.Fatalf("keys %v err %v", keys, err)
	}
}

func TestLookupOfVanishedAccessor(t *testing.T) {
	c, _ := newScripted(t, map[string]answer{"POST /v1/auth/token/lookup-accessor": {400, `{"errors":["invalid accessor"]}`}})
	_, err := c.Accessors("admin").Lookup(context.Background(), "gone")
	if !errors.Is(err, sweep.ErrVanished) {
		t.Fatalf("err = %v", err)
	}
}

func TestCanCreateOrphan(t *testing.T) {
	for _, tc := range []struct {
		caps string
		want bool
	}{
		{`["root"]`, true},
		{`["create","read","update","delete","list","sudo"]`, true},
		{`["update","sudo"]`, true},
		{`["update"]`, false},
		{`["deny"]`, false},
	} {
		t.Run(tc.caps, func(t *testing.T) {
			c, _ := newScripted(t, map[string]answer{"POST /v1/sys/capabilities-self": {200,
				`{"auth/token/create":` + tc.caps + `,"capabilities":` + tc.caps + `}`}})
			got, err := c.CanCreateOrphan(context.Background(), "t")
			if err != nil || got != tc.want {
				t.Fatalf("got %v err %v", got, err)
			}
		})
	}
}

// TestTransientErrorsAreRetried: the API client's retry policy (bounded
// retries, jittered backoff) covers 429, 5xx and dropped connections, so a
// sweep over thousands of accessors shrugs off a busy Vault.
func TestTransientErrorsAreRetried(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fails  []int // status codes before success; 0 drops the connection
		wantOK bool
	}{
		{"429 then ok", []int{429}, true},
		{"500, 502 then ok", []int{500, 502}, true},
		{"dropped connection then ok", []int{0}, true},
		{"three 503s exhaust two retries", []int{503, 503, 503}, false},
		{"400 is not retried", []int{400}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				n := calls
				calls++
				mu.Unlock()
				if n < len(tc.fails) {
					if tc.fails[n] == 0 {
						hj, _ := w.(http.Hijacker)
						c, _, _ := hj.Hijack()
						c.Close()
						return
					}
					w.WriteHeader(tc.fails[n])
					io.WriteString(w, `{"errors":["transient"]}`)
					return
				}
				io.WriteString(w, lookupBody)
			}))
			defer srv.Close()
			cfg := vault.DefaultConfig()
			cfg.Address = srv.URL
			cfg.MaxRetries = 2
			cfg.MinRetryWait, cfg.MaxRetryWait = 5*time.Millisecond, 10*time.Millisecond
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Accessors("admin").Lookup(context.Background(), "a1")
			if (err == nil) != tc.wantOK {
				t.Fatalf("err = %v after %d calls", err, calls)
			}
		})
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	c, _ := newScripted(t, map[string]answer{"POST /v1/auth/token/revoke-accessor": {403, `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`}})
	err := c.Accessors("admin").Revoke(context.Background(), "acc-9")
	if err == nil || err.Error() != "revoke accessor acc-9: vault answered 403: permission denied" {
		t.Fatalf("err = %q", err)
	}
	if failure.Classify(err, failure.AskToken) != failure.CauseTokenDenied {
		t.Fatal("the flattened error lost its status for Classify")
	}
}

// TestClientTimeoutIsToldFromTheRunsDeadline: the API client enforces
// VAULT_CLIENT_TIMEOUT as a context deadline, so only the adapter can tell
// it from the run's own --timeout.
func TestClientTimeoutIsToldFromTheRunsDeadline(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name          string
		client, run   time.Duration
		want          failure.Cause
		clientTimeout bool
	}{
		{"the client's timeout", 200 * time.Millisecond, time.Minute, failure.CauseClientTimeout, true},
		{"the run's deadline", time.Minute, 200 * time.Millisecond, failure.CauseTimeout, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := vault.DefaultConfig()
			cfg.Address, cfg.MaxRetries, cfg.Timeout = srv.URL, 0, tc.client
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.run)
			defer cancel()
			_, err = c.LookupSelf(ctx, "t")
			if got := failure.Classify(err, failure.AskToken); got != tc.want || errors.Is(err, failure.ErrClientTimeout) != tc.clientTimeout {
				t.Fatalf("cause %v (ErrClientTimeout: %v), want %v; err %v", got, errors.Is(err, failure.ErrClientTimeout), tc.want, err)
			}
		})
	}
}

// TestAnswersAreBounded: an answer past its limit fails the request with
// ErrAnswerTooLarge (answer-too-large), whether it says its length or
// streams; a LIST may be larger; a huge non-JSON error body becomes a
// short line of error text.
func TestAnswersAreBounded(t *testing.T) {
	huge := `{"data":{"accessor":"` + strings.Repeat("a", 2*MaxAnswer) + `"}}`
	listOK := `{"data":{"keys":["` + strings.Repeat("b", 2*MaxAnswer) + `"]}}`
	page := "<html>" + strings.Repeat("X-Forwarded-For: 10.0.0.1\n", 4000) + "</html>"
	c, _ := newScripted(t, map[string]answer{
		"GET /v1/auth/token/lookup-self": {200, huge},
		"LIST /v1/auth/token/accessors":  {200, listOK},
		"POST /v1/auth/token/renew-self": {502, page},
	})
	_, err := c.LookupSelf(context.Background(), "tok")
	if !errors.Is(err, failure.ErrAnswerTooLarge) || failure.Classify(err, failure.AskToken) != failure.CauseTooLarge || len(err.Error()) > 300 {
		t.Fatalf("a 2 MiB lookup-self answer: %v (cause %v)", err, failure.Classify(err, failure.AskToken))
	}
	if keys, err := c.Accessors("tok").List(context.Background()); err != nil || len(keys) != 1 {
		t.Fatalf("a 2 MiB LIST: %v", err)
	}
	_, err = c.RenewSelf(context.Background(), "tok")
	if err == nil || len(err.Error()) > 500 || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a 100 KiB error page became %d bytes of error text: %.200q", len(err.Error()), err)
	}
}

// TestAddressIsRedacted: a password in VAULT_ADDR never reaches a log line.
func TestAddressIsRedacted(t *testing.T) {
	t.Setenv("VAULT_ADDR", "https://wizard:hunter2@vault.example:8200")
	c, err := FromSettings(ReadSettings(os.LookupEnv))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Address(); strings.Contains(got, "hunter2") || !strings.Contains(got, "vault.example:8200") {
		t.Fatalf("Address() = %q", got)
	}
}

// TestUnixSocketAddressStillWorks: a Vault Agent's socket (unix://) is
// dialled by the API client's own transport, which the size limit must not
// replace there.
func TestUnixSocketAddressStillWorks(t *testing.T) {
	t.Setenv("VAULT_ADDR", "unix:///run/vault-agent.sock")
	c, err := FromSettings(ReadSettings(os.LookupEnv))
	if err != nil {
		t.Fatalf("a unix:// address: %v", err)
	}
	if _, err := c.as("tok"); err != nil {
		t.Fatalf("a clone for a unix:// address: %v", err)
	}
}
