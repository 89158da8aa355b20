package vaultclient

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

func lookupOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestSettingsPrecedence is the bao CLI's own rule (OpenBao's
// api.ReadBaoVariable): a BAO_* variable that is present wins over its
// VAULT_* twin, even empty; VAULT_* alone is a Vault user's, unchanged.
func TestSettingsPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		addr string
		set  bool
		bao  bool
	}{
		{"VAULT_ADDR alone", map[string]string{"VAULT_ADDR": "http://v:8200"}, "http://v:8200", true, false},
		{"BAO_ADDR alone", map[string]string{"BAO_ADDR": "http://b:8200"}, "http://b:8200", true, true},
		{"both: BAO_ADDR wins", map[string]string{"BAO_ADDR": "http://b:8200", "VAULT_ADDR": "http://v:8200"}, "http://b:8200", true, true},
		{"BAO_ADDR empty still wins", map[string]string{"BAO_ADDR": "", "VAULT_ADDR": "http://v:8200"}, "", true, true},
		{"neither", map[string]string{}, "", false, false},
		{"only BAO_TOKEN_PATH says bao", map[string]string{"BAO_TOKEN_PATH": "/t", "VAULT_ADDR": "http://v:8200"}, "http://v:8200", true, true},
		{"BAO_TOKEN is never used, but says bao", map[string]string{"BAO_TOKEN": "x", "VAULT_ADDR": "http://v:8200"}, "http://v:8200", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ReadSettings(lookupOf(tc.env))
			if s.Get("ADDR") != tc.addr || s.set["ADDR"] != tc.set || s.Bao != tc.bao {
				t.Fatalf("ADDR %q (set %v), bao %v; want %q (%v), %v", s.Get("ADDR"), s.set["ADDR"], s.Bao, tc.addr, tc.set, tc.bao)
			}
		})
	}
}

// TestFromSettingsReachesTheBaoAddress: the client the tool builds talks
// to BAO_ADDR, and to its BAO_NAMESPACE on every call, clones included;
// the process environment is as it was afterwards.
func TestFromSettingsReachesTheBaoAddress(t *testing.T) {
	var sawNS []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawNS = append(sawNS, r.Header.Get("X-Vault-Namespace"))
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(lookupBody))
	}))
	defer srv.Close()
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_NAMESPACE", "from-vault")
	c, err := FromSettings(ReadSettings(lookupOf(map[string]string{
		"VAULT_ADDR": "http://127.0.0.1:1", "BAO_ADDR": srv.URL, "VAULT_NAMESPACE": "from-vault", "BAO_NAMESPACE": "team-a", "BAO_MAX_RETRIES": "0"})))
	if err != nil {
		t.Fatal(err)
	}
	if c.Address() != srv.URL {
		t.Fatalf("address %s, want BAO_ADDR's %s", c.Address(), srv.URL)
	}
	if _, err := c.LookupSelf(context.Background(), "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Accessors("t2").Lookup(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	for _, ns := range sawNS {
		if ns != "team-a" {
			t.Fatalf("requests carried namespaces %v, want team-a (BAO_NAMESPACE) on each", sawNS)
		}
	}
	if os.Getenv("VAULT_ADDR") != "http://127.0.0.1:1" || os.Getenv("VAULT_NAMESPACE") != "from-vault" {
		t.Fatal("the process environment was left changed")
	}
	if c.MaxRetries() != 0 {
		t.Fatalf("max retries %d, want BAO_MAX_RETRIES=0", c.MaxRetries())
	}
}

