package tokenstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/tokenfile"
)

// perAddress is a token helper that keeps one token per VAULT_ADDR, as
// keyring helpers do; FAIL_STORE makes store fail, LOSE_STORE makes it
// exit 0 and keep nothing, HANG makes every call hang.
const perAddress = `#!/bin/sh
[ -n "$HANG" ] && exec sleep 60
f="$STORE_DIR/$(printf %s "$VAULT_ADDR" | tr -c 'a-zA-Z0-9' _)"
case "$1" in
get) [ -f "$f" ] && cat "$f"; exit 0 ;;
store)
  [ -n "$FAIL_STORE" ] && { echo "keyring locked; got $(cat)" >&2; exit 3; }
  [ -n "$LOSE_STORE" ] && { cat >/dev/null; exit 0; }
  umask 077; cat > "$f.tmp" && mv "$f.tmp" "$f" ;;
erase) rm -f "$f" ;;
esac
`

// helperAt is the perAddress helper, told addr; helpers made with one
// dir share what they keep.
func helperAt(t *testing.T, addr string, env ...string) Helper {
	t.Helper()
	return helperIn(t, t.TempDir(), addr, env...)
}

func helperIn(t *testing.T, dir, addr string, env ...string) Helper {
	t.Helper()
	path := filepath.Join(dir, "helper")
	if err := os.WriteFile(path, []byte(perAddress), 0o700); err != nil {
		t.Fatal(err)
	}
	w := Where{Addr: addr, Env: append([]string{"PATH=" + os.Getenv("PATH"), "STORE_DIR=" + dir}, env...), LockDir: dir}
	return w.helper(path)
}

func TestHelperKeepsOneTokenPerAddress(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	prod, staging := helperIn(t, dir, "https://prod:8200"), helperIn(t, dir, "https://staging:8200")
	if _, err := prod.Read(ctx); !errors.Is(err, tokenfile.ErrEmpty) {
		t.Fatalf("an empty helper: %v, want no token", err)
	}
	if err := prod.Replace(ctx, "", "hvs.prod"); err != nil {
		t.Fatal(err)
	}
	if err := staging.Replace(ctx, "", "hvs.staging"); err != nil {
		t.Fatal(err)
	}
	for h, want := range map[*Helper]string{&prod: "hvs.prod", &staging: "hvs.staging"} {
		if got, err := h.Read(ctx); err != nil || got != want {
			t.Fatalf("%s: get %q, %v; want %q", h.Addr, got, err, want)
		}
	}
	if prod.Key() == staging.Key() || prod.LockFile == staging.LockFile {
		t.Fatal("two addresses of one helper share a ledger or a lock")
	}
}

func TestAFailedStoreLeavesWhatTheHelperHeld(t *testing.T) {
	ctx := context.Background()
	for _, bad := range []string{"FAIL_STORE=1", "LOSE_STORE=1"} {
		t.Run(bad, func(t *testing.T) {
			h := helperAt(t, "https://prod:8200")
			if err := h.Replace(ctx, "", "hvs.old"); err != nil {
				t.Fatal(err)
			}
			broken := h
			broken.Env = append(append([]string(nil), h.Env...), bad)
			err := broken.Replace(ctx, "hvs.old", "hvs.new-secret")
			if !errors.Is(err, ErrHelper) {
				t.Fatalf("a store that did not take: %v, want ErrHelper", err)
			}
			if strings.Contains(err.Error(), "hvs.new-secret") {
				t.Fatalf("the token is in the error: %v", err)
			}
			if got, _ := h.Read(ctx); got != "hvs.old" {
				t.Fatalf("the helper holds %q after a failed store, want the old token", got)
			}
			if !strings.Contains(err.Error(), "it still holds the token it held") {
				t.Fatalf("the error does not say the helper kept its token: %v", err)
			}
		})
	}
}

func TestAHelperThatHangsFails(t *testing.T) {
	h := helperAt(t, "https://prod:8200", "HANG=1")
	h.Timeout = 200 * time.Millisecond
	start := time.Now()
	_, err := h.Read(context.Background())
	if !errors.Is(err, ErrHelper) || !strings.Contains(err.Error(), "no answer within 200ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("a hanging helper: %v after %s", err, time.Since(start))
	}
}

