// Package failuretest gives tests an answer of Vault's with a status, as
// the adapter's errors carry one (failure.StatusError), without a server.
package failuretest

import (
	"fmt"
	"strings"
)

// answer is a refusal or an error Vault answered with.
type answer struct {
	code int
	msgs []string
}

func (e *answer) Error() string {
	return fmt.Sprintf("vault answered %d: %s", e.code, strings.Join(e.msgs, "; "))
}

// HTTPStatus and Messages make an answer a failure.StatusError.
func (e *answer) HTTPStatus() int    { return e.code }
func (e *answer) Messages() []string { return e.msgs }

// Answer is Vault answering code, with msgs as its error texts.
func Answer(code int, msgs ...string) error { return &answer{code: code, msgs: msgs} }
