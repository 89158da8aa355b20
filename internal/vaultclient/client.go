// Package vaultclient is the one place in the tool that speaks Vault's HTTP
// API, through github.com/hashicorp/vault/api. It turns Vault's answers into
// the plain data the renew and sweep packages decide on, and its errors
// into failure.StatusError, so that renew sorts a failure by what Vault
// answered without importing the API client. (The test harness,
// internal/devvault, drives its dev server with the API client too.)
package vaultclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/devvm/vault-token-renew/decide"
	"github.com/devvm/vault-token-renew/failure"
	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/renew"
	"github.com/devvm/vault-token-renew/sweep"
)

// Client reaches Vault with the client settings it was built from but
// never with a token of its own: every call names the token it acts as.
type Client struct {
	base *vault.Client
	// ns is the namespace in effect: set on every clone, which would
	// otherwise read VAULT_NAMESPACE from the process environment again.
	ns string
}

// FromSettings builds a client from the resolved VAULT_*/BAO_* settings
// (VAULT_ADDR or BAO_ADDR, ..._CACERT, ..._CLIENT_CERT, ..._NAMESPACE, ...)
// and from nothing else: no VAULT_* of the process environment configures
// it (one that does not parse still fails it: see own). VAULT_TOKEN and
// BAO_TOKEN are never used: the token file is the source of truth.
func FromSettings(s Settings) (*Client, error) {
	cfg, err := s.config()
	if err != nil {
		return nil, fmt.Errorf("vault client settings from the environment: %w", err)
	}
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	c.ns = s.Get("NAMESPACE")
	c.own(c.base, "")
	return c, nil
}

// API is the API client these settings make, with no token: for what the
// tool's own calls do not cover (livetest's fakes).
func API(s Settings) (*vault.Client, error) {
	c, err := FromSettings(s)
	if err != nil {
		return nil, err
	}
	return c.as("")
}

// own gives cl the token, the namespace and the headers this client
// chooses, and only those. vault.NewClient, which Clone calls too, takes
// VAULT_TOKEN, VAULT_NAMESPACE and VAULT_HEADERS from the process
// environment; own replaces all three. (NewClient also builds a
// DefaultConfig of its own from the process environment, and fails when a
// VAULT_* there does not parse, such as VAULT_MAX_RETRIES=x or a
// VAULT_CACERT that is not there; nothing else of that configuration is
// used, and no API of the client avoids it.)
func (c *Client) own(cl *vault.Client, token string) {
	h := http.Header{}
	h.Set(vault.RequestHeaderName, "true") // as NewClient sets it: Vault's SSRF guard
	if c.ns != "" {
		h.Set(vault.NamespaceHeaderName, c.ns)
	}
	cl.SetHeaders(h)
	cl.SetToken(token)
}

// maxIdlePerHost keeps a sweep's connections alive between lookups; the
// pooled transport's default (GOMAXPROCS+1) would close and reopen most of
// them when more lookups are in flight than that.
const maxIdlePerHost = 64

// New builds a client from an explicit configuration, with no token, no
// namespace and no extra headers. Every answer is read through a size
// limit (limitTransport).
func New(cfg *vault.Config) (*Client, error) {
	if t, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		t.MaxIdleConnsPerHost = maxIdlePerHost
	}
	// The API client dials a unix:// address (a Vault Agent's socket) only
	// through its own *http.Transport; such a local socket keeps it.
	unix := strings.HasPrefix(cfg.Address, "unix://") || strings.HasPrefix(cfg.AgentAddress, "unix://")
	if _, ok := cfg.HttpClient.Transport.(limitTransport); !ok && cfg.HttpClient.Transport != nil && !unix {
		cfg.HttpClient.Transport = limitTransport{base: cfg.HttpClient.Transport}
	}
	cl, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c := &Client{base: cl}
	c.own(cl, "")
	return c, nil
}

// Address is the Vault address in use, for log lines: with any password in
// it redacted (https://user:xxxxx@…).
// Namespace is the namespace the client acts in; "" for the root.
func (c *Client) Namespace() string { return c.ns }

