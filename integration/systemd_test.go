//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devvm/vault-token-renew/internal/devvault"
	"github.com/devvm/vault-token-renew/internal/install"
	"github.com/devvm/vault-token-renew/internal/ledger"
	"github.com/devvm/vault-token-renew/internal/runstate"
)

// The systemd tests boot Debian with systemd as PID 1 in a container (the
// approach of the workplace's tools/systemd-box), give user wizard a
// lingering user manager, and install the project's units into wizard's
// home (a directory of the test's, mounted at /home/wizard) with the real
// installer, whose systemctl calls go to that user manager. The dev Vault
// runs on the host's loopback, which the box shares. What systemd decides
// (what a path unit triggers, a trigger limit, OnFailure=) is then decided
// by systemd.

const (
	boxImage = "vtr-test/systemd-box:bookworm"
	boxUID   = 1000
	boxHome  = "/home/wizard"
)

type box struct {
	x    *h
	id   string
	home string // wizard's home on the host side of the mount
}

// newBox boots the box, or skips outside CI where this machine cannot
// (no docker, not root).
func newBox(x *h) *box {
	t := x.t
	t.Helper()
	need := func(ok bool, why string) {
		if ok {
			return
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("the systemd tests need %s", why)
		}
		t.Skipf("not run: the systemd tests need %s", why)
	}
	need(os.Geteuid() == 0, "root (a privileged container, debootstrap)")
	need(exec.Command("docker", "info").Run() == nil, "a docker daemon")
	if exec.Command("docker", "image", "inspect", boxImage).Run() != nil {
		t.Logf("building %s with debootstrap (a few minutes, once)", boxImage)
		if out, err := exec.Command("bash", "testdata/systemd-box-image.sh", boxImage).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", boxImage, err, out)
		}
	}
	home := t.TempDir()
	b := &box{x: x, home: home}
	x.mu.Lock()
	x.files = append(x.files, filepath.Join(home, ".vault-token"), filepath.Join(home, "tokens", "vault-token"))
	x.mu.Unlock()
	args := []string{"run", "-d", "--network", "host", "--tmpfs", "/run", "--tmpfs", "/run/lock",
		"-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host", "-e", "container=docker", "--stop-signal", "RTMIN+3",
		"-v", home + ":" + boxHome, "--label", "vtr-test.systemd=1"}
	// --privileged asks for every capability; where the host's bounding
	// set lacks one (CAP_SYS_RESOURCE here) ask for all but those.
	args = append(args, capsArgs()...)
	out, err := exec.Command("docker", append(args, boxImage, "/sbin/init")...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	b.id = strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", b.id).Run() })
	b.waitFor("the system manager", func() bool {
		s := b.sh("systemctl is-system-running")
		return s == "running" || s == "degraded"
	})
	b.must("useradd -M -d " + boxHome + " -s /bin/bash -u " + strconv.Itoa(boxUID) + " wizard")
	b.chown()
	b.must("loginctl enable-linger wizard")
	b.waitFor("wizard's user manager", func() bool {
		s := b.user("systemctl --user is-system-running")
		return s == "running" || s == "degraded"
	})
	return b
}

// capsArgs is --privileged, or every capability but those this host's
// bounding set lacks.
func capsArgs() []string {
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			bnd, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if bnd>>24&1 == 1 { // CAP_SYS_RESOURCE
				return []string{"--privileged"}
			}
			return []string{"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"}
		}
	}
	return []string{"--privileged"}
}

