//go:build linux

package serve

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// The helper process leaves no core dump: RLIMIT_CORE is 0 and the process
// is not dumpable. (Run in a child so the test process keeps its own state.)
func TestNoCoreDump(t *testing.T) {
	if os.Getenv("MSA_NODUMP_CHILD") == "1" {
		if err := NoCoreDump(); err != nil {
			t.Fatal(err)
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_CORE, &lim); err != nil || lim.Cur != 0 {
			t.Fatalf("RLIMIT_CORE = %+v, %v", lim, err)
		}
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		// /proc/self is owned by root once a process is not dumpable; the
		// dumpable flag itself: prctl(PR_GET_DUMPABLE) = 3.
		r, _, _ := syscall.RawSyscall(syscall.SYS_PRCTL, 3, 0, 0)
		if r != 0 {
			t.Fatalf("PR_GET_DUMPABLE = %d, want 0 (status: %s)", r, strings.SplitN(string(status), "\n", 2)[0])
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoCoreDump$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MSA_NODUMP_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
