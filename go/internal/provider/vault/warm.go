package vault

import (
	"fmt"
	"strings"

	"github.com/hashicorp/vault/api"
)

// Two responses as Vault sends them for the first fetch: the KV mount of the
// secret path (sys/internal/ui/mounts/...) and a KV v2 read. No credential:
// only their shape matters.
const (
	warmMounts = `{"request_id":"0","lease_id":"","renewable":false,"lease_duration":0,` +
		`"data":{"path":"secret/","type":"kv","options":{"version":"2"}},"wrap_info":null,"warnings":null,"auth":null,"mount_type":"kv"}`
	warmRead = `{"request_id":"0","lease_id":"","renewable":false,"lease_duration":0,` +
		`"data":{"data":{"token":"x"},"metadata":{"created_time":"2026-01-01T00:00:00Z","custom_metadata":null,` +
		`"deletion_time":"","destroyed":false,"version":1}},"wrap_info":null,"warnings":null,"auth":null,"mount_type":"kv"}`
)

// Warm decodes both responses with api.ParseSecret, as the first fetch will:
// encoding/json builds its decoders for api.Secret and the types in it on the
// first use of each, about a fifth of a first fetch's time on loopback.
// Returns an error when a response no longer decodes to what it says, so a
// test sees the warm-up go stale.
func Warm() error {
	for _, body := range []string{warmMounts, warmRead} {
		s, err := api.ParseSecret(strings.NewReader(body))
		if err != nil {
			return err
		}
		if s == nil || s.Data == nil || s.MountType != "kv" {
			return fmt.Errorf("vault warm-up: %.40s... decoded to %+v", body, s)
		}
	}
	return nil
}
