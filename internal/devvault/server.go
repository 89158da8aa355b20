package devvault

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Mode says where a dev server came from.
type Mode string

const (
	ModeImage      Mode = "image"       // the upstream image (hashicorp/vault, openbao/openbao), present or pulled
	ModeBuiltImage Mode = "built-image" // a local FROM-scratch image around the built binary
	ModeProcess    Mode = "process"     // the built binary as a local process
)

// Server is a running dev Vault or OpenBao. Its root token is random per
// server and lives only in memory.
type Server struct {
	Addr      string // http://127.0.0.1:port or http://localhost:port
	RootToken string
	Kind      Kind
	Mode      Mode
	Version   string
	// CACert is the CA file of a TLS server (StartTLS); empty for plain HTTP.
	CACert string

	pause, unpause, stop func(context.Context) error
}

// Pause freezes the server (docker pause, or SIGSTOP): connections hang, as
// with a Vault that stopped answering mid-request.
func (s *Server) Pause(ctx context.Context) error { return s.pause(ctx) }

// Unpause resumes a paused server; its tokens are intact.
func (s *Server) Unpause(ctx context.Context) error { return s.unpause(ctx) }

// Stop ends the server and removes its container.
func (s *Server) Stop(ctx context.Context) error { return s.stop(ctx) }

// Start brings up a dev server, the best way this machine allows, and says
// which way it went on progress. VTR_VAULT_MODE (image, built-image,
// process) forces one way. Under CI=true a missing Docker is an error rather
// than a silent fall-back to a process, unless process mode was asked for.
func Start(ctx context.Context, progress io.Writer) (*Server, error) {
	fl, err := vaultFlavor()
	if err != nil {
		return nil, err
	}
	return start(ctx, fl, progress)
}

func start(ctx context.Context, fl flavor, progress io.Writer) (*Server, error) {
	mode := Mode(os.Getenv("VTR_VAULT_MODE"))
	switch mode {
	case "", ModeImage, ModeBuiltImage, ModeProcess:
	default:
		return nil, fmt.Errorf("devvault: VTR_VAULT_MODE=%q: want image, built-image or process", mode)
	}
	root := randomToken()
	if mode == ModeProcess {
		return startProcess(ctx, fl, root, progress, false)
	}
	configureTestcontainers()
	dc, derr := dockerClient(ctx)
	if derr != nil {
		why := "VTR_VAULT_MODE=" + string(mode) + " asks for it"
		if mode == "" {
			why = "CI=true, where a silent fall-back would hide a broken machine"
		}
		if mode != "" || os.Getenv("CI") == "true" {
			return nil, fmt.Errorf("devvault: docker is needed (%s) but not usable: %w; start the docker daemon (systemctl start docker), or set VTR_VAULT_MODE=process to run vault as a local process", why, derr)
		}
		fmt.Fprintf(progress, "devvault: no docker (%v); running %s %s as a local process\n", derr, fl.kind, fl.version)
		return startProcess(ctx, fl, root, progress, false)
	}
	defer dc.Close()
	return startDocker(ctx, dc, mode, fl, root, progress)
}

// startDocker starts the server in a container: the official image where
// it can be had, else a local image around the binary.
func startDocker(ctx context.Context, dc *testcontainers.DockerClient, mode Mode, fl flavor, root string, progress io.Writer) (*Server, error) {
	if mode == "" || mode == ModeImage {
		why := officialImage(ctx, dc, fl.official)
		switch {
		case why == nil:
			fmt.Fprintf(progress, "devvault: %s %s from image %s\n", fl.kind, fl.version, fl.official)
			return startContainer(ctx, fl, fl.official, nil, root, ModeImage, progress)
		case mode == ModeImage:
			return nil, fmt.Errorf("devvault: image %s not available: %w", fl.official, why)
		}
		fmt.Fprintf(progress, "devvault: image %s not available (%v); using a locally built image\n", fl.official, why)
	}
	bin, err := fl.binary(ctx, progress)
	if err != nil {
		return nil, err
	}
	key, err := fl.tag(bin)
	if err != nil {
		return nil, err
	}
	local := fl.local + ":" + key
	var df *testcontainers.FromDockerfile
	if ensureLocal(ctx, dc, local) != nil {
		ctxDir, err := buildContext(bin, fl.exe)
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(ctxDir)
		repo, tag, _ := strings.Cut(local, ":")
		df = &testcontainers.FromDockerfile{Context: ctxDir, Repo: repo, Tag: tag, KeepImage: true}
		fmt.Fprintf(progress, "devvault: building image %s (FROM scratch, no pull)\n", local)
	}
	fmt.Fprintf(progress, "devvault: %s %s from local image %s\n", fl.kind, fl.version, local)
	return startContainer(ctx, fl, local, df, root, ModeBuiltImage, progress)
}

