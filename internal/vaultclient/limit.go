package vaultclient

import (
	"fmt"
	"io"
	"net/http"

	"github.com/devvm/vault-token-renew/failure"
)

// The limits every answer is read through. A LIST of accessors at a million
// tokens is about 30 MiB of JSON; no other answer the tool reads is more
// than a few KiB. Past its limit an answer fails the request
// (failure.ErrAnswerTooLarge): a hostile or broken server, or a proxy's error
// page, can neither exhaust memory nor flood the journal.
const (
	MaxAnswer     = 1 << 20  // any answer but a LIST
	MaxListAnswer = 64 << 20 // a LIST
)

// limitTransport bounds the body of every answer.
type limitTransport struct{ base http.RoundTripper }

func (t limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	limit := int64(MaxAnswer)
	if r.Method == "LIST" || r.URL.Query().Get("list") == "true" {
		limit = MaxListAnswer
	}
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, tooLarge(r, limit)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: limit, err: tooLarge(r, limit)}
	return resp, nil
}

func tooLarge(r *http.Request, limit int64) error {
	return fmt.Errorf("%w: %s %s answered with more than %d bytes", failure.ErrAnswerTooLarge, r.Method, r.URL.Path, limit)
}

// limitedBody reads at most left bytes, and fails if the answer goes on.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, err := b.rc.Read(one[:]); n > 0 {
			return 0, b.err
		} else if err != nil {
			return 0, err
		}
		return 0, nil
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
