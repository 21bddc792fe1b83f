//go:build unix

package serve

import "syscall"

// NoCoreDump keeps this process's memory (which holds credentials) out of
// core dumps: the core file size limit is 0, and on Linux the process is
// also marked non-dumpable (see nodump_linux.go).
func NoCoreDump() error {
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		return err
	}
	return notDumpable()
}
