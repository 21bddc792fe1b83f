//go:build windows

package serve

// NoCoreDump: Windows writes no core files for a process unless the user
// configures Windows Error Reporting dumps; nothing to change here.
func NoCoreDump() error { return nil }
