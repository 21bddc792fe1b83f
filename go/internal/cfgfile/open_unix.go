//go:build unix

package cfgfile

import "syscall"

// openNonBlocking makes opening a FIFO return at once instead of waiting for
// a writer; reads of regular files are unaffected.
const openNonBlocking = syscall.O_NONBLOCK