// sh runs a shell command in the box as root and returns its trimmed
// output; user runs it as wizard, with the user manager's bus.
func (b *box) sh(cmd string) string {
	out, _ := exec.Command("docker", "exec", b.id, "sh", "-c", cmd).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func (b *box) user(cmd string) string {
	return b.sh(fmt.Sprintf("runuser -u wizard -- env XDG_RUNTIME_DIR=/run/user/%d DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/%d/bus %s", boxUID, boxUID, cmd))
}

func (b *box) must(cmd string) {
	b.x.t.Helper()
	if out, err := exec.Command("docker", "exec", b.id, "sh", "-c", cmd).CombinedOutput(); err != nil {
		b.x.t.Fatalf("box: %s: %v\n%s", cmd, err, out)
	}
}

// systemctl is the installer's view of wizard's user manager.
func (b *box) systemctl(args ...string) error {
	argv := append([]string{"exec", b.id, "runuser", "-u", "wizard", "--", "env",
		fmt.Sprintf("XDG_RUNTIME_DIR=/run/user/%d", boxUID), fmt.Sprintf("DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/%d/bus", boxUID),
		"systemctl", "--user"}, args...)
	cmd := exec.Command("docker", argv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func (b *box) waitFor(what string, ok func() bool) {
	b.x.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if ok() {
			return
		}
	}
	b.x.t.Fatalf("box: %s did not come up", what)
}

// chown gives wizard what the host wrote into the home, and touches
// nothing wizard owns already: a chown of the token file is a change the
// path unit reacts to.
func (b *box) chown() {
	b.x.t.Helper()
	if err := filepath.Walk(b.home, func(p string, fi os.FileInfo, err error) error {
		if st, ok := fi.Sys().(*syscall.Stat_t); err == nil && ok && st.Uid != boxUID {
			err = os.Lchown(p, boxUID, boxUID)
		}
		return err
	}); err != nil {
		b.x.t.Fatal(err)
	}
}

// install runs the real installer into wizard's home, with these
// settings as the installing shell's.
func (b *box) install(healOnLogin string, env ...string) install.Report {
	b.x.t.Helper()
	bin, err := os.ReadFile(binary)
	if err != nil {
		b.x.t.Fatal(err)
	}
	units, err := install.UnitsFrom("../systemd")
	if err != nil {
		b.x.t.Fatal(err)
	}
	vars := map[string]string{"VAULT_ADDR": b.x.f.Server.Addr}
	for i := 0; i+1 < len(env); i += 2 {
		vars[env[i]] = env[i+1]
	}
	r, err := install.Install(install.Options{Root: b.home, Binary: bin, Units: units, Getenv: func(k string) string { return vars[k] },
		Systemctl: b.chownThen(b.systemctl), HealOnLogin: healOnLogin})
	if err != nil {
		b.x.t.Fatalf("install: %v", err)
	}
	b.chown()
	return r
}

// chownThen hands wizard the files before each systemctl call, so that
// the user manager reads them as wizard's own.
func (b *box) chownThen(systemctl func(...string) error) func(...string) error {
	return func(args ...string) error { b.chown(); return systemctl(args...) }
}

// login writes tok over the token file at path (in the box) as `vault
// login` does: a temp file beside it, renamed over it.
func (b *box) login(path string, tok devvault.Token) {
	b.x.t.Helper()
	host := filepath.Join(b.home, strings.TrimPrefix(path, boxHome))
	if err := os.MkdirAll(filepath.Dir(host), 0o700); err != nil {
		b.x.t.Fatal(err)
	}
	tmp := host + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok.Secret), 0o600); err != nil {
		b.x.t.Fatal(err)
	}
	os.Lchown(tmp, boxUID, boxUID)
	os.Lchown(filepath.Dir(host), boxUID, boxUID)
	if err := os.Rename(tmp, host); err != nil {
		b.x.t.Fatal(err)
	}
}

func (b *box) file(path string) []byte {
	b.x.t.Helper()
	data, err := os.ReadFile(filepath.Join(b.home, strings.TrimPrefix(path, boxHome)))
	if err != nil {
		b.x.t.Fatal(err)
	}
	return data
}

// runs are the closing lines the service has logged so far.
func (b *box) runs() []string {
	out := b.sh("journalctl --no-pager -o cat _SYSTEMD_USER_UNIT=vault-token-renew.service")
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		for _, p := range []string{"OK:", "HEALED:", "DRIFT:", "FAIL:"} {
			if strings.HasPrefix(l, p) {
				lines = append(lines, l)
			}
		}
	}
	return lines
}

// healedWithin waits for the token file at path to hold our periodic token.
func (b *box) healedWithin(path string, d time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < d {
		if info, err := b.x.f.LookupSecret(b.x.ctx, strings.TrimSpace(string(b.file(path)))); err == nil && info.DisplayName == "token-devvm-wizard" {
			return time.Since(start), true
		}
		time.Sleep(250 * time.Millisecond)
	}
	return time.Since(start), false
}

// settled waits until no run has been logged for quiet, and returns the
// runs logged since from.
func (b *box) settled(from int, quiet time.Duration) []string {
	n, since := len(b.runs()), time.Now()
	for deadline := time.Now().Add(2 * time.Minute); time.Since(since) < quiet && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if m := len(b.runs()); m != n {
			n, since = m, time.Now()
		}
	}
	return b.runs()[from:]
}

