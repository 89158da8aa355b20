package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// repoUnits is every unit the repo ships for the install without a
// profile, read as mage install reads them.
func repoUnits(t *testing.T) map[string][]byte {
	t.Helper()
	units, err := UnitsFrom(filepath.Join("..", "..", "systemd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"vault-token-renew.service", Timer, PathUnit, "vault-token-renew-notify@.service"} {
		if units[n] == nil {
			t.Fatalf("systemd/ lacks %s", n)
		}
	}
	plain, _ := splitUnits(units)
	return plain
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
	if !reflect.DeepEqual(sc.calls, []string{"daemon-reload", "enable --now vault-token-renew.timer", "try-restart vault-token-renew.path", "start --no-block " + WalkUnit}) || !r.WalkStarted {
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
	// Each install starts the walk once; with a whole ledger it does nothing.
	if len(r.Changed) != 0 || r.Reloaded || !reflect.DeepEqual(sc.calls, []string{"start --no-block " + WalkUnit}) || len(r.Unchanged) != files || len(r.EnvChanges) != 0 {
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
		filepath.Join(p.UnitDir, PathUnit), filepath.Join(p.UnitDir, "vault-token-renew-notify@vault-token-renew.service"))
	cmd.Env = append(os.Environ(), "HOME="+root, "XDG_RUNTIME_DIR="+run)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestHealOnLoginIsTheOperatorsChoice: a plain install leaves the path
// unit as it is; HEAL_ON_LOGIN=1 enables it, 0 disables it; an upgrade
// without the variable keeps the choice (no enable, no disable).
func TestHealOnLoginIsTheOperatorsChoice(t *testing.T) {
	root := t.TempDir()
	sc := &fakeSystemctl{}
	o := Options{Root: root, Binary: []byte("b"), Units: repoUnits(t), Getenv: getenv("VAULT_ADDR", "http://v"), Systemctl: sc.run}
	for _, tc := range []struct {
		choice string
		want   []string // the path unit's calls
	}{
		{"", nil},
		{"1", []string{"enable --now " + PathUnit}},
		{"", nil},
		{"0", []string{"disable --now " + PathUnit}},
		{"", nil},
	} {
		sc.calls = nil
		o.HealOnLogin = tc.choice
		if _, err := Install(o); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range sc.calls {
			if strings.HasSuffix(c, PathUnit) && !strings.HasPrefix(c, "try-restart") {
				got = append(got, c)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("HEAL_ON_LOGIN=%q: path unit calls %v, want %v", tc.choice, got, tc.want)
		}
	}
	o.HealOnLogin = "yes"
	if _, err := Install(o); err == nil || !strings.Contains(err.Error(), "HEAL_ON_LOGIN") {
		t.Errorf("HEAL_ON_LOGIN=yes: %v, want a usage error", err)
	}
}

// TestHealOnLoginWatchesTheTokenFile: with the token file elsewhere
// (VTR_TOKEN_FILE, else BAO_TOKEN_PATH) install writes a drop-in that
// replaces the path unit's PathChanged=; back in its usual place, the
// drop-in goes. Each change reloads and restarts a running path unit.
func TestHealOnLoginWatchesTheTokenFile(t *testing.T) {
	root := t.TempDir()
	p := PathsUnder(root)
	sc := &fakeSystemctl{}
	o := Options{Root: root, Binary: []byte("b"), Units: repoUnits(t), Systemctl: sc.run,
		Getenv: getenv("BAO_ADDR", "http://b", "BAO_TOKEN_PATH", "/home/w/.bao-token")}
	r, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	drop := filepath.Join(p.UnitDir, dropIn)
	b, err := os.ReadFile(drop)
	if err != nil || !strings.Contains(string(b), "[Path]\nPathChanged=\nPathChanged=/home/w/.bao-token\n") || r.Watches != "/home/w/.bao-token" {
		t.Fatalf("drop-in %q (%v), watches %q", b, err, r.Watches)
	}
	// VTR_TOKEN_FILE wins over BAO_TOKEN_PATH.
	o.Getenv = getenv("VTR_TOKEN_FILE", "/srv/w/token")
	sc.calls = nil
	if r, err = Install(o); err != nil || r.Watches != "/srv/w/token" || !r.Reloaded || !slices.Contains(sc.calls, "try-restart "+PathUnit) {
		t.Fatalf("watches %q reloaded %v calls %v err %v", r.Watches, r.Reloaded, sc.calls, err)
	}
	// Back to ~/.vault-token: the env file lines go by hand, the drop-in with them.
	if err := os.WriteFile(p.EnvFile, []byte("BAO_ADDR=http://b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o.Getenv = getenv()
	if r, err = Install(o); err != nil || r.Watches != "%h/.vault-token" {
		t.Fatalf("watches %q err %v", r.Watches, err)
	}
	if _, err := os.Stat(drop); !os.IsNotExist(err) {
		t.Fatalf("the drop-in is still there: %v", err)
	}
}

// TestUninstallDisablesBeforeItRemoves: no unit is left enabled with its
// file gone, and the operator's env file stays.
func TestUninstallDisablesBeforeItRemoves(t *testing.T) {
	root := t.TempDir()
	sc := &fakeSystemctl{}
	o := Options{Root: root, Binary: []byte("b"), Units: repoUnits(t), Systemctl: sc.run, HealOnLogin: "1",
		Getenv: getenv("VAULT_ADDR", "http://v", "VTR_TOKEN_FILE", "/srv/t")}
	if _, err := Install(o); err != nil {
		t.Fatal(err)
	}
	sc.calls = nil
	r, err := Uninstall(o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"disable --now " + Timer, "disable --now " + PathUnit, "stop " + WalkUnit, "daemon-reload"}
	if !reflect.DeepEqual(sc.calls, want) {
		t.Fatalf("systemctl calls %v, want %v", sc.calls, want)
	}
	p := PathsUnder(root)
	for _, f := range []string{p.Binary, filepath.Join(p.UnitDir, PathUnit), filepath.Join(p.UnitDir, dropIn), filepath.Join(p.UnitDir, PathUnit+".d")} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s is still there", f)
		}
	}
	if _, err := os.Stat(p.EnvFile); err != nil {
		t.Errorf("the env file went: %v", err)
	}
	if len(r.Changed) != len(o.Units)+3 {
		t.Errorf("removed %v", r.Changed)
	}
}

// TestUninstallOfAnOlderInstall: a machine installed before heal on login
// (no path unit), or uninstalled already, uninstalls without asking
// systemd to disable a unit it does not have.
func TestUninstallOfAnOlderInstall(t *testing.T) {
	root := t.TempDir()
	units := repoUnits(t)
	delete(units, PathUnit)
	delete(units, WalkUnit)
	if _, err := Install(Options{Root: root, Binary: []byte("b"), Units: units, Getenv: getenv("VAULT_ADDR", "http://v")}); err != nil {
		t.Fatal(err)
	}
	sc := &fakeSystemctl{}
	if _, err := Uninstall(Options{Root: root, Units: repoUnits(t), Systemctl: sc.run}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"disable --now " + Timer, "daemon-reload"}; !reflect.DeepEqual(sc.calls, want) {
		t.Fatalf("systemctl calls %v, want %v", sc.calls, want)
	}
	sc.calls = nil
	if _, err := Uninstall(Options{Root: root, Units: repoUnits(t), Systemctl: sc.run}); err != nil || !reflect.DeepEqual(sc.calls, []string{"daemon-reload"}) {
		t.Fatalf("a second uninstall: %v, calls %v", err, sc.calls)
	}
}

// TestInstallNeverLeavesTheEnvFileLoose: an env file others may write (a
// loose one left by hand) is made private by the next install, even when
// its content is already as wanted.
func TestInstallNeverLeavesTheEnvFileLoose(t *testing.T) {
	root := t.TempDir()
	o := Options{Root: root, Binary: []byte("b"), Units: repoUnits(t), Getenv: getenv("VAULT_ADDR", "http://v")}
	if _, err := Install(o); err != nil {
		t.Fatal(err)
	}
	p := PathsUnder(root)
	if err := os.Chmod(p.EnvFile, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(p.EnvFile), 0o777)
	r, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p.EnvFile)
	di, _ := os.Stat(filepath.Dir(p.EnvFile))
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm()&0o022 != 0 || len(r.EnvChanges) != 2 {
		t.Fatalf("after install the env file is %o in a %o directory (changes %v)", fi.Mode().Perm(), di.Mode().Perm(), r.EnvChanges)
	}
}

// TestWatchPath: the path heal on login watches is one systemd keeps in
// PathChanged=: cleaned and absolute (a relative one is the home's), and
// what systemd would drop (leaving the unit with no path) refused.
func TestWatchPath(t *testing.T) {
	for _, tc := range []struct{ in, want, refused string }{
		{"", "", ""},
		{"/home/w/.vault-token", "/home/w/.vault-token", ""},
		{".vault-token", "/home/w/.vault-token", ""},
		{"./tokens//prod/", "/home/w/tokens/prod", ""},
		{"/srv/50%d", "/srv/50%d", ""},
		{"/home/w/x/../tok", "", "a .. component"},
		{"../tok", "", "a .. component"},
		{"/home/w/a\nb", "", "a line break"},
		{"/home/w/\xff", "", "not UTF-8"},
		{" /home/w/t", "", "spaces at an end"},
		{"/home/w/t\\", "", "a trailing backslash"},
	} {
		got, err := watchPath("/home/w", tc.in)
		if tc.refused != "" {
			if err == nil || !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), "cannot go in a unit file") {
				t.Errorf("%q: %q, %v; want refused for %s", tc.in, got, err, tc.refused)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
