//go:build integration

package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/install"
	"github.com/devvm/vault-token-renew/internal/runstate"
)

// installProfile runs the installer as `PROFILE=name go tool mage install`
// does (install.FromBuild: the built binary, the repo's systemd/) into
// wizard's home, with x's server as VAULT_ADDR and env as the installing
// shell's other settings. It returns what the installer printed.
func (b *box) installProfile(name, healOnLogin string, x *h, env ...string) (string, error) {
	b.x.t.Helper()
	vars := map[string]string{"VAULT_ADDR": x.f.Server.Addr}
	for i := 0; i+1 < len(env); i += 2 {
		vars[env[i]] = env[i+1]
	}
	var out bytes.Buffer
	err := install.FromBuild(&out, install.Options{Root: b.home, Getenv: func(k string) string { return vars[k] },
		Systemctl: b.chownThen(b.systemctl), HealOnLogin: healOnLogin, Profile: name}, binary, "../systemd", "integration")
	b.chown()
	b.x.t.Logf("PROFILE=%s install → %v\n%s", name, err, x.redact(out.String()))
	return out.String(), err
}

// unitLines are the lines unit logged that start with one of prefixes.
func (b *box) unitLines(unit string, prefixes ...string) []string {
	var lines []string
	for _, l := range strings.Split(b.sh("journalctl --no-pager -o cat _SYSTEMD_USER_UNIT="+unit), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				lines = append(lines, l)
			}
		}
	}
	return lines
}

// profileState is profile name's state file, as its runs left it.
func (b *box) profileState(name string) runstate.State {
	b.x.t.Helper()
	st, err := runstate.Load(filepath.Join(b.home, ".local", "state", "vault-token-renew", "profiles", name, "state.json"))
	if err != nil {
		b.x.t.Fatalf("profile %s's state: %v", name, err)
	}
	return st
}

// TestProfilesUnderSystemd: two profiles, prod and staging, on two real dev
// Vaults, each with its own token file, installed one after the other with
// the real installer into a real systemd user manager. Both timers are
// listed; each profile's walk and run are its own unit, with its own
// journal lines and its own state file under profiles/NAME/, and the state
// of the install without a profile is never written. Heal on login
// watches staging's own file through its instance's drop-in; a DRIFT of
// staging fails its unit and its notifier (vault-token-renew-notify@
// vault-token-renew@staging) runs staging's notify command, with
// VTR_PROFILE=staging. A third profile on prod's token file is refused;
// a profile without its env file fails loudly. Uninstalling prod leaves
// staging running; PROFILE=all leaves nothing enabled.
func TestProfilesUnderSystemd(t *testing.T) {
	prod, staging := newH(t), newH(t)
	b := newBox(prod)
	files := map[string]string{"prod": boxHome + "/tokens/prod", "staging": boxHome + "/tokens/staging"}
	for _, x := range []*h{prod, staging} {
		x.mu.Lock()
		x.files = append(x.files, filepath.Join(b.home, "tokens", "prod"), filepath.Join(b.home, "tokens", "staging"))
		x.mu.Unlock()
	}
	toks := map[string]string{}
	for name, x := range map[string]*h{"prod": prod, "staging": staging} {
		tok := x.periodic(name + " periodic")
		prod.keep(name+" periodic", tok)
		staging.keep(name+" periodic", tok)
		b.login(files[name], tok)
		toks[name] = tok.Accessor
	}
	for _, p := range []struct {
		name, heal string
		x          *h
	}{{"prod", "", prod}, {"staging", "1", staging}} {
		out, err := b.installProfile(p.name, p.heal, p.x, "VTR_TOKEN_FILE", files[p.name])
		if err != nil {
			t.Fatalf("PROFILE=%s install: %v", p.name, err)
		}
		wantIn(t, "PROFILE="+p.name+" install", out, "install: profile "+p.name+" keeps its token in "+files[p.name]+" (VTR_TOKEN_FILE)")
	}
	timers := b.user("systemctl --user list-timers --all --no-pager")
	t.Logf("systemctl --user list-timers --all:\n%s", timers)
	for _, name := range []string{"prod", "staging"} {
		wantIn(t, "list-timers", timers, "vault-token-renew@"+name+".timer")
		wantIn(t, "list-timers", timers, "vault-token-renew@"+name+".service")
	}
	t.Run("each profile runs as itself", func(t *testing.T) { profilesRunApart(t, b, toks) })
	t.Run("heal on login watches staging's own file", func(t *testing.T) { profileHealOnLogin(t, b, staging, files["staging"]) })
	t.Run("a failing profile notifies with its own settings", func(t *testing.T) { profileNotifies(t, b, staging, files["staging"]) })
	t.Run("a third profile on prod's token file is refused", func(t *testing.T) { profileRefused(t, b, staging, files["prod"]) })
	t.Run("a profile without its env file fails loudly", func(t *testing.T) { profileWithoutEnvFile(t, b) })
	t.Run("uninstall: one profile, then all", func(t *testing.T) { profilesUninstalled(t, b) })
	journal := b.sh("journalctl --no-pager -o export")
	for _, x := range []*h{prod, staging} {
		x.learnFiles()
		x.assertNoSecretIn(journal)
	}
}