func (b *box) adminLogin(label string) devvault.Token {
	b.x.t.Helper()
	tok, err := b.x.f.MintFake(b.x.ctx, "fake-oidc", time.Hour, "vault-admin", "sops-admin")
	if err != nil {
		b.x.t.Fatal(err)
	}
	return b.x.keep(label, tok)
}

// TestHealOnLoginUnderSystemd: the path unit, under a real systemd user
// manager. Opted in, a login is healed within seconds, by one run (the
// heal's own write sets off no second heal, at most a quiet OK); a burst
// of writes is a burst of a few runs; a weak clobber fails the unit and
// fires OnFailure= within seconds and leaves the file byte-identical; an
// upgrade keeps the operator's choice, HEAL_ON_LOGIN=0 turns it off; a
// token file elsewhere is watched through the installer's drop-in; and
// uninstalling leaves no enabled unit behind.
func TestHealOnLoginUnderSystemd(t *testing.T) {
	x := newH(t)
	b := newBox(x)
	tokenFile := boxHome + "/.vault-token"
	b.login(tokenFile, x.periodic("box periodic"))
	r := b.install("1")
	if got := b.user("systemctl --user is-enabled " + install.PathUnit); got != "enabled" {
		t.Fatalf("HEAL_ON_LOGIN=1: the path unit is %q, want enabled (install report %+v)", got, r)
	}
	if got := b.user("systemctl --user is-active " + install.PathUnit); got != "active" {
		t.Fatalf("HEAL_ON_LOGIN=1: the path unit is %q, want active", got)
	}

	t.Run("a login is healed within seconds, by one run", func(t *testing.T) { healOnLoginOneRun(t, b, tokenFile) })
	t.Run("a burst of writes is a burst of a few runs", func(t *testing.T) { healOnLoginBurst(t, b, tokenFile) })
	t.Run("a weak clobber fails the unit and notifies within seconds", func(t *testing.T) { healOnLoginWeakClobber(t, b, tokenFile) })
	t.Run("an upgrade keeps the choice; HEAL_ON_LOGIN=0 turns it off", func(t *testing.T) { healOnLoginUpgrade(t, b, tokenFile) })
	t.Run("a token file elsewhere is watched through the drop-in", func(t *testing.T) { healOnLoginDropIn(t, b) })
	t.Run("uninstall leaves no enabled unit behind", func(t *testing.T) { healOnLoginUninstall(t, b) })
	journal := b.sh("journalctl --no-pager -o export")
	x.learnFiles()
	x.assertNoSecretIn(journal)
}

// healOnLoginOneRun: a login is healed within seconds, by one run (the
// heal's own write sets off no second heal, at most a quiet OK).
func healOnLoginOneRun(t *testing.T, b *box, tokenFile string) {
	from := len(b.runs())
	b.login(tokenFile, b.adminLogin("login 1"))
	took, ok := b.healedWithin(tokenFile, 30*time.Second)
	if !ok {
		t.Fatalf("after %s the file does not hold our periodic token; runs %v", took, b.runs()[from:])
	}
	runs := b.settled(from, 10*time.Second)
	t.Logf("healed %s after the login; runs %v", took.Round(100*time.Millisecond), runs)
	if len(runs) < 1 || len(runs) > 2 || !strings.HasPrefix(runs[0], "HEALED:") {
		t.Fatalf("runs after the login %v, want one HEALED (and at most a quiet OK)", runs)
	}
	if len(runs) == 2 && !strings.HasPrefix(runs[1], "OK:") {
		t.Fatalf("the run after the heal is %q, want a quiet OK", runs[1])
	}
}

// healOnLoginBurst: a burst of writes is a burst of a few runs.
func healOnLoginBurst(t *testing.T, b *box, tokenFile string) {
	from := len(b.runs())
	for i := 0; i < 20; i++ {
		b.login(tokenFile, b.adminLogin(fmt.Sprintf("burst %d", i)))
		time.Sleep(100 * time.Millisecond)
	}
	if _, ok := b.healedWithin(tokenFile, 30*time.Second); !ok {
		t.Fatal("the file does not hold our periodic token after the burst")
	}
	runs := b.settled(from, 10*time.Second)
	t.Logf("20 writes in 2s made %d runs: %v", len(runs), runs)
	if len(runs) < 1 || len(runs) > 3 {
		t.Fatalf("20 writes in 2s made %d runs, want 1 to 3", len(runs))
	}
}