func (c *Client) Address() string {
	u, err := url.Parse(c.base.Address())
	if err != nil {
		return "(an address that does not parse)"
	}
	return u.Redacted()
}

// MaxRetries is the API client's retry count (VAULT_MAX_RETRIES): it
// retries every call but the create, whose retries renew owns.
func (c *Client) MaxRetries() int { return c.base.MaxRetries() }

func (c *Client) as(token string) (*vault.Client, error) {
	cl, err := c.base.Clone()
	if err != nil {
		return nil, err
	}
	c.own(cl, token)
	return cl, nil
}

// LookupSelf implements renew.Vault.
func (c *Client) LookupSelf(ctx context.Context, token string) (decide.TokenInfo, error) {
	cl, err := c.as(token)
	if err != nil {
		return decide.TokenInfo{}, err
	}
	s, err := cl.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return decide.TokenInfo{}, wrap(ctx, "lookup-self", err)
	}
	if s == nil || s.Data == nil {
		return decide.TokenInfo{}, errors.New("lookup-self returned no data")
	}
	return TokenInfo(s.Data), nil
}

// RenewSelf implements renew.Vault. Increment 0 asks for the token's own
// period, which is what a periodic token wants; Vault may cap it, and says
// so in its warnings.
func (c *Client) RenewSelf(ctx context.Context, token string) (renew.Renewal, error) {
	cl, err := c.as(token)
	if err != nil {
		return renew.Renewal{}, err
	}
	s, err := cl.Auth().Token().RenewSelfWithContext(ctx, 0)
	if err != nil {
		return renew.Renewal{}, wrap(ctx, "renew-self", err)
	}
	if s == nil || s.Auth == nil {
		return renew.Renewal{}, errors.New("renew-self returned no auth data")
	}
	return renew.Renewal{TTL: time.Duration(s.Auth.LeaseDuration) * time.Second, Warnings: s.Warnings}, nil
}

