//go:build unix && !linux

package serve

func notDumpable() error { return nil }