// healOnLoginWeakClobber: a weak clobber fails the unit, fires OnFailure=
// within seconds and leaves the file byte-identical; the next login heals.
func healOnLoginWeakClobber(t *testing.T, b *box, tokenFile string) {
	x := b.x
	notifyBefore := b.user("systemctl --user show -p InvocationID --value vault-token-renew-notify@vault-token-renew.service")
	b.login(tokenFile, x.weak())
	before := b.file(tokenFile)
	start := time.Now()
	b.waitFor("the failed unit", func() bool {
		return b.user("systemctl --user is-failed vault-token-renew.service") == "failed"
	})
	b.waitFor("the notifier", func() bool {
		id := b.user("systemctl --user show -p InvocationID --value vault-token-renew-notify@vault-token-renew.service")
		return id != "" && id != notifyBefore
	})
	took := time.Since(start)
	t.Logf("failed and notified %s after the write", took.Round(100*time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("the alert took %s, want seconds", took)
	}
	if !strings.Contains(b.sh("journalctl --no-pager -o cat -p err _SYSTEMD_USER_UNIT=vault-token-renew.service"), "DRIFT: foreign token dn=token-kubernetes-woodpecker-default") {
		t.Error("no DRIFT at error priority in the journal")
	}
	if !bytes.Equal(b.file(tokenFile), before) {
		t.Error("the token file changed on a triggered DRIFT")
	}
	// Still healable: the next login heals.
	b.user("systemctl --user reset-failed vault-token-renew.service")
	b.login(tokenFile, b.adminLogin("login after drift"))
	if _, ok := b.healedWithin(tokenFile, 30*time.Second); !ok {
		t.Fatal("a login after the DRIFT was not healed")
	}
	b.settled(0, 5*time.Second)
}

// healOnLoginUpgrade: an upgrade keeps the operator's choice;
// HEAL_ON_LOGIN=0 turns heal on login off.
func healOnLoginUpgrade(t *testing.T, b *box, tokenFile string) {
	b.install("")
	if got := b.user("systemctl --user is-enabled " + install.PathUnit); got != "enabled" {
		t.Fatalf("a plain reinstall left the path unit %q, want enabled", got)
	}
	b.install("0")
	b.install("")
	if got := b.user("systemctl --user is-enabled " + install.PathUnit); got != "disabled" {
		t.Fatalf("after HEAL_ON_LOGIN=0 and a plain reinstall the path unit is %q, want disabled", got)
	}
	if got := b.user("systemctl --user is-active " + install.PathUnit); got == "active" {
		t.Fatal("HEAL_ON_LOGIN=0 left the path unit watching")
	}
	from := len(b.settled(0, 5*time.Second))
	b.login(tokenFile, b.adminLogin("login while off"))
	if runs := b.settled(from, 8*time.Second); len(runs) != 0 {
		t.Fatalf("with heal on login off a login started runs %v\n%s\n%s", runs,
			b.user("systemctl --user status --no-pager "+install.PathUnit),
			b.sh("journalctl --no-pager -o short-precise --since=-40s | grep -v audit | tail -40"))
	}
}

// healOnLoginDropIn: a token file elsewhere is watched through the
// installer's drop-in.
func healOnLoginDropIn(t *testing.T, b *box) {
	x := b.x
	moved := boxHome + "/tokens/vault-token"
	b.login(moved, x.periodic("moved periodic"))
	r := b.install("1", "VTR_TOKEN_FILE", moved)
	if r.Watches != moved {
		t.Fatalf("install says heal on login watches %q, want %s", r.Watches, moved)
	}
	from := len(b.runs())
	b.login(moved, b.adminLogin("login to the moved file"))
	if took, ok := b.healedWithin(moved, 30*time.Second); !ok {
		t.Fatalf("after %s the moved file is not healed; runs %v", took, b.runs()[from:])
	}
}

// healOnLoginUninstall: uninstalling leaves no enabled unit behind.
func healOnLoginUninstall(t *testing.T, b *box) {
	units, _ := install.UnitsFrom("../systemd")
	if _, err := install.Uninstall(install.Options{Root: b.home, Units: units, Systemctl: b.systemctl}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{install.PathUnit, install.Timer} {
		if got := b.user("systemctl --user is-enabled " + u); got == "enabled" {
			t.Errorf("%s is still enabled after uninstall", u)
		}
		if got := b.user("systemctl --user is-active " + u); got == "active" {
			t.Errorf("%s is still active after uninstall", u)
		}
	}
}

// TestShortLoginIsHealedRightAfterTheWrite is the case heal on login is for:
// a login that lives less than a day. A run started right after the write
// (as the path unit starts one) heals it; the nightly run the design relies
// on finds the same kind of login dead, fails with cause=token-denied, and
// can heal nothing, while the periodic token the login replaced lives on
// with nobody holding its secret.
func TestShortLoginIsHealedRightAfterTheWrite(t *testing.T) {
	x := newH(t)
	x.put(x.periodic("periodic before the logins"))
	if r := x.run(); r.code != 0 {
		t.Fatalf("premise: the periodic token renews (exit %d)", r.code)
	}
	short := func(label string) devvault.Token {
		tok, err := x.f.MintFake(x.ctx, "oidc-short", 6*time.Second, "vault-admin", "sops-admin")
		if err != nil {
			t.Fatal(err)
		}
		return x.keep(label, tok)
	}
	x.put(short("short login, healed at once"))
	r := x.run()
	wantExit(t, "the run right after the login", r, 0)
	wantLine(t, "the run right after the login", r.stderr, "HEALED: re-minted from foreign dn=token-oidc-short")
	healed, err := x.fileToken()
	if err != nil {
		t.Fatal(err)
	}
	x.keep("healed", tokenOf(x))

	late := short("short login, found late")
	x.put(late)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		if _, err := x.f.LookupSecret(x.ctx, late.Secret); err != nil {
			break // the login has expired, as it would have by the nightly run
		}
		if time.Now().After(deadline) {
			t.Fatal("premise: the 6s login did not expire")
		}
	}
	r = x.run()
	wantExit(t, "the nightly run", r, 1)
	wantIn(t, "the nightly FAIL line", wantLine(t, "the nightly run", r.stderr, "FAIL:"), "cause=token-denied")
	if !x.alive(healed.Accessor) {
		t.Error("premise: the periodic token the late login replaced should still be alive")
	}
}

// walkLines are the closing lines the walk unit has logged so far.
func (b *box) walkLines() []string {
	out := b.sh("journalctl --no-pager -o cat _SYSTEMD_USER_UNIT=" + install.WalkUnit)
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "sweep:") || strings.HasPrefix(l, "FAIL:") {
			lines = append(lines, l)
		}
	}
	return lines
}

