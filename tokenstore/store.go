// Package tokenstore is where the operator's CLI keeps the token: a token
// file (the CLI's own helper, ~/.vault-token or BAO_TOKEN_PATH), or an
// external token helper named by token_helper in the CLI's config file
// (~/.vault, ~/.bao), which `vault login` then uses instead of any file.
// The tool reads and writes the token where the CLI does, so that what it
// renews and heals is the token the CLI uses.
package tokenstore

import (
	"context"
	"net/url"
	"path"
	"strings"

	"github.com/devvm/vault-token-renew/tokenfile"
)

// Store is where the token is kept.
type Store interface {
	// Read is the token the CLI would use now.
	Read(ctx context.Context) (string, error)
	// Replace puts token in place of old. A failure leaves the store
	// holding old: the file untouched (atomic write), or a helper's store
	// undone.
	Replace(ctx context.Context, old, token string) error
	// Lock takes the run lock of this store: one run at a time per store.
	Lock(ctx context.Context) (*tokenfile.Lock, error)
	// String is the store in words, for lines and status: the file's path,
	// or "token helper <path>".
	String() string
	// Key names the store in the state file: its ledger's key.
	Key() string
}

// File is a token file, written as the CLI's own helper writes it.
type File struct{ Path string }

func (f File) Read(context.Context) (string, error) { return tokenfile.Read(f.Path) }

// Replace writes token atomically (tokenfile.Write); old is the file's
// content already, which a failed write leaves byte-identical.
func (f File) Replace(_ context.Context, _, token string) error {
	return tokenfile.Write(f.Path, token)
}

func (f File) Lock(ctx context.Context) (*tokenfile.Lock, error) {
	return tokenfile.Acquire(ctx, f.Path)
}
func (f File) String() string { return f.Path }
func (f File) Key() string    { return f.Path }

// Slot names the one token a store holds, to tell whether two setups would
// share it; fileKey makes a path comparable as the caller compares files
// (links followed, made absolute). A helper is told the namespace as well
// as the address, but one that keeps a token per address
// (joemiller/vault-token-helper) keeps one token for every namespace of a
// Vault: two helper stores are two slots only when the helper or the
// address (as Addr spells it) differs.
func Slot(s Store, fileKey func(string) string) string {
	if h, ok := s.(Helper); ok {
		return "token helper " + fileKey(h.Path) + " for " + Addr(h.Addr)
	}
	return fileKey(s.Key())
}

// defaultAddr is where both CLIs (and the API client, api.DefaultAddress)
// go when no address is set.
const defaultAddr = "https://127.0.0.1:8200"

// Addr is addr as a per-address helper tells one Vault from another: the
// default when unset, the scheme and host lower-cased, a default port
// (443, 80) dropped, the path cleaned, no trailing slash.
func Addr(addr string) string {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		addr = defaultAddr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return strings.TrimRight(strings.ToLower(addr), "/")
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if scheme == "https" && port == "443" || scheme == "http" && port == "80" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	if port != "" {
		host += ":" + port
	}
	p := path.Clean("/" + u.Path)
	return scheme + "://" + host + strings.TrimSuffix(p, "/")
}
