package devvault

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
)

// Counter is a loopback reverse proxy in front of a dev Vault that counts
// every request passing through it, by method (LIST apart) and path: what
// a run asks of Vault, counted on the server's side of the connection.
type Counter struct {
	Addr string // http://127.0.0.1:port: point VAULT_ADDR here
	srv  *http.Server
	mu   sync.Mutex
	seen map[string]int
}

// StartCounter listens on a loopback port and forwards to target.
func StartCounter(target string) (*Counter, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	c := &Counter{Addr: "http://" + l.Addr().String(), seen: map[string]int{}}
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.seen[RequestKey(r)]++
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go c.srv.Serve(l)
	return c, nil
}

// RequestKey names a request as Vault's API does: LIST for a list, POST
// for a PUT.
func RequestKey(r *http.Request) string {
	m := r.Method
	if m == "PUT" {
		m = "POST"
	}
	if r.URL.Query().Get("list") == "true" {
		m = "LIST"
	}
	return m + " " + r.URL.Path
}

// Take returns the counts since the last Take, and their total.
func (c *Counter) Take() (map[string]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, n := c.seen, 0
	for _, v := range out {
		n += v
	}
	c.seen = map[string]int{}
	return out, n
}

// Close stops the proxy.
func (c *Counter) Close() error { return c.srv.Close() }
