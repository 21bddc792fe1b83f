//go:build unix

package serve

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
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

// Share serves Shared on a connected socket of this process (a descriptor
// the caller keeps and may close) in the background, and returns at once.
// The connection is served on its own duplicate through Go's poller, so an
// idle child costs a goroutine, not a thread.
func Share(eng *engine.Engine, fd int) error {
	f, err := dupFile(fd, "socket")
	if err != nil {
		return err
	}
	conn, err := net.FileConn(f) // a duplicate of its own
	f.Close()
	if err != nil {
		return fmt.Errorf("the descriptor %d is not a socket: %w", fd, err)
	}
	go Shared(eng, conn)
	return nil
}
