// Command vault-token-renew keeps the periodic Vault token alive where the
// CLI keeps it (~/.vault-token, BAO_TOKEN_PATH, or a token helper), and
// heals it when a `vault login` overwrites it; one profile per Vault or
// namespace where a machine has several. The daily systemd user timer runs
// it; see runbook/vault-token-renew-devvm.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = ""

func main() { os.Exit(run()) }

// run is the whole command, as main and the testscript scripts (TestMain)
// both run it: Ctrl-C and SIGTERM cancel the run's context, and every wait
// (the lock, Vault, the settle, the unreachable wait) ends on it, so the run
// ends within a moment with its closing line (cause=canceled). A second
// signal is not caught: it ends the process at once.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	return newCLI(os.Stdout, os.Stderr, os.LookupEnv).run(ctx, os.Args[1:])
}
