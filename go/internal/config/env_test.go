package config

import (
	"os"
	"testing"
)

func lookup(k string) string {
	v, ok := os.LookupEnv(k)
	if !ok {
		return "<unset>"
	}
	return v
}

// SyncProcess sets what the caller passes, undoes its own changes when a
// variable disappears from the caller's environment, and never removes or
// changes a process variable it did not set.
func TestSyncProcessOnlyUndoesItsOwnChanges(t *testing.T) {
	t.Setenv("MSATEST_PROFILE", "host-profile") // the host process's own variables
	t.Setenv("MSATEST_CLIENT_ID", "host-client")
	t.Setenv("MSATEST_ENDPOINT", "host-endpoint")
	t.Setenv("OTHER_VAR", "kept")
	t.Cleanup(func() { _ = os.Unsetenv("MSATEST_NEW") })

	// A caller environment lacking the host's variables removes nothing.
	SyncProcess(Env{"MSATEST_NEW": "n1", "MSATEST_CLIENT_ID": "caller-client"}, "MSATEST_", "OTHER_")
	for k, want := range map[string]string{"MSATEST_PROFILE": "host-profile", "MSATEST_ENDPOINT": "host-endpoint",
		"OTHER_VAR": "kept", "MSATEST_NEW": "n1", "MSATEST_CLIENT_ID": "caller-client"} {
		if got := lookup(k); got != want {
			t.Errorf("after the first sync %s = %q, want %q", k, got, want)
		}
	}
	// Changed again, then dropped by the caller: back to the value before
	// the first change, and a variable it created is removed.
	SyncProcess(Env{"MSATEST_CLIENT_ID": "caller-client-2"}, "MSATEST_")
	if got := lookup("MSATEST_CLIENT_ID"); got != "caller-client-2" {
		t.Errorf("MSATEST_CLIENT_ID = %q", got)
	}
	if got := lookup("MSATEST_NEW"); got != "<unset>" {
		t.Errorf("MSATEST_NEW, set by SyncProcess and then dropped, = %q", got)
	}
	SyncProcess(Env{}, "MSATEST_")
	for k, want := range map[string]string{"MSATEST_PROFILE": "host-profile", "MSATEST_ENDPOINT": "host-endpoint",
		"MSATEST_CLIENT_ID": "host-client", "OTHER_VAR": "kept"} {
		if got := lookup(k); got != want {
			t.Errorf("after an empty sync %s = %q, want %q", k, got, want)
		}
	}
	// Variables outside the prefixes are neither set nor removed.
	SyncProcess(Env{"UNRELATED_X": "x"}, "MSATEST_")
	if got := lookup("UNRELATED_X"); got != "<unset>" {
		t.Errorf("UNRELATED_X = %q, want unset", got)
	}
}