func TestResolve(t *testing.T) {
	home := t.TempDir()
	helper := filepath.Join(home, "bin-helper")
	os.WriteFile(helper, []byte(perAddress), 0o700)
	write := func(name, body string) string {
		p := filepath.Join(home, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write(".vault", `token_helper = "`+helper+`"`)
	write("bao.json", `{"token_helper": "`+helper+`"}`)
	for _, tc := range []struct {
		name string
		env  map[string]string
		bao  bool
		flag string
		kind string // file:<path> or helper
		why  string
	}{
		{"--token-file wins", map[string]string{"VTR_TOKEN_FILE": "/v"}, false, "/f", "file:/f", "--token-file"},
		{"VTR_TOKEN_FILE over the CLI's helper", map[string]string{"VTR_TOKEN_FILE": "/v"}, false, "", "file:/v", "VTR_TOKEN_FILE"},
		{"vault: token_helper in ~/.vault", nil, false, "", "helper", "token_helper in " + home + "/.vault"},
		{"vault: VAULT_CONFIG_PATH names another file, without one", map[string]string{"VAULT_CONFIG_PATH": home + "/none"}, false, "", "file:" + home + "/.vault-token", "the default"},
		{"bao: ~/.bao absent, BAO_TOKEN_PATH", map[string]string{"BAO_TOKEN_PATH": "/b"}, true, "", "file:/b", "BAO_TOKEN_PATH"},
		{"bao: BAO_CONFIG_PATH in JSON", map[string]string{"BAO_CONFIG_PATH": home + "/bao.json"}, true, "", "helper", "token_helper in " + home + "/bao.json"},
		{"bao: VAULT_CONFIG_PATH when no BAO_CONFIG_PATH", map[string]string{"VAULT_CONFIG_PATH": home + "/.vault"}, true, "", "helper", "token_helper in " + home + "/.vault"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"HOME": home}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := Resolve(Where{Getenv: func(k string) string { return env[k] }, Bao: tc.bao, Flag: tc.flag, Addr: "http://v", LockDir: home})
			if err != nil {
				t.Fatal(err)
			}
			kind := "helper"
			if f, ok := c.Store.(File); ok {
				kind = "file:" + f.Path
			}
			if kind != tc.kind || !strings.HasPrefix(c.Why, tc.why) {
				t.Fatalf("store %s (%s), want %s (%s)", kind, c.Why, tc.kind, tc.why)
			}
		})
	}
}

func TestAConfigThatCannotBeUsedIsAnError(t *testing.T) {
	home := t.TempDir()
	for name, body := range map[string]string{"garbled": `token_helper = "unterminated`, "missing helper": `token_helper = "/nonexistent/helper"`} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(filepath.Join(home, ".vault"), []byte(body), 0o600)
			_, err := Resolve(Where{Getenv: func(k string) string { return map[string]string{"HOME": home}[k] }})
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), filepath.Join(home, ".vault")) {
				t.Fatalf("%v, want ErrConfig naming the file", err)
			}
		})
	}
}

