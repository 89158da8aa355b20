package vaultclient

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/hashicorp/go-secure-stdlib/parseutil"
	vault "github.com/hashicorp/vault/api"
	"golang.org/x/net/http2"
)

// Names are the client settings the tool honours, as the suffix of their
// two names: VAULT_ADDR and BAO_ADDR, VAULT_CACERT and BAO_CACERT, and so
// on. VAULT_TOKEN and BAO_TOKEN are not among them: the token file is the
// source of truth. No other VAULT_* reaches the client (VAULT_AGENT_ADDR,
// VAULT_RATE_LIMIT, VAULT_HEADERS, ...): the API client's own defaults
// stand for them.
var Names = []string{"ADDR", "CACERT", "CAPATH", "CLIENT_CERT", "CLIENT_KEY", "NAMESPACE", "SKIP_VERIFY",
	"TLS_SERVER_NAME", "CLIENT_TIMEOUT", "MAX_RETRIES"}

// Settings are the client settings from the environment, resolved as the
// bao CLI resolves them (OpenBao's api.ReadBaoVariable): a BAO_X that is
// present wins over its VAULT_X twin, even when it is empty. The Vault CLI
// reads VAULT_X only, and for a Vault user, who sets no BAO_X, nothing
// changes.
type Settings struct {
	values map[string]string // by suffix: the value in effect
	set    map[string]bool   // by suffix: one of the two names is present
	from   map[string]string // by suffix: the variable the value came from (BAO_X or VAULT_X)
	// Bao says a BAO_* setting is present (one of Names, BAO_TOKEN_PATH or
	// BAO_TOKEN): the operator's shell is set up for the bao CLI.
	Bao bool
}

// ReadSettings resolves every setting with lookup (os.LookupEnv). It is the
// one place the client's settings are read: the client is built from the
// Settings value, not from the process environment (but see Client.own for
// the one thing the API client still takes from there).
func ReadSettings(lookup func(string) (string, bool)) Settings {
	s := Settings{values: map[string]string{}, set: map[string]bool{}, from: map[string]string{}}
	for _, n := range Names {
		if v, ok := lookup("BAO_" + n); ok {
			s.values[n], s.set[n], s.from[n], s.Bao = v, true, "BAO_"+n, true
		} else if v, ok := lookup("VAULT_" + n); ok {
			s.values[n], s.set[n], s.from[n] = v, true, "VAULT_"+n
		}
	}
	for _, n := range []string{"BAO_TOKEN_PATH", "BAO_TOKEN"} {
		if _, ok := lookup(n); ok {
			s.Bao = true
		}
	}
	return s
}

// Get is the setting in effect, by suffix ("ADDR").
func (s Settings) Get(name string) string { return s.values[name] }

// name is the variable a setting came from, for error messages.
func (s Settings) name(suffix string) string {
	if n := s.from[suffix]; n != "" {
		return n
	}
	return "VAULT_" + suffix
}

// config is the API client's configuration from these settings alone. It
// is what vault.DefaultConfig builds when the settings are the whole
// environment: its defaults (the address https://127.0.0.1:8200, a 60s
// client timeout, 2 retries 1s to 1.5s apart with its backoff, TLS 1.2 at
// least, HTTP/2, redirects left to the API client, no rate limit, no SRV
// lookup), then each setting parsed as its ReadEnvironment parses the
// VAULT_* twin: an empty value counts as unset, and a value that does not
// parse is an error. DefaultConfig itself is not called: it reads the
// process environment, where a VAULT_* the settings did not choose would
// slip in. The namespace is not part of a configuration; FromSettings sets
// it on the client.
func (s Settings) config() (*vault.Config, error) {
	cfg := &vault.Config{
		Address:      vault.DefaultAddress,
		HttpClient:   cleanhttp.DefaultPooledClient(),
		Timeout:      60 * time.Second,
		MinRetryWait: time.Second,
		MaxRetryWait: 1500 * time.Millisecond,
		MaxRetries:   2,
		Backoff:      retryablehttp.RateLimitLinearJitterBackoff,
	}
	t := cfg.HttpClient.Transport.(*http.Transport)
	t.TLSHandshakeTimeout = 10 * time.Second
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if err := http2.ConfigureTransport(t); err != nil {
		return nil, err
	}
	if err := s.apply(cfg); err != nil {
		return nil, err
	}
	cfg.HttpClient.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return cfg, nil
}

// apply parses each setting that has a value onto cfg, in the order
// ReadEnvironment parses them, and returns the first that does not parse.
func (s Settings) apply(cfg *vault.Config) error {
	var retries *uint64
	if v := s.Get("MAX_RETRIES"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("could not parse %s: %w", s.name("MAX_RETRIES"), err)
		}
		retries = &n
	}
	var timeout time.Duration
	if v := s.Get("CLIENT_TIMEOUT"); v != "" {
		d, err := parseutil.ParseDurationSecond(v)
		if err != nil {
			return fmt.Errorf("could not parse %s", s.name("CLIENT_TIMEOUT"))
		}
		timeout = d
	}
	var insecure bool
	if v := s.Get("SKIP_VERIFY"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("could not parse %s", s.name("SKIP_VERIFY"))
		}
		insecure = b
	}
	if err := cfg.ConfigureTLS(&vault.TLSConfig{
		CACert: s.Get("CACERT"), CAPath: s.Get("CAPATH"),
		ClientCert: s.Get("CLIENT_CERT"), ClientKey: s.Get("CLIENT_KEY"),
		TLSServerName: s.Get("TLS_SERVER_NAME"), Insecure: insecure,
	}); err != nil {
		return err
	}
	if v := s.Get("ADDR"); v != "" {
		cfg.Address = v
	}
	if retries != nil {
		cfg.MaxRetries = int(*retries)
	}
	if timeout != 0 {
		cfg.Timeout = timeout
	}
	return nil
}
