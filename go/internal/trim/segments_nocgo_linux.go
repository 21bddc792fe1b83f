//go:build linux && !cgo

package trim

// loadedSegments needs the dynamic loader (cgo): a binary built without it
// (the static helper) reads /proc/self/maps, which in a process of its own
// is a few dozen lines.
func loadedSegments(addr uintptr, pageSize int) ([]mapping, bool) { return nil, false }
