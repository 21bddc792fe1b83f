//go:build !unix

package cfgfile

import "testing"

// mkfifo makes a named pipe at path; it reports false where there are none.
func mkfifo(*testing.T, string) bool { return false }
