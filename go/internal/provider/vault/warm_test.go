package vault

import "testing"

// The samples still decode to what the first fetch gets (a KV mount, data):
// a sample vault/api no longer parses would leave the warm-up doing nothing.
func TestWarmSamplesDecode(t *testing.T) {
	if err := Warm(); err != nil {
		t.Fatalf("Warm: %v", err)
	}
}
