//go:build windows

package serve

import (
	"fmt"
	"os"
	"syscall"

	"github.com/mlflow-secrets-auth/mlflow-secrets-auth/go/internal/engine"
)

// dupFile: on Windows a descriptor is a Win32 HANDLE passed as an int (64-bit
// Windows uses handles whose lower 32 bits are significant, so a handle
// survives the round trip through int: truncated, then sign-extended). The
// launcher passes GetStdHandle(STD_INPUT_HANDLE) and (STD_OUTPUT_HANDLE). A
// duplicate is served, so closing it leaves the caller's handle open.
func dupFile(fd int, name string) (*os.File, error) {
	h := syscall.Handle(uintptr(int64(int32(fd))))
	if h == syscall.InvalidHandle || h == 0 {
		return nil, fmt.Errorf("the %s handle %d is not valid", name, fd)
	}
	self, err := syscall.GetCurrentProcess()
	if err != nil {
		return nil, err
	}
	var dup syscall.Handle
	if err := syscall.DuplicateHandle(self, h, self, &dup, 0, false, syscall.DUPLICATE_SAME_ACCESS); err != nil {
		return nil, fmt.Errorf("the %s handle %d is not open: %w", name, fd, err)
	}
	return os.NewFile(uintptr(dup), name), nil
}

// Share: Windows has no fork, so no child shares its parent's core.
func Share(_ *engine.Engine, fd int) error {
	return fmt.Errorf("sharing the core with a forked child (descriptor %d) needs fork: not on Windows", fd)
}