// walked waits for the walk unit's closing line number n (1 is its first)
// and for the unit to be done, and returns that line.
func (b *box) walked(n int) string {
	b.x.t.Helper()
	b.waitFor("walk "+strconv.Itoa(n), func() bool {
		return len(b.walkLines()) >= n && b.user("systemctl --user is-active "+install.WalkUnit) != "activating"
	})
	return b.walkLines()[n-1]
}

// ledger is wizard's ledger of the token file at path (as the box names
// it: the ledger's key), as the runs left it.
func (b *box) ledger(path string) ledger.Ledger {
	b.x.t.Helper()
	st, err := runstate.Load(filepath.Join(b.home, ".local", "state", "vault-token-renew", "state.json"))
	if err != nil {
		b.x.t.Fatal(err)
	}
	return st.LedgerFor(path)
}

// TestWalkUnitUnderSystemd: the walk of its own, under a real user
// manager. install starts it once: on a new install it finds a token minted
// before the ledger began, revokes it, and leaves the ledger whole. Then
// the state file is lost: the next run of the service finds the gap, says
// so, and starts the walk unit, which completes and leaves the ledger whole
// again. A heal that finds the ledger whole does not start it.
func TestWalkUnitUnderSystemd(t *testing.T) {
	x := newH(t)
	b := newBox(x)
	tokenFile := boxHome + "/.vault-token"
	old := x.periodic("a token minted before the ledger")
	b.login(tokenFile, x.periodic("box periodic"))
	if r := b.install(""); !r.WalkStarted {
		t.Fatalf("install did not start the walk unit: %+v", r)
	}
	line := b.walked(1)
	t.Logf("the walk install started: %s", line)
	wantIn(t, "the first walk's closing line", line, "the ledger is complete again")
	if x.alive(old.Accessor) {
		t.Errorf("the walk left the token minted before the ledger (%s) alive", old.Accessor)
	}
	if l := b.ledger(tokenFile); l.Gap() != ledger.NoGap {
		t.Fatalf("after the walk the ledger has gap %v, want whole", l.Gap())
	}

	if err := os.RemoveAll(filepath.Join(b.home, ".local", "state")); err != nil {
		t.Fatal(err)
	}
	from := len(b.runs())
	b.user("systemctl --user start vault-token-renew.service")
	runs := b.runs()[from:]
	if len(runs) != 1 || !strings.HasPrefix(runs[0], "OK: renewed periodic token") {
		t.Fatalf("the run after the state was lost: %v", runs)
	}
	wantIn(t, "the OK line", runs[0], "gap=never-whole")
	wantIn(t, "the OK line", runs[0], "the walk ("+install.WalkUnit+") finds and revokes them, started now")
	line = b.walked(2)
	wantIn(t, "the second walk's closing line", line, "the ledger is complete again")
	if l := b.ledger(tokenFile); l.Gap() != ledger.NoGap || l.Walk != nil {
		t.Fatalf("after the walk the run started, the ledger has gap %v (walk %+v), want whole", l.Gap(), l.Walk)
	}

	b.sandboxRated()

	b.login(tokenFile, b.adminLogin("a login"))
	from = len(b.runs())
	b.user("systemctl --user start vault-token-renew.service")
	runs = b.runs()[from:]
	if len(runs) != 1 || !strings.HasPrefix(runs[0], "HEALED: re-minted from foreign dn=token-fake-oidc (revoked 1 stale, from the ledger)") || strings.Contains(runs[0], "gap=") {
		t.Fatalf("the heal with a whole ledger: %v", runs)
	}
	time.Sleep(2 * time.Second)
	if n := len(b.walkLines()); n != 2 {
		t.Errorf("a heal with a whole ledger started the walk again (%d walks)", n)
	}
	journal := b.sh("journalctl --no-pager -o export")
	x.learnFiles()
	x.assertNoSecretIn(journal)
}