// profilesRunApart: each profile's walk (started by its install) and run
// are its own units, with their own lines and their own state file.
func profilesRunApart(t *testing.T, b *box, toks map[string]string) {
	for _, name := range []string{"prod", "staging"} {
		walk := "vault-token-renew-sweep@" + name + ".service"
		b.waitFor("the walk of "+name, func() bool {
			return len(b.unitLines(walk, "sweep:", "FAIL:")) > 0 && b.user("systemctl --user is-active "+walk) != "activating"
		})
		t.Logf("%s: %v", walk, b.unitLines(walk, "sweep:", "FAIL:"))
		runs := b.timerFires(t, name)
		t.Logf("vault-token-renew@%s.service: %v", name, runs)
		if len(runs) != 1 || !strings.HasPrefix(runs[0], "OK: renewed periodic token") {
			t.Fatalf("profile %s's run: %v, want one OK", name, runs)
		}
		wantIn(t, name+"'s OK line", runs[0], "accessor="+toks[name])
		st := b.profileState(name)
		if st.Profile != name || st.Accessor != toks[name] || st.Outcome != "ok" {
			t.Errorf("profile %s's state: profile %q accessor %s outcome %s; want %s, %s, ok", name, st.Profile, st.Accessor, st.Outcome, name, toks[name])
		}
	}
	if _, err := os.Stat(filepath.Join(b.home, ".local", "state", "vault-token-renew", "state.json")); err == nil {
		t.Error("a profile's run wrote the state of the install without a profile")
	}
	if runs := b.runs(); len(runs) != 0 {
		t.Errorf("vault-token-renew.service (no profile) ran: %v", runs)
	}
	// Every run above ran inside the templates' sandbox, the plain units'.
	for _, u := range []string{"vault-token-renew@prod.service", "vault-token-renew-sweep@prod.service"} {
		e := b.exposure(u)
		t.Logf("systemd-analyze --user security %s: %.1f", u, e)
		if e > 6.5 {
			t.Errorf("%s rates %.1f; want at most 6.5", u, e)
		}
	}
}