// TestSlot: two stores are one token when they are one file, or one helper
// for one address however spelled (a per-address helper keeps one token
// for every namespace of a Vault); another address or helper is another.
func TestSlot(t *testing.T) {
	id := func(p string) string { return p }
	h := func(path, addr, ns string) Store { return Helper{Path: path, Addr: addr, Namespace: ns} }
	for _, tc := range []struct {
		a, b Store
		same bool
	}{
		{h("/bin/h", "https://v:8200", "a"), h("/bin/h", "https://v:8200", "b"), true},
		{h("/bin/h", "https://V:8200/", ""), h("/bin/h", "https://v:8200", ""), true},
		{h("/bin/h", "https://v:443", ""), h("/bin/h", "HTTPS://v", ""), true},
		{h("/bin/h", "http://v:80/", ""), h("/bin/h", "http://v", ""), true},
		{h("/bin/h", "", ""), h("/bin/h", "https://127.0.0.1:8200", ""), true},
		{h("/bin/h", "https://[::1]:443", ""), h("/bin/h", "https://[::1]", ""), true},
		{h("/bin/h", "https://v:8200", ""), h("/bin/h", "https://w:8200", ""), false},
		{h("/bin/h", "https://v:8200", ""), h("/bin/h", "http://v:8200", ""), false},
		{h("/bin/h", "https://v:8200", ""), h("/bin/g", "https://v:8200", ""), false},
		{File{Path: "/t/a"}, File{Path: "/t/a"}, true},
		{File{Path: "/t/a"}, File{Path: "/t/b"}, false},
		{File{Path: "/bin/h"}, h("/bin/h", "", ""), false},
	} {
		if got := Slot(tc.a, id) == Slot(tc.b, id); got != tc.same {
			t.Errorf("%v and %v: one slot %v, want %v (%q, %q)", tc.a, tc.b, got, tc.same, Slot(tc.a, id), Slot(tc.b, id))
		}
	}
	links := func(p string) string { return strings.Replace(p, "/link/", "/real/", 1) }
	if Slot(h("/link/h", "https://v", ""), links) != Slot(h("/real/h", "https://v", ""), links) {
		t.Error("a helper reached through a link is another slot")
	}
}

// TestLoginWrites: the CLI's own login keeps its token in the store only
// where the CLI writes: its helper, ~/.vault-token, or (bao) its
// BAO_TOKEN_PATH; elsewhere (a file of the tool's settings, a
// BAO_TOKEN_PATH the vault CLI ignores, a file while the CLI uses a
// helper) a login must be written into the file.
func TestLoginWrites(t *testing.T) {
	home := t.TempDir()
	helper := filepath.Join(home, "bin-helper")
	os.WriteFile(helper, []byte(perAddress), 0o700)
	os.WriteFile(filepath.Join(home, "helper.hcl"), []byte(`token_helper = "`+helper+`"`), 0o600)
	own := filepath.Join(home, ".vault-token")
	for _, tc := range []struct {
		name string
		env  []string
		bao  bool
		want bool
	}{
		{"the default file", nil, false, true},
		{"VTR_TOKEN_FILE is ~/.vault-token", []string{"VTR_TOKEN_FILE", own}, false, true},
		{"VTR_TOKEN_FILE elsewhere", []string{"VTR_TOKEN_FILE", own + "-prod"}, false, false},
		{"the vault CLI ignores BAO_TOKEN_PATH", []string{"BAO_TOKEN_PATH", own + "-prod"}, false, false},
		{"bao writes BAO_TOKEN_PATH", []string{"BAO_TOKEN_PATH", own + "-prod"}, true, true},
		{"bao: VTR_TOKEN_FILE is BAO_TOKEN_PATH", []string{"BAO_TOKEN_PATH", own + "-prod", "VTR_TOKEN_FILE", own + "-prod"}, true, true},
		{"bao: VTR_TOKEN_FILE is ~/.vault-token, BAO_TOKEN_PATH elsewhere", []string{"BAO_TOKEN_PATH", own + "-prod", "VTR_TOKEN_FILE", own}, true, false},
		{"a helper", []string{"VAULT_CONFIG_PATH", filepath.Join(home, "helper.hcl")}, false, true},
		{"a file while the CLI uses a helper", []string{"VAULT_CONFIG_PATH", filepath.Join(home, "helper.hcl"), "VTR_TOKEN_FILE", own}, false, false},
	} {
		env := map[string]string{"HOME": home}
		for i := 0; i < len(tc.env); i += 2 {
			env[tc.env[i]] = tc.env[i+1]
		}
		c, err := Resolve(Where{Getenv: func(k string) string { return env[k] }, Bao: tc.bao, Addr: "http://v", LockDir: home})
		if err != nil || c.LoginWrites != tc.want {
			t.Errorf("%s: %s (%s): login writes it %v (%v), want %v", tc.name, c.Store, c.Why, c.LoginWrites, err, tc.want)
		}
	}
}
