package install

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// profileUnits is what a profile's install gets: the templates and the
// notifier.
func profileUnits(t *testing.T) map[string][]byte {
	t.Helper()
	units, err := UnitsFrom(filepath.Join("..", "..", "systemd"))
	if err != nil {
		t.Fatal(err)
	}
	_, profile := splitUnits(units)
	return profile
}

func TestCheckProfile(t *testing.T) {
	for _, ok := range []string{"prod", "staging", "eu-west_2", "0", "a" + strings.Repeat("b", 30)} {
		if err := CheckProfile(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Prod", "-x", "_x", "a" + strings.Repeat("b", 31), "a.b", "a/b", "../x", "a@b", "a b", "all", "prod\n"} {
		if err := CheckProfile(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSplitUnits(t *testing.T) {
	all, err := UnitsFrom(filepath.Join("..", "..", "systemd"))
	if err != nil {
		t.Fatal(err)
	}
	plain, profile := splitUnits(all)
	names := func(m map[string][]byte) []string {
		var out []string
		for n := range m {
			out = append(out, n)
		}
		return sortedCopy(out)
	}
	if want := []string{"vault-token-renew-notify@.service", "vault-token-renew-sweep.service", PathUnit, "vault-token-renew.service", Timer}; !reflect.DeepEqual(names(plain), want) {
		t.Errorf("the install without a profile gets %v, want %v", names(plain), want)
	}
	if want := []string{"vault-token-renew-notify@.service", "vault-token-renew-sweep@.service", "vault-token-renew@.path", "vault-token-renew@.service", "vault-token-renew@.timer"}; !reflect.DeepEqual(names(profile), want) {
		t.Errorf("a profile gets %v, want %v", names(profile), want)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// directives are a unit's lines that are not comments, blank lines or its
// Description=.
func directives(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "Description=") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// TestTemplatesAreThePlainUnits: each template is its plain twin, line for
// line (sandbox, timeouts, SyslogLevelPrefix, Persistent=, the trigger
// limit), but for what makes it a profile's: its env file (not optional),
// VTR_PROFILE, its walk unit, the service its path unit starts.
func TestTemplatesAreThePlainUnits(t *testing.T) {
	units, err := UnitsFrom(filepath.Join("..", "..", "systemd"))
	if err != nil {
		t.Fatal(err)
	}
	profileOf := strings.NewReplacer(
		"EnvironmentFile=-%h/.config/vault-token-renew/env", "EnvironmentFile=%E/vault-token-renew/%i.env",
		"VTR_WALK_UNIT=vault-token-renew-sweep.service", "VTR_WALK_UNIT=vault-token-renew-sweep@%i.service",
		"Unit=vault-token-renew.service", "Unit=vault-token-renew@%i.service")
	for plain, tmpl := range map[string]string{"vault-token-renew.service": "vault-token-renew@.service", Timer: "vault-token-renew@.timer",
		PathUnit: "vault-token-renew@.path", WalkUnit: "vault-token-renew-sweep@.service"} {
		var want []string
		for _, l := range directives(units[plain]) {
			want = append(want, profileOf.Replace(l))
		}
		var got []string
		for _, l := range directives(units[tmpl]) {
			if l != "Environment=VTR_PROFILE=%i" {
				got = append(got, l)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s is not %s made a profile's:\n got %q\nwant %q", tmpl, plain, got, want)
		}
		if strings.HasSuffix(tmpl, ".service") && !strings.Contains(string(units[tmpl]), "\nEnvironment=VTR_PROFILE=%i\n") {
			t.Errorf("%s does not set VTR_PROFILE=%%i", tmpl)
		}
	}
}

// TestInstallProfile: a profile's install writes its env file (private),
// the templates and the notifier, never the units of the install without
// a profile; points its path unit at its token file and its notifier at
// its env file; enables its timer and starts its walk. A second install
// changes nothing and enables again (idempotent).
func TestInstallProfile(t *testing.T) {
	root := t.TempDir()
	sc := &fakeSystemctl{}
	o := Options{Root: root, Binary: []byte("b"), Units: profileUnits(t), Systemctl: sc.run, Profile: "prod",
		Getenv: getenv("VAULT_ADDR", "https://prod:8200", "VAULT_TOKEN", "hvs.secret", "VTR_TOKEN_FILE", "/srv/prod/token")}
	r, err := InstallProfile(o)
	if err != nil {
		t.Fatal(err)
	}
	p, env := PathsUnder(root), ProfileEnvFile(root, "prod")
	b, _ := os.ReadFile(env)
	fi, err := os.Stat(env)
	if err != nil || fi.Mode().Perm() != 0o600 || env != filepath.Join(root, ".config", "vault-token-renew", "prod.env") {
		t.Fatalf("env file %s: %v %v", env, fi, err)
	}
	for _, want := range []string{"# Profile prod:", "\nVAULT_ADDR=https://prod:8200\n", "\nVTR_TOKEN_FILE=/srv/prod/token\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("prod.env lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "hvs.secret") {
		t.Fatal("VAULT_TOKEN written")
	}
	if _, err := os.Stat(filepath.Join(p.UnitDir, "vault-token-renew.service")); err == nil {
		t.Error("a profile's install wrote the unit of the install without a profile")
	}
	wantFile(t, filepath.Join(p.UnitDir, "vault-token-renew@prod.path.d", "token-file.conf"), "[Path]\nPathChanged=\nPathChanged=/srv/prod/token\n")
	for _, failing := range []string{"vault-token-renew@prod", "vault-token-renew-sweep@prod", "vault-token-renew@prod.path"} {
		wantFile(t, filepath.Join(p.UnitDir, "vault-token-renew-notify@"+failing+".service.d", "profile.conf"),
			"[Service]\nEnvironmentFile=\nEnvironmentFile=-%E/vault-token-renew/prod.env\nEnvironment=VTR_PROFILE=prod\n")
	}
	want := []string{"daemon-reload", "try-restart vault-token-renew@prod.path", "enable --now vault-token-renew@prod.timer", "start --no-block vault-token-renew-sweep@prod.service"}
	if !reflect.DeepEqual(sc.calls, want) || r.Watches != "/srv/prod/token" || r.Store != "/srv/prod/token (VTR_TOKEN_FILE)" {
		t.Fatalf("systemctl %v (want %v), watches %q, store %q", sc.calls, want, r.Watches, r.Store)
	}
	var out bytes.Buffer
	r.printProfile(&out, root, "v1")
	for _, want := range []string{"install: profile prod keeps its token in /srv/prod/token (VTR_TOKEN_FILE)", "enabled vault-token-renew@prod.timer", "VTR_PROFILE=prod vault-token-renew status --brief", "started the walk (vault-token-renew-sweep@prod.service)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("install's words lack %q:\n%s", want, out.String())
		}
	}

	sc.calls = nil
	o.HealOnLogin = "1"
	if r, err = InstallProfile(o); err != nil || len(r.Changed) != 0 || r.Reloaded {
		t.Fatalf("second install: %+v %v", r, err)
	}
	if want := []string{"enable --now vault-token-renew@prod.timer", "enable --now vault-token-renew@prod.path", "start --no-block vault-token-renew-sweep@prod.service"}; !reflect.DeepEqual(sc.calls, want) {
		t.Fatalf("second install, HEAL_ON_LOGIN=1: systemctl %v, want %v", sc.calls, want)
	}
}

func wantFile(t *testing.T, path, has string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), has) {
		t.Errorf("%s: %v, lacks %q:\n%s", path, err, has, b)
	}
}

// TestInstallProfileRefusesBeforeWriting: a bad name, "all", a bad
// HEAL_ON_LOGIN, and an env file that names another profile are refused
// with nothing written.
func TestInstallProfileRefusesBeforeWriting(t *testing.T) {
	for _, tc := range []struct {
		name, profile, heal, envLine, says string
	}{
		{"a bad name", "Prod", "", "", `PROFILE="Prod"`},
		{"all", "all", "", "", "uninstall only"},
		{"a bad HEAL_ON_LOGIN", "prod", "yes", "", "HEAL_ON_LOGIN"},
		{"another profile in its env file", "prod", "", "VTR_PROFILE=staging\n", "VTR_PROFILE=staging"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.envLine != "" {
				os.MkdirAll(filepath.Join(root, ".config", "vault-token-renew"), 0o700)
				os.WriteFile(ProfileEnvFile(root, tc.profile), []byte(tc.envLine), 0o600)
			}
			sc := &fakeSystemctl{}
			_, err := InstallProfile(Options{Root: root, Binary: []byte("b"), Units: profileUnits(t), Systemctl: sc.run, Profile: tc.profile, HealOnLogin: tc.heal, Getenv: getenv("VAULT_ADDR", "http://v")})
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want one that says %q", err, tc.says)
			}
			if _, err := os.Stat(PathsUnder(root).Binary); err == nil || len(sc.calls) > 0 {
				t.Fatalf("a refused install wrote the binary or called systemctl %v", sc.calls)
			}
		})
	}
}

// helperConfig writes a token helper and a CLI config file naming it, and
// returns the config's path.
func helperConfig(t *testing.T, dir string) string {
	t.Helper()
	helper := filepath.Join(dir, "helper")
	if err := os.WriteFile(helper, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "vault-config.hcl")
	if err := os.WriteFile(cfg, []byte(`token_helper = "`+helper+`"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestInstallRefusesTwoProfilesOnOneStore: a profile whose token would be
// kept where another install keeps its own (the same file, however
// spelled; the same token helper for the same address, whatever the
// namespace: a helper keeps a token per address at most) is
// refused, with both names, the store and the way out, and nothing
// written; other stores are fine.
func TestInstallRefusesTwoProfilesOnOneStore(t *testing.T) {
	root := t.TempDir()
	cfg := helperConfig(t, t.TempDir())
	os.MkdirAll(filepath.Join(root, "tokens"), 0o700)
	os.Symlink(filepath.Join(root, "tokens"), filepath.Join(root, "link"))
	install := func(profile string, env ...string) error {
		_, err := InstallProfile(Options{Root: root, Binary: []byte("b"), Units: profileUnits(t), Systemctl: (&fakeSystemctl{}).run, Profile: profile, Getenv: getenv(env...)})
		return err
	}
	for _, tc := range []struct {
		profile string
		env     []string
		clash   string // "" when it installs; else the profile it clashes with
		says    []string
	}{
		{"prod", []string{"VAULT_ADDR", "https://prod"}, "", nil},
		{"staging", []string{"VAULT_ADDR", "https://staging"}, "prod", []string{filepath.Join(root, ".vault-token"), "VTR_TOKEN_FILE (or BAO_TOKEN_PATH for bao)", "PROFILE=prod go tool mage uninstall"}},
		{"staging", []string{"VAULT_ADDR", "https://staging", "VTR_TOKEN_FILE", filepath.Join(root, "tokens", "staging")}, "", nil},
		{"dev", []string{"VAULT_ADDR", "https://dev", "VTR_TOKEN_FILE", root + "/tokens/./staging"}, "staging", []string{root + "/tokens/./staging"}},
		{"dev", []string{"BAO_ADDR", "https://dev", "BAO_TOKEN_PATH", filepath.Join(root, "link", "staging")}, "staging", []string{"BAO_TOKEN_PATH"}},
		{"ha", []string{"VAULT_ADDR", "https://a", "VAULT_CONFIG_PATH", cfg}, "", nil},
		{"hb", []string{"VAULT_ADDR", "https://b", "VAULT_CONFIG_PATH", cfg}, "", nil},
		{"hans", []string{"VAULT_ADDR", "https://a/", "VAULT_NAMESPACE", "team", "VAULT_CONFIG_PATH", cfg}, "ha", []string{"token helper", "per Vault address", "two namespaces of one Vault share its token"}},
		{"hc", []string{"VAULT_ADDR", "https://a", "VAULT_CONFIG_PATH", cfg}, "ha", []string{"token helper", "per Vault address"}},
	} {
		err := install(tc.profile, tc.env...)
		if tc.clash == "" {
			if err != nil {
				t.Fatalf("profile %s (%v): %v", tc.profile, tc.env, err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("profile %s (%v) shares profile %s's store, and was installed", tc.profile, tc.env, tc.clash)
		}
		for _, want := range append([]string{`profile "` + tc.profile + `"`, `profile "` + tc.clash + `"`, "install refused"}, tc.says...) {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("profile %s: the refusal lacks %q:\n%v", tc.profile, want, err)
			}
		}
		if _, err := os.Stat(ProfileEnvFile(root, tc.profile)); err == nil {
			t.Errorf("a refused profile %s has an env file", tc.profile)
		}
	}
}

// TestTheInstallWithoutAProfileCounts: its store counts once its env file
// or its units are there (the binary counts it by its env file), both
// ways: a profile on it is refused, and it is refused on a profile's;
// with no profile on the machine it is what it always was.
func TestTheInstallWithoutAProfileCounts(t *testing.T) {
	root := t.TempDir()
	p := PathsUnder(root)
	plain := Options{Root: root, Binary: []byte("b"), Units: repoUnits(t), Getenv: getenv("VAULT_ADDR", "http://v")}
	profile := Options{Root: root, Binary: []byte("b"), Units: profileUnits(t), Profile: "prod", Getenv: getenv("VAULT_ADDR", "http://p")}
	if _, err := InstallProfile(profile); err != nil {
		t.Fatalf("a profile on ~/.vault-token with no install without a profile: %v", err)
	}
	_, err := Install(plain)
	if err == nil || !strings.Contains(err.Error(), "the install without a profile") || !strings.Contains(err.Error(), `profile "prod"`) {
		t.Fatalf("the install without a profile on profile prod's store: %v", err)
	}
	if _, err := os.Stat(p.EnvFile); err == nil {
		t.Fatal("a refused install wrote its env file")
	}
	os.Remove(ProfileEnvFile(root, "prod"))
	if _, err := Install(plain); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"", "units", "env"} {
		switch gone {
		case "units":
			Uninstall(Options{Root: root, Units: repoUnits(t)}) // the env file stays
		case "env":
			os.Rename(p.EnvFile, p.EnvFile+".aside")
		}
		_, err = InstallProfile(profile)
		if gone == "env" {
			if err != nil {
				t.Fatalf("profile prod with the install without a profile gone, its env file moved aside: %v", err)
			}
			break
		}
		if err == nil || !strings.Contains(err.Error(), `profile "prod"`) || !strings.Contains(err.Error(), "the install without a profile ("+p.EnvFile+")") ||
			!strings.Contains(err.Error(), "go tool mage uninstall and move "+p.EnvFile+" aside") {
			t.Fatalf("profile prod on the store of the install without a profile (%q gone): %v", gone, err)
		}
	}
}

// TestHealOnLoginIsNotOfferedForAHelper: a profile whose token a token
// helper keeps has no file to watch: whatever HEAL_ON_LOGIN says, its path
// unit is disabled (one enabled while the profile kept a file would watch
// the template's %h/.vault-token), no drop-in points it anywhere, and
// install says so, never "it watches" nothing.
func TestHealOnLoginIsNotOfferedForAHelper(t *testing.T) {
	root := t.TempDir()
	helper := helperConfig(t, t.TempDir())
	prod := Profile("prod")
	dropIn := filepath.Join(PathsUnder(root).UnitDir, prod.pathDropIn())
	for _, tc := range []struct {
		heal, env string // HEAL_ON_LOGIN, and the profile's VAULT_CONFIG_PATH ("" for its file)
		says      string
	}{
		{"1", "", "heal on login (vault-token-renew@prod.path) enabled; it watches " + filepath.Join(root, "prod-token")},
		{"", helper, "heal on login (vault-token-renew@prod.path) is not offered for profile prod (disabled): its token is kept by a token helper"},
		{"1", helper, "HEAL_ON_LOGIN=1 ignored: heal on login (vault-token-renew@prod.path) is not offered for profile prod (disabled): its token is kept by a token helper"},
		{"0", helper, "heal on login (vault-token-renew@prod.path) is not offered for profile prod (disabled)"},
	} {
		sc := &fakeSystemctl{}
		o := Options{Root: root, Binary: []byte("b"), Units: profileUnits(t), Systemctl: sc.run, Profile: "prod", HealOnLogin: tc.heal,
			Getenv: getenv("VAULT_ADDR", "https://a", "VTR_TOKEN_FILE", "prod-token", "VAULT_CONFIG_PATH", tc.env)}
		if tc.env != "" {
			o.Getenv = getenv("VAULT_ADDR", "https://a", "VAULT_CONFIG_PATH", tc.env)
			os.WriteFile(ProfileEnvFile(root, "prod"), []byte("VAULT_ADDR=https://a\n"), 0o600) // moved to the helper
		}
		r, err := InstallProfile(o)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		r.printProfile(&out, root, "v1")
		if !strings.Contains(out.String(), tc.says) || strings.Contains(out.String(), "it watches \n") {
			t.Errorf("HEAL_ON_LOGIN=%q helper %v: install does not say %q:\n%s", tc.heal, tc.env != "", tc.says, out.String())
		}
		_, err = os.Stat(dropIn)
		if tc.env == "" {
			if err != nil || !slices.Contains(sc.calls, "enable --now "+prod.PathUnit()) {
				t.Fatalf("a file's profile: drop-in %v, calls %v", err, sc.calls)
			}
			continue
		}
		if err == nil {
			t.Error("a drop-in points the path unit of a helper's profile at a file")
		}
		if !slices.Contains(sc.calls, "disable --now "+prod.PathUnit()) || slices.Contains(sc.calls, "enable --now "+prod.PathUnit()) {
			t.Errorf("HEAL_ON_LOGIN=%q: a helper's profile's path unit is not disabled: %v", tc.heal, sc.calls)
		}
		if !strings.Contains(out.String(), "keeps its token in token helper ") {
			t.Errorf("install does not name the helper:\n%s", out.String())
		}
	}
}

// TestTheWatchedFileIsCheckedBeforeAnythingIsWritten: a relative token
// file is the home's, as the run (working directory: the home) reads it; a
// % is escaped for systemd; a path systemd would drop (watchPath) is
// refused before the binary, a unit or the env file is written, as is a HEAL_ON_LOGIN
// that is neither 1 nor 0.
func TestTheWatchedFileIsCheckedBeforeAnythingIsWritten(t *testing.T) {
	for _, profile := range []string{"", "prod"} {
		root := t.TempDir()
		install := func(token string, heal ...string) (Report, error) {
			o := Options{Root: root, Binary: []byte("b"), Units: profileUnits(t), Systemctl: (&fakeSystemctl{}).run, Profile: profile, HealOnLogin: "1",
				Getenv: getenv("VAULT_ADDR", "https://a", "VTR_TOKEN_FILE", token)}
			if len(heal) > 0 {
				o.HealOnLogin = heal[0]
			}
			if profile == "" {
				return Install(o)
			}
			return InstallProfile(o)
		}
		if _, err := install("tokens/x/../a"); err == nil || !strings.Contains(err.Error(), "cannot go in a unit file") {
			t.Fatalf("profile %q: a token file with a .. component: %v", profile, err)
		}
		if _, err := install("token", "yes"); err == nil || !strings.Contains(err.Error(), `HEAL_ON_LOGIN="yes"`) {
			t.Fatalf("profile %q: HEAL_ON_LOGIN=yes: %v", profile, err)
		}
		if entries, _ := os.ReadDir(root); len(entries) != 0 {
			t.Fatalf("profile %q: a refused install wrote %v", profile, entries)
		}
		r, err := install("tokens/50%d")
		want := filepath.Join(root, "tokens", "50%d")
		if err != nil || r.Watches != want {
			t.Fatalf("profile %q: watches %q (%v), want %s", profile, r.Watches, err, want)
		}
		drop := filepath.Join(PathsUnder(root).UnitDir, dropIn)
		if profile != "" {
			drop = filepath.Join(PathsUnder(root).UnitDir, Profile(profile).pathDropIn())
		}
		if b, err := os.ReadFile(drop); err != nil || !strings.Contains(string(b), "\nPathChanged="+filepath.Join(root, "tokens", "50%%d")+"\n") {
			t.Errorf("profile %q: drop-in %q (%v)", profile, b, err)
		}
	}
}

// TestUninstallProfile: PROFILE=prod disables prod's timer and path unit,
// stops its walk and removes its drop-ins; its env file, the templates,
// the notifier, the binary and the other profile stay. PROFILE=all then
// removes every profile's instances, the templates and the install
// without a profile, and keeps every env file.
func TestUninstallProfile(t *testing.T) {
	root := t.TempDir()
	p := PathsUnder(root)
	sc := &fakeSystemctl{}
	for _, n := range []string{"prod", "staging"} {
		if _, err := InstallProfile(Options{Root: root, Binary: []byte("b"), Units: profileUnits(t), Systemctl: sc.run, Profile: n,
			Getenv: getenv("VAULT_ADDR", "http://"+n, "VTR_TOKEN_FILE", "/srv/"+n)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Install(Options{Root: root, Binary: []byte("b"), Units: repoUnits(t), Systemctl: sc.run, Getenv: getenv("VAULT_ADDR", "http://v")}); err != nil {
		t.Fatal(err)
	}
	all, _ := UnitsFrom(filepath.Join("..", "..", "systemd"))
	sc.calls = nil
	if _, err := UninstallProfile(Options{Root: root, Units: profileUnits(t), Systemctl: sc.run, Profile: "prdo"}); err == nil ||
		!strings.Contains(err.Error(), "PROFILE=prdo: no such profile here") || !strings.Contains(err.Error(), "prod, staging are installed") || len(sc.calls) != 0 {
		t.Fatalf("PROFILE=prdo (a typo) uninstall: %v, systemctl %v", err, sc.calls)
	}
	r, err := UninstallProfile(Options{Root: root, Units: profileUnits(t), Systemctl: sc.run, Profile: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"disable --now vault-token-renew@prod.timer", "disable --now vault-token-renew@prod.path", "stop vault-token-renew-sweep@prod.service", "daemon-reload"}
	if !reflect.DeepEqual(sc.calls, want) || len(r.Changed) != 8 {
		t.Fatalf("PROFILE=prod uninstall: systemctl %v (want %v), removed %v", sc.calls, want, r.Changed)
	}
	for _, f := range []string{ProfileEnvFile(root, "prod"), p.Binary, filepath.Join(p.UnitDir, "vault-token-renew@.service"), filepath.Join(p.UnitDir, NotifyUnit),
		filepath.Join(p.UnitDir, Profile("staging").pathDropIn())} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("PROFILE=prod uninstall removed %s", f)
		}
	}
	sc.calls = nil
	if _, err := UninstallProfile(Options{Root: root, Units: all, Systemctl: sc.run, Profile: ProfileAll}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"disable --now vault-token-renew@staging.timer", "disable --now vault-token-renew@prod.timer", "disable --now " + Timer, "daemon-reload"} {
		if !strings.Contains(strings.Join(sc.calls, "\n"), c) {
			t.Errorf("PROFILE=all: no systemctl %s in %v", c, sc.calls)
		}
	}
	left, _ := filepath.Glob(filepath.Join(p.UnitDir, "*"))
	if _, err := os.Stat(p.Binary); err == nil || len(left) != 0 {
		t.Errorf("PROFILE=all left the binary or units: %v", left)
	}
	for _, f := range []string{ProfileEnvFile(root, "prod"), ProfileEnvFile(root, "staging"), p.EnvFile} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("PROFILE=all removed the env file %s", f)
		}
	}
}

// TestUninstallWithoutAProfileKeepsWhatProfilesRun: while a profile's
// templates are installed, the plain uninstall removes its own units and
// keeps the binary and the notifier the profiles run.
func TestUninstallWithoutAProfileKeepsWhatProfilesRun(t *testing.T) {
	root := t.TempDir()
	p := PathsUnder(root)
	if _, err := Install(Options{Root: root, Binary: []byte("b"), Units: repoUnits(t), Getenv: getenv("VAULT_ADDR", "http://v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := InstallProfile(Options{Root: root, Binary: []byte("b"), Units: profileUnits(t), Profile: "prod", Getenv: getenv("VAULT_ADDR", "http://p", "VTR_TOKEN_FILE", "/srv/p")}); err != nil {
		t.Fatal(err)
	}
	r, err := Uninstall(Options{Root: root, Units: repoUnits(t)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(p.UnitDir, NotifyUnit), p.Binary}; !reflect.DeepEqual(r.Kept, want) {
		t.Fatalf("kept %v, want %v", r.Kept, want)
	}
	if _, err := os.Stat(filepath.Join(p.UnitDir, Timer)); err == nil {
		t.Error("the plain timer is still there")
	}
}

// TestInstalledProfiles: PROFILE=all finds a profile by its env file, and
// one whose env file went by hand by what install left in the unit dir.
func TestInstalledProfiles(t *testing.T) {
	root := t.TempDir()
	unitDir := PathsUnder(root).UnitDir
	for _, f := range []string{ProfileEnvFile(root, "a"), ProfileEnvFile(root, "Bad"), filepath.Join(unitDir, "timers.target.wants", "vault-token-renew@b-1.timer"),
		filepath.Join(unitDir, "vault-token-renew@c_2.path.d", "token-file.conf"), filepath.Join(unitDir, "vault-token-renew-notify@vault-token-renew-sweep@d.service.d", "profile.conf"),
		filepath.Join(unitDir, "vault-token-renew-notify@vault-token-renew@e.path.service.d", "profile.conf")} {
		os.MkdirAll(filepath.Dir(f), 0o700)
		os.WriteFile(f, nil, 0o600)
	}
	got, err := installedProfiles(root)
	if want := []string{"a", "b-1", "c_2", "e"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("installed profiles %v (%v), want %v", got, err, want)
	}
}

// TestProfileUnitsVerify checks a profile's instances with systemd-analyze,
// installed as an operator would have them.
func TestProfileUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	root := t.TempDir()
	true_, _ := exec.LookPath("true")
	bin, _ := os.ReadFile(true_)
	if _, err := InstallProfile(Options{Root: root, Binary: bin, Units: profileUnits(t), Profile: "eu-west_2", Getenv: getenv("VAULT_ADDR", "http://v", "VTR_TOKEN_FILE", filepath.Join(root, "t"))}); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(root, "run")
	os.Mkdir(run, 0o700)
	p := PathsUnder(root)
	var units []string
	for _, u := range []string{"vault-token-renew@eu-west_2.service", "vault-token-renew@eu-west_2.timer", "vault-token-renew@eu-west_2.path", "vault-token-renew-sweep@eu-west_2.service", "vault-token-renew-notify@vault-token-renew@eu-west_2.service"} {
		units = append(units, filepath.Join(p.UnitDir, u))
	}
	cmd := exec.Command(sa, append([]string{"verify", "--user"}, units...)...)
	cmd.Env = append(os.Environ(), "HOME="+root, "XDG_RUNTIME_DIR="+run, "XDG_CONFIG_HOME="+filepath.Join(root, ".config"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