var tcOnce sync.Once

// configureTestcontainers is the one place the test-container settings are
// made; start calls it before anything of testcontainers runs, so every
// container the harness, the demo, the bench and mage start has them. It
// sets, once per process, what testcontainers reads once per process anyway
// (its config is cached on first use): no Ryuk (an image that cannot be
// pulled here; every Server is stopped by its owner instead) unless
// TESTCONTAINERS_RYUK_DISABLED is already set, the docker host on loopback
// (inside a sandbox it may guess the default gateway, and our traffic goes
// to loopback only), and a default logger that stays quiet. Each container
// gets its own logger (startContainer), so one server's failure log lands
// in its own test.
func configureTestcontainers() {
	tcOnce.Do(func() {
		if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
			os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
		}
		os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
		var w io.Writer = io.Discard
		if os.Getenv("VTR_DEBUG") != "" {
			w = os.Stderr
		}
		tclog.SetDefault(quietLogger{w: w})
	})
}

func randomToken() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "dev-root-" + hex.EncodeToString(b)
}

func dockerClient(ctx context.Context) (*testcontainers.DockerClient, error) {
	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := dc.Ping(pctx, client.PingOptions{}); err != nil {
		dc.Close()
		return nil, err
	}
	return dc, nil
}

func ensureLocal(ctx context.Context, dc *testcontainers.DockerClient, ref string) error {
	_, err := dc.ImageInspect(ctx, ref)
	return err
}

var (
	officialMu     sync.Mutex
	officialMissed = map[string]error{} // a failed pull is not retried within one process
)

func officialImage(ctx context.Context, dc *testcontainers.DockerClient, ref string) error {
	officialMu.Lock()
	defer officialMu.Unlock()
	if err := officialMissed[ref]; err != nil {
		return err
	}
	err := ensureImage(ctx, dc, ref)
	if err != nil {
		officialMissed[ref] = err
	}
	return err
}

// ensureImage finds ref locally or makes one bounded pull attempt: on a
// machine with no registry that fails in seconds rather than retrying.
func ensureImage(ctx context.Context, dc *testcontainers.DockerClient, ref string) error {
	if ensureLocal(ctx, dc, ref) == nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := dc.ImagePull(pctx, ref, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer resp.Close()
	return resp.Wait(pctx)
}

// buildContext lays out a docker build context: the static binary (as
// /bin/exe) and a Dockerfile that needs no base image.
func buildContext(bin, exe string) (string, error) {
	dir, err := os.MkdirTemp("", "vault-dev-image-")
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(bin)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, exe), b, 0o755)
	}
	if err == nil {
		err = os.MkdirAll(filepath.Join(dir, "tmp"), 0o777)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(fmt.Sprintf(
			"FROM scratch\nCOPY %[1]s /bin/%[1]s\nCOPY tmp /tmp\nENV HOME=/tmp\nEXPOSE 8200\nENTRYPOINT [\"/bin/%[1]s\"]\n", exe)), 0o644)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("devvault: docker build context: %w", err)
	}
	return dir, nil
}

func devArgs(listen, root string) []string {
	return []string{"server", "-dev", "-dev-root-token-id=" + root, "-dev-listen-address=" + listen, "-dev-no-store-token"}
}