// exposure is systemd-analyze's overall exposure of a user unit (0 safest,
// 10 least safe).
func (b *box) exposure(unit string) float64 {
	b.x.t.Helper()
	out := b.user("systemd-analyze --user security --no-pager " + unit)
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		b.x.t.Fatalf("systemd-analyze --user security %s:\n%s", unit, out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// sandboxRated prints each unit's exposure with its sandbox and without
// (the same unit, its sandbox lines dropped, installed under another
// name), and holds the sandboxed ones at or below 6.5. Every run of the
// systemd tests ran under this sandbox.
func (b *box) sandboxRated() {
	b.x.t.Helper()
	for _, u := range []string{"vault-token-renew.service", install.WalkUnit, "vault-token-renew-notify@.service"} {
		body, err := os.ReadFile(filepath.Join("..", "systemd", u))
		if err != nil {
			b.x.t.Fatal(err)
		}
		bare := regexp.MustCompile(`(?m)^(NoNewPrivileges|UMask|RestrictAddressFamilies|SystemCallArchitectures|SystemCallFilter|LockPersonality|MemoryDenyWriteExecute|RestrictRealtime|RestrictSUIDSGID|RestrictNamespaces|MemoryMax)=.*\n`).ReplaceAll(body, nil)
		name := "vtr-unsandboxed-" + u
		if err := os.WriteFile(filepath.Join(b.home, ".config", "systemd", "user", name), bare, 0o644); err != nil {
			b.x.t.Fatal(err)
		}
		b.chown()
		b.user("systemctl --user daemon-reload")
		inst, bareInst := u, name
		if strings.HasSuffix(u, "@.service") {
			inst, bareInst = strings.Replace(u, "@", "@x", 1), strings.Replace(name, "@", "@x", 1)
		}
		before, after := b.exposure(bareInst), b.exposure(inst)
		b.x.t.Logf("systemd-analyze --user security %s: %.1f without its sandbox, %.1f with it", u, before, after)
		if after > 6.5 || after >= before {
			b.x.t.Errorf("%s rates %.1f with its sandbox (%.1f without); want at most 6.5", u, after, before)
		}
		os.Remove(filepath.Join(b.home, ".config", "systemd", "user", name))
	}
	b.user("systemctl --user daemon-reload")
}
