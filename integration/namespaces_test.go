//go:build integration

package integration

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/devvm/vault-token-renew/internal/devvault"
)

// TestOpenBaoNamespaceProfiles: one real OpenBao, two namespaces, a profile
// each (BAO_NAMESPACE, and BAO_TOKEN_PATH per profile, as a bao user keeps
// one token per namespace). The logins are the real bao CLI's: a userpass
// login inside prod's namespace, written by bao where prod's BAO_TOKEN_PATH
// says, heals prod's profile inside its namespace, tagged profile=prod, and
// `bao token lookup` (reading that same path) then shows our periodic
// token; staging's token, which bao login put in staging's path, and its
// file are not touched, and staging's run is OK in its own namespace.
func TestOpenBaoNamespaceProfiles(t *testing.T) {
	x := newBaoH(t)
	root, err := x.f.Server.Client(x.f.Server.RootToken)
	if err != nil {
		t.Fatal(err)
	}
	bao, err := devvault.OpenBaoBinary(x.ctx, io.Discard)
	if errors.Is(err, devvault.ErrNoOpenBao) && os.Getenv("CI") != "true" {
		t.Skipf("not run: the server's image is here, but no bao CLI: %v", err) // newBaoH's rule
	}
	if err != nil {
		t.Fatalf("no bao CLI (in CI a failure, never a skip): %v", err)
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
	cli := func(ns, stdin string, args ...string) string {
		return runCLI(t, x.ctx, bao, []string{"HOME=" + x.home, "BAO_ADDR=" + x.f.Server.Addr, "BAO_NAMESPACE=" + ns, "BAO_TOKEN_PATH=" + files[ns]}, stdin, args...)
	}
	adminLoginIn(t, x, root, "prod")
	cli("prod", userpassPassword, "login", "-no-print", "-method=userpass", "username=wizard", "password=-")
	ours := mintIn(t, x, root, "staging", &vault.TokenCreateRequest{NoParent: true, Period: "768h", DisplayName: "devvm-wizard", Policies: []string{"vault-admin", "sops-admin"}})
	cli("staging", ours.Secret, "login", "-no-print", "-")
	x.learnFiles() // what bao login wrote is a secret too
	stagingBefore := readFile(t, files["staging"])

	r := x.run("--profile", "prod")
	wantExit(t, "prod's heal in its namespace", r, 0)
	healed := wantLine(t, "prod's heal", r.stderr, "HEALED:")
	s, err := root.WithNamespace("prod").Auth().Token().LookupAccessorWithContext(x.ctx, field(healed, "accessor"))
	if err != nil || s.Data["meta"].(map[string]interface{})["profile"] != "prod" {
		t.Fatalf("the minted token is not prod's, in prod's namespace: %v", err)
	}
	lookup := cli("prod", "", "token", "lookup", "-format=json")
	if !strings.Contains(lookup, `"accessor": "`+field(healed, "accessor")+`"`) || !strings.Contains(lookup, `"period": 2764800`) {
		t.Fatal("bao token lookup, reading prod's BAO_TOKEN_PATH, does not show our periodic token")
	}
	if !bytes.Equal(readFile(t, files["staging"]), stagingBefore) {
		t.Fatal("prod's heal touched staging's token file")
	}
	r = x.run("--profile", "staging")
	if r.code != 0 || !strings.HasPrefix(r.closing, "OK: renewed periodic token") || field(r.closing, "accessor") != ours.Accessor {
		t.Fatalf("staging in its namespace: %s", r.closing)
	}
}

// userpassPassword is the test user's password in adminLoginIn's userpass.
const userpassPassword = "correct-horse-battery-staple"

// adminLoginIn sets up what an admin's login inside namespace ns gives: a
// namespace's admins hold a policy of the namespace (ns-admin), here
// through a userpass user wizard, as an OIDC role there would give them.
func adminLoginIn(t *testing.T, x *h, root *vault.Client, ns string) {
	t.Helper()
	admin := `path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }`
	c := root.WithNamespace(ns)
	if err := c.Sys().PutPolicyWithContext(x.ctx, "ns-admin", admin); err != nil {
		t.Fatal(err)
	}
	if err := c.Sys().EnableAuthWithOptionsWithContext(x.ctx, "userpass", &vault.EnableAuthOptions{Type: "userpass"}); err != nil {
		t.Fatal(err)
	}
	user := map[string]interface{}{"password": userpassPassword, "token_policies": "ns-admin", "token_ttl": "1h"}
	if _, err := c.Logical().WriteWithContext(x.ctx, "auth/userpass/users/wizard", user); err != nil {
		t.Fatal(err)
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
