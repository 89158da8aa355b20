package devvault

import (
	"context"
	"fmt"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/devvm/vault-token-renew/internal/vaultclient"
)

// Policies as on the production Vault: vault-admin can do anything, with
// sudo (so it may mint periodic orphans); sops-admin is a narrow extra.
const (
	vaultAdminHCL = `path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }`
	sopsAdminHCL  = `path "transit/*" { capabilities = ["create", "read", "update", "delete", "list"] }`
)

// LoginUser is the OIDC stand-in's user name; its login token's display
// name is "userpass-" + LoginUser.
const LoginUser = "wizard"

// Fixture is a provisioned dev Vault, driven as root.
type Fixture struct {
	Server   *Server
	root     *vault.Client
	password string
}

// Provision makes the dev Vault look like production: the two policies, and
// an OIDC stand-in: a userpass user whose entity carries vault-admin and
// sops-admin as identity policies, so its login token holds admin rights
// only through identity_policies, exactly as an OIDC login does.
func Provision(ctx context.Context, s *Server) (*Fixture, error) {
	root, err := s.Client(s.RootToken)
	if err != nil {
		return nil, err
	}
	f := &Fixture{Server: s, root: root, password: randomToken()}
	sys := root.Sys()
	steps := []struct {
		what string
		do   func() error
	}{
		{"policy vault-admin", func() error { return sys.PutPolicyWithContext(ctx, "vault-admin", vaultAdminHCL) }},
		{"policy sops-admin", func() error { return sys.PutPolicyWithContext(ctx, "sops-admin", sopsAdminHCL) }},
		{"enable userpass", func() error {
			return sys.EnableAuthWithOptionsWithContext(ctx, "userpass", &vault.EnableAuthOptions{Type: "userpass"})
		}},
		{"user " + LoginUser, func() error {
			_, err := root.Logical().WriteWithContext(ctx, "auth/userpass/users/"+LoginUser, map[string]interface{}{
				"password": f.password, "token_policies": "default", "token_ttl": "168h", "token_max_ttl": "168h",
			})
			return err
		}},
		{"entity with identity policies", func() error {
			ent, err := root.Logical().WriteWithContext(ctx, "identity/entity", map[string]interface{}{
				"name": LoginUser, "policies": []string{"vault-admin", "sops-admin"},
			})
			if err != nil {
				return err
			}
			auths, err := sys.ListAuthWithContext(ctx)
			if err != nil {
				return err
			}
			_, err = root.Logical().WriteWithContext(ctx, "identity/entity-alias", map[string]interface{}{
				"name": LoginUser, "canonical_id": ent.Data["id"], "mount_accessor": auths["userpass/"].Accessor,
			})
			return err
		}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			return nil, fmt.Errorf("devvault: provision %s: %w", st.what, err)
		}
	}
	return f, nil
}

// Client returns an API client for this server acting as token, with no
// retries so that a paused server fails fast.
func (s *Server) Client(token string) (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	cfg.Timeout = 10 * time.Second
	if s.CACert != "" {
		if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: s.CACert}); err != nil {
			return nil, fmt.Errorf("devvault: client TLS: %w", err)
		}
	}
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("devvault: client: %w", err)
	}
	c.SetToken(token)
	c.SetNamespace("")
	return c, nil
}

// Token is a secret with its accessor; tests print only the accessor.
type Token struct {
	Secret   string
	Accessor string
}

// MintPeriodic mints a periodic orphan admin token as the runbook's manual
// re-mint does, with the given display name (Vault stores "token-"+name).
func (f *Fixture) MintPeriodic(ctx context.Context, displayName string) (Token, error) {
	return f.MintPeriodicFor(ctx, displayName, nil)
}

// MintPeriodicFor mints a periodic orphan token tagged with meta, as the
// renewer on another machine (meta host=...) would have; with no policies
// given it carries vault-admin and sops-admin.
func (f *Fixture) MintPeriodicFor(ctx context.Context, displayName string, meta map[string]string, policies ...string) (Token, error) {
	if len(policies) == 0 {
		policies = []string{"vault-admin", "sops-admin"}
	}
	return f.create(ctx, &vault.TokenCreateRequest{
		NoParent: true, Period: "768h", Policies: policies, DisplayName: displayName, Metadata: meta,
	})
}

// MintOdd mints an admin-policy orphan token of a kind that can never heal:
// a batch token (as some OIDC roles issue) or a use-limited one.
func (f *Fixture) MintOdd(ctx context.Context, batch bool, numUses int) (Token, error) {
	req := &vault.TokenCreateRequest{NoParent: true, TTL: "1h", Policies: []string{"vault-admin", "sops-admin"}, DisplayName: "oidc-odd", NumUses: numUses}
	if batch {
		req.Type = "batch"
	}
	return f.create(ctx, req)
}

