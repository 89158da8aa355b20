//go:build integration

package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

// TestOpenBaoNamespaceProfiles: one real OpenBao, two namespaces, a profile
// each (BAO_NAMESPACE, and BAO_TOKEN_PATH per profile, as a bao user keeps
// one token per namespace). prod's admin login heals prod's profile inside
// its namespace, tagged profile=prod; staging's token and file are not
// touched, and staging's run is OK in its own namespace.
func TestOpenBaoNamespaceProfiles(t *testing.T) {
	x := newBaoH(t)
	root, err := x.f.Server.Client(x.f.Server.RootToken)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, ns := range []string{"prod", "staging"} {
		if _, err := root.Logical().WriteWithContext(x.ctx, "sys/namespaces/"+ns, nil); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
		files[ns] = filepath.Join(x.home, ns+"-token")
		x.files = append(x.files, files[ns])
		writeProfile(t, x.home, ns, "BAO_ADDR="+x.f.Server.Addr, "BAO_NAMESPACE="+ns, "BAO_TOKEN_PATH="+files[ns])
	}
	// An admin login inside prod's namespace: a namespace's admins hold
	// a policy of the namespace, as an OIDC role there would give them.
	admin := `path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }`
	if err := root.WithNamespace("prod").Sys().PutPolicyWithContext(x.ctx, "ns-admin", admin); err != nil {
		t.Fatal(err)
	}
	login := mintIn(t, x, root, "prod", &vault.TokenCreateRequest{Policies: []string{"ns-admin"}, DisplayName: "oidc-wizard", TTL: "1h"})
	ours := mintIn(t, x, root, "staging", &vault.TokenCreateRequest{NoParent: true, Period: "768h", DisplayName: "devvm-wizard", Policies: []string{"vault-admin", "sops-admin"}})
	writeSecret(t, files["prod"], login.Secret)
	writeSecret(t, files["staging"], ours.Secret)
	stagingBefore := readFile(t, files["staging"])

	r := x.run("--profile", "prod")
	wantExit(t, "prod's heal in its namespace", r, 0)
	healed := wantLine(t, "prod's heal", r.stderr, "HEALED:")
	s, err := root.WithNamespace("prod").Auth().Token().LookupAccessorWithContext(x.ctx, field(healed, "accessor"))
	if err != nil || s.Data["meta"].(map[string]interface{})["profile"] != "prod" {
		t.Fatalf("the minted token is not prod's, in prod's namespace: %v", err)
	}
	if !bytes.Equal(readFile(t, files["staging"]), stagingBefore) {
		t.Fatal("prod's heal touched staging's token file")
	}
	r = x.run("--profile", "staging")
	if r.code != 0 || !strings.HasPrefix(r.closing, "OK: renewed periodic token") || field(r.closing, "accessor") != ours.Accessor {
		t.Fatalf("staging in its namespace: %s", r.closing)
	}
}

// mintIn creates a token in namespace ns, as root, and keeps it secret.
func mintIn(t *testing.T, x *h, root *vault.Client, ns string, req *vault.TokenCreateRequest) devvault.Token {
	t.Helper()
	s, err := root.WithNamespace(ns).Auth().Token().CreateWithContext(x.ctx, req)
	if err != nil {
		t.Fatalf("create a token in %s: %v", ns, err)
	}
	return x.keep(ns+" "+req.DisplayName, devvault.Token{Secret: s.Auth.ClientToken, Accessor: s.Auth.Accessor})
}

// writeProfile writes ~/.config/vault-token-renew/NAME.env below home.
func writeProfile(t *testing.T, home, name string, lines ...string) {
	t.Helper()
	dir := filepath.Join(home, ".config", "vault-token-renew")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".env"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeSecret(t *testing.T, path, secret string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
}
