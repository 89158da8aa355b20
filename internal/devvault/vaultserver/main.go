// Command vaultserver is HashiCorp Vault's own CLI entry point, built from the
// Go module proxy because no container registry is reachable here. The tests
// and the demo run it as `vaultserver server -dev`.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
