// Package vaultserver runs a real, in-memory HashiCorp Vault server for the
// project's integration tests. It is its own Go module so the product's go.mod
// stays small. Build it with `go test -c` and run the binary with
// VAULTSERVER_SERVE=1 and -test.run=TestServe -test.timeout=0; it prints
// VAULT_ADDR and VAULT_TOKEN lines to stdout and serves until SIGTERM.
package vaultserver

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	jwtauth "github.com/hashicorp/vault-plugin-auth-jwt"
	kubeauth "github.com/hashicorp/vault-plugin-auth-kubernetes"
	kv "github.com/hashicorp/vault-plugin-secrets-kv"
	"github.com/hashicorp/vault/builtin/credential/approle"
	awsauth "github.com/hashicorp/vault/builtin/credential/aws"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/vault"
)

func TestServe(t *testing.T) {
	if os.Getenv("VAULTSERVER_SERVE") != "1" {
		t.Skip("set VAULTSERVER_SERVE=1 to serve")
	}
	core, _, token := vault.TestCoreUnsealedWithConfig(t, &vault.CoreConfig{
		LogicalBackends: map[string]logical.Factory{"kv": kv.Factory},
		CredentialBackends: map[string]logical.Factory{"approle": approle.Factory, "aws": awsauth.Factory,
			"jwt": jwtauth.Factory, "kubernetes": kubeauth.Factory},
	})
	ln, addr := vaulthttp.TestServer(t, core)
	defer ln.Close()
	fmt.Printf("VAULT_ADDR=%s\nVAULT_TOKEN=%s\n", addr, token)
	_ = os.Stdout.Sync()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	<-ch
}
