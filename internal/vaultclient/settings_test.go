package vaultclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
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
