package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// repoUnits is every unit the repo ships, read as mage install reads them.
func repoUnits(t *testing.T) map[string][]byte {
	t.Helper()
	units, err := UnitsFrom(filepath.Join("..", "..", "systemd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"vault-token-renew.service", Timer, "vault-token-renew-notify@.service"} {
		if units[n] == nil {
			t.Fatalf("systemd/ lacks %s", n)
		}
	}
	return units
}

func getenv(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

type fakeSystemctl struct{ calls []string }

func (f *fakeSystemctl) run(args ...string) error {
	f.calls = append(f.calls, strings.Join(args, " "))
	return nil
}

func TestInstallIsIdempotent(t *testing.T) {
	root := t.TempDir()
	sc := &fakeSystemctl{}
	o := Options{Root: root, Binary: []byte("binary-v1"), Units: repoUnits(t),
		Getenv:    getenv("VAULT_ADDR", "https://vault.example:8200", "VAULT_TOKEN", "must-not-be-written", "VAULT_CACERT", "/etc/ca.pem"),
		Systemctl: sc.run}
	r, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	p := PathsUnder(root)
	files := len(o.Units) + 2 // binary, units, env file
	if len(r.Changed) != files || !r.Reloaded || r.EnvNeedsAddr {
		t.Fatalf("first install: %+v", r)
	}
	if !reflect.DeepEqual(sc.calls, []string{"daemon-reload", "enable --now vault-token-renew.timer"}) {
		t.Fatalf("systemctl calls %v", sc.calls)
	}
	fi, err := os.Stat(p.Binary)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("binary %v %v", fi, err)
	}
	env, _ := os.ReadFile(p.EnvFile)
	if !strings.Contains(string(env), "VAULT_ADDR=https://vault.example:8200\n") || !strings.Contains(string(env), "VAULT_CACERT=/etc/ca.pem\n") {
		t.Fatalf("env file:\n%s", env)
	}
	if strings.Contains(string(env), "must-not-be-written") {
		t.Fatal("VAULT_TOKEN was written to the env file")
	}

	sc.calls = nil
	r, err = Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Changed) != 0 || r.Reloaded || len(sc.calls) != 0 || len(r.Unchanged) != files || len(r.EnvChanges) != 0 {
		t.Fatalf("second install changed something: %+v, systemctl %v", r, sc.calls)
	}

	// A new binary alone replaces the binary and does not reload systemd.
	o.Binary = []byte("binary-v2")
	r, err = Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Changed, []string{p.Binary}) || r.Reloaded {
		t.Fatalf("binary upgrade: %+v", r)
	}
	if b, _ := os.ReadFile(p.Binary); string(b) != "binary-v2" {
		t.Fatal("binary not replaced")
	}

	// A changed unit reloads.
	o.Units["vault-token-renew.timer"] = append(o.Units["vault-token-renew.timer"], '\n')
	r, err = Install(o)
	if err != nil || !r.Reloaded || len(r.Changed) != 1 {
		t.Fatalf("unit change: %+v %v", r, err)
	}
}

func TestInstallWithoutUserManager(t *testing.T) {
	r, err := Install(Options{Root: t.TempDir(), Binary: []byte("b"), Units: repoUnits(t), Getenv: getenv("VAULT_ADDR", "http://127.0.0.1:8200")})
	if err != nil {
		t.Fatal(err)
	}
	if !r.NoManager || r.Reloaded {
		t.Fatalf("%+v", r)
	}
}

func TestEnvFileKeptWhenShellHasNoAddr(t *testing.T) {
	root := t.TempDir()
	p := PathsUnder(root)
	os.MkdirAll(filepath.Dir(p.EnvFile), 0o755)
	os.WriteFile(p.EnvFile, []byte("VAULT_ADDR=https://kept:8200\n"), 0o600)
	r, err := Install(Options{Root: root, Binary: []byte("b"), Units: repoUnits(t), Getenv: getenv()})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p.EnvFile); string(b) != "VAULT_ADDR=https://kept:8200\n" {
		t.Fatalf("env file overwritten: %q", b)
	}
	if r.EnvNeedsAddr {
		t.Fatal("kept file has an address")
	}

	// No file and no address: a template, and a warning flag.
	r, err = Install(Options{Root: t.TempDir(), Binary: []byte("b"), Units: repoUnits(t), Getenv: getenv()})
	if err != nil || !r.EnvNeedsAddr {
		t.Fatalf("%+v %v", r, err)
	}
}

// TestUnitsVerify checks the shipped units with systemd-analyze, installed
// as an operator would have them.
func TestUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing in CI; install the systemd package")
		}
		t.Skip("systemd-analyze not installed")
	}
	root := t.TempDir()
	true_, _ := exec.LookPath("true")
	bin, _ := os.ReadFile(true_)
	if _, err := Install(Options{Root: root, Binary: bin, Units: repoUnits(t), Getenv: getenv("VAULT_ADDR", "http://127.0.0.1:8200")}); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(root, "run")
	os.Mkdir(run, 0o700)
	p := PathsUnder(root)
	// The template is checked as the instance OnFailure= starts.
	cmd := exec.Command(sa, "verify", "--user", filepath.Join(p.UnitDir, "vault-token-renew.service"), filepath.Join(p.UnitDir, Timer),
		filepath.Join(p.UnitDir, "vault-token-renew-notify@vault-token-renew.service"))
	cmd.Env = append(os.Environ(), "HOME="+root, "XDG_RUNTIME_DIR="+run)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