func startContainer(ctx context.Context, fl flavor, image string, df *testcontainers.FromDockerfile, root string, mode Mode, progress io.Writer) (*Server, error) {
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(quietLogger{w: progress}),
		testcontainers.WithExposedPorts("8200/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			// Publish on loopback only.
			hc.PortBindings = network.PortMap{network.MustParsePort("8200/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1")}}}
		}),
		testcontainers.WithEnv(map[string]string{"SKIP_SETCAP": "true", "VAULT_DISABLE_MLOCK": "true", "BAO_DISABLE_MLOCK": "true"}),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/v1/sys/health").WithPort("8200/tcp").WithStartupTimeout(60 * time.Second)),
		testcontainers.WithLabels(map[string]string{"vault-token-renew": "dev-vault"}),
	}
	// Both the official image's entrypoint and ours take Vault's arguments.
	opts = append(opts, testcontainers.WithCmd(devArgs("0.0.0.0:8200", root)...))
	if df != nil {
		opts = append(opts, testcontainers.WithDockerfile(*df))
		image = ""
	}
	ctr, err := testcontainers.Run(ctx, image, opts...)
	if err != nil {
		if ctr != nil {
			_ = ctr.Terminate(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("devvault: start %s container: %w", fl.kind, err)
	}
	ep, err := ctr.PortEndpoint(ctx, "8200/tcp", "http")
	if err != nil {
		_ = ctr.Terminate(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("devvault: %s container port: %w", fl.kind, err)
	}
	id := ctr.GetContainerID()
	return &Server{
		Addr: ep, RootToken: root, Kind: fl.kind, Mode: mode, Version: fl.version,
		pause: func(ctx context.Context) error {
			return withDocker(ctx, func(c *testcontainers.DockerClient) error {
				_, err := c.ContainerPause(ctx, id, client.ContainerPauseOptions{})
				return err
			})
		},
		unpause: func(ctx context.Context) error {
			return withDocker(ctx, func(c *testcontainers.DockerClient) error {
				_, err := c.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
				return err
			})
		},
		stop: func(ctx context.Context) error { return ctr.Terminate(ctx) },
	}, nil
}

// withDocker runs fn with a fresh docker client: Start's is closed by then.
func withDocker(ctx context.Context, fn func(*testcontainers.DockerClient) error) error {
	c, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// StartTLS brings up a dev server that speaks TLS (vault server -dev-tls)
// as a local process on loopback: real Vaults speak TLS, and the renewer's
// TLS failures must be told apart from an unreachable Vault. Its CA file
// is Server.CACert; the certificate names 127.0.0.1 and localhost.
func StartTLS(ctx context.Context, progress io.Writer) (*Server, error) {
	fl, err := vaultFlavor()
	if err != nil {
		return nil, err
	}
	return startProcess(ctx, fl, randomToken(), progress, true)
}

func startProcess(ctx context.Context, fl flavor, root string, progress io.Writer, withTLS bool) (*Server, error) {
	bin, err := fl.binary(ctx, progress)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	home, err := os.MkdirTemp("", "vault-dev-home-")
	if err != nil {
		return nil, err
	}
	args, scheme, caCert := devArgs(listen, root), "http", ""
	hc := &http.Client{Timeout: 2 * time.Second}
	if withTLS {
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+home)
		scheme, caCert = "https", filepath.Join(home, "vault-ca.pem")
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // only to poll health before the CA exists
	}
	cmd := exec.Command(bin, args...)
	// A clean environment: no VAULT_* of the caller's, no real HOME.
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	logf, err := os.CreateTemp("", "vault-dev-*.log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("devvault: start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func(context.Context) error {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-done
		logf.Close()
		os.Remove(logf.Name())
		os.RemoveAll(home)
		return nil
	}
	addr := scheme + "://" + listen
	if err := waitHealthy(ctx, hc, addr, done); err != nil {
		b, _ := os.ReadFile(logf.Name())
		stop(ctx)
		return nil, fmt.Errorf("devvault: %s process did not become healthy: %w\n%s", fl.kind, err, devSecrets.ReplaceAllString(tail(b, 20), "$1: [redacted]"))
	}
	fmt.Fprintf(progress, "devvault: %s %s as local process on %s\n", fl.kind, fl.version, listen)
	return &Server{
		Addr: addr, RootToken: root, Kind: fl.kind, Mode: ModeProcess, Version: fl.version, CACert: caCert,
		pause:   func(context.Context) error { return cmd.Process.Signal(syscall.SIGSTOP) },
		unpause: func(context.Context) error { return cmd.Process.Signal(syscall.SIGCONT) },
		stop:    stop,
	}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitHealthy(ctx context.Context, hc *http.Client, addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("process exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := hc.Get(addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("timed out after 60s waiting for /v1/sys/health")
}

// quietLogger keeps testcontainers' chatter out of the way: it passes on
// only a failed container's logs, with the dev server's root token and
// unseal key blanked, and everything when VTR_DEBUG is set.
type quietLogger struct{ w io.Writer }

var devSecrets = regexp.MustCompile(`(Root Token|Unseal Key): \S+`)

func (l quietLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("VTR_DEBUG") == "" && !strings.Contains(msg, "container logs") {
		return
	}
	fmt.Fprintln(l.w, devSecrets.ReplaceAllString(msg, "$1: [redacted]"))
}
