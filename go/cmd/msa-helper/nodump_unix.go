//go:build unix

package main

import "syscall"

// noCoreDump keeps this process's memory (which holds credentials) out of
// core dumps: the core file size limit is 0, and on Linux the process is
// also marked non-dumpable (see nodump_linux.go).
func noCoreDump() error {
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		return err
	}
	return notDumpable()
}