// TuneTokenMaxTTL sets the token auth mount's max lease TTL, the cap Vault
// puts on every token's TTL, periodic ones included.
func (f *Fixture) TuneTokenMaxTTL(ctx context.Context, maxTTL time.Duration) error {
	return f.root.Sys().TuneMountWithContext(ctx, "auth/token", vault.MountConfigInput{MaxLeaseTTL: maxTTL.String()})
}

// MintFake mints a short-lived orphan token, as liveTest's fakes are.
func (f *Fixture) MintFake(ctx context.Context, displayName string, ttl time.Duration, policies ...string) (Token, error) {
	return f.create(ctx, &vault.TokenCreateRequest{
		NoParent: true, TTL: ttl.String(), Policies: policies, DisplayName: displayName,
	})
}

// MintWeak mints a token with only the default policy, like the read-only
// Kubernetes clobber of 2026-06-05.
func (f *Fixture) MintWeak(ctx context.Context) (Token, error) {
	return f.create(ctx, &vault.TokenCreateRequest{
		NoParent: true, TTL: "10m", Policies: []string{"default"}, DisplayName: "kubernetes-woodpecker-default",
	})
}

func (f *Fixture) create(ctx context.Context, req *vault.TokenCreateRequest) (Token, error) {
	s, err := f.root.Auth().Token().CreateWithContext(ctx, req)
	if err != nil {
		return Token{}, fmt.Errorf("devvault: create token %q: %w", req.DisplayName, err)
	}
	return Token{Secret: s.Auth.ClientToken, Accessor: s.Auth.Accessor}, nil
}

// Login logs the OIDC stand-in in, as `vault login -method=oidc` would.
func (f *Fixture) Login(ctx context.Context) (Token, error) {
	c, err := f.Server.Client("")
	if err != nil {
		return Token{}, err
	}
	c.ClearToken()
	s, err := c.Logical().WriteWithContext(ctx, "auth/userpass/login/"+LoginUser, map[string]interface{}{"password": f.password})
	if err != nil {
		return Token{}, fmt.Errorf("devvault: userpass login: %w", err)
	}
	return Token{Secret: s.Auth.ClientToken, Accessor: s.Auth.Accessor}, nil
}

// Info is a token's lookup as root, by accessor.
type Info struct {
	Accessor    string
	DisplayName string
	Policies    []string
	TTL         time.Duration
	Period      time.Duration
	Orphan      bool
	Meta        map[string]string
}

// LookupAccessor reports on a token by accessor; ok is false once it is gone.
func (f *Fixture) LookupAccessor(ctx context.Context, accessor string) (Info, bool, error) {
	s, err := f.root.Auth().Token().LookupAccessorWithContext(ctx, accessor)
	if err != nil {
		if vaultclient.Vanished(err) {
			return Info{}, false, nil
		}
		return Info{}, false, err
	}
	return infoFrom(s), true, nil
}

// LookupSecret reports on a token by its secret, acting as that token: it
// proves the token works.
func (f *Fixture) LookupSecret(ctx context.Context, secret string) (Info, error) {
	c, err := f.Server.Client(secret)
	if err != nil {
		return Info{}, err
	}
	s, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return Info{}, err
	}
	return infoFrom(s), nil
}

func infoFrom(s *vault.Secret) Info {
	ttl, _ := s.TokenTTL()
	pol, _ := s.TokenPolicies()
	acc, _ := s.TokenAccessor()
	var period time.Duration
	if p, ok := s.Data["period"]; ok && p != nil {
		if d, err := time.ParseDuration(fmt.Sprint(p) + "s"); err == nil {
			period = d
		}
	}
	dn, _ := s.Data["display_name"].(string)
	meta := map[string]string{}
	if m, ok := s.Data["meta"].(map[string]interface{}); ok {
		for k, v := range m {
			meta[k] = fmt.Sprint(v)
		}
	}
	return Info{Accessor: acc, DisplayName: dn, Policies: pol, TTL: ttl, Period: period, Orphan: s.Data["orphan"] == true, Meta: meta}
}

// AccessorsNamed lists the live accessors whose display name is exactly dn.
func (f *Fixture) AccessorsNamed(ctx context.Context, dn string) ([]string, error) {
	s, err := f.root.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil {
		return nil, err
	}
	var out []string
	if s == nil {
		return out, nil
	}
	for _, k := range s.Data["keys"].([]interface{}) {
		info, ok, err := f.LookupAccessor(ctx, k.(string))
		if err != nil {
			return nil, err
		}
		if ok && info.DisplayName == dn {
			out = append(out, info.Accessor)
		}
	}
	return out, nil
}

// PutPolicy writes an ACL policy as root.
func (f *Fixture) PutPolicy(ctx context.Context, name, hcl string) error {
	return f.root.Sys().PutPolicyWithContext(ctx, name, hcl)
}

// RevokeAccessor revokes a token by accessor as root.
func (f *Fixture) RevokeAccessor(ctx context.Context, accessor string) error {
	return f.root.Auth().Token().RevokeAccessorWithContext(ctx, accessor)
}
