//go:build windows

package main

// noCoreDump: Windows writes no core files for a process unless the user
// configures Windows Error Reporting dumps; nothing to change here.
func noCoreDump() error { return nil }