// CreateOrphan implements renew.Vault: the exact create the manual recovery
// prescribes (vault token create -orphan -period=... -policy=... -display-name=...),
// plus meta naming the machine the token belongs to. It makes one attempt:
// the API client's retries are off for it, because a retry below renew
// would mint again with no record of the first attempt in the ledger;
// renew retries, writing each attempt ahead.
func (c *Client) CreateOrphan(ctx context.Context, token string, spec decide.Spec) (renew.Created, error) {
	cl, err := c.as(token)
	if err != nil {
		return renew.Created{}, err
	}
	cl.SetMaxRetries(0)
	s, err := cl.Auth().Token().CreateWithContext(ctx, &vault.TokenCreateRequest{
		Policies:    spec.Policies,
		Period:      spec.Period.String(),
		NoParent:    true,
		DisplayName: spec.DisplayName,
		Metadata:    spec.Meta(),
	})
	if err != nil {
		return renew.Created{}, wrap(ctx, "auth/token/create", err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" || s.Auth.Accessor == "" {
		// Without an accessor the ledger could not hold what was minted:
		// an error keeps the create unrecorded, a gap the walk closes.
		return renew.Created{}, errors.New("token create answered without a token or its accessor")
	}
	return renew.Created{Secret: s.Auth.ClientToken, Accessor: s.Auth.Accessor, Warnings: s.Warnings}, nil
}

// RevokeSelf implements renew.Vault.
func (c *Client) RevokeSelf(ctx context.Context, token string) error {
	cl, err := c.as(token)
	if err != nil {
		return err
	}
	// The argument is ignored by the API client; it revokes cl's token.
	return wrap(ctx, "revoke-self", cl.Auth().Token().RevokeSelfWithContext(ctx, ""))
}

// ClusterID implements renew.Vault: sys/health's cluster_id (asked in the
// root namespace, where sys/health lives), and the namespace tokens are
// made in, when one is set. No token is sent: sys/health needs none.
func (c *Client) ClusterID(ctx context.Context) (string, error) {
	cl, err := c.as("")
	if err != nil {
		return "", err
	}
	cl.ClearNamespace()
	h, err := cl.Sys().HealthWithContext(ctx)
	if err != nil {
		return "", wrap(ctx, "sys/health", err)
	}
	if h == nil || h.ClusterID == "" {
		return "", errors.New("sys/health: no cluster_id in the answer")
	}
	if c.ns != "" {
		return h.ClusterID + " namespace=" + c.ns, nil
	}
	return h.ClusterID, nil
}

// CanCreateOrphan implements renew.Vault: a periodic orphan needs update
// (or create) and sudo on auth/token/create, or root.
func (c *Client) CanCreateOrphan(ctx context.Context, token string) (bool, error) {
	cl, err := c.as(token)
	if err != nil {
		return false, err
	}
	caps, err := cl.Sys().CapabilitiesSelfWithContext(ctx, "auth/token/create")
	if err != nil {
		return false, wrap(ctx, "capabilities-self", err)
	}
	if slices.Contains(caps, "root") {
		return true, nil
	}
	write := slices.Contains(caps, "update") || slices.Contains(caps, "create")
	return write && slices.Contains(caps, "sudo"), nil
}

// Accessors implements renew.Vault. The bound client is built once: a
// sweep makes one call per accessor.
func (c *Client) Accessors(token string) sweep.Accessors {
	cl, err := c.as(token)
	return accessors{cl: cl, err: err}
}

type accessors struct {
	cl  *vault.Client
	err error
}

func (a accessors) List(ctx context.Context) ([]string, error) {
	if a.err != nil {
		return nil, a.err
	}
	s, err := a.cl.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil {
		return nil, wrap(ctx, "list auth/token/accessors", err)
	}
	if s == nil || s.Data == nil {
		return nil, nil // 404: no accessors at all
	}
	raw, _ := s.Data["keys"].([]interface{})
	out := make([]string, 0, len(raw))
	for _, k := range raw {
		if str, ok := k.(string); ok {
			out = append(out, str)
		}
	}
	return out, nil
}

func (a accessors) Lookup(ctx context.Context, accessor string) (sweep.Token, error) {
	if a.err != nil {
		return sweep.Token{}, a.err
	}
	s, err := a.cl.Auth().Token().LookupAccessorWithContext(ctx, accessor)
	if err != nil {
		if Vanished(err) {
			return sweep.Token{}, fmt.Errorf("lookup accessor %s: %w", accessor, sweep.ErrVanished)
		}
		return sweep.Token{}, wrap(ctx, "lookup accessor "+accessor, err)
	}
	if s == nil || s.Data == nil {
		return sweep.Token{}, fmt.Errorf("lookup accessor %s: %w", accessor, sweep.ErrVanished)
	}
	info := TokenInfo(s.Data)
	return sweep.Token{Accessor: accessor, DisplayName: info.DisplayName, CreationTime: info.CreationTime, TTL: info.TTL,
		Period: info.Period, Host: info.Meta[decide.MetaHost], User: info.Meta[decide.MetaUser], Profile: info.Meta[decide.MetaProfile]}, nil
}

func (a accessors) Revoke(ctx context.Context, accessor string) error {
	if a.err != nil {
		return a.err
	}
	return wrap(ctx, "revoke accessor "+accessor, a.cl.Auth().Token().RevokeAccessorWithContext(ctx, accessor))
}

// APIError is Vault's refusal of one call, in one line: the API client's own
// error spans several lines, which reads badly in a journal.
type APIError struct {
	Op     string
	Status int
	Errors []string
	err    *vault.ResponseError
}

// Error is one line, escaped and cut to a few hundred characters: the
// body of an error may be a proxy's page that echoes headers, or anything
// else whatever answers at the address chose to send.
func (e *APIError) Error() string {
	msg := strings.Join(e.Errors, "; ")
	if msg == "" {
		msg = "no error text"
	}
	return fmt.Sprintf("%s: vault answered %d: %s", safetext.Value(e.Op), e.Status, safetext.Cut(safetext.Escape(msg), maxErrorText))
}

// maxErrorText bounds the text of Vault's error in a log line.
const maxErrorText = 300

var _ failure.StatusError = (*APIError)(nil)

// Unwrap keeps the *vault.ResponseError reachable.
func (e *APIError) Unwrap() error { return e.err }

// HTTPStatus and Messages make APIError a failure.StatusError: renew sorts
// failures by what Vault answered without speaking its API.
func (e *APIError) HTTPStatus() int    { return e.Status }
func (e *APIError) Messages() []string { return e.Errors }

// Vanished recognises Vault's answer for an accessor whose token is gone
// (400 "invalid accessor"): it expired or was revoked after the list.
func Vanished(err error) bool {
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 400 {
		return false
	}
	for _, m := range re.Errors {
		if strings.Contains(m, "invalid accessor") {
			return true
		}
	}
	return false
}

// wrap names the operation and flattens Vault's multi-line errors
// ("1 error occurred:\n\t* permission denied") into their items. The API
// client enforces VAULT_CLIENT_TIMEOUT as a deadline on the request's
// context, which reads exactly like the run's own --timeout; only here,
// with the caller's ctx still live, can the two be told apart.
func wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("%s: %w: %w", op, failure.ErrClientTimeout, err)
	}
	var re *vault.ResponseError
	if !errors.As(err, &re) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var items []string
	for _, e := range re.Errors {
		for _, line := range strings.Split(e, "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "* ") {
				items = append(items, strings.TrimPrefix(line, "* "))
			} else if line != "" && !strings.HasSuffix(line, "occurred:") {
				items = append(items, line)
			}
		}
	}
	return &APIError{Op: op, Status: re.StatusCode, Errors: items, err: re}
}

