//go:build unix

package serve

import (
	"fmt"
	"os"
	"syscall"
)

// dupFile: on POSIX systems a descriptor is a file descriptor. A duplicate
// (close-on-exec) is served, so closing it leaves the caller's open, and a
// write to a closed pipe is an EPIPE error here, never Go's "die of SIGPIPE
// on a write to fd 1 or 2".
func dupFile(fd int, name string) (*os.File, error) {
	if fd < 0 {
		return nil, fmt.Errorf("the %s descriptor %d is not valid", name, fd)
	}
	syscall.ForkLock.RLock()
	nfd, err := syscall.Dup(fd)
	if err == nil {
		syscall.CloseOnExec(nfd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("the %s descriptor %d is not open: %w", name, fd, err)
	}
	return os.NewFile(uintptr(nfd), name), nil
}
