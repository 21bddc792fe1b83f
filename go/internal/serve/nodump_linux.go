//go:build linux

package serve

import "syscall"

const prSetDumpable = 4 // PR_SET_DUMPABLE from <linux/prctl.h>

// notDumpable: no core dump and no ptrace attach by other processes of the
// same user (PR_SET_DUMPABLE 0).
func notDumpable() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); errno != 0 {
		return errno
	}
	return nil
}