// timerFires makes profile name's timer (the installed one, with a
// drop-in that only brings its time forward) elapse once, and returns the
// closing lines of the runs that came of it: its own instance's, never
// another profile's. The timer is stopped before its drop-in is read and
// started after (a daemon-reload of a waiting timer would arm the new time
// at once, and the start again: two runs), and the same way back, so it is
// daily again.
func (b *box) timerFires(t *testing.T, name string) []string {
	t.Helper()
	timer, service := "vault-token-renew@"+name+".timer", "vault-token-renew@"+name+".service"
	closing := func() []string { return b.unitLines(service, "OK:", "HEALED:", "DRIFT:", "FAIL:") }
	before := len(closing())
	dir := filepath.Join(b.home, ".config", "systemd", "user", timer+".d")
	restart := func(edit func() error) {
		t.Helper()
		if err := b.systemctl("stop", timer); err != nil {
			t.Fatalf("systemctl --user stop %s: %v", timer, err)
		}
		if err := edit(); err != nil {
			t.Fatal(err)
		}
		b.chown()
		for _, args := range [][]string{{"daemon-reload"}, {"start", timer}} {
			if err := b.systemctl(args...); err != nil {
				t.Fatalf("systemctl --user %v: %v", args, err)
			}
		}
	}
	soon := "[Timer]\nOnCalendar=\nRandomizedDelaySec=0\nAccuracySec=1s\nOnActiveSec=1s\n"
	restart(func() error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "soon.conf"), []byte(soon), 0o644)
	})
	back := func() { restart(func() error { return os.RemoveAll(dir) }) }
	t.Cleanup(func() {
		if _, err := os.Stat(dir); err == nil {
			back() // the wait failed: leave the timer daily for the steps after
		}
	})
	b.waitFor(timer+" starting "+service, func() bool {
		return len(closing()) > before && b.user("systemctl --user is-active "+service) != "activating"
	})
	back()
	t.Logf("%s fired: %s", timer, b.user("systemctl --user show -p LastTriggerUSec "+timer))
	return closing()[before:]
}

// profileHealOnLogin: staging was installed with HEAL_ON_LOGIN=1; its path
// unit watches staging's token file (the instance's drop-in), and a login
// there is healed by staging's service, tagged profile=staging.
func profileHealOnLogin(t *testing.T, b *box, staging *h, file string) {
	path := "vault-token-renew@staging.path"
	if got := b.user("systemctl --user is-active " + path); got != "active" {
		t.Fatalf("%s is %q, want active", path, got)
	}
	if got := b.user("systemctl --user show -p Paths --value " + path); !strings.Contains(got, file) {
		t.Fatalf("%s watches %q, want %s", path, got, file)
	}
	login, err := staging.f.MintFake(staging.ctx, "fake-oidc", time.Hour, "vault-admin", "sops-admin")
	if err != nil {
		t.Fatal(err)
	}
	staging.keep("staging login", login)
	b.x.keep("staging login", login)
	b.login(file, login)
	for start := time.Now(); ; time.Sleep(250 * time.Millisecond) {
		info, err := staging.f.LookupSecret(staging.ctx, strings.TrimSpace(string(b.file(file))))
		if err == nil && info.DisplayName == "token-devvm-wizard" {
			t.Logf("staging healed %s after the login; meta %v", time.Since(start).Round(100*time.Millisecond), info.Meta)
			if info.Meta["profile"] != "staging" {
				t.Errorf("staging's healed token is tagged profile=%q, want staging", info.Meta["profile"])
			}
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("staging's file not healed 30s after a login; runs %v", b.unitLines("vault-token-renew@staging.service", "OK:", "HEALED:", "DRIFT:", "FAIL:"))
		}
	}
	b.waitFor("staging's run to end", func() bool {
		return b.user("systemctl --user is-active vault-token-renew@staging.service") != "activating"
	})
}

// profileNotifies: a weak login in staging's file fails staging's unit
// (DRIFT); the notifier instance named after it runs staging's own notify
// command (an operator's line in staging.env) with VTR_PROFILE=staging.
func profileNotifies(t *testing.T, b *box, staging *h, file string) {
	env := filepath.Join(b.home, ".config", "vault-token-renew", "staging.env")
	f, err := os.OpenFile(env, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("VTR_NOTIFY_COMMAND=echo notified-profile-$VTR_PROFILE-outcome-$VTR_OUTCOME\n")
	f.Close()
	weak := staging.weak()
	b.x.keep("staging weak", weak)
	b.user("systemctl --user reset-failed vault-token-renew@staging.service")
	b.login(file, weak)
	notifier := "vault-token-renew-notify@vault-token-renew@staging.service"
	for deadline := time.Now().Add(30 * time.Second); len(b.unitLines(notifier, "notify: sent")) == 0; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("staging's notifier sent nothing 30s after a weak login; the journal:\n%s",
				b.sh("journalctl --no-pager -o short-precise --since=-40s | grep -v audit | tail -60"))
		}
	}
	wantIn(t, "the notifier's line", b.unitLines(notifier, "notify: sent")[0], "unit=vault-token-renew@staging")
	// The command's own output: journald may not tie the line of a process
	// that exits at once to its unit, so it is found by the notifier's
	// identifier.
	said := b.sh("journalctl --no-pager -o cat -t vault-token-renew-notify")
	wantIn(t, "staging's notify command", said, "notified-profile-staging-outcome-drift")
	if s := b.user("systemctl --user is-failed vault-token-renew@staging.service"); s != "failed" {
		t.Errorf("vault-token-renew@staging.service is %q after a DRIFT, want failed", s)
	}
	if b.profileState("prod").Outcome != "ok" {
		t.Error("staging's DRIFT changed prod's state")
	}
	b.user("systemctl --user disable --now vault-token-renew@staging.path")
}