// TestProcessEnvironmentIsNotConsulted: the client is the Settings' and
// nothing else's. Every VAULT_* the API client would read from the process
// environment is set here to something else, and none of it reaches the
// client: not the address, the namespace, the token, extra headers, the
// retries, the timeout, the rate limit, SRV lookup, the TLS settings or a
// proxy (a proxy at a dead port would fail every request). Each value
// parses: vault.NewClient builds a DefaultConfig of its own and fails on
// one that does not (see Client.own).
func TestProcessEnvironmentIsNotConsulted(t *testing.T) {
	type seen struct{ token, ns, leaked string }
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Header.Get("X-Vault-Token"), r.Header.Get("X-Vault-Namespace"), r.Header.Get("X-Leaked")})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(lookupBody))
	}))
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsSrv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_AGENT_ADDR": "http://127.0.0.1:1", "VAULT_NAMESPACE": "leaked-ns",
		"VAULT_TOKEN": "leaked-token", "VAULT_HEADERS": `{"X-Leaked":"yes"}`, "VAULT_MAX_RETRIES": "7",
		"VAULT_CLIENT_TIMEOUT": "1s", "VAULT_RATE_LIMIT": "5:1", "VAULT_SRV_LOOKUP": "true", "VAULT_SKIP_VERIFY": "true",
		"VAULT_TLS_SERVER_NAME": "leaked.example", "VAULT_CACERT": ca, "VAULT_PROXY_ADDR": "http://127.0.0.1:1",
		"BAO_ADDR": "http://127.0.0.1:1",
	} {
		t.Setenv(k, v)
	}
	c, err := FromSettings(ReadSettings(lookupOf(map[string]string{"VAULT_ADDR": srv.URL})))
	if err != nil {
		t.Fatal(err)
	}
	if c.Address() != srv.URL {
		t.Fatalf("address %s, want the settings' %s", c.Address(), srv.URL)
	}
	cfg := c.base.CloneConfig()
	tc := cfg.TLSConfig()
	if cfg.AgentAddress != "" || cfg.MaxRetries != 2 || cfg.Timeout != 60*time.Second || cfg.Limiter != nil || cfg.SRVLookup ||
		tc.InsecureSkipVerify || tc.ServerName != "" || tc.RootCAs != nil {
		t.Fatalf("the process environment leaked in: agent %q, retries %d, timeout %s, limiter %v, SRV %v, skip verify %v, server name %q, CAs %v",
			cfg.AgentAddress, cfg.MaxRetries, cfg.Timeout, cfg.Limiter, cfg.SRVLookup, tc.InsecureSkipVerify, tc.ServerName, tc.RootCAs != nil)
	}
	if _, err := c.LookupSelf(context.Background(), "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Accessors("t2").Lookup(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	api, err := API(ReadSettings(lookupOf(map[string]string{"VAULT_ADDR": srv.URL})))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Auth().Token().LookupSelf(); err != nil {
		t.Fatal(err)
	}
	want := []seen{{"t1", "", ""}, {"t2", "", ""}, {"", "", ""}}
	if !slices.Equal(got, want) {
		t.Fatalf("requests carried (token, namespace, X-Leaked) %v, want %v", got, want)
	}
}

// TestConfigIsDefaultConfigsReading: for each setting, the configuration
// built from the Settings value is the one vault.DefaultConfig builds when
// the same value is the process environment's (this test sets it there,
// to compare): the same fields, the same TLS, and an error for the same
// values.
func TestConfigIsDefaultConfigsReading(t *testing.T) {
	dir := t.TempDir()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, env := range []map[string]string{
		{},
		{"VAULT_ADDR": "https://vault.example:8200"},
		{"VAULT_ADDR": ""},
		{"VAULT_MAX_RETRIES": "0"}, {"VAULT_MAX_RETRIES": "5"}, {"VAULT_MAX_RETRIES": "-1"}, {"VAULT_MAX_RETRIES": "x"},
		{"VAULT_CLIENT_TIMEOUT": "30s"}, {"VAULT_CLIENT_TIMEOUT": "30"}, {"VAULT_CLIENT_TIMEOUT": "1d"}, {"VAULT_CLIENT_TIMEOUT": "soon"},
		{"VAULT_SKIP_VERIFY": "true"}, {"VAULT_SKIP_VERIFY": "0"}, {"VAULT_SKIP_VERIFY": "yes"},
		{"VAULT_TLS_SERVER_NAME": "vault.internal"},
		{"VAULT_CACERT": ca}, {"VAULT_CAPATH": dir}, {"VAULT_CACERT": filepath.Join(dir, "missing.pem")},
		{"VAULT_CLIENT_CERT": ca}, {"VAULT_CLIENT_KEY": ca},
	} {
		name := fmt.Sprint(env)
		t.Run(name, func(t *testing.T) {
			for _, n := range append(Names, "AGENT_ADDR", "RATE_LIMIT", "SRV_LOOKUP", "HTTP_PROXY", "PROXY_ADDR", "DISABLE_REDIRECTS", "CACERT_BYTES") {
				t.Setenv("VAULT_"+n, env["VAULT_"+n])
			}
			want := vault.DefaultConfig()
			got, err := ReadSettings(lookupOf(env)).config()
			if (err != nil) != (want.Error != nil) {
				t.Fatalf("error %v; DefaultConfig's %v", err, want.Error)
			}
			if err != nil {
				return
			}
			compareConfigs(t, got, want)
		})
	}
}