// TokenInfo converts a token lookup's data into decide.TokenInfo.
func TokenInfo(d map[string]interface{}) decide.TokenInfo {
	info := decide.TokenInfo{
		Accessor:         str(d["accessor"]),
		DisplayName:      str(d["display_name"]),
		Policies:         strs(d["policies"]),
		IdentityPolicies: strs(d["identity_policies"]),
		Type:             str(d["type"]),
		Meta:             meta(d["meta"]),
		TTL:              seconds(d["ttl"]),
		Period:           seconds(d["period"]),
		ExplicitMaxTTL:   seconds(d["explicit_max_ttl"]),
		NumUses:          int(seconds(d["num_uses"]) / time.Second),
		Orphan:           d["orphan"] == true,
	}
	if n := seconds(d["creation_time"]); n > 0 {
		info.CreationTime = time.Unix(int64(n/time.Second), 0).UTC()
	}
	if t, err := time.Parse(time.RFC3339Nano, str(d["expire_time"])); err == nil {
		info.ExpireTime = t.UTC()
	}
	return info
}

// meta reads a token's metadata map; Vault sends null for none.
func meta(v interface{}) map[string]string {
	raw, _ := v.(map[string]interface{})
	if len(raw) == 0 {
		return nil
	}
	out := make(map[string]string, len(raw))
	for k, x := range raw {
		if s, ok := x.(string); ok {
			out[k] = s
		}
	}
	return out
}

func str(v interface{}) string {
	s, _ := v.(string)
	return s
}

func strs(v interface{}) []string {
	raw, _ := v.([]interface{})
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		if s, ok := r.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// seconds reads a Vault duration field, which arrives as a json.Number of
// seconds (the API client decodes with UseNumber), a float, or a string.
func seconds(v interface{}) time.Duration {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			f, _ := x.Float64()
			n = int64(f)
		}
		return time.Duration(n) * time.Second
	case float64:
		return time.Duration(x) * time.Second
	case int64:
		return time.Duration(x) * time.Second
	case int:
		return time.Duration(x) * time.Second
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return time.Duration(n) * time.Second
		}
		if d, err := time.ParseDuration(x); err == nil {
			return d
		}
	}
	return 0
}