// profileRefused: a third profile whose token file is prod's is refused
// with both names and the file, and nothing of it is installed.
func profileRefused(t *testing.T, b *box, x *h, prodFile string) {
	out, err := b.installProfile("dev", "", x, "VTR_TOKEN_FILE", prodFile)
	if err == nil {
		t.Fatalf("PROFILE=dev on prod's token file was installed:\n%s", out)
	}
	for _, want := range []string{`profile "dev"`, `profile "prod"`, prodFile, "VTR_TOKEN_FILE"} {
		wantIn(t, "the refusal", err.Error(), want)
	}
	if _, err := os.Stat(filepath.Join(b.home, ".config", "vault-token-renew", "dev.env")); err == nil {
		t.Error("the refused profile dev has an env file")
	}
	if got := b.user("systemctl --user is-enabled vault-token-renew@dev.timer"); got == "enabled" {
		t.Error("the refused profile dev's timer is enabled")
	}
}

// profileWithoutEnvFile: an instance whose NAME.env is missing does not
// run on anyone's settings: the unit fails before the binary starts.
func profileWithoutEnvFile(t *testing.T, b *box) {
	b.user("systemctl --user start vault-token-renew@ghost.service")
	if s := b.user("systemctl --user is-failed vault-token-renew@ghost.service"); s != "failed" {
		t.Fatalf("vault-token-renew@ghost.service (no ghost.env) is %q, want failed", s)
	}
	wantIn(t, "ghost's unit journal", b.sh("journalctl --no-pager -o cat _SYSTEMD_USER_UNIT=vault-token-renew@ghost.service + UNIT=vault-token-renew@ghost.service + USER_UNIT=vault-token-renew@ghost.service"), "Failed to load environment files")
	b.user("systemctl --user reset-failed")
}

// profilesUninstalled: PROFILE=prod disables prod's timer and keeps
// staging's; PROFILE=all leaves no instance enabled and no unit file.
func profilesUninstalled(t *testing.T, b *box) {
	var out bytes.Buffer
	o := install.Options{Root: b.home, Systemctl: b.systemctl, Profile: "prod"}
	if err := install.UninstallUnits(&out, o, "../systemd"); err != nil {
		t.Fatalf("PROFILE=prod uninstall: %v\n%s", err, out.String())
	}
	if got := b.user("systemctl --user is-enabled vault-token-renew@prod.timer"); got == "enabled" {
		t.Error("prod's timer is still enabled")
	}
	if got := b.user("systemctl --user is-enabled vault-token-renew@staging.timer"); got != "enabled" {
		t.Errorf("PROFILE=prod uninstall left staging's timer %q", got)
	}
	o.Profile = install.ProfileAll
	if err := install.UninstallUnits(&out, o, "../systemd"); err != nil {
		t.Fatalf("PROFILE=all uninstall: %v\n%s", err, out.String())
	}
	t.Logf("uninstall:\n%s", out.String())
	if got := b.user("systemctl --user list-timers --all --no-pager"); strings.Contains(got, "vault-token-renew") {
		t.Errorf("after PROFILE=all uninstall:\n%s", got)
	}
	if left, _ := filepath.Glob(filepath.Join(b.home, ".config", "systemd", "user", "*vault-token-renew*")); len(left) != 0 {
		t.Errorf("PROFILE=all uninstall left %v", left)
	}
}