func compareConfigs(t *testing.T, got, want *vault.Config) {
	t.Helper()
	fn := func(f any) uintptr { return reflect.ValueOf(f).Pointer() }
	if got.Address != want.Address || got.AgentAddress != want.AgentAddress || got.MaxRetries != want.MaxRetries ||
		got.Timeout != want.Timeout || got.MinRetryWait != want.MinRetryWait || got.MaxRetryWait != want.MaxRetryWait ||
		got.Limiter != want.Limiter || got.SRVLookup != want.SRVLookup || got.DisableRedirects != want.DisableRedirects ||
		fn(got.Backoff) != fn(want.Backoff) || got.CheckRetry != nil || (got.HttpClient.CheckRedirect == nil) != (want.HttpClient.CheckRedirect == nil) {
		t.Fatalf("config\n got %+v\nwant %+v", got, want)
	}
	gt, wt := got.HttpClient.Transport.(*http.Transport), want.HttpClient.Transport.(*http.Transport)
	if gt.TLSHandshakeTimeout != wt.TLSHandshakeTimeout || gt.MaxIdleConnsPerHost != wt.MaxIdleConnsPerHost ||
		gt.IdleConnTimeout != wt.IdleConnTimeout || fn(gt.Proxy) != fn(wt.Proxy) || gt.ForceAttemptHTTP2 != wt.ForceAttemptHTTP2 {
		t.Fatalf("transport differs: %+v, want %+v", gt, wt)
	}
	g, w := got.TLSConfig(), want.TLSConfig()
	if g.MinVersion != w.MinVersion || g.InsecureSkipVerify != w.InsecureSkipVerify || g.ServerName != w.ServerName ||
		!slices.Equal(g.NextProtos, w.NextProtos) || (g.RootCAs == nil) != (w.RootCAs == nil) ||
		(g.RootCAs != nil && !g.RootCAs.Equal(w.RootCAs)) || (g.GetClientCertificate == nil) != (w.GetClientCertificate == nil) {
		t.Fatalf("TLS differs: %+v, want %+v", g, w)
	}
}

// TestASettingThatDoesNotParseIsNamed: the error names the variable the
// value came from, BAO_* or VAULT_*.
func TestASettingThatDoesNotParseIsNamed(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"VAULT_MAX_RETRIES": "x"}, "could not parse VAULT_MAX_RETRIES"},
		{map[string]string{"VAULT_MAX_RETRIES": "1", "BAO_MAX_RETRIES": "x"}, "could not parse BAO_MAX_RETRIES"},
		{map[string]string{"BAO_CLIENT_TIMEOUT": "soon"}, "could not parse BAO_CLIENT_TIMEOUT"},
		{map[string]string{"VAULT_SKIP_VERIFY": "maybe"}, "could not parse VAULT_SKIP_VERIFY"},
		{map[string]string{"VAULT_CLIENT_CERT": "/c.pem"}, "both client cert and client key must be provided"},
	} {
		_, err := FromSettings(ReadSettings(lookupOf(tc.env)))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "vault client settings from the environment: ") {
			t.Errorf("%v: %v, want %q", tc.env, err, tc.want)
		}
	}
}
