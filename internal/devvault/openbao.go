package devvault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Kind is which server a dev server runs: both speak the token store API
// the tool calls, and both CLIs write ~/.vault-token.
type Kind string

const (
	KindVault   Kind = "vault"
	KindOpenBao Kind = "openbao"
)

// OpenBaoVersion is the pinned OpenBao release, the one place it is named:
// the image tag tried first, and what a VTR_OPENBAO_BIN binary must report.
const OpenBaoVersion = "2.6.2"

// flavor is what differs between starting a dev Vault and a dev OpenBao.
type flavor struct {
	kind     Kind
	version  string
	official string // the upstream image
	exe      string // the binary's name in a built image
	local    string // the built image's repository
	// binary returns the server binary, building or finding it.
	binary func(ctx context.Context, progress io.Writer) (string, error)
	// tag names the built image for this binary.
	tag func(bin string) (string, error)
}

func vaultFlavor() (flavor, error) {
	v, err := Version()
	if err != nil {
		return flavor{}, err
	}
	return flavor{kind: KindVault, version: v, official: "hashicorp/vault:" + v, exe: "vault", local: "vault-token-renew/vault-dev",
		binary: Binary, tag: func(string) (string, error) { return buildKey() }}, nil
}

func openBaoFlavor() flavor {
	return flavor{kind: KindOpenBao, version: OpenBaoVersion, official: "openbao/openbao:" + OpenBaoVersion, exe: "bao",
		local: "vault-token-renew/openbao-dev", binary: OpenBaoBinary, tag: fileTag}
}

// ErrNoOpenBao: neither the image nor VTR_OPENBAO_BIN is there to start
// an OpenBao server with.
var ErrNoOpenBao = errors.New("devvault: no OpenBao server")

// OpenBaoBinary is the OpenBao server binary named by VTR_OPENBAO_BIN,
// checked to be the pinned release. The Go module proxy cannot serve
// OpenBao's server module, so where no registry has the image the binary
// must come from elsewhere: on these machines, ../shared/openbao/build.sh
// prints the path of one built from source.
func OpenBaoBinary(ctx context.Context, _ io.Writer) (string, error) {
	bin := os.Getenv("VTR_OPENBAO_BIN")
	if bin == "" {
		return "", fmt.Errorf("%w: the image openbao/openbao:%s is not available and VTR_OPENBAO_BIN is not set; set it to a bao v%s binary (here: export VTR_OPENBAO_BIN=$(../shared/openbao/build.sh))", ErrNoOpenBao, OpenBaoVersion, OpenBaoVersion)
	}
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("devvault: VTR_OPENBAO_BIN=%s does not run: %w", bin, err)
	}
	if !strings.Contains(string(out), "OpenBao v"+OpenBaoVersion+" ") && !strings.HasSuffix(strings.TrimSpace(string(out)), "OpenBao v"+OpenBaoVersion) {
		return "", fmt.Errorf("devvault: VTR_OPENBAO_BIN=%s is %q, want OpenBao v%s (the version pinned in internal/devvault)", bin, strings.TrimSpace(string(out)), OpenBaoVersion)
	}
	return bin, nil
}

// fileTag names a built image by the pinned version and the binary's hash,
// so a changed binary never reuses a stale image.
func fileTag(bin string) (string, error) {
	b, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("devvault: %w", err)
	}
	h := sha256.Sum256(b)
	return "v" + OpenBaoVersion + "-" + hex.EncodeToString(h[:])[:12], nil
}

// StartOpenBao brings up a dev OpenBao server the best way this machine
// allows, as Start does for Vault: the image openbao/openbao of the pinned
// version where a registry has it, else a FROM-scratch image around
// VTR_OPENBAO_BIN, else that binary as a local process.
func StartOpenBao(ctx context.Context, progress io.Writer) (*Server, error) {
	return start(ctx, openBaoFlavor(), progress)
}

// StartKind starts a dev server of kind ("vault" or "openbao").
func StartKind(ctx context.Context, kind Kind, progress io.Writer) (*Server, error) {
	switch kind {
	case KindVault, "":
		return Start(ctx, progress)
	case KindOpenBao:
		return StartOpenBao(ctx, progress)
	}
	return nil, fmt.Errorf("devvault: server %q: want vault or openbao", kind)
}
