package serve

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/msaerr"
	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/protocol"
)

// warmChild is set in the fresh process that firstCallAllocs starts.
const warmChild = "MSA_TEST_WARM_CHILD"

// TestMain lets a test measure a first call in a fresh process, where
// encoding/json has built nothing yet: the test binary runs itself with
// warmChild set and prints the count of allocations of the first call.
func TestMain(m *testing.M) {
	if mode := os.Getenv(warmChild); mode != "" {
		fmt.Println(firstCall(mode == "warm"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// firstCall counts the allocations of what a first request does with JSON
// (not the samples Warm uses): decode a headers request, Vault's mount
// lookup and KV v2 read, encode the reply; after Warm when warm is set.
func firstCall(warm bool) uint64 {
	if warm {
		if err := Warm(); err != nil {
			return 0
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var req request
	_ = json.Unmarshal([]byte(`{"id":7,"op":"headers","arg":"https://mlflow.example:443"}`), &req)
	_, _ = api.ParseSecret(strings.NewReader(`{"request_id":"5f1c","lease_id":"","renewable":false,"lease_duration":0,` +
		`"data":{"path":"kv/","type":"kv","options":{"version":"2"},"plugin_version":""},"warnings":null,"auth":null,"mount_type":"kv"}`))
	_, _ = api.ParseSecret(strings.NewReader(`{"request_id":"9a2e","lease_id":"","renewable":false,"lease_duration":2764800,` +
		`"data":{"data":{"token":"t","username":"u"},"metadata":{"created_time":"2026-11-30T10:00:00Z","version":3}},` +
		`"warnings":["w"],"auth":null,"mount_type":"kv"}`))
	_, _ = json.Marshal(protocol.HeadersReply{OK: true, Headers: map[string]string{"Authorization": "Bearer t"},
		Fingerprint: "ab12", Provider: "vault", MaxAgeMs: 300000, Events: []protocol.Event{{Level: "info", Message: "m"}}})
	_, _ = json.Marshal(protocol.HeadersReply{Error: &protocol.Error{Code: msaerr.Backend, Message: "m"}})
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}

func firstCallAllocs(t *testing.T, mode string) uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), warmChild+"="+mode)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s child: %v", mode, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("%s child printed %q", mode, out)
	}
	return n
}

// The warm-up builds what the first request's JSON work needs: after it, that
// work allocates a fraction of what it does in a process where nothing has
// been built. Catches a warm-up that no longer covers the types the first
// call uses (a reply type, Vault's api.Secret), or that fails (the child then
// prints 0).
func TestWarmBuildsWhatTheFirstCallUses(t *testing.T) {
	if err := Warm(); err != nil {
		t.Fatalf("Warm: %v", err)
	}
	cold, warm := firstCallAllocs(t, "cold"), firstCallAllocs(t, "warm")
	t.Logf("first call's JSON work: %d allocations in a fresh process, %d after Warm", cold, warm)
	if warm*3 > cold {
		t.Fatalf("after Warm the first call still allocates %d (without: %d); want under a third", warm, cold)
	}
}
